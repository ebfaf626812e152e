"""The lease table's expiry heap: grace periods, and asking whether anything is due.

CNR's grace-period: once a lease has run out, its address stays with its
client for that long before another client may have it.  The table keeps an
expired lease its client's (state EXPIRED, allocatable only to that client)
until then, in both allocation modes, across a reload that changes the
grace period and across a restart (``load``).
"""

from __future__ import annotations

import pytest

from cnrd.config import Range
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.table import LeaseTable, Pool

CLIENT = b"\x00\x01\x02\x00\x00\x00\x00\x01"
OTHER = b"\x00\x01\x02\x00\x00\x00\x00\x02"


def one_address(grace: int, first_available: bool = False) -> LeaseTable:
    t = LeaseTable()
    pool = Pool("s", [Range(100, 100)], first_available)
    pool.grace = grace
    t.add_pool(pool)
    return t


def lease(t: LeaseTable, expiration: int) -> None:
    a = t.allocate("s", CLIENT)
    assert a == 100
    t.update(a, durable=True, state=LeaseState.LEASED, scope="s", hw=CLIENT[1:], expiration=expiration)


@pytest.mark.parametrize("first_available", [False, True])
def test_expired_lease_is_its_clients_during_grace_then_anyones(first_available):
    t = one_address(grace=10, first_available=first_available)
    lease(t, 50)
    assert not t.due(49) and t.due(50)
    assert [l.address for l in t.expire(50)] == [100]
    assert t.get(100).state is LeaseState.EXPIRED
    assert t.allocate("s", OTHER) is None
    assert not t.is_available(100, OTHER)
    assert t.is_available(100, CLIENT)
    assert t.due(60) and not t.due(59)
    assert t.expire(59) == []
    assert t.allocate("s", OTHER) is None
    t.expire(60)
    assert t.allocate("s", OTHER) == 100
    assert t.is_available(100, OTHER)


def test_grace_zero_frees_at_the_expiration():
    t = one_address(grace=0)
    lease(t, 50)
    t.expire(50)
    assert t.allocate("s", OTHER) == 100


def test_client_back_during_grace_ends_the_hold():
    t = one_address(grace=10)
    lease(t, 50)
    t.expire(50)
    t.update(100, durable=True, state=LeaseState.LEASED, expiration=200)
    t.expire(60)  # the grace entry: the lease is LEASED again, nothing moves
    assert t.get(100).state is LeaseState.LEASED
    assert t.allocate("s", OTHER) is None
    t.expire(200)
    assert t.get(100).state is LeaseState.EXPIRED
    assert t.allocate("s", OTHER) is None  # a fresh grace period from 200


def test_a_longer_grace_after_a_reload_is_honoured():
    t = one_address(grace=10)
    lease(t, 50)
    t.expire(50)
    t.pools["s"].grace = 30  # a reload changed the policy
    t.expire(60)
    assert t.allocate("s", OTHER) is None
    t.expire(80)
    assert t.allocate("s", OTHER) == 100


def test_restart_keeps_an_expired_lease_in_grace():
    t = one_address(grace=10)
    lease(t, 50)
    t.expire(50)
    stored = [Lease.unpack(l.pack()) for l in t.leases.values()]
    again = one_address(grace=10)
    again.load(stored, 55)
    assert again.allocate("s", OTHER) is None
    assert again.due(60)
    again.expire(60)
    assert again.allocate("s", OTHER) == 100


def test_failover_pool_needs_the_partner_even_after_grace():
    t = one_address(grace=0)
    t.pools["s"].failover = True
    lease(t, 50)
    t.expire(50)
    assert t.allocate("s", OTHER) is None
    t.update(100, durable=True, from_partner=True, state=LeaseState.AVAILABLE)  # the partner's ack
    assert t.allocate("s", OTHER) == 100


def test_bootp_lease_without_expiry_never_comes_due():
    t = one_address(grace=0)
    a = t.allocate("s", CLIENT)
    t.update(a, durable=True, state=LeaseState.LEASED, scope="s", hw=CLIENT[1:], expiration=Lease.INFINITE)
    assert not t.due(Lease.INFINITE - 1)
    assert t.expire(2_000_000_000) == []
    assert t.get(100).state is LeaseState.LEASED
