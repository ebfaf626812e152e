"""The operator's commands over a running server, apart from HTTP.

:class:`Admin` is what the admin API (:mod:`cnrd.admin.api`) and, through it,
``cnrctl`` do to a live :class:`~cnrd.app.service.DhcpService`: status, the CNR
``dhcp`` commands (getRelatedServers, setPartnerDown, stop/start, reload,
set/enable/disable of attributes), failover-pair changes, lease and scope
queries, and ``save``.  Every method takes and returns plain values (dicts
ready for JSON) and reports a refusal as :class:`AdminError` with the HTTP
status the API should give, so everything here is testable without a web
server.  Methods that must wait for the lease store return a Deferred.

What an operator changes through here is applied to the running server at
once and remembered (``unsaved``) until ``save`` writes it into the INI file
with :func:`cnrd.config.inifile.set_values`, keeping the file's comments and order.
"""

from __future__ import annotations

import datetime
import difflib
import heapq
import ipaddress
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, replace
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from cnrd import __version__
from cnrd.config import (
    Config,
    ConfigError,
    FailoverPairConfig,
    ServerConfig,
    LOG_SETTINGS,
    field_default,
    InvalidValue,
    load,
    loads,
    parse_bool,
    parse_duration,
    parse_hw_address,
    parse_int,
    parse_ipv4,
    parse_log_settings,
    parse_percent,
)
from cnrd.failover.states import S, Role, on_partner_down_command
from cnrd.leases.model import Lease, LeaseState
from cnrd.config.timespec import TimeSpecError, format_iso, parse_when
from cnrd.text import hw_text, ip_text, suggest

log = Logger(namespace="cnrd.admin")

__all__ = ["AdminError", "Admin", "NOT_READY_STATES", "lease_json", "parse_time_value"]

#: Failover states in which a server answers no client while it catches up:
#: /ready says 503 (docs/recovery.md).
NOT_READY_STATES = frozenset({S.STARTUP, S.RECOVER, S.RECOVER_WAIT, S.POTENTIAL_CONFLICT})

LEASE_STATES = tuple(s.label for s in LeaseState)
# Times and durations travel as 32-bit seconds on the failover wire.
MAX_TIME = 0xFFFFFFFF
MAX_PAGE = 1000
DEFAULT_PAGE = 100

# [server] settings fixed for the life of the process: sockets, the store,
# threads.  A reload reports them as restart-required and keeps the old value.
_SERVER_RESTART = ("interfaces", "data_dir", "server_port", "client_port", "lease_db_size", "event_history",
                   "commit_thread", "lease_journal")
# What identifies a failover relationship (and our role in it) or its
# sockets: changing it means a new Peer, so only at the next start.
_PAIR_RESTART = ("main", "backup", "failover", "failover_main_server", "failover_backup_server", "port",
                 "scopes")
# Pair settings told to the partner in CONNECT/CONNECTACK: changed while
# connected, the link is dropped so both sides renegotiate at once instead of
# running on values the partner does not know.
_PAIR_NEGOTIATED = ("mclt", "load_balancing", "max_unacked_updates", "failover_poll_timeout")


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
        return int(ipaddress.IPv4Address(text))
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

def _config_text(parse: Callable[..., Any], value: str, *args: Any) -> Any:
    try:
        return parse(value, *args)
    except InvalidValue as e:
        raise AdminError(400, str(e)) from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _config_text(parse_bool, value)
    raise AdminError(400, f"expected true or false, not {value!r}")


def _int(low: int | None, high: int | None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _config_text(parse_int, str(value), low, high)
        if isinstance(value, str):
            return _config_text(parse_int, value, low, high)
        raise AdminError(400, f"expected an integer, not {value!r}")
    return parse


def _duration(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise AdminError(400, f"bad duration {value}")
            return _config_text(parse_duration, str(value), low, MAX_TIME)
        if isinstance(value, str):
            return _config_text(parse_duration, value, low, MAX_TIME)
        raise AdminError(400, f"expected seconds or a duration like 1h30m, not {value!r}")
    return parse


def _percent(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _config_text(parse_percent, repr(float(value)))
    if isinstance(value, str):
        return _config_text(parse_percent, value)
    raise AdminError(400, f"expected a percentage 0..100, not {value!r}")


def _log_settings(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return _config_text(parse_log_settings, value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        # A JSON list names each setting exactly; a string is read as the INI file would.
        for v in value:
            if v not in LOG_SETTINGS:
                raise AdminError(400, f"unknown log setting {v!r}" + suggest(v.lower(), LOG_SETTINGS))
        return frozenset(value)
    raise AdminError(400, "log-settings must be a list of strings")


def _ipv4_text(value: Any) -> int:
    if not isinstance(value, str):
        raise AdminError(400, f"expected an IPv4 address string, not {value!r}")
    return _config_text(parse_ipv4, value)


# -- INI text for a value, for save ----------------------------------------

def _ini_bool(v: bool) -> str:
    return "true" if v else "false"


def _ini_pct(v: float | None) -> str | None:
    return None if v is None else f"{v:g}"


def _ini_time(v: int | None) -> str | None:
    return format_iso(v) if v else None  # unset: the key is removed


def _ini_log(v: frozenset[str]) -> str | None:
    return ", ".join(sorted(v)) or None


# key -> (ServerConfig field, parser, INI text)
_SERVER_ATTRS: dict[str, tuple[str, Callable[[Any], Any] | None, Callable[[Any], str | None]]] = {
    "start-on-reboot": ("start_on_reboot", _bool, _ini_bool),
    "failover-recover": ("failover_recover", None, _ini_time),  # parsed with the clock: parse_time_value
    "log-settings": ("log_settings", _log_settings, _ini_log),
    "max-dhcp-requests": ("max_dhcp_requests", _int(1, 100000), str),
    "safe-period": ("safe_period", _duration(0), str),
}

# key -> (FailoverPairConfig field, parser, INI text); the bounds are the loader's.
_PAIR_ATTRS: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], str | None]]] = {
    "main": ("main", _ipv4_text, ip_text),
    "backup": ("backup", _ipv4_text, ip_text),
    "failover": ("failover", _bool, _ini_bool),
    "mclt": ("mclt", _duration(30), str),
    "backup-pct": ("backup_pct", _percent, _ini_pct),
    "dynamic-bootp-backup-pct": ("dynamic_bootp_backup_pct", _percent, _ini_pct),
    "load-balancing": ("load_balancing", _bool, _ini_bool),
    "failover-poll-interval": ("failover_poll_interval", _duration(1), str),
    "failover-poll-timeout": ("failover_poll_timeout", _duration(1), str),
    "use-safe-period": ("use_safe_period", _bool, _ini_bool),
    "safe-period": ("safe_period", _duration(0), str),
    "max-unacked-updates": ("max_unacked_updates", _int(1, 1000), str),
}
# Role changes wait for the next start (the lead's amendment to the contract).
_PAIR_PENDING = ("main", "backup", "failover")


def _json_pending(key: str, value: Any) -> Any:
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


def _field_diff(header: str, old: Any, new: Any, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(field name, "[header] key") for every field that differs between two dataclasses."""
    skipped = set(skip)
    return [(f.name, f"[{header}] {f.name.replace('_', '-')}") for f in fields(old)
            if f.name not in skipped and getattr(old, f.name) != getattr(new, f.name)]


def _section_diff(kind: str, old: Mapping[Any, Any], new: Mapping[Any, Any],
                  name: Callable[[Any], str] = str) -> list[str]:
    """What a reload changes in one kind of named section."""
    out = [f"[{kind} {name(k)}] removed" for k in old if k not in new]
    for k, v in new.items():
        if k not in old:
            out.append(f"[{kind} {name(k)}] added")
        elif old[k] != v:
            out.extend(label for _, label in _field_diff(f"{kind} {name(k)}", old[k], v))
    return out


class Admin:
    """The operations of the admin API over one running DhcpService (and its failover peers)."""

    def __init__(self, dhcp: Any, *, local_tz: datetime.tzinfo | None = None) -> None:
        self.dhcp = dhcp
        # Dates in words are read in this zone (None: the process's local zone, as nrcmd does).
        self.local_tz = local_tz
        # (INI section header, key) -> value text (None deletes): what the API
        # changed since the file was last read or saved.
        self.unsaved: dict[tuple[str, str], str | None] = {}
        # pair name -> {API key: JSON value} set through the API that takes
        # effect only at the next start (role changes).
        self.pending: dict[str, dict[str, Any]] = {}

    # -- helpers -------------------------------------------------------------
    @property
    def config(self) -> Config:
        """The running configuration (replaced, never changed in place)."""
        return self.dhcp.config

    def now(self) -> int:
        """The server's clock, in whole seconds (the failover peers' time)."""
        return int(self.dhcp.clock.seconds())

    def _pair(self, name: str) -> FailoverPairConfig:
        if not isinstance(name, str) or name not in self.config.failover_pairs:
            raise AdminError(404, f"no failover pair {name!r}"
                             + suggest(str(name), self.config.failover_pairs))
        return self.config.failover_pairs[name]

    def _addresses(self, peer: Any) -> tuple[str, str]:
        """Our address and the partner's in ``peer``'s relationship."""
        link = self.dhcp.failover_links.get(peer.name)
        if link is not None:
            return link.local_ip, link.partner_ip
        pair = peer.pair
        if peer.role is Role.MAIN:
            return ip_text(pair.failover_main_server or pair.main), ip_text(pair.backup)
        return ip_text(pair.failover_backup_server or pair.backup), ip_text(pair.main)

    def _persist(self, peers: Iterable[Any]) -> defer.Deferred:
        """Send the peers' output and make their state durable, as the failover adapter does.

        FailoverService.flush sends what the peer decided (a STATE after a
        state change) and commits its persist values; the commit submitted
        after it fires once everything before it is on disk.
        """
        links = self.dhcp.failover_links
        for peer in peers:
            link = links.get(peer.name)
            if link is not None:
                link.flush()
        d: defer.Deferred = defer.Deferred()
        self.dhcp.commit(d.callback)
        return d

    @staticmethod
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

    # -- status ----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Liveness: answering at all is the answer."""
        return {"status": "alive"}

    def ready(self) -> dict[str, Any]:
        """{"ready": true} or {"ready": false, "reason": ...} (the API answers 503 for the latter)."""
        if not self.dhcp.server.enabled:
            return {"ready": False, "reason": "DHCP is disabled (dhcp start enables it)"}
        for peer in self.dhcp.peers:
            if peer.state in NOT_READY_STATES:
                return {"ready": False, "reason": f"failover pair {peer.name} is in {peer.label}"}
        return {"ready": True}

    def status(self) -> dict[str, Any]:
        """Version, uptime, whether DHCP answers, leased addresses and the packet counters."""
        dhcp = self.dhcp
        c = dhcp.server.counters
        started = getattr(dhcp, "started_at", 0) or 0
        return {
            "version": __version__,
            "server": self.config.server.name,
            "uptime-seconds": max(0, int(dhcp.clock.seconds() - started)) if started else 0,
            "dhcp-enabled": bool(dhcp.server.enabled),
            "leases": sum(1 for lease in dhcp.table.leases.values() if lease.state is LeaseState.LEASED),
            "counters": {"received": dict(c.received), "sent": dict(c.sent), "drops": dict(c.drops)},
            "commits": dhcp.commits,
        }

    def set_enabled(self, enabled: bool) -> dict[str, Any]:
        """CNR ``dhcp start`` / ``dhcp stop``: answer clients or not; failover and the API keep running."""
        if self.dhcp.server.enabled != enabled:
            self.dhcp.server.enabled = enabled
            log.info("DHCP {what} by the operator", what="enabled" if enabled else "disabled")
        return {"dhcp-enabled": enabled}

    # -- failover --------------------------------------------------------------
    def related_servers(self) -> dict[str, Any]:
        """CNR ``dhcp getRelatedServers``."""
        out = []
        for peer in self.dhcp.peers:
            ours, partner = self._addresses(peer)
            # last_received starts at the start time: it is a contact only once
            # the partner was heard in this run (in touch now, or lost since).
            heard = peer.in_touch or peer.comm_since is not None or \
                (peer.talked and peer.last_received > peer.started)
            interrupted = peer.comm_since
            if interrupted is None and peer.state is S.COMMUNICATIONS_INTERRUPTED:
                interrupted = peer.stos  # restarted while interrupted: the state's own start
            out.append({
                "pair": peer.name,
                "role": peer.role.value,
                "our-address": ours,
                "partner-address": partner,
                "state": peer.label,
                "partner-state": peer.partner_label,
                "communication": "OK" if peer.in_touch else "INTERRUPTED",
                "comm-interrupted-since": None if peer.in_touch else format_iso(interrupted),
                "last-contact": format_iso(peer.last_received) if heard else None,
                "state-since": format_iso(peer.stos),
                "mclt": peer.mclt,
                "unacked-updates": len(peer.pending) + len(peer.unacked),
                "clock-skew-seconds": peer.clock_skew,
            })
        return {"related-servers": out}

    def partner_down(self, body: Any) -> defer.Deferred:
        """CNR ``dhcp setPartnerDown PARTNER [TIME]``; fires with the new state once it is durable."""
        body = self.body_object(body, ("partner", "time"))
        partner = body.get("partner")
        if not isinstance(partner, str) or not partner.strip():
            raise AdminError(400, "partner (a failover pair name or the partner's address) is required")
        partner = partner.strip()
        when = body.get("time")
        if when is not None and not isinstance(when, str):
            raise AdminError(400, "time must be a string such as -3d, Nov 25 14:00 2026 or 2026-11-25T14:00:00Z")
        peers = [p for p in self.dhcp.peers if p.name == partner]
        if not peers:
            peers = [p for p in self.dhcp.peers if self._addresses(p)[1] == partner]
        if not peers:
            if partner in self.config.failover_pairs:
                raise AdminError(409, f"failover pair {partner} is not running (failover = false)")
            raise AdminError(404, f"no failover partner {partner!r}"
                             + suggest(partner, [p.name for p in self.dhcp.peers]))
        now = self.now()
        since = None
        if when is not None and when.strip():
            try:
                since = parse_when(when, now, self.local_tz)
            except TimeSpecError as e:
                raise AdminError(400, str(e)) from None
            if since > now:
                raise AdminError(400, f"partner-down time {format_iso(since)} is in the future")
            if since < 0:
                raise AdminError(400, f"partner-down time {when.strip()!r} is before 1970")
        todo = []
        for peer in peers:
            if peer.state is S.PARTNER_DOWN:
                continue  # already there: nothing to do (and its time stays)
            if peer.in_touch:
                raise AdminError(409, f"partner is in touch (state {peer.label})")
            if on_partner_down_command(peer.state, in_touch=False) is None:
                raise AdminError(409, f"failover pair {peer.name} cannot go PARTNER-DOWN from {peer.label}")
            todo.append(peer)
        for peer in todo:
            start = since
            if start is None:
                # CNR: initialised to start-of-communications-interrupted.
                start = peer.comm_since if peer.comm_since is not None else (
                    peer.stos if peer.state is S.COMMUNICATIONS_INTERRUPTED else now)
            if not peer.set_partner_down(now, start):
                raise AdminError(409, f"partner is in touch (state {peer.label})")
            log.warn("failover pair {pair}: partner set down by the operator (since {since})",
                     pair=peer.name, since=format_iso(start))
        first = peers[0]
        result = {"pair": first.name, "state": first.label, "partner-down-since": format_iso(first.stos)}

        def done(ok: bool) -> dict[str, Any]:
            if not ok:
                # Kept in memory and retried with the next commit (GroupCommitter).
                raise AdminError(500, "PARTNER-DOWN is set but the lease store could not write it yet")
            return result

        return self._persist(peers).addCallback(done)

    # -- attributes ------------------------------------------------------------
    def attributes(self) -> dict[str, Any]:
        """The [server] attributes an operator sets with CNR's ``dhcp set`` (running values)."""
        s = self.config.server
        return {
            "start-on-reboot": s.start_on_reboot,
            "failover-recover": format_iso(s.failover_recover),
            "log-settings": sorted(s.log_settings),
            "max-dhcp-requests": s.max_dhcp_requests,
            "safe-period": s.safe_period,
        }

    def patch_attributes(self, body: Any) -> dict[str, Any]:
        """CNR ``dhcp set`` / ``enable`` / ``disable``: applied now, written by save."""
        body = self.body_object(body, _SERVER_ATTRS)
        changes: dict[str, Any] = {}
        for key, value in body.items():
            name, parse, _ = _SERVER_ATTRS[key]
            if value is None:
                changes[name] = field_default(ServerConfig, name)  # unset: back to the default
            elif parse is None:
                changes[name] = parse_time_value(value, self.now(), self.local_tz)
            else:
                changes[name] = parse(value)
        if changes:
            server = replace(self.config.server, **changes)
            self._apply(replace(self.config, server=server))
            for key, value in body.items():
                name, _, text = _SERVER_ATTRS[key]
                # Unset: the key leaves the file, so the default applies there too.
                self.unsaved[("server", key)] = None if value is None else text(changes[name])
        return self.attributes()

    # -- failover pairs --------------------------------------------------------
    def _pair_json(self, pair: FailoverPairConfig) -> dict[str, Any]:
        return {
            "name": pair.name,
            "main": ip_text(pair.main),
            "backup": ip_text(pair.backup),
            "failover": pair.failover,
            "mclt": pair.mclt,
            "backup-pct": pair.backup_pct,
            "dynamic-bootp-backup-pct": pair.dynamic_bootp_backup_pct,
            "load-balancing": pair.load_balancing,
            "failover-poll-interval": pair.failover_poll_interval,
            "failover-poll-timeout": pair.failover_poll_timeout,
            "use-safe-period": pair.use_safe_period,
            "safe-period": pair.safe_period,
            # Empty in the file means every scope: show what it covers.
            "scopes": list(pair.scopes) or list(self.config.scopes),
            "max-unacked-updates": pair.max_unacked_updates,
            "pending": dict(self.pending.get(pair.name, {})),
        }

    def pairs(self) -> dict[str, Any]:
        """Every configured failover pair (running values, and role changes pending a restart)."""
        return {"failover-pairs": [self._pair_json(p) for p in self.config.failover_pairs.values()]}

    def pair(self, name: str) -> dict[str, Any]:
        """One failover pair by name; 404 when there is none."""
        return self._pair_json(self._pair(name))

    def patch_pair(self, name: str, body: Any) -> dict[str, Any]:
        """``failover-pair NAME set key=value``: settings apply now, role changes at the next start."""
        old = self._pair(name)
        body = self.body_object(body, _PAIR_ATTRS)
        values = {}
        for key, value in body.items():
            field = _PAIR_ATTRS[key][0]
            if value is None:
                if key in ("main", "backup"):
                    raise AdminError(400, f"{key} cannot be unset")
                values[key] = field_default(FailoverPairConfig, field)  # unset: back to the default
            else:
                values[key] = _PAIR_ATTRS[key][1](value)
        live = {_PAIR_ATTRS[k][0]: v for k, v in values.items() if k not in _PAIR_PENDING}
        new = replace(old, **live)
        if new.failover_poll_timeout <= new.failover_poll_interval:
            raise AdminError(400, f"failover-poll-timeout ({new.failover_poll_timeout} s) must be longer than "
                                  f"failover-poll-interval ({new.failover_poll_interval} s)")
        pending = dict(self.pending.get(name, {}))
        for key in _PAIR_PENDING:
            if key in values:
                running = getattr(old, _PAIR_ATTRS[key][0])
                if values[key] == running:
                    pending.pop(key, None)
                else:
                    pending[key] = _json_pending(key, values[key])
        main = parse_ipv4(pending["main"]) if "main" in pending else old.main
        backup = parse_ipv4(pending["backup"]) if "backup" in pending else old.backup
        if main == backup:
            raise AdminError(400, f"main and backup would both be {ip_text(main)}")
        if pending:
            self.pending[name] = pending
        else:
            self.pending.pop(name, None)
        if new != old:
            pairs = dict(self.config.failover_pairs)
            pairs[name] = new
            self._apply(replace(self.config, failover_pairs=pairs))
        header = f"failover-pair {name}"
        for key, value in values.items():
            self.unsaved[(header, key)] = None if body[key] is None else _PAIR_ATTRS[key][2](value)
        out = self._pair_json(new)
        out["restart-required"] = [k for k in _PAIR_PENDING if k in body and k in pending]
        return out

    # -- applying a configuration ----------------------------------------------
    def _apply(self, config: Config) -> list[str]:
        """Run with ``config``: the DHCP core, then each peer; returns warnings.

        ``config`` must already carry the running values of everything that
        needs a restart (see reload).
        """
        old = self.config
        for peer in self.dhcp.peers:
            pair = config.failover_pairs.get(peer.name, peer.pair)
            # A pair without a scope list covers every scope, new ones too.
            scopes = list(pair.scopes) or list(config.scopes)
            for name in scopes:
                self.dhcp.server.gates[name] = peer
            peer.scopes = scopes
            peer.scope_pct = {n: config.scopes[n].backup_pct for n in scopes
                              if n in config.scopes and config.scopes[n].backup_pct is not None}
        self.dhcp.apply_config(config)
        warnings = []
        touched = []
        # (log-settings need nothing here: the loggers read dhcp.config at each event.)
        for peer in self.dhcp.peers:
            if config.server.failover_recover is None:
                # Unset: stop the hourly "unset failover-recover" warning now.
                peer.failover_recover = None
            before = old.failover_pairs.get(peer.name, peer.pair)
            after = config.failover_pairs.get(peer.name, peer.pair)
            if self._apply_pair(peer, before, after, warnings):
                touched.append(peer)
        if touched:
            self._persist(touched)
        return warnings

    def _apply_pair(self, peer: Any, old: FailoverPairConfig, new: FailoverPairConfig,
                    warnings: list[str]) -> bool:
        """Give a running Peer its pair's new settings; True when it may have output to send."""
        if old == new:
            return False
        peer.pair = new
        if peer.role is Role.MAIN:
            # The main's MCLT is the relationship's (the backup learns it from CONNECT).
            peer.mclt = new.mclt
        changed = [k for k in _PAIR_NEGOTIATED if getattr(old, k) != getattr(new, k)]
        link = self.dhcp.failover_links.get(peer.name)
        if changed and peer.connected and link is not None and link.link is not None:
            keys = ", ".join(k.replace("_", "-") for k in changed)
            warnings.append(f"[failover-pair {peer.name}] {keys} changed: the link to the partner is "
                            "re-established to negotiate it (the partner's file must agree)")
            log.warn("failover pair {pair}: {keys} changed; reconnecting to renegotiate", pair=peer.name, keys=keys)
            link.link.transport.loseConnection()
        if peer.role is Role.MAIN and peer.state is S.NORMAL and \
                (old.backup_pct != new.backup_pct or old.load_balancing != new.load_balancing):
            peer.rebalance(self.now())  # top the backup's share up now rather than within the hour
        return True

    def reload(self, body: Any) -> dict[str, Any]:
        """CNR ``dhcp reload``: read the INI file again and apply what can change live.

        A file that does not load is refused (400) and nothing changes.
        Settings that need a restart are listed and keep their running
        values.  A scope removed while it still holds leased addresses is
        refused (409) unless ``force``.
        """
        body = self.body_object(body, ("force",))
        force = _bool(body["force"]) if "force" in body else False
        old = self.config
        try:
            new = load(old.path)
        except ConfigError as e:
            raise AdminError(400, str(e)) from None
        applied: list[str] = []
        restart: list[str] = []
        warnings: list[str] = []

        keep: dict[str, Any] = {}
        for name, label in _field_diff("server", old.server, new.server):
            if name in _SERVER_RESTART:
                restart.append(label)
                keep[name] = getattr(old.server, name)
            else:
                applied.append(label)
        server = replace(new.server, **keep)
        if old.api != new.api:
            for name, label in _field_diff("api", old.api, new.api):
                label = "[api] listen" if name in ("listen_host", "listen_port") else label
                if label not in restart:
                    restart.append(label)

        leased = Counter(lease.scope for lease in self.dhcp.table.leases.values()
                         if lease.state is LeaseState.LEASED)
        for name in old.scopes:
            if name not in new.scopes and leased[name]:
                if not force:
                    raise AdminError(409, f"scope {name} holds {leased[name]} leased addresses; "
                                          "reload with force to remove it anyway")
                warnings.append(f"[scope {name}] removed with {leased[name]} leased addresses: "
                                "those clients cannot renew and get new addresses")

        pairs: dict[str, FailoverPairConfig] = {}
        for name, pair in old.failover_pairs.items():
            if name not in new.failover_pairs:
                restart.append(f"[failover-pair {name}] removed")
                pairs[name] = pair  # its Peer runs until the restart
                continue
            keep = {}
            for field, label in _field_diff(f"failover-pair {name}", pair, new.failover_pairs[name], ("name",)):
                if field in _PAIR_RESTART:
                    restart.append(label)
                    keep[field] = getattr(pair, field)
                else:
                    applied.append(label)
            pairs[name] = replace(new.failover_pairs[name], **keep)
        for name in new.failover_pairs:
            if name not in old.failover_pairs:
                restart.append(f"[failover-pair {name}] added")

        applied += _section_diff("policy", old.policies, new.policies)
        applied += _section_diff("scope", old.scopes, new.scopes)
        applied += _section_diff("reservation", old.reservations, new.reservations, ip_text)
        applied += _section_diff("client", old.clients, new.clients, hw_text)
        applied += _section_diff("client-class", old.client_classes, new.client_classes)

        running = replace(new, server=server, api=old.api, failover_pairs=pairs)
        warnings += self._apply(running)
        for name, sc in running.scopes.items():
            if name in old.scopes and old.scopes[name].ranges != sc.ranges:
                pool = self.dhcp.table.pools.get(name)
                outside = sum(1 for lease in self.dhcp.table.leases.values()
                              if lease.scope == name and lease.state is LeaseState.LEASED
                              and (pool is None or lease.address not in pool))
                if outside:
                    warnings.append(f"[scope {name}] {outside} leased addresses are outside the new ranges: "
                                    "they keep renewing until released or expired")
        if self.unsaved:
            lost = sorted(f"[{sec}] {key}" for sec, key in self.unsaved)
            warnings.append("changes made through the API and not saved were replaced by the file: "
                            + ", ".join(lost))
            self.unsaved.clear()
        # What waits for a restart is now what the file says and the running pair does not.
        self.pending = {}
        for name, pair in old.failover_pairs.items():
            file_pair = new.failover_pairs.get(name)
            if file_pair is None:
                continue
            waiting = {key: _json_pending(key, getattr(file_pair, key)) for key in _PAIR_PENDING
                       if getattr(file_pair, key) != getattr(pair, key)}
            if waiting:
                self.pending[name] = waiting
        log.info("configuration reloaded: {n} changes applied, {r} need a restart",
                 n=len(applied), r=len(restart))
        return {"reloaded": True, "applied": applied, "restart-required": restart, "warnings": warnings}

    # -- leases and scopes -----------------------------------------------------
    def _scope_of(self, address: int) -> tuple[str | None, bool, bool]:
        """(scope name, in a dynamic range, failover pool) for an address without a record."""
        pool = self.dhcp.table.pool_of(address)
        if pool is not None:
            return pool.scope, True, pool.failover
        for sc in self.config.scopes.values():
            if sc.contains(address) and address not in (sc.network, sc.broadcast):
                return sc.name, False, sc.name in self.dhcp.server.gates
        return None, False, False

    def lease(self, address_text: str) -> dict[str, Any]:
        """What the server knows of one address (a never-used range address is "available")."""
        address = parse_address(address_text)
        table = self.dhcp.table
        scope, in_range, failover = self._scope_of(address)
        lease = table.get(address)
        if lease is not None:
            return lease_json(lease, scope, failover)
        if address in table.reserved:
            return lease_json(Lease(address, LeaseState.RESERVED, scope or ""), scope, failover)
        if in_range:
            # Never used: no record, the main's (or the only server's) to give.
            return lease_json(Lease(address, LeaseState.AVAILABLE, scope or ""), scope, failover)
        if scope is None:
            raise AdminError(404, f"{ip_text(address)} is not in any scope")
        raise AdminError(404, f"no lease for {ip_text(address)} (scope {scope}, outside its ranges)")

    def leases(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        """Stored leases in address order, filtered, one page at a time.

        Only addresses that have a record are listed (a /8 pool is not
        walked): the page is the ``limit`` smallest matching addresses
        after ``after``, found in one pass without sorting the table.
        """
        allowed = ("hardware-address", "state", "scope", "limit", "after")
        args: dict[str, str] = {}
        for key, values in query.items():
            if key not in allowed:
                raise AdminError(400, f"unknown query parameter {key!r}" + suggest(key, allowed))
            if len(values) != 1:
                raise AdminError(400, f"query parameter {key!r} given more than once")
            args[key] = values[0]
        limit = DEFAULT_PAGE
        if "limit" in args:
            t = args["limit"]
            if not t.isascii() or not t.isdigit() or not 1 <= int(t) <= MAX_PAGE:
                raise AdminError(400, f"limit must be an integer 1..{MAX_PAGE}")
            limit = int(t)
        after = parse_address(args["after"]) if "after" in args else -1
        state = None
        if "state" in args:
            if args["state"] not in LEASE_STATES:
                raise AdminError(400, f"unknown state {args['state']!r}; one of {', '.join(LEASE_STATES)}")
            state = LeaseState[args["state"].upper()]
        hw = None
        if "hardware-address" in args:
            hw = _config_text(parse_hw_address, args["hardware-address"])
        scope = args.get("scope")
        leases = self.dhcp.table.leases

        def match(address: int) -> bool:
            if address <= after:
                return False
            lease = leases[address]
            return ((state is None or lease.state is state)
                    and (scope is None or lease.scope == scope)
                    and (hw is None or lease.hw[1:] == hw))

        page = heapq.nsmallest(limit + 1, filter(match, leases))
        more = len(page) > limit
        page = page[:limit]
        out = []
        for address in page:
            lease = leases[address]
            pool = self.dhcp.table.pool_of(address)
            out.append(lease_json(lease, pool.scope if pool else None, bool(pool and pool.failover)))
        return {"leases": out, "next": ip_text(page[-1]) if more else None}

    def scopes(self) -> dict[str, Any]:
        """Per scope: its ranges' size, leased, and free addresses for the main and for the backup.

        Counted by the pools as leases change (the numbers /metrics has
        too), so a /8 scope costs nothing here.
        """
        out = []
        for name, runtime in self.dhcp.server.scopes.items():
            sc, pool = runtime.config, runtime.pool
            main, backup = pool.free_count(), pool.backup_count()
            total = pool.size
            leased = pool.state_counts.get(LeaseState.LEASED, 0)
            out.append({
                "name": name,
                "subnet": f"{ip_text(sc.network)}/{sc.prefix_len}",
                "total": total,
                "leased": leased,
                "available": main + backup,
                "available-main": main,
                "available-backup": backup,
                "utilization-percent": round(100.0 * leased / total, 2) if total else 0.0,
            })
        return {"scopes": out}

    # -- save -------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """CNR ``save``: write what the API changed into the INI file, comments and order kept."""
        path = self.config.path
        changed = sorted(f"[{sec}] {key}" for sec, key in self.unsaved)
        if not self.unsaved:
            return {"saved": path, "changed": []}
        try:
            from cnrd.config.inifile import set_values
        except ImportError:
            raise AdminError(409, "saving is not available in this build (cnrd.config.inifile is missing)") from None
        try:
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise AdminError(409, f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        try:
            new_text = set_values(text, dict(self.unsaved))
        except ValueError as e:
            raise AdminError(409, f"not saved: {e}") from None
        try:
            loads(new_text, path)
        except ConfigError as e:
            # Should not happen (values were validated); never write a file cnrd would refuse.
            raise AdminError(409, f"not saved: the result would not load: {e}") from None
        try:
            _write_atomically(path, new_text)
        except OSError as e:
            raise AdminError(409, f"cannot write {path}: {e.strerror or e}") from None
        self.unsaved.clear()
        log.info("configuration saved to {path}: {changed}", path=path, changed=", ".join(changed))
        return {"saved": path, "changed": changed}


def _write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so a crash leaves the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=".cnrd-save-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
