"""The lease history in the stores: the event record's source field, old records, the indexes, retention.

Each store (memory, LMDB, the journaled LMDB) must answer the same
:class:`HistoryQuery` the same way; LMDB answers an address or a hardware
address from an index.
"""

from __future__ import annotations

import struct
import time

import lmdb
import pytest

from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import LeaseEvent, LeaseState, client_key
from cnrd.leases.store import HistoryQuery, MemoryLeaseStore

HW_A = b"\x01\x02\x00\x00\x00\x00\x0a"
HW_B = b"\x01\x02\x00\x00\x00\x00\x0b"
ADDR = 0x0A010039  # 10.1.0.57


def _v1(event: LeaseEvent) -> bytes:
    """The packed form stores had before the source field (version 1), written out by hand."""
    what = event.what.encode()
    return struct.pack("!qIBqB", event.time, event.address, int(event.state), event.expiration,
                       len(what)) + what + event.key


def test_event_round_trips_with_source_and_hw() -> None:
    e = LeaseEvent(1_800_000_000, ADDR, LeaseState.LEASED, client_key(b"cid", HW_A), 1_800_003_600, "ack",
                   "operator", HW_A)
    packed = e.pack()
    assert packed[0] == 2
    assert LeaseEvent.unpack(packed) == e
    assert LeaseEvent.index_fields(packed) == (1_800_000_000, ADDR, HW_A)


def test_version_1_event_still_loads() -> None:
    old = LeaseEvent(1_700_000_000, ADDR, LeaseState.RELEASED, client_key(None, HW_A), 0, "release")
    back = LeaseEvent.unpack(_v1(old))
    assert (back.time, back.address, back.state, back.key, back.what) == (
        1_700_000_000, ADDR, LeaseState.RELEASED, client_key(None, HW_A), "release")
    assert back.source == ""
    # A client known by its MAC had it in its key: the hardware address is recovered.
    assert back.hw == HW_A
    assert LeaseEvent.index_fields(_v1(old)) == (1_700_000_000, ADDR, HW_A)
    by_cid = LeaseEvent.unpack(_v1(LeaseEvent(5, ADDR, LeaseState.LEASED, client_key(b"x", HW_A), 9, "ack")))
    assert by_cid.hw == b"" and by_cid.key == client_key(b"x", HW_A)


def _holders() -> list[LeaseEvent]:
    """10.1.0.57 changes hands: A, released, B (by the partner), expired, A again; noise on another address."""
    return [
        LeaseEvent(1000, ADDR, LeaseState.LEASED, client_key(None, HW_A), 1100, "ack", "", HW_A),
        LeaseEvent(1010, ADDR + 1, LeaseState.LEASED, client_key(None, HW_B), 1100, "ack", "", HW_B),
        LeaseEvent(1050, ADDR, LeaseState.RELEASED, client_key(None, HW_A), 0, "release", "", HW_A),
        LeaseEvent(1200, ADDR, LeaseState.LEASED, client_key(None, HW_B), 1300, "partner-update", "partner",
                   HW_B),
        LeaseEvent(1300, ADDR, LeaseState.EXPIRED, client_key(None, HW_B), 1300, "expire", "", HW_B),
        LeaseEvent(1400, ADDR, LeaseState.AVAILABLE, b"", 0, "force-available", "operator", b""),
        LeaseEvent(1500, ADDR, LeaseState.LEASED, client_key(None, HW_A), 1600, "ack", "", HW_A),
    ]


@pytest.fixture(params=["memory", "lmdb", "journal"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> object:
    if request.param == "memory":
        s: object = MemoryLeaseStore()
    elif request.param == "lmdb":
        s = LmdbLeaseStore(str(tmp_path), map_size=64 << 20)
    else:
        s = JournaledStore(str(tmp_path), map_size=64 << 20, apply_interval=0.05)
    yield s
    s.close()  # type: ignore[attr-defined]


def test_history_of_one_address_in_time_order(store) -> None:  # type: ignore[no-untyped-def]
    store.commit([], _holders())
    got = [e for _, e in store.history(HistoryQuery(address=ADDR))]
    assert [e.time for e in got] == [1000, 1050, 1200, 1300, 1400, 1500]
    assert [e.source for e in got] == ["", "", "partner", "", "operator", ""]
    assert {e.hw for e in got if e.state is LeaseState.LEASED} == {HW_A, HW_B}


def test_history_paging_both_ways(store) -> None:  # type: ignore[no-untyped-def]
    store.commit([], _holders())
    seen = []
    after = None
    for _ in range(10):
        page = store.history(HistoryQuery(address=ADDR, limit=4, after=after))
        seen += [e.time for _, e in page]
        if len(page) < 4:
            break
        seq, last = page[-1]
        after = (last.time, seq)
    assert seen == [1000, 1050, 1200, 1300, 1400, 1500]
    # Newest first, two at a time: "who had it at 1250" is the first entry at or before 1250.
    page = store.history(HistoryQuery(address=ADDR, until=1250, limit=1, newest_first=True))
    assert [(e.time, e.hw) for _, e in page] == [(1200, HW_B)]
    first = store.history(HistoryQuery(address=ADDR, limit=2, newest_first=True))
    assert [e.time for _, e in first] == [1500, 1400]
    seq, last = first[-1]
    second = store.history(HistoryQuery(address=ADDR, limit=2, newest_first=True, after=(last.time, seq)))
    assert [e.time for _, e in second] == [1300, 1200]


def test_history_by_hardware_address_and_time(store) -> None:  # type: ignore[no-untyped-def]
    store.commit([], _holders())
    got = store.history(HistoryQuery(hw=HW_B, since=1010, until=1300))
    assert [(e.time, e.address) for _, e in got] == [(1010, ADDR + 1), (1200, ADDR), (1300, ADDR)]
    everything = store.history(HistoryQuery(since=1300, until=1400))
    assert [e.time for _, e in everything] == [1300, 1400]


def test_retention_by_count_drops_index_entries_too(tmp_path: object) -> None:
    s = LmdbLeaseStore(str(tmp_path), map_size=64 << 20, event_history=3)
    try:
        s.commit([], _holders())
        got = s.history(HistoryQuery(address=ADDR))
        assert [e.time for _, e in got] == [1300, 1400, 1500]
    finally:
        s.close()
    # The pruned events' index entries went with them.
    env = lmdb.open(str(tmp_path), max_dbs=8, readonly=True, lock=False)
    try:
        by_address = env.open_db(b"history", create=False)
        by_hw = env.open_db(b"history-hw", create=False)
        with env.begin() as txn:
            assert txn.stat(by_address)["entries"] == 3
            assert txn.stat(by_hw)["entries"] == 2  # the operator's event has no client
    finally:
        env.close()


@pytest.mark.parametrize("kind", ["memory", "lmdb"])
def test_retention_by_age(kind: str, tmp_path: object) -> None:
    s: object = (MemoryLeaseStore(event_history_age=250) if kind == "memory"
                 else LmdbLeaseStore(str(tmp_path), map_size=64 << 20, event_history_age=250))
    try:
        s.commit([], _holders())  # type: ignore[attr-defined]
        # Newest event 1500: anything before 1250 is older than 250 s.
        assert [e.time for _, e in s.history(HistoryQuery())] == [1300, 1400, 1500]  # type: ignore[attr-defined]
        assert [e.time for _, e in s.history(HistoryQuery(hw=HW_A))] == [1500]  # type: ignore[attr-defined]
    finally:
        s.close()  # type: ignore[attr-defined]


def test_old_store_gets_its_index_built(tmp_path: object) -> None:
    """A store written before the indexes (version 1 events, no history databases) answers by address."""
    env = lmdb.open(str(tmp_path), map_size=64 << 20, max_dbs=8)
    for name in (b"leases", b"clients", b"state"):
        env.open_db(name)
    events_db = env.open_db(b"events")
    with env.begin(write=True, db=events_db) as txn:
        for i, e in enumerate(_holders(), 1):
            txn.put(struct.pack("!Q", i), _v1(LeaseEvent(e.time, e.address, e.state, e.key, e.expiration, e.what)))
    env.close()
    ro = LmdbLeaseStore(str(tmp_path), map_size=64 << 20, readonly=True)
    try:  # read-only and unindexed: a scan, the same answer
        assert [e.time for _, e in ro.history(HistoryQuery(address=ADDR))] == [1000, 1050, 1200, 1300, 1400, 1500]
    finally:
        ro.close()
    s = LmdbLeaseStore(str(tmp_path), map_size=64 << 20)
    try:
        got = s.history(HistoryQuery(address=ADDR))
        assert [e.time for _, e in got] == [1000, 1050, 1200, 1300, 1400, 1500]
        assert [e.hw for _, e in got][:2] == [HW_A, HW_A]
        assert s.get_state("history/indexed") == b"1"
    finally:
        s.close()


def test_query_for_one_address_among_100000_events(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    """The figure the issue asks for: one address's history out of 100,000 events (printed with -s)."""
    s = LmdbLeaseStore(str(tmp_path), map_size=256 << 20, event_history=100000)
    try:
        batch = []
        for i in range(100000):
            address = 0x0A000000 + (i % 5000)
            hw = b"\x01\x06" + address.to_bytes(4, "big")
            batch.append(LeaseEvent(1000 + i, address, LeaseState.LEASED, client_key(None, hw), 2000 + i, "ack",
                                    "", hw))
            if len(batch) == 10000:
                s.commit([], batch)
                batch = []
        t0 = time.perf_counter()
        got = s.history(HistoryQuery(address=0x0A000039, limit=1000))
        indexed = time.perf_counter() - t0
        t0 = time.perf_counter()
        scanned = s.history(HistoryQuery(since=0, limit=1000000))
        scan = time.perf_counter() - t0
        assert len(got) == 20 and all(e.address == 0x0A000039 for _, e in got)
        assert len(scanned) == 100000
        with capsys.disabled():
            print(f"\nhistory of one address among 100000 events: {len(got)} events in {indexed * 1000:.2f} ms "
                  f"(index); a full scan of the log: {scan * 1000:.0f} ms")
    finally:
        s.close()


@pytest.mark.parametrize("journal", [True, False])
def test_event_history_age_from_the_config_reaches_the_store(tmp_path: object, journal: bool) -> None:
    from cnrd.config import loads
    from cnrd.leases.journal import open_store

    config = loads(f"[server]\nname = t\ndata-dir = {tmp_path}\nlease-db-size = 64M\nevent-history-age = 250\n"
                   f"lease-journal = {'true' if journal else 'false'}\n")
    store = open_store(config.server)
    try:
        if isinstance(store, JournaledStore):
            # The applier process prunes LMDB too: it must be told the age.
            assert store._applier_argv()[-1] == "250"
        store.commit([], _holders())
        assert [e.time for _, e in store.history(HistoryQuery())] == [1300, 1400, 1500]
    finally:
        store.close()
