"""Backup and restore of the lease store: a consistent copy taken while serving, put back offline.

A copy (:func:`copy_store`) is one LMDB file: LMDB's own compacting copy
(``mdb_env_copyfd2`` with ``MDB_CP_COMPACT``) of the store, taken inside one
read transaction, so it is a snapshot of a single commit and never blocks
the server's writers.  In front of LMDB sits the write-ahead journal
(:mod:`cnrd.leases.journal`): commits are durable there before LMDB holds
them.  The copy applies the journal to LMDB first (``flush``: one LMDB
transaction, the work of one commit, under the lock the commits take) and
only then opens its read transaction, so everything durable before the call
is in the copy.  The file therefore needs no journal beside it and opens
with any LMDB tool (``mdb_stat -a``).

The copy also carries when it was taken (state key ``backup/taken-at``,
written through the store just before the flush): :func:`restore` reads it
back for the failover-recover guidance.

:func:`restore` puts a copy in place of a stopped server's store.  It
refuses while any process has the store open: LMDB holds a shared
``fcntl`` lock on byte 0 of ``lock.mdb`` for as long as an environment is
open (the server, its journal applier, a reader), which is what
:func:`store_user` asks.  The store being replaced is kept beside it
(``data.mdb.before-restore``), the journal is removed (its records belong to
the store being replaced, never to the copy) and the copy's journal epoch
is cleared, so the next start begins a new journal.

No threads and no clock here: the caller runs :func:`copy_store` off the
reactor and passes the time in.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import lmdb

from cnrd.leases.apply import EPOCH_KEY
from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.store import PackedBatch, StoreError

__all__ = ["TAKEN_AT_KEY", "CopyInfo", "StoreError", "copy_store", "read_copy", "restore", "store_user"]

#: State key: when the copy was taken (8-byte big-endian seconds since the epoch).
TAKEN_AT_KEY = "backup/taken-at"
_TIME = struct.Struct("!q")
DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"
JOURNAL_FILE = "journal"
KEPT_SUFFIX = ".before-restore"


@dataclass(frozen=True)
class CopyInfo:
    """What a copy holds: its lease count, the leased ones, and when it was taken (None: unknown)."""

    leases: int
    leased: int
    taken_at: int | None
    latest_transaction: int  # the latest client-last-transaction-time in it (0: none)


def copy_store(store: object, fd: int, taken_at: int) -> None:
    """Write a consistent copy of ``store`` (journal applied) to the open file ``fd``.

    Blocking: run it on a worker thread.  Everything committed before the
    call is in the copy; commits made meanwhile may be too (the copy is the
    state after one of them, never a mix).  ``store`` is a
    :class:`JournaledStore` or an :class:`LmdbLeaseStore`; other stores
    have no file to copy and raise StoreError.
    """
    stamp = PackedBatch(state={TAKEN_AT_KEY: _TIME.pack(taken_at)})
    if isinstance(store, JournaledStore):
        store.commit_packed(stamp)
        store.flush()
        inner = store.inner
    elif isinstance(store, LmdbLeaseStore):
        store.commit_packed(stamp)
        inner = store
    else:
        raise StoreError(f"a {type(store).__name__} cannot be copied (only the LMDB store has a file)")
    inner.copy_to_fd(fd)


def store_user(data_dir: str) -> int | None:
    """The process id of a process that has the store in ``data_dir`` open, None if none has.

    LMDB keeps a shared lock on the first byte of ``lock.mdb`` while an
    environment is open; a process asking for a conflicting lock learns who
    holds it (F_GETLK), without taking anything.
    """
    path = os.path.join(data_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from None
    try:
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, probe)
        kind, _, _, _, pid = struct.unpack("hhqqi", answer)
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else int(pid) or -1


def _leases(env: lmdb.Environment) -> Iterator[Lease]:
    db = env.open_db(b"leases", create=False)
    with env.begin(db=db, buffers=True) as txn:
        for _, value in txn.cursor():
            yield Lease.unpack(value)


def read_copy(path: str) -> CopyInfo:
    """Check that ``path`` is a copy of a cnrd lease store and say what it holds; StoreError if not."""
    if not os.path.isfile(path):
        raise StoreError(f"{path} is not a file")
    try:
        env = lmdb.open(path, subdir=False, readonly=True, lock=False, max_dbs=8)
    except lmdb.Error as e:
        raise StoreError(f"{path} is not an LMDB lease store copy: {e}") from None
    try:
        try:
            state = env.open_db(b"state", create=False)
            with env.begin(db=state) as txn:
                raw = txn.get(TAKEN_AT_KEY.encode())
            n = leased = latest = 0
            for lease in _leases(env):
                n += 1
                leased += lease.state is LeaseState.LEASED
                latest = max(latest, lease.cltt)
        except lmdb.Error as e:
            raise StoreError(f"{path} is not a cnrd lease store copy: {e}") from None
        except ValueError as e:
            raise StoreError(f"{path} holds a lease record cnrd cannot read: {e}") from None
    finally:
        env.close()
    taken = int(_TIME.unpack(raw)[0]) if raw is not None and len(raw) == _TIME.size else None
    return CopyInfo(n, leased, taken, latest)


def restore(copy: str, data_dir: str) -> CopyInfo:
    """Put the copy ``copy`` in place of the store in ``data_dir``; the server must be stopped.

    The store it replaces is kept as ``data.mdb.before-restore`` (one such
    file: an older one is replaced).  Raises StoreError, changing nothing,
    when a process has the store open or ``copy`` is not a lease store copy.
    """
    info = read_copy(copy)
    pid = store_user(data_dir)
    if pid is not None:
        raise StoreError(f"the lease store in {data_dir} is open in process {pid}: stop cnrd before a restore")
    os.makedirs(data_dir, mode=0o750, exist_ok=True)
    data = os.path.join(data_dir, DATA_FILE)
    staged = data + ".restoring"
    with open(copy, "rb") as src, open(staged, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    if os.path.exists(data):
        os.replace(data, data + KEPT_SUFFIX)
    os.replace(staged, data)
    for name in (JOURNAL_FILE, LOCK_FILE):
        try:
            os.unlink(os.path.join(data_dir, name))
        except FileNotFoundError:
            pass
    # The copy's epoch names the journal it was taken beside; with it gone,
    # the next start picks a new epoch and never reads another store's records.
    store = LmdbLeaseStore(data_dir)
    try:
        store.commit(leases=(), state={EPOCH_KEY: None})
    finally:
        store.close()
    _sync_dir(data_dir)
    return info


def _sync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """``python -m cnrd.leases.backup restore COPY DATA_DIR`` or ``info COPY``: one JSON line, exit 0;
    one line on standard error and exit 1 when refused.

    cnrctl (a client that never imports the server's packages) runs this
    for ``cnrctl restore``: the restore is an offline operation on the
    server's files, not an API call.
    """
    import json
    import sys

    if not ((len(argv) == 3 and argv[0] == "restore") or (len(argv) == 2 and argv[0] == "info")):
        print("usage: python -m cnrd.leases.backup restore COPY DATA_DIR | info COPY", file=sys.stderr)
        return 2
    try:
        info = restore(argv[1], argv[2]) if argv[0] == "restore" else read_copy(argv[1])
    except (StoreError, OSError) as e:
        print(str(e), file=sys.stderr)
        return 1
    print(json.dumps({"leases": info.leases, "leased": info.leased, "taken-at": info.taken_at,
                      "latest-transaction": info.latest_transaction}))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
