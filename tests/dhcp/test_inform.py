"""DHCPINFORM (RFC 2131 §4.3.5): configuration for a client that has its address already.

The server answers with a DHCPACK carrying the options, without yiaddr and
without lease-time options, to ciaddr (or through the relay to giaddr), and
never allocates, checks or changes a lease.
"""

from __future__ import annotations

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import DhcpServer, RxInfo

from tests.dhcp.helpers import BASE_CONFIG, BCAST, SERVER_IP, make_server, mac, request, u32

NOW = 1_000_000
HAND = ip_to_int("10.1.0.30")  # configured by hand, outside the ranges
UNICAST = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=HAND)


def _snapshot(s: DhcpServer) -> dict[int, object]:
    return dict(s.table.leases)


def test_inform_is_acked_to_ciaddr_without_lease_options() -> None:
    s, _ = make_server()
    before = _snapshot(s)
    r = s.handle(request(M.INFORM, mac(1), ciaddr=HAND, o55=bytes([1, 3, 6, 51, 58, 59])), UNICAST, NOW)
    assert r is not None and r.packet.message_type == M.ACK
    assert r.packet.yiaddr == 0 and r.packet.ciaddr == HAND
    assert not {51, 58, 59} & set(r.packet.options)
    assert r.packet.options[3] == u32(ip_to_int("10.1.0.1"))  # the scope's options are there
    assert r.packet.options[54] == u32(SERVER_IP)
    assert r.dst_ip == HAND and r.dst_port == 68 and not r.hw_unicast
    assert _snapshot(s) == before and s.table.take_dirty() == ([], [])


def test_broadcast_inform_still_goes_to_ciaddr() -> None:
    s, _ = make_server()
    r = s.handle(request(M.INFORM, mac(1), ciaddr=HAND, flags=0x8000), BCAST, NOW)
    assert r is not None and r.dst_ip == HAND


def test_relayed_inform_goes_to_giaddr() -> None:
    text = BASE_CONFIG + "\n[scope far]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.20\npolicy = default\n"
    s, _ = make_server(text)
    giaddr = ip_to_int("10.2.0.1")
    ci = ip_to_int("10.2.0.77")
    relayed = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=giaddr, src_port=67)
    r = s.handle(request(M.INFORM, mac(1), ciaddr=ci, giaddr=giaddr), relayed, NOW)
    assert r is not None and r.packet.message_type == M.ACK
    assert r.dst_ip == giaddr and r.dst_port == 67
    assert r.packet.ciaddr == ci and r.packet.yiaddr == 0 and 51 not in r.packet.options
    assert not s.table.leases


def test_inform_without_ciaddr_is_dropped_and_counted() -> None:
    s, _ = make_server()
    assert s.handle(request(M.INFORM, mac(1)), BCAST, NOW) is None
    assert s.counters.drops["inform-without-ciaddr"] == 1
    assert s.counters.sent["ACK"] == 0
    assert not s.table.leases


def test_inform_from_a_leased_address_changes_nothing() -> None:
    s, _ = make_server()
    offer = s.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    assert offer is not None
    yi = offer.packet.yiaddr
    ack = s.handle(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(SERVER_IP)), BCAST, NOW)
    assert ack is not None and ack.packet.message_type == M.ACK
    s.table.take_dirty()
    before = _snapshot(s)
    lease_before = s.table.get(yi)
    # The lease's own client, then another client claiming the same address.
    for hw in (mac(1), mac(2)):
        r = s.handle(request(M.INFORM, hw, ciaddr=yi), RxInfo(2, SERVER_IP, SERVER_IP, yi), NOW + 500)
        assert r is not None and r.packet.message_type == M.ACK and 51 not in r.packet.options
    assert s.table.get(yi) == lease_before
    assert _snapshot(s) == before and s.table.take_dirty() == ([], [])


def test_inform_for_an_address_in_the_range_allocates_nothing() -> None:
    s, _ = make_server()
    inrange = ip_to_int("10.1.0.100")
    r = s.handle(request(M.INFORM, mac(3), ciaddr=inrange), RxInfo(2, SERVER_IP, SERVER_IP, inrange), NOW)
    assert r is not None and r.packet.yiaddr == 0
    assert s.table.get(inrange) is None or s.table.get(inrange).hw != b"\x01" + mac(3)
    # The address is still the first one a new client is offered.
    offer = s.handle(request(M.DISCOVER, mac(4)), BCAST, NOW)
    assert offer is not None and offer.packet.yiaddr == inrange
