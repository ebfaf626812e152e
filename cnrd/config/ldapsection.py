"""The ``[ldap NAME]`` sections: LDAP remote servers holding client entries.

Pure module (apart from reading the password file a section names, as the
loader reads the configuration file itself).
"""

from __future__ import annotations

from cnrd.config.model import LdapConfig, field_default
from cnrd.config.section import Section, parse_word
from cnrd.config.values import (
    InvalidValue,
    parse_dn,
    parse_host,
    parse_int,
    parse_name,
    parse_query_dictionary,
    parse_search_filter,
    parse_seconds,
)

__all__ = ["build_ldap"]


def build_ldap(s: Section, ldap: dict[str, LdapConfig]) -> None:
    """Add the LDAP remote server of section ``s`` to ``ldap``; its password file is read here."""
    s.check_keys()
    d = LdapConfig
    preference = s.get("preference", parse_int, 1, None, default=field_default(d, "preference"))
    for other in ldap.values():
        if other.preference == preference:
            raise s.error("preference", f"{preference} is also [ldap {other.name}]'s "
                                        "(the order of the servers must be clear)")
    username = s.get("username", parse_dn)
    password_file = s.get("password-file", parse_name)
    if username is not None and password_file is None:
        raise s.error("password-file", "required with username (the bind password)")
    if username is None and password_file is not None:
        raise s.error("password-file", "given without username (an anonymous bind sends no password)")
    password = s.get("password-file", lambda text: _read_secret(text.strip()), default=b"")
    use_ssl = s.get("use-ssl", parse_word, ("off", "starttls"), default=field_default(d, "use_ssl"))
    ca_file = s.get("ca-file", lambda text: _check_readable(parse_name(text)))
    if use_ssl == "starttls" and ca_file is None:
        raise s.error("ca-file", "required with use-ssl = starttls (the CA that signs the server's certificate)")
    if use_ssl == "off" and ca_file is not None:
        raise s.error("ca-file", "given with use-ssl = off (no certificate is checked)")
    ldap[s.name] = LdapConfig(
        name=s.name,
        hostname=s.get("hostname", parse_host, required=True),
        search_path=s.get("search-path", parse_dn, required=True),
        query_dictionary=s.get("query-dictionary", parse_query_dictionary, required=True),
        port=s.get("port", parse_int, 1, 65535, default=field_default(d, "port")),
        preference=preference,
        username=username,
        password_file=password_file,
        password=password,
        use_ssl=use_ssl,
        ca_file=ca_file,
        search_scope=s.get("search-scope", parse_word, ("base", "onelevel", "subtree"),
                           default=field_default(d, "search_scope")),
        search_filter=s.get("search-filter", parse_search_filter, default=field_default(d, "search_filter")),
        timeout=s.get("timeout", parse_seconds, 0.1, 60.0, default=field_default(d, "timeout")),
        max_requests=s.get("max-requests", parse_int, 1, 10000, default=field_default(d, "max_requests")),
    )


def _read_secret(path: str) -> bytes:
    """A password file's content without one trailing newline; InvalidValue when unreadable or empty."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InvalidValue(f"cannot read {path}: {e.strerror or e}") from None
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise InvalidValue(f"{path} is empty")
    return data


def _check_readable(path: str) -> str:
    """``path`` when it can be opened for reading; InvalidValue otherwise."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise InvalidValue(f"cannot read {path}: {e.strerror or e}") from None
    return path
