"""The operator's commands over a running server, apart from HTTP.

:class:`Admin` is what the admin API (:mod:`cnrd.admin.api`) and, through it,
``cnrctl`` do to a running server (:class:`~cnrd.admin.view.RunningServer`):
status, the CNR ``dhcp`` commands (getRelatedServers, setPartnerDown,
stop/start, reload, set/enable/disable of attributes), failover-pair
changes, lease and scope queries, and ``save``.  Every method takes and
returns plain values (dicts ready for JSON) and reports a refusal as
:class:`AdminError` with the HTTP status the API should give, so everything
here is testable without a web server.  Methods that must wait for the lease
store return a Deferred.

What an operator changes through here is applied to the running server at
once (through its ``reconfigure``) and remembered (``unsaved``) until
``save`` writes it into the INI file with
:func:`cnrd.config.inifile.set_values`, keeping the file's comments and order.
"""

from __future__ import annotations

import datetime
import heapq
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd import __version__
from cnrd.admin.history import LeaseCommands
from cnrd.admin.mismatch import unchecked_status
from cnrd.admin.reload import plan_reload
from cnrd.admin.values import (
    DEFAULT_PAGE,
    LEASE_STATES,
    MAX_PAGE,
    NOT_READY_STATES,
    PAIR_ATTRS,
    PAIR_PENDING,
    SERVER_ATTRS,
    AdminError,
    as_bool,
    body_object,
    config_text,
    json_pending,
    lease_json,
    parse_address,
    parse_time_value,
    query_args,
)
from cnrd.admin.view import RunningServer
from cnrd.config import (
    Config,
    ConfigError,
    FailoverPairConfig,
    ServerConfig,
    field_default,
    load,
    loads,
    parse_hw_address,
    parse_ipv4,
)
from cnrd.config.inifile import set_values
from cnrd.config.timespec import TimeSpecError, format_iso, parse_when
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import S, Role
from cnrd.leases.model import Lease, LeaseState
from cnrd.text import int_to_ip, ip_text, suggest

log = Logger(namespace="cnrd.admin")

__all__ = ["AdminError", "Admin", "NOT_READY_STATES", "lease_json", "parse_time_value"]


class Admin:
    """The operations of the admin API over one running server (and its failover sessions)."""

    def __init__(self, runtime: RunningServer, *, local_tz: datetime.tzinfo | None = None,
                 config_check: Callable[[FailoverPairConfig], dict[str, Any]] = unchecked_status,
                 tls: bool = True) -> None:
        self.runtime = runtime
        # False: the process started without TLS, so a reload keeps TLS
        # settings for the next start (cnrd.app.tls).
        self.tls = tls
        # A pair's ``config`` field: how its configuration compares with the
        # partner's (the running cnrd.admin.mismatch poller's status).
        self.config_check = config_check
        # Asks for the pair's next comparison at once (a sync Run changed the partner's file).
        self.config_recheck: Callable[[str], None] = lambda pair: None
        # Dates in words are read in this zone (None: the process's local zone, as nrcmd does).
        self.local_tz = local_tz
        # (INI section header, key) -> value text (None deletes): what the API
        # changed since the file was last read or saved.
        self.unsaved: dict[tuple[str, str], str | None] = {}
        # pair name -> {API key: JSON value} set through the API that takes
        # effect only at the next start (role changes).
        self.pending: dict[str, dict[str, Any]] = {}
        # The lease history and the lease commands (force-available, delete).
        self.lease_commands = LeaseCommands(runtime, lambda: self.local_tz)

    # -- helpers -------------------------------------------------------------
    @property
    def config(self) -> Config:
        """The running configuration (replaced, never changed in place)."""
        return self.runtime.config

    def now(self) -> int:
        """The server's clock, in whole seconds (the failover sessions' time)."""
        return self.runtime.now()

    def _pair(self, name: str) -> FailoverPairConfig:
        if not isinstance(name, str) or name not in self.config.failover_pairs:
            raise AdminError(404, f"no failover pair {name!r}"
                             + suggest(str(name), self.config.failover_pairs))
        return self.config.failover_pairs[name]

    def _addresses(self, session: FailoverSession) -> tuple[str, str]:
        """Our address and the partner's in ``session``'s relationship."""
        running = self.runtime.pair_addresses(session.name)
        if running is not None:
            return running
        pair = session.pair
        if session.role is Role.MAIN:
            return int_to_ip(pair.failover_main_server or pair.main), int_to_ip(pair.backup)
        return int_to_ip(pair.failover_backup_server or pair.backup), int_to_ip(pair.main)

    # -- status ----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Liveness: answering at all is the answer."""
        return {"status": "alive"}

    def ready(self) -> dict[str, Any]:
        """{"ready": true} or {"ready": false, "reason": ...} (the API answers 503 for the latter)."""
        pairs = {}
        reasons = []
        for session in self.runtime.sessions:
            st = session.status()
            pairs[st.name] = st.state not in NOT_READY_STATES
            if not pairs[st.name]:
                reasons.append(f"failover pair {st.name} is in {st.label}")
        if not self.runtime.server.enabled:
            reasons.insert(0, "DHCP is disabled (dhcp start enables it)")
        out: dict[str, Any] = {"ready": not reasons}
        if reasons:
            out["reason"] = "; ".join(reasons)
        if pairs:
            # Each relationship's own readiness: a server with several pairs
            # may serve the scopes of some while another still recovers.
            out["pairs"] = pairs
        health = self.runtime.registry_health
        if health is not None:
            # Degraded, not unready: cached entries keep serving their clients,
            # and a client without one gets client-lookup-failure's answer.
            ldap: dict[str, Any] = {"state": "up" if health.up else "degraded"}
            if health.up:
                ldap["server"] = health.server
            else:
                ldap["reason"] = health.reason
            out["ldap"] = ldap
        return out

    def status(self) -> dict[str, Any]:
        """Version, uptime, whether DHCP answers, leased addresses and the packet counters."""
        rt = self.runtime
        c = rt.server.counters
        started = rt.started_at
        return {
            "version": __version__,
            "server": self.config.server.name,
            "uptime-seconds": max(0, int(rt.now() - started)) if started else 0,
            "dhcp-enabled": bool(rt.server.enabled),
            "leases": sum(1 for lease in rt.table.leases.values() if lease.state is LeaseState.LEASED),
            "counters": {"received": dict(c.received), "sent": dict(c.sent), "drops": dict(c.drops)},
            "commits": rt.commits,
        }

    def set_enabled(self, enabled: bool) -> dict[str, Any]:
        """CNR ``dhcp start`` / ``dhcp stop``: answer clients or not; failover and the API keep running."""
        if self.runtime.server.enabled != enabled:
            self.runtime.server.enabled = enabled
            log.info("DHCP {what} by the operator", what="enabled" if enabled else "disabled")
        return {"dhcp-enabled": enabled}

    # -- failover --------------------------------------------------------------
    def related_servers(self) -> dict[str, Any]:
        """CNR ``dhcp getRelatedServers``."""
        out = []
        for session in self.runtime.sessions:
            ours, partner = self._addresses(session)
            st = session.status()
            interrupted = st.comm_since
            if interrupted is None and st.state is S.COMMUNICATIONS_INTERRUPTED:
                interrupted = st.stos  # restarted while interrupted: the state's own start
            out.append({
                "pair": st.name,
                "role": st.role.value,
                "our-address": ours,
                "partner-address": partner,
                "state": st.label,
                "partner-state": st.partner_label,
                "communication": "OK" if st.in_touch else "INTERRUPTED",
                "comm-interrupted-since": None if st.in_touch else format_iso(interrupted),
                "last-contact": format_iso(st.last_received) if st.heard else None,
                "state-since": format_iso(st.stos),
                "mclt": st.mclt,
                "unacked-updates": st.queued,
                "clock-skew-seconds": st.clock_skew,
                "config": self.config_check(self.config.failover_pairs.get(st.name, session.pair)),
            })
        return {"related-servers": out}

    def partner_down(self, body: Any) -> defer.Deferred[dict[str, Any]]:
        """CNR ``dhcp setPartnerDown PARTNER [TIME]``; fires with the new state once it is durable."""
        body = body_object(body, ("partner", "time"))
        partner = body.get("partner")
        if not isinstance(partner, str) or not partner.strip():
            raise AdminError(400, "partner (a failover pair name or the partner's address) is required")
        partner = partner.strip()
        when = body.get("time")
        if when is not None and not isinstance(when, str):
            raise AdminError(400, "time must be a string such as -3d, Nov 25 14:00 2026 or 2026-11-25T14:00:00Z")
        sessions = self.runtime.sessions
        peers = [p for p in sessions if p.name == partner]
        if not peers:
            peers = [p for p in sessions if self._addresses(p)[1] == partner]
        if not peers:
            if partner in self.config.failover_pairs:
                raise AdminError(409, f"failover pair {partner} is not running (failover = false)")
            raise AdminError(404, f"no failover partner {partner!r}"
                             + suggest(partner, [p.name for p in sessions]))
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
            # In touch, a state the command does not leave, or a time before
            # communication was lost: refused, with the session's reason.
            refusal = peer.partner_down_refusal(since)
            if refusal is not None:
                raise AdminError(409, refusal)
            todo.append(peer)
        for peer in todo:
            start = since
            if start is None:
                # CNR: initialised to start-of-communications-interrupted
                # (kept across a restart in that state).
                lost = peer.interrupted_since
                start = lost if lost is not None else now
            if not peer.set_partner_down(now, start):
                raise AdminError(409, f"partner is in touch (state {peer.status().label})")
            log.warn("failover pair {pair}: partner set down by the operator (since {since})",
                     pair=peer.name, since=format_iso(start))
        first = peers[0].status()
        result = {"pair": first.name, "state": first.label, "partner-down-since": format_iso(first.stos)}

        def done(ok: bool) -> dict[str, Any]:
            if not ok:
                # Kept in memory and retried with the next commit (GroupCommitter).
                raise AdminError(500, "PARTNER-DOWN is set but the lease store could not write it yet")
            return result

        return self.runtime.persist().addCallback(done)

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
        body = body_object(body, SERVER_ATTRS)
        changes: dict[str, Any] = {}
        for key, value in body.items():
            name, parse, _ = SERVER_ATTRS[key]
            if value is None:
                changes[name] = field_default(ServerConfig, name)  # unset: back to the default
            elif parse is None:
                changes[name] = parse_time_value(value, self.now(), self.local_tz)
            else:
                changes[name] = parse(value)
        if changes:
            server = replace(self.config.server, **changes)
            self.runtime.reconfigure(replace(self.config, server=server))
            for key, value in body.items():
                name, _, text = SERVER_ATTRS[key]
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
            "split": pair.split,
            "hba": pair.hba.hex() if pair.hba is not None else None,
            "load-balance-max-seconds": pair.load_balance_max_seconds,
            "failover-poll-interval": pair.failover_poll_interval,
            "failover-poll-timeout": pair.failover_poll_timeout,
            "use-safe-period": pair.use_safe_period,
            "safe-period": pair.safe_period,
            # Empty in the file means every scope: show what it covers.
            "scopes": list(pair.scopes) or list(self.config.scopes),
            "max-unacked-updates": pair.max_unacked_updates,
            "pending": dict(self.pending.get(pair.name, {})),
            "state": self._pair_state(pair.name),
            "config": self.config_check(pair),
        }

    def _pair_state(self, name: str) -> str | None:
        """The relationship's failover state here, None when it is not running."""
        session = next((s for s in self.runtime.sessions if s.name == name), None)
        return session.status().label if session is not None else None

    def pairs(self) -> dict[str, Any]:
        """Every configured failover pair (running values, and role changes pending a restart)."""
        return {"failover-pairs": [self._pair_json(p) for p in self.config.failover_pairs.values()]}

    def pair(self, name: str) -> dict[str, Any]:
        """One failover pair by name; 404 when there is none."""
        return self._pair_json(self._pair(name))

    def patch_pair(self, name: str, body: Any) -> dict[str, Any]:
        """``failover-pair NAME set key=value``: settings apply now, role changes at the next start."""
        old = self._pair(name)
        body = body_object(body, PAIR_ATTRS)
        values = {}
        for key, value in body.items():
            field = PAIR_ATTRS[key][0]
            if value is None:
                if key in ("main", "backup"):
                    raise AdminError(400, f"{key} cannot be unset")
                values[key] = field_default(FailoverPairConfig, field)  # unset: back to the default
            else:
                values[key] = PAIR_ATTRS[key][1](value)
        live = {PAIR_ATTRS[k][0]: v for k, v in values.items() if k not in PAIR_PENDING}
        if "split" in values and old.hba is not None:
            live["hba"] = None  # a split set here replaces the file's explicit map
        new = replace(old, **live)
        if new.failover_poll_timeout <= new.failover_poll_interval:
            raise AdminError(400, f"failover-poll-timeout ({new.failover_poll_timeout} s) must be longer than "
                                  f"failover-poll-interval ({new.failover_poll_interval} s)")
        pending = dict(self.pending.get(name, {}))
        for key in PAIR_PENDING:
            if key in values:
                running = getattr(old, PAIR_ATTRS[key][0])
                if values[key] == running:
                    pending.pop(key, None)
                else:
                    pending[key] = json_pending(key, values[key])
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
            self.runtime.reconfigure(replace(self.config, failover_pairs=pairs))
        header = f"failover-pair {name}"
        for key, value in values.items():
            self.unsaved[(header, key)] = None if body[key] is None else PAIR_ATTRS[key][2](value)
        if "hba" in live:
            self.unsaved[(header, "hba")] = None
        out = self._pair_json(new)
        out["restart-required"] = [k for k in PAIR_PENDING if k in body and k in pending]
        return out

    def reload_checked(self, body: Any) -> Deferred[dict[str, Any]]:
        """:meth:`reload`, after binding with any LDAP settings the file changes.

        Credentials an LDAP server rejects refuse the reload (400, naming
        the ``[ldap]`` section) before anything changes; an LDAP server
        that cannot be reached only adds a warning.
        """
        try:
            new = load(self.config.path)
        except ConfigError as e:
            return fail(AdminError(400, str(e)))

        def refused(f: Failure) -> Failure:
            if f.check(ConfigError):
                raise AdminError(400, str(f.value))
            return f

        def apply(warnings: list[str]) -> dict[str, Any]:
            out = self.reload(body)
            out["warnings"] = warnings + out["warnings"]
            return out

        return self.runtime.check_registry(new).addCallbacks(apply, refused)

    def reload(self, body: Any) -> dict[str, Any]:
        """CNR ``dhcp reload``: read the INI file again and apply what can change live.

        A file that does not load is refused (400) and nothing changes.
        Settings that need a restart are listed and keep their running
        values.  A scope removed while it still holds leased addresses is
        refused (409) unless ``force``.
        """
        body = body_object(body, ("force",))
        force = as_bool(body["force"]) if "force" in body else False
        old = self.config
        try:
            new = load(old.path)
        except ConfigError as e:
            raise AdminError(400, str(e)) from None
        table = self.runtime.table
        leased = Counter(lease.scope for lease in table.leases.values() if lease.state is LeaseState.LEASED)
        plan = plan_reload(old, new, leased, force=force, tls=self.tls)
        running = plan.running
        warnings = plan.warnings + self.runtime.reconfigure(running)
        for name, sc in running.scopes.items():
            if name in old.scopes and old.scopes[name].ranges != sc.ranges:
                pool = table.pools.get(name)
                outside = sum(1 for lease in table.leases.values()
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
        self.pending = plan.pending
        log.info("configuration reloaded: {n} changes applied, {r} need a restart",
                 n=len(plan.applied), r=len(plan.restart))
        return {"reloaded": True, "applied": plan.applied, "restart-required": plan.restart, "warnings": warnings}

    # -- leases and scopes -----------------------------------------------------
    def _scope_of(self, address: int) -> tuple[str | None, bool, bool]:
        """(scope name, in a dynamic range, failover pool) for an address without a record."""
        pool = self.runtime.table.pool_of(address)
        if pool is not None:
            return pool.scope, True, pool.failover
        for sc in self.config.scopes.values():
            if sc.contains(address) and address not in (sc.network, sc.broadcast):
                return sc.name, False, sc.name in self.runtime.server.gates
        return None, False, False

    def lease(self, address_text: str) -> dict[str, Any]:
        """What the server knows of one address (a never-used range address is "available")."""
        address = parse_address(address_text)
        table = self.runtime.table
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
        args = query_args(query, ("hardware-address", "state", "scope", "limit", "after"))
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
            hw = config_text(parse_hw_address, args["hardware-address"])
        scope = args.get("scope")
        leases = self.runtime.table.leases

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
            pool = self.runtime.table.pool_of(address)
            out.append(lease_json(lease, pool.scope if pool else None, bool(pool and pool.failover)))
        return {"leases": out, "next": ip_text(page[-1]) if more else None}

    def scopes(self) -> dict[str, Any]:
        """Per scope: its ranges' size, leased, and free addresses for the main and for the backup.

        Counted by the pools as leases change (the numbers /metrics has
        too), so a /8 scope costs nothing here.
        """
        out = []
        for name, scope in self.runtime.server.scopes.items():
            sc, pool = scope.config, scope.pool
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
