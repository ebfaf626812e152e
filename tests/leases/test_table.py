"""The in-memory lease table and allocator."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cnrd.config import Range
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.table import LeaseTable, Pool


def table(first_available=False, size=10):
    t = LeaseTable()
    t.add_pool(Pool("s", [Range(100, 100 + size - 1)], first_available))
    return t


def take(t, key, now=0):
    a = t.allocate("s", key)
    if a is not None:
        t.update(a, durable=True, state=LeaseState.LEASED, scope="s", hw=key, expiration=now + 100)
    return a


def test_fresh_addresses_first_then_lru():
    t = table()
    got = [take(t, bytes([i])) for i in range(3)]
    assert got == [100, 101, 102]
    t.update(101, durable=True, state=LeaseState.RELEASED)
    t.update(100, durable=True, state=LeaseState.RELEASED)
    # Never-used addresses come before freed ones; then the one freed first.
    rest = [take(t, bytes([10 + i])) for i in range(9)]
    assert rest[:7] == list(range(103, 110))
    assert rest[7:] == [101, 100]
    assert take(t, b"x") is None


def test_first_available_takes_lowest():
    t = table(first_available=True)
    for i in range(5):
        take(t, bytes([i]))
    t.update(103, durable=True, state=LeaseState.EXPIRED)
    t.update(101, durable=True, state=LeaseState.RELEASED)
    assert take(t, b"a") == 101
    assert take(t, b"b") == 103
    assert take(t, b"c") == 105


def test_reserved_addresses_are_never_allocated():
    t = table(size=3)
    t.reserve(101, b"owner")
    assert [take(t, bytes([i])) for i in range(3)] == [100, 102, None]
    assert t.is_available(101, b"owner") and not t.is_available(101, b"other")


def test_load_rebuilds_pools():
    t = table(size=4)
    t.load([Lease(100, LeaseState.LEASED, "s", b"\x01a", expiration=50),
            Lease(102, LeaseState.RELEASED, "s", b"\x01b")], now=0)
    got = [take(t, bytes([i])) for i in range(3)]
    assert got == [101, 103, 102]
    assert t.pools["s"].free_count() == 0


def test_mark_durable_queues_the_record_as_it_is_and_nothing_else():
    t = table()
    a = take(t, b"\x01a", now=0)
    t.take_dirty()
    def due_now():
        return {when: list(v) if not isinstance(v, int) else v for when, v in t._due.items()}

    due = due_now()
    lease = t.get(a)
    lease.partner_time = 500  # set in place, as a BNDACK does
    assert t.mark_durable(a)
    leases, events = t.take_dirty()
    assert [(l.address, l.partner_time) for l in leases] == [(a, 500)] and events == []
    # No second expiry entry for an expiration that did not change.
    assert due_now() == due
    assert not t.mark_durable(109)  # no record: nothing to write
    assert not t.has_dirty


def test_expiry_heap_ignores_superseded_times():
    t = table()
    a = take(t, b"k", now=0)  # expires at 100
    t.update(a, durable=True, expiration=500)  # renewed
    assert t.expire(100) == []
    assert [l.address for l in t.expire(500)] == [a]
    assert t.get(a).state is LeaseState.EXPIRED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "release", "expire"]), st.integers(0, 15)), max_size=80),
       st.booleans())
def test_no_address_given_twice(ops, first_available):
    t = table(first_available=first_available, size=8)
    now = 0
    for op, n in ops:
        key = bytes([n])
        if op == "take":
            if not any(l.state is LeaseState.LEASED for l in t.of_client(key)):
                take(t, key, now)
        elif op == "release":
            for l in t.of_client(key):
                if l.state is LeaseState.LEASED:
                    t.update(l.address, durable=True, state=LeaseState.RELEASED)
        else:
            now += 60
            t.expire(now)
        holders = {}
        for l in t.leases.values():
            if l.state is LeaseState.LEASED:
                assert l.address not in holders
                holders[l.address] = l.key
        free = t.pools["s"].free_count()
        assert free + len(holders) == 8


def test_client_index_holds_several_addresses():
    t = LeaseTable()
    t.add_pool(Pool("a", [Range(100, 109)], False))
    t.add_pool(Pool("b", [Range(200, 209)], False))
    t.update(100, durable=True, state=LeaseState.LEASED, scope="a", hw=b"\x01k")
    t.update(200, durable=True, state=LeaseState.LEASED, scope="b", hw=b"\x01k")
    assert sorted(l.address for l in t.of_client(b"\x00\x01k")) == [100, 200]
    t.update(100, durable=True, state=LeaseState.AVAILABLE, hw=b"")
    assert t.addresses_of(b"\x00\x01k") == [200]
    t.update(200, durable=True, hw=b"\x01z")
    assert t.addresses_of(b"\x00\x01k") == [] and t.addresses_of(b"\x00\x01z") == [200]


def test_lru_candidates_skipped_stay_in_order():
    t = table(size=4)
    for i in range(4):
        take(t, bytes([i]))
    for a in (102, 100, 103):
        t.update(a, durable=True, state=LeaseState.RELEASED)
    # a veto leaves the order alone: the next allocation still sees 102 first
    assert t.allocate("s", b"x", accept=lambda a: a != 102) == 100
    assert t.allocate("s", b"x") == 102


# -- the main's picks for the backup (CNR 7.2, "Setting Backup Allocation Boundaries") --


def give_backup(t, n):
    """Take ``n`` addresses in for_backup order into state BACKUP, as the main's split does."""
    out = []
    for address in t.for_backup("s"):
        t.update(address, durable=True, state=LeaseState.BACKUP, scope="s")
        out.append(address)
        if len(out) == n:
            break
    return out


def test_backup_share_comes_from_just_below_the_midpoint_downward():
    t = table(first_available=True, size=20)  # 100..119: halfway is 110, the lower half is 100..109
    assert t.pools["s"].boundary() == 110
    assert give_backup(t, 3) == [109, 108, 107]
    # Clients still work up from the lowest address.
    assert [take(t, bytes([i])) for i in range(3)] == [100, 101, 102]


def test_midpoint_of_an_odd_count_is_the_middle_address_and_it_is_not_below():
    t = table(first_available=True, size=21)  # 100..120: the middle address is 110
    assert t.pools["s"].boundary() == 110
    assert give_backup(t, 1) == [109]


def test_midpoint_spans_every_range_of_the_scope():
    t = LeaseTable()
    t.add_pool(Pool("s", [Range(200, 209), Range(100, 109)], True))
    assert t.pools["s"].boundary() == 155
    assert give_backup(t, 2) == [109, 108]


def test_configured_boundary_and_the_fallback_above_it_when_none_is_left_below():
    t = table(first_available=True, size=20)
    t.pools["s"].backup_boundary = 103
    assert give_backup(t, 2) == [102, 101]
    take(t, b"a")  # 100, the only address left below the boundary
    # None below: the first available address, working up.
    assert give_backup(t, 3) == [103, 104, 105]


def test_backup_picks_skip_reserved_and_taken_addresses():
    t = table(first_available=True, size=20)
    t.reserve(109, b"r")
    t.update(108, durable=True, state=LeaseState.LEASED, scope="s", hw=b"c", expiration=10**6)
    assert give_backup(t, 2) == [107, 106]


def test_failover_pool_skips_expired_addresses_for_the_backup():
    t = table(first_available=True, size=20)
    t.pools["s"].failover = True
    t.update(109, durable=True, state=LeaseState.EXPIRED, scope="s", hw=b"c")
    assert give_backup(t, 1) == [108]


def test_lru_pool_gives_the_backup_what_clients_would_get_next():
    t = table(size=20)
    t.pools["s"].backup_boundary = 110  # only ordered by first-available; LRU ignores it
    assert give_backup(t, 2) == [100, 101]
    assert take(t, b"a") == 102
