"""The lease history and the operator's lease commands (force-available, delete).

The history is the lease store's event log (:class:`cnrd.leases.model.LeaseEvent`,
kept by ``[server] event-history`` and ``event-history-age``): who held an
address when, every state change, and which server made it — this server
for its clients' requests and its timers, the failover partner for a
binding update received from it, ``operator`` for the commands here.

The commands change the lease table like any other durable change, so a
failover partner gets them as binding updates (the table's listeners) and
the MCLT rules hold: in a failover pool a forced address goes to RESET and
becomes available only when the partner has acknowledged it (draft §5.11),
exactly as a released one does.

Plain values in and out; refusals are :class:`AdminError`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred

from cnrd.admin.values import (
    MAX_PAGE,
    AdminError,
    config_text,
    parse_address,
    query_args,
)
from cnrd.admin.view import RunningServer
from cnrd.config import parse_hw_address
from cnrd.config.timespec import TimeSpecError, format_iso, parse_when
from cnrd.failover.states import Role
from cnrd.leases.model import LeaseEvent, LeaseState
from cnrd.leases.store import HistoryQuery
from cnrd.text import hw_text, int_to_ip, ip_text

__all__ = ["HISTORY_PAGE", "LeaseCommands"]

HISTORY_PAGE = 100
# What a forced address may be: not free already, and not a reservation's.
_FORCEABLE = frozenset({LeaseState.LEASED, LeaseState.EXPIRED, LeaseState.RELEASED, LeaseState.UNAVAILABLE,
                        LeaseState.RESET, LeaseState.OFFERED})
_MAX_EPOCH = (1 << 62)
_SOURCES = {"": "dhcp", "partner": "partner", "operator": "operator"}


def _cursor(text: str) -> tuple[int, int]:
    time, dot, seq = text.partition(".")
    if not dot or not time.isascii() or not seq.isascii() or not time.isdigit() or not seq.isdigit() \
            or int(time) > _MAX_EPOCH or int(seq) > _MAX_EPOCH:
        raise AdminError(400, f"bad cursor {text!r} (use the next value of the previous page)")
    return int(time), int(seq)


class LeaseCommands:
    """History queries and lease commands over one running server."""

    def __init__(self, runtime: RunningServer,
                 local_tz: Callable[[], datetime.tzinfo | None] = lambda: None) -> None:
        self.runtime = runtime
        # The zone dates in words are read in (the Admin's, which tests may set).
        self.local_tz = local_tz

    # -- history ------------------------------------------------------------------
    def _when(self, name: str, text: str) -> int:
        t = text.strip()
        if t.isascii() and t.isdigit():
            if len(t) > 12:  # (beyond any calendar's year 9999, and the store's 64-bit keys)
                raise AdminError(400, f"{name}: {t!r} is too far in the future")
            return int(t)  # epoch seconds
        try:
            return parse_when(t, self.runtime.now(), self.local_tz())
        except TimeSpecError as e:
            raise AdminError(400, f"{name}: {e}") from None

    def _servers(self, address: int) -> tuple[str, str | None]:
        """(this server, the partner or None) as the history names them, for ``address``'s relationship."""
        lease = self.runtime.table.get(address)
        pool = self.runtime.table.pool_of(address)
        scope = lease.scope if lease is not None and lease.scope else (pool.scope if pool else None)
        for session in self.runtime.sessions:
            pair = session.pair
            if scope is None or (pair.scopes and scope not in pair.scopes):
                continue
            running = self.runtime.pair_addresses(session.name)
            if running is not None:
                return running
            if session.role is Role.MAIN:
                return int_to_ip(pair.failover_main_server or pair.main), int_to_ip(pair.backup)
            return int_to_ip(pair.failover_backup_server or pair.backup), int_to_ip(pair.main)
        return self.runtime.config.server.name or "this server", None

    def _entry(self, seq: int, e: LeaseEvent, with_address: bool) -> dict[str, Any]:
        ours, partner = self._servers(e.address)
        source = _SOURCES.get(e.source, e.source)
        cid = e.key[1:] if e.key[:1] == b"\x01" else None
        out: dict[str, Any] = {}
        if with_address:
            out["address"] = ip_text(e.address)
        expires = e.expiration if 0 < e.expiration < 0xFFFFFFFF else None
        out.update({
            "time": format_iso(e.time),
            "state": e.state.label,
            "event": e.what,
            "hardware-address": hw_text(e.hw[1:]) if len(e.hw) > 1 else None,
            "client-id": cid.hex() if cid else None,
            "expires": format_iso(expires) if e.state is LeaseState.LEASED else None,
            "source": source,
            "server": (partner or "partner") if source == "partner" else ours,
            "seq": seq,
        })
        return out

    def _page(self, query: HistoryQuery, with_address: bool) -> dict[str, Any]:
        # One more than asked: tells whether a next page exists without a second query.
        rows = self.runtime.store.history(HistoryQuery(
            query.address, query.hw, query.since, query.until, query.after, query.limit + 1, query.newest_first))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        nxt = f"{rows[-1][1].time}.{rows[-1][0]}" if more else None
        return {"history": [self._entry(seq, e, with_address) for seq, e in rows], "next": nxt}

    def _common(self, args: dict[str, str]) -> dict[str, Any]:
        limit = HISTORY_PAGE
        if "limit" in args:
            t = args["limit"]
            if not t.isascii() or not t.isdigit() or not 1 <= int(t) <= MAX_PAGE:
                raise AdminError(400, f"limit must be an integer 1..{MAX_PAGE}")
            limit = int(t)
        since = self._when("since", args["since"]) if "since" in args else None
        until = self._when("until", args["until"]) if "until" in args else None
        if since is not None and until is not None and since > until:
            raise AdminError(400, f"since ({format_iso(since)}) is after until ({format_iso(until)})")
        order = args.get("order", "oldest")
        if order not in ("oldest", "newest"):
            raise AdminError(400, "order must be oldest or newest")
        after = _cursor(args["cursor"]) if "cursor" in args else None
        return {"limit": limit, "since": since, "until": until, "after": after, "newest_first": order == "newest"}

    def address_history(self, address_text: str, query: Mapping[str, list[str]]) -> dict[str, Any]:
        """Every recorded change of one address (``since``/``until``/``limit``/``cursor``/``order``),
        or with ``at`` the change in force at that time: who held the address then."""
        address = parse_address(address_text)
        args = query_args(query, ("since", "until", "at", "limit", "cursor", "order"))
        if "at" in args:
            if set(args) - {"at"}:
                raise AdminError(400, "at goes alone (it asks for the one entry in force at that time)")
            at = self._when("at", args["at"])
            rows = self.runtime.store.history(HistoryQuery(address=address, until=at, limit=1, newest_first=True))
            entry = self._entry(rows[0][0], rows[0][1], False) if rows else None
            held = entry is not None and entry["state"] in ("leased", "offered") and (
                entry["hardware-address"] is not None or entry["client-id"] is not None)
            holder = {k: entry[k] for k in ("hardware-address", "client-id", "server")} if held and entry else None
            return {"address": ip_text(address), "at": format_iso(at), "holder": holder,
                    "history": [entry] if entry is not None else [], "next": None}
        c = self._common(args)
        out = {"address": ip_text(address)}
        out.update(self._page(HistoryQuery(address=address, since=c["since"], until=c["until"], after=c["after"],
                                           limit=c["limit"], newest_first=c["newest_first"]), False))
        return out

    def history(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        """Lease events of every address, or of one hardware address, in a time window, paged."""
        args = query_args(query, ("hardware-address", "since", "until", "limit", "cursor", "order"))
        hw = None
        if "hardware-address" in args:
            # Ethernet, as the leases query takes it (htype 1).
            hw = b"\x01" + config_text(parse_hw_address, args["hardware-address"])
        c = self._common(args)
        return self._page(HistoryQuery(hw=hw, since=c["since"], until=c["until"], after=c["after"],
                                       limit=c["limit"], newest_first=c["newest_first"]), True)

    # -- commands -----------------------------------------------------------------
    def _persisted(self, result: dict[str, Any]) -> Deferred[dict[str, Any]]:
        def done(ok: bool) -> dict[str, Any]:
            if not ok:
                raise AdminError(500, "the change is made but the lease store could not write it yet")
            return result
        return self.runtime.persist().addCallback(done)

    def force_available(self, address_text: str) -> Deferred[dict[str, Any]]:
        """nrcmd ``lease ADDR force-available``: the client's binding ends now.

        Without failover the address is available at once.  In a failover
        pool it goes to RESET and the partner is sent the change; it becomes
        available when the partner acknowledges (so neither server can give
        it to a new client while the other may still think it bound).
        """
        address = parse_address(address_text)
        table = self.runtime.table
        lease = table.get(address)
        if address in table.reserved:
            raise AdminError(409, f"{ip_text(address)} belongs to a reservation: remove the [reservation] "
                                  "section to free it")
        if lease is None or lease.state not in _FORCEABLE:
            state = lease.state.label if lease is not None else "available"
            raise AdminError(409, f"{ip_text(address)} is {state} already")
        pool = table.pool_of(address)
        failover = pool is not None and pool.failover
        now = self.runtime.now()
        was = lease.state.label
        lease = table.update(address, durable=True, event="force-available", now=now, source="operator",
                             state=LeaseState.RESET if failover else LeaseState.AVAILABLE,
                             expiration=now, start=now)
        return self._persisted({"address": ip_text(address), "was": was, "state": lease.state.label,
                                "failover": failover})

    def delete(self, address_text: str) -> Deferred[dict[str, Any]]:
        """``lease ADDR delete``: end the binding as force-available does and forget the client.

        A lease record exists for every address a server has used and is
        kept (the address's state and the failover times live in it); what
        goes is the client's identity in it: hardware address, client-id,
        host name, relay information and vendor class.  The history keeps
        its events until retention drops them.
        """
        address = parse_address(address_text)
        table = self.runtime.table
        lease = table.get(address)
        if lease is None:
            raise AdminError(404, f"no lease record for {ip_text(address)}")
        if address in table.reserved:
            raise AdminError(409, f"{ip_text(address)} belongs to a reservation: remove the [reservation] "
                                  "section first")
        pool = table.pool_of(address)
        failover = pool is not None and pool.failover
        now = self.runtime.now()
        was = lease.state.label
        fields: dict[str, Any] = {"hw": b"", "client_id": None, "host_name": "", "relay_info": b"",
                                  "vendor_class": b""}
        if lease.state in _FORCEABLE:
            fields.update(state=LeaseState.RESET if failover else LeaseState.AVAILABLE, expiration=now, start=now)
        lease = table.update(address, durable=True, event="delete", now=now, source="operator", **fields)
        return self._persisted({"address": ip_text(address), "was": was, "state": lease.state.label,
                                "failover": failover})
