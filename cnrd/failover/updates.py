"""The binding-update window: which BNDUPDs are queued, in flight and acknowledged.

Every durable lease change queues its address; :meth:`Updates.next_due`
hands out the addresses to send while the partner's max-unacked window
allows, at most one update per address in flight (ISC matches
acknowledgements by address), and :meth:`Updates.acked` settles a BNDACK.

The queue lives in memory.  What makes it durable is the lease record:
:class:`cnrd.failover.exchange.Exchange` writes each queued lease with
``LeaseFlag.UPDATE_PENDING`` and clears it once the partner acknowledged,
so a restart queues the leases that carry it, and the queue costs no
record of its own.

Pure module: it holds addresses and transaction ids, not leases.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple


def legacy_queue_prefix(pair: str) -> str:
    """Where a store written before the queue moved into the lease records
    kept relationship ``pair``'s queue: a key per address (8 hex digits).
    Read once at start, then deleted."""
    return f"failover/{pair}/q/"


class InFlight(NamedTuple):
    """One of our BNDUPDs the partner has not acknowledged yet (a named tuple: one per BNDUPD sent)."""

    address: int
    status: int  # the binding status sent
    pet: int  # the potential expiration sent (0 unless ACTIVE)


class Updates:
    """Our outgoing binding updates for one relationship."""

    def __init__(self) -> None:
        self.pending: OrderedDict[int, None] = OrderedDict()
        self.unacked: dict[int, InFlight] = {}  # by xid
        self.inflight: dict[int, int] = {}  # address -> xid
        self._after_ack: set[int] = set()  # changed again while an update was in flight
        self.sent_updates = self.acked_updates = self.rejected_updates = self.received_updates = 0

    def queue(self, address: int) -> None:
        """Queue a binding update for ``address`` (once, however often it changes before it is sent)."""
        if address not in self.pending:
            self.pending[address] = None

    def next_due(self, window: int) -> int | None:
        """The next address to send an update for, if the window has room; None when done."""
        while self.pending and len(self.unacked) < window:
            address, _ = self.pending.popitem(last=False)
            if address in self.inflight:
                # One update per address in flight; the newer binding goes
                # once the older one is acknowledged.
                self._after_ack.add(address)
                continue
            return address
        return None

    def sent_update(self, xid: int, update: InFlight) -> None:
        """The update for ``update.address`` left with ``xid``."""
        self.unacked[xid] = update
        self.inflight[update.address] = xid
        self.sent_updates += 1

    def in_flight(self, address: int) -> InFlight | None:
        """Our unacknowledged update for ``address``, if there is one."""
        xid = self.inflight.get(address)
        return None if xid is None else self.unacked[xid]

    def acked(self, xid: int, rejected: bool) -> InFlight | None:
        """A BNDACK for ``xid``: the update it settles, or None if it is not ours."""
        update = self.unacked.pop(xid, None)
        if update is None:
            return None  # ISC ignores an xid it does not know
        address = update.address
        self.inflight.pop(address, None)
        if address in self._after_ack:
            self._after_ack.discard(address)
            self.queue(address)
        if rejected:
            self.rejected_updates += 1
        else:
            self.acked_updates += 1
        return update

    def withdraw(self, address: int) -> None:
        """Forget our in-flight update for ``address``: the partner's binding won."""
        xid = self.inflight.pop(address)
        del self.unacked[xid]

    def is_outstanding(self, address: int) -> bool:
        """Whether an update for ``address`` is queued or awaiting an acknowledgement."""
        return address in self.pending or address in self.inflight or address in self._after_ack

    def outstanding(self) -> set[int]:
        """Addresses queued or awaiting an acknowledgement."""
        return set(self.pending) | {u.address for u in self.unacked.values()}

    def requeue(self) -> None:
        """The link is gone: unacknowledged updates go back to the queue, to be resent with new xids."""
        for update in self.unacked.values():
            self.queue(update.address)
        self.unacked.clear()
        self.inflight.clear()
        for address in self._after_ack:
            self.queue(address)
        self._after_ack.clear()

    def count_received(self) -> None:
        """A BNDUPD arrived from the partner (accepted or not)."""
        self.received_updates += 1
