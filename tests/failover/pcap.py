"""A small classic-pcap reader and TCP stream reassembler, for the failover tests.

Enough for captures taken with tcpdump/tshark on Linux: classic pcap (either
byte order, microsecond or nanosecond timestamps; not pcapng), Ethernet (with an
optional 802.1Q tag), Linux "cooked" (SLL) or raw-IP link types, IPv4 without
fragments, TCP.

Reassembly gives one :class:`TcpStream` per direction and connection, keyed by
the 4-tuple.  A SYN with a new initial sequence number starts a new connection
(a retransmitted SYN does not).  A stream whose SYN was not captured starts at
the first segment seen.  Segments are placed by sequence number, so reordering
is undone and retransmitted bytes count once; the data stops at the first hole.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


class PcapError(ValueError):
    """Not a classic pcap file we can read."""


def read_pcap(path: str | Path) -> tuple[int, list[tuple[float, bytes]]]:
    """The link type and the (timestamp, frame bytes) records of a pcap file."""
    data = Path(path).read_bytes()
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise PcapError(f"{path}: not a classic pcap file")
    order, unit = _MAGIC[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    records = []
    pos = 24
    while pos + rec.size <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, pos)
        pos += rec.size
        if pos + incl > len(data):
            break  # truncated last record (capture killed mid-write)
        records.append((sec + frac * unit, data[pos:pos + incl]))
        pos += incl
    return linktype, records


@dataclass(frozen=True)
class Segment:
    """One TCP segment as captured."""

    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    flags: int
    payload: bytes


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype, pos = struct.unpack_from("!H", frame, 12)[0], 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= pos + 4:  # VLAN tags
            ethertype, pos = struct.unpack_from("!H", frame, pos + 2)[0], pos + 4
        return frame[pos:] if ethertype == 0x0800 else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16 or struct.unpack_from("!H", frame, 14)[0] != 0x0800:
            return None
        return frame[16:]
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return frame
    raise PcapError(f"unsupported link type {linktype}")


def tcp_segments(path: str | Path) -> Iterator[Segment]:
    """Every IPv4/TCP segment of a pcap file, in capture order."""
    linktype, records = read_pcap(path)
    for ts, frame in records:
        ip = _ip_packet(linktype, frame)
        if ip is None or len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        frag = struct.unpack_from("!H", ip, 6)[0]
        if ip[9] != 6 or frag & 0x3FFF:  # not TCP, or a fragment
            continue
        ip = ip[:total]  # drop Ethernet padding, which is not payload
        tcp = ip[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack_from("!HHI", tcp)
        offset = (tcp[12] >> 4) * 4
        yield Segment(ts, socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]),
                      dport, seq, tcp[13], bytes(tcp[offset:]))


@dataclass
class TcpStream:
    """The bytes one side sent on one connection, in sequence order."""

    src: str
    sport: int
    dst: str
    dport: int
    start: float  # timestamp of the first segment seen
    base: int  # sequence number of the first data byte
    isn: int | None  # initial sequence number, if the SYN was captured
    pieces: dict[int, tuple[float, bytes]] = field(default_factory=dict)
    data: bytes = b""
    holes: int = 0  # data after a gap is left out; count of such gaps
    retransmitted: int = 0  # bytes seen more than once
    _marks: list[tuple[int, float]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def add(self, seg: Segment) -> None:
        rel = (seg.seq - self.base) & 0xFFFFFFFF
        if rel >= 0x80000000 or not seg.payload:
            return  # before the stream's start (mid-connection capture), or empty
        old = self.pieces.get(rel)
        if old is None or len(old[1]) < len(seg.payload):
            self.pieces[rel] = (seg.ts, seg.payload)
        if old is not None:
            self.retransmitted += min(len(old[1]), len(seg.payload))

    def assemble(self) -> None:
        out = bytearray()
        marks: list[tuple[int, float]] = []
        for rel in sorted(self.pieces):
            ts, payload = self.pieces[rel]
            end = rel + len(payload)
            if rel > len(out):
                self.holes += 1
                break
            if end <= len(out):
                self.retransmitted += len(payload)
                continue
            self.retransmitted += len(out) - rel
            marks.append((len(out), ts))
            out += payload[len(out) - rel:]
        self.data = bytes(out)
        self._marks = marks

    def time_at(self, offset: int) -> float:
        """Capture time of the segment that carried byte ``offset``."""
        ts = self.start
        for pos, when in self._marks:
            if pos > offset:
                break
            ts = when
        return ts


def tcp_streams(path: str | Path, port: int | None = None) -> list[TcpStream]:
    """Reassembled TCP streams (both directions, every connection) of a pcap file,
    ordered by their first segment; only those touching ``port`` if given."""
    current: dict[tuple[str, int, str, int], TcpStream] = {}
    streams: list[TcpStream] = []
    for seg in tcp_segments(path):
        if port is not None and port not in (seg.sport, seg.dport):
            continue
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        stream = current.get(key)
        if seg.flags & TCP_SYN:
            if stream is not None and stream.isn == seg.seq:
                continue  # retransmitted SYN (or SYN+ACK)
            stream = TcpStream(seg.src, seg.sport, seg.dst, seg.dport, seg.ts,
                               (seg.seq + 1) & 0xFFFFFFFF, seg.seq)
            current[key] = stream
            streams.append(stream)
            continue
        if stream is None:
            if not seg.payload:
                continue  # a bare ACK/FIN/RST of a connection we never saw data of
            stream = TcpStream(seg.src, seg.sport, seg.dst, seg.dport, seg.ts, seg.seq, None)
            current[key] = stream
            streams.append(stream)
        stream.add(seg)
    for stream in streams:
        stream.assemble()
    return streams
