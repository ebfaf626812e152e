"""The lease journal's ring file: checksummed records in a preallocated file.

Each record is a header (magic, epoch, sequence, payload length, CRC-32 of
epoch, sequence and payload) and its payload, starting on a 512-byte
boundary.  Records are written one after the other, starting over at 0 when
the next would not fit, and each append is fdatasync'ed: the file never
grows, so the sync commits no file-system metadata.  A record cut short by
a crash fails its CRC and reads as absent.  The epoch tells one LMDB
store's records from those a previous store left in the file.

What the records hold is :mod:`cnrd.leases.journal`'s business; it tells
the ring which records LMDB holds (:meth:`Journal.release`), and only their
room is reused.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque

MAGIC = b"CNJ1"
_HDR = struct.Struct("!4sQQII")  # magic, epoch, sequence, payload length, crc32
_EPOCH_SEQ = struct.Struct("!QQ")
ALIGN = 512
DEFAULT_SIZE = 16 << 20


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def span(length: int) -> int:
    """The bytes of the ring a record with a ``length``-byte payload takes."""
    return _align(_HDR.size + length)


def _crc(epoch: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_EPOCH_SEQ.pack(epoch, seq)))


class Journal:
    """The ring file: append records, scan the valid ones, free what LMDB holds."""

    def __init__(self, path: str, size: int = DEFAULT_SIZE, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:
            self.fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size // ALIGN * ALIGN
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            have = os.fstat(self.fd).st_size
            if have < size:
                self._fill(have, size)
            self.size = max(size, have) // ALIGN * ALIGN
        self.pos = 0
        # (seq, start, end) of records LMDB does not hold yet, oldest first
        self.live: deque[tuple[int, int, int]] = deque()

    def _fill(self, start: int, size: int) -> None:
        # Written zeros, not fallocate: fdatasync of a preallocated but
        # unwritten extent still commits the extent conversion to the
        # file-system journal, the very sync this file exists to avoid.
        zeros = bytes(1 << 20)
        pos = start
        while pos < size:
            pos += os.pwrite(self.fd, zeros[: size - pos], pos)
        os.fsync(self.fd)
        d = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(d)
        finally:
            os.close(d)

    def scan(self, epoch: int) -> list[tuple[int, bytes, int, int]]:
        """Every intact record of ``epoch``: (seq, payload, start, end), by sequence."""
        out: list[tuple[int, bytes, int, int]] = []
        size = self.size
        data = os.pread(self.fd, size, 0)
        off = 0
        while off + _HDR.size <= size:
            if data[off:off + 4] == MAGIC:
                _, rec_epoch, seq, length, crc = _HDR.unpack_from(data, off)
                end = off + _HDR.size + length
                if end <= size:
                    payload = data[off + _HDR.size:end]
                    if _crc(rec_epoch, seq, payload) == crc:
                        if rec_epoch == epoch:
                            out.append((seq, payload, off, end))
                        off = _align(end)
                        continue
            off += ALIGN
        out.sort(key=lambda r: r[0])
        return out

    def fits(self, length: int) -> bool:
        """Whether a payload of ``length`` bytes can ever go in the ring."""
        return span(length) <= self.size // 2

    def append(self, epoch: int, seq: int, payload: bytes) -> bool:
        """Write one record and fdatasync it; False if the ring has no free room."""
        size = span(len(payload))
        start = self.pos if self.pos + size <= self.size else 0
        end = start + size
        if not self.has_room(start, end):
            return False
        os.pwrite(self.fd, _HDR.pack(MAGIC, epoch, seq, len(payload), _crc(epoch, seq, payload)) + payload, start)
        os.fdatasync(self.fd)
        self.live.append((seq, start, end))
        self.pos = end
        return True

    def has_room(self, start: int, end: int) -> bool:
        """Whether [start, end) misses every record LMDB lacks (O(1): they lie in one arc).

        Records are laid one after the other, starting over at 0 when one
        would not fit, so the live ones run from the oldest's start round to
        ``pos`` (the newest's end) and ``start`` is either ``pos`` or 0.
        """
        if not self.live:
            return True
        oldest, pos = self.live[0][1], self.pos
        if oldest < pos:  # live arc [oldest, pos): free after pos, and before oldest
            return start >= pos or end <= oldest
        return start == pos and end <= oldest  # live arc wraps: free is [pos, oldest)

    def release(self, upto: int) -> None:
        """LMDB holds every record up to sequence ``upto``: their room may be reused."""
        live = self.live
        while live and live[0][0] <= upto:
            live.popleft()

    def record_at(self, offset: int, epoch: int, seq: int) -> tuple[bytes, int] | None:
        """The intact record ``seq`` of ``epoch`` starting at ``offset``: (payload, its end), else None."""
        if offset + _HDR.size > self.size:
            return None
        head = os.pread(self.fd, 4096, offset)
        if len(head) < _HDR.size or head[:4] != MAGIC:
            return None
        _, rec_epoch, rec_seq, length, crc = _HDR.unpack_from(head)
        end = offset + _HDR.size + length
        if rec_epoch != epoch or rec_seq != seq or end > self.size:
            return None
        payload = head[_HDR.size:_HDR.size + length]
        if len(payload) < length:
            payload += os.pread(self.fd, length - len(payload), offset + len(head))
        if len(payload) != length or _crc(rec_epoch, rec_seq, payload) != crc:
            return None  # torn, or still being written
        return payload, end

    def read_from(self, epoch: int, after: int, offset: int | None,
                  limit: int = 1 << 30) -> tuple[list[tuple[int, bytes]], int | None]:
        """The records after sequence ``after``, in order and without a gap.

        ``offset`` is where record ``after + 1`` should start (it may have
        wrapped to 0); None (``journal/applied`` in its older, sequence-only
        form) scans the whole ring.  Returns the records and where the next
        one would start.
        """
        out: list[tuple[int, bytes]] = []
        if offset is None:
            for seq, payload, _, end in self.scan(epoch):
                if seq <= after:
                    continue
                if seq != after + 1:
                    break
                out.append((seq, payload))
                after, offset = seq, _align(end)
            return out, offset
        total = 0
        while total < limit:
            want = after + 1
            found = self.record_at(offset, epoch, want)
            if found is None and offset:
                found = self.record_at(0, epoch, want)  # the writer wrapped round
                if found is not None:
                    offset = 0
            if found is None:
                break
            payload, end = found
            out.append((want, payload))
            total += len(payload)
            after, offset = want, _align(end)
        return out, offset

    def close(self) -> None:
        """Close the ring file."""
        os.close(self.fd)
