"""Load balancing (RFC 3074): the client hash and hash-bucket-assignment bitmaps.

A hash-bucket-assignment ([D] §12.11, draft-ietf-dhc-failover-12) is 256 bits,
one per hash bucket, that a CONNECT carries to tell the secondary which clients
each server answers.

Pure module: stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable

from cnrd.failover.wire.codes import HBA_SIZE

__all__ = [
    "PEARSON",
    "hba_buckets",
    "hba_from_buckets",
    "hba_from_split",
    "hba_has_bucket",
    "load_balance_hash",
]

#: RFC 3074 §6: the Pearson permutation table (RFC data, identical in every
#: implementation), a permutation of 0..255.
PEARSON = (
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
    31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
    59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
    180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
    40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
    207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
    20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
    230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
    39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
    82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
    195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
    137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
    56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
    33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
    96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
    216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
)


def load_balance_hash(client_key: bytes) -> int:
    """The RFC 3074 §6 bucket (0..255) of a client.

    Pearson hash seeded with the key length, walking the key from its last byte.
    The key is the client-identifier option value (type byte included) if the
    client sent one, else chaddr[0:hlen] without the htype.
    """
    h = len(client_key) & 0xFF
    for byte in reversed(client_key):
        h = PEARSON[h ^ byte]
    return h


def hba_from_buckets(buckets: Iterable[int]) -> bytes:
    """A 32-byte hash-bucket-assignment with the given buckets set.  Bucket b is
    bit b % 8 (least-significant first) of byte b // 8, as ISC encodes it
    (ISC's split 100 is ff x12, 0f, 00 x19)."""
    out = bytearray(HBA_SIZE)
    for b in buckets:
        if not 0 <= b < 8 * HBA_SIZE:
            raise ValueError(f"bucket {b} outside 0..255")
        out[b // 8] |= 1 << (b % 8)
    return bytes(out)


def hba_from_split(split: int) -> bytes:
    """ISC's ``split N`` (0..256): buckets 0..N-1 set.  With ISC a set bit means
    the *primary* serves the bucket (the opposite of [D] §12.11's wording)."""
    if not 0 <= split <= 8 * HBA_SIZE:
        raise ValueError(f"split {split} outside 0..256")
    return hba_from_buckets(range(split))


def hba_has_bucket(hba: bytes, bucket: int) -> bool:
    """Whether ``bucket``'s bit is set in a 32-byte HBA."""
    if len(hba) != HBA_SIZE:
        raise ValueError(f"HBA must be {HBA_SIZE} bytes")
    if not 0 <= bucket < 8 * HBA_SIZE:
        raise ValueError(f"bucket {bucket} outside 0..255")
    return bool(hba[bucket // 8] >> (bucket % 8) & 1)


def hba_buckets(hba: bytes) -> frozenset[int]:
    """The set buckets of a 32-byte HBA."""
    return frozenset(b for b in range(8 * HBA_SIZE) if hba_has_bucket(hba, b))
