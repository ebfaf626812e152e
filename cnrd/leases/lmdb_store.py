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
``state``
    UTF-8 key -> bytes, for small values (failover state, start times).

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
from cnrd.leases.store import PackedBatch, StoreError

_ADDR = struct.Struct("!I")
_SEQ = struct.Struct("!Q")

#: Reads one state value as the current write transaction sees it (None: unset).
StateReader = Callable[[str], bytes | None]


class LmdbLeaseStore:
    """A durable :class:`~cnrd.leases.store.LeaseStore` in an LMDB environment."""

    def __init__(
        self, path: str, map_size: int = 4 << 30, event_history: int = 100000, *, readonly: bool = False
    ) -> None:
        try:
            if not readonly:
                os.makedirs(path, mode=0o750, exist_ok=True)
            self._env = lmdb.open(
                path,
                map_size=map_size,
                readonly=readonly,
                max_dbs=8,
                sync=True,
                metasync=True,
                writemap=False,
                map_async=False,
                readahead=False,
                lock=True,
            )
        except (OSError, lmdb.Error) as e:
            raise StoreError(f"cannot open lease store in {path}: {e}") from e
        self.path = path
        try:
            self._leases = self._env.open_db(b"leases", create=not readonly)
            self._clients = self._env.open_db(b"clients", create=not readonly)
            self._events = self._env.open_db(b"events", create=not readonly)
            self._state = self._env.open_db(b"state", create=not readonly)
        except lmdb.Error as e:
            self._env.close()
            raise StoreError(f"cannot open lease store in {path}: {e}") from e
        self._history = event_history

    def load(self) -> Iterator[Lease]:
        with self._env.begin(db=self._leases, buffers=True) as txn:
            for _, value in txn.cursor():
                yield Lease.unpack(value)

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
            for event in batch.events:
                seq += 1
                put(_SEQ.pack(seq), event, db=self._events)
            if seq > self._history:
                self._prune(txn, seq - self._history)
        for k, v in batch.state.items():
            if v is None:
                txn.delete(k.encode(), db=self._state)
            else:
                put(k.encode(), v, db=self._state)

    def _prune(self, txn: lmdb.Transaction[bytes], below: int) -> None:
        cur = txn.cursor(db=self._events)
        limit = _SEQ.pack(below)
        # Bounded per commit so one commit never does unbounded work.
        for _ in range(10000):
            if not cur.first() or cur.key() > limit:
                break
            cur.delete()

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
