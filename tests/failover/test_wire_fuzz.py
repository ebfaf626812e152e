"""Fuzz tests for the failover wire codec.

The failover port takes bytes from whoever connects (ISC checks the source
address only after framing), so the contract is: for any input, ``decode``
(strict or not), every typed property, ``Message.bindings`` and ``Framer.feed``
either succeed or raise FailoverWireError, which the link layer maps to a
DISCONNECT/close.  Anything else would be a crash.  What decodes must also
re-encode to the same bytes.

Seeds are the real ISC messages of shared/captures/*.messages.jsonl (plus a few
built ones when the captures are absent), mutated by hypothesis.  Example
counts: CNRD_FUZZ_EXAMPLES (default 5000) per test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnrd.failover import wire as w
from bench.fuzz import feed_all
from cnrd.failover.wire import FailoverWireError, Framer, Message, decode, encode, validate


def _examples(default: int) -> int:
    value = os.environ.get("CNRD_FUZZ_EXAMPLES")
    return int(value) if value else default


FUZZ = settings(max_examples=_examples(5000), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CAPTURES = Path(os.environ.get("CNRD_SHARED",
                               Path(__file__).resolve().parents[3] / "shared")) / "captures"

PROPERTIES = [n for n, v in vars(Message).items() if isinstance(v, property)]


def _seeds() -> list[bytes]:
    seen: dict[bytes, None] = {}
    for path in sorted(CAPTURES.glob("*.messages.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                seen[bytes.fromhex(json.loads(line)["hex"])] = None
    built = [
        w.connect(1, 2, relationship_name="r", max_unacked=10, receive_timer=30,
                  vendor_class="cnrd", mclt=60, hba=w.hba_from_split(128)),
        w.connectack(1, 2, relationship_name="r", vendor_class="cnrd", max_unacked=1,
                     receive_timer=3, tls_reply=0),
        w.bndupd(3, 4, assigned_address=1, binding_status=2, lease_expiration=5,
                 potential_expiration=6, start_time_of_state=7, client_id=b"\x01ab",
                 client_hw=b"\x01abcdef", cltt=8, ip_flags=3, ddns=(5, b"\x01a\x00")),
        w.bndack(3, 4, assigned_address=1, reject_reason=16, message="m"),
        w.state(5, 6, server_state=254, start_time_of_state=7, flags=1),
        w.disconnect(7, 8, reject_reason=6, message="bye"),
        w.poolresp(9, 10, addresses_transferred=3),
        w.contact(11, 12),
    ]
    for msg in built:
        seen[encode(msg)] = None
    return list(seen)


SEEDS = _seeds()


def exercise(frame: bytes) -> None:
    """Everything a peer may do with a received frame; only FailoverWireError may
    escape any step."""
    try:
        msg = decode(frame, strict=False)
    except FailoverWireError as err:
        assert err.fatal and err.reason
        try:
            decode(frame)
        except FailoverWireError:
            return
        raise AssertionError("strict decode accepted what framing refused") from None
    assert encode(msg) == frame  # decoding loses nothing
    try:
        validate(msg)
        valid = True
    except FailoverWireError as err:
        assert err.reason and err.message == msg
        valid = False
    for binding in msg.bindings():
        for name in PROPERTIES:
            try:
                getattr(binding, name)
            except FailoverWireError:
                assert not valid, f"{name} failed on a validated message"
    assert isinstance(msg.ignored, list)


# --- strategies --------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A capture message with a few random edits, keeping or fixing its length field."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "tlvlen",
                                   "dup")))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from((0, 1, 11, 12, 13, 32, 127, 128, 254, 255)))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 6))]
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif op == "tlvlen" and len(data) > 16:
            # Point at an option length field (if the frame still has options there).
            i = draw(st.integers(14, len(data) - 2))
            data[i:i + 2] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif op == "dup" and len(data) > 12:
            start = draw(st.integers(12, len(data) - 1))
            data += data[start:start + draw(st.integers(1, 40))]
    if draw(st.booleans()) and len(data) >= 2:
        data[0:2] = len(data).to_bytes(2, "big")  # keep it framable
    return bytes(data)


@st.composite
def options_frame(draw: st.DrawFn) -> bytes:
    """A well-framed message of random type with random, mostly known, options.
    The options come from one binary draw (cheap to generate and to shrink):
    per option a code byte (mod 32, or a large code) and a length byte (mod 40)."""
    mtype = draw(st.one_of(st.integers(1, 12), st.integers(0, 255)))
    raw = draw(st.binary(max_size=200))
    opts, i = [], 0
    while i + 2 <= len(raw):
        code = raw[i] % 32 if raw[i] < 240 else raw[i] * 257
        size = raw[i + 1] % 40
        opts.append((code, raw[i + 2:i + 2 + size]))
        i += 2 + size
    msg = Message(mtype, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
                  opts, draw(st.binary(max_size=4)))
    return encode(msg)


# --- tests -------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    exercise(data)
    feed_all(Framer(), [data])


@FUZZ
@given(mutated())
def test_mutated_capture_messages(frame):
    exercise(frame)


@FUZZ
@given(options_frame())
def test_random_options(frame):
    exercise(frame)


@FUZZ
@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=5), st.integers(0, 5),
       st.one_of(st.none(), mutated(), st.binary(max_size=30)), st.binary(max_size=20),
       st.booleans())
def test_framer_on_mutated_streams(frames, where, odd, cuts, strict):
    if odd is not None:
        frames = frames[:where] + [odd] + frames[where:]
    stream = b"".join(frames)
    chunks, pos = [], 0
    for cut in cuts:  # each byte is a chunk size, 0 included
        chunks.append(stream[pos:pos + cut])
        pos += cut
    chunks.append(stream[pos:])
    got = feed_all(Framer(strict=strict), chunks)
    # Whatever came out is exactly a prefix of the stream, message by message.
    wire = b"".join(encode(m) for m in got)
    assert wire == stream[:len(wire)]
    try:
        expected = [decode(f, strict=strict) for f in frames]
    except FailoverWireError:
        return
    assert got == expected  # every frame good on its own: chunking changes nothing
