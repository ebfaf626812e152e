"""The binding-update window: which BNDUPDs are queued, in flight and acknowledged.

Every durable lease change queues its address; :meth:`Updates.next_due`
hands out the addresses to send while the partner's max-unacked window
(of BNDUPD messages) allows, at most one update per address in flight
(ISC matches acknowledgements by address),
:meth:`Updates.next_in_message` the further bindings of one batched BNDUPD
(draft §6.3, to a cnrd partner only), and :meth:`Updates.acked` settles a
BNDACK: by its xid alone for a single binding (as ISC matches them), by xid
and address within a batch.
The queue is kept durable under :func:`queue_key` so a restart sends what
was never acknowledged.

Pure module: it holds addresses and transaction ids, not leases.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


def queue_key(pair: str, address: int) -> str:
    """The lease-store key that keeps ``address`` queued for relationship ``pair``."""
    return f"failover/{pair}/q/{address:08x}"


@dataclass(frozen=True)
class InFlight:
    """One of our BNDUPDs the partner has not acknowledged yet."""

    address: int
    status: int  # the binding status sent
    pet: int  # the potential expiration sent (0 unless ACTIVE)


class Updates:
    """Our outgoing binding updates for one relationship."""

    def __init__(self, pair: str, stored_queue: Iterable[int] = ()) -> None:
        self.pair = pair
        self.pending: OrderedDict[int, None] = OrderedDict((a, None) for a in stored_queue)
        # by xid: the bindings of one BNDUPD (one, or several for a batching partner)
        self.unacked: dict[int, list[InFlight]] = {}
        self.inflight: dict[int, int] = {}  # address -> xid
        self._batched: set[int] = set()  # xids whose BNDUPD carried several bindings
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
        """The next address to send an update for, if the window has room; None when done.

        ``window`` counts BNDUPD messages, whatever number of bindings each carries.
        """
        if len(self.unacked) >= window:
            return None
        return self.next_in_message()

    def next_in_message(self) -> int | None:
        """The next address to add to the BNDUPD being built (no window check); None when done."""
        pending, inflight = self.pending, self.inflight
        while pending:
            # The queue key stays until the partner acknowledges: an update in
            # flight when we crash is sent again after the restart.
            address, _ = pending.popitem(last=False)
            if address in inflight:
                # One update per address in flight; the newer binding goes
                # once the older one is acknowledged.
                self._after_ack.add(address)
                continue
            return address
        return None

    def put_back(self, address: int) -> None:
        """``address`` came from :meth:`next_in_message` but did not fit the message: first in line again."""
        self.pending[address] = None
        self.pending.move_to_end(address, last=False)

    def sent_update(self, xid: int, update: InFlight) -> None:
        """The update for ``update.address`` left with ``xid`` (alone or with others of that xid)."""
        sent = self.unacked.get(xid)
        if sent is None:
            self.unacked[xid] = [update]
        else:
            sent.append(update)
            self._batched.add(xid)
        self.inflight[update.address] = xid
        self.sent_updates += 1

    def in_flight(self, address: int) -> InFlight | None:
        """Our unacknowledged update for ``address``, if there is one."""
        xid = self.inflight.get(address)
        if xid is None:
            return None
        for update in self.unacked[xid]:
            if update.address == address:
                return update
        return None

    @property
    def in_flight_count(self) -> int:
        """Bindings sent and not yet acknowledged."""
        return len(self.inflight)

    def acked(self, xid: int, rejected: bool, address: int | None = None) -> InFlight | None:
        """A BNDACK for ``xid`` (naming ``address``): the update it settles, or None if it is not ours.

        A BNDUPD of one binding is settled by its xid alone, as ISC matches
        acknowledgements; one of several bindings by its xid and address.
        """
        sent = self.unacked.get(xid)
        if sent is None:
            return None  # ISC ignores an xid it does not know
        if len(sent) == 1:
            update = sent[0]
            if address is not None and update.address != address and xid in self._batched:
                return None
            del self.unacked[xid]
            self._batched.discard(xid)
        else:
            for i, update in enumerate(sent):
                if update.address == address:
                    del sent[i]
                    break
            else:
                return None
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
        sent = self.unacked[xid]
        sent[:] = [u for u in sent if u.address != address]
        if not sent:
            del self.unacked[xid]
            self._batched.discard(xid)

    def outstanding(self) -> set[int]:
        """Addresses queued or awaiting an acknowledgement."""
        return set(self.pending) | set(self.inflight)

    def requeue(self) -> None:
        """The link is gone: unacknowledged updates go back to the queue, to be resent with new xids."""
        for sent in self.unacked.values():
            for update in sent:
                self.queue(update.address)
        self.unacked.clear()
        self.inflight.clear()
        self._batched.clear()
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
