"""The client registry (LDAP entries) in the DHCP core: cache, waits, classes, reserved addresses."""

from __future__ import annotations

from dataclasses import replace

from cnrd.config import ClientConfig, loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.registry import ClientRegistry, Outcome, RegistryHealth
from cnrd.dhcp.server import DhcpServer, RxInfo
from cnrd.leases.model import client_key
from cnrd.leases.table import LeaseTable

from tests.dhcp.helpers import BASE_CONFIG, BCAST, IFACE, SERVER_IP, mac, request

LDAP = """
[policy gold]
lease-time = 600
option.routers = 10.1.0.254
option.domain-name = gold.example

[client-class gold]
policy = gold

[client-class vendor-x]
policy = gold

[ldap dir]
hostname = 127.0.0.1
search-path = ou=clients,dc=cnrd,dc=test
query-dictionary = description=client-class, cn=host-name, ipHostNumber=reserved-address
"""


def entry(n: int, **kw: object) -> ClientConfig:
    return ClientConfig(hardware_address=mac(n), **kw)  # type: ignore[arg-type]


def server_with(extra: str = "", **server_keys: object) -> DhcpServer:
    config = loads(BASE_CONFIG + LDAP + extra)
    if server_keys:
        config = replace(config, server=replace(config.server, **server_keys))
    s = DhcpServer(config, LeaseTable())
    s.set_interfaces([IFACE])
    return s


def lid(n: int) -> str:
    return mac(n).hex(":")


# -- the pure cache ----------------------------------------------------------------
def test_one_lookup_for_however_many_requests_wait_and_all_return_with_the_answer():
    r: ClientRegistry[str] = ClientRegistry(ttl=10, count=100)
    assert r.get("a", 0)[0] is Outcome.WAIT
    r.park("a", "first")
    r.park("a", "retransmission")
    r.park("b", "other")
    assert r.take_wanted() == ["a", "b"]
    assert r.take_wanted() == []
    assert r.waiting == 3
    assert r.answered("a", entry(1), 0) == ["first", "retransmission"]
    assert r.get("a", 5) == (Outcome.FOUND, entry(1))
    assert r.waiting == 1


def test_an_answer_is_used_until_its_ttl_then_asked_again():
    r: ClientRegistry[str] = ClientRegistry(ttl=10, count=100)
    r.answered("a", None, 100)
    assert r.get("a", 109)[0] is Outcome.ABSENT
    assert r.get("a", 110)[0] is Outcome.WAIT


def test_with_ttl_0_the_answer_still_serves_the_requests_that_waited_for_it():
    r: ClientRegistry[str] = ClientRegistry(ttl=0, count=100)
    r.park("a", "x")
    r.answered("a", entry(1), 50)
    assert r.get("a", 50) == (Outcome.FOUND, entry(1))
    assert r.get("a", 51)[0] is Outcome.WAIT


def test_a_failed_lookup_serves_the_stale_entry_and_is_not_asked_again_at_once():
    r: ClientRegistry[str] = ClientRegistry(ttl=10, count=100)
    r.answered("a", entry(1), 0)
    r.park("a", "x")
    assert r.failed("a", 20) == ["x"]
    assert r.get("a", 20) == (Outcome.FOUND, entry(1))
    assert r.stats["stale"] == 1
    assert r.get("a", 29)[0] is Outcome.FOUND
    assert r.get("a", 30)[0] is Outcome.WAIT  # asked again once the failure is ttl old


def test_a_failed_lookup_without_cached_entry_is_failed():
    r: ClientRegistry[str] = ClientRegistry(ttl=10, count=100)
    r.failed("a", 0)
    assert r.get("a", 0) == (Outcome.FAILED, None)


def test_the_cache_keeps_the_most_recently_used_entries():
    r: ClientRegistry[str] = ClientRegistry(ttl=100, count=2)
    r.answered("a", None, 0)
    r.answered("b", None, 0)
    r.get("a", 1)
    r.answered("c", None, 1)
    assert len(r) == 2
    assert r.get("b", 2)[0] is Outcome.WAIT
    assert r.get("a", 2)[0] is Outcome.ABSENT


def test_health_reports_each_outage_once():
    h = RegistryHealth()
    assert h.changed(False, "connection refused", 1)  # the first failure to connect is news
    assert not h.changed(False, "connection refused again", 2)
    assert h.reason == "connection refused again" and h.since == 1
    assert h.changed(True, "dir", 3)
    assert not h.changed(True, "dir", 4)
    assert h.changed(False, "lost", 5) and h.episodes == 1


def test_health_histogram_counts_each_lookup_in_one_bucket():
    h = RegistryHealth()
    h.observe(0.0004)
    h.observe(0.03)
    h.observe(99)
    assert sum(h.buckets) == 2 and h.count == 3


# -- the core ----------------------------------------------------------------------
def test_a_new_client_waits_for_its_entry_then_gets_its_class_policy():
    s = server_with()
    assert s.handle(request(M.DISCOVER, mac(1)), BCAST, 100) is None
    assert s.registry is not None and s.registry.take_wanted() == [lid(1)]
    assert s.counters.sent["OFFER"] == 0
    (p, rx), = s.registry.answered(lid(1), entry(1, client_class="gold"), 100)
    reply = s.handle(p, rx, 100)
    assert reply is not None and reply.packet.message_type == M.OFFER
    assert reply.packet.options[15] == b"gold.example"
    assert reply.packet.options[3] == bytes([10, 1, 0, 254])


def test_a_client_without_entry_gets_the_default_policy():
    s = server_with()
    s.handle(request(M.DISCOVER, mac(2)), BCAST, 100)
    assert s.registry is not None
    (p, rx), = s.registry.answered(lid(2), None, 100)
    reply = s.handle(p, rx, 100)
    assert reply is not None and reply.packet.options[3] == bytes([10, 1, 0, 1])


def test_a_local_client_section_wins_and_needs_no_lookup():
    s = server_with("\n[client 02:00:00:00:00:03]\nclient-class = gold\n")
    reply = s.handle(request(M.DISCOVER, mac(3)), BCAST, 100)
    assert reply is not None and reply.packet.options[15] == b"gold.example"
    assert s.registry is not None and s.registry.take_wanted() == []


def test_an_entry_excluding_the_client_drops_it():
    s = server_with()
    s.handle(request(M.DISCOVER, mac(4)), BCAST, 100)
    assert s.registry is not None
    (p, rx), = s.registry.answered(lid(4), entry(4, action="exclude"), 100)
    assert s.handle(p, rx, 100) is None
    assert s.counters.drops["client-excluded"] == 1


def test_a_reserved_address_from_the_entry_is_offered_and_held_from_others():
    s = server_with()
    want = ip_to_int("10.1.0.105")
    assert s.registry is not None
    s.registry.answered(lid(5), entry(5, reserved_address=want), 100)
    reply = s.handle(request(M.DISCOVER, mac(5)), BCAST, 100)
    assert reply is not None and reply.packet.yiaddr == want
    for n in range(20, 29):  # every other client gets another address
        s.registry.answered(lid(n), None, 100)
        other = s.handle(request(M.DISCOVER, mac(n)), BCAST, 100)
        assert other is None or other.packet.yiaddr != want


def test_an_entry_whose_reserved_address_changes_moves_the_reservation():
    s = server_with()
    first, second = ip_to_int("10.1.0.105"), ip_to_int("10.1.0.106")
    assert s.registry is not None
    s.registry.answered(lid(6), entry(6, reserved_address=first), 100)
    s.handle(request(M.DISCOVER, mac(6)), BCAST, 100)
    assert first in s.table.reserved
    s.registry.answered(lid(6), entry(6, reserved_address=second), 200)
    reply = s.handle(request(M.DISCOVER, mac(6)), BCAST, 200)
    assert reply is not None and reply.packet.yiaddr == second
    assert first not in s.table.reserved


def test_a_reserved_address_another_reservation_holds_is_not_taken():
    s = server_with()
    held = ip_to_int("10.1.0.50")  # BASE_CONFIG reserves it for 02:00:00:00:00:50
    assert s.registry is not None
    s.registry.answered(lid(7), entry(7, reserved_address=held), 100)
    reply = s.handle(request(M.DISCOVER, mac(7)), BCAST, 100)
    assert reply is None or reply.packet.yiaddr != held
    assert s.ldap_reserved == {}
    assert s.table.reserved[held] == client_key(None, b"\x01" + bytes.fromhex("020000000050"))


def test_a_reserved_address_outside_the_ranges_but_in_the_subnet_is_offered_like_a_reservation_section():
    s = server_with()
    want = ip_to_int("10.1.0.20")  # in 10.1.0.0/24, outside 10.1.0.100-109
    assert s.registry is not None
    s.registry.answered(lid(13), entry(13, reserved_address=want), 100)
    reply = s.handle(request(M.DISCOVER, mac(13)), BCAST, 100)
    assert reply is not None and reply.packet.yiaddr == want


def test_a_reserved_address_outside_every_subnet_is_not_used():
    s = server_with()
    assert s.registry is not None
    s.registry.answered(lid(14), entry(14, reserved_address=ip_to_int("192.0.2.7")), 100)
    reply = s.handle(request(M.DISCOVER, mac(14)), BCAST, 100)
    assert reply is not None and reply.packet.yiaddr != ip_to_int("192.0.2.7")
    assert s.ldap_reserved == {}


def test_failed_lookup_answers_as_default_or_drops_as_configured():
    s = server_with()
    s.handle(request(M.DISCOVER, mac(8)), BCAST, 100)
    assert s.registry is not None
    (p, rx), = s.registry.failed(lid(8), 100)
    assert s.handle(p, rx, 100) is not None
    d = server_with(client_lookup_failure="drop")
    d.handle(request(M.DISCOVER, mac(8)), BCAST, 100)
    assert d.registry is not None
    (p, rx), = d.registry.failed(lid(8), 100)
    assert d.handle(p, rx, 100) is None
    assert d.counters.drops["client-lookup-failed"] == 1


def test_lookup_by_client_id():
    s = server_with(client_lookup_id="client-id")
    s.handle(request(M.DISCOVER, mac(9), o61=b"\x01host-9"), BCAST, 100)
    assert s.registry is not None and s.registry.take_wanted() == [b"\x01host-9".hex(":")]


def test_client_class_lookup_id_takes_the_class_from_an_option():
    s = server_with(client_class_lookup_id=("option", 60))
    assert s.registry is not None
    s.registry.answered(lid(10), None, 100)
    reply = s.handle(request(M.DISCOVER, mac(10), o60=b"vendor-x"), BCAST, 100)
    assert reply is not None and reply.packet.options[15] == b"gold.example"


def test_client_class_lookup_id_from_a_relay_agent_suboption():
    config = loads(BASE_CONFIG + LDAP.split("[ldap dir]")[0])
    config = replace(config, server=replace(config.server, client_class_lookup_id=("relay-agent", 2)))
    s = DhcpServer(config, LeaseTable())
    s.set_interfaces([IFACE])
    relay = ip_to_int("10.1.0.254")
    relayed = request(M.DISCOVER, mac(11), giaddr=relay, o82=b"\x01\x02ab\x02\x04gold")
    reply = s.handle(relayed, RxInfo(2, SERVER_IP, SERVER_IP, relay, 67), 100)
    assert reply is not None and reply.packet.options[15] == b"gold.example"


def test_client_class_off_ignores_clients_classes_and_the_registry():
    text = BASE_CONFIG.replace("data-dir = /nonexistent", "data-dir = /nonexistent\nclient-class = false")
    config = loads(text + "\n[policy gold]\noption.domain-name = gold.example\n"
                   "[client-class gold]\npolicy = gold\n[client 02:00:00:00:00:0c]\nclient-class = gold\n")
    s = DhcpServer(config, LeaseTable())
    s.set_interfaces([IFACE])
    reply = s.handle(request(M.DISCOVER, mac(12)), BCAST, 100)
    assert reply is not None and 15 not in reply.packet.options
    assert s.registry is None
