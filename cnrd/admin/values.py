"""Values of the admin commands: JSON in, config values out, INI text for ``save``, lease JSON.

Each parser accepts the JSON type and, so a CLI can pass what the operator
typed, the INI file's text for it, parsed exactly as the config loader
would.  A bad value is :class:`AdminError` 400 with a one-line reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from cnrd.config import (
    LOG_SETTINGS,
    InvalidValue,
    parse_bool,
    parse_duration,
    parse_int,
    parse_ipv4,
    parse_log_settings,
    parse_percent,
)
from cnrd.config.timespec import TimeSpecError, format_iso, parse_when
from cnrd.failover.states import S
from cnrd.leases.model import Lease, LeaseState
from cnrd.text import hw_text, ip_text, ip_to_int, suggest

T = TypeVar("T")

#: Failover states in which a server answers no client while it catches up:
#: /ready says 503 (docs/recovery.md).
NOT_READY_STATES = frozenset({S.STARTUP, S.RECOVER, S.RECOVER_WAIT, S.POTENTIAL_CONFLICT})

LEASE_STATES = tuple(s.label for s in LeaseState)
# Times and durations travel as 32-bit seconds on the failover wire.
MAX_TIME = 0xFFFFFFFF
MAX_PAGE = 1000
DEFAULT_PAGE = 100



class AdminError(Exception):
    """A command refused: ``status`` is the HTTP status to answer, ``reason`` one line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason.replace("\n", " ").replace("\r", " ")



def parse_address(text: Any) -> int:
    """A dotted-quad IPv4 address from the API, or AdminError 400."""
    if not isinstance(text, str):
        raise AdminError(400, "an address must be a string like 10.1.0.5")
    try:
        return ip_to_int(text)
    except ValueError:
        raise AdminError(400, f"bad IPv4 address {text!r}") from None


def parse_time_value(value: Any, now: int, tz: datetime.tzinfo | None = None) -> int | None:
    """failover-recover as the API takes it: ISO 8601, ``-3d``, a date in words, epoch seconds; null/0 unset."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AdminError(400, "failover-recover must be a time string, epoch seconds, 0 or null")
    if isinstance(value, int):
        if value == 0:
            return None  # CNR: "dhcp set failover-recover=0" unsets it
        when = value
    elif value.strip().isascii() and value.strip().isdigit():
        when = int(value.strip())  # epoch seconds, as in the INI file
        if not when:
            return None  # 0 = unset
    else:
        try:
            when = parse_when(value, now, tz)
        except TimeSpecError as e:
            raise AdminError(400, str(e)) from None
    if not 0 < when <= MAX_TIME:
        raise AdminError(400, f"time {value!r} is out of range")
    return when


# -- typed values from JSON ------------------------------------------------
# Each accepts the JSON type and, so a CLI can pass what the operator typed,
# the INI file's text for it (parsed exactly as the config loader would).

def config_text(parse: Callable[..., T], value: str, *args: Any) -> T:
    try:
        return parse(value, *args)
    except InvalidValue as e:
        raise AdminError(400, str(e)) from None


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return config_text(parse_bool, value)
    raise AdminError(400, f"expected true or false, not {value!r}")


def as_int(low: int | None, high: int | None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return config_text(parse_int, str(value), low, high)
        if isinstance(value, str):
            return config_text(parse_int, value, low, high)
        raise AdminError(400, f"expected an integer, not {value!r}")
    return parse


def as_duration(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise AdminError(400, f"bad duration {value}")
            return config_text(parse_duration, str(value), low, MAX_TIME)
        if isinstance(value, str):
            return config_text(parse_duration, value, low, MAX_TIME)
        raise AdminError(400, f"expected seconds or a duration like 1h30m, not {value!r}")
    return parse


def as_percent(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return config_text(parse_percent, repr(float(value)))
    if isinstance(value, str):
        return config_text(parse_percent, value)
    raise AdminError(400, f"expected a percentage 0..100, not {value!r}")


def as_log_settings(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return config_text(parse_log_settings, value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        # A JSON list names each setting exactly; a string is read as the INI file would.
        for v in value:
            if v not in LOG_SETTINGS:
                raise AdminError(400, f"unknown log setting {v!r}" + suggest(v.lower(), LOG_SETTINGS))
        return frozenset(value)
    raise AdminError(400, "log-settings must be a list of strings")


def as_ipv4(value: Any) -> int:
    if not isinstance(value, str):
        raise AdminError(400, f"expected an IPv4 address string, not {value!r}")
    return config_text(parse_ipv4, value)


# -- INI text for a value, for save ----------------------------------------

def ini_bool(v: bool) -> str:
    return "true" if v else "false"


def ini_pct(v: float | None) -> str | None:
    return None if v is None else f"{v:g}"


def ini_time(v: int | None) -> str | None:
    return format_iso(v) if v else None  # unset: the key is removed


def ini_log(v: frozenset[str]) -> str | None:
    return ", ".join(sorted(v)) or None


# key -> (ServerConfig field, parser, INI text)
SERVER_ATTRS: dict[str, tuple[str, Callable[[Any], Any] | None, Callable[[Any], str | None]]] = {
    "start-on-reboot": ("start_on_reboot", as_bool, ini_bool),
    "failover-recover": ("failover_recover", None, ini_time),  # parsed with the clock: parse_time_value
    "log-settings": ("log_settings", as_log_settings, ini_log),
    "max-dhcp-requests": ("max_dhcp_requests", as_int(1, 100000), str),
    "safe-period": ("safe_period", as_duration(0), str),
}

# key -> (FailoverPairConfig field, parser, INI text); the bounds are the loader's.
PAIR_ATTRS: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], str | None]]] = {
    "main": ("main", as_ipv4, ip_text),
    "backup": ("backup", as_ipv4, ip_text),
    "failover": ("failover", as_bool, ini_bool),
    "mclt": ("mclt", as_duration(30), str),
    "backup-pct": ("backup_pct", as_percent, ini_pct),
    "dynamic-bootp-backup-pct": ("dynamic_bootp_backup_pct", as_percent, ini_pct),
    "load-balancing": ("load_balancing", as_bool, ini_bool),
    "split": ("split", as_int(0, 256), str),
    "load-balance-max-seconds": ("load_balance_max_seconds", as_duration(0), str),
    "failover-poll-interval": ("failover_poll_interval", as_duration(1), str),
    "failover-poll-timeout": ("failover_poll_timeout", as_duration(1), str),
    "use-safe-period": ("use_safe_period", as_bool, ini_bool),
    "safe-period": ("safe_period", as_duration(0), str),
    "max-unacked-updates": ("max_unacked_updates", as_int(1, 1000), str),
}
# What makes the server main or backup of a pair, or takes it out of failover:
# set through the API, it waits for the next start (the failover session and
# its stored state are made for one role), and the answer says so.
PAIR_PENDING = ("main", "backup", "failover")


def json_pending(key: str, value: Any) -> Any:
    return ip_text(value) if key in ("main", "backup") else value


def lease_json(lease: Lease, scope: str | None, failover: bool) -> dict[str, Any]:
    """The API's lease object."""
    if failover and lease.state is LeaseState.BACKUP:
        owner: str | None = "backup"
    elif failover and lease.state is LeaseState.AVAILABLE:
        owner = "main"
    else:
        owner = None
    expires = lease.expiration if 0 < lease.expiration < Lease.INFINITE else None
    return {
        "address": ip_text(lease.address),
        "state": lease.state.label,
        "scope": lease.scope or scope,
        "hardware-address": hw_text(lease.hw[1:]) if len(lease.hw) > 1 else None,
        "client-id": lease.client_id.hex() if lease.client_id else None,
        "host-name": lease.host_name or None,
        "start": format_iso(lease.start),
        "expires": format_iso(expires),
        "owner": owner,
        "partner-time": format_iso(lease.partner_time),
    }


def query_args(query: Mapping[str, list[str]], allowed: Iterable[str]) -> dict[str, str]:
    """A GET's query string as one value per parameter, only ``allowed`` ones (400 otherwise)."""
    allowed = tuple(allowed)
    args: dict[str, str] = {}
    for key, values in query.items():
        if key not in allowed:
            raise AdminError(400, f"unknown query parameter {key!r}" + suggest(key, allowed))
        if len(values) != 1:
            raise AdminError(400, f"query parameter {key!r} given more than once")
        args[key] = values[0]
    return args


def body_object(body: Any, allowed: Iterable[str]) -> dict[str, Any]:
    """A command's arguments: None (no body) or a JSON object with only ``allowed`` keys."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise AdminError(400, "the body must be a JSON object")
    allowed = tuple(allowed)
    for key in body:
        if key not in allowed:
            raise AdminError(400, f"unknown key {key!r}" + suggest(key, allowed))
    return body
