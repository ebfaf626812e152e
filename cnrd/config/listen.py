"""Where a server listens: Twisted endpoint descriptions, and the older ``host:port``.

``[api] listen`` and ``[api] metrics-listen`` take a description in the
syntax of :func:`twisted.internet.endpoints.serverFromString`
(``tcp:8067:interface=127.0.0.1``, ``ssl:8443:privateKey=key.pem:certKey=cert.pem``,
``unix:/run/cnrd/api.sock``).  A value that is ``host:port`` or
``[v6addr]:port`` (no endpoint type in front) is the form older files use;
it means ``tcp:port:interface=host`` (``tcp6`` for an IPv6 host).

This module only reads the text, so a mistake is one line at load time;
what needs the files (an ``ssl:`` key and certificate) or the process
(``systemd:``'s inherited sockets) is checked when the server starts,
where Twisted builds the endpoint.

Pure module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnrd.config.values import InvalidValue, parse_int, parse_listen

__all__ = ["DEFAULT_API_LISTEN", "Listen", "escape", "parse_endpoint"]

# The endpoint types a listen value may name: Twisted's own, and its systemd
# plugin's for sockets systemd opens (socket activation).
_TYPES = ("tcp", "tcp6", "ssl", "unix", "systemd")


@dataclass(frozen=True)
class Listen:
    """One listening address: the Twisted description and what a client needs to reach it."""

    description: str  # for serverFromString
    kind: str  # "tcp", "tcp6", "ssl", "unix" or a plugin's type
    host: str | None = None  # tcp/tcp6/ssl: the interface ("" is every address)
    port: int | None = None  # tcp/tcp6/ssl: 0 is any free port
    path: str | None = None  # unix: the socket file

    @property
    def scheme(self) -> str:
        """How a client speaks to it: "http", "https", "unix" or "" (a plugin's: unknown)."""
        return {"tcp": "http", "tcp6": "http", "ssl": "https", "unix": "unix"}.get(self.kind, "")


DEFAULT_API_LISTEN = Listen("tcp:8067:interface=127.0.0.1", "tcp", "127.0.0.1", 8067)


def escape(value: str) -> str:
    """``value`` as one argument of an endpoint description (``:``, ``=`` and ``\\`` escaped)."""
    return re.sub(r"([:=\\])", r"\\\1", value)


def _split(text: str) -> list[str]:
    """The description's colon-separated fields, with backslash escapes kept in them."""
    fields, current, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if c == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    fields.append("".join(current))
    return fields


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _arguments(fields: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional and keyword arguments, unescaped, as Twisted reads them."""
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for f in fields:
        # The first "=" that no backslash escapes separates a keyword from its value.
        m = re.match(r"((?:\\.|[^\\=])*)=(.*)", f, re.DOTALL)
        if m:
            kwargs[_unescape(m.group(1))] = _unescape(m.group(2))
        else:
            args.append(_unescape(f))
    return args, kwargs


def _port(args: list[str], kwargs: dict[str, str]) -> int:
    text = kwargs.get("port", args[0] if args else None)
    if text is None or text == "":
        raise InvalidValue("no port (e.g. tcp:8067:interface=127.0.0.1)")
    try:
        return parse_int(text, 0, 65535)
    except InvalidValue as e:
        raise InvalidValue(f"bad port: {e}") from None


def parse_endpoint(text: str) -> Listen:
    """A listen value: an endpoint description, or ``host:port`` / ``[v6addr]:port``."""
    t = text.strip()
    if not t:
        raise InvalidValue("empty (use e.g. tcp:8067:interface=127.0.0.1)")
    kind = t.split(":", 1)[0].lower()
    if kind not in _TYPES and "=" not in t:
        try:
            host, port = parse_listen(t)
        except InvalidValue as e:
            raise InvalidValue(f"{e}, or an endpoint description such as tcp:8067:interface=127.0.0.1") from None
        if ":" in host:
            return Listen(f"tcp6:{port}:interface={escape(host)}", "tcp6", host, port)
        return Listen(f"tcp:{port}:interface={escape(host)}", "tcp", host, port)
    fields = _split(t)
    if kind not in _TYPES:
        raise InvalidValue(f"unknown endpoint type {fields[0]!r} (use {', '.join(_TYPES)}, or host:port)")
    args, kwargs = _arguments(fields[1:])
    if kind in ("tcp", "tcp6"):
        unknown = sorted(set(kwargs) - {"port", "interface", "backlog"})
        if unknown:
            raise InvalidValue(f"{kind}: unknown argument {unknown[0]!r} (port, interface, backlog)")
        port = _port(args, kwargs)
        host = kwargs.get("interface", "")
        return Listen(t, kind, host, port)
    if kind == "ssl":
        if "privateKey" not in kwargs:
            raise InvalidValue("ssl: privateKey=FILE is required (and certKey=FILE unless the key file holds "
                               "the certificate too)")
        port = _port(args, kwargs)
        return Listen(t, kind, kwargs.get("interface", ""), port)
    if kind == "unix":
        path = kwargs.get("address", args[0] if args else "")
        if not path:
            raise InvalidValue("unix: no socket path (e.g. unix:/run/cnrd/api.sock)")
        return Listen(t, kind, path=path)
    # systemd: its arguments are checked by Twisted when the server starts.
    return Listen(t, kind)
