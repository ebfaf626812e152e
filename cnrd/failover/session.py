"""One failover relationship, on one side: the parts composed, the server state owned.

:class:`FailoverSession` is the whole failover protocol for one
``[failover-pair]`` except the bytes (draft-ietf-dhc-failover-12, as ISC
dhcpd 4.4 speaks it).  The Twisted adapter (:mod:`cnrd.failover.protocol`)
hands it decoded messages, connection events and clock ticks, and takes
back the messages to send (:meth:`FailoverSession.take`), whether to close
the link, and the values to persist.  It composes:

* :class:`~cnrd.failover.link.Link`: the handshake, liveness and its timers;
* :class:`~cnrd.failover.updates.Updates` and
  :class:`~cnrd.failover.recovery.Recovery`, driven by
  :class:`~cnrd.failover.exchange.Exchange`: binding updates and update
  requests between the lease table and the partner;
* :mod:`cnrd.failover.pool`: the backup's share and the PARTNER-DOWN reclaim;
* :class:`~cnrd.failover.gate.Gate`: what the DHCP core may do.

and owns the server state (:mod:`cnrd.failover.states`), persisted through
:mod:`cnrd.failover.record`.  Everything here takes ``now`` as an argument.

Pure module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnrd.config import FailoverPairConfig
from cnrd.config.timespec import format_iso
from cnrd.failover import pool, record, wire
from cnrd.failover.exchange import Exchange
from cnrd.failover.gate import ALL_MAIN, Gate, main_hba
from cnrd.failover.link import Due, Link
from cnrd.failover.recovery import Recovery
from cnrd.failover.states import (
    LABELS, S, Role, on_comm_fail, on_partner_down_command, on_partner_state, on_recover_wait_done,
    on_safe_period, on_upddone, startup,
)
from cnrd.failover.updates import Updates
from cnrd.failover.wire import FailoverWireError, Message, MessageType, Option, RejectReason
from cnrd.leases.model import Lease
from cnrd.leases.table import LeaseTable

VENDOR = "cnrd"
RECOVER_WARN_INTERVAL = 3600  # seconds between "unset failover-recover" warnings
#: Pair settings the two servers agree on in the handshake.
NEGOTIATED = ("mclt", "load_balancing", "split", "hba", "max_unacked_updates", "failover_poll_timeout")


@dataclass
class Output:
    """What the adapter must do after feeding the session (persisting is separate: take_persist)."""

    send: list[Message] = field(default_factory=list)
    acks: list[Message] = field(default_factory=list)  # send only after the next commit
    close: bool = False


@dataclass(frozen=True)
class PeerStatus:
    """A snapshot of one relationship, for the admin API and metrics."""

    name: str
    role: Role
    state: S
    label: str
    partner_state: S | None
    partner_label: str
    in_touch: bool
    connected: bool
    comm_since: int | None  # start of COMMUNICATIONS-INTERRUPTED in this run
    stos: int  # start time of our state
    heard: bool  # the partner was heard in this run (in touch now, or lost since)
    last_received: int
    last_contact: int | None
    started: int
    mclt: int
    clock_skew: int
    queued: int  # updates queued or unacknowledged
    in_flight: int  # updates unacknowledged
    sent_updates: int
    acked_updates: int
    rejected_updates: int
    received_updates: int
    transitions: int


def _label(state: S | None) -> str:
    return LABELS.get(state, state.name) if state is not None else "unknown"


class _GateView:
    """What the gate reads of a session: its state and the main's hash-bucket map."""

    def __init__(self, session: FailoverSession) -> None:
        self._session = session
        # The main's map for the pair settings it was made from: asked for on
        # every request, and hashing the settings for main_hba's cache costs
        # more than comparing them by identity.
        self._hba_of: tuple[FailoverPairConfig, bytes] | None = None

    @property
    def state(self) -> S:
        return self._session.state

    @property
    def role(self) -> Role:
        return self._session.role

    @property
    def stos(self) -> int:
        return self._session.stos

    @property
    def mclt(self) -> int:
        return self._session.mclt

    @property
    def hba(self) -> bytes:
        """The main's map as this side knows it: ours as main, the one in the main's CONNECT as backup."""
        if self._session.role is Role.MAIN:
            pair = self._session.pair
            cached = self._hba_of
            if cached is None or cached[0] is not pair:
                cached = self._hba_of = (pair, main_hba(pair))
            return cached[1]
        return self._session.link.partner_hba or ALL_MAIN

    @property
    def max_secs(self) -> int:
        return self._session.pair.load_balance_max_seconds


class FailoverSession:
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
        stored_queue: Iterable[int] = (),
        log: Callable[[str, dict[str, Any]], None] | None = None,
        failover_recover: int | None = None,
        scope_pct: Mapping[str, float] | None = None,
        renamed_from_keys: Iterable[str] = (),
    ) -> None:
        self._pair = pair
        self._role = role
        self._table = table
        self._scope_pct = dict(scope_pct or {})
        self._log = log or (lambda event, fields: None)
        self.mclt = pair.mclt
        self.partner_state: S | None = None
        self.partner_stos = 0
        self.talked = False  # ever completed a handshake with this partner
        self.stos = now
        self.discarded_queue = False
        previous_stored: S | None = None
        if stored_state is not None:
            rec = record.unpack(stored_state)
            if not rec.belongs_to(role):
                # CNR, "Changing Failover Server Roles": the relationship's
                # stored failover state does not survive a role swap; this
                # server starts as one that never talked to its partner.
                self._log("failover-role-changed", {"pair": pair.name, "role": role.value})
                stored_queue = ()
                self.discarded_queue = True
            else:
                previous_stored = rec.state if rec.state is not S.STARTUP else rec.previous
                self.stos = rec.stos
                self.partner_state = rec.partner_state
                self.partner_stos = rec.partner_stos
                if role is Role.BACKUP and rec.mclt:
                    self.mclt = rec.mclt  # the main's MCLT, learnt from its CONNECT
                self.talked = rec.talked
        # failover-recover (CNR, Table 27-3): the store is older than the
        # partner's knowledge (restored from a backup taken at that time, or
        # failover was off since then): ask for everything and wait MCLT from
        # that time before serving.
        self.failover_recover = failover_recover
        self.full_recover = failover_recover is not None or not self.talked
        if failover_recover is not None:
            previous_stored = S.RECOVER
        self._state, self.previous = startup(previous_stored)
        if failover_recover is not None:
            self.stos = min(failover_recover, now)
        elif previous_stored is None:
            self.stos = now  # ISC: a server with no stored state recovers from its start
        self.started = now
        self.wait_from = self.stos  # after a restart in RECOVER-WAIT: its own start (the safe side)
        self.comm_since: int | None = None  # start of COMMUNICATIONS-INTERRUPTED
        self.transitions = 0  # state changes in this run (metrics)
        self.last_rebalance = 0
        self._recover_warned = 0
        self.link = Link(now, pair.failover_poll_timeout)
        self.updates = Updates()
        self.recovery = Recovery()
        self.exchange = Exchange(pair.name, role, table, list(scopes), updates=self.updates,
                                 recovery=self.recovery, send=self._send, next_xid=self.link.next_xid,
                                 log=self._log, stored_queue=stored_queue, discard_stored=self.discarded_queue)
        self._reclaim = pool.Reclaim()
        self._out = Output()
        self._persist: dict[str, bytes | None] = {}  # state values for the next commit (None deletes)
        self.gate = Gate(_GateView(self))
        # Who the relationship is between, kept beside the record so that a
        # renamed pair can find its state again (record.renamed_from).
        self._persist[record.peers_key(self.name)] = record.pack_peers(pair.main, pair.backup)
        self.exchange.restore_queue()
        if renamed_from_keys and not self.discarded_queue:
            # Built from the old name's state: the first commit writes it
            # under our name and deletes every old key in the same
            # transaction, so a crash leaves exactly one copy.
            self._persist_state()
            for k in renamed_from_keys:
                self._persist.setdefault(k, None)

    # -- what others read ----------------------------------------------------
    @property
    def name(self) -> str:
        return self._pair.name

    @property
    def role(self) -> Role:
        return self._role

    @property
    def pair(self) -> FailoverPairConfig:
        return self._pair

    @property
    def state(self) -> S:
        return self._state

    @property
    def interrupted_since(self) -> int | None:
        """When communication with the partner was lost, if it is lost now; kept across a restart.

        The start of COMMUNICATIONS-INTERRUPTED (or RESOLUTION-INTERRUPTED),
        also while in STARTUP after a restart in one of them: the stored
        record's start time of state is that start, so the safe period and
        the earliest partner-down time count from the loss, not the restart.
        """
        state = self.previous if self._state is S.STARTUP else self._state
        return self.stos if state in (S.COMMUNICATIONS_INTERRUPTED, S.RESOLUTION_INTERRUPTED) else None

    def status(self) -> PeerStatus:
        """A snapshot for the admin API and metrics."""
        link, upd = self.link, self.updates
        return PeerStatus(
            name=self.name, role=self._role, state=self._state, label=_label(self._state),
            partner_state=self.partner_state, partner_label=_label(self.partner_state),
            in_touch=link.in_touch, connected=link.connected, comm_since=self.comm_since, stos=self.stos,
            heard=link.in_touch or self.comm_since is not None or (self.talked and link.last_received > self.started),
            last_received=link.last_received, last_contact=link.last_contact, started=self.started,
            mclt=self.mclt, clock_skew=link.clock_skew, queued=len(upd.pending) + len(upd.unacked),
            in_flight=len(upd.unacked), sent_updates=upd.sent_updates, acked_updates=upd.acked_updates,
            rejected_updates=upd.rejected_updates, received_updates=upd.received_updates,
            transitions=self.transitions)

    # -- output --------------------------------------------------------------
    def take(self) -> Output:
        """The messages to send and whether to close, decided since the last call."""
        out, self._out = self._out, Output()
        return out

    def take_persist(self) -> dict[str, bytes | None]:
        """State values (the server state, keys to delete) for the next commit."""
        p, self._persist = self._persist, {}
        return p

    def restore_persist(self, values: dict[str, bytes | None]) -> None:
        """Give back values a commit did not write, so the next one does."""
        for k, v in values.items():
            self._persist.setdefault(k, v)

    def _send(self, msg: Message, now: int) -> None:
        self._out.send.append(msg)
        self.link.sent(now)

    def _persist_state(self) -> None:
        self._persist[record.key(self.name)] = record.pack(record.StateRecord(
            state=self._state, stos=self.stos, partner_state=self.partner_state, partner_stos=self.partner_stos,
            mclt=self.mclt, previous=self.previous, talked=self.talked and not self.full_recover,
            role_code=record.role_code(self._role)))

    # -- states --------------------------------------------------------------
    def _set_state(self, new: S, now: int, reason: str) -> None:
        if new is self._state:
            return
        old = self._state
        if old is S.RECOVER:
            # RECOVER-WAIT counts MCLT from the time we could last have been
            # wrong: RECOVER's start (or failover-recover), not from now.
            self.wait_from = self.stos
        self._state = new
        self.stos = now
        self.transitions += 1
        if new in (S.RECOVER_DONE, S.NORMAL):
            # Everything the partner knew has arrived: from now on a RECOVER
            # asks only for what was missed (stored as "talked").
            self.full_recover = False
        if new is S.COMMUNICATIONS_INTERRUPTED:
            self.comm_since = now
        self._log("failover-state", {"pair": self.name, "from": _label(old), "to": _label(new), "reason": reason})
        self._persist_state()
        if self.link.in_touch:
            self._send_state(now)
            self._on_enter(now)

    def _send_state(self, now: int, startup_flag: bool = False) -> None:
        shown = self.previous if self._state is S.STARTUP else self._state
        self._send(wire.state(self.link.next_xid(), now, server_state=int(shown), start_time_of_state=self.stos,
                              flags=wire.ServerFlags.STARTUP if startup_flag else 0), now)

    def _on_enter(self, now: int) -> None:
        """Duties on entering a state while in touch with the partner."""
        if self._state is S.RECOVER and self.recovery.ask():
            # Draft §9.3: a server that kept its lease database asks only for
            # what it missed; one that lost it (or never talked, or was told
            # by failover-recover that its store is stale) asks for everything.
            ask = wire.updreqall if self.full_recover else wire.updreq
            self._send(ask(self.link.next_xid(), now), now)
        elif self._state is S.POTENTIAL_CONFLICT and self._role is Role.MAIN and self.recovery.ask():
            self._send(wire.updreq(self.link.next_xid(), now), now)
        elif self._state is S.NORMAL:
            self.recovery.requested = False
            if self._role is Role.MAIN:
                self.rebalance(now)
            else:
                self._send(wire.poolreq(self.link.next_xid(), now), now)
        self.pump(now)

    def _leave_startup(self, now: int) -> S:
        """Out of STARTUP into the remembered previous state; the state now."""
        if self._state is S.STARTUP:
            self._state = self.previous
            self.transitions += 1
            self._log("failover-state", {"pair": self.name, "from": "STARTUP", "to": _label(self._state),
                                         "reason": "previous state"})
            self._persist_state()
        return self._state

    # -- link events ---------------------------------------------------------
    def connection_made(self, now: int) -> None:
        """A TCP connection to the partner is up (either direction)."""
        self.link.up(now)
        self.recovery.requested = False
        if self._role is Role.MAIN:
            # ISC sends CONNECT on every link, whoever dialled.
            pair = self._pair
            self._send(wire.connect(
                0, now, relationship_name=self.name, max_unacked=pair.max_unacked_updates,
                receive_timer=pair.failover_poll_timeout, vendor_class=VENDOR, mclt=self.mclt,
                hba=main_hba(pair)), now)

    def connection_lost(self, now: int) -> None:
        """The link went down (closed, reset or timed out)."""
        was = self.link.down()
        self.exchange.mark_acked_times()
        self.updates.requeue()
        self.exchange.link_lost()
        self.recovery.link_lost()
        if was:
            self._log("failover-comm-lost", {"pair": self.name})
        if self._state is S.STARTUP:
            return
        t = on_comm_fail(self._state)
        if t is not None:
            self._set_state(t.new, now, t.reason)

    # -- messages ------------------------------------------------------------
    def receive(self, msg: Message, now: int) -> None:
        """One decoded message from the partner."""
        self.link.received(now)
        t = msg.type
        if t in (MessageType.CONNECT, MessageType.CONNECTACK):
            self._handshake(msg, now)
        elif not self.link.handshaken:
            self._disconnect(now, RejectReason.UNKNOWN, f"{MessageType(t).name} before CONNECT")
        elif t == MessageType.STATE:
            self._on_state(msg, now)
        elif t == MessageType.BNDUPD:
            self._out.acks.append(self.exchange.bndupd(msg, now))
        elif t == MessageType.BNDACK:
            self.exchange.bndack(msg, now)
        elif t in (MessageType.UPDREQALL, MessageType.UPDREQ):
            self.exchange.updreq(msg, now, everything=t == MessageType.UPDREQALL)
        elif t == MessageType.UPDDONE:
            done = on_upddone(self._state, self._role, wait_needed=self.stos + self.mclt > now,
                              partner=self.partner_state)
            if done is not None:
                self._set_state(done.new, now, done.reason)
        elif t == MessageType.POOLREQ:
            moved = self.rebalance(now) if self._role is Role.MAIN else 0
            self._send(wire.poolresp(msg.xid, now, addresses_transferred=moved), now)
        elif t == MessageType.DISCONNECT:
            self._log("failover-disconnect", {"pair": self.name, "reason": msg.reject_reason,
                                              "message": msg.message_text})
            self._out.close = True
        # CONTACT and POOLRESP need nothing beyond the receive time.
        self.pump(now)

    def refuse(self, error: FailoverWireError, now: int) -> None:
        """A message the adapter could not decode: reject it with the draft's reason and close.

        Logged like our own rejects (so a CONNECT without a valid hash bucket
        map counts as a configuration mismatch); a CONNECT is answered with a
        CONNECTACK reject, anything else with a DISCONNECT.
        """
        msg = error.message
        reason = int(error.reject_reason or RejectReason.UNKNOWN)
        self._log("failover-reject", {"pair": self.name, "reason": reason,
                                      "message": f"bad message from partner: {error.reason}"})
        if msg is not None and msg.type == MessageType.CONNECT:
            out = wire.connectack(msg.xid, now, relationship_name=msg.get(Option.RELATIONSHIP_NAME),
                                  vendor_class=VENDOR, reject_reason=reason, message=error.reason)
        else:
            out = wire.disconnect(0, now, reject_reason=reason, message=error.reason)
        self._out.send.append(out)
        self._out.close = True

    def _disconnect(self, now: int, reason: int, text: str) -> None:
        self._log("failover-reject", {"pair": self.name, "reason": int(reason), "message": text})
        self._send(wire.disconnect(self.link.next_xid(), now, reject_reason=int(reason), message=text), now)
        self._out.close = True

    def _handshake(self, msg: Message, now: int) -> None:
        pair = self._pair
        refusal = self.link.accept(msg, role=self._role, name=self.name, mclt=pair.mclt,
                                   receive_timer=pair.failover_poll_timeout, now=now)
        if msg.type == MessageType.CONNECT:
            if refusal is not None:
                self._log("failover-reject", {"pair": self.name, "reason": int(refusal.reason),
                                              "message": refusal.text})
                self._send(wire.connectack(msg.xid, now, relationship_name=msg.relationship_name,
                                           vendor_class=VENDOR, reject_reason=int(refusal.reason),
                                           message=refusal.text), now)
                self._out.close = True
                return
            self.mclt = msg.mclt or self.mclt
            if msg.hba is not None and msg.hba != main_hba(pair):
                # The main's map rules (ISC: split and hba belong on the
                # primary); a different one here is a configuration mismatch.
                self._log("failover-hba-mismatch", {"pair": self.name, "main": msg.hba.hex(),
                                                    "ours": main_hba(pair).hex()})
            self._send(wire.connectack(msg.xid, now, relationship_name=self.name, vendor_class=VENDOR,
                                       max_unacked=pair.max_unacked_updates,
                                       receive_timer=pair.failover_poll_timeout,
                                       tls_reply=0 if msg.get(Option.TLS_REQUEST) is not None else None), now)
        elif refusal is not None and refusal.by_partner:
            self._log("failover-rejected", {"pair": self.name, "reason": int(refusal.reason),
                                            "message": msg.message_text})
            self._out.close = True
            return
        elif refusal is not None:
            self._disconnect(now, refusal.reason, refusal.text)
            return
        self.talked = True
        self._send_state(now, startup_flag=self._state is S.STARTUP)
        self._persist_state()

    def _on_state(self, msg: Message, now: int) -> None:
        st = msg.server_state
        if st is None:
            return
        partner, flags = st
        if not isinstance(partner, S):
            return self._disconnect(now, RejectReason.UNKNOWN, f"unknown server state {partner}")
        first = not self.link.partner_heard
        self.link.partner_heard = True
        self.partner_state = partner
        self.partner_stos = msg.start_time_of_state or 0
        startup_flag = bool(flags & wire.ServerFlags.STARTUP)
        leaving_startup = self._state is S.STARTUP
        if leaving_startup:
            # ISC: a partner in PARTNER-DOWN means we missed something: RECOVER.
            if partner is S.PARTNER_DOWN and self.previous in (S.NORMAL, S.COMMUNICATIONS_INTERRUPTED):
                self.previous = S.RECOVER
            self._leave_startup(now)
        t = on_partner_state(self._state, partner, partner_startup=startup_flag)
        if t is not None and startup_flag and self._state is S.RECOVER:
            # A STARTUP-flagged state is where the partner *was*; a recovering
            # server waits for its real state rather than leaving RECOVER on it.
            t = None
        if first:
            self._log("failover-comm-ok", {"pair": self.name, "partner_state": _label(partner)})
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
        if self._state is S.POTENTIAL_CONFLICT and self._role is Role.BACKUP and partner is S.CONFLICT_DONE \
                and self.recovery.ask():
            self._send(wire.updreq(self.link.next_xid(), now), now)

    # -- binding updates -----------------------------------------------------
    def lease_changed(self, lease: Lease, what: str) -> None:
        """The LeaseTable listener: a durable lease change becomes a binding update."""
        self.exchange.lease_changed(lease, what)

    def pump(self, now: int) -> None:
        """Send queued updates while the partner's window allows."""
        if self.link.in_touch and self._state is not S.STARTUP:
            self.exchange.pump(self.link.partner_max_unacked, now)

    def rebalance(self, now: int) -> int:
        """Main only: move FREE addresses to BACKUP until each scope's share is met."""
        if self._role is not Role.MAIN:
            return 0
        self.last_rebalance = now
        pair = self._pair
        share = pool.shares(self.exchange.scopes, backup_pct=pair.backup_pct, load_balancing=pair.load_balancing,
                            scope_pct=self._scope_pct)
        moved = pool.rebalance(self._table, share, now)
        if moved:
            self._log("failover-pool-split", {"pair": self.name, "moved": moved})
        if pair.load_balancing:
            back = pool.excess(self._table, share)
            if back:
                self.exchange.reclaim(back)
                self._log("failover-pool-reclaim", {"pair": self.name, "addresses": len(back)})
        return moved

    # -- time ------------------------------------------------------------------
    def tick(self, now: int) -> None:
        """Timers: CONTACT, partner silence, handshake, startup, RECOVER-WAIT, safe period, rebalance."""
        pair = self._pair
        due = self.link.due(now, poll_interval=pair.failover_poll_interval, poll_timeout=pair.failover_poll_timeout)
        if due is Due.HANDSHAKE_TIMEOUT:
            self._log("failover-handshake-timeout", {"pair": self.name})
            self._out.close = True
        elif due is Due.SILENT:
            self._disconnect(now, RejectReason.NO_TRAFFIC, f"nothing heard for {now - self.link.last_received} s")
        elif due is Due.CONTACT:
            self._send(wire.contact(self.link.next_xid(), now), now)
        if self._state is S.STARTUP and not self.link.in_touch and now - self.started >= pair.failover_poll_timeout:
            self._log("failover-partner-not-heard", {"pair": self.name, "seconds": now - self.started})
            state = self._leave_startup(now)
            t = on_comm_fail(state)
            if t is not None:
                self._set_state(t.new, now, "partner not heard at start-up")
            elif state is S.RECOVER and self._role is Role.MAIN and self.full_recover \
                    and self.failover_recover is None and pool.holds_leases(self._table, self.exchange.scopes):
                # CNR, "Making Nonfailover Servers Failover Mains" and Table
                # 27-3 row 1: a main that has leases but no failover history
                # (a standalone server given a backup, or a role swap) keeps
                # serving in PARTNER-DOWN until its new backup appears.
                self._set_state(S.PARTNER_DOWN, now, "new main with leases, partner not heard")
        timer = None
        if self._state is S.RECOVER_WAIT and now >= self.wait_from + self.mclt:
            timer = on_recover_wait_done(self._state)
        elif self._state is S.COMMUNICATIONS_INTERRUPTED and pair.use_safe_period:
            # Counted from the loss of communication, which may be before a
            # restart (CNR, "Failover safe period expires").
            lost = self.interrupted_since
            if lost is not None and now - lost >= pair.safe_period:
                timer = on_safe_period(self._state)
        if timer is not None:
            self._set_state(timer.new, now, timer.reason)
        if self._state is S.PARTNER_DOWN:
            self._reclaim.step(self._table, set(self.exchange.scopes), since=self.stos, mclt=self.mclt, now=now)
        if self.failover_recover is not None and self._state is S.NORMAL \
                and now - self._recover_warned >= RECOVER_WARN_INTERVAL:
            # CNR, Table 27-3: failover-recover is for one start; left set, the
            # next restart throws away what this server learnt since.
            self._recover_warned = now
            self._log("failover-recover-still-set", {"pair": self.name, "since": self.failover_recover})
        if self._role is Role.MAIN and self._state is S.NORMAL \
                and now - self.last_rebalance >= pool.rebalance_interval(pair.load_balancing):
            self.rebalance(now)
        self.exchange.mark_acked_times()
        self.pump(now)

    # -- operator --------------------------------------------------------------
    def partner_down_refusal(self, since: int | None = None) -> str | None:
        """Why CNR setPartnerDown (with the partner last known up at ``since``) is refused; None if allowed.

        Refused while the partner is in touch, from a state the command does
        not leave, and for a time earlier than the start of
        COMMUNICATIONS-INTERRUPTED (CNR 7.2, "Using the Failover Safe Period
        to Move Servers into PARTNER-DOWN State": the date cannot be earlier
        than start-of-communications-interrupted): until then the partner was
        talking to us, so it was up.
        """
        if self.link.in_touch:
            return f"partner is in touch (state {_label(self._state)})"
        if on_partner_down_command(self._state, in_touch=False) is None:
            return f"failover pair {self.name} cannot go PARTNER-DOWN from {_label(self._state)}"
        lost = self.interrupted_since
        if since is not None and lost is not None and since < lost:
            shown = self.previous if self._state is S.STARTUP else self._state
            return (f"failover pair {self.name}: partner-down time {format_iso(since)} is earlier than the "
                    f"start of {_label(shown)} ({format_iso(lost)}), when the partner was still talking to us")
        return None

    def set_partner_down(self, now: int, since: int | None = None) -> bool:
        """CNR setPartnerDown; False when refused (see :meth:`partner_down_refusal`)."""
        if self.partner_down_refusal(since) is not None:
            return False
        t = on_partner_down_command(self._state, in_touch=self.link.in_touch)
        if t is None:
            return False
        self._set_state(t.new, now, t.reason)
        if since is not None:
            self.stos = since
            self._persist_state()
        return True

    def reconfigure(self, pair: FailoverPairConfig, scopes: list[str], scope_pct: Mapping[str, float],
                    failover_recover: int | None, now: int) -> list[str]:
        """Run with new pair settings, scopes and scope backup-pct; the negotiated settings that changed.

        ``failover_recover`` None stops the hourly warning (a value only
        matters at start).  A main in NORMAL whose share of the pool changed
        tops the backup's share up now rather than within the hour.  The
        names returned (of :data:`NEGOTIATED`) changed while connected: the
        caller drops the link so both sides negotiate them again.
        """
        self.exchange.scopes = list(scopes)
        pct_changed = self._scope_pct != dict(scope_pct)
        self._scope_pct = dict(scope_pct)
        if failover_recover is None:
            self.failover_recover = None
        old = self._pair
        if old == pair:
            if pct_changed and self._role is Role.MAIN and self._state is S.NORMAL:
                self.rebalance(now)
            return []
        self._pair = pair
        if self._role is Role.MAIN:
            # The main's MCLT is the relationship's (the backup learns it from CONNECT).
            self.mclt = pair.mclt
        changed = [k for k in NEGOTIATED if getattr(old, k) != getattr(pair, k)] if self.link.connected else []
        if self._role is Role.MAIN and self._state is S.NORMAL and \
                (pct_changed or old.backup_pct != pair.backup_pct or old.load_balancing != pair.load_balancing):
            self.rebalance(now)
        return changed
