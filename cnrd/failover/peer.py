"""One failover relationship, as a pure state machine over messages and time.

:class:`Peer` is the whole failover protocol for one ``[failover-pair]``
except the bytes: the Twisted adapter (:mod:`cnrd.failover.protocol`) hands
it decoded messages, connection events and clock ticks, and takes back the
messages to send, whether to close the link, and the state values to
persist.  Everything here takes ``now`` as an argument.

What it does (draft-ietf-dhc-failover-12, as ISC dhcpd 4.4 speaks it; see
shared/docs/failover-protocol.md):

* the CONNECT/CONNECTACK handshake with the draft's reject reasons, then
  STATE both ways; CONTACT when idle (failover-poll-interval) and the link
  dropped when the partner is silent (failover-poll-timeout);
* the server states (:mod:`cnrd.failover.states`), persisted with their
  start times;
* binding updates: every durable lease change becomes a BNDUPD, sent lazily
  and at most the partner's max-unacked-bndupd at a time; the queue is
  persisted so a restart sends what was never acknowledged.  Received
  BNDUPDs are applied to the lease table and acknowledged only after the
  adapter's commit (``acks`` in :meth:`take`);
* UPDREQALL/UPDREQ/UPDDONE for RECOVER and POTENTIAL-CONFLICT;
* the pool split: the main hands backup-pct of each scope's free addresses
  to the backup on reaching NORMAL, on POOLREQ and hourly.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cnrd.config import FailoverPairConfig
from cnrd.failover import wire
from cnrd.failover.leasetime import lease_time, potential_expiration
from cnrd.failover.states import (
    LABELS, S, Role, Service, on_comm_fail, on_partner_state, on_partner_down_command,
    on_recover_wait_done, on_safe_period, on_upddone, service, startup,
)
from cnrd.failover.wire import BindingStatus, Message, MessageType, Option, RejectReason
from cnrd.leases.model import Lease, LeaseFlag, LeaseState
from cnrd.leases.table import LeaseTable

VENDOR = "cnrd"
MAX_SKEW = 60  # seconds of clock difference accepted in CONNECT/CONNECTACK (ISC's limit)
HANDSHAKE_TIMEOUT = 15
REBALANCE_INTERVAL = 3600  # the main tops the backup's share up hourly (CNR)

_STATE = struct.Struct("!BqBqIBBB")  # state, stos, partner state, partner stos, mclt, previous, talked, role
_STATE_V1 = struct.Struct("!BqBqIBB")  # before the role was stored
_ROLE_CODE = {Role.MAIN: 1, Role.BACKUP: 2}
RECLAIM_BATCH = 20000  # leases examined per tick by the PARTNER-DOWN reclaim sweep
RECOVER_WARN_INTERVAL = 3600  # seconds between "unset failover-recover" warnings


@dataclass
class Output:
    """What the adapter must do after feeding the peer (persisting is separate: take_persist)."""

    send: list[Message] = field(default_factory=list)
    acks: list[Message] = field(default_factory=list)  # send only after the next commit
    close: bool = False


class Peer:
    """The failover protocol for one relationship, on one side."""

    def __init__(
        self,
        pair: FailoverPairConfig,
        role: Role,
        table: LeaseTable,
        scopes: list[str],
        *,
        now: int,
        stored_state: bytes | None = None,
        stored_queue: list[int] = (),  # type: ignore[assignment]
        log: Callable[[str, dict], None] | None = None,
        failover_recover: int | None = None,
    ) -> None:
        self.pair = pair
        self.name = pair.name
        self.role = role
        self.table = table
        self.scopes = list(scopes)
        self._log = log or (lambda event, fields: None)
        self.mclt = pair.mclt
        self.partner_state: S | None = None
        self.partner_stos = 0
        self.talked = False  # ever completed a handshake with this partner
        previous_stored: S | None = None
        self.stos = now
        self.discarded_queue = False
        if stored_state is not None:
            if len(stored_state) == _STATE_V1.size:
                st, stos, pst, pstos, mclt, prev, talked = _STATE_V1.unpack(stored_state)
                stored_role = _ROLE_CODE[role]
            else:
                st, stos, pst, pstos, mclt, prev, talked, stored_role = _STATE.unpack(stored_state)
            if stored_role != _ROLE_CODE[role]:
                # Seed, "Changing Failover Server Roles": the relationship's
                # stored failover state does not survive a role swap; this
                # server starts as one that never talked to its partner.
                self._log("failover-role-changed", {"pair": pair.name, "role": role.value})
                stored_state, stored_queue = None, []
                self.discarded_queue = True
            else:
                previous_stored = S(st) if st != S.STARTUP else S(prev)
                self.stos = stos
                self.partner_state = S(pst) if pst else None
                self.partner_stos = pstos
                if role is Role.BACKUP and mclt:
                    self.mclt = mclt  # the main's MCLT, learnt from its CONNECT
                self.talked = bool(talked)
        # failover-recover (seed, Table 27-3): the store is older than the
        # partner's knowledge (restored from a backup taken at that time, or
        # failover was off since then): ask for everything and wait MCLT from
        # that time before serving.
        self.failover_recover = failover_recover
        self.full_recover = failover_recover is not None or not self.talked
        if failover_recover is not None:
            previous_stored = S.RECOVER
        self.state, self.previous = startup(previous_stored)
        if failover_recover is not None:
            self.stos = min(failover_recover, now)
        elif previous_stored is None:
            self.stos = now  # ISC: a server with no stored state recovers from its start
        self.started = now
        self.wait_from = self.stos  # after a restart in RECOVER-WAIT: its own start (the safe side)
        self.comm_since: int | None = None  # start-of-communications-interrupted
        # link
        self.connected = False
        self.handshaken = False
        self.partner_heard = False
        self.link_since = 0
        self.last_sent = now
        self.last_received = now
        self.last_contact: int | None = None  # last message from the partner, in this run
        self.transitions = 0  # state changes in this run (metrics)
        self.partner_max_unacked = 0
        self.partner_receive_timer = pair.failover_poll_timeout
        self.clock_skew = 0
        self.partner_hba = b""  # the main's bucket map, from its CONNECT
        self._xid = 0
        # binding updates
        self.pending: OrderedDict[int, None] = OrderedDict((a, None) for a in stored_queue)
        self.unacked: dict[int, tuple[int, int, int]] = {}  # xid -> (address, status, pet)
        self.inflight: dict[int, int] = {}  # address -> xid
        self._after_ack: set[int] = set()  # changed again while an update was in flight
        self.answering: tuple[int, set[int]] | None = None  # partner's UPDREQ*: xid, addresses due
        self.requested = False  # our UPDREQ(ALL) sent on this link
        self.last_rebalance = 0
        self._reclaim_todo: list[int] = []  # PARTNER-DOWN: addresses left to examine this pass
        self._reclaim_next = 0  # earliest time of the next pass
        self._recover_warned = 0
        self.sent_updates = self.acked_updates = self.rejected_updates = 0
        self.received_updates = 0
        self.out = Output()
        # State values to write in the next lease-store commit (None deletes).
        self._persist: dict[str, bytes | None] = {}
        table.listeners.append(self._lease_changed)

    # -- helpers -------------------------------------------------------------
    @property
    def label(self) -> str:
        return LABELS.get(self.state, self.state.name)

    @property
    def partner_label(self) -> str:
        return LABELS.get(self.partner_state, "unknown") if self.partner_state else "unknown"

    @property
    def in_touch(self) -> bool:
        """Link up, handshake done and the partner's STATE heard (draft §8.3)."""
        return self.connected and self.handshaken and self.partner_heard

    def _next_xid(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF or 1
        return self._xid

    def _send(self, msg: Message, now: int) -> None:
        self.out.send.append(msg)
        self.last_sent = now

    def take(self) -> Output:
        """The messages to send and whether to close, decided since the last call."""
        out, self.out = self.out, Output()
        return out

    def restore_persist(self, values: dict[str, bytes | None]) -> None:
        """Give back values a commit did not write, so the next one does."""
        for k, v in values.items():
            self._persist.setdefault(k, v)

    def take_persist(self) -> dict[str, bytes | None]:
        """State values (server state, the update queue) for the next commit."""
        p, self._persist = self._persist, {}
        return p

    def _persist_state(self) -> None:
        self._persist[f"failover/{self.name}/state"] = _STATE.pack(
            int(self.state), self.stos, int(self.partner_state or 0), self.partner_stos,
            self.mclt, int(self.previous), int(self.talked and not self.full_recover), _ROLE_CODE[self.role],
        )

    def _queue(self, address: int, durable: bool = True) -> None:
        """Queue a binding update; ``durable`` ones survive a restart (lease changes).

        Updates answering the partner's UPDREQALL are not made durable: after a
        crash the partner asks again, and a million queue keys would be wasted.
        """
        if address not in self.pending:
            self.pending[address] = None
            if durable:
                self._persist[f"failover/{self.name}/q/{address:08x}"] = b""

    # -- states --------------------------------------------------------------
    def _set_state(self, new: S, now: int, reason: str) -> None:
        if new is self.state:
            return
        old = self.state
        if old is S.RECOVER:
            # RECOVER-WAIT counts MCLT from the time we could last have been
            # wrong: RECOVER's start (or failover-recover), not from now.
            self.wait_from = self.stos
        self.state = new
        self.stos = now
        self.transitions += 1
        if new in (S.RECOVER_DONE, S.NORMAL):
            # Everything the partner knew has arrived: from now on a RECOVER
            # asks only for what was missed (stored as "talked").
            self.full_recover = False
        if new is S.COMMUNICATIONS_INTERRUPTED:
            self.comm_since = now
        self._log("failover-state", {
            "pair": self.name, "from": LABELS.get(old, old.name), "to": self.label, "reason": reason})
        self._persist_state()
        if self.in_touch:
            self._send_state(now)
            self._on_enter(now)

    def _send_state(self, now: int, startup_flag: bool = False) -> None:
        shown = self.previous if self.state is S.STARTUP else self.state
        self._send(wire.state(self._next_xid(), now, server_state=int(shown),
                              start_time_of_state=self.stos,
                              flags=wire.ServerFlags.STARTUP if startup_flag else 0), now)

    def _on_enter(self, now: int) -> None:
        """Duties on entering a state while in touch with the partner."""
        if self.state is S.RECOVER and not self.requested:
            self.requested = True
            # Draft §9.3: a server that kept its lease database asks only for
            # what it missed; one that lost it (or never talked, or was told
            # by failover-recover that its store is stale) asks for everything.
            if self.full_recover:
                self._send(wire.updreqall(self._next_xid(), now), now)
            else:
                self._send(wire.updreq(self._next_xid(), now), now)
        elif self.state is S.POTENTIAL_CONFLICT and self.role is Role.MAIN and not self.requested:
            self.requested = True
            self._send(wire.updreq(self._next_xid(), now), now)
        elif self.state is S.NORMAL:
            self.requested = False
            if self.role is Role.MAIN:
                self.rebalance(now)
            else:
                self._send(wire.poolreq(self._next_xid(), now), now)
        self.pump(now)

    def _leave_startup(self, now: int) -> None:
        if self.state is S.STARTUP:
            self.state = self.previous
            self.transitions += 1
            self._log("failover-state", {"pair": self.name, "from": "STARTUP", "to": self.label,
                                         "reason": "previous state"})
            self._persist_state()

    # -- link events ---------------------------------------------------------
    def connection_made(self, now: int) -> None:
        """A TCP connection to the partner is up (either direction)."""
        self.connected = True
        self.handshaken = self.partner_heard = False
        self.requested = False
        self.link_since = self.last_received = self.last_sent = now
        self._xid = 0
        if self.role is Role.MAIN:
            # ISC sends CONNECT on every link, whoever dialled (digest §1).
            self._send(wire.connect(
                0, now, relationship_name=self.name, max_unacked=self.pair.max_unacked_updates,
                receive_timer=self.pair.failover_poll_timeout, vendor_class=VENDOR, mclt=self.mclt,
                hba=self._hba()), now)

    def connection_lost(self, now: int) -> None:
        """The link went down (closed, reset or timed out)."""
        was = self.in_touch
        self.connected = self.handshaken = self.partner_heard = False
        # Unacked updates go back to the queue; they are resent with new xids.
        for xid, (address, _, _) in self.unacked.items():
            self._queue(address)
        self.unacked.clear()
        self.inflight.clear()
        for address in self._after_ack:
            self._queue(address)
        self._after_ack.clear()
        self.answering = None
        if was:
            self._log("failover-comm-lost", {"pair": self.name})
        if self.state is S.STARTUP:
            return
        t = on_comm_fail(self.state)
        if t is not None:
            self._set_state(t.new, now, t.reason)

    def _hba(self) -> bytes:
        # ISC's meaning: a set bit is a bucket the main serves (digest §10.4).
        return _SPLIT_128 if self.pair.load_balancing else _ALL_MAIN

    # -- messages ------------------------------------------------------------
    def receive(self, msg: Message, now: int) -> None:
        """One decoded message from the partner."""
        self.last_received = self.last_contact = now
        t = msg.type
        if t == MessageType.CONNECT:
            self._on_connect(msg, now)
        elif t == MessageType.CONNECTACK:
            self._on_connectack(msg, now)
        elif not self.handshaken:
            self._disconnect(now, RejectReason.UNKNOWN, f"{MessageType(t).name} before CONNECT")
        elif t == MessageType.STATE:
            self._on_state(msg, now)
        elif t == MessageType.BNDUPD:
            self._on_bndupd(msg, now)
        elif t == MessageType.BNDACK:
            self._on_bndack(msg, now)
        elif t == MessageType.UPDREQALL:
            self._on_updreq(msg, now, everything=True)
        elif t == MessageType.UPDREQ:
            self._on_updreq(msg, now, everything=False)
        elif t == MessageType.UPDDONE:
            self._on_upddone(now)
        elif t == MessageType.POOLREQ:
            moved = self.rebalance(now) if self.role is Role.MAIN else 0
            self._send(wire.poolresp(msg.xid, now, addresses_transferred=moved), now)
        elif t == MessageType.DISCONNECT:
            self._log("failover-disconnect", {"pair": self.name, "reason": msg.reject_reason,
                                              "message": msg.message_text})
            self.out.close = True
        # CONTACT and POOLRESP need nothing beyond the receive time.
        self.pump(now)

    def record_reject(self, reason: int, text: str) -> None:
        """The adapter refused a message it could not decode: logged (and trapped) like ours."""
        self._log("failover-reject", {"pair": self.name, "reason": int(reason), "message": text})

    def _disconnect(self, now: int, reason: int, text: str) -> None:
        self._log("failover-reject", {"pair": self.name, "reason": int(reason), "message": text})
        self._send(wire.disconnect(self._next_xid(), now, reject_reason=int(reason), message=text), now)
        self.out.close = True

    def _on_connect(self, msg: Message, now: int) -> None:
        def reject(reason: RejectReason, text: str) -> None:
            self._log("failover-reject", {"pair": self.name, "reason": int(reason), "message": text})
            self._send(wire.connectack(msg.xid, now, relationship_name=msg.relationship_name,
                                       vendor_class=VENDOR, reject_reason=int(reason), message=text), now)
            self.out.close = True

        if self.role is Role.MAIN:
            return reject(RejectReason.INVALID_PARTNER, "both servers are main")
        if msg.relationship_name != self.name:
            return reject(RejectReason.INVALID_PARTNER,
                          f"unknown failover relationship name {msg.relationship_name!r}")
        skew = msg.time - now
        if abs(skew) > MAX_SKEW:
            return reject(RejectReason.TIME_MISMATCH, f"time offset too large ({skew} s)")
        if msg.mclt != self.pair.mclt:
            return reject(RejectReason.INVALID_MCLT,
                          f"MCLT {msg.mclt} differs from ours ({self.pair.mclt})")
        if self.handshaken:
            return reject(RejectReason.DUPLICATE_CONNECTION, "duplicate connection")
        self.clock_skew = skew
        self.mclt = msg.mclt or self.mclt
        self.partner_max_unacked = msg.max_unacked or 0
        self.partner_receive_timer = msg.receive_timer or self.pair.failover_poll_timeout
        self.partner_hba = msg.hba or b""
        self.handshaken = True
        self.talked = True
        self._send(wire.connectack(msg.xid, now, relationship_name=self.name, vendor_class=VENDOR,
                                   max_unacked=self.pair.max_unacked_updates,
                                   receive_timer=self.pair.failover_poll_timeout,
                                   tls_reply=0 if msg.get(Option.TLS_REQUEST) is not None else None), now)
        self._send_state(now, startup_flag=self.state is S.STARTUP)
        self._persist_state()

    def _on_connectack(self, msg: Message, now: int) -> None:
        if self.role is Role.BACKUP:
            return self._disconnect(now, RejectReason.INVALID_PARTNER, "both servers are backup")
        if msg.reject_reason is not None:
            self._log("failover-rejected", {"pair": self.name, "reason": int(msg.reject_reason),
                                            "message": msg.message_text})
            self.out.close = True
            return
        if msg.relationship_name != self.name:
            return self._disconnect(now, RejectReason.INVALID_PARTNER,
                                    f"remote failover relationship name {msg.relationship_name} does not match")
        skew = msg.time - now
        if abs(skew) > MAX_SKEW:
            return self._disconnect(now, RejectReason.TIME_MISMATCH, f"time offset too large ({skew} s)")
        self.clock_skew = skew
        self.partner_max_unacked = msg.max_unacked or 0
        self.partner_receive_timer = msg.receive_timer or self.pair.failover_poll_timeout
        self.handshaken = True
        self.talked = True
        self._send_state(now, startup_flag=self.state is S.STARTUP)
        self._persist_state()

    def _on_state(self, msg: Message, now: int) -> None:
        st = msg.server_state
        if st is None:
            return
        partner, flags = st
        if not isinstance(partner, S):
            return self._disconnect(now, RejectReason.UNKNOWN, f"unknown server state {partner}")
        first = not self.partner_heard
        self.partner_heard = True
        self.partner_state = partner
        self.partner_stos = msg.start_time_of_state or 0
        startup_flag = bool(flags & wire.ServerFlags.STARTUP)
        leaving_startup = self.state is S.STARTUP
        if leaving_startup:
            # ISC: a partner in PARTNER-DOWN means we missed something: RECOVER.
            if partner is S.PARTNER_DOWN and self.previous in (S.NORMAL, S.COMMUNICATIONS_INTERRUPTED):
                self.previous = S.RECOVER
            self._leave_startup(now)
        t = on_partner_state(self.state, partner, partner_startup=startup_flag)
        if t is not None and startup_flag and self.state is S.RECOVER:
            # A STARTUP-flagged state is where the partner *was*; a recovering
            # server waits for its real state rather than leaving RECOVER on it.
            t = None
        if first:
            self._log("failover-comm-ok", {"pair": self.name, "partner_state": self.partner_label})
            self.comm_since = None
        self._persist_state()
        if t is not None:
            # Announce only where we end up: a STATE(NORMAL) on the way from
            # STARTUP to PARTNER-DOWN would send a recovering partner into
            # POTENTIAL-CONFLICT instead of asking us for everything.
            self._set_state(t.new, now, t.reason)
        else:
            if leaving_startup:
                self._send_state(now)
            if first:
                self._on_enter(now)
        if self.state is S.POTENTIAL_CONFLICT and self.role is Role.BACKUP and partner is S.CONFLICT_DONE \
                and not self.requested:
            self.requested = True
            self._send(wire.updreq(self._next_xid(), now), now)

    # -- binding updates -----------------------------------------------------
    def _lease_changed(self, lease: Lease, what: str) -> None:
        if lease.scope in self.scopes and lease.state is not LeaseState.OFFERED:
            self._queue(lease.address)

    def pump(self, now: int) -> None:
        """Send queued updates while the partner's window allows."""
        if not self.in_touch or self.state in (S.STARTUP,):
            return
        window = self.partner_max_unacked
        while self.pending and len(self.unacked) < window:
            # The queue key stays until the partner acknowledges: an update in
            # flight when we crash is sent again after the restart.
            address, _ = self.pending.popitem(last=False)
            if address in self.inflight:
                # One update per address in flight (ISC matches acks by address);
                # the newer binding goes once the older one is acknowledged.
                self._after_ack.add(address)
                continue
            msg, status, pet = self._bndupd(address, now)
            self.unacked[msg.xid] = (address, status, pet)
            self.inflight[address] = msg.xid
            self.sent_updates += 1
            self._send(msg, now)

    def _bndupd(self, address: int, now: int) -> tuple[Message, int, int]:
        lease = self.table.get(address)
        if lease is None:
            status, lease = int(BindingStatus.FREE), Lease(address)
        else:
            status = _STATUS_OF.get(lease.state, int(BindingStatus.FREE))
        flags = 0
        if lease.flags & LeaseFlag.RESERVED:
            flags |= wire.IPFlags.RESERVED
        if lease.flags & LeaseFlag.BOOTP:
            flags |= wire.IPFlags.BOOTP
        abandoned = status == BindingStatus.ABANDONED
        expiration = lease.expiration if 0 <= lease.expiration <= 0xFFFFFFFF else 0
        pet = lease.potential_expiration if status == BindingStatus.ACTIVE else 0
        msg = wire.bndupd(
            self._next_xid(), now, assigned_address=address, binding_status=status,
            client_id=None if abandoned else lease.client_id,
            client_hw=None if abandoned or not lease.hw else lease.hw,
            lease_expiration=expiration, potential_expiration=pet,
            start_time_of_state=lease.start, cltt=lease.cltt or None, ip_flags=flags or None)
        return msg, status, pet

    def _on_bndack(self, msg: Message, now: int) -> None:
        entry = self.unacked.pop(msg.xid, None)
        if entry is None:
            return  # not ours (ISC: xid mismatch is ignored)
        address, status, pet = entry
        self.inflight.pop(address, None)
        if address in self._after_ack:
            self._after_ack.discard(address)
            self._queue(address)
        if address not in self.pending:
            self._persist[f"failover/{self.name}/q/{address:08x}"] = None
        if msg.reject_reason is not None:
            self.rejected_updates += 1
            self._log("failover-bndack-reject", {"pair": self.name, "address": address,
                                                 "reason": int(msg.reject_reason), "message": msg.message_text})
        else:
            self.acked_updates += 1
            lease = self.table.get(address)
            if lease is not None:
                fields: dict = {}
                if pet > lease.partner_time:
                    fields["partner_time"] = pet
                if status in (BindingStatus.EXPIRED, BindingStatus.RELEASED, BindingStatus.RESET) \
                        and lease.state in (LeaseState.EXPIRED, LeaseState.RELEASED, LeaseState.RESET):
                    # The partner knows: the address is free for any client (draft §5.11).
                    fields["state"] = LeaseState.AVAILABLE
                if fields:
                    self.table.update(address, durable=True, from_partner=True, **fields)
        if self.answering is not None:
            xid, due = self.answering
            due.discard(address)
            self._maybe_upddone(now)

    def _maybe_upddone(self, now: int) -> None:
        if self.answering is None:
            return
        xid, due = self.answering
        if not due:
            self.answering = None
            self._send(wire.upddone(xid, now), now)

    def _on_updreq(self, msg: Message, now: int, *, everything: bool) -> None:
        due: set[int] = set()
        if everything:
            # Every address that has a record. Never-used addresses are FREE
            # (the main's) on both sides by definition, so they are not sent
            # (draft §7.3: those ever associated with a client suffice; ISC
            # sends them too, which for a /15 pool is 10x the traffic).
            scopes = set(self.scopes)
            for address, lease in self.table.leases.items():
                if lease.scope in scopes or (lease.scope == "" and self._in_our_pools(address)):
                    due.add(address)
                    self._queue(address, durable=False)
        else:
            # ISC's answer to UPDREQ: what is queued or unacknowledged, every
            # lease whose potential expiration the partner never acknowledged,
            # and every expired or released binding.
            due.update(self.pending)
            due.update(a for a, _, _ in self.unacked.values())
            scopes = set(self.scopes)
            for address, lease in self.table.leases.items():
                if lease.scope not in scopes:
                    continue
                if (lease.state is LeaseState.LEASED and lease.potential_expiration > lease.partner_time) \
                        or lease.state in (LeaseState.EXPIRED, LeaseState.RELEASED):
                    due.add(address)
                    self._queue(address, durable=False)
        # Addresses already in flight count once their current update is acked.
        self.answering = (msg.xid, due)
        self._maybe_upddone(now)

    def _in_our_pools(self, address: int) -> bool:
        pool = self.table.pool_of(address)
        return pool is not None and pool.scope in self.scopes

    def _on_upddone(self, now: int) -> None:
        wait = self.stos + self.mclt > now
        t = on_upddone(self.state, self.role, wait_needed=wait, partner=self.partner_state)
        if t is not None:
            self._set_state(t.new, now, t.reason)

    def _on_bndupd(self, msg: Message, now: int) -> None:
        address = msg.assigned_address
        reason, text = self._apply(msg, now)
        self.received_updates += 1
        if reason is not None:
            self._log("failover-bndupd-reject", {"pair": self.name, "address": address, "reason": int(reason),
                                                 "message": text})
        ack = wire.bndack(msg.xid, now, assigned_address=address,
                          reject_reason=int(reason) if reason else None, message=text)
        self.out.acks.append(ack)

    def _apply(self, msg: Message, now: int) -> tuple[RejectReason | None, str | None]:
        """Take a partner's binding into the lease table (draft §7.1.3, ISC's checks)."""
        address = msg.assigned_address
        status = msg.binding_status
        if address is None or status is None:
            return RejectReason.MISSING_BINDING_INFO, "missing binding information"
        pool = self.table.pool_of(address)
        if pool is None or pool.scope not in self.scopes:
            return RejectReason.ILLEGAL_IP_ADDRESS, "address not in this relationship"
        lease = self.table.get(address)
        # A duelling update: we have our own unacknowledged update for it.
        xid = self.inflight.get(address)
        if xid is not None:
            ours = self.unacked[xid][1]
            longer = _longer_for_same_client(lease, msg, now) if ours == BindingStatus.ACTIVE \
                and status == BindingStatus.ACTIVE else None
            mine_better = (ours == BindingStatus.ACTIVE and status == BindingStatus.ACTIVE
                           and lease is not None and (lease.cltt > (msg.cltt or 0)
                                                      or (lease.cltt == (msg.cltt or 0) and self.role is Role.MAIN)))
            mine_better = mine_better or (ours != BindingStatus.ACTIVE and status != BindingStatus.ACTIVE
                                          and self.role is Role.MAIN)
            mine_better = mine_better or (ours == BindingStatus.ACTIVE and status != BindingStatus.ACTIVE
                                          and status != BindingStatus.EXPIRED)
            if longer is not None:
                # Both of us ACKed this client (a partition with both serving):
                # it may hold either lease, so the later expiration wins,
                # whoever is primary and whichever CLTT is newer.
                mine_better = longer == "ours"
            if mine_better:
                return RejectReason.LESS_CRITICAL_BINDING_INFO, "incoming update is less critical than outgoing update"
            # Theirs wins: ours is withdrawn, and for an update request in
            # progress the partner now knows this binding (it sent it).
            del self.unacked[xid]
            del self.inflight[address]
            if self.answering is not None:
                self.answering[1].discard(address)
                self._maybe_upddone(now)
        hw = msg.client_hw
        if status in (BindingStatus.ACTIVE, BindingStatus.EXPIRED, BindingStatus.RELEASED) and not hw \
                and not msg.client_id:
            return RejectReason.MISSING_BINDING_INFO, "no client hardware address"
        # Draft figure 7.1.3-1, in every state: an unexpired lease here is not
        # given up for a partner's stale view of the address.  Found by
        # bench/chaos: a backup killed with a FREE update unacked resent it
        # after restart, and a main in PARTNER-DOWN that had leased the
        # address since took it, losing an ACKed lease on both servers.
        if lease is not None and lease.state is LeaseState.LEASED and status != BindingStatus.ACTIVE:
            # (ISC lets EXPIRED through 65 s early for clock skew; a lease
            # granted for an MCLT is shorter than that, so no slack here: a
            # skewed partner's EXPIRED is refused, and our own expiry frees
            # the address moments later.)
            if status in (BindingStatus.FREE, BindingStatus.BACKUP, BindingStatus.EXPIRED) \
                    and not lease.expired_at(now):
                return RejectReason.OUTDATED_BINDING_INFO, "lease has not expired here"
            if status == BindingStatus.RELEASED and not lease.expired_at(now) and (msg.cltt or 0) < lease.cltt:
                # CLTT has one-second resolution: a release in the second of
                # the ACK is the client's own, so only an older one is stale.
                return RejectReason.OUTDATED_BINDING_INFO, "lease renewed here after that release"
        if lease is not None and lease.state is LeaseState.LEASED and status == BindingStatus.ACTIVE \
                and lease.key is not None and lease.key != _key(msg) and self.role is Role.MAIN \
                and not lease.expired_at(now):
            return RejectReason.FATAL_CONFLICT, "address leased to another client here"
        if lease is not None and lease.state in (LeaseState.EXPIRED, LeaseState.RELEASED) \
                and status == BindingStatus.ACTIVE and (msg.cltt or 0) <= lease.cltt:
            return RejectReason.OUTDATED_BINDING_INFO, "older than our release or expiry"
        fields: dict = {"scope": pool.scope}
        keep_ours = False
        if status == BindingStatus.ACTIVE:
            fields.update(
                state=LeaseState.LEASED, hw=hw or b"", client_id=msg.client_id,
                start=msg.start_time_of_state or now, expiration=msg.lease_expiration or 0,
                cltt=msg.cltt or now,
                partner_time=max(msg.potential_expiration or 0, lease.partner_time if lease else 0),
            )
            # The same client, and our lease runs longer: found by bench/chaos
            # (partition, partner-down on one side, both answering a renewal:
            # one with the MCLT, one with the full time).  Taking the shorter
            # binding lost the lease the client held once it ran out; keep the
            # longer one and send it back so the partner holds it too.
            if _longer_for_same_client(lease, msg, now) == "ours":
                keep_ours = True
                fields.update(expiration=lease.expiration, cltt=max(lease.cltt, fields["cltt"]))
        elif status in (BindingStatus.EXPIRED, BindingStatus.RELEASED, BindingStatus.RESET, BindingStatus.FREE):
            # Expired and released bindings are stored free: the sender frees
            # them itself once we acknowledge (ISC does the same).
            fields.update(state=LeaseState.AVAILABLE, expiration=0, cltt=msg.cltt or (lease.cltt if lease else 0))
            if status == BindingStatus.FREE:
                fields.update(hw=b"", client_id=None)
        elif status == BindingStatus.BACKUP:
            fields.update(state=LeaseState.BACKUP, expiration=0, hw=b"", client_id=None)
        elif status == BindingStatus.ABANDONED:
            fields.update(state=LeaseState.UNAVAILABLE, expiration=0, hw=b"", client_id=None)
        else:
            return RejectReason.UNKNOWN, f"unknown binding status {status}"
        self.table.update(address, durable=True, from_partner=True, event="partner-update", now=now, **fields)
        if keep_ours:
            self._queue(address)
        return None, None

    # -- the pool split --------------------------------------------------------
    def rebalance(self, now: int) -> int:
        """Main only: move FREE addresses to BACKUP until each scope's share is met."""
        if self.role is not Role.MAIN:
            return 0
        self.last_rebalance = now
        moved = 0
        pct = 50.0 if self.pair.load_balancing else None
        for name in self.scopes:
            pool = self.table.pools.get(name)
            if pool is None:
                continue
            share = pct if pct is not None else self.scope_pct.get(name, self.pair.backup_pct)
            available = pool.free_count() + pool.backup_count()
            want = int(available * share / 100)
            for _ in range(max(want - pool.backup_count(), 0)):
                address = self.table.allocate(name, b"", owner="main")
                if address is None:
                    break
                self.table.update(address, durable=True, event="backup", now=now, state=LeaseState.BACKUP,
                                  scope=name, hw=b"", client_id=None, expiration=0, start=now)
                moved += 1
        if moved:
            self._log("failover-pool-split", {"pair": self.name, "moved": moved})
        return moved

    scope_pct: dict[str, float] = {}

    # -- time ------------------------------------------------------------------
    def tick(self, now: int) -> None:
        """Timers: CONTACT, partner silence, handshake, startup, RECOVER-WAIT, safe period, rebalance."""
        if self.connected:
            silent = now - self.last_received
            if not self.handshaken and now - self.link_since > HANDSHAKE_TIMEOUT:
                self._log("failover-handshake-timeout", {"pair": self.name})
                self.out.close = True
            elif silent > self.pair.failover_poll_timeout:
                self._disconnect(now, RejectReason.NO_TRAFFIC, f"nothing heard for {silent} s")
            elif self.handshaken and now - self.last_sent >= self._contact_interval():
                self._send(wire.contact(self._next_xid(), now), now)
        if self.state is S.STARTUP and not self.in_touch and now - self.started >= self.pair.failover_poll_timeout:
            self._log("failover-partner-not-heard", {"pair": self.name, "seconds": now - self.started})
            self._leave_startup(now)
            t = on_comm_fail(self.state)
            if t is not None:
                self._set_state(t.new, now, "partner not heard at start-up")
            elif self.state is S.RECOVER and self.role is Role.MAIN and self.full_recover \
                    and self.failover_recover is None and self._holds_leases():
                # Seed, "Making Nonfailover Servers Failover Mains" and Table
                # 27-3 row 1: a main that has leases but no failover history
                # (a standalone server given a backup, or a role swap) keeps
                # serving in PARTNER-DOWN until its new backup appears.
                self._set_state(S.PARTNER_DOWN, now, "new main with leases, partner not heard")
        if self.state is S.RECOVER_WAIT and now >= self.wait_from + self.mclt:
            t = on_recover_wait_done(self.state)
            if t:
                self._set_state(t.new, now, t.reason)
        if self.state is S.COMMUNICATIONS_INTERRUPTED and self.pair.use_safe_period \
                and self.comm_since is not None and now - self.comm_since >= self.pair.safe_period:
            t = on_safe_period(self.state)
            if t:
                self._set_state(t.new, now, t.reason)
        if self.state is S.PARTNER_DOWN:
            self._reclaim(now)
        if self.failover_recover is not None and self.state is S.NORMAL \
                and now - self._recover_warned >= RECOVER_WARN_INTERVAL:
            # Seed, Table 27-3: failover-recover is for one start; left set, the
            # next restart throws away what this server learnt since.
            self._recover_warned = now
            self._log("failover-recover-still-set", {"pair": self.name, "since": self.failover_recover})
        if self.role is Role.MAIN and self.state is S.NORMAL and now - self.last_rebalance >= REBALANCE_INTERVAL:
            self.rebalance(now)
        self.pump(now)

    def _reclaim(self, now: int) -> None:
        """PARTNER-DOWN: free expired and released leases the partner can no longer hold.

        Such an address may be in use by a client of the partner until MCLT
        past the later of the partner-down time and the latest expiration the
        partner may know of (the potential expiration we sent or it
        acknowledged); after that it is free for any client.  The lease table
        is examined RECLAIM_BATCH leases per tick so a large one never stalls
        the reactor.
        """
        if now < self.stos + self.mclt:
            return
        if not self._reclaim_todo:
            if now < self._reclaim_next:
                return
            self._reclaim_todo = list(self.table.leases)
            self._reclaim_next = now + 60
        batch, self._reclaim_todo = self._reclaim_todo[-RECLAIM_BATCH:], self._reclaim_todo[:-RECLAIM_BATCH]
        scopes = set(self.scopes)
        for address in batch:
            lease = self.table.get(address)
            if lease is None or lease.scope not in scopes \
                    or lease.state not in (LeaseState.EXPIRED, LeaseState.RELEASED):
                continue
            told = max(self.stos, lease.expiration if 0 < lease.expiration < Lease.INFINITE else 0,
                       lease.potential_expiration, lease.partner_time)
            if now >= told + self.mclt:
                self.table.update(address, durable=True, event="reclaim", now=now, state=LeaseState.AVAILABLE)

    def _holds_leases(self) -> bool:
        scopes = set(self.scopes)
        return any(l.scope in scopes and l.state is not LeaseState.BACKUP for l in self.table.leases.values())

    def _contact_interval(self) -> float:
        # Never let the partner's receive timer run out: ISC uses a third of it.
        return min(self.pair.failover_poll_interval, max(self.partner_receive_timer / 3, 1))

    # -- operator --------------------------------------------------------------
    def set_partner_down(self, now: int, since: int | None = None) -> bool:
        """CNR setPartnerDown; False when refused (the partner is in touch)."""
        t = on_partner_down_command(self.state, in_touch=self.in_touch)
        if t is None:
            return False
        self._set_state(t.new, now, t.reason)
        if since is not None:
            self.stos = since
            self._persist_state()
        return True

    # -- serving ---------------------------------------------------------------
    def admit(self, kind: str, lb_key: bytes, now: int) -> tuple[bool, str | None, str]:
        """The DHCP server's gate for the scopes of this pair (see DhcpServer.gates)."""
        svc = service(self.state)
        own = "main" if self.role is Role.MAIN else "backup"
        if svc is Service.NONE:
            return False, None, f"failover-{self.label.lower()}"
        if svc is Service.BALANCED:
            # The main's hash-bucket map decides (ours as main, the one in the
            # main's CONNECT as backup): a set bit is a bucket the main serves.
            hba = self._hba() if self.role is Role.MAIN else (self.partner_hba or _ALL_MAIN)
            if hba == _ALL_MAIN:
                if self.role is Role.BACKUP:
                    # Seed, "Confirming Failover" step 6: the backup drops requests in NORMAL.
                    return False, None, "failover-normal-backup"
                return True, own, ""
            if kind == "new":
                main_serves = wire.hba_has_bucket(hba, wire.load_balance_hash(lb_key))
                if main_serves != (self.role is Role.MAIN):
                    return False, None, "failover-load-balanced-to-partner"
            return True, own, ""
        if svc is Service.OWN_POOL:
            return True, own, ""
        # PARTNER-DOWN: everyone is served, but the partner may have handed
        # out its own free addresses until it went down; they are ours only
        # MCLT after the partner-down time (draft §5.3).
        if now < self.stos + self.mclt:
            return True, own, ""
        return True, "any", ""

    def lease_time(self, lease: Lease | None, desired: int, now: int) -> int:
        partner_time = lease.partner_time if lease is not None else 0
        return lease_time(desired, now, self.mclt, partner_time)

    def potential_expiration(self, desired: int, granted: int, now: int) -> int:
        return potential_expiration(now, desired, granted)


_ALL_MAIN = wire.hba_from_split(256)
_SPLIT_128 = wire.hba_from_split(128)

_STATUS_OF = {
    LeaseState.AVAILABLE: int(BindingStatus.FREE),
    LeaseState.LEASED: int(BindingStatus.ACTIVE),
    LeaseState.EXPIRED: int(BindingStatus.EXPIRED),
    LeaseState.RELEASED: int(BindingStatus.RELEASED),
    LeaseState.UNAVAILABLE: int(BindingStatus.ABANDONED),
    LeaseState.RESET: int(BindingStatus.RESET),
    LeaseState.BACKUP: int(BindingStatus.BACKUP),
}


def _longer_for_same_client(lease: Lease | None, msg: Message, now: int) -> str | None:
    """For an ACTIVE update of an address we hold LEASED, unexpired, to the
    same client: "ours" or "theirs", whichever lease runs longer; None if the
    client differs, ours has run out, or they end together."""
    if lease is None or lease.state is not LeaseState.LEASED or lease.expired_at(now):
        return None
    if lease.key is None or lease.key != _key(msg):
        return None
    theirs = msg.lease_expiration or 0
    if lease.expiration > theirs:
        return "ours"
    if theirs > lease.expiration:
        return "theirs"
    return None


def _key(msg: Message) -> bytes | None:
    from cnrd.leases.model import client_key
    hw = msg.client_hw or b""
    cid = msg.client_id
    if not hw and not cid:
        return None
    return client_key(cid, hw)
