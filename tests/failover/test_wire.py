"""Tests for the failover wire codec against real ISC dhcpd 4.4 traffic.

Every failover message of every capture in shared/captures is read from the
pcap (tests/failover/pcap.py reassembles TCP), framed, decoded, re-encoded to
the same bytes and compared with the capture's own ``*.messages.jsonl`` and
``*.summary.txt`` decodes.  The builders must reproduce every message ISC sent
byte for byte, which pins the option order.  Then the error paths, the Framer's
chunking behaviour and the RFC 3074 helpers.
"""

from __future__ import annotations

import collections
import datetime
import functools
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnrd.failover import wire as w
from cnrd.failover.wire import (
    BindingStatus,
    FailoverWireError,
    Framer,
    Message,
    MessageType,
    Option,
    RejectReason,
    ServerState,
    decode,
    encode,
)
from cnrd.failover.wire.hba import PEARSON
from tests.failover.pcap import TcpStream, tcp_streams

SHARED = Path(os.environ.get("CNRD_SHARED", Path(__file__).resolve().parents[3] / "shared"))
CAPTURES = SHARED / "captures"
PEARSON_FILE = SHARED / "docs" / "rfc3074-pearson.txt"

needs_captures = pytest.mark.skipif(not CAPTURES.is_dir() and os.environ.get("CI") != "true", reason=f"no captures at {CAPTURES}")

# From captures/README.md.
EXPECTED_TOTAL = 498
EXPECTED_PER_TYPE = {
    "BNDUPD": 165, "BNDACK": 161, "STATE": 53, "CONTACT": 40, "CONNECT": 24,
    "CONNECTACK": 22, "UPDREQALL": 12, "DISCONNECT": 9, "UPDDONE": 8, "UPDREQ": 2,
    "POOLREQ": 1, "POOLRESP": 1,
}
# The scripted (non-ISC) peers of captures 08 and 09, by sender address.
PROBE_SENDER = {"08-connect-rejects": "10.99.0.1", "09-connectack-rejects": "10.99.0.2"}


# --- capture loading ---------------------------------------------------------------


@dataclass
class Wire:
    """One message as found in a capture."""

    capture: str
    stream: TcpStream
    offset: int  # in the stream
    frame: bytes
    msg: Message

    @property
    def ts(self) -> float:
        return self.stream.time_at(self.offset)

    @property
    def src(self) -> str:
        return f"{self.stream.src}:{self.stream.sport}"

    @property
    def dst(self) -> str:
        return f"{self.stream.dst}:{self.stream.dport}"

    @property
    def from_isc(self) -> bool:
        return PROBE_SENDER.get(self.capture) != self.stream.src


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Cut a stream by the length field alone, independently of the Framer."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        length = int.from_bytes(data[pos:pos + 2], "big")
        assert length >= 12, "bad length in a capture stream"
        out.append((pos, data[pos:pos + length]))
        pos += length
    assert pos == len(data), "capture stream ends inside a message"
    return out


@functools.cache
def capture_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in CAPTURES.glob("*.pcap")))


@functools.cache
def streams(name: str) -> tuple[TcpStream, ...]:
    return tuple(s for s in tcp_streams(CAPTURES / f"{name}.pcap", w.PORT) if s.data)


@functools.cache
def wire(name: str) -> tuple[Wire, ...]:
    """Every message of a capture, per stream, via a non-strict Framer."""
    out = []
    for stream in streams(name):
        framer = Framer(strict=False)
        msgs = framer.feed(stream.data)
        assert framer.buffered == 0
        frames = split_frames(stream.data)
        assert len(frames) == len(msgs)
        out += [Wire(name, stream, off, frame, msg) for (off, frame), msg in zip(frames, msgs)]
    return tuple(out)


def all_wire() -> list[Wire]:
    return [m for name in capture_names() for m in wire(name)]


@functools.cache
def records(name: str) -> tuple[dict, ...]:
    with open(CAPTURES / f"{name}.messages.jsonl") as f:
        return tuple(json.loads(line) for line in f if line.strip())


_FIELD = re.compile(r"([A-Za-z-]+)=('[^']*'|\S+)")


@functools.cache
def summary(name: str) -> tuple[tuple[str, str, str, dict[str, str]], ...]:
    """(src, dst, type name, {field: value}) per message line of NN.summary.txt."""
    out = []
    for line in (CAPTURES / f"{name}.summary.txt").read_text().splitlines():
        parts = line.split(None, 6)
        if len(parts) < 6 or parts[5].startswith("["):
            continue  # TCP SYN/FIN/RST lines
        rest = parts[6] if len(parts) > 6 else ""
        fields = {k: v.strip("'") for k, v in _FIELD.findall(rest)}
        out.append((parts[2], parts[4], parts[5], fields))
    return tuple(out)


@functools.cache
def matched(name: str) -> tuple[tuple[dict, Wire], ...]:
    """jsonl records paired with the decoded messages, in jsonl order: per
    direction (src, dst), the n-th record is the n-th message we decoded."""
    queues: dict[tuple[str, str], collections.deque[Wire]] = collections.defaultdict(
        collections.deque)
    for m in wire(name):
        queues[(m.src, m.dst)].append(m)
    out = []
    for rec in records(name):
        queue = queues[(rec["src"], rec["dst"])]
        assert queue, f"{name}: jsonl has more messages {rec['src']} > {rec['dst']}"
        out.append((rec, queue.popleft()))
    assert not any(queues.values()), f"{name}: pcap has messages the jsonl lacks"
    return tuple(out)


# --- counts, round trip, cross-checks ----------------------------------------------


@needs_captures
def test_every_capture_message_is_decoded():
    found = all_wire()
    counts = collections.Counter(m.msg.type.name for m in found)
    assert len(found) == EXPECTED_TOTAL
    assert dict(counts) == EXPECTED_PER_TYPE
    assert sum(len(records(n)) for n in capture_names()) == EXPECTED_TOTAL
    assert all(not s.holes for n in capture_names() for s in streams(n))


@needs_captures
def test_every_capture_message_reencodes_identically():
    found = all_wire()
    same = sum(encode(m.msg) == m.frame for m in found)
    assert same == EXPECTED_TOTAL
    assert all(decode(m.frame, strict=False) == m.msg for m in found)
    assert all(m.msg.extra_header == b"" for m in found)  # ISC: payload offset 12


@needs_captures
@pytest.mark.parametrize("name", capture_names() if CAPTURES.is_dir() else [])
def test_capture_matches_jsonl(name):
    for rec, m in matched(name):
        msg = m.msg
        assert msg.type == rec["type"] and msg.type.name == rec["name"]
        assert (msg.xid, msg.time) == (rec["xid"], rec["time"])
        assert 12 + len(msg.extra_header) == rec["payload_offset"]
        assert [(c, v.hex()) for c, v in msg.options] == [
            (o["code"], o["hex"]) for o in rec["options"]]
        assert m.frame.hex() == rec["hex"]
        assert abs(m.ts - rec["t"]) < 0.01


def _clock(value: int, header_time: int) -> str:
    """How summary.txt prints a time option: 0, or UTC HH:MM:SS(+offset)."""
    if value == 0:
        return "0"
    hms = datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%H:%M:%S")
    return f"{hms}({value - header_time:+d}s)"


def typed_fields(msg: Message) -> dict[str, str]:
    """Our typed properties, rendered the way summary.txt does."""
    out: dict[str, str] = {}

    def put(key: str, value: object) -> None:
        if value is not None:
            out[key] = str(value)

    put("relationship-name", msg.relationship_name)
    put("max-unacked-bndupd", msg.max_unacked)
    put("receive-timer", msg.receive_timer)
    put("vendor-class-identifier", msg.vendor_class)
    put("protocol-version", msg.protocol_version)
    put("TLS-request", msg.tls_request)
    put("TLS-reply", msg.tls_reply)
    put("MCLT", msg.mclt)
    put("hash-bucket-assignment", msg.hba.hex() if msg.hba is not None else None)
    if msg.server_state is not None:
        st_, flags = msg.server_state
        put("server-state", st_.name.replace("_", "-"))
        put("server-flags", flags)
    put("addresses-transferred", msg.addresses_transferred)
    if msg.assigned_address is not None:
        put("assigned-IP-address", ipaddress.IPv4Address(msg.assigned_address))
    if msg.binding_status is not None:
        put("binding-status", BindingStatus(msg.binding_status).name)
    if msg.client_hw is not None:
        hw = msg.client_hw
        put("client-hardware-address", f"htype{hw[0]}/" + ":".join(f"{b:02x}" for b in hw[1:]))
    for key, value in (("lease-expiration-time", msg.lease_expiration),
                       ("potential-expiration-time", msg.potential_expiration),
                       ("start-time-of-state", msg.start_time_of_state),
                       ("client-last-transaction-time", msg.cltt)):
        if value is not None:
            out[key] = _clock(value, msg.time)
    if msg.reject_reason is not None:
        out["reject-reason"] = str(int(msg.reject_reason))
    put("message", msg.message_text)
    return out


@needs_captures
@pytest.mark.parametrize("name", capture_names() if CAPTURES.is_dir() else [])
def test_typed_fields_match_summary(name):
    lines = summary(name)
    pairs = matched(name)
    assert len(lines) == len(pairs)
    checked = 0
    for (src, dst, tname, fields), (rec, m) in zip(lines, pairs):
        assert (src, dst, tname) == (rec["src"], rec["dst"], rec["name"])
        assert fields.pop("xid") == hex(m.msg.xid)
        ours = typed_fields(m.msg)
        fields = {k: v for k, v in fields.items() if not k.startswith("opt")}  # opt99=...
        for key in ("reject-reason", "server-state"):  # 16(less-critical...), 254's "(ISC)"
            if key in fields:
                fields[key] = fields[key].split("(")[0]
        assert ours == fields, (name, rec["name"], rec["xid"])
        checked += len(fields)
    assert checked > 0


@needs_captures
def test_typed_getters_on_every_capture_message():
    props = [n for n, v in vars(Message).items() if isinstance(v, property)]
    assert len(props) > 25
    for m in all_wire():
        for prop in props:
            getattr(m.msg, prop)  # must not raise on anything ISC sent
    first = wire("01-first-contact")
    connect = next(m.msg for m in first if m.msg.type == MessageType.CONNECT)
    assert connect.relationship_name == "fp-lab"
    assert (connect.max_unacked, connect.receive_timer, connect.mclt) == (10, 30, 60)
    assert (connect.vendor_class, connect.protocol_version, connect.tls_request) == (
        "isc-4.4.3-P1", 1, 0)
    assert connect.hba == w.hba_from_split(128)
    assert connect.ignored == []
    states = [m.msg.server_state for m in all_wire() if m.msg.type == MessageType.STATE]
    assert (ServerState.RECOVER_WAIT, 0) in states
    assert (ServerState.RECOVER, w.ServerFlags.STARTUP) in states
    lease = next(m.msg for m in wire("02-leases") if m.msg.binding_status == BindingStatus.ACTIVE)
    assert lease.client_hw == bytes.fromhex("0102fa00000001")
    assert lease.lease_expiration - lease.start_time_of_state == 60  # MCLT
    assert lease.potential_expiration - lease.start_time_of_state == 630  # 600 + 60/2
    assert lease.cltt == lease.start_time_of_state
    assert lease.client_id is None and lease.ip_flags is None
    poolresp = next(m.msg for m in all_wire() if m.msg.type == MessageType.POOLRESP)
    assert poolresp.addresses_transferred == 0
    rejects = [m.msg for m in first if m.msg.reject_reason is not None]
    assert rejects and all(r.reject_reason == RejectReason.LESS_CRITICAL_BINDING_INFO
                           for r in rejects)
    assert rejects[0].message_text == "incoming update is less critical than outgoing update"


@needs_captures
def test_hba_bit_order_from_capture_06():
    connects = [m.msg for m in wire("06-poolreq") if m.msg.type == MessageType.CONNECT]
    assert connects and all(c.hba == w.hba_from_split(100) for c in connects)
    assert w.hba_from_split(100) == b"\xff" * 12 + b"\x0f" + b"\x00" * 19


# --- strict validation against what ISC did -----------------------------------------


def _isc_answer(bad: Wire) -> Message | None:
    """The first message ISC sent back on the same connection after ``bad``."""
    back = [m for m in wire(bad.capture)
            if (m.stream.src, m.stream.sport, m.stream.dst, m.stream.dport)
            == (bad.stream.dst, bad.stream.dport, bad.stream.src, bad.stream.sport)
            and m.ts >= bad.ts]
    later = [m for m in back if m.msg.type != MessageType.CONNECT]
    return later[0].msg if later else None


@needs_captures
def test_strict_decode_flags_exactly_the_probes_isc_refused():
    failures = []
    for m in all_wire():
        try:
            decode(m.frame)
        except FailoverWireError as err:
            assert not m.from_isc, "ISC sent a message we reject"
            answer = _isc_answer(m)
            failures.append((m.capture, m.msg.type.name, err.reject_reason, err.fatal,
                             answer.type.name if answer else None,
                             answer.reject_reason if answer else None))
            if not err.fatal:
                assert err.message == m.msg
    assert sorted(failures) == sorted([
        # 08, ISC as secondary: our verdict and ISC's CONNECTACK agree ...
        ("08-connect-rejects", "CONNECT", 8, False, "CONNECTACK", 8),  # no name
        ("08-connect-rejects", "CONNECT", 18, False, "CONNECTACK", 18),  # no HBA
        ("08-connect-rejects", "CONNECT", 18, False, "CONNECTACK", 18),  # 31-byte HBA
        # ... and where ISC just closed: no MCLT (its reject 5 is never flushed),
        ("08-connect-rejects", "CONNECT", 5, False, None, None),
        # MCLT twice: a parser error, the link is dropped.
        ("08-connect-rejects", "CONNECT", RejectReason.UNKNOWN, True, None, None),
        # 09, ISC as primary: a name-less accepting CONNECTACK -> DISCONNECT 8.
        ("09-connectack-rejects", "CONNECTACK", 8, False, "DISCONNECT", 8),
    ])


@needs_captures
def test_strict_framer_on_capture_streams():
    """A strict Framer over every stream: good streams give the same messages;
    a non-fatal error can be stepped over, a fatal one ends the stream."""
    for name in capture_names():
        for stream in streams(name):
            expected = [m.msg for m in wire(name) if m.stream is stream]
            framer, got, fatal = Framer(), [], False
            data = stream.data
            while True:
                try:
                    got += framer.feed(data)
                    break
                except FailoverWireError as err:
                    got += err.preceding
                    if err.fatal:
                        fatal = True
                        assert err.message is not None and err.message.type == MessageType.CONNECT
                        with pytest.raises(FailoverWireError, match="already failed"):
                            framer.feed(b"")
                        break
                    got.append(err.message)
                    data = b""
            if not fatal:
                assert got == expected


# --- chunking ----------------------------------------------------------------------


@needs_captures
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_framer_any_chunking_gives_the_same_messages(data):
    candidates = [(n, s) for n in capture_names() for s in streams(n)]
    name, stream = data.draw(st.sampled_from(candidates))
    expected = [m.msg for m in wire(name) if m.stream is stream]
    sizes = data.draw(st.lists(st.integers(0, 400), max_size=60))
    framer, got, pos = Framer(strict=False), [], 0
    for size in sizes:
        got += framer.feed(stream.data[pos:pos + size])
        pos += size
    got += framer.feed(stream.data[pos:])
    assert got == expected
    assert framer.buffered == 0


def test_framer_byte_by_byte_and_partial():
    a = encode(w.contact(1, 1000))
    b = encode(w.state(2, 1000, server_state=ServerState.NORMAL, start_time_of_state=900))
    framer = Framer()
    got = []
    for i, byte in enumerate(a + b):
        out = framer.feed(bytes([byte]))
        if i not in (len(a) - 1, len(a + b) - 1):
            assert out == []
        got += out
    assert [m.type for m in got] == [MessageType.CONTACT, MessageType.STATE]
    assert framer.feed(a[:5]) == [] and framer.buffered == 5


# --- builders ----------------------------------------------------------------------


def rebuild(msg: Message) -> Message:
    """The same message made with the builders from the typed fields only."""
    t, x, now = msg.type, msg.xid, msg.time
    if t == MessageType.CONNECT:
        return w.connect(x, now, relationship_name=msg.get(Option.RELATIONSHIP_NAME),
                         max_unacked=msg.max_unacked, receive_timer=msg.receive_timer,
                         vendor_class=msg.get(Option.VENDOR_CLASS_IDENTIFIER), mclt=msg.mclt,
                         hba=msg.hba, protocol_version=msg.protocol_version,
                         tls_request=msg.tls_request)
    if t == MessageType.CONNECTACK:
        return w.connectack(x, now, relationship_name=msg.get(Option.RELATIONSHIP_NAME),
                            vendor_class=msg.get(Option.VENDOR_CLASS_IDENTIFIER),
                            max_unacked=msg.max_unacked, receive_timer=msg.receive_timer,
                            protocol_version=msg.protocol_version, tls_reply=msg.tls_reply,
                            reject_reason=msg.reject_reason, message=msg.get(Option.MESSAGE))
    if t == MessageType.STATE:
        state, flags = msg.server_state
        return w.state(x, now, server_state=state, flags=flags,
                       start_time_of_state=msg.start_time_of_state)
    if t == MessageType.BNDUPD:
        return w.bndupd(x, now, assigned_address=msg.assigned_address,
                        binding_status=msg.binding_status, lease_expiration=msg.lease_expiration,
                        potential_expiration=msg.potential_expiration,
                        start_time_of_state=msg.start_time_of_state, client_id=msg.client_id,
                        client_hw=msg.client_hw, cltt=msg.cltt, ip_flags=msg.ip_flags)
    if t == MessageType.BNDACK:
        return w.bndack(x, now, assigned_address=msg.assigned_address,
                        reject_reason=msg.reject_reason, message=msg.get(Option.MESSAGE))
    if t == MessageType.DISCONNECT:
        return w.disconnect(x, now, reject_reason=msg.reject_reason,
                            message=msg.get(Option.MESSAGE))
    if t == MessageType.POOLRESP:
        return w.poolresp(x, now, addresses_transferred=msg.addresses_transferred)
    simple = {MessageType.POOLREQ: w.poolreq, MessageType.UPDREQALL: w.updreqall,
              MessageType.UPDREQ: w.updreq, MessageType.UPDDONE: w.upddone,
              MessageType.CONTACT: w.contact}
    return simple[t](x, now)


@needs_captures
def test_builders_reproduce_every_isc_message_byte_for_byte():
    isc = [m for m in all_wire() if m.from_isc]
    for m in isc:
        assert encode(rebuild(m.msg)) == m.frame, (m.capture, m.msg)
    covered = collections.Counter(m.msg.type.name for m in isc)
    for name in ("CONNECT", "CONNECTACK", "STATE", "BNDUPD", "BNDACK", "CONTACT", "UPDDONE",
                 "UPDREQALL", "UPDREQ", "POOLREQ", "POOLRESP", "DISCONNECT"):
        assert covered[name] > 0, name


@needs_captures
def test_builders_from_literals_match_isc():
    first = wire("01-first-contact")
    isc_connect = next(m.frame for m in first if m.msg.type == MessageType.CONNECT)
    t = decode(isc_connect).time
    ours = w.connect(0, t, relationship_name="fp-lab", max_unacked=10, receive_timer=30,
                     vendor_class="isc-4.4.3-P1", mclt=60, hba=w.hba_from_split(128))
    assert encode(ours) == isc_connect
    isc_ack = next(m.frame for m in first if m.msg.type == MessageType.CONNECTACK)
    ours = w.connectack(0, t, relationship_name="fp-lab", vendor_class="isc-4.4.3-P1",
                        max_unacked=10, receive_timer=30, tls_reply=0)
    assert encode(ours) == isc_ack
    lease = next(m for m in wire("02-leases")
                 if m.msg.binding_status == BindingStatus.ACTIVE)
    s = lease.msg.start_time_of_state
    ours = w.bndupd(lease.msg.xid, lease.msg.time, assigned_address="10.99.0.109",
                    binding_status=BindingStatus.ACTIVE, client_hw=bytes.fromhex("0102fa00000001"),
                    lease_expiration=s + 60, potential_expiration=s + 630,
                    start_time_of_state=s, cltt=s)
    assert encode(ours) == lease.frame
    assert [c for c, _ in ours.options] == [2, 3, 5, 13, 18, 25, 6]


def test_builder_option_orders():
    def codes(msg: Message) -> list[int]:
        return [c for c, _ in decode(encode(msg), strict=False).options]

    full = w.bndupd(1, 2, assigned_address=1, binding_status=2, lease_expiration=3,
                    potential_expiration=4, start_time_of_state=5, client_id=b"\x01ab",
                    client_hw=b"\x01abcdef", cltt=6, ip_flags=w.IPFlags.RESERVED,
                    ddns=(w.DDNSFlags.C, b"\x01a\x00"), request_options=b"x",
                    reply_options=b"y")
    assert codes(full) == [2, 3, 4, 5, 13, 18, 25, 6, 12, 9, 8, 7]
    decode(encode(full))  # a full binding is valid
    assert full.ddns == (1, b"\x01a\x00")
    assert codes(w.bndack(1, 2, assigned_address=1, reject_reason=16, message="m")) == [2, 21, 16]
    assert codes(w.disconnect(1, 2, reject_reason=6, message="m")) == [21, 16]
    assert codes(w.state(1, 2, server_state=2, start_time_of_state=3)) == [24, 23, 25]
    reject = w.connectack(1, 2, relationship_name="n", vendor_class=None, protocol_version=1,
                          reject_reason=RejectReason.INVALID_PARTNER, message="no")
    assert codes(reject) == [22, 20, 21, 16]
    decode(encode(reject))
    for simple in (w.contact, w.poolreq, w.updreq, w.updreqall, w.upddone):
        assert encode(simple(7, 8)) == bytes.fromhex("000c") + bytes(
            [simple(7, 8).type, 12]) + (8).to_bytes(4, "big") + (7).to_bytes(4, "big")


def test_builders_refuse_values_that_do_not_fit():
    with pytest.raises(ValueError):
        w.state(1, 2, server_state=256, start_time_of_state=0)
    with pytest.raises(ValueError):
        w.bndack(1, 2, assigned_address=-1)
    with pytest.raises(ValueError):
        encode(w.contact(2**32, 0))
    with pytest.raises(ValueError):
        encode(Message(MessageType.BNDUPD, 1, 2, [(4, b"x" * 2040)]))  # over 2048 bytes


# --- errors ------------------------------------------------------------------------


def good_connect(**changes: object) -> Message:
    fields = dict(relationship_name="fp-lab", max_unacked=10, receive_timer=30,
                  vendor_class="cnrd", mclt=60, hba=w.hba_from_split(128))
    fields.update(changes)
    return w.connect(1, 1000, **fields)  # type: ignore[arg-type]


def without(msg: Message, code: int) -> Message:
    return Message(msg.type, msg.xid, msg.time, [o for o in msg.options if o[0] != code])


def raises(frame: bytes, fatal: bool, reject: int | None) -> FailoverWireError:
    with pytest.raises(FailoverWireError) as info:
        decode(frame)
    assert info.value.fatal is fatal
    assert info.value.reject_reason == reject
    return info.value


def test_truncated_and_short_frames():
    frame = encode(good_connect())
    raises(frame[:-1], True, RejectReason.UNKNOWN)  # length field says more
    raises(frame[:11], True, RejectReason.UNKNOWN)  # not even a header
    raises(frame + b"\x00", True, RejectReason.UNKNOWN)  # trailing garbage
    framer = Framer()
    assert framer.feed(frame[:-1]) == []  # needs more: not an error
    assert framer.feed(frame[-1:]) == [decode(frame)]


def test_bad_lengths_and_payload_offsets():
    contact = bytearray(encode(w.contact(1, 2)))
    for bad_len in (0, 11, 2049, 65535):
        frame = bytes(contact)
        frame = bad_len.to_bytes(2, "big") + frame[2:]
        with pytest.raises(FailoverWireError) as info:
            Framer().feed(frame[:2])  # refused as soon as the length is known
        assert info.value.fatal
    for payoff in (0, 8, 11, 13):
        frame = bytearray(contact)
        frame[3] = payoff
        raises(bytes(frame), True, RejectReason.UNKNOWN)
    # A longer header is legal: skip it, keep it for re-encoding.
    frame = bytearray(encode(w.contact(1, 2)) + b"\xaa\xbb\xcc\xdd")
    frame[1], frame[3] = 16, 16
    msg = decode(bytes(frame))
    assert msg.extra_header == b"\xaa\xbb\xcc\xdd" and msg.options == []
    assert encode(msg) == bytes(frame)


def test_overrunning_options():
    frame = bytearray(encode(w.disconnect(1, 2, reject_reason=6, message="bye")))
    frame[-5] += 1  # message option length one too many
    raises(bytes(frame), True, RejectReason.UNKNOWN)
    partial = encode(w.contact(1, 2)) + b"\x00\x10"  # 2 bytes of an option header
    partial = (len(partial)).to_bytes(2, "big") + partial[2:]
    raises(partial, True, RejectReason.UNKNOWN)


def test_duplicate_mclt_is_fatal_like_isc():
    msg = good_connect()
    msg.options.append((Option.MCLT, (60).to_bytes(4, "big")))  # a second MCLT
    err = raises(encode(msg), True, RejectReason.UNKNOWN)
    assert "duplicate" in err.reason and err.message == decode(encode(msg), strict=False)


def test_missing_required_options_map_to_reject_reasons():
    good = good_connect()
    decode(encode(good))
    cases = {
        Option.RELATIONSHIP_NAME: RejectReason.INVALID_PARTNER,
        Option.HASH_BUCKET_ASSIGNMENT: RejectReason.HBA_CONFLICT,
        Option.MCLT: RejectReason.INVALID_MCLT,
        Option.MAX_UNACKED_BNDUPD: RejectReason.MISC_REJECT,
        Option.RECEIVE_TIMER: RejectReason.MISC_REJECT,
    }
    for code, reason in cases.items():
        err = raises(encode(without(good, code)), False, reason)
        assert err.message is not None and err.message.xid == 1
    # ISC accepts a CONNECT without vendor-class, protocol-version and TLS-request.
    minimal = good_connect(vendor_class=None, protocol_version=None, tls_request=None)
    decode(encode(minimal))

    accept = w.connectack(1, 2, relationship_name="fp-lab", vendor_class="x", max_unacked=10,
                          receive_timer=30)
    decode(encode(accept))
    raises(encode(without(accept, Option.RELATIONSHIP_NAME)), False, RejectReason.INVALID_PARTNER)
    raises(encode(without(accept, Option.RECEIVE_TIMER)), False, RejectReason.MISC_REJECT)
    reject = w.connectack(1, 2, relationship_name=None, vendor_class="x", reject_reason=8)
    assert decode(encode(reject)).reject_reason == RejectReason.INVALID_PARTNER

    state = w.state(1, 2, server_state=ServerState.NORMAL, start_time_of_state=1)
    for code in (Option.SERVER_STATE, Option.SERVER_FLAGS, Option.START_TIME_OF_STATE):
        raises(encode(without(state, code)), False, RejectReason.MISC_REJECT)

    upd = w.bndupd(5, 6, assigned_address="10.0.0.1", binding_status=BindingStatus.FREE,
                   lease_expiration=0, potential_expiration=0, start_time_of_state=0)
    decode(encode(upd))
    for code in (Option.ASSIGNED_IP_ADDRESS, Option.BINDING_STATUS):
        raises(encode(without(upd, code)), False, RejectReason.MISSING_BINDING_INFO)
    raises(encode(Message(MessageType.BNDACK, 5, 6, [])), False, RejectReason.MISSING_BINDING_INFO)
    # Nothing is required of the rest (DISCONNECT, POOLRESP: getters give None).
    assert decode(encode(Message(MessageType.DISCONNECT, 1, 2, []))).reject_reason is None
    assert decode(encode(Message(MessageType.POOLRESP, 1, 2, []))).addresses_transferred is None


def test_hba_must_be_exactly_32_bytes():
    for size in (0, 31, 33, 64):
        raises(encode(good_connect(hba=b"\xff" * size)), False, RejectReason.HBA_CONFLICT)


def test_fixed_size_options_are_checked_where_used():
    bad_mclt = good_connect()
    bad_mclt.options[6] = (Option.MCLT, b"\x00\x00\x3c")
    assert bad_mclt.options[6][0] == Option.MCLT
    raises(encode(bad_mclt), True, RejectReason.UNKNOWN)
    upd = w.bndupd(1, 2, assigned_address=1, binding_status=1, lease_expiration=0,
                   potential_expiration=0, start_time_of_state=0)
    for code, value in ((Option.IP_FLAGS, b"\x01"), (Option.DDNS, b"\x01"),
                        (Option.BINDING_STATUS, b"\x00\x01")):
        msg = Message(upd.type, 1, 2, [o for o in upd.options if o[0] != code] + [(code, value)])
        raises(encode(msg), True, RejectReason.UNKNOWN)
    # Typed getters refuse a bad size on a message that was not validated.
    with pytest.raises(FailoverWireError):
        _ = decode(encode(bad_mclt), strict=False).mclt


def test_options_a_type_does_not_use_are_ignored():
    state = w.state(1, 2, server_state=ServerState.NORMAL, start_time_of_state=1)
    extra = [(Option.MCLT, b"\x00"), (Option.MCLT, b"\x00"), (99, b"\x01\x02"),
             (Option.MESSAGE_DIGEST, b""), (Option.VENDOR_SPECIFIC_OPTIONS, b"\x00")]
    msg = Message(state.type, 1, 2, extra[:3] + state.options + extra[3:])
    got = decode(encode(msg))  # wrong size, duplicated, unknown: all skipped like ISC
    assert got.ignored == [15, 15, 99, 17, 29]
    assert got.mclt is None and got.get(Option.MCLT) == b"\x00"
    assert got.server_state == (ServerState.NORMAL, 0)
    assert encode(got) == encode(msg)


def test_message_types():
    for mtype in (0, 13, 127):
        raises(encode(Message(mtype, 1, 2, [])), True, RejectReason.UNKNOWN)
    odd = decode(encode(Message(200, 1, 2, [(Option.MCLT, b"\x01")])))
    assert odd.type == 200 and not isinstance(odd.type, MessageType)
    assert odd.ignored == [15] and odd.mclt is None
    # Every known type decodes to its member, in the compiled codec too
    # (mypyc turns an IntEnum member held as an int into a plain int).
    for known in MessageType:
        got = decode(encode(Message(known, 1, 2, [])), strict=False)
        assert got.type is known and got.type.name == known.name


def test_batched_binding_updates():
    one = w.bndupd(1, 2, assigned_address="10.0.0.1", binding_status=BindingStatus.FREE,
                   lease_expiration=0, potential_expiration=0, start_time_of_state=0)
    two = w.bndupd(1, 2, assigned_address="10.0.0.2", binding_status=BindingStatus.BACKUP,
                   lease_expiration=0, potential_expiration=0, start_time_of_state=0)
    batch = decode(encode(Message(MessageType.BNDUPD, 1, 2, one.options + two.options)))
    parts = batch.bindings()
    assert [p.assigned_address for p in parts] == [0x0A000001, 0x0A000002]
    assert [p.binding_status for p in parts] == [BindingStatus.FREE, BindingStatus.BACKUP]
    assert batch.assigned_address == 0x0A000001  # the typed view sees the first binding
    assert one.bindings() == [one]
    ack = Message(MessageType.BNDACK, 1, 2, [(2, b"\n\0\0\1"), (2, b"\n\0\0\2"), (21, b"\x10")])
    assert [b.reject_reason for b in decode(encode(ack)).bindings()] == [None, 16]
    # A repeat inside one binding, or a binding option before the first address.
    raises(encode(Message(MessageType.BNDUPD, 1, 2, one.options + [(3, b"\x01")])),
           True, RejectReason.UNKNOWN)
    raises(encode(Message(MessageType.BNDUPD, 1, 2,
                          [(3, b"\x01")] + one.options[:1] + two.options)),
           True, RejectReason.UNKNOWN)
    # A second binding without its status: rejected with 3, the stream is fine.
    half = Message(MessageType.BNDUPD, 1, 2, one.options + two.options[:1])
    err = raises(encode(half), False, RejectReason.MISSING_BINDING_INFO)
    assert "binding 2" in err.reason and err.message == half  # the whole message


def test_framer_after_errors():
    good = encode(w.contact(1, 2))
    bad = encode(Message(MessageType.BNDUPD, 9, 2, [(2, b"\n\0\0\1")]))  # no status
    framer = Framer()
    with pytest.raises(FailoverWireError) as info:
        framer.feed(good + bad + good)
    assert not info.value.fatal and info.value.preceding == [decode(good)]
    assert info.value.message.xid == 9  # enough to send BNDACK reject 3
    assert framer.feed(b"") == [decode(good)]

    dup = good_connect()
    dup.options.append(dup.options[-1])
    framer = Framer()
    with pytest.raises(FailoverWireError) as info:
        framer.feed(good + encode(dup) + good)
    assert info.value.fatal and info.value.preceding == [decode(good)]
    with pytest.raises(FailoverWireError):
        framer.feed(good)
    # A lenient framer passes the same stream through.
    assert len(Framer(strict=False).feed(good + encode(dup) + good)) == 3


def test_error_carries_reason_and_reject():
    err = FailoverWireError("x", RejectReason.INVALID_PARTNER)
    assert isinstance(err, ValueError) and err.reason == "x" and err.fatal
    assert err.reject_reason == 8 and err.message is None and err.preceding == []


# --- RFC 3074 helpers --------------------------------------------------------------


@pytest.mark.skipif(not PEARSON_FILE.is_file() and os.environ.get("CI") != "true", reason="no RFC 3074 table file")
def test_pearson_table_is_rfc_3074():
    table = [int(x) for x in PEARSON_FILE.read_text().split()]
    assert list(PEARSON) == table and sorted(table) == list(range(256))


def test_load_balance_hash_vectors():
    # The lab clients c1..c6 (MAC 02:fa:00:00:00:0N) and their buckets, checked against ISC.
    macs = {1: 250, 2: 130, 3: 28, 4: 143, 5: 77, 6: 76}
    for n, bucket in macs.items():
        assert w.load_balance_hash(bytes.fromhex(f"02fa0000000{n}")) == bucket
    assert w.load_balance_hash(b"") == 0
    assert w.load_balance_hash(b"\x00") == 175
    assert w.load_balance_hash(bytes(range(6))) == 161
    # With split 128 (ISC: a set bit = the primary serves) c3 is the primary's and
    # c1, c2, c4 the secondary's, as ISC assigns them.
    hba = w.hba_from_split(128)
    primary = [n for n in (1, 2, 3, 4) if w.hba_has_bucket(hba, macs[n])]
    assert primary == [3]


def test_hba_helpers():
    assert w.hba_from_split(0) == bytes(32)
    assert w.hba_from_split(256) == b"\xff" * 32
    assert w.hba_from_split(128) == b"\xff" * 16 + bytes(16)
    assert w.hba_buckets(w.hba_from_split(100)) == frozenset(range(100))
    assert w.hba_from_buckets([0, 9, 255]) == b"\x01\x02" + bytes(29) + b"\x80"
    for bad in (-1, 257):
        with pytest.raises(ValueError):
            w.hba_from_split(bad)
    with pytest.raises(ValueError):
        w.hba_has_bucket(b"\x00" * 31, 0)


def test_binding_builders_keep_ranges_and_the_option_order_of_what_is_given():
    # [D] §12.13, §12.18, §12.25, §12.6: times are 32-bit unsigned.
    for field in ("lease_expiration", "potential_expiration", "start_time_of_state", "cltt"):
        args = dict(lease_expiration=0, potential_expiration=0, start_time_of_state=0, cltt=None)
        for bad in (-1, 2**32):
            args[field] = bad
            with pytest.raises(ValueError):
                w.bndupd(1, 2, assigned_address=1, binding_status=3, **args)
    lean = w.bndupd(1, 2, assigned_address="10.0.0.1", binding_status=3, lease_expiration=0,
                    potential_expiration=None, start_time_of_state=7)
    assert lean.options == [(2, bytes([10, 0, 0, 1])), (3, b"\x03"), (13, b"\0\0\0\0"), (25, b"\0\0\0\x07")]
    assert [c for c, _ in w.bndack(1, 2, assigned_address=1, message="m").options] == [2, 16]


def test_a_binding_without_its_required_options_is_rejected_not_fatal():
    # ISC dhcp_failover_process_bind_update: no address or status -> reject 3.
    upd = w.bndupd(1, 2, assigned_address=1, binding_status=3, lease_expiration=0,
                   potential_expiration=0, start_time_of_state=0)
    for drop in (Option.ASSIGNED_IP_ADDRESS, Option.BINDING_STATUS):
        msg = Message(upd.type, 1, 2, [o for o in upd.options if o[0] != drop])
        raises(encode(msg), False, RejectReason.MISSING_BINDING_INFO)
    ack = Message(MessageType.BNDACK, 1, 2, [(Option.REJECT_REASON, b"\x01")])
    raises(encode(ack), False, RejectReason.MISSING_BINDING_INFO)
    # batched: the second binding lacks its status
    second = [o for o in upd.options if o[0] != Option.BINDING_STATUS]
    raises(encode(Message(upd.type, 1, 2, upd.options + second)), False, RejectReason.MISSING_BINDING_INFO)
    decode(encode(Message(upd.type, 1, 2, upd.options + upd.options)))  # both complete
    assert decode(encode(upd)).binding_status is BindingStatus.EXPIRED
    assert Message(upd.type, 1, 2, [(Option.BINDING_STATUS, b"\x63")]).binding_status == 99  # unknown: a plain int
