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
    "LOG_SETTINGS",
    "MULTILINE_PARSERS",
    "SERVER_OPTIONS",
    "InvalidValue",
    "format_range",
    "parse_action",
    "parse_bool",
    "parse_duration",
    "parse_hex",
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
    "parse_range",
    "parse_size",
    "parse_subnet",
    "parse_time",
    "split_ranges",
]


_TRUE = frozenset({"true", "yes", "on", "enabled", "1"})
_FALSE = frozenset({"false", "no", "off", "disabled", "0"})

LOG_SETTINGS = frozenset({
    "default", "failover-detail", "no-failover-conflict", "no-failover-activity",
    "json", "incoming-packet-detail", "outgoing-packet-detail",
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


# Parsers whose values may span indented continuation lines.
MULTILINE_PARSERS: frozenset[Callable[..., Any]] = frozenset({parse_list, split_ranges, parse_log_settings})
