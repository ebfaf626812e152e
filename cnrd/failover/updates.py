"""The binding-update window: which BNDUPDs are queued, in flight and acknowledged.

Every durable lease change queues its address; :meth:`Updates.next_due`
hands out the addresses to send while the partner's max-unacked window
allows, at most one update per address in flight (ISC matches
acknowledgements by address), and :meth:`Updates.acked` settles a BNDACK.
The queue is kept durable under :func:`queue_key` so a restart sends what
was never acknowledged.

Pure module: it holds addresses and transaction ids, not leases.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple


def queue_key(pair: str, address: int) -> str:
    """The lease-store key that keeps ``address`` queued for relationship ``pair``."""
    return f"failover/{pair}/q/{address:08x}"


class InFlight(NamedTuple):
    """One of our BNDUPDs the partner has not acknowledged yet (a named tuple: one per BNDUPD sent)."""

    address: int
    status: int  # the binding status sent
    pet: int  # the potential expiration sent (0 unless ACTIVE)


class Updates:
    """Our outgoing binding updates for one relationship."""

    def __init__(self, pair: str, stored_queue: Iterable[int] = ()) -> None:
        self.pair = pair
        self.pending: OrderedDict[int, None] = OrderedDict((a, None) for a in stored_queue)
        self.unacked: dict[int, InFlight] = {}  # by xid
        self.inflight: dict[int, int] = {}  # address -> xid
        self._after_ack: set[int] = set()  # changed again while an update was in flight
        self.sent_updates = self.acked_updates = self.rejected_updates = self.received_updates = 0
        self._persist: dict[str, bytes | None] = {}

    def queue(self, address: int, durable: bool = True) -> None:
        """Queue a binding update; ``durable`` ones survive a restart (lease changes).

        Updates answering the partner's UPDREQALL are not made durable: after a
        crash the partner asks again, and a million queue keys would be wasted.
        """
        if address not in self.pending:
            self.pending[address] = None
            if durable:
                self._persist[queue_key(self.pair, address)] = b""

    def next_due(self, window: int) -> int | None:
        """The next address to send an update for, if the window has room; None when done."""
        while self.pending and len(self.unacked) < window:
            # The queue key stays until the partner acknowledges: an update in
            # flight when we crash is sent again after the restart.
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
        if address not in self.pending:
            self._persist[queue_key(self.pair, address)] = None
        if rejected:
            self.rejected_updates += 1
        else:
            self.acked_updates += 1
        return update

    def withdraw(self, address: int) -> None:
        """Forget our in-flight update for ``address``: the partner's binding won."""
        xid = self.inflight.pop(address)
        del self.unacked[xid]

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

    def take_persist(self) -> dict[str, bytes | None]:
        """Queue keys to write (b"") or delete (None) in the next commit."""
        p, self._persist = self._persist, {}
        return p
