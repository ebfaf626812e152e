"""The write-ahead journal in front of LMDB: durable before LMDB has it, replayed after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from cnrd.leases.apply import EPOCH_KEY
from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import LeaseState
from cnrd.leases import ring
from cnrd.leases.ring import ALIGN, Journal
from cnrd.leases.store import PackedBatch
from tests.leases.test_store_contract import lease

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 2**32 - 1), st.tuples(st.binary(max_size=80), st.none() | st.binary(max_size=30)),
                       max_size=8),
       st.lists(st.binary(max_size=40), max_size=5),
       st.dictionaries(st.text(max_size=20), st.none() | st.binary(max_size=30), max_size=5))
def test_packed_batch_bytes_round_trip(leases, events, state):
    b = PackedBatch(leases, events, state)
    assert PackedBatch.from_bytes(b.to_bytes()) == b


def test_truncated_batch_bytes_are_refused():
    data = PackedBatch({1: (b"rec", b"key")}, [b"ev"], {"k": b"v"}).to_bytes()
    for n in range(len(data)):
        try:
            PackedBatch.from_bytes(data[:n])
        except ValueError:
            continue
        raise AssertionError(f"{n} bytes accepted")


EPOCH = 0x5EED


def _journal_only(path: str, batches: list[PackedBatch], start_seq: int = 1, epoch: int = EPOCH) -> None:
    """Write records to the journal as a server that crashed before applying them would have."""
    os.makedirs(path, exist_ok=True)
    lm = LmdbLeaseStore(path, map_size=1 << 24)
    lm.commit([], [], {EPOCH_KEY: EPOCH.to_bytes(8, "big")})
    lm.close()
    j = Journal(os.path.join(path, "journal"), 1 << 16)
    for i, b in enumerate(batches):
        assert j.append(epoch, start_seq + i, b.to_bytes())
    j.close()


def test_records_lmdb_never_got_are_applied_at_open(tmp_path):
    path = str(tmp_path / "db")
    _journal_only(path, [PackedBatch.of([lease(1)]), PackedBatch.of([lease(2), lease(1, state=LeaseState.RELEASED)],
                                                                    state={"k": b"v"})])
    # another process's read-only view already sees them
    ro = JournaledStore(path, map_size=1 << 24, readonly=True)
    assert {l.address: l.state for l in ro.load()} == {0x0A010001: LeaseState.RELEASED, 0x0A010002: LeaseState.LEASED}
    assert ro.get_state("k") == b"v"
    ro.close()
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    try:
        assert {l.address: l.state for l in s.inner.load()} == {0x0A010001: LeaseState.RELEASED,
                                                                0x0A010002: LeaseState.LEASED}
        assert s.inner.get_state("k") == b"v"
        s.commit([lease(3)])  # numbering goes on after the replayed records
    finally:
        s.close()
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    try:
        assert s.lease_count() == 3
    finally:
        s.close()


def test_a_torn_last_record_is_ignored(tmp_path):
    path = str(tmp_path / "db")
    _journal_only(path, [PackedBatch.of([lease(1)]), PackedBatch.of([lease(2)])])
    jfile = os.path.join(path, "journal")
    recs = Journal(jfile, 1 << 16).scan(EPOCH)
    assert [r[0] for r in recs] == [1, 2]
    with open(jfile, "r+b") as f:  # the crash hit during the second write
        f.seek(recs[1][3] - 3)
        f.write(b"\0\0\0")
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    try:
        assert [l.address for l in s.load()] == [0x0A010001]
    finally:
        s.close()


def test_old_records_already_in_lmdb_are_not_replayed(tmp_path):
    path = str(tmp_path / "db")
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    s.commit([lease(1)])
    s.commit([lease(1, state=LeaseState.RELEASED)])
    s.close()
    # LMDB has both; change it behind the journal's back: a replay would undo this
    raw = LmdbLeaseStore(path, map_size=1 << 24)
    raw.commit([lease(1, state=LeaseState.EXPIRED)])
    raw.close()
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    try:
        assert [l.state for l in s.load()] == [LeaseState.EXPIRED]
    finally:
        s.close()


def test_records_of_another_lmdb_are_never_applied(tmp_path):
    path = str(tmp_path / "db")
    # a journal left by another LMDB's life (e.g. data.mdb deleted or restored without its journal)
    _journal_only(path, [PackedBatch.of([lease(i, state=LeaseState.RELEASED)]) for i in range(1, 6)], epoch=0xBAD)
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    s.close()
    os.unlink(os.path.join(path, "data.mdb"))
    os.unlink(os.path.join(path, "lock.mdb"))
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16, apply_interval=3600)
    assert s.lease_count() == 0
    s.commit([lease(1)])  # sequence 1 again, in a ring that still holds the old 1..5
    s.commit([lease(2)])
    _crash(s)
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
    try:
        assert {l.address - 0x0A010000: l.state for l in s.load()} == {1: LeaseState.LEASED, 2: LeaseState.LEASED}
    finally:
        s.close()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5 * ALIGN), st.integers(0, 3)), min_size=1, max_size=80))
def test_ring_room_check_agrees_with_checking_every_live_record(tmp_path_factory, steps):
    j = Journal(str(tmp_path_factory.mktemp("ring") / "journal"), 16 * ALIGN)
    try:
        seq = 0
        for length, releases in steps:
            span = _align_for_test(length)
            start = j.pos if j.pos + span <= j.size else 0
            end = start + span
            brute = all(not (s < end and start < e) for _, s, e in j.live)
            assert j.has_room(start, end) == brute, (start, end, list(j.live), j.pos)
            if span <= j.size and j.append(EPOCH, seq + 1, bytes(length)):
                seq += 1
            if releases and j.live:
                j.release(j.live[min(releases, len(j.live)) - 1][0])
    finally:
        j.close()


def test_ring_room_when_the_live_arc_wraps(tmp_path):
    j = Journal(str(tmp_path / "journal"), 16 * ALIGN)
    try:
        a = ALIGN
        j.live.extend([(5, 14 * a, 15 * a), (6, 0, 12 * a)])  # oldest near the end, newest from 0
        j.pos = 12 * a
        assert j.has_room(12 * a, 14 * a)  # the gap before the oldest
        assert not j.has_room(12 * a, 15 * a)  # into the oldest
        assert not j.has_room(0, 5 * a)  # a wrap would land on the newest
        j.live.clear()
        j.live.extend([(1, 2 * a, 4 * a), (2, 4 * a, 10 * a)])  # no wrap: free after pos and before the oldest
        j.pos = 10 * a
        assert j.has_room(10 * a, 16 * a) and j.has_room(0, 2 * a) and not j.has_room(0, 3 * a)
    finally:
        j.close()


def _align_for_test(length: int) -> int:
    return ring.span(length)


def _crash(s: JournaledStore) -> None:
    """The server and its applier die at once: nothing more reaches LMDB."""
    s._proc.kill()
    s._proc.wait()
    s._proc = None
    s._closing = True
    s.inner.close()
    s.journal.close()


def test_the_ring_wraps_and_a_full_ring_goes_straight_to_lmdb(tmp_path):
    path = str(tmp_path / "db")
    # an applier that never gets round to it: the ring fills
    s = JournaledStore(path, map_size=1 << 24, journal_size=16 * ALIGN, apply_interval=3600)
    try:
        for i in range(1, 41):
            s.commit([lease(i)])
        # a full ring is never overwritten: those groups went to LMDB, after what the ring held
        assert s.direct_writes >= 2
        assert s.inner.lease_count() > 16
        assert s.lease_count() == 40
        positions = []
        for i in range(41, 80):  # LMDB caught up at each read: the ring goes round
            s.commit([lease(i)])
            positions.append(s.journal.pos)
            s.flush()
        assert any(b < a for a, b in zip(positions, positions[1:])), positions
        before = s.direct_writes
        s.commit([lease(i) for i in range(80, 250)])  # more than half the ring: straight to LMDB
        assert s.direct_writes == before + 1
    finally:
        s.close()
    s = LmdbLeaseStore(path, map_size=1 << 24)
    try:
        assert s.lease_count() == 249
    finally:
        s.close()


def test_another_process_applies_the_journal_and_is_restarted_if_it_dies(tmp_path):
    path = str(tmp_path / "db")
    s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16, apply_interval=0.01)
    try:
        assert s._proc is not None and s._proc.pid != os.getpid()
        for i in range(1, 21):
            s.commit([lease(i)])
        deadline = time.monotonic() + 20
        while s.inner.lease_count() < 20 and time.monotonic() < deadline:  # no read: no flush here
            time.sleep(0.01)
        assert s.inner.lease_count() == 20
        assert s.applies >= 1 and s.unapplied == 0
        s.restart_backoff = 0
        s._proc.kill()
        s._proc.wait()
        s.commit([lease(21)])  # notices, starts another
        assert s.applier_restarts == 1 and s._proc.poll() is None
        deadline = time.monotonic() + 20
        while s.inner.lease_count() < 21 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.inner.lease_count() == 21
    finally:
        s.close()


def test_an_applier_that_dies_at_once_is_not_restarted_by_every_commit(tmp_path):
    path = str(tmp_path / "db")
    s = JournaledStore(path, map_size=1 << 24, journal_size=16 * ALIGN, apply_interval=0.01)
    try:
        s._applier_argv = lambda: [sys.executable, "-c", "raise SystemExit('broken install')"]
        s.restart_backoff = 0
        s._proc.kill()
        s._proc.wait()
        s.commit([lease(1)])  # notices, starts the broken one
        assert s.applier_restarts == 1
        s._proc.wait(10)
        s.restart_backoff = 3600
        for i in range(2, 60):  # the ring fills; groups go straight to LMDB
            s.commit([lease(i)])
        assert s.applier_restarts == 1 and s._proc is None
        assert s.direct_writes >= 1
        assert s.lease_count() == 59
    finally:
        s.close()


CRASHER = """
import os, sys
sys.path.insert(0, {repo!r})
from cnrd.leases.journal import JournaledStore
from tests.leases.test_store_contract import lease
s = JournaledStore({path!r}, map_size=1 << 24, journal_size=1 << 16)
for i in range(1, 201):
    s.commit([lease(i)])
    print(i, flush=True)  # "ACKed": the commit returned
os._exit(0)  # no close: whatever the background thread had not applied is only in the journal
"""


def test_every_committed_lease_survives_a_crash(tmp_path):
    for run in range(3):
        path = str(tmp_path / f"db{run}")
        out = subprocess.run([sys.executable, "-c", CRASHER.format(repo=REPO, path=path)],
                             capture_output=True, text=True, timeout=60, check=True)
        acked = {int(x) for x in out.stdout.split()}
        assert len(acked) == 200
        s = JournaledStore(path, map_size=1 << 24, journal_size=1 << 16)
        try:
            assert {l.address - 0x0A010000 for l in s.load()} >= acked
        finally:
            s.close()
