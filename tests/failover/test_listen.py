"""One listener for the relationships on one address and port: connections routed to their pair.

CNR 7.2's symmetrical scenario: two relationships between the same two
servers, this server main of one and backup of the other, on one port.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from cnrd.config import loads
from cnrd.failover import wire
from cnrd.failover.listen import CHOOSE_TIMEOUT, FailoverListener, _Router
from cnrd.failover.protocol import FailoverService
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import Role
from cnrd.leases.table import LeaseTable
from tests.failover.test_peer import T0

CONFIG = """
[server]
name = x
interfaces = eth1
data-dir = /nonexistent

[scope a]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149

[scope b]
subnet = 10.2.0.0/24
ranges = 10.2.0.100-10.2.0.149

[failover-pair pair-a]
main = 10.0.0.1
backup = 10.0.0.2
mclt = 60
scopes = a

[failover-pair pair-b]
main = 10.0.0.2
backup = 10.0.0.1
mclt = 60
scopes = b

[failover-pair pair-c]
main = 10.0.0.3
backup = 10.0.0.1
mclt = 60
scopes = a2

[scope a2]
subnet = 10.3.0.0/24
ranges = 10.3.0.100-10.3.0.149
"""


def listener():
    """This server (10.0.0.1): main of pair-a, backup of pair-b (partner 10.0.0.2) and of pair-c (10.0.0.3)."""
    reactor = MemoryReactorClock()
    reactor.advance(T0)
    config = loads(CONFIG)
    table = LeaseTable()
    lst = FailoverListener(reactor, "10.0.0.1", 647)
    links = {}
    for name, role, partner, scopes in (("pair-a", Role.MAIN, "10.0.0.2", ["a"]),
                                        ("pair-b", Role.BACKUP, "10.0.0.2", ["b"]),
                                        ("pair-c", Role.BACKUP, "10.0.0.3", ["a2"])):
        session = FailoverSession(config.failover_pairs[name], role, table, scopes, now=T0)
        link = FailoverService(session, reactor, local_ip="10.0.0.1", partner_ip=partner, port=647,
                               commit=lambda then: then(True))
        lst.add(link)
        links[name] = link
    return reactor, lst, links


def accept(lst, host):
    proto = _Router(lst)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    proto.makeConnection(transport)
    return proto, transport


def connect_msg(name: str) -> bytes:
    return wire.encode(wire.connect(7, T0, relationship_name=name, max_unacked=10, receive_timer=60,
                                    vendor_class="x", mclt=60, hba=wire.hba_from_split(256)))


def test_listens_once_for_every_relationship_on_the_address():
    reactor, lst, links = listener()
    lst.startService()
    assert [(port, iface) for port, _, _, iface in reactor.tcpServers] == [(647, "10.0.0.1")]


def test_the_only_relationship_with_that_partner_takes_the_connection_at_once():
    reactor, lst, links = listener()
    proto, transport = accept(lst, "10.0.0.3")
    assert links["pair-c"].link is proto.inner and not transport.disconnecting


def test_a_stranger_is_refused():
    reactor, lst, links = listener()
    proto, transport = accept(lst, "10.0.0.77")
    assert transport.disconnecting and all(link.link is None for link in links.values())


def test_two_relationships_with_one_partner_are_told_apart_by_the_connect():
    reactor, lst, links = listener()
    proto, transport = accept(lst, "10.0.0.2")
    assert links["pair-a"].link is None and links["pair-b"].link is None
    data = connect_msg("pair-b")
    proto.dataReceived(data[:5])  # a partial message decides nothing yet
    assert proto.inner is None
    proto.dataReceived(data[5:])
    assert links["pair-b"].link is proto.inner and links["pair-a"].link is None
    out = wire.Framer().feed(transport.value())
    assert out[0].type == wire.MessageType.CONNECTACK and out[0].reject_reason is None
    assert out[0].relationship_name == "pair-b"


def test_an_unknown_relationship_name_gets_reject_8_and_a_close():
    reactor, lst, links = listener()
    proto, transport = accept(lst, "10.0.0.2")
    proto.dataReceived(connect_msg("nosuchpair"))
    out = wire.Framer().feed(transport.value())
    assert out[0].type == wire.MessageType.CONNECTACK
    assert out[0].reject_reason == wire.RejectReason.INVALID_PARTNER
    assert "nosuchpair" in (out[0].message_text or "")
    assert transport.disconnecting and all(link.link is None for link in links.values())


def test_a_connection_that_never_names_its_relationship_is_closed():
    reactor, lst, links = listener()
    proto, transport = accept(lst, "10.0.0.2")
    reactor.advance(CHOOSE_TIMEOUT - 1)
    assert not transport.disconnecting
    reactor.advance(1)
    assert transport.disconnecting


def test_closing_a_routed_connection_brings_its_link_down():
    reactor, lst, links = listener()
    proto, transport = accept(lst, "10.0.0.2")
    proto.dataReceived(connect_msg("pair-b"))
    assert links["pair-b"].session.status().connected
    proto.connectionLost(None)
    assert links["pair-b"].link is None and not links["pair-b"].session.status().connected


def test_an_unknown_name_is_refused_with_8_even_while_the_partners_only_relationship_is_up():
    reactor, lst, links = listener()
    first, _ = accept(lst, "10.0.0.3")
    assert links["pair-c"].link is first.inner
    proto, transport = accept(lst, "10.0.0.3")
    assert proto.inner is None  # not closed as a duplicate before its CONNECT is read
    proto.dataReceived(connect_msg("nosuchpair"))
    out = wire.Framer().feed(transport.value())
    assert out[0].reject_reason == wire.RejectReason.INVALID_PARTNER and transport.disconnecting
    assert links["pair-c"].link is first.inner


def test_a_second_connection_naming_the_relationship_is_closed_as_a_duplicate():
    reactor, lst, links = listener()
    first, _ = accept(lst, "10.0.0.3")
    proto, transport = accept(lst, "10.0.0.3")
    proto.dataReceived(connect_msg("pair-c"))
    assert transport.disconnecting and links["pair-c"].link is first.inner
