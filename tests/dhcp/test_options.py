"""Tests for cnrd.dhcp.options: the option table and text/typed/wire conversions."""

from __future__ import annotations

import pytest

from cnrd.dhcp.errors import MalformedPacket
from cnrd.dhcp.options import (
    OPTIONS_BY_CODE,
    OPTIONS_BY_NAME,
    OptionKind,
    OptionSpec,
    OptionValueError,
    decode_option,
    encode_option,
    option_from_text,
    option_to_text,
)
from cnrd.dhcp.packet import MalformedPacket as PacketMalformed


def test_malformed_packet_is_shared():
    assert MalformedPacket is PacketMalformed


# --- the table -----------------------------------------------------------------

def test_rfc_2132_is_covered():
    # RFC 2132 defines 1..76 (62/63 are RFC 2242, included too).
    for code in range(1, 77):
        assert code in OPTIONS_BY_CODE, code


@pytest.mark.parametrize("code,name,kind", [
    (1, "subnet-mask", OptionKind.IP),
    (2, "time-offset", OptionKind.I32),
    (3, "routers", OptionKind.IPS),
    (6, "domain-name-servers", OptionKind.IPS),
    (12, "host-name", OptionKind.STRING),
    (15, "domain-name", OptionKind.STRING),
    (26, "interface-mtu", OptionKind.U16),
    (28, "broadcast-address", OptionKind.IP),
    (33, "static-routes", OptionKind.IP_PAIRS),
    (42, "ntp-servers", OptionKind.IPS),
    (43, "vendor-encapsulated-options", OptionKind.BYTES),
    (44, "netbios-name-servers", OptionKind.IPS),
    (46, "netbios-node-type", OptionKind.U8),
    (50, "requested-address", OptionKind.IP),
    (51, "dhcp-lease-time", OptionKind.U32),
    (52, "option-overload", OptionKind.U8),
    (53, "dhcp-message-type", OptionKind.U8),
    (54, "dhcp-server-identifier", OptionKind.IP),
    (55, "dhcp-parameter-request-list", OptionKind.U8S),
    (56, "dhcp-message", OptionKind.STRING),
    (57, "dhcp-max-message-size", OptionKind.U16),
    (58, "dhcp-renewal-time", OptionKind.U32),
    (59, "dhcp-rebinding-time", OptionKind.U32),
    (60, "vendor-class-identifier", OptionKind.STRING),
    (61, "dhcp-client-identifier", OptionKind.CLIENT_ID),
    (66, "tftp-server-name", OptionKind.STRING),
    (67, "bootfile-name", OptionKind.STRING),
    (81, "client-fqdn", OptionKind.BYTES),
    (82, "relay-agent-info", OptionKind.RELAY_AGENT_INFO),
    (118, "subnet-selection", OptionKind.IP),
    (119, "domain-search", OptionKind.DOMAIN_LIST),
    (121, "classless-static-route", OptionKind.CLASSLESS_ROUTES),
    (150, "tftp-server-address", OptionKind.IPS),
    (252, "wpad", OptionKind.STRING),
])
def test_canonical_names(code, name, kind):
    spec = OPTIONS_BY_CODE[code]
    assert (spec.name, spec.kind) == (name, kind)
    assert OPTIONS_BY_NAME[name] is spec


@pytest.mark.parametrize("alias,code", [
    ("domain-name-server", 6), ("dhcp-requested-address", 50), ("lease-time", 51),
    ("server-identifier", 54), ("renewal-time", 58), ("rebinding-time", 59),
    ("vendor-class", 60), ("client-identifier", 61),
])
def test_aliases(alias, code):
    assert OPTIONS_BY_NAME[alias].code == code
    assert alias in OPTIONS_BY_CODE[code].aliases


def test_names_map_back_to_their_specs():
    for spec in OPTIONS_BY_CODE.values():
        assert isinstance(spec, OptionSpec)
        assert 1 <= spec.code <= 254
        for name in (spec.name, *spec.aliases):
            assert OPTIONS_BY_NAME[name] is spec
    assert set(OPTIONS_BY_NAME.values()) == set(OPTIONS_BY_CODE.values())


# --- option_from_text, per kind ------------------------------------------------

@pytest.mark.parametrize("name,text,code,raw", [
    # IP
    ("subnet-mask", "255.255.255.0", 1, b"\xff\xff\xff\x00"),
    ("dhcp-server-identifier", " 10.1.0.1 ", 54, b"\x0a\x01\x00\x01"),
    # IPS
    ("routers", "10.1.0.1", 3, b"\x0a\x01\x00\x01"),
    ("domain-name-servers", "10.1.0.1, 10.1.0.2", 6, b"\x0a\x01\x00\x01\x0a\x01\x00\x02"),
    ("domain-name-server", "10.1.0.1 10.1.0.2", 6, b"\x0a\x01\x00\x01\x0a\x01\x00\x02"),
    ("ntp-servers", "10.1.0.1,10.1.0.2 ,  10.1.0.3", 42, bytes([10, 1, 0, 1, 10, 1, 0, 2, 10, 1, 0, 3])),
    ("tftp-server-address", "10.1.0.9", 150, bytes([10, 1, 0, 9])),
    # IP_PAIRS
    ("static-routes", "10.9.0.0 10.1.0.1, 10.8.0.0 10.1.0.2", 33,
     bytes([10, 9, 0, 0, 10, 1, 0, 1, 10, 8, 0, 0, 10, 1, 0, 2])),
    ("policy-filter", "10.0.0.0 255.0.0.0", 21, bytes([10, 0, 0, 0, 255, 0, 0, 0])),
    # integers
    ("default-ip-ttl", "64", 23, b"\x40"),
    ("netbios-node-type", "0x8", 46, b"\x08"),
    ("interface-mtu", "1500", 26, b"\x05\xdc"),
    ("dhcp-lease-time", "3600", 51, b"\x00\x00\x0e\x10"),
    ("lease-time", "4294967295", 51, b"\xff\xff\xff\xff"),
    ("time-offset", "-18000", 2, b"\xff\xff\xb9\xb0"),
    ("time-offset", "3600", 2, b"\x00\x00\x0e\x10"),
    # lists of integers
    ("dhcp-parameter-request-list", "1, 3, 6, 15", 55, b"\x01\x03\x06\x0f"),
    ("path-mtu-plateau-table", "1500 576", 25, b"\x05\xdc\x02\x40"),
    ("client-system-architecture", "7", 93, b"\x00\x07"),
    # BOOL
    ("ip-forwarding", "true", 19, b"\x01"),
    ("ip-forwarding", "Off", 19, b"\x00"),
    ("all-subnets-local", "1", 27, b"\x01"),
    ("mask-supplier", "no", 30, b"\x00"),
    # STRING
    ("domain-name", "example.com", 15, b"example.com"),
    ("domain-name", '"example.com"', 15, b"example.com"),
    ("dhcp-message", '" spaced "', 56, b" spaced "),
    ("vendor-class", "MSFT 5.0", 60, b"MSFT 5.0"),
    ("bootfile-name", "pxelinux.0", 67, b"pxelinux.0"),
    ("wpad", "http://wpad/wpad.dat", 252, b"http://wpad/wpad.dat"),
    ("host-name", "caf\u00e9", 12, "caf\u00e9".encode()),
    # BYTES
    ("vendor-encapsulated-options", "01:02:0a", 43, b"\x01\x02\x0a"),
    ("vendor-encapsulated-options", "0x01020a", 43, b"\x01\x02\x0a"),
    ("vendor-encapsulated-options", "01020A", 43, b"\x01\x02\x0a"),
    ("vendor-encapsulated-options", "1-2-a", 43, b"\x01\x02\x0a"),
    ("vendor-encapsulated-options", '"abc"', 43, b"abc"),
    ("client-fqdn", "", 81, b""),
    # CLIENT_ID
    ("dhcp-client-identifier", "01:02:00:00:00:00:50", 61, b"\x01\x02\x00\x00\x00\x00\x50"),
    ("client-identifier", "0x00616263", 61, b"\x00abc"),
    # RELAY_AGENT_INFO
    ("relay-agent-info", "1=00:04:00:01, 2=0x616263", 82, b"\x01\x04\x00\x04\x00\x01\x02\x03abc"),
    ("relay-agent-info", "circuit-id=01 remote-id=", 82, b"\x01\x01\x01\x02\x00"),
    # DOMAIN_LIST
    ("domain-search", "example.com, corp.example.com.", 119,
     b"\x07example\x03com\x00\x04corp\x07example\x03com\x00"),
    # CLASSLESS_ROUTES (RFC 3442 §3 examples)
    ("classless-static-route", "10.0.0.0/8 10.1.0.1, 0.0.0.0/0 10.1.0.1", 121,
     b"\x08\x0a\x0a\x01\x00\x01\x00\x0a\x01\x00\x01"),
    ("classless-static-route", "10.17.0.0/16 10.1.0.1 10.27.129.0/24 10.1.0.1 10.229.0.128/25 10.1.0.1",
     121, b"\x10\x0a\x11\x0a\x01\x00\x01\x18\x0a\x1b\x81\x0a\x01\x00\x01\x19\x0a\xe5\x00\x80\x0a\x01\x00\x01"),
    ("classless-static-route", "10.1.2.3/32 10.1.0.1", 121, b"\x20\x0a\x01\x02\x03\x0a\x01\x00\x01"),
    # by number
    ("option-224", "01:02", 224, b"\x01\x02"),
    ("224", "0x0102", 224, b"\x01\x02"),
    ("option-3", "10.1.0.1", 3, b"\x0a\x01\x00\x01"),  # known code: its own type
    ("Routers", "10.1.0.1", 3, b"\x0a\x01\x00\x01"),  # names are case-insensitive
])
def test_option_from_text_good(name, text, code, raw):
    assert option_from_text(name, text) == (code, raw)


@pytest.mark.parametrize("name,text,message", [
    ("xyz", "1", "unknown option 'xyz'"),
    ("option-0", "01", "not in 1..254"),
    ("option-255", "01", "not in 1..254"),
    ("999", "01", "not in 1..254"),
    ("routers", "10.1.0.300", "'10.1.0.300' is not an IPv4 address"),
    ("routers", "", "empty"),
    ("routers", "10.1.0.1, foo", "'foo' is not an IPv4 address"),
    ("subnet-mask", "10.1.0.1 10.1.0.2", "not one IPv4 address"),
    ("subnet-mask", "10.1", "not an IPv4 address"),
    ("static-routes", "10.9.0.0", "pairs"),
    ("static-routes", "10.9.0.0 10.1.0.x", "not an IPv4 address"),
    ("default-ip-ttl", "256", "out of range"),
    ("default-ip-ttl", "-1", "out of range"),
    ("interface-mtu", "65536", "out of range"),
    ("dhcp-lease-time", "4294967296", "out of range"),
    ("dhcp-lease-time", "1h", "not an integer"),
    ("time-offset", "2147483648", "out of range"),
    ("dhcp-parameter-request-list", "1, 300", "out of range"),
    ("dhcp-parameter-request-list", "1, x", "not an integer"),
    ("path-mtu-plateau-table", "70000", "out of range"),
    ("ip-forwarding", "maybe", "not a boolean"),
    ("domain-name", "", "empty"),
    ("domain-name", '""', "empty"),
    ("vendor-encapsulated-options", "01:0g", "not hex"),
    ("vendor-encapsulated-options", "123", "not hex"),
    ("vendor-encapsulated-options", "01:02-03", "not hex"),
    ("dhcp-client-identifier", "01", "client identifier"),
    ("relay-agent-info", "1", "sub-option"),
    ("relay-agent-info", "300=01", "out of range"),
    ("relay-agent-info", "1=zz", "not hex"),
    ("domain-search", "exa mple..com", "not a domain name"),
    ("domain-search", "-bad.com", "not a domain name"),
    ("domain-search", "a" * 64 + ".com", "not a domain name"),
    ("domain-search", ".".join(["a" * 60] * 5), "longer than 255"),
    ("domain-search", "caf\u00e9.com", "not a domain name"),
    ("classless-static-route", "10.0.0.0/8", "routes"),
    ("classless-static-route", "10.0.0.0 10.1.0.1", "routes"),
    ("classless-static-route", "10.0.0.0/33 10.1.0.1", "10.0.0.0/8"),
    ("classless-static-route", "10.0.0.0/x 10.1.0.1", "10.0.0.0/8"),
    ("classless-static-route", "10.1.0.0/8 10.1.0.1", "host bits"),
    ("classless-static-route", "10.0.0.0/8 10.1.0.256", "not an IPv4 address"),
    ("option-224", "xyz", "not hex"),
])
def test_option_from_text_bad(name, text, message):
    with pytest.raises(OptionValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        option_from_text(name, text)


def test_option_value_error_is_a_value_error():
    assert issubclass(OptionValueError, ValueError)


# --- typed values: encode/decode --------------------------------------------------

SAMPLES = {
    OptionKind.IP: "10.1.0.1",
    OptionKind.IPS: ["10.1.0.1", "10.1.0.2"],
    OptionKind.IP_PAIRS: [("10.9.0.0", "10.1.0.1"), ("10.8.0.0", "10.1.0.2")],
    OptionKind.U8: 200,
    OptionKind.U16: 1500,
    OptionKind.U32: 86400,
    OptionKind.I32: -3600,
    OptionKind.U8S: [1, 3, 6, 255],
    OptionKind.U16S: [1500, 576],
    OptionKind.BOOL: True,
    OptionKind.STRING: "some text, with comma",
    OptionKind.BYTES: b"\x00\x01\xfe\xff",
    OptionKind.CLIENT_ID: b"\x01\x02\x00\x00\x00\x00\x50",
    OptionKind.RELAY_AGENT_INFO: [(1, b"\x00\x04\x00\x01"), (2, b"abc"), (9, b"")],
    OptionKind.DOMAIN_LIST: ["example.com", "corp.example.com", "a-b.c_d.example"],
    OptionKind.CLASSLESS_ROUTES: [("10.0.0.0/8", "10.1.0.1"), ("0.0.0.0/0", "10.1.0.1"),
                                  ("10.229.0.128/25", "10.1.0.2")],
}


def test_every_kind_has_a_sample():
    assert set(SAMPLES) == set(OptionKind)


@pytest.mark.parametrize("code", sorted(OPTIONS_BY_CODE))
def test_every_spec_encode_decode_encode_is_stable(code):
    spec = OPTIONS_BY_CODE[code]
    value = SAMPLES[spec.kind]
    raw = encode_option(code, value)
    decoded = decode_option(code, raw)
    assert decoded == value
    assert encode_option(code, decoded) == raw
    # and the display text reads back to the same bytes
    text = option_to_text(code, raw)
    assert option_from_text(spec.name, text) == (code, raw)


@pytest.mark.parametrize("code", sorted(OPTIONS_BY_CODE))
def test_every_spec_accepts_its_text_as_encode_value(code):
    spec = OPTIONS_BY_CODE[code]
    raw = encode_option(code, SAMPLES[spec.kind])
    if spec.kind is not OptionKind.STRING:
        assert encode_option(code, option_to_text(code, raw)) == raw


def test_decode_typed_values():
    assert decode_option(1, b"\xff\xff\xff\x00") == "255.255.255.0"
    assert decode_option(6, b"\x0a\x01\x00\x01\x0a\x01\x00\x02") == ["10.1.0.1", "10.1.0.2"]
    assert decode_option(51, b"\x00\x00\x0e\x10") == 3600
    assert decode_option(2, b"\xff\xff\xb9\xb0") == -18000
    assert decode_option(15, b"example.com\0") == "example.com"  # stray NUL dropped
    assert decode_option(15, b"caf\xe9") == "caf\ufffd"
    assert decode_option(19, b"\x00") is False
    assert decode_option(82, b"\x01\x02ab") == [(1, b"ab")]
    assert decode_option(68, b"") == []  # mobile-ip-home-agent may be empty


def test_unknown_options_round_trip_as_bytes():
    assert decode_option(224, b"\x01\x02") == b"\x01\x02"
    assert encode_option(224, b"\x01\x02") == b"\x01\x02"
    assert encode_option(224, "01:02") == b"\x01\x02"
    assert option_to_text(224, b"\x01\x02") == "01:02"
    assert option_from_text("option-224", option_to_text(224, b"\x01\x02")) == (224, b"\x01\x02")
    assert option_to_text(224, b"") == ""


def test_encode_accepts_ints_for_addresses_and_text_for_lists():
    assert encode_option(3, [0x0A010001]) == b"\x0a\x01\x00\x01"
    assert encode_option(54, 0x0A010001) == b"\x0a\x01\x00\x01"
    assert encode_option(6, "10.1.0.1, 10.1.0.2") == b"\x0a\x01\x00\x01\x0a\x01\x00\x02"
    assert encode_option(51, "3600") == b"\x00\x00\x0e\x10"


@pytest.mark.parametrize("code,value", [
    (1, "10.1.0.300"), (1, 1 << 32), (1, -1), (1, None), (3, "x"), (3, 5),
    (23, 256), (23, "x"), (23, 1.5), (51, -1), (55, [1, 256]), (19, 2), (19, "maybe"),
    (15, 5), (43, 5), (61, b"\x01"), (61, "zz"), (82, [(1, b"x" * 256)]), (82, [(256, b"")]),
    (82, [1]), (119, ["bad..name"]), (119, [5]), (121, [("10.0.0.0", "10.1.0.1")]),
    (121, [(5, "10.1.0.1")]), (33, [("10.0.0.0",)]), (224, 5),
])
def test_encode_option_bad_values(code, value):
    with pytest.raises(OptionValueError):
        encode_option(code, value)


@pytest.mark.parametrize("code,raw", [
    (1, b""), (1, b"\x01\x02\x03"), (54, b"\x01\x02\x03\x04\x05"), (3, b"\x01\x02\x03"),
    (33, b"\x01\x02\x03\x04"), (23, b""), (26, b"\x01"), (51, b"\x01\x02\x03"),
    (2, b"\x00"), (25, b"\x01"), (19, b""), (19, b"\x02"), (61, b""), (61, b"\x01"),
    (82, b"\x01"), (82, b"\x01\x03ab"),
    (119, b"\x07example"), (119, b"\x03com"), (119, b"\xc0\x00"), (119, b"\x01a\xc0\x00"),
    (119, b"\x01a\x00\xc0\x03"), (119, b"\x01a\x00\xc0"), (119, b"\x40"),
    (119, (b"\x3f" + b"a" * 63) * 4 + b"\x00"),
    (121, b"\x21" + bytes(8)), (121, b"\x08\x0a\x0a\x01\x00"), (121, b"\x18\x0a"),
])
def test_decode_option_malformed(code, raw):
    with pytest.raises(MalformedPacket):
        decode_option(code, raw)
    # display never raises: it falls back to hex
    assert option_to_text(code, raw) == raw.hex(":")


def test_domain_search_decodes_compression_pointers():
    # RFC 3397 §3 example: eng.apple.com, marketing.apple.com with a pointer.
    raw = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert decode_option(119, raw) == ["eng.apple.com", "marketing.apple.com"]
    # chained pointers, each pointing further back
    raw = b"\x03com\x00\x07example\xc0\x00\x03www\xc0\x05"
    assert decode_option(119, raw) == ["com", "example.com", "www.example.com"]
    assert decode_option(119, b"") == []
    assert decode_option(119, b"\x00") == ["."]
    assert encode_option(119, ["."]) == b"\x00"


def test_domain_search_pointer_loops_are_refused():
    # A pointer back into the name that contains it would loop forever.
    with pytest.raises(MalformedPacket):
        decode_option(119, b"\x01a\xc0\x00")
    # ping-pong between two pointers
    with pytest.raises(MalformedPacket):
        decode_option(119, b"\x00\xc0\x03\xc0\x01")


def test_classless_routes_decode_masks_stray_bits():
    # width 9 with the whole second octet set: only the top bit counts.
    assert decode_option(121, b"\x09\x0a\xff\x0a\x01\x00\x01") == [("10.128.0.0/9", "10.1.0.1")]


def test_option_to_text_formats():
    assert option_to_text(3, b"\x0a\x01\x00\x01\x0a\x01\x00\x02") == "10.1.0.1, 10.1.0.2"
    assert option_to_text(33, bytes([10, 9, 0, 0, 10, 1, 0, 1])) == "10.9.0.0 10.1.0.1"
    assert option_to_text(19, b"\x01") == "true"
    assert option_to_text(61, b"\x01\x02") == "01:02"
    assert option_to_text(82, b"\x01\x02ab\x02\x00") == "1=61:62, 2="
    assert option_to_text(121, b"\x00\x0a\x01\x00\x01") == "0.0.0.0/0 10.1.0.1"
    assert option_to_text(119, b"\x07example\x03com\x00") == "example.com"
    assert option_to_text(15, b"example.com") == "example.com"
    assert option_to_text(56, b" x ") == '" x "'
    assert option_to_text(56, b'"q"') == '""q""'
    assert option_from_text("dhcp-message", '""q""') == (56, b'"q"')
    assert option_to_text(2, b"\xff\xff\xff\xff") == "-1"
