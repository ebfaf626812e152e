"""Tests for cnrd.dhcp.packet: the wire codec (RFC 2131, 2132, 3396, 3046, 3011).

Byte vectors are written out field by field from RFC 2131 Figure 1 rather
than produced by our own serializer, so encode and decode are each checked
against an independent reference.
"""

from __future__ import annotations

import struct

import pytest

from cnrd.dhcp.packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    MAGIC_COOKIE,
    DhcpPacket,
    MalformedPacket,
    MessageType,
    format_hw,
    int_to_ip,
    ip_to_int,
    parse,
    parse_hw,
)

MAC = bytes.fromhex("020000000050")


def header(op=1, htype=1, hlen=6, hops=0, xid=0x3903F326, secs=0, flags=0,
           ciaddr=b"\0\0\0\0", yiaddr=b"\0\0\0\0", siaddr=b"\0\0\0\0",
           giaddr=b"\0\0\0\0", chaddr=MAC, sname=b"", file=b"") -> bytes:
    """RFC 2131 Figure 1, written out field by field."""
    return (bytes((op, htype, hlen, hops)) + xid.to_bytes(4, "big")
            + secs.to_bytes(2, "big") + flags.to_bytes(2, "big")
            + ciaddr + yiaddr + siaddr + giaddr
            + chaddr.ljust(16, b"\0") + sname.ljust(64, b"\0") + file.ljust(128, b"\0"))


# A DISCOVER as a typical PC sends it: message type, client id, requested
# address, host name, vendor class, parameter request list, end, padding.
DISCOVER_OPTIONS = (
    b"\x35\x01\x01"
    b"\x3d\x07\x01" + MAC
    + b"\x32\x04\x0a\x01\x00\x32"
    + b"\x0c\x04host"
    + b"\x3c\x08MSFT 5.0"
    + b"\x37\x04\x01\x03\x06\x0f"
    + b"\xff"
)
DISCOVER = header(flags=0x8000) + MAGIC_COOKIE + DISCOVER_OPTIONS
DISCOVER = DISCOVER + bytes(300 - len(DISCOVER))


def test_header_size_is_rfc_2131():
    assert len(header()) == 236


def test_parse_discover_vector():
    p = parse(DISCOVER)
    assert p.op == BOOTREQUEST and p.htype == 1 and p.hlen == 6 and p.hops == 0
    assert p.xid == 0x3903F326 and p.secs == 0 and p.flags == BROADCAST_FLAG
    assert p.broadcast
    assert p.chaddr == MAC
    assert p.sname == b"" and p.file == b""
    assert p.has_cookie
    assert list(p.options) == [53, 61, 50, 12, 60, 55]
    assert p.message_type == MessageType.DISCOVER
    assert p.client_id == b"\x01" + MAC
    assert p.requested_address == ip_to_int("10.1.0.50") == 0x0A010032
    assert p.host_name == "host"
    assert p.vendor_class == b"MSFT 5.0"
    assert p.parameter_request_list == b"\x01\x03\x06\x0f"
    assert p.server_identifier is None
    assert p.lease_time is None
    assert p.max_message_size is None
    assert p.relay_agent_info is None
    assert p.subnet_selection is None
    assert not p.is_bootp


def test_discover_vector_round_trips_byte_exact():
    assert parse(DISCOVER).serialize() == DISCOVER


def test_addresses_are_host_order_ints():
    raw = header(ciaddr=bytes([10, 1, 0, 1]), yiaddr=bytes([10, 1, 0, 2]),
                 siaddr=bytes([10, 1, 0, 3]), giaddr=bytes([10, 1, 0, 4])) + MAGIC_COOKIE + b"\xff"
    p = parse(raw)
    assert (p.ciaddr, p.yiaddr, p.siaddr, p.giaddr) == (0x0A010001, 0x0A010002, 0x0A010003, 0x0A010004)


def make_ack() -> DhcpPacket:
    req = parse(DISCOVER)
    ack = req.reply_to(MessageType.ACK)
    ack.yiaddr = ip_to_int("10.1.0.50")
    ack.siaddr = ip_to_int("10.1.0.1")
    ack.options[54] = bytes([10, 1, 0, 1])
    ack.options[51] = struct.pack("!I", 3600)
    ack.options[58] = struct.pack("!I", 1800)
    ack.options[59] = struct.pack("!I", 3150)
    ack.options[1] = bytes([255, 255, 255, 0])
    ack.options[3] = bytes([10, 1, 0, 1])
    ack.options[6] = bytes([10, 1, 0, 1, 10, 1, 0, 2])
    ack.options[15] = b"example.com"
    ack.options[80] = b""  # zero-length option (rapid commit)
    return ack


def test_reply_to_copies_the_right_fields():
    req = parse(DISCOVER)
    req.hops = 2
    req.secs = 9
    req.giaddr = ip_to_int("10.9.0.1")
    req.ciaddr = 5
    ack = req.reply_to(MessageType.ACK)
    assert ack.op == BOOTREPLY
    assert (ack.htype, ack.hlen, ack.xid, ack.flags, ack.giaddr, ack.chaddr) == (
        req.htype, req.hlen, req.xid, req.flags, req.giaddr, req.chaddr)
    assert (ack.hops, ack.secs, ack.ciaddr, ack.yiaddr, ack.siaddr) == (0, 0, 0, 0, 0)
    assert ack.options == {53: b"\x05"}
    assert ack.has_cookie
    assert ack.options is not req.options


def test_ack_round_trip_with_typed_options():
    ack = make_ack()
    wire = ack.serialize()
    assert len(wire) >= 300
    assert wire[236:240] == MAGIC_COOKIE
    assert wire[240:243] == b"\x35\x01\x05"  # option 53 first
    back = parse(wire)
    assert back == ack
    assert back.message_type == MessageType.ACK
    assert back.server_identifier == ip_to_int("10.1.0.1")
    assert back.lease_time == 3600
    assert back.options[80] == b""


def test_option_53_is_written_first_even_if_inserted_last():
    p = parse(DISCOVER)
    p.options = {3: b"\x0a\x01\x00\x01", 53: b"\x03"}
    wire = p.serialize()
    assert wire[240:243] == b"\x35\x01\x03"
    assert wire[243:249] == b"\x03\x04\x0a\x01\x00\x01"
    assert wire[249] == 255


def test_short_reply_is_padded_to_300():
    wire = parse(DISCOVER).reply_to(MessageType.NAK).serialize()
    assert len(wire) == 300
    assert wire[240:244] == b"\x35\x01\x06\xff"
    assert wire[244:] == bytes(56)


def test_unknown_options_round_trip_as_bytes():
    raw = header() + MAGIC_COOKIE + b"\x35\x01\x03\xe0\x03abc\xfe\x00\xff"
    p = parse(raw)
    assert p.options[224] == b"abc"
    assert p.options[254] == b""
    assert parse(p.serialize()) == p


def test_pad_options_are_skipped_and_end_stops_parsing():
    raw = header() + MAGIC_COOKIE + b"\x00\x00\x35\x01\x01\x00\xff\x03\x04junk"
    p = parse(raw)
    assert p.options == {53: b"\x01"}


def test_missing_end_is_tolerated():
    raw = header() + MAGIC_COOKIE + b"\x35\x01\x01\x3d\x07\x01" + MAC
    p = parse(raw)
    assert p.message_type == 1 and p.client_id == b"\x01" + MAC


def test_rfc3396_split_options_are_concatenated():
    # Two instances of option 121 with other options between them.
    raw = header() + MAGIC_COOKIE + b"\x35\x01\x01\x79\x03abc\x03\x04\x0a\x01\x00\x01\x79\x02de\xff"
    p = parse(raw)
    assert p.options[121] == b"abcde"
    assert list(p.options) == [53, 121, 3]


def test_rfc3396_long_option_is_split_on_serialize():
    p = parse(DISCOVER).reply_to(MessageType.ACK)
    long_value = bytes(range(256)) * 2 + b"xyz"  # 515 bytes -> 255 + 255 + 5
    p.options[43] = long_value
    wire = p.serialize()
    pos = 243
    assert wire[pos:pos + 2] == b"\x2b\xff"
    assert wire[pos + 2:pos + 257] == long_value[:255]
    pos += 257
    assert wire[pos:pos + 2] == b"\x2b\xff"
    pos += 257
    assert wire[pos:pos + 2] == b"\x2b\x05"
    assert wire[pos + 2:pos + 7] == long_value[510:]
    assert wire[pos + 7] == 255
    assert parse(wire).options[43] == long_value


def test_exactly_255_bytes_is_one_instance():
    p = parse(DISCOVER).reply_to(MessageType.ACK)
    p.options[43] = b"x" * 255
    wire = p.serialize()
    assert wire[243:245] == b"\x2b\xff"
    assert wire[243 + 257] == 255


# --- option 52 overload (RFC 2132 §9.3) --------------------------------------

def test_overloaded_request_decodes_file_and_sname_options():
    file_area = b"\x0c\x04host\x3d\x07\x01" + MAC + b"\xff"
    sname_area = b"\x3c\x03abc\x0c\x02xy\xff"  # 12 again: concatenated after file's
    raw = (header(sname=sname_area, file=file_area) + MAGIC_COOKIE
           + b"\x35\x01\x03\x34\x01\x03\x0c\x01a\xff")
    p = parse(raw)
    assert 52 not in p.options
    assert p.file == b"" and p.sname == b""
    # RFC 3396 §7: options, then file, then sname.
    assert p.options[12] == b"ahostxy"
    assert p.client_id == b"\x01" + MAC
    assert p.vendor_class == b"abc"


def test_overload_file_only_keeps_sname():
    file_area = b"\x0f\x07example\xff"
    raw = header(sname=b"server1", file=file_area) + MAGIC_COOKIE + b"\x34\x01\x01\xff"
    p = parse(raw)
    assert p.options == {15: b"example"}
    assert p.sname == b"server1" and p.file == b""


def test_overload_sname_only_keeps_file():
    raw = (header(sname=b"\x0f\x01x", file=b"pxelinux.0") + MAGIC_COOKIE
           + b"\x34\x01\x02\xff")  # no END in sname: tolerated
    p = parse(raw)
    assert p.options == {15: b"x"}
    assert p.file == b"pxelinux.0" and p.sname == b""


def test_option_52_inside_overloaded_field_is_ignored():
    raw = header(file=b"\x34\x01\x03\x0f\x01x\xff") + MAGIC_COOKIE + b"\x34\x01\x01\xff"
    p = parse(raw)
    assert p.options == {15: b"x"}


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x04", b"\xff", b"\x01\x01"])
def test_bad_option_52_is_malformed(value):
    raw = header() + MAGIC_COOKIE + b"\x34" + bytes([len(value)]) + value + b"\xff"
    with pytest.raises(MalformedPacket):
        parse(raw)


def test_overlong_option_in_file_is_malformed():
    raw = header(file=b"\x0f\xf0abc") + MAGIC_COOKIE + b"\x34\x01\x01\xff"
    with pytest.raises(MalformedPacket):
        parse(raw)


def _big_reply() -> DhcpPacket:
    p = make_ack()
    for code in range(224, 231):
        p.options[code] = bytes([code]) * 40
    return p


def test_oversized_reply_spills_into_file_and_sname():
    p = _big_reply()
    normal = p.serialize()
    assert len(normal) > 548
    wire = p.serialize(max_size=548)
    assert len(wire) <= 548
    assert wire[240:243] == b"\x35\x01\x05"  # 53 stays first in the main area
    assert b"\x34\x01" in wire[240:]
    back = parse(wire)
    assert back.options == p.options
    assert back.file == b"" and back.sname == b""


def test_overload_uses_file_only_when_enough():
    p = make_ack()
    p.options[224] = b"z" * 100
    size = len(p.serialize())
    wire = p.serialize(max_size=size - 50)
    assert wire[243:246] == b"\x34\x01\x01"
    assert wire[44:108] == bytes(64)  # sname untouched
    assert wire[108:110] == b"\xe0\x64"  # the 100-byte option went to file
    assert parse(wire).options == p.options


def test_overload_uses_sname_when_file_is_taken():
    p = make_ack()
    p.file = b"pxelinux.0"
    p.options[224] = b"z" * 40
    size = len(p.serialize())
    wire = p.serialize(max_size=size - 30)
    assert wire[243:246] == b"\x34\x01\x02"
    back = parse(wire)
    assert back.file == b"pxelinux.0" and back.sname == b""
    assert back.options == p.options


def test_overload_splits_an_option_across_areas():
    p = make_ack()
    p.options[43] = bytes(range(180))
    wire = p.serialize(max_size=300 + 4)
    assert len(wire) <= 304
    assert parse(wire).options == p.options


def test_too_large_when_file_and_sname_are_taken():
    p = _big_reply()
    p.file = b"boot"
    p.sname = b"srv"
    with pytest.raises(MalformedPacket, match="reply too large"):
        p.serialize(max_size=548)


def test_too_large_even_with_overload():
    p = make_ack()
    p.options[43] = b"x" * 2000
    with pytest.raises(MalformedPacket, match="reply too large"):
        p.serialize(max_size=576 - 28)
    with pytest.raises(MalformedPacket, match="reply too large"):
        p.serialize()  # 1500 is not enough either


def test_serialize_refuses_oversized_fields():
    p = make_ack()
    p.file = b"f" * 129
    with pytest.raises(MalformedPacket):
        p.serialize()


def test_serialize_skips_framing_codes():
    p = make_ack()
    p.options[52] = b"\x03"
    p.options[0] = b"x"
    p.options[255] = b"y"
    back = parse(p.serialize())
    assert 52 not in back.options and 0 not in back.options and 255 not in back.options


# --- relay agent information, subnet selection --------------------------------

def test_relay_agent_info_suboptions():
    rai = b"\x01\x06\x00\x04\x00\x01\x00\x05" + b"\x02\x03abc" + b"\x05\x04\x0a\x02\x00\x00"
    raw = header(hops=1, giaddr=bytes([10, 2, 0, 1])) + MAGIC_COOKIE + b"\x35\x01\x01\x52" + bytes([len(rai)]) + rai + b"\xff"
    p = parse(raw)
    assert p.relay_agent_info == [(1, b"\x00\x04\x00\x01\x00\x05"), (2, b"abc"), (5, b"\x0a\x02\x00\x00")]
    assert p.giaddr == 0x0A020001
    assert parse(p.serialize()) == p


def test_relay_agent_info_empty_and_zero_length_suboption():
    raw = header() + MAGIC_COOKIE + b"\x52\x00\xff"
    assert parse(raw).relay_agent_info == []
    raw = header() + MAGIC_COOKIE + b"\x52\x02\x01\x00\xff"
    assert parse(raw).relay_agent_info == [(1, b"")]


@pytest.mark.parametrize("rai", [b"\x01", b"\x01\x05abc", b"\x01\x01a\x02"])
def test_relay_agent_info_malformed_suboptions(rai):
    raw = header() + MAGIC_COOKIE + b"\x52" + bytes([len(rai)]) + rai + b"\xff"
    p = parse(raw)  # parse itself does not look inside option 82
    with pytest.raises(MalformedPacket):
        p.relay_agent_info


def test_subnet_selection():
    raw = header() + MAGIC_COOKIE + b"\x35\x01\x01\x76\x04\x0a\x05\x00\x00\xff"
    p = parse(raw)
    assert p.subnet_selection == 0x0A050000
    assert parse(p.serialize()) == p


# --- plain BOOTP ---------------------------------------------------------------

def test_plain_bootp_request_without_cookie():
    raw = header(sname=b"", file=b"boot/image") + bytes(64)
    p = parse(raw)
    assert not p.has_cookie
    assert p.options == {}
    assert p.is_bootp
    assert p.message_type is None
    assert p.file == b"boot/image"


def test_bootp_vendor_area_without_cookie_is_not_parsed():
    raw = header() + b"\x35\x01\x01\xff" + bytes(60)
    p = parse(raw)
    assert not p.has_cookie and p.options == {}


def test_exactly_236_bytes_is_bootp():
    p = parse(header())
    assert not p.has_cookie and p.options == {}


def test_plain_bootp_reply_has_zero_vendor_area():
    req = parse(header() + bytes(64))
    rep = req.reply_to(None)
    assert rep.options == {} and not rep.has_cookie
    rep.yiaddr = ip_to_int("10.1.0.60")
    wire = rep.serialize()
    assert len(wire) == 300
    assert wire[236:] == bytes(64)
    assert wire[16:20] == bytes([10, 1, 0, 60])
    assert parse(wire) == rep


def test_bootp_request_answered_with_cookie_when_client_sent_one():
    req = parse(header() + MAGIC_COOKIE + b"\x01\x04\xff\xff\xff\x00\xff")
    assert req.is_bootp and req.has_cookie
    rep = req.reply_to(None)
    assert rep.has_cookie
    rep.options[1] = b"\xff\xff\xff\x00"
    wire = rep.serialize()
    assert wire[236:240] == MAGIC_COOKIE
    assert parse(wire) == rep


def test_bootp_reply_to_dhcp_message_gets_cookie():
    req = parse(header() + bytes(64))
    rep = req.reply_to(MessageType.OFFER)
    assert rep.has_cookie


# --- malformed packets ----------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 100, 235])
def test_too_short_is_malformed(n):
    with pytest.raises(MalformedPacket) as info:
        parse(DISCOVER[:n])
    assert "short" in info.value.reason


@pytest.mark.parametrize("op", [0, 3, 255])
def test_bad_op_is_malformed(op):
    with pytest.raises(MalformedPacket):
        parse(bytes([op]) + DISCOVER[1:])


def test_hlen_over_16_is_malformed():
    with pytest.raises(MalformedPacket):
        parse(DISCOVER[:2] + b"\x11" + DISCOVER[3:])


def test_hlen_16_and_0_are_fine():
    chaddr = bytes(range(1, 17))
    p = parse(header(hlen=16, chaddr=chaddr) + MAGIC_COOKIE + b"\xff")
    assert p.chaddr == chaddr
    p = parse(header(hlen=0, chaddr=b"") + MAGIC_COOKIE + b"\xff")
    assert p.chaddr == b""
    assert parse(p.serialize()) == p


def test_chaddr_is_cut_to_hlen():
    p = parse(header(hlen=6, chaddr=MAC + b"\xee" * 10))
    assert p.chaddr == MAC


@pytest.mark.parametrize("tail", [b"\x35", b"\x35\x02\x01", b"\x3d\x07\x01\x02", b"\x35\x01\x01\x0c"])
def test_option_running_past_the_end_is_malformed(tail):
    with pytest.raises(MalformedPacket):
        parse(header() + MAGIC_COOKIE + tail)


@pytest.mark.parametrize("code,attr,value", [
    (53, "message_type", b""),
    (53, "message_type", b"\x01\x01"),
    (50, "requested_address", b"\x0a\x01\x00"),
    (54, "server_identifier", b"\x0a\x01\x00\x01\x00"),
    (51, "lease_time", b"\x00\x00"),
    (57, "max_message_size", b"\x02"),
    (61, "client_id", b""),
    (61, "client_id", b"\x01"),
    (118, "subnet_selection", b""),
])
def test_accessor_wrong_length_is_malformed(code, attr, value):
    raw = header() + MAGIC_COOKIE + bytes([code, len(value)]) + value + b"\xff"
    p = parse(raw)  # parse does not check fixed sizes: only the accessor does
    with pytest.raises(MalformedPacket):
        getattr(p, attr)


def test_malformed_packet_is_a_value_error_with_reason():
    with pytest.raises(ValueError) as info:
        parse(b"")
    assert isinstance(info.value, MalformedPacket)
    assert isinstance(info.value.reason, str) and info.value.reason


def test_small_max_message_size_is_returned_as_is():
    raw = header() + MAGIC_COOKIE + b"\x39\x02\x01\x00\xff"
    assert parse(raw).max_message_size == 256


def test_host_name_decoding():
    def host(value: bytes) -> str | None:
        return parse(header() + MAGIC_COOKIE + b"\x0c" + bytes([len(value)]) + value + b"\xff").host_name
    assert host(b"laptop\0") == "laptop"
    assert host("caf\u00e9".encode()) == "caf\u00e9"
    assert host(b"caf\xe9") == "caf\u00e9"  # Latin-1 fallback
    assert host(b"") == ""


def test_parse_accepts_bytearray_and_memoryview():
    for data in (bytearray(DISCOVER), memoryview(DISCOVER)):
        p = parse(data)
        assert type(p.options[61]) is bytes
        assert p == parse(DISCOVER)


def test_every_message_type_value():
    assert [m.value for m in MessageType] == list(range(1, 14))
    assert MessageType.LEASEACTIVE == 13 and MessageType.FORCERENEW == 9


# --- helpers ---------------------------------------------------------------------

def test_format_hw():
    assert format_hw(MAC) == "02:00:00:00:00:50"
    assert format_hw(b"") == ""


@pytest.mark.parametrize("text", [
    "02:00:00:00:00:50", "02-00-00-00-00-50", "0200.0000.0050", "020000000050",
    "2:0:0:0:0:50", " 02:00:00:00:00:50 ", "02:00:00:00:00:50".upper(),
])
def test_parse_hw_formats(text):
    assert parse_hw(text) == MAC


@pytest.mark.parametrize("text", ["", "02:00-00", "0g:00", "123", "0200.00",
                                  "02::00", "00" * 17, "002:00"])
def test_parse_hw_rejects(text):
    with pytest.raises(ValueError):
        parse_hw(text)


def test_ip_conversions():
    assert ip_to_int("10.1.0.1") == 0x0A010001
    assert ip_to_int("255.255.255.255") == 0xFFFFFFFF
    assert int_to_ip(0x0A010001) == "10.1.0.1"
    assert int_to_ip(0) == "0.0.0.0"
    for bad in ["10.1", "10.1.0.256", "010.1.0.1", "", " 10.1.0.1", "a.b.c.d"]:
        with pytest.raises(ValueError):
            ip_to_int(bad)
    for bad in [-1, 1 << 32]:
        with pytest.raises(ValueError):
            int_to_ip(bad)
