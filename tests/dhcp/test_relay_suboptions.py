"""Relay agent information sub-options the server acts on: RFC 3527 link selection (5),
RFC 5107 server identifier override (11), RFC 5010 relay agent flags (10).

Replies still go to giaddr (RFC 3527 §4, RFC 5107 §5), and option 82
comes back whole (RFC 3046 §2.2).
"""

from __future__ import annotations

import pytest

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import DhcpServer, RxInfo

from tests.dhcp.helpers import BASE_CONFIG, SERVER_IP, make_server, mac, request, u32

NOW = 1_000_000
TEXT = BASE_CONFIG + """
[scope far]
subnet = 10.2.0.0/24
ranges = 10.2.0.10-10.2.0.20
policy = default

[scope relaynet]
subnet = 10.9.0.0/24
ranges = 10.9.0.10-10.9.0.20
policy = default
"""
GIADDR = ip_to_int("10.9.0.1")  # the relay's own address, on a network of its own
LINK = ip_to_int("10.2.0.1")  # the client's link, named by sub-option 5
OVERRIDE = ip_to_int("10.2.0.1")
RELAYED = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=GIADDR, src_port=67)


def sub(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def _server() -> DhcpServer:
    s, _ = make_server(TEXT)
    return s


def test_link_selection_picks_the_scope_instead_of_giaddr() -> None:
    s = _server()
    agent = sub(1, b"port7") + sub(5, u32(LINK))
    offer = s.handle(request(M.DISCOVER, mac(1), giaddr=GIADDR, o82=agent), RELAYED, NOW)
    assert offer is not None and ip_to_int("10.2.0.10") <= offer.packet.yiaddr <= ip_to_int("10.2.0.20")
    assert offer.dst_ip == GIADDR and offer.dst_port == 67  # reply routing stays to giaddr
    assert offer.packet.options[82] == agent  # echoed whole, sub-option 5 included


def test_without_link_selection_giaddr_picks_the_scope() -> None:
    s = _server()
    offer = s.handle(request(M.DISCOVER, mac(1), giaddr=GIADDR, o82=sub(1, b"port7")), RELAYED, NOW)
    assert offer is not None and ip_to_int("10.9.0.10") <= offer.packet.yiaddr <= ip_to_int("10.9.0.20")


def test_link_selection_in_an_unrelayed_request_is_not_believed() -> None:
    # Option 82 from a client itself (giaddr 0) must not steer the scope.
    s = _server()
    bcast = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=0xFFFFFFFF, src_ip=0)
    offer = s.handle(request(M.DISCOVER, mac(1), o82=sub(5, u32(LINK))), bcast, NOW)
    assert offer is not None and ip_to_int("10.1.0.100") <= offer.packet.yiaddr <= ip_to_int("10.1.0.109")


def test_link_selection_of_the_wrong_length_is_dropped_and_counted() -> None:
    s = _server()
    assert s.handle(request(M.DISCOVER, mac(1), giaddr=GIADDR, o82=sub(5, b"\x0a\x02\x00")), RELAYED, NOW) is None
    assert s.counters.drops["malformed-option"] == 1
    assert not s.table.leases


def test_server_identifier_override_is_option_54_and_accepted_back() -> None:
    s = _server()
    agent = sub(5, u32(LINK)) + sub(11, u32(OVERRIDE))
    offer = s.handle(request(M.DISCOVER, mac(1), giaddr=GIADDR, o82=agent), RELAYED, NOW)
    assert offer is not None and offer.packet.options[54] == u32(OVERRIDE)
    assert offer.dst_ip == GIADDR
    yi = offer.packet.yiaddr
    ack = s.handle(request(M.REQUEST, mac(1), giaddr=GIADDR, o82=agent, o50=u32(yi), o54=u32(OVERRIDE)), RELAYED, NOW)
    assert ack is not None and ack.packet.message_type == M.ACK and ack.packet.yiaddr == yi
    assert ack.packet.options[54] == u32(OVERRIDE) and ack.dst_ip == GIADDR
    assert ack.packet.options[82] == agent


def test_override_names_us_only_when_the_relay_sent_it() -> None:
    # A REQUEST naming the override address without the relay's sub-option
    # names some other server.
    s = _server()
    agent = sub(5, u32(LINK))
    offer = s.handle(request(M.DISCOVER, mac(1), giaddr=GIADDR, o82=agent), RELAYED, NOW)
    assert offer is not None
    r = s.handle(request(M.REQUEST, mac(1), giaddr=GIADDR, o82=agent, o50=u32(offer.packet.yiaddr),
                         o54=u32(OVERRIDE)), RELAYED, NOW)
    assert r is None and s.counters.drops["request-for-other-server"] == 1


def test_nak_through_the_override_carries_it() -> None:
    s = _server()
    agent = sub(5, u32(LINK)) + sub(11, u32(OVERRIDE))
    nak = s.handle(request(M.REQUEST, mac(1), giaddr=GIADDR, o82=agent, o50=u32(ip_to_int("10.2.0.10")),
                           o54=u32(OVERRIDE)), RELAYED, NOW)
    # 10.2.0.10 is free: ACK.  Ask again as another client for the same address: NAK.
    assert nak is not None and nak.packet.message_type == M.ACK
    nak = s.handle(request(M.REQUEST, mac(2), giaddr=GIADDR, o82=agent, o50=u32(ip_to_int("10.2.0.10")),
                           o54=u32(OVERRIDE)), RELAYED, NOW)
    assert nak is not None and nak.packet.message_type == M.NAK
    assert nak.packet.options[54] == u32(OVERRIDE) and nak.dst_ip == GIADDR


class _HashGate:
    """A load-balancing gate for which this client's hash is the partner's: it answers "renew" only."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def admit(self, kind: str, lb_key: bytes, secs: int, now: int) -> tuple[bool, str | None, str]:
        self.kinds.append(kind)
        return kind == "renew", None, "load-balancing"

    def lease_time(self, lease: object, desired: int, now: int) -> int:
        return desired

    def potential_expiration(self, desired: int, granted: int, now: int) -> int:
        return now + desired


@pytest.mark.parametrize(("flags", "kind"), [(b"\x80", "renew"), (b"\x00", "rebind"), (None, "rebind")])
def test_relay_flags_unicast_makes_a_relayed_renewal_a_unicast_one(flags: bytes | None, kind: str) -> None:
    """RFC 5010 §4: the U flag tells a unicast (RENEWING) request from a broadcast (REBINDING) one."""
    s = _server()
    agent = sub(1, b"port7") + sub(5, u32(LINK))
    offer = s.handle(request(M.DISCOVER, mac(1), giaddr=GIADDR, o82=agent), RELAYED, NOW)
    assert offer is not None
    yi = offer.packet.yiaddr
    assert s.handle(request(M.REQUEST, mac(1), giaddr=GIADDR, o82=agent, o50=u32(yi), o54=u32(SERVER_IP)),
                    RELAYED, NOW) is not None
    gate = _HashGate()
    s.gates["far"] = gate
    renew_agent = agent + (sub(10, flags) if flags is not None else b"")
    r = s.handle(request(M.REQUEST, mac(1), ciaddr=yi, giaddr=GIADDR, o82=renew_agent), RELAYED, NOW + 100)
    assert gate.kinds == [kind]
    assert (r is not None) == (kind == "renew")
    if r is not None:
        assert r.dst_ip == GIADDR and r.packet.message_type == M.ACK
