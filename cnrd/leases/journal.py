"""A write-ahead journal in front of the LMDB store: one fdatasync per group commit.

A durable LMDB commit costs two syncs (the data pages, then the meta page
that makes them current) and its tail grows with the tree it rewrites; the
ACKs of a group wait for all of it.  With the journal, a group is durable
once its changes are appended to a preallocated file and that file is
fdatasync'ed: one sync of a few hundred bytes, no file-system metadata to
commit (the file never grows, its blocks were written at creation).  The
same changes are then applied to LMDB by a background thread with LMDB's
own fully synced commits, several groups at a time, so the LMDB file is
always a consistent snapshot and never depends on write ordering the disk
does not promise.  The highest journal sequence LMDB holds is stored in the
same LMDB transaction (state key ``journal/applied``).

After a crash the journal's records above that number are applied before
anything else (:meth:`JournaledStore.__init__`); a record cut short by the
crash fails its CRC and is ignored — its ACKs never left, since they wait
for the fdatasync.  The file is a ring of 512-byte-aligned records; space
is reused only once LMDB holds what was there, and when the ring is full a
group is applied to LMDB at once instead (slower, never unsafe).

Readers in another process (tests, the chaos auditor, bench) open it with
``readonly=True`` and see LMDB plus the journal's unapplied records.

Pure module apart from file I/O and one worker thread (lmdb and os only).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import Lease, LeaseEvent
from cnrd.leases.store import PackedBatch, StoreError

MAGIC = b"CNJ1"
_HDR = struct.Struct("!4sQQII")  # magic, epoch, sequence, payload length, crc32
ALIGN = 512
DEFAULT_SIZE = 16 << 20
APPLIED_KEY = "journal/applied"
EPOCH_KEY = "journal/epoch"
_SEQ = struct.Struct("!Q")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _crc(epoch: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_SEQ.pack(epoch) + _SEQ.pack(seq)))


def open_store(server: Any) -> "JournaledStore | LmdbLeaseStore":
    """The server's lease store per its ``[server]`` settings (data-dir,
    lease-db-size, event-history, lease-journal)."""
    args = dict(map_size=server.lease_db_size, event_history=server.event_history)
    if server.lease_journal:
        return JournaledStore(server.data_dir, **args)
    jpath = os.path.join(server.data_dir, "journal")
    if os.path.exists(jpath):
        # Turned off after running with it: opening applies what LMDB has
        # not got yet, closing leaves nothing pending; then it can go.
        JournaledStore(server.data_dir, **args).close()
        os.unlink(jpath)
    return LmdbLeaseStore(server.data_dir, **args)


class Journal:
    """The ring file: append records, scan the valid ones, free what LMDB holds."""

    def __init__(self, path: str, size: int = DEFAULT_SIZE, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            self.fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size // ALIGN * ALIGN
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            have = os.fstat(self.fd).st_size
            if have < size:
                self._fill(have, size)
            self.size = max(size, have) // ALIGN * ALIGN
        self.pos = 0
        # (seq, start, end) of records LMDB does not hold yet, oldest first
        self.live: deque[tuple[int, int, int]] = deque()

    def _fill(self, start: int, size: int) -> None:
        # Written zeros, not fallocate: fdatasync of a preallocated but
        # unwritten extent still commits the extent conversion to the
        # file-system journal, the very sync this file exists to avoid.
        zeros = bytes(1 << 20)
        pos = start
        while pos < size:
            pos += os.pwrite(self.fd, zeros[: size - pos], pos)
        os.fsync(self.fd)
        d = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(d)
        finally:
            os.close(d)

    def scan(self, epoch: int) -> list[tuple[int, bytes, int, int]]:
        """Every intact record of ``epoch``: (seq, payload, start, end), by sequence."""
        out = []
        size = self.size
        data = os.pread(self.fd, size, 0)
        off = 0
        while off + _HDR.size <= size:
            if data[off:off + 4] == MAGIC:
                _, rec_epoch, seq, length, crc = _HDR.unpack_from(data, off)
                end = off + _HDR.size + length
                if end <= size:
                    payload = data[off + _HDR.size:end]
                    if _crc(rec_epoch, seq, payload) == crc:
                        if rec_epoch == epoch:
                            out.append((seq, payload, off, end))
                        off = _align(end)
                        continue
            off += ALIGN
        out.sort(key=lambda r: r[0])
        return out

    def fits(self, length: int) -> bool:
        """Whether a payload of ``length`` bytes can ever go in the ring."""
        return _align(_HDR.size + length) <= self.size // 2

    def append(self, epoch: int, seq: int, payload: bytes) -> bool:
        """Write one record and fdatasync it; False if the ring has no free room."""
        span = _align(_HDR.size + len(payload))
        start = self.pos if self.pos + span <= self.size else 0
        end = start + span
        for _, s, e in self.live:
            if s < end and start < e:
                return False
        os.pwrite(self.fd, _HDR.pack(MAGIC, epoch, seq, len(payload), _crc(epoch, seq, payload)) + payload, start)
        os.fdatasync(self.fd)
        self.live.append((seq, start, end))
        self.pos = end
        return True

    def release(self, upto: int) -> None:
        """LMDB holds every record up to sequence ``upto``: their room may be reused."""
        live = self.live
        while live and live[0][0] <= upto:
            live.popleft()

    def close(self) -> None:
        os.close(self.fd)


class JournaledStore:
    """A :class:`~cnrd.leases.store.LeaseStore`: journal first, LMDB behind it.

    ``commit_packed`` returns once the changes are in the journal (durable);
    a worker thread applies them to LMDB.  A read first applies what is
    pending (the server reads its leases from memory, so reads are rare:
    start-up, the admin API), so it sees every commit before it.
    """

    def __init__(self, path: str, map_size: int = 4 << 30, event_history: int = 100000, *,
                 readonly: bool = False, journal_size: int = DEFAULT_SIZE, apply_interval: float = 0.05) -> None:
        self.path = path
        self.apply_interval = apply_interval
        self.inner = LmdbLeaseStore(path, map_size=map_size, event_history=event_history, readonly=readonly)
        jpath = os.path.join(path, "journal")
        self.readonly = readonly
        self._lock = threading.Lock()  # pending, journal.live
        self._apply_lock = threading.Lock()  # one LMDB apply at a time, in order
        self._wake = threading.Condition(self._lock)
        self._pending = PackedBatch()
        self._pending_seq = 0
        self._closing = False
        self._stop = threading.Event()  # wakes the applier from its pause at close
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.applies = 0
        self.commits = 0
        self.epoch = 0  # tells this LMDB's journal records from any other's
        self._seq = 0  # the last journaled (durable) sequence
        self._applied_seq = 0  # the last one LMDB holds
        # read-only: the journal's unapplied records, laid over LMDB's
        self._overlay: PackedBatch | None = None
        try:
            if readonly:
                self.journal = Journal(jpath, readonly=True) if os.path.exists(jpath) else None
                self._replay_view()
                return
            self.journal = Journal(jpath, journal_size)
            self._seq = self._applied_seq = self._recover()
        except StoreError:
            self.inner.close()
            raise
        except OSError as e:
            self.inner.close()
            raise StoreError(f"cannot open the lease journal in {path}: {e}") from e
        self._thread = threading.Thread(target=self._apply_loop, name="cnrd-lmdb-apply", daemon=True)
        self._thread.start()

    # -- start-up --------------------------------------------------------------
    def _epoch(self) -> int:
        v = self.inner.get_state(EPOCH_KEY)
        return _SEQ.unpack(v)[0] if v else 0

    def _applied(self) -> int:
        v = self.inner.get_state(APPLIED_KEY)
        return _SEQ.unpack(v)[0] if v else 0

    def _unapplied(self) -> tuple[PackedBatch, int, int]:
        """Records above LMDB's number, in order and without a gap: (batch, last seq, end offset)."""
        applied = last = self._applied()
        batch, end = PackedBatch(), 0
        if self.journal is None:
            return batch, last, end
        epoch = self._epoch()
        if not epoch:
            return batch, last, end  # LMDB never had a journal: nothing in the file is its
        for seq, payload, _, rec_end in self.journal.scan(epoch):
            if seq <= last:
                continue
            if seq != last + 1:
                break  # a gap: nothing after it was acknowledged on top of what is missing
            try:
                batch.extend(PackedBatch.from_bytes(payload))
            except ValueError as e:
                raise StoreError(f"lease journal record {seq} in {self.path} is corrupt: {e}") from e
            last, end = seq, rec_end
        if last == applied:
            end = 0
        return batch, last, end

    def _recover(self) -> int:
        batch, last, end = self._unapplied()
        if last > self._applied():
            batch.state[APPLIED_KEY] = _SEQ.pack(last)
            self.inner.commit_packed(batch)
        self.epoch = self._epoch()
        if not self.epoch:
            # A new LMDB (or one from before the journal, or restored without
            # its journal): records left in the file by another LMDB's life
            # must never be applied to this one, so they carry another epoch.
            self.epoch = int.from_bytes(os.urandom(8), "big") or 1
            self.inner.commit_packed(PackedBatch(state={EPOCH_KEY: _SEQ.pack(self.epoch),
                                                        APPLIED_KEY: _SEQ.pack(last)}))
        self.journal.pos = end
        return last

    def _replay_view(self) -> None:
        batch, _, _ = self._unapplied()
        self._overlay = batch

    # -- the contract ------------------------------------------------------------
    def load(self) -> Iterator[Lease]:
        self.flush()
        overlay = self._overlay
        if overlay is None or not overlay.leases:
            yield from self.inner.load()
            return
        extra = dict(overlay.leases)
        for lease in self.inner.load():
            mine = extra.pop(lease.address, None)
            yield Lease.unpack(mine[0]) if mine is not None else lease
        for address in sorted(extra):
            yield Lease.unpack(extra[address][0])

    def commit(self, leases: Iterable[Lease], events: Iterable[LeaseEvent] = (),
               state: dict[str, bytes | None] | None = None) -> None:
        self.commit_packed(PackedBatch.of(leases, events, state))

    def commit_packed(self, batch: PackedBatch) -> None:
        if self.readonly or self._closing:
            raise StoreError("lease store is closed" if self._closing else "lease store is read-only")
        if self.error is not None:
            raise StoreError(f"lease store write failed: {self.error}")
        payload = batch.to_bytes()
        seq = self._seq + 1
        try:
            if self.journal.fits(len(payload)):
                with self._lock:
                    ok = self.journal.append(self.epoch, seq, payload)
                    if ok:
                        self._seq = seq
                        self._pending.extend(batch)
                        self._pending_seq = seq
                        self._wake.notify()
                        self.commits += 1
                        return
            # Too big for the ring, or the ring is full: straight into LMDB,
            # after whatever is still pending (order matters).
            self._apply(batch, seq)
            self._seq = seq
            self.commits += 1
        except OSError as e:
            raise StoreError(f"lease journal write failed: {e}") from e

    def _apply(self, extra: PackedBatch | None, extra_seq: int = 0) -> None:
        with self._apply_lock:
            with self._lock:
                batch, seq = self._pending, self._pending_seq
                self._pending, self._pending_seq = PackedBatch(), 0
            if extra is not None:
                batch.extend(extra)
                seq = max(seq, extra_seq)
            if batch.empty():
                return
            batch.state[APPLIED_KEY] = _SEQ.pack(seq)
            self.inner.commit_packed(batch)
            self.applies += 1
            self._applied_seq = seq
            with self._lock:
                self.journal.release(seq)

    def _apply_loop(self) -> None:
        while True:
            with self._lock:
                while self._pending.empty() and not self._closing:
                    self._wake.wait()
                if self._pending.empty() and self._closing:
                    return
            try:
                self._apply(None)
            except BaseException as e:  # noqa: BLE001 -- surfaced by the next commit
                self.error = e
                return
            # Applies are spaced out: each is two syncs, and a sync the disk
            # is busy with delays the journal's, which ACKs wait for.
            self._stop.wait(self.apply_interval)

    @property
    def unapplied(self) -> int:
        """Commits durable in the journal that LMDB does not hold yet."""
        return self._seq - self._applied_seq

    def flush(self) -> None:
        """Apply everything journaled to LMDB now (readers in other processes see it)."""
        if not self.readonly and not self._closing and self._applied_seq < self._seq:
            self._apply(None)  # waits for an apply under way, then applies the rest

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, LeaseEvent]]:
        self.flush()
        return self.inner.events(after, limit)

    def get_state(self, key: str) -> bytes | None:
        overlay = self._overlay
        if overlay is not None and key in overlay.state:
            return overlay.state[key]
        self.flush()
        return self.inner.get_state(key)

    def state_items(self, prefix: str) -> list[tuple[str, bytes]]:
        self.flush()
        items = dict(self.inner.state_items(prefix))
        if self._overlay is not None:
            for k, v in self._overlay.state.items():
                if k.startswith(prefix):
                    if v is None:
                        items.pop(k, None)
                    else:
                        items[k] = v
        return sorted(items.items())

    def lease_count(self) -> int:
        self.flush()
        n = self.inner.lease_count()
        if self._overlay is not None and self._overlay.leases:
            n += len(set(self._overlay.leases) - {l.address for l in self.inner.load()})
        return n

    def addresses_of(self, key: bytes) -> list[int]:
        self.flush()
        return self.inner.addresses_of(key)

    def close(self) -> None:
        if self._thread is not None:
            with self._lock:
                self._closing = True
                self._wake.notify()
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self.error is None:
                self._apply(None)
        else:
            self._closing = True
        if self.journal is not None:
            self.journal.close()
        self.inner.close()
