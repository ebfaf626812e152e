"""DHCPLEASEQUERY (RFC 4388) through the server core, with queries built by scapy.

scapy is an independent implementation of the RFC 4388 message types and
options (lease_query = 10, lease_unassigned = 11, lease_unknown = 12,
lease_active = 13; options 91 and 92): the queries are its bytes, parsed by
cnrd, and the answers are read back with it.
"""

from __future__ import annotations

import struct

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from cnrd.config import ConfigError, loads
from cnrd.dhcp.leasequery import Query, answer, query_of
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import int_to_ip, ip_to_int, parse
from cnrd.dhcp.server import DhcpServer, RxInfo
from cnrd.leases.model import LeaseState
from cnrd.leases.table import LeaseTable

from tests.dhcp.helpers import BASE_CONFIG, IFACE, SERVER_IP, mac, request, u32

NOW = 1_000_000
RELAY = ip_to_int("10.1.0.254")  # the relay of scope lan, allowed to query
RELAY2 = ip_to_int("10.2.0.254")  # the relay of scope lan2, allowed to query
STRANGER = ip_to_int("10.1.0.253")  # a relay that is not allowed
FROM_RELAY = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=RELAY, src_port=67)

CONFIG = BASE_CONFIG.replace("data-dir = /nonexistent", "data-dir = /nonexistent\n"
                             "leasequery-allow = 10.1.0.254, 10.2.0.0/24") + """
[scope lan2]
subnet = 10.2.0.0/24
ranges = 10.2.0.100-10.2.0.109
policy = default
"""

# Option 82 as a relay inserts it (RFC 3046): circuit-id "eth0/1", remote-id "cm-1".
OPT82 = bytes([1, 6]) + b"eth0/1" + bytes([2, 4]) + b"cm-1"
OPT82_2 = bytes([1, 6]) + b"eth0/2" + bytes([2, 4]) + b"cm-2"


def make(text: str = CONFIG) -> DhcpServer:
    server = DhcpServer(loads(text), LeaseTable())
    server.set_interfaces([IFACE])
    return server


def bind(server: DhcpServer, hw: bytes, now: int = NOW, relay: int = RELAY, opt82: bytes = OPT82,
         **opts: bytes) -> int:
    """A relayed DISCOVER/REQUEST for ``hw``; returns the address it was bound to."""
    offer = server.handle(request(M.DISCOVER, hw, giaddr=relay, o82=opt82, **opts), FROM_RELAY, now)
    assert offer is not None and offer.packet.message_type == M.OFFER
    address = offer.packet.yiaddr
    ack = server.handle(request(M.REQUEST, hw, giaddr=relay, o82=opt82, o50=u32(address), o54=u32(SERVER_IP),
                                **opts), FROM_RELAY, now)
    assert ack is not None and ack.packet.message_type == M.ACK
    return address


def lq(*, ciaddr: str = "0.0.0.0", giaddr: str = "10.1.0.254", chaddr: bytes = b"", client_id: bytes | None = None,
       hlen: int | None = None, xid: int = 0x4C51) -> bytes:
    """A DHCPLEASEQUERY as scapy builds it."""
    options: list[object] = [("message-type", "lease_query")]
    if client_id is not None:
        options.append(("client_id", client_id))
    options.append("end")
    bootp = BOOTP(op=1, xid=xid, ciaddr=ciaddr, giaddr=giaddr, chaddr=chaddr,
                  hlen=len(chaddr) if hlen is None else hlen)
    return bytes(bootp / DHCP(options=options))


def ask(server: DhcpServer, query: bytes, now: int = NOW + 100) -> tuple[BOOTP, dict[object, object]] | None:
    """Send scapy's bytes through the core; the answer as scapy reads it, and its options."""
    reply = server.handle(parse(query), FROM_RELAY, now)
    if reply is None:
        return None
    # RFC 4388 §6.3: answered to the requestor's giaddr, on the server port.
    assert reply.dst_ip == parse(query).giaddr and reply.dst_port == 67 and not reply.durable
    got = BOOTP(reply.packet.serialize())
    opts = {o[0]: (o[1] if len(o) == 2 else o[1:]) for o in got[DHCP].options if isinstance(o, tuple)}
    return got, opts


def mtype(opts: dict[object, object]) -> int:
    value = opts["message-type"]
    assert isinstance(value, int)
    return value


def chaddr(p: BOOTP) -> bytes:
    return bytes(p.chaddr)[: p.hlen]


# -- the three keys -----------------------------------------------------------------


def test_query_by_ip_address_answers_active_with_the_lease_and_the_relays_option_82():
    server = make()
    address = bind(server, mac(1), o12=b"host-one", o60=b"docsis3.0")
    got, opts = ask(server, lq(ciaddr=int_to_ip(address), chaddr=bytes(6), hlen=0), now=NOW + 100)
    assert mtype(opts) == 13  # DHCPLEASEACTIVE
    assert got.op == 2 and got.xid == 0x4C51
    assert got.ciaddr == int_to_ip(address)
    assert chaddr(got) == mac(1) and got.htype == 1
    assert opts["lease_time"] == 3600 - 100  # time left, not the lease's length
    assert opts["client-last-transaction-time"] == 100
    assert opts["relay_agent_information"] == OPT82  # as the relay inserted it
    assert opts["hostname"] == b"host-one"
    assert opts["vendor_class_id"] == b"docsis3.0"
    assert opts["server_id"] == int_to_ip(SERVER_IP)
    assert "associated-ip" not in opts  # only for a query by client
    assert server.counters.received["LEASEQUERY"] == 1
    assert server.counters.sent["LEASEACTIVE"] == 1 and server.counters.leasequery["ip"] == 1


def test_query_by_client_id_answers_active_with_the_client_id():
    server = make()
    cid = b"\xff" + b"duid-of-client-two"
    address = bind(server, mac(2), o61=cid)
    got, opts = ask(server, lq(client_id=cid, chaddr=bytes(6), hlen=0))
    assert mtype(opts) == 13
    assert got.ciaddr == int_to_ip(address) and chaddr(got) == mac(2)
    assert opts["client_id"] == cid
    assert opts["relay_agent_information"] == OPT82
    assert server.counters.leasequery["client-id"] == 1


def test_query_by_mac_finds_a_client_with_and_without_an_rfc2132_client_id():
    server = make()
    plain = bind(server, mac(3))
    with_cid = bind(server, mac(4), o61=b"\x01" + mac(4))  # RFC 2132's htype + chaddr form
    for hw, address in ((mac(3), plain), (mac(4), with_cid)):
        got, opts = ask(server, lq(chaddr=hw))
        assert mtype(opts) == 13
        assert got.ciaddr == int_to_ip(address) and chaddr(got) == hw
    assert server.counters.leasequery["mac"] == 2


def test_ciaddr_takes_precedence_over_client_id_and_chaddr():
    server = make()
    a1 = bind(server, mac(1))
    bind(server, mac(2), o61=b"\x01" + mac(2))
    got, opts = ask(server, lq(ciaddr=int_to_ip(a1), chaddr=mac(2), client_id=b"\x01" + mac(2)))
    assert mtype(opts) == 13 and got.ciaddr == int_to_ip(a1) and chaddr(got) == mac(1)


def test_a_client_with_two_addresses_gets_associated_ip():
    server = make()
    older = bind(server, mac(5), now=NOW, relay=RELAY)
    newer = bind(server, mac(5), now=NOW + 50, relay=RELAY2, opt82=OPT82_2)
    assert older != newer
    got, opts = ask(server, lq(chaddr=mac(5)), now=NOW + 60)
    assert mtype(opts) == 13
    # RFC 4388: ciaddr is the most recently used one, the other in associated-ip.
    assert got.ciaddr == int_to_ip(newer)
    assert opts["associated-ip"] == int_to_ip(older)
    assert opts["relay_agent_information"] == OPT82_2
    assert opts["client-last-transaction-time"] == 10


def test_associated_ip_lists_every_other_address():
    server = make()
    a = bind(server, mac(6), now=NOW, relay=RELAY)
    b = bind(server, mac(6), now=NOW + 1, relay=RELAY2)
    # A third, by hand: the client bound in a third scope is the same record shape.
    third = server.table.get(b)
    assert third is not None
    c = ip_to_int("10.2.0.109")
    server.table.update(c, durable=True, state=LeaseState.LEASED, scope="lan2", hw=third.hw,
                        client_id=None, start=NOW, expiration=NOW + 3600, cltt=NOW + 2)
    reply = server.handle(parse(lq(chaddr=mac(6))), FROM_RELAY, NOW + 3)
    assert reply is not None and reply.packet.ciaddr == c
    assert reply.packet.options[92] == u32(a) + u32(b)


# -- not ours, not held ---------------------------------------------------------------


def test_a_free_address_of_ours_is_unassigned():
    server = make()
    got, opts = ask(server, lq(ciaddr="10.1.0.105"))
    assert mtype(opts) == 11  # DHCPLEASEUNASSIGNED
    assert got.ciaddr == "10.1.0.105"
    assert "lease_time" not in opts and "relay_agent_information" not in opts


def test_a_reserved_unused_address_is_unassigned():
    server = make()
    got, opts = ask(server, lq(ciaddr="10.1.0.50"))
    assert mtype(opts) == 11


def test_released_and_run_out_leases_are_unassigned():
    server = make()
    released = bind(server, mac(7))
    server.handle(request(M.RELEASE, mac(7), ciaddr=released, o54=u32(SERVER_IP)), FROM_RELAY, NOW + 10)
    ran_out = bind(server, mac(8))
    _, opts = ask(server, lq(ciaddr=int_to_ip(released)), now=NOW + 20)
    assert mtype(opts) == 11
    # Past its expiration, before the expiry sweep: no longer held.
    _, opts = ask(server, lq(ciaddr=int_to_ip(ran_out)), now=NOW + 3600)
    assert mtype(opts) == 11
    _, opts = ask(server, lq(chaddr=mac(8)), now=NOW + 3600)
    assert mtype(opts) == 12


def test_an_address_outside_our_scopes_is_unknown():
    server = make()
    for outside in ("192.0.2.1", "10.1.0.20"):  # another network; our subnet but no range of ours
        got, opts = ask(server, lq(ciaddr=outside))
        assert mtype(opts) == 12  # DHCPLEASEUNKNOWN
        assert got.ciaddr == outside


def test_an_unknown_client_is_unknown_with_its_key_echoed():
    server = make()
    bind(server, mac(1))
    got, opts = ask(server, lq(chaddr=mac(99)))
    assert mtype(opts) == 12 and chaddr(got) == mac(99)
    got, opts = ask(server, lq(client_id=b"\x00nobody", chaddr=bytes(6), hlen=0))
    assert mtype(opts) == 12 and opts["client_id"] == b"\x00nobody"
    assert server.counters.sent["LEASEUNKNOWN"] == 2


# -- who may ask ------------------------------------------------------------------------


def test_a_relay_not_allowed_is_dropped_and_counted():
    server = make()
    address = bind(server, mac(1))
    assert ask(server, lq(ciaddr=int_to_ip(address), giaddr=int_to_ip(STRANGER))) is None
    assert server.counters.drops["leasequery-not-allowed"] == 1
    assert server.counters.leasequery.total() == 0
    assert not any(k.startswith("LEASE") for k in server.counters.sent)
    # A relay inside the allowed subnet is answered.
    got, opts = ask(server, lq(ciaddr=int_to_ip(address), giaddr="10.2.0.7"))
    assert mtype(opts) == 13


def test_without_leasequery_allow_every_query_is_refused():
    server = make(BASE_CONFIG)
    address = bind(server, mac(1))
    assert ask(server, lq(ciaddr=int_to_ip(address))) is None
    assert server.counters.drops["leasequery-not-allowed"] == 1


def test_a_query_without_giaddr_or_without_a_key_is_dropped():
    server = make()
    assert ask(server, lq(ciaddr="10.1.0.105", giaddr="0.0.0.0")) is None
    assert server.counters.drops["leasequery-without-giaddr"] == 1
    assert ask(server, lq(chaddr=bytes(6), hlen=0)) is None
    assert server.counters.drops["leasequery-without-key"] == 1


def test_a_query_from_a_stopped_server_is_not_answered():
    server = make()
    server.enabled = False
    assert ask(server, lq(ciaddr="10.1.0.105")) is None
    assert server.counters.drops["dhcp-disabled"] == 1


# -- the pure core ----------------------------------------------------------------------


def test_query_of_reads_the_keys_in_rfc_order():
    assert query_of(parse(lq(ciaddr="10.1.0.5", client_id=b"\x01abc", chaddr=mac(1)))) == Query("ip", ip_to_int("10.1.0.5"))
    assert query_of(parse(lq(client_id=b"\x01abc", chaddr=mac(1)))) == Query("client-id", client_id=b"\x01abc")
    assert query_of(parse(lq(chaddr=mac(1)))) == Query("mac", hw=b"\x01" + mac(1))
    assert query_of(parse(lq(chaddr=bytes(6)))) is None


def test_answer_of_an_empty_table_is_unknown():
    assert answer(LeaseTable(), Query("ip", ip_to_int("10.1.0.5")), NOW).mtype == M.LEASEUNKNOWN
    assert answer(LeaseTable(), Query("mac", hw=b"\x01" + mac(1)), NOW).mtype == M.LEASEUNKNOWN


def test_an_infinite_bootp_lease_reports_an_infinite_time_left():
    server = make()
    server.table.update(ip_to_int("10.1.0.101"), durable=True, state=LeaseState.LEASED, scope="lan",
                        hw=b"\x01" + mac(9), client_id=None, start=NOW, expiration=0xFFFFFFFF, cltt=NOW)
    _, opts = ask(server, lq(ciaddr="10.1.0.101"))
    assert mtype(opts) == 13 and opts["lease_time"] == 0xFFFFFFFF


# -- configuration ----------------------------------------------------------------------


def test_leasequery_allow_takes_addresses_and_subnets():
    config = loads(CONFIG)
    assert config.server.leasequery_allow == ((RELAY, 32), (ip_to_int("10.2.0.0"), 24))
    assert loads(BASE_CONFIG).server.leasequery_allow == ()


@pytest.mark.parametrize("bad", ["10.1.0.300", "10.1.0.1/24", "relay-one"])
def test_a_bad_leasequery_allow_is_located(bad):
    text = BASE_CONFIG.replace("data-dir = /nonexistent", f"data-dir = /nonexistent\nleasequery-allow = {bad}")
    with pytest.raises(ConfigError) as e:
        loads(text)
    assert e.value.section == "server" and e.value.key == "leasequery-allow"


def test_option_numbers_match_scapy():
    # The two implementations agree on the message types (RFC 4388 §6.1).
    assert (M.LEASEQUERY, M.LEASEUNASSIGNED, M.LEASEUNKNOWN, M.LEASEACTIVE) == (10, 11, 12, 13)
    assert struct.unpack("!B", bytes(DHCP(options=[("message-type", "lease_active"), "end"]))[2:3])[0] == 13


# -- through the running server: the request path and /metrics ----------------------------


def test_the_request_path_answers_at_once_and_metrics_count_queries_answers_and_drops():
    from twisted.internet.task import Clock

    from cnrd.app.runtime import Runtime
    from tests.test_metrics import scrape, value
    from tests.test_service import FakePort, RecordingStore, Rx, run_now

    clock = Clock()
    clock.advance(NOW)
    ports: list[FakePort] = []

    def factory(*a, **kw):
        ports.append(FakePort(*a, **kw))
        return ports[-1]

    svc = Runtime(loads(CONFIG), clock, store=RecordingStore(), port_factory=factory,
                  interfaces=lambda c: [IFACE], commit_runner=run_now)
    svc.startService()
    try:
        port = ports[0]
        address = bind(svc.server, mac(1))
        relayed = dict(src_ip="10.1.0.254", src_port=67, dst_ip="10.1.0.1")
        # In one batch with a DISCOVER: a query whose answer needs no commit.
        port.on_batch([Rx(request(M.DISCOVER, mac(2)).serialize()),
                       Rx(lq(ciaddr=int_to_ip(address)), **relayed),
                       Rx(lq(chaddr=mac(1)), **relayed),
                       Rx(lq(ciaddr="192.0.2.9"), **relayed),
                       Rx(lq(ciaddr=int_to_ip(address), giaddr="10.1.0.253"), src_ip="10.1.0.253", src_port=67)], 0)
        answers = [(s[1].message_type, s[2], s[3]) for s in port.sent if s[1].message_type != M.OFFER]
        assert answers == [(M.LEASEACTIVE, "10.1.0.254", 67), (M.LEASEACTIVE, "10.1.0.254", 67),
                           (M.LEASEUNKNOWN, "10.1.0.254", 67)]
        m = scrape(svc)
        assert value(m, "cnrd_dhcp_packets_received_total", type="LEASEQUERY") == 4
        assert value(m, "cnrd_leasequery_queries_total", by="ip") == 2
        assert value(m, "cnrd_leasequery_queries_total", by="mac") == 1
        assert value(m, "cnrd_leasequery_queries_total", by="client-id") == 0
        assert value(m, "cnrd_leasequery_answers_total", type="LEASEACTIVE") == 2
        assert value(m, "cnrd_leasequery_answers_total", type="LEASEUNKNOWN") == 1
        assert value(m, "cnrd_leasequery_answers_total", type="LEASEUNASSIGNED") == 0
        assert value(m, "cnrd_leasequery_drops_total", reason="leasequery-not-allowed") == 1
    finally:
        svc.stopService()


def test_raw_bytes_of_a_query_and_its_answer():
    # RFC 2131 Figure 1 offsets: op 0, xid 4, ciaddr 12, giaddr 24, chaddr 28, cookie 236, options 240.
    query = bytearray(240)
    query[0], query[1], query[2] = 1, 1, 0  # BOOTREQUEST, Ethernet, hlen 0: a query by IP
    query[4:8] = b"\xde\xad\xbe\xef"
    server = make()
    address = bind(server, mac(1))
    query[12:16] = u32(address)
    query[24:28] = u32(RELAY)
    query[236:240] = b"\x63\x82\x53\x63"
    query += bytes([53, 1, 10, 255])
    reply = server.handle(parse(bytes(query)), FROM_RELAY, NOW + 1)
    assert reply is not None
    out = reply.packet.serialize()
    assert out[0] == 2 and out[4:8] == b"\xde\xad\xbe\xef"
    assert out[12:16] == u32(address) and out[24:28] == u32(RELAY)
    assert out[28:34] == mac(1) and out[2] == 6
    assert out[240:243] == bytes([53, 1, 13])  # DHCPLEASEACTIVE first
