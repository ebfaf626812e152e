"""Property and fuzz tests for the DHCPv4 codec.

The server reads packets from anyone on the link, so the contract is: for
any input bytes, ``parse``, every typed accessor, ``decode_option``,
``option_to_text`` and ``serialize`` either succeed or raise MalformedPacket
(which the server counts and drops).  Anything else would be a crash.

Example counts come from CNRD_FUZZ_EXAMPLES (one value for all tests) or
default to 10000 for the mutated-packet test and 3000 for the others.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnrd.dhcp.options import decode_option, option_to_text
from cnrd.dhcp.packet import (
    MAGIC_COOKIE,
    DhcpPacket,
    MalformedPacket,
    MessageType,
    parse,
)


def _examples(default: int) -> int:
    value = os.environ.get("CNRD_FUZZ_EXAMPLES")
    return int(value) if value else default


FUZZ = settings(max_examples=_examples(3000), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MUTATE = settings(max_examples=_examples(10000), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ACCESSORS = ("message_type", "requested_address", "server_identifier", "lease_time",
             "client_id", "parameter_request_list", "max_message_size", "host_name",
             "vendor_class", "relay_agent_info", "subnet_selection", "is_bootp", "broadcast")


def exercise(data: bytes) -> None:
    """Everything the server may do with an incoming packet; only
    MalformedPacket may escape from any step."""
    try:
        p = parse(data)
    except MalformedPacket:
        return
    for name in ACCESSORS:
        try:
            getattr(p, name)
        except MalformedPacket:
            pass
    for code, raw in p.options.items():
        assert type(raw) is bytes
        try:
            decode_option(code, raw)
        except MalformedPacket:
            pass
        assert isinstance(option_to_text(code, raw), str)  # display never raises
    try:
        wire = p.serialize()
    except MalformedPacket as exc:
        assert exc.reason == "reply too large"
        return
    # A parsed packet is already normalised, so it must come back unchanged.
    assert parse(wire) == p
    try:
        small = p.serialize(max_size=576 - 28)
    except MalformedPacket as exc:
        assert exc.reason == "reply too large"
    else:
        assert len(small) <= 548
        assert parse(small).options == p.options


# --- seeds for mutation ------------------------------------------------------------

MAC = bytes.fromhex("020000000050")


def _header(op: int = 1, hops: int = 0, file: bytes = b"", sname: bytes = b"") -> bytes:
    return (bytes((op, 1, 6, hops)) + bytes.fromhex("3903f326") + bytes(4)
            + bytes(12) + bytes((10, 2, 0, 1)) + MAC.ljust(16, b"\0")
            + sname.ljust(64, b"\0") + file.ljust(128, b"\0"))


SEEDS = [
    # DISCOVER with the usual client options
    _header() + MAGIC_COOKIE + b"\x35\x01\x01\x3d\x07\x01" + MAC + b"\x32\x04\x0a\x01\x00\x32"
    + b"\x0c\x04host\x3c\x08MSFT 5.0\x37\x06\x01\x03\x06\x0f\x77\x79\x39\x02\x05\xdc\xff" + bytes(20),
    # relayed REQUEST with option 82, 118, 119, 121
    _header(hops=1) + MAGIC_COOKIE + b"\x35\x01\x03\x36\x04\x0a\x01\x00\x01"
    + b"\x52\x0d\x01\x04\x00\x01\x00\x05\x02\x05abcde\x76\x04\x0a\x05\x00\x00"
    + b"\x77\x13\x03eng\x05apple\x03com\x00\x01a\xc0\x04"
    + b"\x79\x0b\x08\x0a\x0a\x01\x00\x01\x00\x0a\x01\x00\x01\xff",
    # option 52 overload, options in file and sname
    _header(file=b"\x0c\x04host\x3d\x07\x01" + MAC + b"\xff", sname=b"\x3c\x03abc\xff")
    + MAGIC_COOKIE + b"\x35\x01\x03\x34\x01\x03\x0c\x01a\xff",
    # RFC 3396 split option
    _header(op=2) + MAGIC_COOKIE + b"\x35\x01\x05\x2b\x03abc\x03\x04\x0a\x01\x00\x01\x2b\x02de\xff",
    # plain BOOTP
    _header(file=b"boot/image") + bytes(64),
]


@st.composite
def mutated_packets(draw: st.DrawFn) -> bytes:
    """A valid packet with a few random corruptions applied."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(("flip", "set", "truncate", "insert", "extend")))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            # Any byte, with op (0) and hlen (2) favoured: they have rules of their own.
            i = draw(st.one_of(st.integers(0, len(data) - 1),
                               st.sampled_from([j for j in (0, 2) if j < len(data)] or [0])))
            data[i] = draw(st.integers(0, 255))
        elif action == "truncate":
            # Mostly keep the header: short packets only test one rule.
            cut = draw(st.one_of(st.integers(min(236, len(data)), len(data)), st.integers(0, len(data))))
            del data[cut:]
        elif action == "insert":
            # An option TLV whose length byte may lie about the data after it.
            pos = draw(st.integers(min(236, len(data)), len(data)))
            code = draw(st.integers(0, 255))
            length = draw(st.integers(0, 255))
            body = draw(st.binary(max_size=300))
            data[pos:pos] = bytes((code, length)) + body
        else:
            data += draw(st.binary(max_size=64))
    return bytes(data)


def test_seeds_are_valid() -> None:
    for seed in SEEDS:
        p = parse(seed)
        for code, raw in p.options.items():
            decode_option(code, raw)
        assert parse(p.serialize()) == p


@MUTATE
@given(mutated_packets())
def test_mutated_packets_only_raise_malformed(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(st.binary(max_size=700))
def test_random_bytes_only_raise_malformed(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(st.sampled_from((b"\x01", b"\x02")), st.binary(min_size=235, max_size=235),
       st.booleans(), st.binary(max_size=500))
def test_random_options_area_only_raises_malformed(op: bytes, rest: bytes, cookie: bool,
                                                    tail: bytes) -> None:
    # Random bytes rarely get past the op check and the cookie; this puts
    # random data where the interesting parsing happens.
    exercise(op + rest + (MAGIC_COOKIE if cookie else b"") + tail)


# --- round trip of built packets ------------------------------------------------

def _no_trailing_nul(max_size: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size).map(lambda b: b.rstrip(b"\0"))


OPTION_CODES = st.integers(1, 254).filter(lambda c: c != 52)


@st.composite
def packets(draw: st.DrawFn) -> DhcpPacket:
    """Any packet serialize() can write; normalised the way parse() returns
    it (chaddr of length hlen, no trailing NULs in sname/file, no option 52,
    a cookie whenever there are options)."""
    u32 = st.integers(0, 0xFFFFFFFF)
    chaddr = draw(st.binary(max_size=16))
    # Mostly small values, some long enough to need RFC 3396 splitting and
    # option 52 overload at the smaller max_size values.
    options = draw(st.dictionaries(
        OPTION_CODES,
        st.one_of(st.binary(max_size=8), st.binary(max_size=64), st.binary(min_size=100, max_size=400)),
        max_size=10))
    if draw(st.booleans()):
        mt = draw(st.sampled_from(list(MessageType)))
        options = {53: bytes((mt,)), **options}
    has_cookie = bool(options) or draw(st.booleans())
    return DhcpPacket(
        op=draw(st.sampled_from((1, 2))), htype=draw(st.integers(0, 255)), hlen=len(chaddr),
        hops=draw(st.integers(0, 255)), xid=draw(u32), secs=draw(st.integers(0, 0xFFFF)),
        flags=draw(st.integers(0, 0xFFFF)), ciaddr=draw(u32), yiaddr=draw(u32),
        siaddr=draw(u32), giaddr=draw(u32), chaddr=chaddr,
        sname=draw(_no_trailing_nul(64)), file=draw(_no_trailing_nul(128)),
        options=options, has_cookie=has_cookie)


@FUZZ
@given(packets(), st.sampled_from((548, 548, 576, 1500, 9000)))
def test_built_packets_round_trip(p: DhcpPacket, max_size: int) -> None:
    try:
        wire = p.serialize(max_size=max_size)
    except MalformedPacket as exc:
        assert exc.reason == "reply too large"
        # Legitimate only if it did not fit as written and overload could not help.
        assert len(p.serialize(max_size=1 << 20)) > max_size
        return
    assert len(wire) >= 300
    assert len(wire) <= max_size
    assert parse(wire) == p
