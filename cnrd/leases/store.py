"""The lease store contract, and an in-memory implementation of it.

The server keeps its working set of leases in memory (see
:mod:`cnrd.leases.table`); the store is where they become durable.  A
:meth:`LeaseStore.commit` call writes a batch of lease records, events and
state values in one transaction and returns only once they are on stable
storage: the DHCP adapter calls it once per batch of requests and sends the
batch's ACKs after it returns (group commit).

Pure module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from cnrd.leases.model import Lease, LeaseEvent


class StoreError(Exception):
    """The store cannot be opened or written."""


class LeaseStore(Protocol):
    """Durable leases, lease events and small state values."""

    def load(self) -> Iterator[Lease]:
        """Every stored lease, in address order."""
        ...

    def commit(
        self,
        leases: Iterable[Lease],
        events: Iterable[LeaseEvent] = (),
        state: dict[str, bytes | None] | None = None,
    ) -> None:
        """Write leases, append events and set state values (None deletes); durable on return."""
        ...

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, LeaseEvent]]:
        """Events with sequence number greater than ``after``, oldest first."""
        ...

    def get_state(self, key: str) -> bytes | None:
        """A state value set by :meth:`commit`."""
        ...

    def state_items(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every state value whose key starts with ``prefix``, in key order."""
        ...

    def lease_count(self) -> int:
        """How many lease records the store holds."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


class MemoryLeaseStore:
    """A :class:`LeaseStore` in a dict, for unit tests; same contract as LMDB's."""

    def __init__(self, event_history: int = 100000) -> None:
        self._leases: dict[int, bytes] = {}
        self._events: dict[int, bytes] = {}
        self._state: dict[str, bytes] = {}
        self._seq = 0
        self._history = event_history
        self.commits = 0
        self.closed = False

    def load(self) -> Iterator[Lease]:
        for address in sorted(self._leases):
            yield Lease.unpack(self._leases[address])

    def commit(
        self,
        leases: Iterable[Lease],
        events: Iterable[LeaseEvent] = (),
        state: dict[str, bytes | None] | None = None,
    ) -> None:
        if self.closed:
            raise StoreError("store is closed")
        for lease in leases:
            self._leases[lease.address] = lease.pack()
        for event in events:
            self._seq += 1
            self._events[self._seq] = event.pack()
        while len(self._events) > self._history:
            del self._events[min(self._events)]
        for k, v in (state or {}).items():
            if v is None:
                self._state.pop(k, None)
            else:
                self._state[k] = v
        self.commits += 1

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, LeaseEvent]]:
        keys = sorted(k for k in self._events if k > after)[:limit]
        return [(k, LeaseEvent.unpack(self._events[k])) for k in keys]

    def get_state(self, key: str) -> bytes | None:
        return self._state.get(key)

    def state_items(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self._state.items() if k.startswith(prefix))

    def lease_count(self) -> int:
        return len(self._leases)

    def close(self) -> None:
        self.closed = True
