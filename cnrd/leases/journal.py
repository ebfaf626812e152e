"""A write-ahead journal in front of the LMDB store: one fdatasync per group commit.

A durable LMDB commit costs two syncs (the data pages, then the meta page
that makes them current) and its tail grows with the tree it rewrites; the
ACKs of a group wait for all of it.  With the journal, a group is durable
once its changes are appended to a preallocated file and that file is
fdatasync'ed: one sync of a few hundred bytes, no file-system metadata to
commit (the file never grows, its blocks were written at creation).  The
same changes are then applied to LMDB by a separate low-priority process
(:mod:`cnrd.leases.applier`) with LMDB's own fully synced commits, several
groups at a time, so the LMDB file is always a consistent snapshot and
never depends on write ordering the disk does not promise.  The highest
journal sequence LMDB holds, and where the record after it starts, are
stored in the same LMDB transaction (state key ``journal/applied``).

After a crash the journal's records above that number are applied before
anything else (:meth:`JournaledStore.__init__`); a record cut short by the
crash fails its CRC and is ignored — its ACKs never left, since they wait
for the fdatasync.  The file is a ring of 512-byte-aligned records
(:mod:`cnrd.leases.ring`); space is reused only once LMDB holds what was
there, and when the ring is full a group is applied to LMDB at once instead
(slower, never unsafe).

Readers in another process (tests, the chaos auditor, bench) open it with
``readonly=True`` and see LMDB plus the journal's unapplied records.

An adapter over files and a child process; it reads the monotonic clock only
to pace restarts of the applier.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from cnrd.leases.apply import APPLIED_KEY, EPOCH_KEY, applied_of, apply_journal, batch_of, marks, stored_epoch
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import Lease, LeaseEvent
from cnrd.leases.ring import DEFAULT_SIZE, Journal
from cnrd.leases.store import HistoryQuery, PackedBatch, StoreError

# Seconds between the applier's LMDB commits.  Each is two fsyncs, and a
# journal fdatasync queued behind one waits for both (milliseconds instead of
# a fraction of one): frequent applies show in the REQUEST->ACK tail.  A
# second of records fills about 2 % of the ring.
APPLY_INTERVAL = 1.0

__all__ = ["APPLY_INTERVAL", "JournaledStore", "StoreSettings", "open_store"]


class StoreSettings(Protocol):
    """The ``[server]`` settings that choose and size the lease store."""

    @property
    def data_dir(self) -> str: ...
    @property
    def lease_db_size(self) -> int: ...
    @property
    def event_history(self) -> int: ...
    @property
    def event_history_age(self) -> int: ...
    @property
    def lease_journal(self) -> bool: ...


def open_store(server: StoreSettings) -> "JournaledStore | LmdbLeaseStore":
    """The server's lease store per its ``[server]`` settings (data-dir,
    lease-db-size, event-history, event-history-age, lease-journal)."""
    size, history, age = server.lease_db_size, server.event_history, server.event_history_age
    if server.lease_journal:
        return JournaledStore(server.data_dir, map_size=size, event_history=history, event_history_age=age)
    jpath = os.path.join(server.data_dir, "journal")
    if os.path.exists(jpath):
        # Turned off after running with it: opening applies what LMDB has
        # not got yet, closing leaves nothing pending; then it can go.
        JournaledStore(server.data_dir, map_size=size, event_history=history).close()
        os.unlink(jpath)
    return LmdbLeaseStore(server.data_dir, map_size=size, event_history=history, event_history_age=age)


class JournaledStore:
    """A :class:`~cnrd.leases.store.LeaseStore`: journal first, LMDB behind it.

    ``commit_packed`` returns once the changes are in the journal (durable).
    A separate process (:mod:`cnrd.leases.applier`, started here, at a lower
    CPU priority) applies them to LMDB: a thread of this process would hold
    the GIL and the core for milliseconds at a time, and requests arriving
    meanwhile would wait.  It needs nothing from us but the files: it reads
    the ring from where LMDB's number says.
    A read first applies what is pending itself (the server reads its leases
    from memory, so reads are rare: start-up, the admin API), so it sees
    every commit before it.
    """

    def __init__(self, path: str, map_size: int = 4 << 30, event_history: int = 100000, *,
                 readonly: bool = False, journal_size: int = DEFAULT_SIZE, apply_interval: float = APPLY_INTERVAL,
                 event_history_age: int = 0) -> None:
        self.path = path
        self.map_size = map_size
        self.event_history = event_history
        self.event_history_age = event_history_age
        self.apply_interval = apply_interval
        self.inner = LmdbLeaseStore(path, map_size=map_size, event_history=event_history, readonly=readonly,
                                    event_history_age=event_history_age)
        jpath = os.path.join(path, "journal")
        self.readonly = readonly
        # commit_packed may run on the commit thread while a read flushes on the reactor
        self._lock = threading.Lock()
        self._closing = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._restart_at: float | None = None
        self.restart_backoff = 10.0  # seconds between starts of the applier process
        self.commits = 0
        self.direct_writes = 0  # groups that went straight to LMDB (ring full or too big)
        self.applier_restarts = 0
        self.epoch = 0  # tells this LMDB's journal records from any other's
        self._seq = 0  # the last journaled (durable) sequence
        self._applied_seq = 0  # the last one LMDB holds, as last read
        # read-only: the journal's unapplied records, laid over LMDB's
        self._overlay: PackedBatch | None = None
        self.journal: Journal | None = None  # always open when writable
        try:
            if readonly:
                self.journal = Journal(jpath, readonly=True) if os.path.exists(jpath) else None
                self._overlay = self._unapplied()
                return
            self.journal = Journal(jpath, journal_size)
            self._seq = self._applied_seq = self._recover(self.journal)
            self._start_applier()
        except StoreError:
            self.inner.close()
            raise
        except OSError as e:
            self.inner.close()
            raise StoreError(f"cannot open the lease journal in {path}: {e}") from e

    # -- start-up --------------------------------------------------------------
    @property
    def _ring(self) -> Journal:
        """The journal of a writable store (read-only ones may have none)."""
        if self.journal is None:
            raise StoreError(f"lease store in {self.path} has no journal open")
        return self.journal

    def _epoch(self) -> int:
        return stored_epoch(self.inner.get_state)

    def _applied(self) -> tuple[int, int | None, int]:
        return applied_of(self.inner.get_state(APPLIED_KEY))

    def _unapplied(self) -> PackedBatch:
        """Records above LMDB's number, in order and without a gap (read-only view)."""
        epoch = self._epoch()
        if self.journal is None or not epoch:
            return PackedBatch()  # LMDB never had a journal: nothing in the file is its
        seq, offset, _ = self._applied()
        records, _ = self.journal.read_from(epoch, seq, offset)
        return batch_of(records, self.path)

    def _recover(self, journal: Journal) -> int:
        self.epoch = self._epoch()
        if self.epoch:
            apply_journal(self.inner, journal, self.epoch)  # what a crash left only in the journal
            seq, offset, applies = self._applied()
        else:
            # A new LMDB (or one that ran without the journal, or restored
            # without it): records left in the file by another LMDB's life
            # must never be applied to this one, so they carry another epoch.
            self.epoch = int.from_bytes(os.urandom(8), "big") or 1
            seq, offset, applies = self._applied()[0], 0, 0
        # Always in the current form, with where the next record will go.
        journal.pos = offset or 0
        self.inner.commit_packed(PackedBatch(state=marks(self.epoch, seq, journal.pos, applies)))
        return seq

    # -- the applier process -------------------------------------------------------
    def _applier_argv(self) -> list[str]:
        return [sys.executable, "-m", "cnrd.leases.applier", self.path, str(self.map_size),
                str(self.event_history), repr(self.apply_interval), str(self.event_history_age)]

    def _start_applier(self) -> None:
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._started_at = time.monotonic()
        self._proc = subprocess.Popen(self._applier_argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, close_fds=True, env=env)

    def _check_applier(self) -> None:
        """If the applier died, apply here what it left (an LMDB error surfaces), then start another.

        At most one start per ``restart_backoff`` seconds: one that dies at
        once is not respawned by every commit.  Meanwhile the ring fills and
        groups go straight to LMDB, which is slower but never unsafe.
        """
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                return
            why = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            for f in (proc.stdin, proc.stderr):
                if f is not None:
                    f.close()
            self._proc = None
            self._restart_at = self._started_at + self.restart_backoff
            # Imported here, not at the top: the applier process imports this
            # module, and Twisted would be half of its memory.
            from twisted.logger import Logger

            Logger(namespace="cnrd.store").warn(
                "lease journal applier exited with status {status}{why}; starting another in {delay:.0f} s",
                status=proc.returncode, why=f": {why.splitlines()[-1]}" if why else "",
                delay=max(0.0, self._restart_at - time.monotonic()))
            apply_journal(self.inner, self._ring, self.epoch)
        if self._proc is None and self._restart_at is not None and time.monotonic() >= self._restart_at:
            self._restart_at = None
            self.applier_restarts += 1
            self._start_applier()

    def _stop_applier(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # end of input: it applies what is left and exits
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    # -- the contract ------------------------------------------------------------
    def load(self) -> Iterator[Lease]:
        self.flush()
        overlay = self._overlay
        if overlay is None or not overlay.leases:
            # LMDB's own iterator, not one more generator around it: a
            # start-up reads every record through this.
            return self.inner.load()
        return self._load_with(overlay)

    def _load_with(self, overlay: PackedBatch) -> Iterator[Lease]:
        """LMDB's records with the read-only view's unapplied journal records laid over them."""
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
        payload = batch.to_bytes()
        with self._lock:
            seq = self._seq + 1
            journal = self._ring
            try:
                self._check_applier()
                if journal.fits(len(payload)):
                    ok = journal.append(self.epoch, seq, payload)
                    if not ok:
                        self._refresh()  # the applier may have freed room since we last looked
                        ok = journal.append(self.epoch, seq, payload)
                    if ok:
                        self._seq = seq
                        self.commits += 1
                        return
                # Too big for the ring, or the applier is a ring behind:
                # straight into LMDB, after whatever is still pending.
                apply_journal(self.inner, journal, self.epoch, extra=batch, extra_seq=seq, next_offset=journal.pos)
                self._seq = self._applied_seq = seq
                journal.release(seq)
                self.direct_writes += 1
                self.commits += 1
            except OSError as e:
                raise StoreError(f"lease journal write failed: {e}") from e

    def _refresh(self) -> None:
        """Read LMDB's number; free the ring's room it covers."""
        self._applied_seq = self._applied()[0]
        self._ring.release(self._applied_seq)

    @property
    def unapplied(self) -> int:
        """Commits durable in the journal that LMDB does not hold yet."""
        if self.readonly or self._closing:
            return 0
        with self._lock:
            self._refresh()
            return self._seq - self._applied_seq

    @property
    def applies(self) -> int:
        """LMDB transactions that applied journal records (by the applier or a read)."""
        return self._applied()[2]

    def flush(self) -> None:
        """Apply everything journaled to LMDB now (readers in other processes see it)."""
        if self.readonly or self._closing:
            return
        with self._lock:
            if self._applied_seq >= self._seq:
                return
            apply_journal(self.inner, self._ring, self.epoch)
            self._refresh()
            if self._applied_seq < self._seq:
                raise StoreError(f"lease journal in {self.path}: LMDB holds up to {self._applied_seq}, "
                                 f"{self._seq} were committed")

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, LeaseEvent]]:
        self.flush()
        return self.inner.events(after, limit)

    def history(self, query: HistoryQuery) -> list[tuple[int, LeaseEvent]]:
        self.flush()
        return self.inner.history(query)

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
        if self._closing:
            return
        try:
            if not self.readonly:
                self._stop_applier()
                self.flush()
        finally:
            self._closing = True
            if self.journal is not None:
                self.journal.close()
            self.inner.close()
