"""Load balancing between two in-process sessions (CNR 7.2 "Setting Load Balancing", RFC 3074).

In NORMAL each server answers only the clients whose RFC 3074 hash falls in
its buckets (ISC's meaning of the main's map: a set bit is the main's);
a client that names a server, or renews by unicast, is answered by that
server; a client that has waited longer than load-balance-max-seconds is
answered by either.  The main keeps each server's share of the free
addresses near half in both directions.
"""

from __future__ import annotations

import pytest

from cnrd.config import ConfigError, loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import RxInfo
from cnrd.failover import wire
from cnrd.failover.states import Role, S
from cnrd.leases.model import LeaseState, client_key
from tests.dhcp.helpers import mac, request, u32
from tests.failover.test_peer import T0, Link, Side

LB_CONFIG = """
[server]
name = {{name}}
interfaces = eth1
data-dir = /nonexistent

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.10-10.1.0.249

[failover-pair examplepair]
main = 10.1.0.1
backup = 10.1.0.2
mclt = 60
load-balancing = true
failover-poll-interval = 2
failover-poll-timeout = 6
{extra}
"""

MAIN_IP, BACKUP_IP = ip_to_int("10.1.0.1"), ip_to_int("10.1.0.2")
TO_MAIN = RxInfo(2, MAIN_IP, 0xFFFFFFFF, 0)
TO_BACKUP = RxInfo(2, BACKUP_IP, 0xFFFFFFFF, 0)


def balanced(extra: str = "", backup_extra: str | None = None):
    main = Side(Role.MAIN, T0, text=LB_CONFIG.format(extra=extra))
    backup = Side(Role.BACKUP, T0, text=LB_CONFIG.format(extra=extra if backup_extra is None else backup_extra))
    link = Link(main, backup, T0)
    link.connect()
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    return main, backup, link


def bucket(n: int) -> int:
    """The RFC 3074 bucket of test client ``n`` (no client-id: the key is chaddr)."""
    return wire.load_balance_hash(mac(n))


def clients(main_side: bool, count: int, split: int = 128) -> list[int]:
    """``count`` test clients whose bucket is the main's (below ``split``) or the backup's."""
    out = [n for n in range(1, 5000) if (bucket(n) < split) == main_side]
    return out[:count]


def held(side: Side, state: LeaseState) -> int:
    return sum(1 for lease in side.table.leases.values() if lease.state is state)


def test_each_server_offers_only_to_its_own_buckets():
    main, backup, link = balanced()
    answered = {"main": set(), "backup": set()}
    for n in range(1, 201):
        for name, side, rx in (("main", main, TO_MAIN), ("backup", backup, TO_BACKUP)):
            if side.server.handle(request(M.DISCOVER, mac(n)), rx, link.now) is not None:
                answered[name].add(n)
    assert answered["main"].isdisjoint(answered["backup"])
    assert answered["main"] | answered["backup"] == set(range(1, 201))
    assert answered["main"] == {n for n in range(1, 201) if bucket(n) < 128}
    assert backup.server.counters.drops["failover-load-balanced-to-partner"] == len(answered["main"])


def test_backup_offers_from_its_own_share():
    main, backup, link = balanced()
    n = clients(main_side=False, count=1)[0]
    offer = backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now)
    assert main.table.get(offer.packet.yiaddr).state is LeaseState.BACKUP


def test_the_split_is_half_of_the_free_addresses():
    main, backup, link = balanced()
    assert held(main, LeaseState.BACKUP) == held(backup, LeaseState.BACKUP) == 120


def test_a_client_that_waited_past_max_seconds_is_answered_by_either_server():
    main, backup, link = balanced()
    n = clients(main_side=True, count=1)[0]
    assert backup.server.handle(request(M.DISCOVER, mac(n), secs=3), TO_BACKUP, link.now) is None
    offer = backup.server.handle(request(M.DISCOVER, mac(n), secs=4), TO_BACKUP, link.now)
    assert offer is not None and main.table.get(offer.packet.yiaddr).state is LeaseState.BACKUP
    # the client takes this offer: a REQUEST naming the backup is the backup's to answer
    ack = backup.server.handle(request(M.REQUEST, mac(n), o50=u32(offer.packet.yiaddr), o54=u32(BACKUP_IP)),
                               TO_BACKUP, link.now)
    assert ack is not None and ack.packet.options[53] == bytes([M.ACK])
    link.settle()
    assert main.table.get(offer.packet.yiaddr).state is LeaseState.LEASED


def test_max_seconds_zero_turns_the_rule_off():
    main, backup, link = balanced("load-balance-max-seconds = 0")
    n = clients(main_side=True, count=1)[0]
    assert backup.server.handle(request(M.DISCOVER, mac(n), secs=60), TO_BACKUP, link.now) is None


def test_broadcast_requests_of_bound_clients_go_by_hash_renewals_to_the_server_asked():
    main, backup, link = balanced()
    n = clients(main_side=True, count=1)[0]
    offer = main.server.handle(request(M.DISCOVER, mac(n)), TO_MAIN, link.now)
    yi = offer.packet.yiaddr
    main.server.handle(request(M.REQUEST, mac(n), o50=u32(yi), o54=u32(MAIN_IP)), TO_MAIN, link.now)
    link.settle()
    assert backup.table.get(yi).state is LeaseState.LEASED
    # INIT-REBOOT (broadcast, no server-id): the main's client, so not the backup's
    init_reboot = request(M.REQUEST, mac(n), o50=u32(yi))
    assert backup.server.handle(init_reboot, TO_BACKUP, link.now) is None
    assert main.server.handle(init_reboot, TO_MAIN, link.now) is not None
    # REBINDING (broadcast, ciaddr set): by hash too
    rebinding = request(M.REQUEST, mac(n), ciaddr=yi)
    assert backup.server.handle(rebinding, RxInfo(2, BACKUP_IP, 0xFFFFFFFF, yi), link.now) is None
    # RENEWING (unicast to the backup): the server asked answers
    renew = backup.server.handle(rebinding, RxInfo(2, BACKUP_IP, BACKUP_IP, yi), link.now)
    assert renew is not None and renew.packet.options[53] == bytes([M.ACK])


def test_outside_normal_no_balancing():
    main, backup, link = balanced()
    link.drop()
    assert backup.session.state is S.COMMUNICATIONS_INTERRUPTED
    n = clients(main_side=True, count=1)[0]
    offer = backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now)
    assert offer is not None and backup.table.get(offer.packet.yiaddr).state is LeaseState.OFFERED


def test_main_takes_addresses_back_when_the_backup_holds_more_than_half():
    main, backup, link = balanced()
    for n in clients(main_side=True, count=100):
        offer = main.server.handle(request(M.DISCOVER, mac(n)), TO_MAIN, link.now)
        main.server.handle(request(M.REQUEST, mac(n), o50=u32(offer.packet.yiaddr), o54=u32(MAIN_IP)),
                           TO_MAIN, link.now)
    link.settle()
    assert held(main, LeaseState.BACKUP) == 120  # 120 of 140 still available: above half
    link.advance(61)
    assert held(main, LeaseState.BACKUP) == held(backup, LeaseState.BACKUP) == 70
    assert main.table.pools["lan"].free_count() == backup.table.pools["lan"].free_count() == 70
    assert held(main, LeaseState.AVAILABLE) == held(backup, LeaseState.AVAILABLE) == 50  # the ones given back
    assert any(e == "failover-pool-reclaim" for e, _ in main.log)


def test_a_reclaimed_address_the_backup_already_leased_stays_leased_on_both():
    main, backup, link = balanced()
    n = clients(main_side=False, count=1)[0]
    offer = backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now)
    yi = offer.packet.yiaddr
    backup.server.handle(request(M.REQUEST, mac(n), o50=u32(yi), o54=u32(BACKUP_IP)), TO_BACKUP, link.now)
    # the main asks for it back before the backup's update reached it
    main.session.exchange.reclaim([yi])
    main.session.pump(link.now)
    link.settle()
    for side in (main, backup):
        lease = side.table.get(yi)
        assert lease.state is LeaseState.LEASED and lease.key == client_key(None, b"\x01" + mac(n))
    assert yi not in main.session.exchange.reclaiming
    # and the main never offers it meanwhile
    other = clients(main_side=True, count=1)[0]
    assert main.server.handle(request(M.DISCOVER, mac(other)), TO_MAIN, link.now).packet.yiaddr != yi


def test_an_address_being_reclaimed_is_not_the_mains_until_the_backup_agrees():
    main, backup, link = balanced()
    address = next(a for a, lease in main.table.leases.items() if lease.state is LeaseState.BACKUP)
    link.up = False  # messages stay unsent: no acknowledgement yet
    main.session.exchange.reclaim([address])
    main.session.pump(link.now)
    assert main.table.get(address).state is LeaseState.BACKUP
    link.up = True
    link.connect()
    assert main.table.get(address).state is LeaseState.BACKUP  # the link dropped: the reclaim was forgotten


def test_backup_offer_not_taken_returns_to_the_backup_share():
    main, backup, link = balanced()
    n = clients(main_side=False, count=1)[0]
    offer = backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now)
    yi = offer.packet.yiaddr
    assert backup.table.get(yi).state is LeaseState.OFFERED
    backup.table.expire(link.now + 3600)
    assert backup.table.get(yi).state is LeaseState.BACKUP
    # the same when the client picks another server's offer
    offer = backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now)
    yi = offer.packet.yiaddr
    elsewhere = ip_to_int("10.1.0.3")
    backup.server.handle(request(M.REQUEST, mac(n), o50=u32(yi), o54=u32(elsewhere)), TO_BACKUP, link.now)
    assert backup.table.get(yi).state is LeaseState.BACKUP


def test_split_and_hba_set_the_mains_map_in_connect():
    main, backup, link = balanced("split = 100")
    connect = next(m for m in main.wire_log if m.type == wire.MessageType.CONNECT)
    assert connect.hba == wire.hba_from_split(100)
    n = next(n for n in range(1, 5000) if 100 <= bucket(n) < 128)
    assert main.server.handle(request(M.DISCOVER, mac(n)), TO_MAIN, link.now) is None
    assert backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now) is not None
    hba = bytes([0xAA] * 32)
    main, backup, link = balanced(f"hba = {hba.hex()}")
    assert next(m for m in main.wire_log if m.type == wire.MessageType.CONNECT).hba == hba


def test_without_load_balancing_connect_gives_the_main_every_bucket():
    main = Side(Role.MAIN, T0)
    backup = Side(Role.BACKUP, T0)
    Link(main, backup, T0).connect()
    assert next(m for m in main.wire_log if m.type == wire.MessageType.CONNECT).hba == bytes([0xFF] * 32)


def test_backup_with_a_different_split_logs_the_mismatch_and_follows_the_main():
    main, backup, link = balanced("split = 64", backup_extra="split = 200")
    assert any(e == "failover-hba-mismatch" for e, _ in backup.log)
    n = next(n for n in range(1, 5000) if 64 <= bucket(n) < 200)
    assert backup.server.handle(request(M.DISCOVER, mac(n)), TO_BACKUP, link.now) is not None


@pytest.mark.parametrize("extra, key", [
    ("split = 257", "split"),
    ("split = 10\nhba = " + "ff" * 32, "hba"),
    ("hba = " + "ff" * 31, "hba"),
    ("load-balance-max-seconds = -1", "load-balance-max-seconds"),
])
def test_bad_balancing_keys_are_refused_naming_the_key(extra, key):
    with pytest.raises(ConfigError) as e:
        loads(LB_CONFIG.format(extra=extra).format(name="x"))
    assert e.value.key == key
