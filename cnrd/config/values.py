"""One converter per configuration value type, and the tables of allowed words.

Each ``parse_*`` takes the raw INI text of one value and returns the typed
value or raises :class:`InvalidValue` with the reason; the loader adds the
file, section and key.  ``cnrctl`` and the admin API convert values they are
given with the same functions, so a value means the same everywhere.

Pure module.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from cnrd.dhcp.options import option_from_text
from cnrd.dhcp.packet import parse_hw
from cnrd.leases.model import Range
from cnrd.text import int_to_ip, suggest

__all__ = [
    "ACTIONS",
    "CLIENT_PROPERTIES",
    "LOG_SETTINGS",
    "MULTILINE_PARSERS",
    "SERVER_OPTIONS",
    "InvalidValue",
    "format_range",
    "parse_action",
    "parse_bool",
    "parse_boot_field",
    "parse_class_lookup_id",
    "parse_dn",
    "parse_duration",
    "parse_hex",
    "parse_host",
    "parse_http_url",
    "parse_hw_address",
    "parse_int",
    "parse_ipv4",
    "parse_list",
    "parse_listen",
    "parse_log_settings",
    "parse_name",
    "parse_percent",
    "parse_policy_option",
    "parse_query_dictionary",
    "parse_range",
    "parse_search_filter",
    "parse_seconds",
    "parse_size",
    "parse_subnet",
    "parse_time",
    "split_ranges",
]


_TRUE = frozenset({"true", "yes", "on", "enabled", "1"})
_FALSE = frozenset({"false", "no", "off", "disabled", "0"})

LOG_SETTINGS = frozenset({
    "default", "failover-detail", "no-failover-conflict", "no-failover-activity",
    "json", "incoming-packet-detail", "outgoing-packet-detail", "no-success-messages",
})

ACTIONS = frozenset({"exclude"})

# Options the server computes per packet; letting a policy set them would
# produce duplicates or lies on the wire.  51 has its own policy attribute.
SERVER_OPTIONS = {
    0: "pad is not an option",
    255: "end is not an option",
    50: "requested-address is sent by clients only",
    51: "set lease-time instead",
    52: "option-overload is managed by the server",
    53: "dhcp-message-type is set by the server",
    54: "dhcp-server-identifier is set by the server (see [server] server-identifier)",
    55: "parameter-request-list is sent by clients only",
    57: "max-message-size is sent by clients only",
    61: "client-identifier is sent by clients only",
    82: "relay-agent-info is added by relays only",
}

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(?:[0-9]+[smhdw])+", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"([0-9]+)([smhdw])", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"([0-9]+)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_LIST_SPLIT_RE = re.compile(r"[\s,]+")


class InvalidValue(Exception):
    """A bad value; the caller knows the file, section and key."""


def parse_bool(text: str) -> bool:
    """A CNR boolean: true/false, yes/no, on/off, enabled/disabled, 1/0."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidValue(f"bad boolean {text!r} (use true or false)")


def _int_of(digits: str, what: str) -> int:
    """int() of an ASCII decimal string the caller has matched.  Python refuses
    more than sys.int_max_str_digits (4300) digits with a ValueError; here that
    is a bad value, not a crash."""
    try:
        return int(digits)
    except ValueError:
        raise InvalidValue(f"{what} has too many digits ({len(digits)})") from None


def parse_int(text: str, low: int | None = None, high: int | None = None) -> int:
    """A decimal integer, optionally bounded (inclusive)."""
    t = text.strip()
    if not _INT_RE.fullmatch(t):
        raise InvalidValue(f"bad integer {text!r}")
    value = _int_of(t, "integer")
    _check_bounds(value, low, high, t)
    return value


def _check_bounds(value: float, low: float | None, high: float | None, text: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise InvalidValue(f"{text} is out of range (at least {low})")
        if low is None:
            raise InvalidValue(f"{text} is out of range (at most {high})")
        raise InvalidValue(f"{text} is out of range ({low}..{high})")


def parse_duration(text: str, low: int | None = 0, high: int | None = None) -> int:
    """A duration in seconds: ``3600``, ``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or ``1h30m``."""
    t = "".join(text.split())
    # isascii: str.isdigit() is also true for digits int() refuses, like '²'.
    if t.isascii() and t.isdigit():
        seconds = _int_of(t, "duration")
    elif _DURATION_RE.fullmatch(t):
        seconds = sum(_int_of(n, "duration") * _DURATION_UNITS[u.lower()]
                      for n, u in _DURATION_PART_RE.findall(t))
    else:
        raise InvalidValue(f"bad duration {text.strip()!r}")
    if low is not None and seconds < low:
        raise InvalidValue(f"duration {text.strip()!r} is too short (at least {low} s)")
    if high is not None and seconds > high:
        raise InvalidValue(f"duration {text.strip()!r} is too long (at most {high} s)")
    return seconds


def parse_size(text: str, low: int = 1, high: int = (1 << 63) - 1) -> int:
    """A byte count, with an optional binary suffix: ``4G``, ``512M``, ``64K``."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise InvalidValue(f"bad size {text.strip()!r} (use bytes or a K/M/G/T suffix)")
    value = _int_of(m.group(1), "size") * _SIZE_UNITS[m.group(2).upper()]
    if value < low:
        raise InvalidValue(f"size {text.strip()!r} is too small (at least {low} bytes)")
    if value > high:
        raise InvalidValue(f"size {text.strip()!r} is too large (at most {high} bytes)")
    return value


def parse_percent(text: str) -> float:
    """A percentage 0..100, with or without a trailing ``%``."""
    t = text.strip().removesuffix("%").strip()
    try:
        value = float(t)
    except ValueError:
        raise InvalidValue(f"bad percentage {text.strip()!r}") from None
    if not 0 <= value <= 100:  # also rejects nan
        raise InvalidValue(f"percentage {text.strip()} is out of range (0..100)")
    return value


def parse_ipv4(text: str) -> int:
    """A dotted-quad IPv4 address, as an integer in host byte order."""
    t = text.strip()
    try:
        return int(ipaddress.IPv4Address(t))
    except ValueError:
        raise InvalidValue(f"bad IPv4 address {t!r}") from None


def parse_list(text: str) -> tuple[str, ...]:
    """Words separated by commas and/or whitespace."""
    return tuple(w for w in _LIST_SPLIT_RE.split(text.strip()) if w)


def parse_time(text: str) -> int | None:
    """A point in time: epoch seconds or ISO-8601; ``0`` means unset (None).

    An ISO date-time without a UTC offset is taken as UTC, so the meaning of
    the file does not depend on the server's time zone.
    """
    t = text.strip()
    if t.isascii() and t.isdigit():  # not '²', which isdigit() accepts and int() refuses
        value = _int_of(t, "time")
        return value or None
    try:
        when = datetime.datetime.fromisoformat(t)
    except ValueError:
        raise InvalidValue(f"bad time {t!r} (use epoch seconds or ISO-8601, e.g. 2024-05-01T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp())


def parse_hex(text: str) -> bytes:
    """Hex bytes, optionally separated by ``:``, ``-``, ``.`` or spaces."""
    t = re.sub(r"[\s:.\-]", "", text)
    if t.lower().startswith("0x"):
        t = t[2:]
    try:
        value = bytes.fromhex(t)
    except ValueError:
        raise InvalidValue(f"bad hex {text.strip()!r}") from None
    if not value:
        raise InvalidValue("must not be empty")
    return value


def parse_hw_address(text: str) -> bytes:
    """A hardware address (via cnrd.dhcp.packet.parse_hw)."""
    try:
        return parse_hw(text.strip())
    except ValueError as e:
        # parse_hw's message already quotes the text.
        raise InvalidValue(str(e) or f"bad hardware address {text.strip()!r}") from None


def parse_action(text: str) -> str:
    """A client or client-class action; CNR's ``exclude`` is the only one cnrd has."""
    t = text.strip().lower()
    if t not in ACTIONS:
        raise InvalidValue(f"unknown action {text.strip()!r}{suggest(t, ACTIONS)}; "
                       f"allowed: {', '.join(sorted(ACTIONS))}")
    return t


def parse_name(text: str) -> str:
    """A non-empty name."""
    t = text.strip()
    if not t:
        raise InvalidValue("must not be empty")
    return t


def parse_log_settings(text: str) -> frozenset[str]:
    """CNR log-settings flags, checked against the ones cnrd knows."""
    words = [w.lower() for w in parse_list(text)]
    for w in words:
        if w not in LOG_SETTINGS:
            raise InvalidValue(f"unknown log setting {w!r}{suggest(w, LOG_SETTINGS)}")
    return frozenset(words)


def parse_http_url(text: str) -> str:
    """An absolute ``http://`` or ``https://`` URL with a host (a webhook)."""
    t = text.strip()
    if not t or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in t):
        raise InvalidValue(f"bad URL {t!r} (no blanks or control characters)")
    try:
        parts = urllib.parse.urlsplit(t)
        parts.port  # raises ValueError for a bad port
    except ValueError as e:
        raise InvalidValue(f"bad URL {t!r}: {e}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidValue(f"bad URL {t!r}: use http:// or https://")
    if not parts.hostname:
        raise InvalidValue(f"bad URL {t!r}: no host")
    if not t.isascii():
        raise InvalidValue(f"bad URL {t!r}: write non-ASCII characters %-encoded")
    return t


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port``."""
    t = text.strip()
    host, sep, port = t.rpartition(":")
    if not sep or not host:
        raise InvalidValue(f"bad listen address {t!r} (use host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InvalidValue(f"bad listen address {t!r} (write an IPv6 host as [addr]:port)")
    if not host or any(c.isspace() for c in host):
        raise InvalidValue(f"bad listen address {t!r}")
    return host, parse_int(port, 0, 65535)


def split_ranges(text: str) -> tuple[str, ...]:
    """The items of a scope's ``ranges``: ``first-last`` or single addresses."""
    # "a - b" with blanks round the dash is one range, not three words.
    return parse_list(re.sub(r"\s*-\s*", "-", text))


def parse_subnet(text: str) -> tuple[int, int]:
    """``address/prefix-length`` with no host bits set: (network, prefix length)."""
    t = text.strip()
    if "/" not in t:
        raise InvalidValue(f"bad subnet {t!r} (use address/prefix-length, e.g. 10.1.0.0/24)")
    try:
        net = ipaddress.IPv4Network(t, strict=False)
    except ValueError:
        raise InvalidValue(f"bad subnet {t!r} (use address/prefix-length, e.g. 10.1.0.0/24)") from None
    if int(ipaddress.IPv4Address(t.partition("/")[0])) != int(net.network_address):
        raise InvalidValue(f"{t} has host bits set (the subnet is {net})")
    return int(net.network_address), net.prefixlen


def parse_range(item: str) -> Range:
    """One item of :func:`split_ranges`: ``first-last`` or a single address."""
    first_text, dash, last_text = item.partition("-")
    try:
        first = parse_ipv4(first_text)
        last = parse_ipv4(last_text) if dash else first
    except InvalidValue as e:
        raise InvalidValue(f"{e} in range {item!r}") from None
    if first > last:
        raise InvalidValue(f"{item} is backwards (first address after last)")
    return Range(first, last)


def format_range(r: Range) -> str:
    """A range as the file writes it: ``first-last``, or one address."""
    if r.first == r.last:
        return int_to_ip(r.first)
    return f"{int_to_ip(r.first)}-{int_to_ip(r.last)}"


def parse_policy_option(name: str, text: str) -> tuple[int, bytes]:
    """A policy's ``option.NAME = value``: (code, value encoded for the wire).

    Continuation lines extend a list value, so they are joined with blanks.
    """
    try:
        code, value = option_from_text(name, " ".join(text.split("\n")).strip())
    # OptionValueError is a ValueError; KeyError guards an unknown-name lookup.
    except (ValueError, KeyError) as e:
        raise InvalidValue(str(e) or f"bad value {text.strip()!r}") from None
    if code in SERVER_OPTIONS:
        raise InvalidValue(f"option {code} cannot be set in a policy: {SERVER_OPTIONS[code]}")
    return code, value


def parse_boot_field(text: str, size: int) -> str:
    """packet-file-name or packet-server-name: text for a BOOTP header field of ``size`` bytes.

    RFC 2131 §2 has ``sname`` (64 bytes) and ``file`` (128 bytes) hold
    null-terminated strings, so the text may fill all but one byte.
    """
    t = text.strip()
    if not t:
        raise InvalidValue("must not be empty")
    if not t.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in t):
        raise InvalidValue(f"{t!r}: only printable ASCII fits a BOOTP header field")
    if len(t) > size - 1:
        raise InvalidValue(f"{len(t)} characters; the field holds {size - 1} (and its terminating NUL)")
    return t


# -- LDAP client registry ([ldap NAME] and the client-class [server] keys) ----

#: The client properties an LDAP attribute can give (query-dictionary): the
#: keys of a [client] section, and the address an entry reserves.
CLIENT_PROPERTIES = frozenset({"client-class", "host-name", "policy", "action", "reserved-address"})

# RFC 4512 attribute description: a name or numeric OID, then ;options.
_LDAP_ATTR = r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*"
_LDAP_ATTR_RE = re.compile(_LDAP_ATTR)
_LDAP_OID = r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)"
# RFC 4515 item up to its value: attr, or the extensible form's :dn and :rule.
_FILTER_ITEM_RE = re.compile(
    rf"(?P<attr>{_LDAP_ATTR})?(?P<dn>:dn)?(?P<rule>:{_LDAP_OID})?(?P<op>:=|~=|>=|<=|=)", re.IGNORECASE)
# The LDAP client encodes with pyasn1-modules' Filter, which unrolls the
# recursion three levels deep: and, or and not at the outer two only
# (cnrd.ldap.filter.MAX_NESTING).  The loader refuses what it cannot send.
_FILTER_DEPTH = 2
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SECONDS_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s)?", re.IGNORECASE)
_HEX = frozenset("0123456789abcdefABCDEF")
_RELAY_AGENT_SUBOPTIONS = {"circuit-id": 1, "remote-id": 2}  # RFC 3046 sub-option codes


def parse_host(text: str) -> str:
    """An IPv4 address or a DNS host name (RFC 1123 labels), as written."""
    t = text.strip()
    if t and all(c.isdigit() or c == "." for c in t):
        parse_ipv4(t)
        return t
    labels = t.removesuffix(".").split(".")
    if not t or len(t) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in labels):
        raise InvalidValue(f"bad host {t!r} (use an IPv4 address or a host name)")
    return t


def parse_seconds(text: str, low: float, high: float) -> float:
    """A time in seconds, fractions allowed: ``2``, ``0.5``, ``1.5s``, ``500ms``, or a duration (``1m``)."""
    t = "".join(text.split())
    m = _SECONDS_RE.fullmatch(t)
    if m:
        value = float(m.group(1)) / (1000 if (m.group(2) or "").lower() == "ms" else 1)
    else:
        try:
            value = parse_duration(t, None)
        except InvalidValue:
            raise InvalidValue(f"bad time {text.strip()!r} (use seconds, e.g. 2, 0.5, 1.5s or 500ms)") from None
    if not low <= value <= high:
        raise InvalidValue(f"{text.strip()} is out of range ({low:g} s..{high:g} s)")
    return value


def _split_unescaped(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` not escaped by a backslash (RFC 4514)."""
    parts, current, i = [], [], 0
    while i < len(text):
        if text[i] == "\\":
            current.append(text[i:i + 2])
            i += 2
            continue
        if text[i] == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    parts.append("".join(current))
    return parts


def parse_dn(text: str) -> str:
    """An LDAP distinguished name (RFC 4514): ``type=value`` pairs separated by commas, as written."""
    t = text.strip()
    if not t:
        raise InvalidValue("must not be empty (a DN such as cn=admin,dc=example,dc=com)")
    for rdn in _split_unescaped(t, ","):
        for ava in _split_unescaped(rdn, "+"):
            kind, eq, _ = ava.partition("=")
            if not eq or not re.fullmatch(_LDAP_OID, kind.strip()):
                raise InvalidValue(f"bad DN {t!r}: {ava.strip()!r} is not type=value")
    return t


def parse_search_filter(text: str) -> str:
    """An RFC 4515 search filter with ``%s`` where the escaped lookup id goes, as written.

    Beyond the grammar, what the LDAP client cannot send is refused too:
    extensible matches, and and/or/not nested more than two levels.
    """
    t = text.strip()
    if "%s" not in t:
        raise InvalidValue(f"filter {t!r} has no %s (where the client's lookup id goes)")
    sample = t.replace("%s", "x")
    try:
        end = _filter_end(sample, 0, 0)
        if end != len(sample):
            raise InvalidValue(f"text after the closing parenthesis at character {end + 1}")
    except InvalidValue as e:
        raise InvalidValue(f"bad filter {t!r}: {e}") from None
    return t


def _filter_end(s: str, i: int, depth: int) -> int:
    """Where the RFC 4515 ``filter`` starting at ``s[i]`` ends; InvalidValue when it is not one."""
    if i >= len(s) or s[i] != "(":
        raise InvalidValue(f"expected '(' at character {i + 1}")
    i += 1
    if s[i:i + 1] in ("&", "|", "!") and depth >= _FILTER_DEPTH:
        raise InvalidValue(f"and, or and not nested more than {_FILTER_DEPTH} levels "
                           f"(character {i + 1}): cnrd's LDAP client cannot send that")
    if s[i:i + 1] in ("&", "|"):
        i += 1
        count = 0
        while s[i:i + 1] == "(":
            i = _filter_end(s, i, depth + 1)
            count += 1
        if not count:
            raise InvalidValue(f"'{s[i - 1]}' needs at least one filter")
    elif s[i:i + 1] == "!":
        i = _filter_end(s, i + 1, depth + 1)
    else:
        i = _item_end(s, i)
    if s[i:i + 1] != ")":
        raise InvalidValue(f"expected ')' at character {i + 1}")
    return i + 1


def _item_end(s: str, i: int) -> int:
    """Where the simple, present, substring or extensible item at ``s[i]`` ends (RFC 4515 §3)."""
    m = _FILTER_ITEM_RE.match(s, i)
    if m is None:
        raise InvalidValue(f"expected an attribute and =, ~=, >=, <= or := at character {i + 1}")
    op = m.group("op")
    extensible = m.group("dn") or m.group("rule")
    if op == ":=" and not (m.group("attr") or m.group("rule")):
        raise InvalidValue(f"':=' needs an attribute or a matching rule at character {i + 1}")
    if op != ":=" and extensible:
        raise InvalidValue(f"':dn' and a matching rule go with ':=' (character {i + 1})")
    if op != ":=" and not m.group("attr"):
        raise InvalidValue(f"expected an attribute before {op!r} at character {i + 1}")
    if op == ":=":
        raise InvalidValue(f"extensible match (character {i + 1}): cnrd's LDAP client cannot send it")
    i = m.end()
    while i < len(s) and s[i] != ")":
        c = s[i]
        if c == "\\":
            if not (len(s) > i + 2 and s[i + 1] in _HEX and s[i + 2] in _HEX):
                raise InvalidValue(f"'\\' must be followed by two hex digits (character {i + 1})")
            i += 3
            continue
        if c == "(" or c == "\x00":
            raise InvalidValue(f"{c!r} in a value must be escaped (character {i + 1})")
        if c == "*" and op != "=":
            raise InvalidValue(f"'*' in a {op} value must be escaped as \\2a (character {i + 1})")
        if c == "*" and s[i + 1:i + 2] == "*":
            raise InvalidValue(f"empty substring between two '*' (character {i + 1})")
        i += 1
    return i


def parse_query_dictionary(text: str) -> tuple[tuple[str, str], ...]:
    """``ldapattr=property`` pairs separated by commas: which attribute gives which client property."""
    out: list[tuple[str, str]] = []
    for item in (part.strip() for part in re.split(r"[,\n]", text)):
        if not item:
            continue
        attr, eq, prop = (p.strip() for p in item.partition("="))
        prop = prop.lower()
        if not eq or not _LDAP_ATTR_RE.fullmatch(attr):
            raise InvalidValue(f"bad entry {item!r} (use ldapattr=property, e.g. cn=host-name)")
        if prop not in CLIENT_PROPERTIES:
            raise InvalidValue(f"unknown client property {prop!r}{suggest(prop, CLIENT_PROPERTIES)}; "
                               f"allowed: {', '.join(sorted(CLIENT_PROPERTIES))}")
        if any(p == prop for _, p in out):
            raise InvalidValue(f"{prop} is mapped twice")
        out.append((attr, prop))
    if not out:
        raise InvalidValue("must not be empty (ldapattr=property pairs, e.g. cn=host-name)")
    return tuple(out)


def parse_class_lookup_id(text: str) -> tuple[str, int] | None:
    """client-class-lookup-id: ``none``, ``option N`` or ``relay-agent circuit-id|remote-id``."""
    words = text.lower().split()
    usage = "use none, option N (1..254), relay-agent circuit-id or relay-agent remote-id"
    if words == ["none"]:
        return None
    if len(words) == 2 and words[0] == "option":
        return "option", parse_int(words[1], 1, 254)
    if len(words) == 2 and words[0] == "relay-agent" and words[1] in _RELAY_AGENT_SUBOPTIONS:
        return "relay-agent", _RELAY_AGENT_SUBOPTIONS[words[1]]
    raise InvalidValue(f"bad lookup id {text.strip()!r} ({usage})")


# Parsers whose values may span indented continuation lines.
MULTILINE_PARSERS: frozenset[Callable[..., Any]] = frozenset({parse_list, split_ranges, parse_log_settings,
                                                              parse_query_dictionary})
