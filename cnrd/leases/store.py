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

import heapq
import struct
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

    def to_bytes(self) -> bytes:
        """The batch as one byte string (a journal record); :meth:`from_bytes` reads it back."""
        out = [_COUNTS.pack(len(self.leases), len(self.events), len(self.state))]
        for address, (record, key) in self.leases.items():
            out.append(_LEASE.pack(address, len(record), _NONE16 if key is None else len(key)))
            out.append(record)
            if key is not None:
                out.append(key)
        for event in self.events:
            out.append(_LEN32.pack(len(event)))
            out.append(event)
        for k, v in self.state.items():
            kb = k.encode()
            out.append(_STATE.pack(len(kb), _NONE32 if v is None else len(v)))
            out.append(kb)
            if v is not None:
                out.append(v)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PackedBatch":
        """Inverse of :meth:`to_bytes`; ValueError if ``data`` is not one."""
        try:
            n_leases, n_events, n_state = _COUNTS.unpack_from(data, 0)
            pos = _COUNTS.size
            batch = cls()
            for _ in range(n_leases):
                address, rlen, klen = _LEASE.unpack_from(data, pos)
                pos += _LEASE.size
                record = bytes(data[pos:pos + rlen])
                pos += rlen
                key = None
                if klen != _NONE16:
                    key = bytes(data[pos:pos + klen])
                    pos += klen
                batch.leases[address] = (record, key)
            for _ in range(n_events):
                (elen,) = _LEN32.unpack_from(data, pos)
                pos += _LEN32.size
                batch.events.append(bytes(data[pos:pos + elen]))
                pos += elen
            for _ in range(n_state):
                klen, vlen = _STATE.unpack_from(data, pos)
                pos += _STATE.size
                k = bytes(data[pos:pos + klen]).decode()
                pos += klen
                v = None
                if vlen != _NONE32:
                    v = bytes(data[pos:pos + vlen])
                    pos += vlen
                batch.state[k] = v
        except (struct.error, UnicodeDecodeError) as e:
            raise ValueError(f"not a packed batch: {e}") from e
        if pos != len(data):
            raise ValueError(f"not a packed batch: lengths add up to {pos} bytes, not {len(data)}")
        return batch


_COUNTS = struct.Struct("!III")
_LEASE = struct.Struct("!IIH")
_LEN32 = struct.Struct("!I")
_STATE = struct.Struct("!HI")
_NONE16 = 0xFFFF
_NONE32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HistoryQuery:
    """Which lease events a history query wants, one page at a time.

    ``address`` and ``hw`` (htype byte + chaddr) narrow it to one address
    or one client's hardware; ``since``/``until`` bound the event time
    (inclusive, epoch seconds).  Entries come ordered by (time, sequence),
    oldest first unless ``newest_first``; ``after`` is the (time, sequence)
    of the previous page's last entry, and the page continues past it.
    """

    address: int | None = None
    hw: bytes | None = None
    since: int | None = None
    until: int | None = None
    after: tuple[int, int] | None = None
    limit: int = 100
    newest_first: bool = False

    def matches(self, seq: int, event: LeaseEvent) -> bool:
        """Whether one event belongs to the query (its page position aside from ``after``)."""
        if self.address is not None and event.address != self.address:
            return False
        if self.hw is not None and event.hw != self.hw:
            return False
        if self.since is not None and event.time < self.since:
            return False
        if self.until is not None and event.time > self.until:
            return False
        if self.after is not None:
            pos = (event.time, seq)
            return pos < self.after if self.newest_first else pos > self.after
        return True


def select_history(events: Iterable[tuple[int, LeaseEvent]], query: HistoryQuery) -> list[tuple[int, LeaseEvent]]:
    """The page of ``query`` among ``events`` by a scan (stores without an index, and unit tests)."""
    hits = ((seq, e) for seq, e in events if query.matches(seq, e))

    def order(item: tuple[int, LeaseEvent]) -> tuple[int, int]:
        return item[1].time, item[0]

    if query.newest_first:
        return heapq.nlargest(query.limit, hits, key=order)
    return heapq.nsmallest(query.limit, hits, key=order)


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

    def history(self, query: HistoryQuery) -> list[tuple[int, LeaseEvent]]:
        """(sequence, event) pairs of one page of the lease history; see :class:`HistoryQuery`."""
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

    def __init__(self, event_history: int = 100000, event_history_age: int = 0) -> None:
        self._leases: dict[int, bytes] = {}
        self._events: dict[int, bytes] = {}
        self._state: dict[str, bytes] = {}
        self._seq = 0
        self._history = event_history
        self._history_age = event_history_age
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
        if self._history_age and batch.events:
            newest = max(LeaseEvent.index_fields(e)[0] for e in batch.events)
            for seq in sorted(self._events):
                if LeaseEvent.index_fields(self._events[seq])[0] >= newest - self._history_age:
                    break
                del self._events[seq]
        for k, v in batch.state.items():
            if v is None:
                self._state.pop(k, None)
            else:
                self._state[k] = v
        self.commits += 1

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, LeaseEvent]]:
        keys = sorted(k for k in self._events if k > after)[:limit]
        return [(k, LeaseEvent.unpack(self._events[k])) for k in keys]

    def history(self, query: HistoryQuery) -> list[tuple[int, LeaseEvent]]:
        return select_history(((k, LeaseEvent.unpack(v)) for k, v in self._events.items()), query)

    def get_state(self, key: str) -> bytes | None:
        return self._state.get(key)

    def state_items(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self._state.items() if k.startswith(prefix))

    def lease_count(self) -> int:
        return len(self._leases)

    def close(self) -> None:
        self.closed = True
