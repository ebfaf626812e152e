"""Bad input at scale: a fast, seeded mutation fuzzer for cnrd's three parsers.

Usage::

    python -m bench.fuzz [--target dhcp|failover|config|all] [--count N] [--seed S] [--jobs J]
    python -m bench.fuzz --target config --seed S --replay INDEX   # re-run one input, show it

It exists because hypothesis (tests/dhcp/test_fuzz.py, tests/failover/test_wire_fuzz.py)
manages a few thousand examples a second at best; a million inputs per parser
needs a plain mutation loop.  Each input ``i`` of a run is generated from its own
``random.Random`` seeded with ``(seed, i)``, so any input is reproducible from the
seed and its index alone, whatever ``--jobs`` was.

Targets and the contract each must keep (anything else is a crash):

* ``dhcp`` -- :func:`cnrd.dhcp.packet.parse` of mutated packets, every typed
  accessor, ``decode_option``/``option_to_text`` of every option, and
  ``serialize`` of what parsed (which must parse back equal).  Only
  ``MalformedPacket`` may escape.
* ``failover`` -- :func:`cnrd.failover.wire.decode` (strict and not), the typed
  properties, ``bindings`` and ``encode(decode(b)) == b`` on mutated frames; and
  :class:`~cnrd.failover.wire.Framer` fed byte streams of several frames (real
  TCP 647 streams from the captures, merged frames, garbage) in random chunks.
  Only ``FailoverWireError`` may escape.
* ``config`` -- :func:`cnrd.config.loads` of mutated INI texts (etc/, deploy/ and
  the configs embedded in tests/), mutated by line, key, value, section and
  byte.  Only ``ConfigError`` may escape.

Corpora: built-in valid packets, the failover messages and TCP streams of the
ISC captures (``$CNRD_SHARED/captures`` or ``../shared/captures``: the pcaps are
reassembled with tests/failover/pcap.py, UDP 67/68 payloads are taken as DHCP
seeds), and the INI files.  Crashes are printed with seed, index and input hex,
saved under ``results/fuzz-crashes/`` and make the exit status 1.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnrd.config import ConfigError, loads
from cnrd.dhcp.options import decode_option, option_to_text
from cnrd.dhcp.packet import MAGIC_COOKIE, DhcpPacket, MalformedPacket, parse
from cnrd.failover import wire as w
from cnrd.failover.wire import (
    FailoverWireError,
    Framer,
    Message,
    decode,
    encode,
    validate,
)
from cnrd.failover.wire.codes import FIXED_SIZE

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("dhcp", "failover", "config")
CRASH_DIR = REPO / "results" / "fuzz-crashes"
# Saved inputs per distinct crash signature (same exception at the same line):
# one bug found a million times needs a handful of examples, not a million files.
KEEP_PER_SIGNATURE = 3

# --------------------------------------------------------------------------------------
# corpora
# --------------------------------------------------------------------------------------


def _shared_dir() -> Path:
    return Path(os.environ.get("CNRD_SHARED", REPO.parent / "shared"))


def _dhcp_header(op: int = 1, hops: int = 0, file: bytes = b"", sname: bytes = b"",
                 mac: bytes = bytes.fromhex("020000000050"), giaddr: bytes = b"\0\0\0\0") -> bytes:
    return (bytes((op, 1, len(mac), hops)) + bytes.fromhex("3903f326") + bytes(4)
            + bytes(12) + giaddr + mac.ljust(16, b"\0")
            + sname.ljust(64, b"\0") + file.ljust(128, b"\0"))


def _builtin_dhcp() -> list[bytes]:
    """Valid packets covering every parsing path: usual client options, a relayed
    request with 82/118/119/121, option 52 overload, RFC 3396 split options, plain
    BOOTP, and a server reply big enough to be written overloaded."""
    mac = bytes.fromhex("020000000050")
    seeds = [
        _dhcp_header() + MAGIC_COOKIE + b"\x35\x01\x01\x3d\x07\x01" + mac
        + b"\x32\x04\x0a\x01\x00\x32\x0c\x04host\x3c\x08MSFT 5.0"
        + b"\x37\x06\x01\x03\x06\x0f\x77\x79\x39\x02\x05\xdc\xff" + bytes(20),
        _dhcp_header(hops=1, giaddr=b"\x0a\x02\x00\x01") + MAGIC_COOKIE
        + b"\x35\x01\x03\x36\x04\x0a\x01\x00\x01"
        + b"\x52\x0d\x01\x04\x00\x01\x00\x05\x02\x05abcde\x76\x04\x0a\x05\x00\x00"
        + b"\x77\x13\x03eng\x05apple\x03com\x00\x01a\xc0\x04"
        + b"\x79\x0b\x08\x0a\x0a\x01\x00\x01\x00\x0a\x01\x00\x01\xff",
        _dhcp_header(file=b"\x0c\x04host\x3d\x07\x01" + mac + b"\xff", sname=b"\x3c\x03abc\xff")
        + MAGIC_COOKIE + b"\x35\x01\x03\x34\x01\x03\x0c\x01a\xff",
        _dhcp_header(op=2) + MAGIC_COOKIE
        + b"\x35\x01\x05\x2b\x03abc\x03\x04\x0a\x01\x00\x01\x2b\x02de\xff",
        _dhcp_header(file=b"boot/image") + bytes(64),
        _dhcp_header() + MAGIC_COOKIE + b"\x35\x01\x07\x36\x04\x0a\x01\x00\x01\xff",
        _dhcp_header() + MAGIC_COOKIE + b"\x35\x01\x08\x37\x03\x01\x03\x06\xff",
        _dhcp_header() + MAGIC_COOKIE + b"\x35\x01\x0a\x3d\x07\x01" + mac + b"\xff",
    ]
    big = DhcpPacket(2, 1, 6, 0, 1, 0, 0x8000, 0, 0x0A010064, 0, 0, mac, b"", b"",
                     {53: b"\x05", 54: b"\x0a\x01\x00\x01", 51: b"\0\0\x0e\x10",
                      1: b"\xff\xff\xff\0", 3: b"\x0a\x01\x00\x01" * 20,
                      15: b"example.com", 119: b"\x07example\x03com\x00" * 20,
                      43: bytes(range(256)) + bytes(100)})
    seeds.append(big.serialize(max_size=1500))  # option 43 split in two (RFC 3396)
    small = DhcpPacket(2, 1, 6, 0, 1, 0, 0, 0, 0x0A010064, 0, 0, mac, b"", b"",
                       {53: b"\x05", 54: b"\x0a\x01\x00\x01", 3: b"\x0a\x01\x00\x01" * 10,
                        119: b"\x07example\x03com\x00" * 10, 43: bytes(range(150))})
    seeds.append(small.serialize(max_size=548))  # overloaded into file and sname
    return seeds


def _pcap_payloads(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(UDP 67/68 payloads, reassembled TCP 647 streams) of one pcap.  The reader
    is the tests' (tests/failover/pcap.py); without it, no pcap seeds."""
    try:
        from tests.failover import pcap
    except ImportError:
        return [], []
    dhcp: list[bytes] = []
    try:
        linktype, records = pcap.read_pcap(path)
        for _ts, frame in records:
            ip = pcap._ip_packet(linktype, frame)
            if ip is None or len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack_from("!H", ip, 2)[0]
            udp = ip[ihl:total]
            if len(udp) >= 8 and {67, 68} & set(struct.unpack_from("!HH", udp)):
                dhcp.append(bytes(udp[8:]))
        streams = [s.data for s in pcap.tcp_streams(path, w.PORT) if s.data]
    except (pcap.PcapError, OSError, struct.error):
        return [], []
    return dhcp, streams


def _builtin_failover() -> list[bytes]:
    msgs = [
        w.connect(1, 2, relationship_name="r", max_unacked=10, receive_timer=30,
                  vendor_class="cnrd", mclt=60, hba=w.hba_from_split(128)),
        w.connectack(1, 2, relationship_name="r", vendor_class="cnrd", max_unacked=1,
                     receive_timer=3, tls_reply=0),
        w.connectack(1, 2, relationship_name="r", vendor_class="cnrd", reject_reason=8,
                     message="no"),
        w.bndupd(3, 4, assigned_address=1, binding_status=2, lease_expiration=5,
                 potential_expiration=6, start_time_of_state=7, client_id=b"\x01ab",
                 client_hw=b"\x01abcdef", cltt=8, ip_flags=3, ddns=(5, b"\x01a\x00"),
                 request_options=MAGIC_COOKIE + b"\x35\x01\x03\xff",
                 reply_options=MAGIC_COOKIE + b"\x35\x01\x05\xff"),
        w.bndack(3, 4, assigned_address=1, reject_reason=16, message="m"),
        w.state(5, 6, server_state=254, start_time_of_state=7, flags=1),
        w.disconnect(7, 8, reject_reason=6, message="bye"),
        w.poolreq(9, 10), w.poolresp(9, 10, addresses_transferred=3),
        w.updreq(1, 1), w.updreqall(1, 1), w.upddone(1, 1), w.contact(11, 12),
    ]
    out = [encode(m) for m in msgs]
    # A batched BNDUPD ([D] §6.3): two bindings in one message.
    one = msgs[3].options
    out.append(encode(Message(w.MessageType.BNDUPD, 5, 6, one + one[:5])))
    return out


def _ini_texts() -> list[str]:
    """Every INI text we have: etc/, deploy/, and string constants in tests/
    that look like a cnrd config (they hold most of the edge cases)."""
    texts: dict[str, None] = {}
    for pattern in ("etc/*.ini", "deploy/*.ini"):
        for path in sorted(REPO.glob(pattern)):
            texts[path.read_text(encoding="utf-8")] = None
    for path in sorted((REPO / "tests").rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "[" in node.value \
                    and "=" in node.value and "\n" in node.value and (
                        "[server]" in node.value or "[scope" in node.value or "[policy" in node.value):
                texts[node.value] = None
    # Test fragments often leave [server] to a shared base; give them one so the
    # mutations reach the sections they are about instead of "[server] is missing".
    server = "[server]\nname = fuzz\ninterfaces = eth0\ndata-dir = /tmp/cnrd-fuzz\n\n"
    return [t if "[server]" in t else server + t for t in texts]


@dataclass
class Corpus:
    """The seeds of every target, loaded once per process."""

    dhcp: list[bytes]
    frames: list[bytes]
    streams: list[bytes]
    ini: list[str]
    ini_lines: list[str]
    ini_keys: list[str]
    ini_values: list[str]
    ini_sections: list[str]
    sources: dict[str, int] = field(default_factory=dict)


_CORPUS: Corpus | None = None


def corpus() -> Corpus:
    """Load (once) and return the seeds of all targets."""
    global _CORPUS
    if _CORPUS is not None:
        return _CORPUS
    dhcp = _builtin_dhcp()
    frames: dict[bytes, None] = dict.fromkeys(_builtin_failover())
    streams: list[bytes] = []
    captures = _shared_dir() / "captures"
    pcap_dhcp = 0
    for path in sorted(captures.glob("*.messages.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                frames[bytes.fromhex(json.loads(line)["hex"])] = None
    for path in sorted(captures.glob("*.pcap")):
        udp, tcp = _pcap_payloads(path)
        pcap_dhcp += len(udp)
        dhcp += udp
        streams += tcp
    # Frames cut from the streams too (the jsonl files are the same messages, but a
    # capture set may come without them).
    for stream in streams:
        pos = 0
        while pos + 2 <= len(stream):
            n = int.from_bytes(stream[pos:pos + 2], "big")
            if n < w.MIN_MESSAGE_SIZE or pos + n > len(stream):
                break
            frames[bytes(stream[pos:pos + n])] = None
            pos += n
    ini = _ini_texts()
    lines = sorted({l for t in ini for l in t.splitlines() if l.strip()})
    keys = sorted({l.split("=", 1)[0].strip() for l in lines if "=" in l and not l.lstrip().startswith(("#", ";"))})
    values = sorted({l.split("=", 1)[1].strip() for l in lines if "=" in l and not l.lstrip().startswith(("#", ";"))})
    sections = sorted({l.strip() for l in lines if l.strip().startswith("[")})
    _CORPUS = Corpus(dhcp, list(frames), streams, ini, lines, keys, values, sections,
                     {"dhcp": len(dhcp), "dhcp_from_pcaps": pcap_dhcp, "failover_frames": len(frames),
                      "failover_streams": len(streams), "ini_texts": len(ini)})
    return _CORPUS


# --------------------------------------------------------------------------------------
# generic byte mutations
# --------------------------------------------------------------------------------------

_INTERESTING8 = (0, 1, 2, 3, 4, 11, 12, 13, 16, 32, 52, 53, 63, 64, 127, 128, 129, 200, 254, 255)
_INTERESTING16 = (0, 1, 2, 3, 4, 11, 12, 13, 32, 236, 240, 255, 256, 300, 576, 1500, 2047, 2048,
                  2049, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)


def _rand_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "big") if n > 0 else b""


def _flip(rng: random.Random, d: bytearray, _c: Any) -> None:
    if d:
        d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)


def _set8(rng: random.Random, d: bytearray, _c: Any) -> None:
    if d:
        d[rng.randrange(len(d))] = rng.choice(_INTERESTING8) if rng.random() < 0.7 else rng.randrange(256)


def _set16(rng: random.Random, d: bytearray, _c: Any) -> None:
    if len(d) >= 2:
        i = rng.randrange(len(d) - 1)
        d[i:i + 2] = rng.choice(_INTERESTING16).to_bytes(2, "big")


def _insert(rng: random.Random, d: bytearray, _c: Any) -> None:
    i = rng.randrange(len(d) + 1)
    d[i:i] = _rand_bytes(rng, rng.choice((1, 1, 2, 4, 8, rng.randrange(1, 300))))


def _delete(rng: random.Random, d: bytearray, _c: Any) -> None:
    if d:
        i = rng.randrange(len(d))
        del d[i:i + rng.choice((1, 1, 2, 4, rng.randrange(1, 64)))]


def _dup(rng: random.Random, d: bytearray, _c: Any) -> None:
    if d:
        i = rng.randrange(len(d))
        piece = d[i:i + rng.randrange(1, 64)]
        j = rng.randrange(len(d) + 1)
        d[j:j] = piece * rng.choice((1, 1, 2, 8))


def _truncate(rng: random.Random, d: bytearray, _c: Any) -> None:
    if d:
        del d[rng.randrange(len(d)):]


def _splice(rng: random.Random, d: bytearray, seeds: list[bytes]) -> None:
    other = rng.choice(seeds)
    i = rng.randrange(len(d) + 1)
    j = rng.randrange(len(other) + 1)
    d[i:] = other[j:]


GENERIC = (_flip, _flip, _set8, _set16, _insert, _delete, _dup, _truncate, _splice)


# --------------------------------------------------------------------------------------
# DHCP
# --------------------------------------------------------------------------------------

_DHCP_CODES = (0, 1, 3, 6, 12, 15, 33, 43, 50, 51, 52, 53, 54, 55, 57, 60, 61, 81, 82, 118, 119,
               121, 249, 255)


def _dhcp_tlvs(d: bytearray, start: int = 240, end: int | None = None) -> list[tuple[int, int]]:
    """(position, total size) of the TLVs of an options area, as far as it walks."""
    end = len(d) if end is None else min(end, len(d))
    out = []
    pos = start
    while pos < end:
        code = d[pos]
        if code in (0, 255):
            out.append((pos, 1))
            pos += 1
            continue
        if pos + 1 >= end:
            break
        size = 2 + d[pos + 1]
        out.append((pos, size))
        pos += size
    return out


def _dhcp_value(rng: random.Random, code: int) -> bytes:
    """A value for ``code``: mostly its usual length, sometimes one off or random."""
    usual = {1: 4, 3: 4, 6: 8, 50: 4, 51: 4, 53: 1, 54: 4, 57: 2, 61: 7, 118: 4, 52: 1}.get(code)
    r = rng.random()
    if code == 52 and r < 0.6:
        return bytes((rng.randrange(0, 5),))
    if code == 53 and r < 0.6:
        return bytes((rng.randrange(0, 15),))
    if code == 82 and r < 0.6:  # sub-options, possibly lying about their length
        return b"".join(bytes((rng.randrange(1, 12), rng.randrange(0, 10))) + _rand_bytes(rng, rng.randrange(0, 8))
                        for _ in range(rng.randrange(1, 4)))
    if code == 119 and r < 0.6:  # labels and compression pointers
        out = bytearray()
        for _ in range(rng.randrange(1, 5)):
            k = rng.random()
            if k < 0.5:
                out += bytes((rng.randrange(0, 70),)) + b"a" * rng.randrange(0, 66)
            elif k < 0.8:
                out += bytes((0xC0 | rng.randrange(4), rng.randrange(256)))
            else:
                out += bytes((rng.choice((0x40, 0x80, 0)),))
        return bytes(out)
    if code == 121 and r < 0.6:
        return bytes((rng.randrange(0, 40),)) + _rand_bytes(rng, rng.randrange(0, 9))
    if usual is not None and r < 0.8:
        return _rand_bytes(rng, max(0, usual + rng.choice((0, 0, 0, -1, 1))))
    return _rand_bytes(rng, rng.choice((0, 1, 2, 4, rng.randrange(0, 256))))


def _d_tlv_len(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = [t for t in _dhcp_tlvs(d) if t[1] > 1]
    if tlvs:
        pos, size = rng.choice(tlvs)
        d[pos + 1] = rng.choice((0, 1, 255, (size - 2 + 1) & 255, (size - 2 - 1) & 255, rng.randrange(256)))


def _d_tlv_delete(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = _dhcp_tlvs(d)
    if tlvs:
        pos, size = rng.choice(tlvs)
        del d[pos:pos + size]


def _d_tlv_dup(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = _dhcp_tlvs(d)
    if tlvs:
        pos, size = rng.choice(tlvs)
        d[pos:pos] = d[pos:pos + size] * rng.choice((1, 2, 3))


def _d_tlv_insert(rng: random.Random, d: bytearray, _c: Any) -> None:
    code = rng.choice(_DHCP_CODES) if rng.random() < 0.8 else rng.randrange(256)
    value = _dhcp_value(rng, code)[:255]
    tlvs = _dhcp_tlvs(d)
    pos = rng.choice(tlvs)[0] if tlvs and rng.random() < 0.8 else min(len(d), 240)
    d[pos:pos] = bytes((code, len(value))) + value


def _d_overload(rng: random.Random, d: bytearray, _c: Any) -> None:
    """Option 52 plus TLVs written into file (108..235) and/or sname (44..107)."""
    if len(d) < 240:
        return
    which = rng.randrange(0, 5)
    d[240:240] = bytes((52, 1, which))
    for base, size in ((108, 128), (44, 64)):
        if rng.random() < 0.7:
            area = bytearray()
            while len(area) < size - 10 and rng.random() < 0.7:
                code = rng.choice(_DHCP_CODES)
                value = _dhcp_value(rng, code)[:40]
                area += bytes((code, len(value))) + value
            if rng.random() < 0.7:
                area += b"\xff"
            d[base:base + size] = bytes(area[:size]).ljust(size, bytes((rng.choice((0, 0, 255)),)))


def _d_header(rng: random.Random, d: bytearray, _c: Any) -> None:
    if len(d) < 240:
        return
    field_at = rng.choice((0, 1, 2, 3, 10, 236))
    if field_at == 236:  # break or restore the magic cookie
        d[236:240] = MAGIC_COOKIE if rng.random() < 0.3 else _rand_bytes(rng, 4)
    else:
        d[field_at] = rng.choice((0, 1, 2, 3, 6, 16, 17, 255))


DHCP_OPS = GENERIC + (_d_tlv_len, _d_tlv_len, _d_tlv_delete, _d_tlv_dup, _d_tlv_insert,
                      _d_tlv_insert, _d_overload, _d_header)


def gen_dhcp(rng: random.Random, c: Corpus) -> bytes:
    """One DHCP input: mostly a mutated seed, some random option areas and noise."""
    r = rng.random()
    if r < 0.03:
        return _rand_bytes(rng, rng.randrange(0, 700))
    if r < 0.10:
        area = bytearray()
        for _ in range(rng.randrange(0, 12)):
            code = rng.choice(_DHCP_CODES) if rng.random() < 0.7 else rng.randrange(256)
            value = _dhcp_value(rng, code)[:255]
            area += bytes((code, len(value))) + value
        base = bytearray(rng.choice(c.dhcp)[:240])
        return bytes(base) + bytes(area) + (b"\xff" if rng.random() < 0.5 else b"")
    d = bytearray(rng.choice(c.dhcp))
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 6))):
        op = rng.choice(DHCP_OPS)
        op(rng, d, c.dhcp)
    return bytes(d)


_ACCESSORS = ("message_type", "requested_address", "server_identifier", "lease_time", "client_id",
              "parameter_request_list", "max_message_size", "host_name", "vendor_class",
              "relay_agent_info", "subnet_selection", "is_bootp", "broadcast")


def exercise_dhcp(data: bytes) -> None:
    """What the server may do with a received packet; MalformedPacket may escape
    (and, from serialize, only as 'reply too large'), anything else is a crash,
    as is a parsed packet that does not parse back equal after serialize."""
    try:
        p = parse(data)
    except MalformedPacket:
        return
    for name in _ACCESSORS:
        try:
            getattr(p, name)
        except MalformedPacket:
            pass
    for code, raw in p.options.items():
        if type(raw) is not bytes:
            raise AssertionError(f"option {code} value is {type(raw).__name__}, not bytes")
        try:
            decode_option(code, raw)
        except MalformedPacket:
            pass
        if not isinstance(option_to_text(code, raw), str):
            raise AssertionError("option_to_text returned a non-str")  # noqa: TRY004 - a finding
    for max_size in (1500, 548):
        try:
            out = p.serialize(max_size=max_size)
        except MalformedPacket as exc:
            if exc.reason != "reply too large":
                raise AssertionError(f"serialize of a parsed packet: {exc.reason}") from None
            continue
        if len(out) > max_size:
            raise AssertionError(f"serialize(max_size={max_size}) wrote {len(out)} bytes")
        back = parse(out)
        if max_size == 1500 and back != p:
            raise AssertionError("parse(serialize(p)) != p")
        if back.options != p.options:
            raise AssertionError(f"options changed by serialize(max_size={max_size})")


# --------------------------------------------------------------------------------------
# failover
# --------------------------------------------------------------------------------------

_FO_FIXED = {code: size for code, size in FIXED_SIZE.items()}


def _fo_tlvs(d: bytearray) -> list[tuple[int, int]]:
    """(position, total size) of the option TLVs of a frame, as far as they walk."""
    out = []
    if len(d) < 4:
        return out
    pos = max(d[3], 12) if len(d) > 3 else 12
    while pos + 4 <= len(d):
        size = 4 + int.from_bytes(d[pos + 2:pos + 4], "big")
        out.append((pos, size))
        pos += size
    return out


def _fo_value(rng: random.Random, code: int) -> bytes:
    size = _FO_FIXED.get(code)
    if code == w.Option.HASH_BUCKET_ASSIGNMENT and rng.random() < 0.6:
        size = 32
    if size is not None and rng.random() < 0.8:
        size = max(0, size + rng.choice((0, 0, 0, -1, 1)))
    else:
        size = rng.choice((0, 1, 2, 3, rng.randrange(0, 64)))
    return _rand_bytes(rng, size)


def _f_len(rng: random.Random, d: bytearray, _c: Any) -> None:
    if len(d) >= 2:
        n = rng.choice((len(d), len(d) + 1, len(d) - 1, rng.choice(_INTERESTING16), rng.randrange(0, 0x10000)))
        d[0:2] = (n & 0xFFFF).to_bytes(2, "big")


def _f_payoff(rng: random.Random, d: bytearray, _c: Any) -> None:
    if len(d) >= 4:
        v = rng.choice((0, 8, 11, 12, 13, 16, len(d) & 255, 255, rng.randrange(256)))
        extra = v - 12
        if 0 < extra <= 32 and rng.random() < 0.5:
            d[12:12] = _rand_bytes(rng, extra)  # a real extra header
        d[3] = v


def _f_type(rng: random.Random, d: bytearray, _c: Any) -> None:
    if len(d) >= 3:
        d[2] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 99, 127, 128, 200, 255))


def _f_tlv_len(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = _fo_tlvs(d)
    if tlvs:
        pos, size = rng.choice(tlvs)
        n = rng.choice((0, 1, 2, 4, 32, size - 4 + 1, size - 4 - 1, 0xFFFF, rng.randrange(0x10000)))
        d[pos + 2:pos + 4] = (n & 0xFFFF).to_bytes(2, "big")


def _f_tlv_code(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = _fo_tlvs(d)
    if tlvs:
        pos, _size = rng.choice(tlvs)
        code = rng.choice((0, rng.randrange(1, 30), 30, 31, 255, 256, 0xFFFF, rng.randrange(0x10000)))
        d[pos:pos + 2] = code.to_bytes(2, "big")


def _f_tlv_insert(rng: random.Random, d: bytearray, _c: Any) -> None:
    code = rng.randrange(1, 30) if rng.random() < 0.85 else rng.randrange(0x10000)
    value = _fo_value(rng, code)
    tlvs = _fo_tlvs(d)
    pos = rng.choice(tlvs)[0] if tlvs and rng.random() < 0.5 else len(d)
    d[pos:pos] = code.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


def _f_tlv_delete(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = _fo_tlvs(d)
    if tlvs:
        pos, size = rng.choice(tlvs)
        del d[pos:pos + size]


def _f_tlv_dup(rng: random.Random, d: bytearray, _c: Any) -> None:
    tlvs = _fo_tlvs(d)
    if tlvs:
        pos, size = rng.choice(tlvs)
        j = rng.choice(tlvs)[0] if rng.random() < 0.5 else len(d)
        d[j:j] = d[pos:pos + size]


def _f_splice_options(rng: random.Random, d: bytearray, seeds: list[bytes]) -> None:
    """Another frame's options appended (batched bindings, foreign options)."""
    other = rng.choice(seeds)
    if len(other) > 12:
        d += other[12:]


FAILOVER_OPS = GENERIC + (_f_len, _f_payoff, _f_type, _f_type, _f_tlv_len, _f_tlv_len,
                          _f_tlv_code, _f_tlv_insert, _f_tlv_insert, _f_tlv_delete, _f_tlv_dup,
                          _f_splice_options)


def mutate_frame(rng: random.Random, c: Corpus) -> bytes:
    """A capture or built frame with 1..6 mutations; the length field is mostly
    fixed up afterwards so the frame gets past framing into the option parser."""
    if rng.random() < 0.05:  # a fresh random message of random type and options
        opts = [(code, _fo_value(rng, code)) for code in
                (rng.randrange(0, 32) for _ in range(rng.randrange(0, 10)))]
        msg = Message(rng.randrange(256), rng.getrandbits(32), rng.getrandbits(32), opts)
        try:
            return encode(msg)
        except ValueError:
            return b""
    d = bytearray(rng.choice(c.frames))
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 6))):
        rng.choice(FAILOVER_OPS)(rng, d, c.frames)
    if len(d) >= 2 and rng.random() < 0.85:
        d[0:2] = (len(d) & 0xFFFF).to_bytes(2, "big")
    return bytes(d)


@dataclass
class Stream:
    """A failover byte stream and how it is chunked when fed to a Framer."""

    data: bytes
    cuts: list[int]
    strict: bool
    frames: list[bytes] | None  # the frames it was built from, when known

    def chunks(self) -> list[bytes]:
        out, pos = [], 0
        for n in self.cuts:
            out.append(self.data[pos:pos + n])
            pos += n
        out.append(self.data[pos:])
        return out


def gen_stream(rng: random.Random, c: Corpus) -> Stream:
    """Several frames back to back (valid, mutated or garbage), or a real TCP 647
    stream from a capture (cut short, or with one frame corrupted), in random chunks."""
    frames: list[bytes] | None = None
    if c.streams and rng.random() < 0.25:
        d = bytearray(rng.choice(c.streams))
        if rng.random() < 0.5:
            del d[rng.randrange(len(d) + 1):]
        if rng.random() < 0.5 and d:
            rng.choice(GENERIC[:-1])(rng, d, None)
        data = bytes(d)
    else:
        frames = []
        for _ in range(rng.randrange(1, 7)):
            r = rng.random()
            if r < 0.6:
                frames.append(rng.choice(c.frames))
            elif r < 0.9:
                frames.append(mutate_frame(rng, c))
            else:
                frames.append(_rand_bytes(rng, rng.randrange(0, 40)))
        data = b"".join(frames)
    cuts = []
    left = len(data)
    while left > 0 and rng.random() < 0.8:
        n = rng.choice((0, 1, 2, 3, 12, 13, rng.randrange(0, left + 1)))
        cuts.append(n)
        left -= n
    return Stream(data, cuts, rng.random() < 0.7, frames)


_PROPERTIES = [n for n, v in vars(Message).items() if isinstance(v, property)]


def exercise_frame(frame: bytes) -> None:
    """decode (both modes), validate, properties, bindings, re-encode; only
    FailoverWireError may escape, and what decodes must encode to the same bytes."""
    try:
        msg = decode(frame, strict=False)
    except FailoverWireError as err:
        if not err.fatal:
            raise AssertionError("framing error that is not fatal") from None
        try:
            decode(frame)
        except FailoverWireError:
            return
        raise AssertionError("strict decode accepted what framing refused") from None
    if encode(msg) != frame:
        raise AssertionError("encode(decode(frame)) != frame")
    try:
        validate(msg)
        valid = True
    except FailoverWireError as err:
        if err.message is not msg:
            raise AssertionError("validate error without its message") from None
        valid = False
    for binding in msg.bindings():
        for name in _PROPERTIES:
            try:
                getattr(binding, name)
            except FailoverWireError:
                if valid:
                    raise AssertionError(f"{name} failed on a validated message") from None
    msg.ignored  # noqa: B018 - logging reads it


def feed_all(framer: Framer, chunks: Iterable[bytes]) -> list[Message]:
    """Feed as the link layer does: past non-fatal errors (their message is
    answered, so it counts as received), stopping at the first fatal one."""
    out: list[Message] = []
    for chunk in list(chunks) + [b""]:
        while True:
            try:
                out += framer.feed(chunk)
                break
            except FailoverWireError as err:
                out += err.preceding
                if err.fatal:
                    return out
                if err.message is None:
                    raise AssertionError("non-fatal framer error without a message") from None
                out.append(err.message)
                chunk = b""
    return out


def exercise_stream(s: Stream) -> None:
    """Framer.feed on a chunked stream: what comes out must be exactly a prefix
    of the stream, and chunking must not change the result."""
    got = feed_all(Framer(strict=s.strict), s.chunks())
    wire = b"".join(encode(m) for m in got)
    if wire != s.data[:len(wire)]:
        raise AssertionError("framer output is not a prefix of the stream")
    whole = feed_all(Framer(strict=s.strict), [s.data])
    if whole != got:
        raise AssertionError("chunking changed what the framer decoded")


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------

_VALUES = (
    "", " ", "0", "-0", "1", "-1", "00", "007", "2", "30", "100", "101", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "99999999999999999999999999999999999999",
    "1" * 5000, "1" * 5000 + "s", "1h" + "2" * 4400 + "m", "1" * 5000 + "M", "1e3", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "0x10", "0b11", "1_000",
    "\u0663", "\uff11\uff12", "\u00b2", "5.5", "50.0%", "10%", "-5%", "1.5e2",
    "1w", "1h30m", "5s", "0s", "99999999999w", "9" * 30 + "d", "-5m", "5x", "m", "1h 2m", "1H",
    "true", "false", "yes", "off", "maybe", "TRUE", "1 0",
    "10.1.0.1", "10.1.0.0", "10.1.0.255", "10.1.0.256", "010.1.0.1", "10.1", "::1", " 10.1.0.1 ",
    "10.1.0.0/24", "10.1.0.0/8", "10.1.0.0/33", "10.1.0.0/-1", "0.0.0.0/0", "10.1.0.1/24",
    "10.1.0.0/255.255.255.0", "255.255.255.255/32", "10.1.0.0/", "/24",
    "10.1.0.100-10.1.0.199", "10.1.0.199-10.1.0.100", "10.1.0.100-", "-10.1.0.1",
    "10.1.0.100-10.1.0.199, 10.1.0.150", "10.1.0.1-10.1.0.254", "0.0.0.0-255.255.255.255",
    "10.1.0.100 10.1.0.101", "10.1.0.100,,10.1.0.101",
    "02:00:00:00:00:01", "02-00-00-00-00-01", "0200.0000.0001", "zz:zz", "01:" * 20 + "01",
    "0x" + "ab" * 300, "01", ":", "::", "1:2:3",
    "2024-05-01T12:00:00Z", "2024-05-01", "9999-12-31T23:59:59", "0000-01-01T00:00:00",
    "2024-13-01T00:00:00", "-99999999999999", "1e10", "99999999999999999999",
    "127.0.0.1:8067", "127.0.0.1:0", "127.0.0.1:65536", ":80", "[::1]:80", "::1:80", "host",
    "localhost:-1", "http://h/x", "https://h:99999/", "http://[::1", "http:///x", "ftp://x",
    "http://h/\u00e9", "http://\u00e9.com", "http://h x", "http://%zz",
    '"quoted"', '""', "'single'", "%(x)s", "%", "a,b,c", ",", "a b\tc", "\u2028", "x\x00y",
    "default", "lan", "examplepair", "main", "backup", "nosuchthing", "DEFAULT", "a" * 300,
    "drop", "exclude", "one-shot", "failover-detail", "no-failover-activity", "+incoming-packets",
)
_SECTIONS = (
    "[server]", "[api]", "[policy default]", "[policy]", "[policy a b]", "[scope lan]", "[scope]",
    "[scope  lan]", "[ scope lan ]", "[reservation 10.1.0.50]", "[reservation 10.1.0.0]",
    "[reservation 999.1.1.1]", "[reservation]", "[client 02:00:00:00:00:01]", "[client zz]",
    "[client-class x]", "[failover-pair examplepair]", "[failover-pair]", "[DEFAULT]", "[]",
    "[ ]", "[server x]", "[Server]", "[unknown]", "[scope \u00e9]", "[policy default", "[[x]]",
)
_CHARS = ("\x00", "\r", "\n", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\ufeff", "#", ";",
          "=", ":", "[", "]", "%", "\\", '"', " ", "\u00e9", "\U0001f600", "\ufffd", ",", "-", "/")


def _c_line_delete(rng: random.Random, lines: list[str], c: Corpus) -> None:
    if lines:
        del lines[rng.randrange(len(lines))]


def _c_line_dup(rng: random.Random, lines: list[str], c: Corpus) -> None:
    if lines:
        line = rng.choice(lines)
        lines.insert(rng.randrange(len(lines) + 1), line)


def _c_line_swap(rng: random.Random, lines: list[str], c: Corpus) -> None:
    if len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]


def _c_line_splice(rng: random.Random, lines: list[str], c: Corpus) -> None:
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(c.ini_lines))


def _kv_lines(lines: list[str]) -> list[int]:
    return [i for i, l in enumerate(lines) if "=" in l and not l.lstrip().startswith(("#", ";", "["))]


def _c_value(rng: random.Random, lines: list[str], c: Corpus) -> None:
    idx = _kv_lines(lines)
    if idx:
        i = rng.choice(idx)
        key = lines[i].split("=", 1)[0]
        r = rng.random()
        if r < 0.5:
            value = rng.choice(_VALUES)
        elif r < 0.8:
            value = rng.choice(c.ini_values)
        else:  # a list made of several values
            value = ", ".join(rng.choice(_VALUES + tuple(c.ini_values[:50])) for _ in range(rng.randrange(2, 5)))
        lines[i] = f"{key}= {value}"


def _c_key(rng: random.Random, lines: list[str], c: Corpus) -> None:
    idx = _kv_lines(lines)
    if idx:
        i = rng.choice(idx)
        value = lines[i].split("=", 1)[1]
        r = rng.random()
        if r < 0.6:
            key = rng.choice(c.ini_keys)
        elif r < 0.8:
            key = "option." + rng.choice((str(rng.randrange(-1, 300)), "routers", "nosuch", "",
                                          "domain-search", "classless-static-routes", "client-id",
                                          "relay-agent-information", "subnet-mask", "time-offset"))
        else:
            key = rng.choice(c.ini_keys)
            k = rng.randrange(len(key) + 1)
            key = key[:k] + rng.choice(_CHARS) + key[k + 1:]
        lines[i] = f"{key} ={value}"


def _c_section(rng: random.Random, lines: list[str], c: Corpus) -> None:
    idx = [i for i, l in enumerate(lines) if l.lstrip().startswith("[")]
    header = rng.choice(_SECTIONS) if rng.random() < 0.6 else rng.choice(c.ini_sections)
    if idx and rng.random() < 0.7:
        lines[rng.choice(idx)] = header
    else:
        lines.insert(rng.randrange(len(lines) + 1), header)


def _c_char(rng: random.Random, lines: list[str], c: Corpus) -> None:
    if lines:
        i = rng.randrange(len(lines))
        line = lines[i]
        k = rng.randrange(len(line) + 1)
        r = rng.random()
        if r < 0.5:
            line = line[:k] + rng.choice(_CHARS) + line[k:]
        elif r < 0.8:
            line = line[:k] + line[k + 1:]
        else:
            line = line[:k] + line[k:].upper()
        lines[i] = line


def _c_indent(rng: random.Random, lines: list[str], c: Corpus) -> None:
    """A continuation line (configparser joins indented lines to the value)."""
    if lines:
        i = rng.randrange(len(lines))
        lines[i] = rng.choice((" ", "\t", "    ")) + lines[i]


def _c_section_block(rng: random.Random, lines: list[str], c: Corpus) -> None:
    """A whole section of another text copied in (duplicates, cross-references)."""
    text = rng.choice(c.ini).splitlines()
    starts = [i for i, l in enumerate(text) if l.startswith("[")]
    if starts:
        s = rng.choice(starts)
        e = next((i for i in starts if i > s), len(text))
        block = text[s:e]
        at = rng.randrange(len(lines) + 1)
        lines[at:at] = block


# Value edits dominate: structural damage mostly stops at configparser, while a
# bad value goes all the way into the typed parsers and cross-checks.
CONFIG_OPS = (_c_line_delete, _c_line_dup, _c_line_swap, _c_line_splice, _c_value, _c_value, _c_value,
              _c_value, _c_value, _c_value, _c_value, _c_key, _c_key, _c_section, _c_char,
              _c_indent, _c_section_block)


def gen_config(rng: random.Random, c: Corpus) -> str:
    """One INI text: a corpus text with line/key/value/section edits, sometimes
    byte-level damage (decoded the way ``load`` would have accepted it: as UTF-8,
    with undecodable bytes replaced, since ``load`` refuses invalid UTF-8)."""
    lines = rng.choice(c.ini).splitlines()
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5))):
        rng.choice(CONFIG_OPS)(rng, lines, c)
    text = rng.choice(("\n", "\n", "\n", "\r\n", "\r")).join(lines)
    if rng.random() < 0.1:
        d = bytearray(text.encode("utf-8"))
        for _ in range(rng.randrange(1, 4)):
            rng.choice(GENERIC[:-1])(rng, d, None)
        text = d.decode("utf-8", "replace")
    return text


def exercise_config(text: str) -> None:
    """loads() must return a Config or raise ConfigError."""
    try:
        loads(text, "fuzz.ini")
    except ConfigError:
        pass


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


def make_input(target: str, seed: int, index: int, c: Corpus | None = None) -> Any:
    """Input ``index`` of a run with ``seed`` (deterministic)."""
    c = c or corpus()
    rng = random.Random((seed << 32) + index)
    if target == "dhcp":
        return gen_dhcp(rng, c)
    if target == "failover":
        return mutate_frame(rng, c) if index % 2 == 0 else gen_stream(rng, c)
    if target == "config":
        return gen_config(rng, c)
    raise ValueError(f"unknown target {target!r}")


def run_input(target: str, data: Any) -> None:
    """Feed one generated input to its target's exercise."""
    if target == "dhcp":
        exercise_dhcp(data)
    elif target == "failover":
        if isinstance(data, Stream):
            exercise_stream(data)
        else:
            exercise_frame(data)
    else:
        exercise_config(data)


def input_bytes(data: Any) -> bytes:
    """The raw bytes of an input, for the crash file."""
    if isinstance(data, Stream):
        return data.data
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return bytes(data)


@dataclass
class Crash:
    """One input that raised something other than the target's own error."""

    target: str
    seed: int
    index: int
    signature: str
    error: str
    trace: str
    data: bytes
    detail: str = ""  # stream chunking and strictness, for failover streams


@dataclass
class Result:
    """What a run of one target did."""

    target: str
    count: int = 0
    seconds: float = 0.0
    crashes: int = 0
    examples: list[Crash] = field(default_factory=list)
    signatures: dict[str, int] = field(default_factory=dict)
    slowest: tuple[float, int] = (0.0, -1)  # seconds, index

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def merge(self, other: Result) -> None:
        self.count += other.count
        self.crashes += other.crashes
        for sig, n in other.signatures.items():
            self.signatures[sig] = self.signatures.get(sig, 0) + n
        for ex in other.examples:
            if sum(e.signature == ex.signature for e in self.examples) < KEEP_PER_SIGNATURE:
                self.examples.append(ex)
        self.slowest = max(self.slowest, other.slowest)


def _signature(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
    return f"{type(exc).__name__} at {where}"


def run_range(target: str, seed: int, start: int, stop: int) -> Result:
    """Inputs ``start..stop-1`` of a run, in this process."""
    c = corpus()
    res = Result(target)
    clock = time.perf_counter
    slow, slow_i = 0.0, -1
    t0 = clock()
    for index in range(start, stop):
        data = make_input(target, seed, index, c)
        t = clock()
        try:
            run_input(target, data)
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a finding
            sig = _signature(exc)
            res.crashes += 1
            res.signatures[sig] = res.signatures.get(sig, 0) + 1
            if res.signatures[sig] <= KEEP_PER_SIGNATURE:
                detail = ""
                if isinstance(data, Stream):
                    detail = f"strict={data.strict} cuts={data.cuts}"
                res.examples.append(Crash(target, seed, index, sig, f"{type(exc).__name__}: {exc}",
                                          traceback.format_exc(), input_bytes(data), detail))
        dt = clock() - t
        if dt > slow:
            slow, slow_i = dt, index
    res.count = stop - start
    res.seconds = clock() - t0
    res.slowest = (slow, slow_i)
    return res


def _run_range_args(args: tuple[str, int, int, int]) -> Result:
    return run_range(*args)


def run(target: str, count: int, seed: int = 0, jobs: int = 1, *,
        progress: Callable[[Result], None] | None = None, chunk: int = 20000) -> Result:
    """Fuzz ``target`` with ``count`` inputs over ``jobs`` processes."""
    total = Result(target)
    t0 = time.perf_counter()
    ranges = [(target, seed, s, min(s + chunk, count)) for s in range(0, count, chunk)]
    if jobs <= 1:
        for r in ranges:
            total.merge(run_range(*r))
            if progress:
                total.seconds = time.perf_counter() - t0
                progress(total)
    else:
        import multiprocessing

        corpus()  # load before forking, so workers share it
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            for part in pool.imap_unordered(_run_range_args, ranges):
                total.merge(part)
                if progress:
                    total.seconds = time.perf_counter() - t0
                    progress(total)
    total.seconds = time.perf_counter() - t0
    return total


def save_crash(crash: Crash, directory: Path = CRASH_DIR) -> Path:
    """Write the input (.bin) and what happened (.txt); returns the .bin path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{crash.target}-s{crash.seed}-i{crash.index}"
    stem.with_suffix(".bin").write_bytes(crash.data)
    stem.with_suffix(".txt").write_text(
        f"target: {crash.target}\nseed: {crash.seed}\nindex: {crash.index}\n"
        f"replay: python -m bench.fuzz --target {crash.target} --seed {crash.seed} --replay {crash.index}\n"
        f"signature: {crash.signature}\nerror: {crash.error}\n{crash.detail}\n"
        f"input hex: {crash.data.hex()}\n\n{crash.trace}")
    return stem.with_suffix(".bin")


def _replay(target: str, seed: int, index: int) -> int:
    data = make_input(target, seed, index)
    print(f"target {target} seed {seed} index {index}")
    if isinstance(data, Stream):
        print(f"stream strict={data.strict} cuts={data.cuts}")
    print(f"input ({len(input_bytes(data))} bytes): {input_bytes(data).hex()}")
    if isinstance(data, str):
        print(f"text: {data!r}")
    try:
        run_input(target, data)
    except Exception:  # noqa: BLE001 - shown, and the exit status says so
        traceback.print_exc()
        return 1
    print("ok: only the target's own error type (or none) was raised")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; exit 1 if any target crashed."""
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=TARGETS + ("all",), default="all")
    ap.add_argument("--count", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--replay", type=int, metavar="INDEX", help="re-run one input of --target/--seed and show it")
    ap.add_argument("--crash-dir", type=Path, default=CRASH_DIR)
    args = ap.parse_args(argv)
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.replay is not None:
        if args.target == "all":
            ap.error("--replay needs one --target")
        return _replay(args.target, args.seed, args.replay)

    c = corpus()
    print(f"corpus: {c.sources}", file=sys.stderr)
    failed = False
    summary = []
    last = [0.0]

    def progress(r: Result) -> None:
        if r.seconds - last[0] >= 10:
            last[0] = r.seconds
            print(f"  {r.target}: {r.count:,} inputs, {r.rate:,.0f}/s, {r.crashes} crashes",
                  file=sys.stderr)

    for target in targets:
        last[0] = 0.0
        res = run(target, args.count, args.seed, args.jobs, progress=progress)
        summary.append(res)
        print(f"{target}: {res.count:,} inputs in {res.seconds:.1f} s = {res.rate:,.0f} inputs/s "
              f"({args.jobs} jobs), {res.crashes} crashes; slowest input {res.slowest[0] * 1000:.1f} ms "
              f"(index {res.slowest[1]})", flush=True)
        for sig, n in sorted(res.signatures.items(), key=lambda kv: -kv[1]):
            print(f"  {n:,} x {sig}")
        for crash in res.examples:
            path = save_crash(crash, args.crash_dir)
            shown = crash.data.hex() if len(crash.data) <= 1024 else \
                crash.data[:1024].hex() + f"... ({len(crash.data)} bytes, all in the .txt)"
            print(f"  CRASH {crash.target} seed {crash.seed} index {crash.index}: {crash.error[:300]}\n"
                  f"    input hex: {shown}\n    saved: {path}")
        failed |= res.crashes > 0
    total_inputs = sum(r.count for r in summary)
    total_s = sum(r.seconds for r in summary)
    print(f"total: {total_inputs:,} inputs in {total_s:.1f} s, "
          f"{'CRASHES FOUND' if failed else 'no unexpected exception'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
