"""Backup copies of the lease store and their restore (cnrd/leases/backup.py), on real LMDB files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnrd.leases import backup
from cnrd.leases.apply import EPOCH_KEY
from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import LeaseState
from cnrd.leases.store import MemoryLeaseStore, StoreError
from tests.leases.test_store_contract import lease

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _copy(store: object, path: str, taken_at: int = 1_700_000_000) -> str:
    with open(path, "wb") as f:
        backup.copy_store(store, f.fileno(), taken_at)
    return path


def test_copy_holds_commits_still_only_in_the_journal(tmp_path):
    # The applier waits an hour: what is committed stays in the journal only.
    s = JournaledStore(str(tmp_path / "db"), map_size=1 << 24, apply_interval=3600)
    try:
        s.commit([lease(n) for n in range(1, 51)])
        s.commit([lease(7, state=LeaseState.RELEASED)])
        assert s.unapplied >= 2  # the copy must apply them itself
        path = _copy(s, str(tmp_path / "copy.mdb"), taken_at=1_700_000_123)
    finally:
        s.close()
    info = backup.read_copy(path)
    assert (info.leases, info.leased, info.taken_at) == (50, 49, 1_700_000_123)
    assert info.latest_transaction == 100


def test_copy_of_a_plain_lmdb_store(tmp_path):
    s = LmdbLeaseStore(str(tmp_path / "db"), map_size=1 << 24)
    try:
        s.commit([lease(n, cltt=200 + n) for n in range(1, 4)])
        path = _copy(s, str(tmp_path / "copy.mdb"), taken_at=5)
    finally:
        s.close()
    assert backup.read_copy(path) == backup.CopyInfo(3, 3, 5, 203)


def test_a_memory_store_cannot_be_copied(tmp_path):
    with pytest.raises(StoreError, match="MemoryLeaseStore cannot be copied"):
        _copy(MemoryLeaseStore(), str(tmp_path / "x"))


def test_read_copy_refuses_what_is_not_a_store_copy(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"not lmdb" * 1000)
    with pytest.raises(StoreError, match="not .*lease store copy"):
        backup.read_copy(str(junk))
    with pytest.raises(StoreError, match="is not a file"):
        backup.read_copy(str(tmp_path / "absent"))


def test_restore_puts_the_copy_back_and_never_replays_the_old_journal(tmp_path):
    data = str(tmp_path / "db")
    s = JournaledStore(data, map_size=1 << 24, apply_interval=3600)
    try:
        s.commit([lease(n) for n in range(1, 11)])
        path = _copy(s, str(tmp_path / "copy.mdb"))
        # After the copy: records of the same journal epoch that the copy
        # must never see, left in the journal file.
        s.commit([lease(n) for n in range(11, 21)])
        s.commit([lease(3, state=LeaseState.RELEASED)])
    finally:
        s.close()
    info = backup.restore(path, data)
    assert info.leases == 10
    assert os.path.exists(os.path.join(data, "data.mdb" + backup.KEPT_SUFFIX))
    assert not os.path.exists(os.path.join(data, "journal"))
    lm = LmdbLeaseStore(data, map_size=1 << 24)
    try:
        assert lm.get_state(EPOCH_KEY) is None
    finally:
        lm.close()
    s = JournaledStore(data, map_size=1 << 24, apply_interval=3600)
    try:
        got = {l.address: l.state for l in s.load()}
        s.commit([lease(30)])  # a new journal that works
    finally:
        s.close()
    assert got == {lease(n).address: LeaseState.LEASED for n in range(1, 11)}
    kept = LmdbLeaseStore(data, map_size=1 << 24)
    try:
        assert lease(30).address in {l.address for l in kept.load()}
    finally:
        kept.close()


def test_restore_refuses_while_another_process_has_the_store_open(tmp_path):
    data = str(tmp_path / "db")
    s = LmdbLeaseStore(data, map_size=1 << 24)
    s.commit([lease(1)])
    path = _copy(s, str(tmp_path / "copy.mdb"))
    s.close()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys; from cnrd.leases.lmdb_store import LmdbLeaseStore as S; s = S(sys.argv[1], map_size=1<<24);"
          " print('open', flush=True); sys.stdin.read()"), data],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert backup.store_user(data) == holder.pid
        before = os.stat(os.path.join(data, "data.mdb")).st_ino
        with pytest.raises(StoreError, match=f"open in process {holder.pid}: stop cnrd"):
            backup.restore(path, data)
        assert os.stat(os.path.join(data, "data.mdb")).st_ino == before
        assert not os.path.exists(os.path.join(data, "data.mdb" + backup.KEPT_SUFFIX))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert backup.store_user(data) is None
    assert backup.restore(path, data).leases == 1


def test_store_user_of_a_directory_without_a_store(tmp_path):
    assert backup.store_user(str(tmp_path)) is None

