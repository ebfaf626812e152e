"""``key=value`` as nrcmd takes it: the attributes cnrctl knows, and their values as JSON for the API.

Values are converted by the configuration file's own parsers, so a value
the INI file would refuse is refused before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cnrd.config import (
    InvalidValue,
    parse_bool,
    parse_duration,
    parse_int,
    parse_ipv4,
    parse_list,
    parse_log_settings,
    parse_percent,
)
from cnrd.config.timespec import TimeSpecError, format_iso, parse_when
from cnrd.ctl.errors import UsageError

__all__ = ["SERVER_ATTRIBUTES", "PAIR_ATTRIBUTES", "SYNC_OPERATIONS", "SYNC_DIRECTIONS", "parse_assignment",
           "convert_value", "assignments", "bool_attribute", "partner_down_time"]

#: ``failover-pair NAME sync`` operations and directions (the API's words; CNR 7.2's Update, Complete, Exact).
SYNC_OPERATIONS = ("update", "complete", "exact")
SYNC_DIRECTIONS = ("main-to-backup", "backup-to-main")

_UNSET_WORDS = frozenset({"", "0", "none", "null", "unset"})

#: [server] attributes the API can change (PATCH /dhcp/attributes) and their types.
SERVER_ATTRIBUTES: dict[str, str] = {
    "start-on-reboot": "bool",
    "failover-recover": "time",
    "log-settings": "log-settings",
    "max-dhcp-requests": "int",
    "safe-period": "duration",
}

#: failover-pair attributes the API can change (PATCH /failover-pairs/NAME) and their types.
PAIR_ATTRIBUTES: dict[str, str] = {
    "main": "ipv4",
    "backup": "ipv4",
    "failover": "bool",
    "mclt": "duration",
    "backup-pct": "percent",
    "dynamic-bootp-backup-pct": "optional-percent",
    "load-balancing": "bool",
    "split": "int",
    "load-balance-max-seconds": "duration",
    "failover-poll-interval": "duration",
    "failover-poll-timeout": "duration",
    "use-safe-period": "bool",
    "safe-period": "duration",
    "max-unacked-updates": "int",
}


def parse_assignment(text: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); UsageError without an '='."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise UsageError(f"expected key=value, not {text!r}")
    return key, value.strip()


def _time_value(text: str, now: float | None = None) -> str | None:
    """failover-recover text for the API: None unsets; dates in words become ISO here.

    nrcmd reads a date in words in the time zone of the nrcmd process, so
    cnrctl converts it before sending; ``-3d`` stays relative (the server's
    clock counts it) and ISO or epoch seconds go as they are.
    """
    t = text.strip()
    if t.lower() in _UNSET_WORDS:
        return None
    if t.isdigit():
        return t
    try:
        when = parse_when(t, int(time.time() if now is None else now))
    except TimeSpecError as e:
        raise InvalidValue(str(e)) from None  # convert_value names the key
    return t if t.startswith("-") else format_iso(when)


def convert_value(key: str, text: str, kind: str | None) -> Any:
    """The JSON value for ``key=text``, converted as the configuration file would read it.

    ``kind`` is the attribute's type (see SERVER_ATTRIBUTES); None for a key
    cnrctl does not know, which is sent as a number, a boolean or a string
    (the server then says what it thinks of it).
    """
    try:
        if kind == "bool":
            return parse_bool(text)
        if kind == "int":
            return parse_int(text)
        if kind == "duration":
            return parse_duration(text)
        if kind == "percent":
            return parse_percent(text)
        if kind == "optional-percent":
            return None if text.strip().lower() in _UNSET_WORDS - {"0"} else parse_percent(text)
        if kind == "ipv4":
            parse_ipv4(text)
            return text.strip()
        if kind == "log-settings":
            parse_log_settings(text)  # refuse a misspelt flag before sending
            return [w.lower() for w in parse_list(text)]
        if kind == "time":
            return _time_value(text)
    except InvalidValue as e:
        raise UsageError(f"{key}: {e}") from None
    t = text.strip()
    try:
        return parse_int(t)
    except InvalidValue:
        pass
    if t.lower() in ("true", "false", "enabled", "disabled", "on", "off", "yes", "no"):
        return parse_bool(t)
    return t


def assignments(items: Sequence[str], kinds: dict[str, str]) -> dict[str, Any]:
    if not items:
        raise UsageError("nothing to set (give key=value ...)")
    out: dict[str, Any] = {}
    for item in items:
        key, text = parse_assignment(item)
        out[key] = convert_value(key, text, kinds.get(key))
    return out


def bool_attribute(name: str, kinds: dict[str, str], what: str) -> str:
    key = name.strip().lower()
    if kinds.get(key) != "bool":
        flags = ", ".join(k for k, v in kinds.items() if v == "bool")
        raise UsageError(f"{what} has no on/off attribute {name!r} (there: {flags})")
    return key


def partner_down_time(text: str) -> str:
    """setPartnerDown's time for the API; a date in words is read here, in cnrctl's time zone (as nrcmd does)."""
    try:
        when = parse_when(text, int(time.time()))
    except TimeSpecError as e:
        raise UsageError(str(e)) from None
    t = text.strip()
    if t.startswith("-") or not t[0].isalpha():
        return t  # relative: the server's clock counts back; ISO: unambiguous
    iso = format_iso(when)
    if iso is None:
        raise UsageError(f"bad time {t!r}")
    return iso
