"""The lease table's compact structures: what a start-up load builds, the
client index, the expiry buckets, the pool's bitmap of used addresses, and
records unpacked with shared time values.

Every expectation here follows from what the table promises its callers
(RFC 2131 §4.3.1's order of address choice as CNR applies it, one client key
per client, a lease running out at its expiration), not from a run of it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import Lease, LeaseFlag, LeaseState, Range, client_key
from cnrd.leases.pool import AddressBits
from cnrd.leases.table import LeaseTable, Pool

HW = b"\x01\x02\xbe\x00\x00\x00"


def hw(i: int) -> bytes:
    return HW[:-1] + bytes([i])


def lru_table(*ranges: tuple[int, int], scope: str = "s") -> LeaseTable:
    t = LeaseTable()
    t.add_pool(Pool(scope, [Range(a, b) for a, b in ranges], False))
    return t


# -- the pool's bitmap -----------------------------------------------------------

def test_address_bits_hold_only_addresses_of_the_ranges() -> None:
    bits = AddressBits((Range(10, 19), Range(100, 103)))
    assert bits.add(10) and bits.add(19) and bits.add(100) and bits.add(103)
    assert not bits.add(20) and not bits.add(9) and not bits.add(99) and not bits.add(104)
    assert bits.add(10)  # again: still a member, counted once
    assert len(bits) == 4
    assert [a for a in range(110) if a in bits] == [10, 19, 100, 103]
    assert "10" not in bits


RANGES = (Range(1000, 1049), Range(2000, 2060))


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(0, 110)), st.integers(0, 110), st.integers(0, 110))
def test_next_clear_is_the_first_address_of_the_range_without_a_record(members: set[int], a: int, b: int) -> None:
    addresses = [x for r in RANGES for x in range(r.first, r.last + 1)]
    bits = AddressBits(RANGES)
    for m in members:
        bits.add(addresses[m])
    start, last = sorted((addresses[a], addresses[b]))
    r = next(r for r in RANGES if r.first <= start <= r.last)
    last = min(last, r.last)  # both in one range, as the pool asks
    expected = next((x for x in range(start, last + 1) if x not in bits), None)
    assert bits.next_clear(start, last) == expected


def test_after_a_load_allocations_take_the_never_used_addresses_in_order() -> None:
    t = lru_table((100, 4099))
    t.load([leased(100 + i, i % 250) for i in range(3000) if i != 1234], now=0)
    got = [t.allocate("s", client_key(None, hw(250 + i))) for i in range(3)]
    # the one address no record holds comes first, then the range past the records
    assert got == [1334, 3100, 3101]


def test_a_pool_of_two_ranges_counts_its_free_addresses() -> None:
    t = lru_table((10, 14), (20, 24))
    t.update(12, durable=True, state=LeaseState.LEASED, scope="s", hw=hw(1), expiration=100)
    t.update(22, durable=True, state=LeaseState.LEASED, scope="s", hw=hw(2), expiration=100)
    t.update(50, durable=True, state=LeaseState.LEASED, scope="s", hw=hw(3), expiration=100)  # no pool's
    assert t.pools["s"].free_count() == 8
    got = [t.allocate("s", client_key(None, hw(9))) for _ in range(1)]
    assert got == [10]


# -- the load --------------------------------------------------------------------

def leased(address: int, i: int, exp: int = 1000, scope: str = "s", cid: bytes | None = None) -> Lease:
    return Lease(address, LeaseState.LEASED, scope, hw(i), cid, start=exp - 100, expiration=exp, cltt=exp - 100,
                 potential_expiration=exp)


def test_load_indexes_clients_by_client_id_else_hardware_address() -> None:
    t = lru_table((100, 199))
    t.load([leased(100, 1), leased(101, 2, cid=b"\x01id-2"), leased(102, 3, scope="other")], now=0)
    assert t.addresses_of(client_key(None, hw(1))) == [100]
    assert t.addresses_of(client_key(b"\x01id-2", hw(2))) == [101]
    # A client that sent a client-id is known by it, not by its MAC.
    assert t.addresses_of(client_key(None, hw(2))) == []
    assert [lease.address for lease in t.of_client(client_key(None, hw(3)))] == [102]
    assert t.addresses_of(b"") == [] and t.addresses_of(b"\x02x") == []


def test_load_counts_and_takes_every_address_from_its_pool() -> None:
    t = lru_table((100, 109))
    records = [leased(100 + i, i) for i in range(4)]
    records.append(Lease(104, LeaseState.RELEASED, "s", hw(9)))
    records.append(Lease(105, LeaseState.OFFERED, "s", hw(8), expiration=1000))  # not a promise after a restart
    records.append(leased(108, 7, scope="elsewhere"))  # its scope is not served: the pool of the address has it
    assert t.load(records, now=0) == 7
    pool = t.pools["s"]
    counts = pool.address_counts()
    assert counts[LeaseState.LEASED] == 5
    assert counts[LeaseState.RELEASED] == 1
    assert t.leases[105].state is LeaseState.AVAILABLE
    # Never-used addresses first (106, 107, 109), then the free records
    # (104 and 105) before anything in use.
    free = pool.free_count()
    assert free == 5
    got = []
    for i in range(free):
        a = t.allocate("s", client_key(None, hw(100 + i)))
        assert a is not None
        t.update(a, durable=True, state=LeaseState.LEASED, scope="s", hw=hw(100 + i), expiration=2000)
        got.append(a)
    assert got[:3] == [106, 107, 109] and sorted(got[3:]) == [104, 105]
    assert t.allocate("s", b"\x00last") is None


def test_a_record_loaded_twice_counts_once_in_its_latest_state() -> None:
    t = lru_table((100, 103))
    t.load([leased(100, 1), leased(101, 2), Lease(100, LeaseState.RELEASED, "s", hw(1))], now=0)
    counts = t.pools["s"].address_counts()
    assert counts[LeaseState.LEASED] == 1 and counts[LeaseState.RELEASED] == 1
    assert counts[LeaseState.AVAILABLE] == 2
    assert t.leases[100].state is LeaseState.RELEASED


def test_loaded_leases_run_out_at_their_expiration() -> None:
    t = lru_table((100, 199))
    t.load([leased(100, 1, exp=500), leased(101, 2, exp=500), leased(102, 3, exp=600)], now=0)
    assert not t.due(499)
    assert t.expire(499) == []
    assert t.due(500)
    assert sorted(lease.address for lease in t.expire(500)) == [100, 101]
    assert t.leases[100].state is LeaseState.EXPIRED and t.leases[102].state is LeaseState.LEASED
    assert [lease.address for lease in t.expire(10_000)] == [102]
    assert not t.due(10**9)


def test_a_renewed_lease_does_not_run_out_at_its_old_expiration() -> None:
    t = lru_table((100, 199))
    t.load([leased(100, 1, exp=500), leased(101, 2, exp=500)], now=0)
    t.update(100, durable=True, state=LeaseState.LEASED, expiration=900)
    assert [lease.address for lease in t.expire(500)] == [101]
    assert [lease.address for lease in t.expire(900)] == [100]


# -- the client index under update ----------------------------------------------

def test_update_moves_a_client_between_client_id_and_hardware_address() -> None:
    t = lru_table((100, 199))
    t.update(100, durable=True, state=LeaseState.LEASED, scope="s", hw=hw(1), expiration=100)
    assert t.addresses_of(client_key(None, hw(1))) == [100]
    t.update(100, durable=True, client_id=b"\x01cid")
    assert t.addresses_of(client_key(None, hw(1))) == []
    assert t.addresses_of(client_key(b"\x01cid", hw(1))) == [100]
    t.update(100, durable=True, client_id=None, hw=hw(2))
    assert t.addresses_of(client_key(b"\x01cid", hw(1))) == []
    assert t.addresses_of(client_key(None, hw(2))) == [100]
    t.update(100, durable=True, state=LeaseState.AVAILABLE, hw=b"", client_id=None)
    assert t.addresses_of(client_key(None, hw(2))) == []


def test_a_client_in_two_scopes_keeps_both_addresses_in_order() -> None:
    t = LeaseTable()
    t.add_pool(Pool("a", [Range(100, 109)], False))
    t.add_pool(Pool("b", [Range(200, 209)], False))
    for address, scope in ((100, "a"), (200, "b")):
        t.update(address, durable=True, state=LeaseState.LEASED, scope=scope, hw=hw(1), expiration=100)
    t.update(100, durable=True, expiration=200)  # the key did not change: no move
    assert t.addresses_of(client_key(None, hw(1))) == [100, 200]
    t.update(100, durable=True, state=LeaseState.RELEASED, hw=b"")
    assert t.addresses_of(client_key(None, hw(1))) == [200]


def test_events_carry_the_client_key() -> None:
    t = lru_table((100, 199))
    t.update(100, durable=True, event="ack", now=5, state=LeaseState.LEASED, scope="s", hw=hw(1),
             client_id=b"\x01c", expiration=100)
    _, events = t.take_dirty()
    assert events[0].key == client_key(b"\x01c", hw(1)) and events[0].hw == hw(1)


# -- records ---------------------------------------------------------------------

@pytest.mark.parametrize("lease", [
    Lease(0x0A000001, LeaseState.LEASED, "scope-ü", hw(1), None, 1, 2, 3, 4, "", LeaseFlag.NONE),
    Lease(0x0A000002, LeaseState.LEASED, "s", hw(2), b"\x01" + b"d" * 20, 1, 2, 3, 4, "host",
          LeaseFlag.BOOTP | LeaseFlag.RESERVED, b"\x01\x02ab", 7, b"MSFT 5.0"),
    Lease(0x0A000003, LeaseState.AVAILABLE, "", b"", b"", 0, 0, 0, 0),
    Lease(0xFFFFFFFF, LeaseState.BACKUP, "x" * 300, b"\x01" + b"\xff" * 16, None, -1, Lease.INFINITE, 0, 0),
])
def test_records_read_back_equal(lease: Lease) -> None:
    data = lease.pack()
    assert Lease.unpack(data) == lease
    assert Lease.unpack(memoryview(data)) == lease
    assert Lease.unpack(data, {}) == lease


def test_records_unpacked_together_share_equal_times() -> None:
    times: dict[int, int] = {}
    now = 1_800_000_000
    a, b = (Lease.unpack(leased(100 + i, i, exp=now + 3600).pack(), times) for i in range(2))
    assert a.expiration is b.expiration and a.start is b.start
    assert a.cltt is a.start and a.potential_expiration is a.expiration


def test_an_unknown_record_version_is_refused() -> None:
    data = bytearray(leased(100, 1).pack())
    data[0] = 9
    with pytest.raises(ValueError):
        Lease.unpack(bytes(data))


def test_the_store_serves_reads_and_writes_after_a_full_load(tmp_path: os.PathLike[str]) -> None:
    store = LmdbLeaseStore(str(tmp_path))
    try:
        store.commit([leased(100 + i, i) for i in range(50)])
        assert [lease.address for lease in store.load()] == list(range(100, 150))
        store.commit([Lease(100, LeaseState.RELEASED, "s", hw(0))])
        loaded = {lease.address: lease for lease in store.load()}
        assert len(loaded) == 50 and loaded[100].state is LeaseState.RELEASED
        assert store.addresses_of(client_key(None, hw(0))) == [100]
        assert store.lease_count() == 50
    finally:
        store.close()


def test_bind_changes_a_lease_as_update_does() -> None:
    """The positional fast path: same records, indexes, counts, events and listener calls as update."""
    tables = [lru_table((100, 109)), lru_table((100, 109))]
    heard: list[list[tuple[int, str]]] = [[], []]
    for t, log in zip(tables, heard):
        t.listeners.append(lambda lease, what, log=log: log.append((lease.address, what)))
    offer: dict[str, object] = {"state": LeaseState.OFFERED, "scope": "s", "hw": hw(1), "client_id": b"\x01c",
                                "expiration": 130, "flags": LeaseFlag.NONE, "host_name": "h"}
    ack = {**offer, "state": LeaseState.LEASED, "expiration": 3700, "start": 100, "cltt": 100,
           "potential_expiration": 3700, "relay_info": b"\x01\x02ab", "vendor_class": b"v"}
    a, b = tables
    a.update(100, durable=False, **offer)
    b.bind(100, False, None, 0, LeaseState.OFFERED, "s", hw(1), b"\x01c", 130, LeaseFlag.NONE, "h")
    a.update(100, durable=True, event="ack", now=100, **ack)
    b.bind(100, True, "ack", 100, LeaseState.LEASED, "s", hw(1), b"\x01c", 3700, LeaseFlag.NONE, "h",
           start=100, cltt=100, potential_expiration=3700, relay_info=b"\x01\x02ab", vendor_class=b"v")
    assert a.leases == b.leases
    assert a.addresses_of(client_key(b"\x01c", hw(1))) == b.addresses_of(client_key(b"\x01c", hw(1))) == [100]
    assert a.pools["s"].address_counts() == b.pools["s"].address_counts()
    assert a.take_dirty() == b.take_dirty()
    assert heard[0] == heard[1] == [(100, "ack")]
    assert [lease.address for lease in b.expire(3700)] == [100]
