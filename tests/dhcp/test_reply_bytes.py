"""The exact bytes of replies as they leave the request path.

Each expected reply is written out field by field from RFC 2131 §2
(Figure 1: op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr,
giaddr, chaddr, sname, file, the magic cookie) and RFC 2132's TLV options:
option 53 first, then 54 (server identifier), 51/58/59 (lease, T1 = 1/2,
T2 = 7/8 of it, RFC 2131 §4.4.5), 1 (subnet mask), then the configured
options in the order of the client's parameter request list (RFC 2132 §9.8)
or the policy's order without one, routers/DNS/domain when configured but
not asked for, the host name, option 82 echoed to a relay (RFC 3046 §2.2),
option 61 echoed (RFC 6842), END, and zero padding to BOOTP's 300 bytes
(RFC 951).  The datagrams go through :class:`RequestPath` and a list port,
so every layer between the received bytes and ``sendmsg`` is covered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cnrd.config import loads
from cnrd.dhcp.packet import BOOTREQUEST, DhcpPacket
from cnrd.dhcp.protocol import RequestPath
from cnrd.dhcp.server import DhcpServer, Interface
from cnrd.leases.table import LeaseTable
from cnrd.text import ip_to_int

CONFIG = """
[server]
name = test
interfaces = eth1
data-dir = /nonexistent

[policy default]
lease-time = 3600
option.routers = 10.1.0.1
option.domain-name-servers = 10.1.0.1, 10.1.0.2
option.domain-name = example.org
option.ntp-servers = 10.1.0.3

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.109

[scope far]
subnet = 10.8.0.0/16
ranges = 10.8.0.10-10.8.0.20
"""

NOW = 1_000_000
MAC = bytes.fromhex("020000000001")
CID = b"\x01" + MAC


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def opt(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def header(*, xid: int, flags: int = 0, ciaddr: str = "0.0.0.0", yiaddr: str = "0.0.0.0",
           giaddr: str = "0.0.0.0", chaddr: bytes = MAC, op: int = 2) -> bytes:
    """RFC 2131 Figure 1 up to and including the magic cookie (RFC 2132 §2)."""
    return (bytes((op, 1, len(chaddr), 0)) + u32(xid) + b"\0\0" + struct.pack("!H", flags)
            + ip(ciaddr) + ip(yiaddr) + ip("0.0.0.0") + ip(giaddr)
            + chaddr.ljust(16, b"\0") + bytes(64) + bytes(128) + b"\x63\x82\x53\x63")


def finish(head: bytes, *options: bytes) -> bytes:
    out = head + b"".join(options) + b"\xff"
    return out + bytes(max(0, 300 - len(out)))


LEASE_OPTS = (opt(51, u32(3600)) + opt(58, u32(1800)) + opt(59, u32(3150)))


class _Rx:
    def __init__(self, data: bytes, *, src: str = "0.0.0.0", dst: str = "255.255.255.255",
                 src_port: int = 68) -> None:
        self.data = data
        self.ifindex = 2
        self.local_ip = "10.1.0.1"
        self.dst_ip = dst
        self.src_ip = src
        self.src_port = src_port


class _Port:
    max_batch = 64
    kernel_drops = 0

    def __init__(self) -> None:
        self.out: list[tuple[bytes, str, int]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def send(self, data: bytes, dst_ip: str, dst_port: int, *, ifindex: int | None = None,
             src_ip: str | None = None) -> None:
        self.out.append((data, dst_ip, dst_port))

    def send_to_hw(self, data: bytes, yiaddr: str, chaddr: bytes, ifindex: int, dst_port: int,
                   src_ip: str | None = None) -> None:
        self.out.append((data, "hw:" + yiaddr, dst_port))


class _Clock:
    def seconds(self) -> float:
        return float(NOW)

    def callLater(self, delay: float, f: Callable[..., object], *a: object, **kw: object) -> "_Clock":
        return self

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass


def make_path() -> tuple[RequestPath, _Port]:
    server = DhcpServer(loads(CONFIG), LeaseTable())
    server.set_interfaces([Interface("eth1", 2, ((ip_to_int("10.1.0.1"), 24),))])

    def commit(then: Callable[[bool], None]) -> None:
        server.table.take_dirty()
        then(True)

    path = RequestPath(server, _Clock(), commit, has_dirty=lambda: server.table.has_dirty,  # type: ignore[arg-type]
                       max_awaiting=lambda: 1 << 30)
    port = _Port()
    path.port = port
    return path, port


def dhcp(mtype: int, *, xid: int, options: bytes = b"", flags: int = 0, ciaddr: str = "0.0.0.0",
         giaddr: str = "0.0.0.0") -> bytes:
    """A client's request, laid out by hand as RFC 2131 Figure 1 says."""
    head = header(xid=xid, flags=flags, ciaddr=ciaddr, giaddr=giaddr, op=1)
    return head + opt(53, bytes([mtype])) + options + b"\xff"


def answer(path: RequestPath, port: _Port, *rx: _Rx) -> list[tuple[bytes, str, int]]:
    port.out.clear()
    path.on_batch(list(rx), 0)
    return list(port.out)


def test_local_discover_offer_without_parameter_list() -> None:
    """No option 55: every configured option, in the policy's order (RFC 2131 §4.3.1)."""
    path, port = make_path()
    [(data, dst, dport)] = answer(path, port, _Rx(dhcp(1, xid=0x1234)))
    assert (dst, dport) == ("hw:10.1.0.100", 68)  # RFC 2131 §4.1: unicast to chaddr/yiaddr
    assert data == finish(
        header(xid=0x1234, yiaddr="10.1.0.100"),
        opt(53, b"\x02"), opt(54, ip("10.1.0.1")), LEASE_OPTS, opt(1, ip("255.255.255.0")),
        opt(3, ip("10.1.0.1")), opt(6, ip("10.1.0.1") + ip("10.1.0.2")), opt(15, b"example.org"),
        opt(42, ip("10.1.0.3")))


def test_discover_and_request_follow_the_parameter_request_list_order() -> None:
    """Option 55 orders the configured options; unasked routers/DNS/domain still go, NTP does not."""
    path, port = make_path()
    prl = opt(55, bytes([15, 6, 1, 51, 54, 12]))
    opts = opt(61, CID) + prl + opt(12, b"pc1")
    [(offer, _, _)] = answer(path, port, _Rx(dhcp(1, xid=7, options=opts, flags=0x8000)))
    assert offer == finish(
        header(xid=7, yiaddr="10.1.0.100", flags=0x8000),
        opt(53, b"\x02"), opt(54, ip("10.1.0.1")), LEASE_OPTS, opt(1, ip("255.255.255.0")),
        opt(15, b"example.org"), opt(6, ip("10.1.0.1") + ip("10.1.0.2")), opt(3, ip("10.1.0.1")),
        opt(12, b"pc1"), opt(61, CID))
    req = opts + opt(50, ip("10.1.0.100")) + opt(54, ip("10.1.0.1"))
    [(ack, dst, dport)] = answer(path, port, _Rx(dhcp(3, xid=8, options=req, flags=0x8000)))
    assert (dst, dport) == ("255.255.255.255", 68)
    assert ack == finish(
        header(xid=8, yiaddr="10.1.0.100", flags=0x8000),
        opt(53, b"\x05"), opt(54, ip("10.1.0.1")), LEASE_OPTS, opt(1, ip("255.255.255.0")),
        opt(15, b"example.org"), opt(6, ip("10.1.0.1") + ip("10.1.0.2")), opt(3, ip("10.1.0.1")),
        opt(12, b"pc1"), opt(61, CID))


def test_relayed_exchange_echoes_relay_information_and_client_id() -> None:
    """Relayed: giaddr kept, reply to the relay's port 67, option 82 then 61 echoed."""
    path, port = make_path()
    relay = opt(82, opt(1, b"eth0/1") + opt(2, b"sw1"))
    prl = opt(55, bytes([1, 3, 6, 15, 51, 54]))
    opts = opt(61, CID) + prl + relay
    [(offer, dst, dport)] = answer(path, port, _Rx(dhcp(1, xid=0xABCDEF01, options=opts, giaddr="10.8.0.1"),
                                                  src="10.8.0.1", dst="10.1.0.1", src_port=67))
    assert (dst, dport) == ("10.8.0.1", 67)
    assert offer == finish(
        header(xid=0xABCDEF01, yiaddr="10.8.0.10", giaddr="10.8.0.1"),
        opt(53, b"\x02"), opt(54, ip("10.1.0.1")), LEASE_OPTS, opt(1, ip("255.255.0.0")),
        opt(3, ip("10.1.0.1")), opt(6, ip("10.1.0.1") + ip("10.1.0.2")), opt(15, b"example.org"),
        relay, opt(61, CID))
    req = opts + opt(50, ip("10.8.0.10")) + opt(54, ip("10.1.0.1"))
    [(ack, dst, dport)] = answer(path, port, _Rx(dhcp(3, xid=0xABCDEF02, options=req, giaddr="10.8.0.1"),
                                                src="10.8.0.1", dst="10.1.0.1", src_port=67))
    assert (dst, dport) == ("10.8.0.1", 67)
    assert ack == finish(
        header(xid=0xABCDEF02, yiaddr="10.8.0.10", giaddr="10.8.0.1"),
        opt(53, b"\x05"), opt(54, ip("10.1.0.1")), LEASE_OPTS, opt(1, ip("255.255.0.0")),
        opt(3, ip("10.1.0.1")), opt(6, ip("10.1.0.1") + ip("10.1.0.2")), opt(15, b"example.org"),
        relay, opt(61, CID))


def test_renewal_ack_goes_to_ciaddr() -> None:
    """RENEWING (RFC 2131 §4.3.2, §4.1): ciaddr filled, the ACK unicast to it, ciaddr echoed."""
    path, port = make_path()
    opts = opt(61, CID)
    answer(path, port, _Rx(dhcp(1, xid=1, options=opts)))
    answer(path, port, _Rx(dhcp(3, xid=2, options=opts + opt(50, ip("10.1.0.100")) + opt(54, ip("10.1.0.1")))))
    [(ack, dst, dport)] = answer(path, port, _Rx(dhcp(3, xid=3, options=opts, ciaddr="10.1.0.100"),
                                                src="10.1.0.100", dst="10.1.0.1"))
    assert (dst, dport) == ("10.1.0.100", 68)
    assert ack == finish(
        header(xid=3, yiaddr="10.1.0.100"),
        opt(53, b"\x05"), opt(54, ip("10.1.0.1")), LEASE_OPTS, opt(1, ip("255.255.255.0")),
        opt(3, ip("10.1.0.1")), opt(6, ip("10.1.0.1") + ip("10.1.0.2")), opt(15, b"example.org"),
        opt(42, ip("10.1.0.3")), opt(61, CID))


def test_nak_for_an_address_of_another_network() -> None:
    """INIT-REBOOT on the wrong network (RFC 2131 §4.3.2): NAK, broadcast, 54, 56 and 61 only."""
    path, port = make_path()
    opts = opt(61, CID) + opt(50, ip("192.168.9.9"))
    [(nak, dst, dport)] = answer(path, port, _Rx(dhcp(3, xid=9, options=opts)))
    assert (dst, dport) == ("255.255.255.255", 68)
    assert nak == finish(
        header(xid=9),
        opt(53, b"\x06"), opt(54, ip("10.1.0.1")), opt(56, b"requested address is not on this network"),
        opt(61, CID))


def test_replies_parse_back_as_the_reply_packet() -> None:
    """A sanity check of the helpers: what the request builder lays out is what the codec reads."""
    raw = dhcp(1, xid=5, options=opt(61, CID))
    p = DhcpPacket(BOOTREQUEST, 1, 6, 0, 5, 0, 0, 0, 0, 0, 0, MAC, b"", b"", {53: b"\x01", 61: CID}, True)
    assert raw == p.serialize()[:len(raw)]


def test_each_datagram_is_judged_by_its_own_source() -> None:
    """A relayed request from 0.0.0.0 cannot come from a relay (RFC 1542 §4.1.1) and is dropped; the same
    request from the relay's address, in the next batch and in the same one, is answered."""
    path, port = make_path()
    relayed = dhcp(1, xid=11, options=opt(61, CID), giaddr="10.8.0.1")
    assert answer(path, port, _Rx(relayed, src="0.0.0.0", dst="10.1.0.1", src_port=67)) == []
    [(_, dst, _)] = answer(path, port, _Rx(relayed, src="10.8.0.1", dst="10.1.0.1", src_port=67))
    assert dst == "10.8.0.1"
    both = answer(path, port, _Rx(relayed, src="10.8.0.1", dst="10.1.0.1", src_port=67),
                  _Rx(relayed, src="0.0.0.0", dst="10.1.0.1", src_port=67))
    assert len(both) == 1
    assert path.server.counters.drops["giaddr-spoofed"] == 2
