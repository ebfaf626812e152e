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
from dataclasses import dataclass, field
from typing import Protocol

from cnrd.leases.model import Lease, LeaseEvent


class StoreError(Exception):
    """The store cannot be opened or written."""


@dataclass
class PackedBatch:
    """Changes ready for a commit, already serialised (safe to hand to another thread).

    ``leases`` maps address -> (packed record, client key or None); a later
    change of the same address replaces an earlier one.  ``state`` values of
    None delete the key.
    """

    leases: dict[int, tuple[bytes, bytes | None]] = field(default_factory=dict)
    events: list[bytes] = field(default_factory=list)
    state: dict[str, bytes | None] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        leases: Iterable[Lease] = (),
        events: Iterable[LeaseEvent] = (),
        state: dict[str, bytes | None] | None = None,
    ) -> "PackedBatch":
        return cls({l.address: (l.pack(), l.key) for l in leases}, [e.pack() for e in events], dict(state or {}))

    def extend(self, later: "PackedBatch") -> None:
        """Add ``later``'s changes; where both touch a record, ``later`` wins."""
        self.leases.update(later.leases)
        self.events.extend(later.events)
        self.state.update(later.state)

    def empty(self) -> bool:
        return not self.leases and not self.events and not self.state


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

    def commit_packed(self, batch: PackedBatch) -> None:
        """:meth:`commit` for changes already packed (callable from a worker thread)."""
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
        self.commit_packed(PackedBatch.of(leases, events, state))

    def commit_packed(self, batch: PackedBatch) -> None:
        if self.closed:
            raise StoreError("store is closed")
        for address, (record, _) in batch.leases.items():
            self._leases[address] = record
        for event in batch.events:
            self._seq += 1
            self._events[self._seq] = event
        while len(self._events) > self._history:
            del self._events[min(self._events)]
        for k, v in batch.state.items():
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
