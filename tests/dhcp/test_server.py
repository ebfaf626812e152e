"""RFC 2131 §4.3 behaviour of the pure server core."""

from __future__ import annotations

from dataclasses import replace

import struct

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int, parse
from cnrd.dhcp.server import BROADCAST, RxInfo
from cnrd.leases.model import LeaseState

from tests.dhcp.helpers import BASE_CONFIG, BCAST, SERVER_IP, mac, make_server, request, u32

NOW = 1_000_000
A100 = ip_to_int("10.1.0.100")


def dora(server, hw, now=NOW, **opts):
    offer = server.handle(request(M.DISCOVER, hw, **opts), BCAST, now)
    assert offer is not None and offer.packet.message_type == M.OFFER
    yi = offer.packet.yiaddr
    ack = server.handle(request(M.REQUEST, hw, o50=u32(yi), o54=u32(SERVER_IP)), BCAST, now)
    return offer, ack


def test_discover_offers_free_address_with_options():
    server, _ = make_server()
    offer = server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    p = offer.packet
    assert p.message_type == M.OFFER
    assert p.yiaddr == A100
    assert p.options[54] == u32(SERVER_IP)
    assert p.options[51] == u32(3600)
    assert p.options[58] == u32(1800) and p.options[59] == u32(3150)
    assert p.options[1] == u32(0xFFFFFF00)
    assert p.options[3] == bytes([10, 1, 0, 1])
    assert p.options[6] == bytes([10, 1, 0, 1, 10, 1, 0, 2])
    assert not offer.durable
    # Non-broadcast client without an address: unicast to chaddr (RFC 2131 §4.1).
    assert offer.hw_unicast and offer.dst_ip == A100 and offer.ifindex == 2
    # The reply parses back.
    assert parse(p.serialize()).yiaddr == A100


def test_broadcast_flag_gives_broadcast_reply():
    server, _ = make_server()
    offer = server.handle(request(M.DISCOVER, mac(1), flags=0x8000), BCAST, NOW)
    assert offer.dst_ip == BROADCAST and not offer.hw_unicast and offer.ifindex == 2


def test_full_dora_is_durable_and_recorded():
    server, _ = make_server()
    offer, ack = dora(server, mac(1))
    assert ack.packet.message_type == M.ACK and ack.packet.yiaddr == offer.packet.yiaddr
    assert ack.durable
    lease = server.table.get(ack.packet.yiaddr)
    assert lease.state is LeaseState.LEASED
    assert lease.expiration == NOW + 3600 and lease.cltt == NOW
    leases, events = server.table.take_dirty()
    assert [l.address for l in leases] == [ack.packet.yiaddr]
    assert [e.what for e in events] == ["ack"]


def test_requested_address_is_honoured_when_free():
    server, _ = make_server()
    want = ip_to_int("10.1.0.105")
    offer = server.handle(request(M.DISCOVER, mac(1), o50=u32(want)), BCAST, NOW)
    assert offer.packet.yiaddr == want


def test_previous_binding_preferred():
    server, _ = make_server()
    _, ack = dora(server, mac(1))
    first = ack.packet.yiaddr
    dora(server, mac(2))
    # Released, and later the same client comes back: it gets its old address.
    server.handle(request(M.RELEASE, mac(1), ciaddr=first, o54=u32(SERVER_IP)), BCAST, NOW + 10)
    assert server.table.get(first).state is LeaseState.RELEASED
    offer = server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW + 20)
    assert offer.packet.yiaddr == first


def test_two_clients_never_share_an_address():
    server, _ = make_server()
    seen = {}
    for n in range(10):
        _, ack = dora(server, mac(n))
        assert ack.packet.message_type == M.ACK
        assert ack.packet.yiaddr not in seen
        seen[ack.packet.yiaddr] = n
    # Pool of 10 is exhausted: the 11th client gets nothing.
    assert server.handle(request(M.DISCOVER, mac(99)), BCAST, NOW) is None
    assert server.counters.drops["no-address-available"] == 1


def test_request_for_other_server_frees_offer():
    server, _ = make_server()
    offer = server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    other = ip_to_int("10.1.0.2")
    r = server.handle(request(M.REQUEST, mac(1), o50=u32(offer.packet.yiaddr), o54=u32(other)), BCAST, NOW)
    assert r is None
    assert server.table.get(offer.packet.yiaddr).state is LeaseState.AVAILABLE


def test_selecting_wrong_address_naks():
    server, _ = make_server()
    server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    r = server.handle(request(M.REQUEST, mac(1), o50=u32(ip_to_int("10.1.0.107")), o54=u32(SERVER_IP)), BCAST, NOW)
    assert r.packet.message_type == M.NAK
    assert r.dst_ip == BROADCAST  # RFC 2131 §4.1: NAKs are broadcast when not relayed


def test_init_reboot_known_client_acked():
    server, _ = make_server()
    _, ack = dora(server, mac(1))
    r = server.handle(request(M.REQUEST, mac(1), o50=u32(ack.packet.yiaddr)), BCAST, NOW + 100)
    assert r.packet.message_type == M.ACK and r.packet.yiaddr == ack.packet.yiaddr


def test_init_reboot_wrong_network_naks():
    server, _ = make_server()
    r = server.handle(request(M.REQUEST, mac(1), o50=u32(ip_to_int("192.168.7.9"))), BCAST, NOW)
    assert r.packet.message_type == M.NAK


def test_init_reboot_unknown_client_silent():
    server, _ = make_server()
    r = server.handle(request(M.REQUEST, mac(1), o50=u32(ip_to_int("10.1.0.105"))), BCAST, NOW)
    assert r is None
    assert server.counters.drops["init-reboot-unknown-client"] == 1


def test_init_reboot_address_of_other_client_naks_when_authoritative():
    server, config = make_server()
    server.configure(replace(config, server=replace(config.server, authoritative=True)))
    _, ack = dora(server, mac(1))
    r = server.handle(request(M.REQUEST, mac(2), o50=u32(ack.packet.yiaddr)), BCAST, NOW)
    assert r.packet.message_type == M.NAK


def test_init_reboot_of_a_client_without_record_is_silent_by_default():
    # RFC 2131 §4.3.2: "If the DHCP server has no record of this client, then
    # it MUST remain silent"; [server] authoritative is off by default.
    server, _ = make_server()
    _, ack = dora(server, mac(1))
    assert server.handle(request(M.REQUEST, mac(2), o50=u32(ack.packet.yiaddr)), BCAST, NOW) is None


def test_renewing_extends_and_replies_unicast_to_ciaddr():
    server, _ = make_server()
    _, ack = dora(server, mac(1))
    yi = ack.packet.yiaddr
    server.table.take_dirty()
    unicast = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=yi)
    r = server.handle(request(M.REQUEST, mac(1), ciaddr=yi), unicast, NOW + 1800)
    assert r.packet.message_type == M.ACK and r.packet.yiaddr == yi
    assert r.dst_ip == yi and not r.hw_unicast
    lease = server.table.get(yi)
    assert lease.expiration == NOW + 1800 + 3600
    assert lease.start == NOW  # same binding, renewed
    _, events = server.table.take_dirty()
    assert [e.what for e in events] == ["renew"]


def test_rebinding_someone_elses_address_naks():
    server, _ = make_server()
    _, ack = dora(server, mac(1))
    r = server.handle(request(M.REQUEST, mac(2), ciaddr=ack.packet.yiaddr), BCAST, NOW)
    assert r.packet.message_type == M.NAK


def test_decline_makes_address_unavailable_then_available():
    server, config = make_server()
    _, ack = dora(server, mac(1))
    yi = ack.packet.yiaddr
    server.handle(request(M.DECLINE, mac(1), o50=u32(yi), o54=u32(SERVER_IP)), BCAST, NOW + 5)
    lease = server.table.get(yi)
    assert lease.state is LeaseState.UNAVAILABLE
    hold = config.policies["default"].unavailable_timeout
    # While unavailable, nobody gets it.
    offer = server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW + 10)
    assert offer.packet.yiaddr != yi
    server.expire(NOW + 5 + hold)
    assert server.table.get(yi).state is LeaseState.AVAILABLE


def test_expiry_reclaims_leases_and_offers():
    server, _ = make_server()
    _, ack = dora(server, mac(1))
    offer = server.handle(request(M.DISCOVER, mac(2)), BCAST, NOW)
    server.expire(NOW + 121)
    assert server.table.get(offer.packet.yiaddr).state is LeaseState.AVAILABLE
    server.expire(NOW + 3600)
    assert server.table.get(ack.packet.yiaddr).state is LeaseState.EXPIRED
    _, events = server.table.take_dirty()
    assert [e.what for e in events] == ["ack", "expire"]


def test_reservation_offered_to_its_client_only():
    server, _ = make_server()
    res_mac = bytes.fromhex("020000000050")
    offer = server.handle(request(M.DISCOVER, res_mac), BCAST, NOW)
    assert offer.packet.yiaddr == ip_to_int("10.1.0.50")
    # Another client asking for it does not get it.
    other = server.handle(request(M.DISCOVER, mac(7), o50=u32(ip_to_int("10.1.0.50"))), BCAST, NOW)
    assert other.packet.yiaddr != ip_to_int("10.1.0.50")
    # With a client-id too, the MAC reservation still applies.
    offer = server.handle(request(M.DISCOVER, res_mac, o61=b"\xffDUIDxyz"), BCAST, NOW)
    assert offer.packet.yiaddr == ip_to_int("10.1.0.50")


def test_relayed_request_uses_giaddr_scope_and_echoes_option_82():
    text = BASE_CONFIG + "\n[scope far]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.20\n"
    server, _ = make_server(text)
    giaddr = ip_to_int("10.2.0.1")
    relayed = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=giaddr, src_port=67)
    agent = bytes([1, 3]) + b"c01" + bytes([2, 2]) + b"r1"
    offer = server.handle(request(M.DISCOVER, mac(1), giaddr=giaddr, o82=agent), relayed, NOW)
    assert offer.packet.yiaddr == ip_to_int("10.2.0.10")
    assert offer.dst_ip == giaddr and offer.dst_port == 67
    assert offer.packet.options[82] == agent


def test_subnet_selection_option_picks_scope():
    text = BASE_CONFIG + "\n[scope far]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.20\n"
    server, _ = make_server(text)
    offer = server.handle(request(M.DISCOVER, mac(1), o118=u32(ip_to_int("10.2.0.0"))), BCAST, NOW)
    assert offer.packet.yiaddr == ip_to_int("10.2.0.10")


def test_inform_acks_options_without_lease():
    server, _ = make_server()
    yi = ip_to_int("10.1.0.77")
    r = server.handle(request(M.INFORM, mac(1), ciaddr=yi), RxInfo(2, SERVER_IP, SERVER_IP, yi), NOW)
    assert r.packet.message_type == M.ACK
    assert r.packet.yiaddr == 0 and 51 not in r.packet.options
    assert r.dst_ip == yi
    assert server.table.get(yi) is None


def test_bootp_reservation_and_dynamic():
    text = BASE_CONFIG.replace("policy = default\n", "policy = default\nbootp = true\n", 1)
    server, _ = make_server(text)
    res_mac = bytes.fromhex("020000000050")
    r = server.handle(request(None, res_mac), BCAST, NOW)
    assert r.packet.yiaddr == ip_to_int("10.1.0.50") and r.packet.message_type is None
    # Without dynamic-bootp an unknown BOOTP client gets nothing.
    assert server.handle(request(None, mac(3)), BCAST, NOW) is None
    server2, _ = make_server(text.replace("bootp = true\n", "bootp = true\ndynamic-bootp = true\n"))
    r = server2.handle(request(None, mac(3)), BCAST, NOW)
    assert r.packet.yiaddr == A100
    lease = server2.table.get(A100)
    assert lease.state is LeaseState.LEASED and lease.expiration == lease.INFINITE
    server2.expire(NOW + 10**8)
    assert server2.table.get(A100).state is LeaseState.LEASED


def test_excluded_client_and_disabled_server_are_silent():
    text = BASE_CONFIG + "\n[client 02:00:00:00:00:09]\naction = exclude\n"
    server, _ = make_server(text)
    assert server.handle(request(M.DISCOVER, mac(9)), BCAST, NOW) is None
    server.enabled = False
    assert server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW) is None
    assert server.counters.drops["dhcp-disabled"] == 1


def test_interface_not_served_is_dropped():
    server, _ = make_server()
    other_if = RxInfo(ifindex=9, local_ip=0, dst_ip=BROADCAST, src_ip=0)
    assert server.handle(request(M.DISCOVER, mac(1)), other_if, NOW) is None
    assert server.counters.drops["interface-not-served"] == 1


def test_client_lease_time_request_is_capped_by_policy():
    server, _ = make_server()
    offer = server.handle(request(M.DISCOVER, mac(1), o51=u32(600)), BCAST, NOW)
    assert struct.unpack("!I", offer.packet.options[51])[0] == 600
    offer = server.handle(request(M.DISCOVER, mac(2), o51=u32(10**6)), BCAST, NOW)
    assert struct.unpack("!I", offer.packet.options[51])[0] == 3600


def test_malformed_option_is_counted_not_raised():
    server, _ = make_server()
    bad = request(M.DISCOVER, mac(1), o50=b"\x01")  # requested address must be 4 bytes
    assert server.handle(bad, BCAST, NOW) is None
    assert server.counters.drops["malformed-option"] == 1
