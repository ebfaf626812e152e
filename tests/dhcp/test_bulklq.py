"""Bulk leasequery (RFC 6926): queries built by scapy, answers through the TCP protocol on a fake transport.

The leases are made by the server core from relayed DISCOVER/REQUESTs
whose option 82 carries a remote-id (RFC 3046 sub-option 2) and a relay-id
(RFC 6925 sub-option 12).  scapy builds the DHCPBULKLEASEQUERY messages
(message type 14, RFC 6926 §6.1) and reads the answers back; the framing
(a two-octet length before every message, RFC 6926 §6.1) is done here by
hand, independently of cnrd's.
"""

from __future__ import annotations

import struct

from scapy.layers.dhcp import BOOTP, DHCP
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from cnrd.config import loads
from cnrd.dhcp import bulklq
from cnrd.dhcp.bulk import IDLE_TIMEOUT, MAX_QUEUED, BulkLeasequeryService, BulkProtocol
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import int_to_ip, ip_to_int
from cnrd.dhcp.server import DhcpServer, RxInfo
from cnrd.leases.table import LeaseTable

from tests.dhcp.helpers import BASE_CONFIG, IFACE, SERVER_IP, mac, request, u32

NOW = 1_000_000
RELAY = ip_to_int("10.1.0.254")
FROM_RELAY = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=SERVER_IP, src_ip=RELAY, src_port=67)

CONFIG = BASE_CONFIG.replace("data-dir = /nonexistent", "data-dir = /nonexistent\n"
                             "leasequery-allow = 10.1.0.254, 10.7.0.0/16")

# RFC 6926 message types and options, by number (scapy names none of them).
BULKLEASEQUERY, LEASEQUERYDONE = 14, 15
STATUS_CODE, BASE_TIME, QUERY_START, DHCP_STATE = 151, 152, 154, 156
MALFORMED_QUERY, NOT_ALLOWED = 3, 4


def opt82(remote: bytes, relay: bytes) -> bytes:
    """Option 82 as a relay inserts it: circuit-id, remote-id (2), relay-id (12)."""
    return bytes([1, 4]) + b"eth0" + bytes([2, len(remote)]) + remote + bytes([12, len(relay)]) + relay


def make() -> DhcpServer:
    server = DhcpServer(loads(CONFIG), LeaseTable())
    server.set_interfaces([IFACE])
    return server


def bind(server: DhcpServer, hw: bytes, o82: bytes, now: int = NOW) -> int:
    offer = server.handle(request(M.DISCOVER, hw, giaddr=RELAY, o82=o82), FROM_RELAY, now)
    assert offer is not None
    address = offer.packet.yiaddr
    ack = server.handle(request(M.REQUEST, hw, giaddr=RELAY, o82=o82, o50=u32(address), o54=u32(SERVER_IP)),
                        FROM_RELAY, now)
    assert ack is not None and ack.packet.message_type == M.ACK
    return address


def populated() -> tuple[DhcpServer, dict[str, int]]:
    """Three clients: two behind remote-id cm-1 / relay R1, one behind cm-2 / relay R2."""
    server = make()
    got = {
        "a": bind(server, mac(1), opt82(b"cm-1", b"R1")),
        "b": bind(server, mac(2), opt82(b"cm-1", b"R1")),
        "c": bind(server, mac(3), opt82(b"cm-2", b"R2")),
    }
    return server, got


def bulk_query(*, relay_info: bytes | None = None, chaddr: bytes = b"", xid: int = 0xB01C,
               mtype: int = BULKLEASEQUERY, extra: list[object] | None = None, ciaddr: str = "0.0.0.0") -> bytes:
    """A DHCPBULKLEASEQUERY as scapy builds it (no length prefix)."""
    options: list[object] = [("message-type", mtype)]
    if relay_info is not None:
        options.append(("relay_agent_information", relay_info))
    options.extend(extra or [])
    options.append("end")
    return bytes(BOOTP(op=1, xid=xid, ciaddr=ciaddr, chaddr=chaddr, hlen=len(chaddr),
                       htype=1 if chaddr else 0) / DHCP(options=options))


def framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def unframe(stream: bytes) -> list[tuple[BOOTP, dict[object, object]]]:
    """Every message in ``stream`` as scapy reads it, with its options; the stream must end on a message."""
    out = []
    pos = 0
    while pos < len(stream):
        (size,) = struct.unpack_from("!H", stream, pos)
        p = BOOTP(stream[pos + 2: pos + 2 + size])
        pos += 2 + size
        opts = {o[0]: (o[1] if len(o) == 2 else o[1:]) for o in p[DHCP].options if isinstance(o, tuple)}
        out.append((p, opts))
    assert pos == len(stream), "the stream ends inside a message"
    return out


class Conn:
    """A BulkProtocol on a fake TCP transport, from ``peer``, driven by a fake clock."""

    def __init__(self, server: DhcpServer, peer: str = "10.1.0.254", max_connections: int = 16,
                 now: int = NOW + 100) -> None:
        self.clock = Clock()
        self.clock.advance(now)
        self.service = BulkLeasequeryService(self.clock, server, lambda: server.config, port=67,  # type: ignore[arg-type]
                                             max_connections=max_connections)
        self.proto = BulkProtocol(self.service)
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "10.1.0.1", 67),
                                         peerAddress=IPv4Address("TCP", peer, 40000))
        self.proto.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def run(self, turns: int = 10_000) -> None:
        """Let the reactor turns pass until nothing is scheduled (bounded)."""
        for _ in range(turns):
            if not any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)
        raise AssertionError("answers never finished")

    def answers(self) -> list[tuple[BOOTP, dict[object, object]]]:
        return unframe(self.transport.value())


def mtypes(msgs: list[tuple[BOOTP, dict[object, object]]]) -> list[int]:
    return [int(o["message-type"]) for _, o in msgs]  # type: ignore[call-overload]


# -- the query types ------------------------------------------------------------------


def test_query_by_relay_id_returns_each_active_binding_of_that_relay_then_done():
    server, got = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query(relay_info=bytes([12, 2]) + b"R1")))
    conn.run()
    msgs = conn.answers()
    assert mtypes(msgs) == [M.LEASEACTIVE, M.LEASEACTIVE, LEASEQUERYDONE]
    assert {p.ciaddr for p, _ in msgs[:2]} == {int_to_ip(got["a"]), int_to_ip(got["b"])}
    for p, opts in msgs:
        assert p.op == 2 and p.xid == 0xB01C
    for p, opts in msgs[:2]:
        hw = mac(1) if p.ciaddr == int_to_ip(got["a"]) else mac(2)
        assert bytes(p.chaddr)[: p.hlen] == hw and p.htype == 1
        assert opts["relay_agent_information"] == opt82(b"cm-1", b"R1")  # as the relay inserted it
        assert opts["lease_time"] == 3600 - 100
        assert opts["client-last-transaction-time"] == 100
        assert opts[BASE_TIME] == struct.pack("!I", NOW + 100)
        assert opts[DHCP_STATE] == bytes([2])  # ACTIVE
    assert server.counters.received["BULKLEASEQUERY"] == 1
    assert server.counters.sent["LEASEACTIVE"] == 2 and server.counters.sent["LEASEQUERYDONE"] == 1


def test_query_by_remote_id_returns_only_that_remote_ids_bindings():
    server, got = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-2")))
    conn.run()
    msgs = conn.answers()
    assert mtypes(msgs) == [M.LEASEACTIVE, LEASEQUERYDONE]
    assert msgs[0][0].ciaddr == int_to_ip(got["c"])
    assert msgs[0][1]["relay_agent_information"] == opt82(b"cm-2", b"R2")


def test_query_for_a_remote_id_nobody_has_is_just_done():
    server, _ = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-9")))
    conn.run()
    assert mtypes(conn.answers()) == [LEASEQUERYDONE]


def test_query_for_all_returns_every_configured_address_active_or_unassigned():
    server, got = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query()))
    conn.run()
    msgs = conn.answers()
    assert mtypes(msgs)[-1] == LEASEQUERYDONE and mtypes(msgs).count(LEASEQUERYDONE) == 1
    by_address = {p.ciaddr: o for p, o in msgs[:-1]}
    assert len(by_address) == len(msgs) - 1, "an address was answered twice"
    # The scope's ten addresses and the reservation 10.1.0.50 outside its range.
    configured = {f"10.1.0.{n}" for n in range(100, 110)} | {"10.1.0.50"}
    assert set(by_address) == configured
    active = {a for a, o in by_address.items() if o["message-type"] == M.LEASEACTIVE}
    assert active == {int_to_ip(a) for a in got.values()}
    for address in configured - active:
        assert by_address[address]["message-type"] == M.LEASEUNASSIGNED
        assert by_address[address][DHCP_STATE] == bytes([1])  # AVAILABLE


def test_expired_binding_is_not_active():
    server, got = populated()
    conn = Conn(server, now=NOW + 3600)  # every lease has run out, none swept yet
    conn.send(framed(bulk_query(relay_info=bytes([12, 2]) + b"R1")))
    conn.run()
    assert mtypes(conn.answers()) == [LEASEQUERYDONE]


def test_query_start_time_leaves_out_bindings_last_seen_before_it():
    server, got = populated()
    late = bind(server, mac(4), opt82(b"cm-1", b"R1"), now=NOW + 50)
    conn = Conn(server)
    conn.send(framed(bulk_query(relay_info=bytes([12, 2]) + b"R1",
                                extra=[(QUERY_START, struct.pack("!I", NOW + 10))])))
    conn.run()
    msgs = conn.answers()
    assert mtypes(msgs) == [M.LEASEACTIVE, LEASEQUERYDONE]
    assert msgs[0][0].ciaddr == int_to_ip(late)


# -- queries that get no bindings -------------------------------------------------------


def status(msg: tuple[BOOTP, dict[object, object]]) -> tuple[int, bytes]:
    value = msg[1][STATUS_CODE]
    assert isinstance(value, bytes)
    return value[0], value[1:]


def test_unsupported_query_ends_with_status_not_allowed():
    server, _ = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query(extra=[(221, b"\x00vpn-red")])))  # RFC 6607 VPN id
    conn.run()
    msgs = conn.answers()
    assert mtypes(msgs) == [LEASEQUERYDONE]
    assert msgs[0][0].xid == 0xB01C
    code, text = status(msgs[0])
    assert code == NOT_ALLOWED and b"VPN" in text
    assert server.counters.sent["LEASEQUERYDONE"] == 1


def test_malformed_queries_end_with_status_malformed_query_and_the_connection_goes_on():
    server, got = populated()
    conn = Conn(server)
    two_keys = bulk_query(relay_info=bytes([2, 4]) + b"cm-1" + bytes([12, 2]) + b"R1", xid=1)
    with_ciaddr = bulk_query(ciaddr=int_to_ip(got["a"]), xid=2)
    single = bulk_query(mtype=10, relay_info=bytes([2, 4]) + b"cm-1", xid=3)  # a DHCPLEASEQUERY over TCP
    good = bulk_query(relay_info=bytes([2, 4]) + b"cm-2", xid=4)
    conn.send(b"".join(framed(m) for m in (two_keys, with_ciaddr, single, good)))
    conn.run()
    msgs = conn.answers()
    assert [(p.xid, o["message-type"]) for p, o in msgs] == [
        (1, LEASEQUERYDONE), (2, LEASEQUERYDONE), (3, LEASEQUERYDONE), (4, M.LEASEACTIVE), (4, LEASEQUERYDONE)]
    assert all(status(m)[0] == MALFORMED_QUERY for m in msgs[:3])
    assert not conn.transport.disconnecting


# -- the connection ------------------------------------------------------------------------


def test_a_query_split_across_reads_is_answered_once_whole():
    server, got = populated()
    conn = Conn(server)
    data = framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-2"))
    for i in range(len(data) - 1):
        conn.send(data[i:i + 1])
        conn.run()
        assert conn.transport.value() == b"", f"answered after {i + 1} of {len(data)} bytes"
    conn.send(data[-1:])
    conn.run()
    assert mtypes(conn.answers()) == [M.LEASEACTIVE, LEASEQUERYDONE]


def test_pipelined_queries_are_answered_in_order_each_with_its_xid():
    server, got = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-1", xid=10))
              + framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-2", xid=11))[:5])
    conn.send(framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-2", xid=11))[5:])
    conn.run()
    msgs = conn.answers()
    assert [(p.xid, o["message-type"]) for p, o in msgs] == [
        (10, M.LEASEACTIVE), (10, M.LEASEACTIVE), (10, LEASEQUERYDONE), (11, M.LEASEACTIVE), (11, LEASEQUERYDONE)]


def test_a_stranger_is_refused_and_counted():
    server, _ = populated()
    conn = Conn(server, peer="10.1.0.253")
    assert conn.transport.disconnecting
    conn.send(framed(bulk_query()))
    conn.run()
    assert conn.transport.value() == b""
    assert server.counters.drops["bulk-leasequery-not-allowed"] == 1
    assert server.counters.received["BULKLEASEQUERY"] == 0
    assert not conn.service.connections


def test_an_allowed_subnet_is_accepted():
    server, _ = populated()
    conn = Conn(server, peer="10.7.3.4")
    conn.send(framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-2")))
    conn.run()
    assert mtypes(conn.answers()) == [M.LEASEACTIVE, LEASEQUERYDONE]


def test_connections_beyond_the_bound_are_refused():
    server, _ = populated()
    first = Conn(server, max_connections=1)
    second = BulkProtocol(first.service)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.0.254", 40001))
    second.makeConnection(transport)
    assert transport.disconnecting and not first.transport.disconnecting
    assert server.counters.drops["bulk-leasequery-busy"] == 1


class BufferedTransport(StringTransport):
    """A transport whose send buffer holds ``size`` bytes: beyond that it pauses its producer, as Twisted's do."""

    def __init__(self, size: int, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.size = size
        self.paused = False
        self.most = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        self.most = max(self.most, len(self.value()))
        if len(self.value()) > self.size and self.producer is not None and not self.paused:
            self.paused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        out = self.value()
        self.clear()
        if self.paused:
            self.paused = False
            self.producer.resumeProducing()
        return out


def test_answers_wait_while_the_send_buffer_is_full():
    server, _ = populated()
    server.configure(loads(CONFIG.replace("ranges = 10.1.0.100-10.1.0.109", "ranges = 10.1.0.100-10.1.3.250")
                           .replace("subnet = 10.1.0.0/24", "subnet = 10.1.0.0/22")))
    conn = Conn(server)
    conn.transport = BufferedTransport(16_384, hostAddress=IPv4Address("TCP", "10.1.0.1", 67),
                                       peerAddress=IPv4Address("TCP", "10.1.0.254", 40000))
    conn.proto = BulkProtocol(conn.service)
    conn.proto.makeConnection(conn.transport)
    conn.send(framed(bulk_query()))
    stream = b""
    drains = 0
    for _ in range(1000):
        conn.clock.advance(0)
        if not conn.transport.paused:
            break
        # Nothing more is written while the buffer is full, however long the reader takes.
        held = len(conn.transport.value())
        conn.clock.advance(10)
        assert len(conn.transport.value()) == held
        stream += conn.transport.drain()
        drains += 1
    stream += conn.transport.value()
    msgs = unframe(stream)
    assert mtypes(msgs)[-1] == LEASEQUERYDONE
    assert len(msgs) == (4 * 256 - 100 - 5) + 1 + 1  # the range, the reservation 10.1.0.50, DONE
    assert drains > 10, "the answer never filled the buffer: nothing was paced"
    # At most one message beyond the buffer's size was ever queued.
    assert conn.transport.most <= 16_384 + 600


def test_too_many_queries_ahead_closes_the_connection():
    server, _ = populated()
    conn = Conn(server)
    conn.send(b"".join(framed(bulk_query(xid=i)) for i in range(MAX_QUEUED + 2)))
    assert conn.transport.disconnecting
    assert server.counters.drops["bulk-leasequery-too-many-queries"] == 1


def test_zero_length_frame_closes_the_connection():
    server, _ = populated()
    conn = Conn(server)
    conn.send(b"\x00\x00")
    assert conn.transport.disconnecting


def test_idle_connection_is_closed_after_the_timeout():
    server, _ = populated()
    conn = Conn(server)
    conn.send(framed(bulk_query(relay_info=bytes([2, 4]) + b"cm-2")))
    conn.run()
    conn.clock.advance(IDLE_TIMEOUT - 1)
    assert not conn.transport.disconnecting
    conn.clock.advance(1)
    assert conn.transport.disconnecting


def test_deframer_cuts_any_split():
    messages = [bytes([i]) * (i * 37 + 1) for i in range(1, 6)]
    stream = b"".join(bulklq.frame(m) for m in messages)
    for step in (1, 2, 3, 7, 64, len(stream)):
        d = bulklq.Deframer()
        out: list[bytes] = []
        for i in range(0, len(stream), step):
            out.extend(d.feed(stream[i:i + step]))
        assert out == messages and d.pending == 0


class CountingDict(dict):  # type: ignore[type-arg]
    """A lease dict that counts lookups: how much work each step of an answer did."""

    gets = 0

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        CountingDict.gets += 1
        return super().get(key, default)


def test_each_step_of_an_answer_visits_a_bounded_number_of_leases():
    from cnrd.leases.model import Lease, LeaseState

    table = LeaseTable()
    n = 5000
    table.load([Lease(0x0A100000 + i, LeaseState.LEASED, "x", b"\x01" + mac(i), None, NOW, NOW + 3600, NOW,
                      relay_info=opt82(b"cm-%d" % (i % 7), b"R1")) for i in range(n)], NOW)
    table.leases = CountingDict(table.leases)
    for key, expect in ((b"cm-nobody", 0), (b"cm-3", len(range(3, n, 7)))):
        query = bulklq.query_of(bulk_query(relay_info=bytes([2, len(key)]) + key))
        assert isinstance(query, bulklq.BulkQuery)
        steps = bulklq.answers(table, query, NOW + 1)
        most, sent, visited = 0, 0, 0
        for _ in range(2 * n):
            CountingDict.gets = 0
            item = next(steps, "end")
            if item == "end":
                break
            most = max(most, CountingDict.gets)
            visited += CountingDict.gets
            sent += item is not None and item.options[53] == bytes([M.LEASEACTIVE])
        assert sent == expect and visited >= n  # every lease was looked at
        assert most <= min(bulklq.TICK, n // 10), f"one step looked at {most} of {n} leases"
