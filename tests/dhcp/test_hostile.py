"""Issue 18 item 8: malformed and hostile requests, one named case per class.

Each class is one that has produced CVEs in DHCP servers.  Every case goes
through the real request path (the Runtime with a fake port, as the socket
adapter feeds it) and shows the request is dropped and counted under its own
reason in ``counters.drops`` (``cnrd_dhcp_drops_total{reason=...}``), that
nothing is sent, that the lease table is unchanged (nothing allocated), and
that the server still answers a well-formed DISCOVER afterwards (no crash,
no wedged state).  The codec's random fuzzing stays in test_fuzz.py.

The rules, from the RFCs:

* RFC 2131 §2 / RFC 2132 §2: options are code, length, value; an option
  whose length byte is missing (``truncated-option``) or whose value runs
  past the end of its area (``option-overrun``) cannot be decoded.
* RFC 2132 §9.3: option 52 says the ``file``/``sname`` fields hold options;
  a value other than 1..3, or fields that do not decode as options, is
  ``bad-overload``.
* RFC 2131 §2: chaddr is 16 bytes, so hlen > 16 is ``bad-hlen``.
* RFC 2132 §9.14: option 61 is at least 2 bytes (type and identifier); a
  zero-length one is ``bad-client-id``.
* RFC 1542 §4.1.1: relay agents discard requests whose hops exceeds 16, so
  one arriving with more is ``too-many-hops``.
* RFC 1542 §4.1.1 / RFC 2131 §4.1: giaddr is the relaying agent's own
  address and replies go there; a request whose giaddr is one of the
  server's own addresses, or that came from 0.0.0.0 or was broadcast on a
  link whose own subnet holds its giaddr (a host on that link, not a relay)
  is ``giaddr-spoofed``.
"""

from __future__ import annotations

import struct

import pytest

from cnrd.dhcp.packet import MAGIC_COOKIE, MalformedPacket, ip_to_int, parse
from cnrd.dhcp.packet import MessageType as M
from tests.adminkit import STANDALONE, Server
from cnrd.dhcp.server import Interface
from tests.dhcp.helpers import IFACE, mac, request
from tests.test_service import Rx

_HEADER = struct.Struct("!BBBBIHHIIII16s64s128s")


def raw(options: bytes, *, hlen: int = 6, hops: int = 0, giaddr: int = 0, sname: bytes = b"",
        file: bytes = b"", chaddr: bytes = mac(9)) -> bytes:
    """A BOOTREQUEST as bytes, with the options area given exactly (no END added)."""
    head = _HEADER.pack(1, 1, hlen, hops, 0x5150, 0, 0, 0, 0, 0, giaddr, chaddr, sname, file)
    return head + MAGIC_COOKIE + options


DISCOVER = b"\x35\x01\x01"


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path, STANDALONE)
    yield s
    s.dhcp.stopService()


def snapshot(s: Server) -> dict[int, bytes]:
    return {a: lease.pack() for a, lease in s.dhcp.table.leases.items()}


def refused(s: Server, rx: Rx, reason: str) -> None:
    """``rx`` is dropped under ``reason``, nothing is sent or allocated, and the server still serves."""
    before = snapshot(s)
    drops_before = dict(s.dhcp.server.counters.drops)
    s.port.sent.clear()
    s.port.on_batch([rx], 0)
    assert s.port.sent == []
    assert snapshot(s) == before
    drops = s.dhcp.server.counters.drops
    assert drops[reason] == drops_before.get(reason, 0) + 1, dict(drops)
    # Only that reason moved.
    assert sum(drops.values()) == sum(drops_before.values()) + 1
    s.port.on_batch([Rx(request(M.DISCOVER, mac(77)).serialize())], 0)
    assert [p.message_type for _, p, *_ in s.port.sent] == [M.OFFER]


def codec_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as e:
        parse(data)
    assert e.value.drop == reason


# -- the options area ---------------------------------------------------------


def test_truncated_options_option_without_its_length_byte(srv):
    data = raw(DISCOVER + b"\x3d")  # option 61's code is the last byte
    codec_refuses(data, "truncated-option")
    refused(srv, Rx(data), "truncated-option")


def test_option_length_past_the_end_of_the_packet(srv):
    data = raw(DISCOVER + b"\x0c\xff" + b"host")  # host-name claims 255 bytes, 4 follow
    codec_refuses(data, "option-overrun")
    refused(srv, Rx(data), "option-overrun")


def test_overload_pointing_at_garbage_in_file(srv):
    # Option 52 = 1 (file holds options), but file holds a length running past its 128 bytes.
    data = raw(DISCOVER + b"\x34\x01\x01\xff", file=b"\x0c\xf0garbage")
    codec_refuses(data, "bad-overload")
    refused(srv, Rx(data), "bad-overload")


def test_overload_pointing_at_garbage_in_sname(srv):
    data = raw(DISCOVER + b"\x34\x01\x02\xff", sname=b"\x01" * 63 + b"\x01")  # last option lacks its length
    codec_refuses(data, "bad-overload")
    refused(srv, Rx(data), "bad-overload")


def test_overload_with_an_impossible_value(srv):
    data = raw(DISCOVER + b"\x34\x01\x07\xff")
    codec_refuses(data, "bad-overload")
    refused(srv, Rx(data), "bad-overload")


# -- header fields and option values ------------------------------------------


def test_chaddr_length_over_16(srv):
    data = raw(DISCOVER + b"\xff", hlen=17)
    codec_refuses(data, "bad-hlen")
    refused(srv, Rx(data), "bad-hlen")


def test_chaddr_length_over_16_reaching_the_core(srv):
    # A packet object built past the codec (the codec refuses it first on the wire).
    p = request(M.DISCOVER, mac(9))
    p.hlen = 200
    before = snapshot(srv)
    from tests.dhcp.helpers import BCAST
    assert srv.dhcp.server.handle(p, BCAST, 0) is None
    assert srv.dhcp.server.counters.drops["bad-hlen"] == 1
    assert snapshot(srv) == before


def test_zero_length_client_id(srv):
    data = raw(DISCOVER + b"\x3d\x00\xff")
    parse(data)  # well framed: the value is what is wrong
    refused(srv, Rx(data), "bad-client-id")


def test_one_byte_client_id(srv):
    refused(srv, Rx(raw(DISCOVER + b"\x3d\x01\x01\xff")), "bad-client-id")


def test_hops_over_16(srv):
    refused(srv, Rx(raw(DISCOVER + b"\xff", hops=17)), "too-many-hops")


def test_hops_16_is_still_served(srv):
    srv.port.on_batch([Rx(raw(DISCOVER + b"\xff", hops=16))], 0)
    assert [p.message_type for _, p, *_ in srv.port.sent] == [M.OFFER]
    assert srv.dhcp.server.counters.drops["too-many-hops"] == 0


# -- giaddr -------------------------------------------------------------------

OURS = 0x0A010001  # 10.1.0.1, the server's address on eth1 (10.1.0.0/24)
ON_LINK = 0x0A0100FE  # 10.1.0.254, another address of that link


def test_giaddr_spoofing_the_servers_own_address(srv):
    # Unicast from an address that could be a relay's, but naming the server as the relay.
    rx = Rx(raw(DISCOVER + b"\xff", hops=1, giaddr=OURS), src_ip="10.1.0.254", src_port=67, dst_ip="10.1.0.1")
    refused(srv, rx, "giaddr-spoofed")


def test_giaddr_spoofing_another_local_subnet_by_broadcast(srv):
    # A host on eth1's link (10.1.0.0/24) broadcasting a "relayed" request
    # that names an address of eth2's subnet, to get an address there.
    srv.dhcp.server.set_interfaces([IFACE, Interface("eth2", 3, ((ip_to_int("10.2.0.1"), 24),))])
    rx = Rx(raw(DISCOVER + b"\xff", hops=1, giaddr=ip_to_int("10.2.0.77")), src_ip="10.1.0.254", src_port=67)
    refused(srv, rx, "giaddr-spoofed")


def test_a_relay_broadcasting_on_its_own_link_is_served(srv):
    # RFC 1542 §4.1.1 lets a relay broadcast; one on the servers' link does
    # so to reach both failover partners.
    rx = Rx(raw(DISCOVER + b"\xff", hops=1, giaddr=ON_LINK), src_ip="10.1.0.254", src_port=67)
    srv.port.on_batch([rx], 0)
    assert [p.message_type for _, p, *_ in srv.port.sent] == [M.OFFER]
    assert srv.dhcp.server.counters.drops["giaddr-spoofed"] == 0


def test_giaddr_from_an_unconfigured_source(srv):
    rx = Rx(raw(DISCOVER + b"\xff", hops=1, giaddr=ON_LINK), src_ip="0.0.0.0", src_port=68, dst_ip="10.1.0.1")
    refused(srv, rx, "giaddr-spoofed")


def test_a_real_relay_on_the_link_is_served(srv):
    # The control: the same giaddr, sent by the relay to the server's address.
    rx = Rx(raw(DISCOVER + b"\xff", hops=1, giaddr=ON_LINK), src_ip="10.1.0.254", src_port=67, dst_ip="10.1.0.1")
    srv.port.on_batch([rx], 0)
    sent = srv.port.sent
    assert [p.message_type for _, p, *_ in sent] == [M.OFFER]
    assert sent[0][2] == "10.1.0.254" and sent[0][3] == 67  # RFC 2131 §4.1: back to the relay
    assert srv.dhcp.server.counters.drops["giaddr-spoofed"] == 0
