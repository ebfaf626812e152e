"""The loader's ``[ldap NAME]`` sections and the client-class ``[server]`` keys (issue 17's LDAP registry).

CNR 7.2 names the pieces: an "LDAP remote server" object the DHCP server
asks for client entries, the server's ``client-class`` switch and
``client-class-lookup-id``.  Every rejected value names its file, section
and key on one line; the filter checks follow RFC 4515's grammar, the DNs
RFC 4514's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cnrd.config import ConfigError, loads
from cnrd.config.model import LdapConfig
from tests.test_config import FILE, MINIMAL, error

LDAP = """
[ldap dir]
hostname = 127.0.0.1
search-path = ou=clients,dc=cnrd,dc=test
query-dictionary = businessCategory=client-class, cn=host-name
"""


def _ldap(extra: str = "", server: str = "", section: str = LDAP) -> str:
    return MINIMAL + server + section + extra


def _secret(tmp_path: Path, data: bytes, name: str = "pw") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- what loads ---------------------------------------------------------------


def test_an_ldap_section_loads_with_the_models_defaults() -> None:
    c = loads(_ldap(), FILE)
    assert list(c.ldap) == ["dir"]
    d = c.ldap["dir"]
    assert d == LdapConfig(name="dir", hostname="127.0.0.1", search_path="ou=clients,dc=cnrd,dc=test",
                           query_dictionary=(("businessCategory", "client-class"), ("cn", "host-name")))
    # The defaults the brief gives, written out (not read back from the model).
    assert (d.port, d.preference, d.username, d.password, d.use_ssl, d.search_scope, d.search_filter,
            d.timeout, d.max_requests) == (389, 1, None, b"", "off", "subtree", "(macAddress=%s)", 2.0, 100)


def test_no_ldap_section_is_an_empty_registry_and_the_server_defaults() -> None:
    c = loads(MINIMAL, FILE)
    assert c.ldap == {}
    s = c.server
    assert (s.client_class, s.client_class_lookup_id, s.client_lookup_id, s.client_cache_ttl,
            s.client_cache_count, s.client_lookup_failure) == (True, None, "mac", 10, 10000, "default")


def test_every_ldap_key_is_read(tmp_path: Path) -> None:
    pw = _secret(tmp_path, b"s3cret\n")
    ca = _secret(tmp_path, b"-----BEGIN CERTIFICATE-----\n", "ca.pem")
    c = loads(_ldap(section=f"""
[ldap one]
hostname = ldap1.cnrd.test
port = 636
preference = 2
username = cn=admin,dc=cnrd,dc=test
password-file = {pw}
use-ssl = StartTLS
ca-file = {ca}
search-path = dc=cnrd,dc=test
search-scope = onelevel
search-filter = (&(objectClass=ieee802Device)(macAddress=%s))
query-dictionary = businessCategory = client-class,
    cn=host-name, description=policy, employeeType=action, ipHostNumber=reserved-address
timeout = 500ms
max-requests = 10000
"""), FILE)
    d = c.ldap["one"]
    assert (d.hostname, d.port, d.preference, d.username, d.password_file, d.password, d.use_ssl, d.ca_file,
            d.search_path, d.search_scope, d.search_filter, d.timeout, d.max_requests) == (
        "ldap1.cnrd.test", 636, 2, "cn=admin,dc=cnrd,dc=test", pw, b"s3cret", "starttls", ca,
        "dc=cnrd,dc=test", "onelevel", "(&(objectClass=ieee802Device)(macAddress=%s))", 0.5, 10000)
    assert d.query_dictionary == (("businessCategory", "client-class"), ("cn", "host-name"),
                                  ("description", "policy"), ("employeeType", "action"),
                                  ("ipHostNumber", "reserved-address"))
    assert "s3cret" not in repr(d)  # a log line of the config never shows the password


@pytest.mark.parametrize("data, password", [
    (b"pw", b"pw"), (b"pw\n", b"pw"), (b"pw\r\n", b"pw"), (b"pw\n\n", b"pw\n"), (b" pw \n", b" pw "),
])
def test_the_password_file_loses_one_trailing_newline_only(tmp_path: Path, data: bytes, password: bytes) -> None:
    pw = _secret(tmp_path, data)
    c = loads(_ldap(f"username = cn=admin,dc=cnrd,dc=test\npassword-file = {pw}\n"), FILE)
    assert c.ldap["dir"].password == password


@pytest.mark.parametrize("text, seconds", [("2", 2.0), ("0.1", 0.1), ("1.5s", 1.5), ("100ms", 0.1),
                                           ("60", 60.0), ("1m", 60.0)])
def test_timeout_takes_seconds_with_fractions_and_units(text: str, seconds: float) -> None:
    assert loads(_ldap(f"timeout = {text}\n"), FILE).ldap["dir"].timeout == pytest.approx(seconds)


def test_several_servers_keep_their_preferences() -> None:
    text = _ldap(section=LDAP + "preference = 1\n" + LDAP.replace("[ldap dir]", "[ldap spare]")
                 .replace("127.0.0.1", "127.0.0.2") + "preference = 2\n")
    c = loads(text, FILE)
    assert {name: d.preference for name, d in c.ldap.items()} == {"dir": 1, "spare": 2}


@pytest.mark.parametrize("text, value", [
    ("none", None), ("option 77", ("option", 77)), ("Option 1", ("option", 1)), ("option 254", ("option", 254)),
    ("relay-agent circuit-id", ("relay-agent", 1)), ("relay-agent remote-id", ("relay-agent", 2)),
])
def test_client_class_lookup_id(text: str, value: object) -> None:
    server = f"client-class-lookup-id = {text}\n"
    assert loads(MINIMAL + server, FILE).server.client_class_lookup_id == value


def test_the_other_server_keys() -> None:
    c = loads(MINIMAL + """client-class = off
client-lookup-id = client-id
client-cache-ttl = 0
client-cache-count = 1
client-lookup-failure = drop
""", FILE)
    s = c.server
    assert (s.client_class, s.client_lookup_id, s.client_cache_ttl, s.client_cache_count,
            s.client_lookup_failure) == (False, "client-id", 0, 1, "drop")
    assert loads(MINIMAL + "client-cache-ttl = 2m\n", FILE).server.client_cache_ttl == 120


def test_a_client_section_cannot_set_reserved_address() -> None:
    # reserved-address is an LDAP entry's property; a [client] section reserves
    # through [reservation ADDRESS], so the key would be silently ignored.
    error(MINIMAL + "\n[client 02:00:00:00:00:01]\nreserved-address = 10.0.0.5\n",
          "client 02:00:00:00:00:01", "reserved-address", "unknown key")


# --- what is refused, each naming its key -------------------------------------

S = "ldap dir"


@pytest.mark.parametrize("extra, key, fragment", [
    ("hostname = 10.0.0.300\n", "hostname", "bad"),
    ("hostname = -bad-.example\n", "hostname", "bad host"),
    ("hostname = a b\n", "hostname", "bad host"),
    ("port = 0\n", "port", "out of range"),
    ("port = 65536\n", "port", "out of range"),
    ("preference = 0\n", "preference", "out of range"),
    ("username = admin\n", "username", "bad DN"),
    ("username =\n", "username", "empty"),
    ("use-ssl = ssl\n", "use-ssl", "allowed: off, starttls"),
    ("search-scope = sub\n", "search-scope", "allowed: base, onelevel, subtree"),
    ("search-filter = (cn=x)\n", "search-filter", "%s"),
    ("search-filter = macAddress=%s\n", "search-filter", "expected '('"),
    ("search-filter = (macAddress=%s\n", "search-filter", "expected ')'"),
    ("search-filter = (macAddress=%s))\n", "search-filter", "text after"),
    ("search-filter = (&)(macAddress=%s)\n", "search-filter", "at least one"),
    ("search-filter = (macAddress=%s(x)\n", "search-filter", "escaped"),
    ("search-filter = (macAddress=%s\\4)\n", "search-filter", "two hex digits"),
    ("search-filter = (macAddress>=*%s)\n", "search-filter", "'*'"),
    ("search-filter = (=%s)\n", "search-filter", "attribute"),
    ("search-filter = (cn:dn=%s)\n", "search-filter", ":="),
    ("search-filter = " + "(!" * 40 + "(cn=%s)" + ")" * 40 + "\n", "search-filter", "nested"),
    ("search-filter = (&(|(!(cn=%s))))\n", "search-filter", "nested more than 2"),
    ("search-filter = (cn:caseExactMatch:=%s)\n", "search-filter", "extensible"),
    ("search-filter = (:dn:2.5.13.5:=%s)\n", "search-filter", "extensible"),
    ("search-filter = (cn=a**%s)\n", "search-filter", "empty substring"),
    ("timeout = 0.05\n", "timeout", "out of range"),
    ("timeout = 61\n", "timeout", "out of range"),
    ("timeout = soon\n", "timeout", "bad time"),
    ("max-requests = 0\n", "max-requests", "out of range"),
    ("max-requests = 10001\n", "max-requests", "out of range"),
    ("search-paths = dc=x\n", "search-paths", "unknown key"),
    ("password = hunter2\n", "password", "unknown key"),
])
def test_a_bad_ldap_value_names_its_key(extra: str, key: str, fragment: str) -> None:
    section = LDAP
    if extra.startswith("hostname ="):
        section = LDAP.replace("hostname = 127.0.0.1\n", "")
    error(_ldap(extra, section=section), S, key, fragment)


@pytest.mark.parametrize("value, fragment", [
    ("cn", "bad entry"),
    ("cn=hostname", "unknown client property"),
    ("cn=host-name, sn=host-name", "mapped twice"),
    (",", "empty"),
    ("1bad=policy", "bad entry"),
])
def test_a_bad_query_dictionary_names_its_key(value: str, fragment: str) -> None:
    section = LDAP.replace("businessCategory=client-class, cn=host-name", value)
    error(_ldap(section=section), S, "query-dictionary", fragment)


@pytest.mark.parametrize("key", ["hostname", "search-path", "query-dictionary"])
def test_a_required_ldap_key_is_missing(key: str) -> None:
    section = "\n".join(line for line in LDAP.splitlines() if not line.startswith(key))
    error(_ldap(section=section), S, key, "required key is missing")


def test_two_servers_with_one_preference_are_refused() -> None:
    second = LDAP.replace("[ldap dir]", "[ldap spare]")
    error(_ldap(section=LDAP + second), "ldap spare", "preference", "[ldap dir]")


def test_username_needs_a_password_file_and_a_password_file_a_username(tmp_path: Path) -> None:
    error(_ldap("username = cn=admin,dc=cnrd,dc=test\n"), S, "password-file", "required with username")
    pw = _secret(tmp_path, b"pw")
    error(_ldap(f"password-file = {pw}\n"), S, "password-file", "without username")


@pytest.mark.parametrize("data, fragment", [(None, "cannot read"), (b"", "empty"), (b"\n", "empty")])
def test_a_missing_or_empty_password_file_names_the_key(tmp_path: Path, data: bytes | None,
                                                        fragment: str) -> None:
    path = tmp_path / "pw"
    if data is not None:
        path.write_bytes(data)
    error(_ldap(f"username = cn=admin,dc=cnrd,dc=test\npassword-file = {path}\n"), S, "password-file",
          fragment, str(path))


def test_an_unreadable_password_file_names_the_key(tmp_path: Path) -> None:
    # A directory cannot be read as a file whoever runs the test (root reads any mode).
    error(_ldap(f"username = cn=admin,dc=cnrd,dc=test\npassword-file = {tmp_path}\n"), S, "password-file",
          "cannot read")


def test_starttls_needs_a_readable_ca_file_and_the_ca_file_needs_starttls(tmp_path: Path) -> None:
    error(_ldap("use-ssl = starttls\n"), S, "ca-file", "required with use-ssl = starttls")
    error(_ldap(f"use-ssl = starttls\nca-file = {tmp_path / 'absent.pem'}\n"), S, "ca-file", "cannot read")
    ca = _secret(tmp_path, b"x", "ca.pem")
    error(_ldap(f"ca-file = {ca}\n"), S, "ca-file", "use-ssl = off")


def test_an_ldap_server_with_client_class_off_is_refused() -> None:
    # CNR consults clients and client-classes only with client-class on: an
    # LDAP server there would never be asked.
    error(_ldap(server="client-class = false\n"), "server", "client-class", "[ldap dir]")


@pytest.mark.parametrize("line, key, fragment", [
    ("client-class = maybe\n", "client-class", "bad boolean"),
    ("client-class-lookup-id = option 0\n", "client-class-lookup-id", "out of range"),
    ("client-class-lookup-id = option 255\n", "client-class-lookup-id", "out of range"),
    ("client-class-lookup-id = option\n", "client-class-lookup-id", "relay-agent circuit-id"),
    ("client-class-lookup-id = relay-agent subscriber-id\n", "client-class-lookup-id", "bad lookup id"),
    ("client-class-lookup-id = mac\n", "client-class-lookup-id", "bad lookup id"),
    ("client-lookup-id = duid\n", "client-lookup-id", "allowed: mac, client-id"),
    ("client-cache-ttl = -1\n", "client-cache-ttl", "bad duration"),
    ("client-cache-count = 0\n", "client-cache-count", "out of range"),
    ("client-lookup-failure = retry\n", "client-lookup-failure", "allowed: default, drop"),
])
def test_a_bad_server_key_names_it(line: str, key: str, fragment: str) -> None:
    error(MINIMAL + line, "server", key, fragment)


@pytest.mark.parametrize("value", [
    "(macAddress=%s)", "(&(objectClass=ieee802Device)(|(macAddress=%s)(cn=%s)))", "(!(cn=%s))",
    "(uid=*%s*)", "(cn=%s*)", "(&(cn=*)(cn=%s))", "(cn;lang-en~=%s)", "(&(|(cn=%s)(uid=%s))(!(ou=x)))",
    "(cn=a\\2a%s)", "(2.5.4.3=%s)",
])
def test_well_formed_filters_load(value: str) -> None:
    # Each is a filter by RFC 4515's grammar, including its section 4 examples' forms.
    assert loads(_ldap(f"search-filter = {value}\n"), FILE).ldap["dir"].search_filter == value



# Filters both cnrd.ldap.filter (what the client sends) and the loader judge.
AGREED = ["(macAddress=%s)", "(&(objectClass=ieee802Device)(macAddress=%s))", "(|(cn=%s)(uid=%s))",
          "(!(cn=%s))", "(&(|(cn=%s))(!(uid=x)))", "(&(|(!(cn=%s))))", "(cn=*%s*)", "(cn=a**%s)",
          "(cn~=%s)", "(cn>=%s*)", "(cn:dn:=%s)", "(macAddress=%s", "(macAddress=%s))", "((cn=%s))",
          "(cn=%s\\zz)", "(cn=(%s)", "(&)(cn=%s)", "(cn=\\2a%s)", "(cn=%s)(cn=x)"]


@pytest.mark.parametrize("value", AGREED)
def test_the_loader_accepts_the_filters_the_ldap_client_can_send(value: str) -> None:
    # A filter the loader took but the client could not send would fail
    # every lookup at run time; one the client sends is a valid setting.
    from cnrd.ldap.filter import render

    try:
        render(value, "02:00:00:00:00:01")
        sendable = True
    except ValueError:
        sendable = False
    try:
        loads(_ldap(f"search-filter = {value}\n"), FILE)
        loaded = True
    except ConfigError:
        loaded = False
    assert loaded == sendable


def test_the_agreement_list_holds_filters_of_both_kinds() -> None:
    from cnrd.ldap.filter import render

    def sendable(value: str) -> bool:
        try:
            render(value, "x")
        except ValueError:
            return False
        return True

    kinds = [sendable(v) for v in AGREED]
    assert kinds.count(True) >= 5 and kinds.count(False) >= 5
