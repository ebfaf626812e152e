"""The LMDB lease store: leases, a client index, lease events and state.

One LMDB environment in the server's data-dir with four named databases:

``leases``
    4-byte big-endian address -> :meth:`Lease.pack` record.
``clients``
    client key (client-id, else hardware address; see
    :func:`cnrd.leases.model.client_key`) + 4-byte address -> b"" — a
    duplicate-free index so a client bound to several addresses (in several
    scopes) keeps each entry.
``events``
    8-byte big-endian sequence -> :meth:`LeaseEvent.pack`; bounded to
    ``event_history`` entries (the oldest are pruned in the same transaction).
``history``
    4-byte address + 8-byte time + 8-byte sequence -> b"": the events of one
    address in time order, so a history query for an address reads only
    that address's entries, not the whole event log.
``history-hw``
    hardware-address length byte + htype/chaddr + 8-byte time + 8-byte
    sequence -> b"": the same by the client's hardware address.
``state``
    UTF-8 key -> bytes, for small values (failover state, start times).

Both history indexes are kept in the transaction that appends or prunes
the event.  A store written before they existed gets them built from its
events when first opened writable (state key ``history/indexed``); opened
read-only without them, a history query scans the events instead.

The environment is opened with ``sync=True``: each :meth:`commit` ends with
an fsync of the data file, so a lease is on disk when ``commit`` returns.
Callers group many leases into one commit to amortise that sync.

Pure module: no clock, no reactor; lmdb and the file system only.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator

import lmdb

from cnrd.leases.model import Lease, LeaseEvent
from cnrd.leases.store import HistoryQuery, PackedBatch, StoreError, select_history

_ADDR = struct.Struct("!I")
_SEQ = struct.Struct("!Q")
_TSEQ = struct.Struct("!QQ")  # time, sequence: the tail of a history index key
_MAX_SEQ = (1 << 64) - 1
INDEXED_KEY = "history/indexed"
# Distinct time values shared while loading before the sharing starts
# afresh: bounds the dict (a store's times span about one lease time).
_MAX_SHARED_TIMES = 1 << 20

#: Reads one state value as the current write transaction sees it (None: unset).
StateReader = Callable[[str], bytes | None]


class LmdbLeaseStore:
    """A durable :class:`~cnrd.leases.store.LeaseStore` in an LMDB environment."""

    def __init__(
        self, path: str, map_size: int = 4 << 30, event_history: int = 100000, *, readonly: bool = False,
        event_history_age: int = 0,
    ) -> None:
        self.path = path
        self._map_size = map_size
        self._readonly = readonly
        try:
            if not readonly:
                os.makedirs(path, mode=0o750, exist_ok=True)
            self._env = self._open_env()
        except (OSError, lmdb.Error) as e:
            raise StoreError(f"cannot open lease store in {path}: {e}") from e
        self._history = event_history
        self._history_age = event_history_age
        try:
            self._open_dbs()
        except lmdb.Error as e:
            self._env.close()
            raise StoreError(f"cannot open lease store in {path}: {e}") from e
        if not readonly:
            self._build_indexes()

    def load(self) -> Iterator[Lease]:
        times: dict[int, int] = {}
        # Looked up once: a million records made a million bound methods.
        unpack = Lease.unpack
        with self._env.begin(db=self._leases) as txn:
            for value in txn.cursor().iternext(keys=False, values=True):
                yield unpack(value, times)
                if len(times) > _MAX_SHARED_TIMES:
                    times = {}
        self._drop_pages()

    def _drop_pages(self) -> None:
        """Unmap and map the environment again, so the pages a full read
        touched stop counting in this process's memory (they stay in the page
        cache); only the pages later reads and writes use come back."""
        try:
            self._env.close()
            self._env = self._open_env()
            self._open_dbs()
        except lmdb.Error as e:
            raise StoreError(f"cannot open lease store in {self.path}: {e}") from e

    def _open_env(self) -> lmdb.Environment:
        return lmdb.open(
            self.path, map_size=self._map_size, readonly=self._readonly, max_dbs=8, sync=True, metasync=True,
            writemap=False, map_async=False, readahead=False, lock=True,
        )

    def _open_dbs(self) -> None:
        create = not self._readonly
        self._leases = self._env.open_db(b"leases", create=create)
        self._clients = self._env.open_db(b"clients", create=create)
        self._events = self._env.open_db(b"events", create=create)
        self._state = self._env.open_db(b"state", create=create)
        self._by_address: lmdb._Database | None = None
        self._by_hw: lmdb._Database | None = None
        try:
            self._by_address = self._env.open_db(b"history", create=create)
            self._by_hw = self._env.open_db(b"history-hw", create=create)
        except lmdb.NotFoundError:
            # Read-only, written by a cnrd without the indexes: queries scan.
            self._by_address = self._by_hw = None

    def commit(
        self,
        leases: Iterable[Lease],
        events: Iterable[LeaseEvent] = (),
        state: dict[str, bytes | None] | None = None,
    ) -> None:
        self.commit_packed(PackedBatch.of(leases, events, state))

    def commit_packed(self, batch: PackedBatch) -> None:
        self.commit_with(lambda get_state: batch)

    def commit_with(self, make: Callable[[StateReader], PackedBatch | None]) -> bool:
        """One write transaction whose batch is decided inside it.

        ``make(get_state)`` reads state keys as this transaction sees them
        (LMDB allows one writer at a time across processes, so nothing changes
        in between) and returns the batch to write, or None to write nothing.
        Returns whether anything was committed.
        """
        try:
            txn = self._env.begin(write=True)
            try:
                batch = make(lambda key: txn.get(key.encode(), db=self._state))
                if batch is None:
                    txn.abort()
                    return False
                self._write(txn, batch)
            except BaseException:
                txn.abort()
                raise
            txn.commit()
        except lmdb.Error as e:
            raise StoreError(f"lease store write failed: {e}") from e
        return True

    def _write(self, txn: lmdb.Transaction[bytes], batch: PackedBatch) -> None:
        put = txn.put
        get = txn.get
        for address, (record, new_key) in batch.leases.items():
            addr = _ADDR.pack(address)
            # The old record says which client-index entry to drop; a
            # B-tree read per write is cheaper than keeping every key in RAM.
            old = get(addr, db=self._leases)
            old_key = Lease.key_of_record(old) if old is not None else None
            put(addr, record, db=self._leases)
            if old_key != new_key:
                if old_key is not None:
                    txn.delete(old_key + addr, db=self._clients)
                if new_key is not None:
                    put(new_key + addr, b"", db=self._clients)
        if batch.events:
            # Read here, not cached: another process (the journal applier) may
            # have appended events since this one last wrote.
            cur = txn.cursor(db=self._events)
            seq = _SEQ.unpack(cur.key())[0] if cur.last() else 0
            newest = 0
            for event in batch.events:
                seq += 1
                put(_SEQ.pack(seq), event, db=self._events)
                newest = max(newest, self._index(txn, seq, event))
            if seq > self._history:
                self._prune(txn, lambda s, t: s <= seq - self._history)
            if self._history_age:
                # Relative to the newest event written, not a clock: the
                # store reads none, and an idle server then keeps its last
                # history rather than losing it while nothing happens.
                self._prune(txn, lambda s, t: t < newest - self._history_age)
        for k, v in batch.state.items():
            if v is None:
                txn.delete(k.encode(), db=self._state)
            else:
                put(k.encode(), v, db=self._state)

    def _index_keys(self, seq: int, event: bytes | memoryview) -> tuple[int, bytes, bytes | None]:
        """(time, address index key, hardware index key or None) of one packed event."""
        time, address, hw = LeaseEvent.index_fields(event)
        tail = _TSEQ.pack(max(time, 0), seq)
        hw_key = bytes((len(hw),)) + hw + tail if hw and len(hw) < 256 else None
        return time, _ADDR.pack(address) + tail, hw_key

    def _index(self, txn: lmdb.Transaction[bytes], seq: int, event: bytes | memoryview) -> int:
        """Add one event to the history indexes; returns its time."""
        time, by_address, by_hw = self._index_keys(seq, event)
        txn.put(by_address, b"", db=self._by_address)
        if by_hw is not None:
            txn.put(by_hw, b"", db=self._by_hw)
        return time

    def _prune(self, txn: lmdb.Transaction[bytes], old: Callable[[int, int], bool]) -> None:
        """Drop the oldest events while ``old(sequence, time)`` says so, with their index entries."""
        cur = txn.cursor(db=self._events)
        # Bounded per commit so one commit never does unbounded work.
        for _ in range(10000):
            if not cur.first():
                break
            seq = _SEQ.unpack(cur.key())[0]
            time, by_address, by_hw = self._index_keys(seq, cur.value())
            if not old(seq, time):
                break
            txn.delete(by_address, db=self._by_address)
            if by_hw is not None:
                txn.delete(by_hw, db=self._by_hw)
            cur.delete()

    def _build_indexes(self) -> None:
        """Index the events of a store written before the history indexes existed (once)."""
        try:
            with self._env.begin(write=True) as txn:
                if txn.get(INDEXED_KEY.encode(), db=self._state) is not None:
                    return
                for key, value in txn.cursor(db=self._events):
                    self._index(txn, _SEQ.unpack(key)[0], value)
                txn.put(INDEXED_KEY.encode(), b"1", db=self._state)
        except lmdb.Error as e:
            self._env.close()
            raise StoreError(f"cannot index the lease history in {self.path}: {e}") from e

    def history(self, query: HistoryQuery) -> list[tuple[int, LeaseEvent]]:
        """One page of the lease history: by an index when the query names an address or a
        hardware address (reads that one's entries only), else a scan of the events."""
        if query.address is not None and self._by_address is not None:
            return self._history_by(self._by_address, _ADDR.pack(query.address), query)
        if query.hw is not None and self._by_hw is not None and 0 < len(query.hw) < 256:
            return self._history_by(self._by_hw, bytes((len(query.hw),)) + query.hw, query)
        with self._env.begin(db=self._events, buffers=True) as txn:
            return select_history(((_SEQ.unpack(k)[0], LeaseEvent.unpack(v)) for k, v in txn.cursor()), query)

    def _history_by(self, db: lmdb._Database, prefix: bytes, query: HistoryQuery) -> list[tuple[int, LeaseEvent]]:
        lo = prefix + _TSEQ.pack(max(query.since or 0, 0), 0)
        hi = prefix + _TSEQ.pack(max(query.until, 0) if query.until is not None else _MAX_SEQ, _MAX_SEQ)
        out: list[tuple[int, LeaseEvent]] = []
        with self._env.begin(buffers=True) as txn:
            cur = txn.cursor(db=db)
            events = self._events
            if not query.newest_first:
                start = lo
                if query.after is not None and query.after[1] < _MAX_SEQ:
                    start = max(lo, prefix + _TSEQ.pack(max(query.after[0], 0), query.after[1] + 1))
                ok = cur.set_range(start)
                step = cur.next
            else:
                start = hi
                if query.after is not None:
                    t, s = max(query.after[0], 0), query.after[1]
                    if s == 0 and t == 0:
                        return out
                    start = min(hi, prefix + (_TSEQ.pack(t, s - 1) if s else _TSEQ.pack(t - 1, _MAX_SEQ)))
                ok = cur.set_range(start)
                if not ok:
                    ok = cur.last()
                elif bytes(cur.key()) > start:
                    ok = cur.prev()
                step = cur.prev
            while ok and len(out) < query.limit:
                key = bytes(cur.key())
                if key < lo or key > hi:
                    break
                seq = _TSEQ.unpack_from(key, len(prefix))[1]
                value = txn.get(_SEQ.pack(seq), db=events)
                if value is not None:
                    out.append((seq, LeaseEvent.unpack(value)))
                ok = step()
        return out

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, LeaseEvent]]:
        out: list[tuple[int, LeaseEvent]] = []
        with self._env.begin(db=self._events) as txn:
            cur = txn.cursor()
            if not cur.set_range(_SEQ.pack(after + 1)):
                return out
            for key, value in cur:
                out.append((_SEQ.unpack(key)[0], LeaseEvent.unpack(value)))
                if len(out) >= limit:
                    break
        return out

    def addresses_of(self, key: bytes) -> list[int]:
        """Addresses the client index holds for a client key."""
        out = []
        with self._env.begin(db=self._clients) as txn:
            cur = txn.cursor()
            if cur.set_range(key):
                for k in cur.iternext(values=False):
                    if not k.startswith(key):
                        break
                    if len(k) != len(key) + 4:
                        continue  # a longer key that shares this prefix
                    out.append(_ADDR.unpack(k[-4:])[0])
        return out

    def get_state(self, key: str) -> bytes | None:
        with self._env.begin(db=self._state) as txn:
            value = txn.get(key.encode())
            return bytes(value) if value is not None else None

    def state_items(self, prefix: str) -> list[tuple[str, bytes]]:
        out = []
        p = prefix.encode()
        with self._env.begin(db=self._state) as txn:
            cur = txn.cursor()
            if cur.set_range(p):
                for k, v in cur:
                    if not k.startswith(p):
                        break
                    out.append((k.decode(), bytes(v)))
        return out

    def lease_count(self) -> int:
        with self._env.begin(db=self._leases) as txn:
            return int(txn.stat(self._leases)["entries"])

    def close(self) -> None:
        self._env.close()

    # -- backup (cnrd/leases/backup.py) --------------------------------------------
    def copy_to_fd(self, fd: int) -> None:
        """Write a compacted copy of the environment to the open file ``fd``.

        LMDB copies inside one read transaction: the copy is the state after
        one commit, and writers go on meanwhile (py-lmdb releases the GIL).
        """
        try:
            self._env.copyfd(fd, compact=True)
        except lmdb.Error as e:
            raise StoreError(f"cannot copy the lease store in {self.path}: {e}") from e
