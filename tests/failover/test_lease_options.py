"""The client's option 82, host name and vendor class travel to the partner in BNDUPDs.

The seed ("DHCPLEASEQUERY and Failover"): the main communicates the
relay-agent-info (82) values to its partner in failover update messages,
so the backup can answer DHCPLEASEQUERY while the main is down.  The
draft (draft-ietf-dhc-failover-12 §12.8, table 7.1-1) carries the client's
request options in client-request-options (code 8): the DHCP magic cookie
99.130.83.99, then DHCP options; SHOULD for ACTIVE and RELEASED, SHOULD NOT
for the other statuses.  ISC dhcpd 4.4 never sends it, so a binding without
it must be taken as before.

Two in-process sessions joined by test_peer's link: bytes through the codec.
"""

from __future__ import annotations

import struct

import pytest

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import RxInfo
from cnrd.failover import wire
from cnrd.failover.bindings import bndupd
from cnrd.failover.wire import BindingStatus as B
from cnrd.failover.wire import MessageType as FM
from cnrd.leases.model import Lease, LeaseState
from tests.dhcp.helpers import mac, request, u32
from tests.failover.test_peer import T0, Side, pair

GIADDR = ip_to_int("10.1.0.254")
SERVER = ip_to_int("10.1.0.1")
# What ISC dhcrelay -a puts in: circuit-id (1) and remote-id (2) sub-options.
AGENT = b"\x01\x05eth17\x02\x06\x02\xaa\xbb\xcc\xdd\xee"
HOST = b"laptop-7"
VENDOR = b"MSFT 5.0"
COOKIE = bytes((99, 130, 83, 99))
RELAYED = RxInfo(2, SERVER, SERVER, GIADDR, 67)
DIRECT = RxInfo(2, SERVER, SERVER, 0, 68)


def normal():
    main, backup, link = pair()
    link.connect()
    link.advance(90)  # past the MCLT: both NORMAL
    assert main.session.state.name == backup.session.state.name == "NORMAL"
    return main, backup, link


def relayed_dora(side: Side, n: int, now: int, **extra: bytes) -> int:
    """DISCOVER and REQUEST through a relay that adds ``AGENT``; the address ACKed."""
    opts = dict(o82=AGENT, o12=HOST, o60=VENDOR)
    opts.update(extra)
    offer = side.server.handle(request(M.DISCOVER, mac(n), giaddr=GIADDR, **opts), RELAYED, now)
    assert offer is not None
    yi = offer.packet.yiaddr
    ack = side.server.handle(request(M.REQUEST, mac(n), giaddr=GIADDR, o50=u32(yi), o54=u32(SERVER), **opts),
                             RELAYED, now)
    assert ack is not None and ack.packet.options[53] == bytes([M.ACK])
    return yi


def dhcp_options(value: bytes) -> dict[int, bytes]:
    """An independent reading of cookie + RFC 2132 options (no cnrd code)."""
    assert value[:4] == COOKIE
    out: dict[int, bytes] = {}
    i = 4
    while i < len(value) and value[i] != 255:
        code, length = value[i], value[i + 1]
        out[code] = value[i + 2 : i + 2 + length]
        i += 2 + length
    return out


def sent_bndupds(side: Side, address: int) -> list[wire.Message]:
    return [m for m in side.wire_log if m.type == FM.BNDUPD and m.assigned_address == address]


def from_partner(side: Side, msg: wire.Message, now: int) -> list[wire.Message]:
    """Deliver ``msg`` as if from the partner; the BNDACKs the side answers with."""
    for got in side.framer.feed(wire.encode(msg)):
        side.session.receive(got, now)
    side.table.take_dirty()
    return side.session.take().acks


def test_relayed_clients_option_82_host_name_and_vendor_class_reach_the_backup():
    main, backup, link = normal()
    address = relayed_dora(main, 7, link.now)
    link.settle()
    sent = sent_bndupds(main, address)
    assert sent, "the main sent no BNDUPD for the lease"
    raw = sent[-1].get(int(wire.Option.CLIENT_REQUEST_OPTIONS))
    assert raw is not None, "the BNDUPD carries no client-request-options"
    assert dhcp_options(raw) == {82: AGENT, 12: HOST, 60: VENDOR}
    theirs = backup.table.get(address)
    assert theirs is not None and theirs.state is LeaseState.LEASED
    assert (theirs.relay_info, theirs.host_name, theirs.vendor_class) == (AGENT, HOST.decode(), VENDOR)


def test_a_renewal_straight_from_the_client_keeps_the_relays_option_82_on_both():
    main, backup, link = normal()
    address = relayed_dora(main, 8, link.now)
    link.settle()
    link.advance(30)
    # RENEWING (RFC 2131 §4.3.2): unicast from the client, ciaddr set, no relay, no option 82.
    ack = main.server.handle(request(M.REQUEST, mac(8), ciaddr=address), DIRECT, link.now)
    assert ack is not None and ack.packet.options[53] == bytes([M.ACK])
    link.settle()
    assert len(sent_bndupds(main, address)) >= 2, "the renewal sent no BNDUPD"
    for side in (main, backup):
        lease = side.table.get(address)
        assert lease is not None and lease.cltt == link.now
        assert (lease.relay_info, lease.vendor_class) == (AGENT, VENDOR)


def test_a_client_without_any_of_them_sends_no_client_request_options():
    main, backup, link = normal()
    offer = main.server.handle(request(M.DISCOVER, mac(9)), RxInfo(2, SERVER, 0xFFFFFFFF, 0), link.now)
    yi = offer.packet.yiaddr
    main.server.handle(request(M.REQUEST, mac(9), o50=u32(yi), o54=u32(SERVER)), RxInfo(2, SERVER, 0xFFFFFFFF, 0),
                       link.now)
    link.settle()
    sent = sent_bndupds(main, yi)
    assert sent and all(m.get(int(wire.Option.CLIENT_REQUEST_OPTIONS)) is None for m in sent)
    assert backup.table.get(yi).state is LeaseState.LEASED


def isc_style_active(address: int, hw: bytes, now: int, **kw) -> wire.Message:
    """An ACTIVE BNDUPD as ISC dhcpd 4.4 sends it: no client-request-options unless given."""
    return wire.bndupd(0x77, now, assigned_address=address, binding_status=int(B.ACTIVE),
                       client_hw=b"\x01" + hw, lease_expiration=now + 600, potential_expiration=now + 900,
                       start_time_of_state=now, cltt=now, **kw)


def test_an_update_without_them_leaves_a_new_clients_fields_empty():
    main, backup, link = normal()
    address = ip_to_int("10.1.0.120")
    acks = from_partner(backup, isc_style_active(address, mac(20), link.now), link.now)
    assert [a.reject_reason for a in acks] == [None]
    lease = backup.table.get(address)
    assert lease.state is LeaseState.LEASED and lease.hw == b"\x01" + mac(20)
    assert (lease.relay_info, lease.host_name, lease.vendor_class) == (b"", "", b"")


def test_an_update_without_them_for_the_same_client_keeps_what_was_known():
    main, backup, link = normal()
    address = relayed_dora(main, 21, link.now)
    link.settle()
    link.now += 5
    acks = from_partner(backup, isc_style_active(address, mac(21), link.now), link.now)
    assert [a.reject_reason for a in acks] == [None]
    lease = backup.table.get(address)
    assert lease.cltt == link.now
    assert (lease.relay_info, lease.vendor_class) == (AGENT, VENDOR)


def test_an_update_for_another_client_without_them_drops_the_old_clients():
    main, backup, link = normal()
    address = relayed_dora(main, 22, link.now)
    link.settle()
    link.now += 700  # the first client's lease has run out
    backup.table.expire(link.now)
    acks = from_partner(backup, isc_style_active(address, mac(23), link.now), link.now)
    assert [a.reject_reason for a in acks] == [None]
    lease = backup.table.get(address)
    assert lease.hw == b"\x01" + mac(23)
    assert (lease.relay_info, lease.host_name, lease.vendor_class) == (b"", "", b"")


@pytest.mark.parametrize("blob", [
    b"",  # no cookie at all
    b"\x63\x82\x53",  # a cut cookie
    b"\x01\x02\x03\x04\x52\x02ab",  # a wrong cookie
    COOKIE + b"\x52\x09short",  # option 82 runs past the end
    COOKIE + b"\x0c",  # an option code with no length
])
def test_a_malformed_client_request_options_is_refused_and_changes_nothing(blob):
    main, backup, link = normal()
    address = ip_to_int("10.1.0.121")
    before = backup.table.get(address)
    before = None if before is None else Lease.unpack(before.pack())
    acks = from_partner(backup, isc_style_active(address, mac(24), link.now, request_options=blob), link.now)
    assert len(acks) == 1 and acks[0].assigned_address == address
    # [D] §12.21 has no code for a malformed option value: 254, "unknown".
    assert acks[0].reject_reason == wire.RejectReason.UNKNOWN
    assert "client-request-options" in (acks[0].message_text or "")
    after = backup.table.get(address)
    assert (None if after is None else Lease.unpack(after.pack())) == before
    # The link stays up and later updates are still taken.
    assert backup.session.state.name == "NORMAL"
    good = isc_style_active(address, mac(24), link.now, request_options=COOKIE + b"\x52\x02ab\xff")
    assert [a.reject_reason for a in from_partner(backup, good, link.now)] == [None]
    assert backup.table.get(address).relay_info == b"ab"


def test_pad_end_and_repeated_options_in_the_value():
    main, backup, link = normal()
    address = ip_to_int("10.1.0.122")
    # RFC 3396: a repeated option is one long option, its parts joined in order.
    blob = COOKIE + b"\x00\x00\x52\x02ab\x0c\x03box\x52\x02cd\xff\x3c\x03zzz"
    acks = from_partner(backup, isc_style_active(address, mac(25), link.now, request_options=blob), link.now)
    assert [a.reject_reason for a in acks] == [None]
    lease = backup.table.get(address)
    assert (lease.relay_info, lease.host_name, lease.vendor_class) == (b"abcd", "box", b"")


def test_free_clears_them_on_the_receiver():
    main, backup, link = normal()
    address = relayed_dora(main, 26, link.now)
    link.settle()
    link.now += 700
    backup.table.expire(link.now)
    free = wire.bndupd(0x78, link.now, assigned_address=address, binding_status=int(B.FREE),
                       lease_expiration=0, potential_expiration=0, start_time_of_state=link.now)
    assert [a.reject_reason for a in from_partner(backup, free, link.now)] == [None]
    lease = backup.table.get(address)
    assert (lease.relay_info, lease.host_name, lease.vendor_class) == (b"", "", b"")


@pytest.mark.parametrize("state,sent", [
    (LeaseState.LEASED, True), (LeaseState.RELEASED, True),
    (LeaseState.EXPIRED, False), (LeaseState.AVAILABLE, False), (LeaseState.BACKUP, False),
    (LeaseState.UNAVAILABLE, False),
])
def test_which_statuses_carry_them(state, sent):
    # [D] table 7.1-1: SHOULD for ACTIVE and RELEASED, SHOULD NOT otherwise.
    lease = Lease(0x0A010064, state=state, hw=b"\x01" + mac(1), expiration=T0 + 10, cltt=T0,
                  relay_info=AGENT, host_name="h", vendor_class=VENDOR)
    msg, _, _ = bndupd(lease.address, lease, 1, T0)
    raw = msg.get(int(wire.Option.CLIENT_REQUEST_OPTIONS))
    assert (raw is not None) is sent
    if sent:
        assert dhcp_options(raw) == {82: AGENT, 12: b"h", 60: VENDOR}
        # One option, as ISC's parser takes it (it drops the link on a repeated option).
        assert len(msg.get_all(int(wire.Option.CLIENT_REQUEST_OPTIONS))) == 1


def test_an_option_too_long_for_one_dhcp_option_is_left_out_not_cut():
    lease = Lease(0x0A010064, state=LeaseState.LEASED, hw=b"\x01" + mac(1), expiration=T0 + 10, cltt=T0,
                  relay_info=b"\x01" * 300, host_name="h")
    msg, _, _ = bndupd(lease.address, lease, 1, T0)
    assert dhcp_options(msg.get(int(wire.Option.CLIENT_REQUEST_OPTIONS))) == {12: b"h"}
    assert len(wire.encode(msg)) <= wire.MAX_MESSAGE_SIZE


def test_the_bndupd_with_them_is_what_isc_parses():
    # ISC's parser (failover.c do_a_failover_option): a message may hold each
    # option once, and client-request-options is variable-length bytes.
    lease = Lease(0x0A010064, state=LeaseState.LEASED, hw=b"\x01" + mac(1), expiration=T0 + 10, cltt=T0,
                  relay_info=AGENT, host_name="h", vendor_class=VENDOR)
    msg, _, _ = bndupd(lease.address, lease, 1, T0)
    data = wire.encode(msg)
    length, _, offset = struct.unpack_from("!HBB", data)
    assert length == len(data)
    codes, i = [], offset
    while i < length:
        code, size = struct.unpack_from("!HH", data, i)
        codes.append(code)
        i += 4 + size
    assert i == length and len(codes) == len(set(codes)) and 8 in codes
