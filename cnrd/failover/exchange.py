"""Binding updates between the lease table and the partner.

:class:`Exchange` turns lease changes into BNDUPDs (through the
:class:`~cnrd.failover.updates.Updates` window), settles the partner's
BNDACKs, takes the partner's BNDUPDs into the table by
:func:`cnrd.failover.bindings.decide`, and answers UPDREQ/UPDREQALL
(:mod:`cnrd.failover.recovery`).  Messages leave through the ``send``
callable it is given; the session decides when the link allows it.

Pure module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cnrd.failover import bindings, recovery, wire
from cnrd.failover.recovery import Recovery
from cnrd.failover.states import Role
from cnrd.failover.updates import InFlight, Updates
from cnrd.failover.wire import BindingStatus, Message, RejectReason
from cnrd.leases.model import Lease, LeaseFlag, LeaseState
from cnrd.leases.table import LeaseTable

Log = Callable[[str, dict[str, Any]], None]

_O_ADDRESS, _O_STATUS = int(wire.Option.ASSIGNED_IP_ADDRESS), int(wire.Option.BINDING_STATUS)
_O_REJECT_REASON = int(wire.Option.REJECT_REASON)
_FREED_BY_ACK = (BindingStatus.EXPIRED, BindingStatus.RELEASED, BindingStatus.RESET)
_FREED_STATES = (LeaseState.EXPIRED, LeaseState.RELEASED, LeaseState.RESET)
_PENDING = int(LeaseFlag.UPDATE_PENDING)  # tested as an int: IntFlag operators build a member each time
# Every combination of the known flags with the pending flag set, and
# cleared, by value: a tuple index costs a tenth of building the member.
_KNOWN = 2 * max(LeaseFlag)
_SET = tuple(LeaseFlag(f | _PENDING) for f in range(_KNOWN))
_CLEARED = tuple(LeaseFlag(f & ~_PENDING) for f in range(_KNOWN))


def _pending(flags: LeaseFlag) -> LeaseFlag:
    """``flags`` with UPDATE_PENDING (bits this version does not know are kept)."""
    return _SET[flags] if flags < _KNOWN else LeaseFlag(flags | _PENDING)


def _not_pending(flags: LeaseFlag) -> LeaseFlag:
    """``flags`` without UPDATE_PENDING."""
    return _CLEARED[flags] if flags < _KNOWN else LeaseFlag(flags & ~_PENDING)


def _flagged(table: LeaseTable, scopes: set[str]) -> list[int]:
    """The leases of ``scopes`` flagged ``UPDATE_PENDING``, by address."""
    none = LeaseFlag.NONE  # most leases: an identity test skips them (1,000,000 in 0.04 s)
    return sorted(lease.address for lease in table.leases.values()
                  if lease.flags is not none and lease.flags & _PENDING and lease.scope in scopes)


class Exchange:
    """The binding traffic of one relationship, on one side."""

    def __init__(self, name: str, role: Role, table: LeaseTable, scopes: list[str], *, updates: Updates,
                 recovery: Recovery, send: Callable[[Message, int], None], next_xid: Callable[[], int],
                 log: Log, stored_queue: Iterable[int] = (), discard_stored: bool = False) -> None:
        self.name = name
        self.role = role
        self.table = table
        self.scopes = scopes  # the relationship's scopes (replaced on reconfiguration)
        self._updates = updates
        self._recovery = recovery
        self._send = send
        self._next_xid = next_xid
        self._log = log
        # Main only: BACKUP addresses being taken back.  They stay BACKUP
        # here until the backup acknowledges the FREE update, so neither
        # server can hand one out while the other still may.
        self.reclaiming: set[int] = set()
        # Leases a BNDACK changed in place (their partner time, the pending
        # flag cleared), to be written with the next commit (see bndack).
        self.acked_times: set[int] = set()
        # Queue keys of an older store (one per address), and whether the
        # stored queue belongs to a role this server no longer has.
        self._stored_queue = list(stored_queue)
        self._discard_stored = discard_stored

    def lease_changed(self, lease: Lease, what: str) -> None:
        """A durable lease change: queue its update (offers are not bindings).

        The lease is flagged ``UPDATE_PENDING`` before its record is written
        (the table packs it at the commit), so the queue entry is exactly
        as durable as the change it sends.
        """
        if lease.scope in self.scopes and lease.state is not LeaseState.OFFERED:
            self._updates.queue(lease.address)
            lease.flags = _pending(lease.flags)

    def restore_queue(self) -> None:
        """Queue the binding updates the store kept: the leases of our scopes
        flagged ``UPDATE_PENDING``, and the stored queue keys (their leases
        flagged now, so the commit that deletes the keys writes the flags).
        After a role change the flags are cleared instead: the old
        relationship's updates mean nothing now.  Every lease changed here
        is marked for the next commit.

        Called when the session is made and again once the lease table is
        loaded (the runtime loads it when it starts); doing it twice queues
        nothing twice.
        """
        flagged = _flagged(self.table, set(self.scopes))
        if self._discard_stored:
            due, change = flagged, _not_pending
        else:
            due, change = sorted(set(flagged).union(self._stored_queue)), _pending
            for address in due:
                self._updates.queue(address)
        for address in due:
            lease = self.table.get(address)
            if lease is None:
                continue
            new = change(lease.flags)
            if new is not lease.flags:
                lease.flags = new
                self.table.mark_durable(address)

    def _keep_flag(self, address: int) -> None:
        """``address``'s lease carries ``UPDATE_PENDING`` exactly while an update for it is
        outstanding; a flag cleared is written with the next commit (mark_acked_times)."""
        lease = self.table.get(address)
        if lease is None:
            return
        flags = lease.flags
        new = _pending(flags) if self._updates.is_outstanding(address) else _not_pending(flags)
        if new is not flags:
            lease.flags = new
            self.acked_times.add(address)

    def reclaim(self, addresses: list[int]) -> None:
        """Main: ask the backup to give these BACKUP addresses back (BNDUPD FREE, draft §5.4).

        Not flagged pending: after a restart the addresses are simply the backup's again.
        """
        for address in addresses:
            self.reclaiming.add(address)
            self._updates.queue(address)

    def link_lost(self) -> None:
        """Reclaims not acknowledged are dropped: the addresses stay the backup's."""
        self.reclaiming.clear()

    def pump(self, window: int, now: int) -> None:
        """Send queued updates while fewer than ``window`` are unacknowledged."""
        while (address := self._updates.next_due(window)) is not None:
            lease = self.table.get(address)
            if address in self.reclaiming:
                if lease is not None and lease.state is LeaseState.BACKUP:
                    lease = Lease(address, LeaseState.AVAILABLE, scope=lease.scope, start=now)
                else:
                    self.reclaiming.discard(address)
            msg, status, pet = bindings.bndupd(address, lease, self._next_xid(), now)
            self._updates.sent_update(msg.xid, InFlight(address, status, pet))
            self._send(msg, now)

    def bndack(self, msg: Message, now: int) -> None:
        """The partner acknowledged (or refused) one of our updates."""
        rejected = msg.values().get(_O_REJECT_REASON)  # one pass, kept on the message
        update = self._updates.acked(msg.xid, rejected=rejected is not None)
        if update is None:
            return
        address = update.address
        if address in self.reclaiming:
            self.reclaiming.discard(address)
            lease = self.table.get(address)
            if rejected is None and update.status == BindingStatus.FREE \
                    and lease is not None and lease.state is LeaseState.BACKUP:
                # The backup gave it back: it is the main's to allocate now.
                self.table.update(address, durable=True, from_partner=True, event="reclaimed", now=now,
                                  state=LeaseState.AVAILABLE, start=now)
        if rejected is not None:
            self._log("failover-bndack-reject", {"pair": self.name, "address": address,
                                                 "reason": rejected[0], "message": msg.message_text})
        else:
            lease = self.table.get(address)
            if lease is not None:
                if update.status in _FREED_BY_ACK and lease.state in _FREED_STATES:
                    # The partner knows: the address is free for any client (draft §5.11).
                    self.table.update(address, durable=True, from_partner=True, state=LeaseState.AVAILABLE,
                                      partner_time=max(update.pet, lease.partner_time))
                elif update.pet > lease.partner_time:
                    # Not indexed and not part of the lease's class: set in
                    # place.  Losing it in a crash only shortens the next
                    # renewal to the MCLT rule's limit (and the partner is
                    # asked again on UPDREQ), so it needs no sync of its own:
                    # it rides along with the next commit (mark_acked_times).
                    lease.partner_time = update.pet
                    self.acked_times.add(address)
        # The pending flag goes with the same write; lost in a crash, the
        # update is sent once more after the restart (the partner's answer
        # to a binding it already has is the same).
        self._keep_flag(address)
        self._settled(address, now)

    def mark_acked_times(self) -> int:
        """Mark the leases BNDACKs changed (partner time, pending flag) for the next commit; how many.

        The adapter's commit calls this whenever it writes lease changes
        anyway, and the session's tick once a second, so acknowledgements
        cost no sync of their own and wait at most a second to be written.
        """
        acked, self.acked_times = self.acked_times, set()
        mark = self.table.mark_durable
        for address in acked:
            mark(address)
        return len(acked)

    def bndupd(self, msg: Message, now: int) -> Message:
        """Take the partner's binding into the table, or refuse it; the BNDACK to send after the commit."""
        values = msg.values()  # decide reads the same dict
        raw = values.get(_O_ADDRESS)
        address = None if raw is None else int.from_bytes(raw)
        status = values.get(_O_STATUS)
        reason: RejectReason | None = None
        text: str | None = None
        pool = self.table.pool_of(address) if address is not None and status is not None else None
        if address is not None and status is not None and (pool is None or pool.scope not in self.scopes):
            reason, text = RejectReason.ILLEGAL_IP_ADDRESS, "address not in this relationship"
        else:
            ours = self._updates.in_flight(address) if address is not None else None
            decision = bindings.decide(self.table.get(address) if address is not None else None, msg,
                                       ours.status if ours is not None else None, self.role, now)
            if decision.withdraw and address is not None:
                # Theirs wins: ours is withdrawn, and for an update request in
                # progress the partner now knows this binding (it sent it).
                self._updates.withdraw(address)
                self.reclaiming.discard(address)
                self._keep_flag(address)
                self._settled(address, now)
            if decision.reject is not None:
                reason, text = decision.reject
            elif address is not None and pool is not None:
                self.table.update(address, durable=True, from_partner=True, event="partner-update", now=now,
                                  scope=pool.scope, **decision.fields)
                if decision.keep_ours:
                    self._updates.queue(address)
                    self._keep_flag(address)
        self._updates.count_received()
        if reason is not None:
            self._log("failover-bndupd-reject", {"pair": self.name, "address": address, "reason": int(reason),
                                                 "message": text})
        return wire.bndack(msg.xid, now, assigned_address=address,  # type: ignore[arg-type]
                           reject_reason=int(reason) if reason else None, message=text)

    def updreq(self, msg: Message, now: int, *, everything: bool) -> None:
        """Answer the partner's UPDREQALL (``everything``) or UPDREQ; UPDDONE follows the last ack."""
        scopes = set(self.scopes)
        if everything:
            extra = recovery.everything(self.table, scopes)
            due = set(extra)
        else:
            due = self._updates.outstanding()
            extra = recovery.missed(self.table, scopes)
            due.update(extra)
        for address in extra:
            # Not flagged pending: after a crash the partner asks again.
            self._updates.queue(address)
        # Addresses already in flight count once their current update is acked.
        xid = self._recovery.answer(msg.xid, due)
        if xid is not None:
            self._send(wire.upddone(xid, now), now)

    def _settled(self, address: int, now: int) -> None:
        xid = self._recovery.settled(address)
        if xid is not None:
            self._send(wire.upddone(xid, now), now)
