"""Applying the lease journal's records to LMDB: what the server and its applier process share.

:func:`apply_journal` moves the records LMDB does not hold yet into one LMDB
transaction, together with the number of the last one (state key
``journal/applied``); :func:`stored_epoch` tells one LMDB store's records
from another's.  The server (:mod:`cnrd.leases.journal`) calls these at
start-up and when the ring is full, the applier process
(:mod:`cnrd.leases.applier`) once a second.  Kept apart from the journal's
writer so that the applier loads only this, LMDB and the ring file, not the
server's process and thread handling.
"""

from __future__ import annotations

import struct

from cnrd.leases.lmdb_store import LmdbLeaseStore, StateReader
from cnrd.leases.ring import Journal
from cnrd.leases.store import PackedBatch, StoreError

APPLIED_KEY = "journal/applied"
EPOCH_KEY = "journal/epoch"
_SEQ = struct.Struct("!Q")  # the epoch; the older form of journal/applied
_APPLIED = struct.Struct("!QQQ")  # last sequence LMDB holds, where the next record starts, applies


def stored_epoch(get_state: StateReader) -> int:
    """The journal epoch an LMDB store holds (0: it never had a journal)."""
    raw = get_state(EPOCH_KEY)
    return int(_SEQ.unpack(raw)[0]) if raw else 0


def marks(epoch: int, seq: int, offset: int, applies: int) -> dict[str, bytes | None]:
    """The state entries naming LMDB's journal epoch and how far it has applied the journal."""
    return {EPOCH_KEY: _SEQ.pack(epoch), APPLIED_KEY: _APPLIED.pack(seq, offset, applies)}


def applied_of(value: bytes | None) -> tuple[int, int | None, int]:
    """``journal/applied``: (last sequence LMDB holds, where the next record starts, applies so far).

    The older form holds the sequence alone (offset None)."""
    if not value:
        return 0, None, 0
    if len(value) == _SEQ.size:
        return int(_SEQ.unpack(value)[0]), None, 0
    seq, offset, applies = _APPLIED.unpack(value)
    return int(seq), int(offset), int(applies)


def batch_of(records: list[tuple[int, bytes]], path: str) -> PackedBatch:
    """The journal records' changes, merged in order; a record that will not decode is a StoreError."""
    batch = PackedBatch()
    for seq, payload in records:
        try:
            batch.extend(PackedBatch.from_bytes(payload))
        except ValueError as e:
            raise StoreError(f"lease journal record {seq} in {path} is corrupt: {e}") from e
    return batch


def apply_journal(inner: LmdbLeaseStore, journal: Journal, epoch: int, *, extra: PackedBatch | None = None,
                  extra_seq: int = 0, next_offset: int = 0, limit: int = 1 << 30) -> int:
    """Apply what the journal holds beyond LMDB's number (then ``extra``) in one LMDB transaction.

    LMDB's number is read inside the write transaction, so the server and
    its applier process may both call this: whichever comes second finds
    only what is left.  ``extra`` (sequence ``extra_seq``, not in the ring)
    goes last; the next journal record will then start at ``next_offset``.
    Returns the number of journal records applied.
    """
    applied = [0]

    def make(get_state: StateReader) -> PackedBatch | None:
        seq, offset, applies = applied_of(get_state(APPLIED_KEY))
        records, end = journal.read_from(epoch, seq, offset, limit)
        if not records and extra is None:
            return None
        batch = batch_of(records, journal.path)
        last = records[-1][0] if records else seq
        if extra is not None:
            if last != extra_seq - 1:
                raise StoreError(f"lease journal in {journal.path}: LMDB holds up to {last}, "
                                 f"records up to {extra_seq - 1} were written")
            batch.extend(extra)
            last, end = extra_seq, next_offset
        batch.state[APPLIED_KEY] = _APPLIED.pack(last, end or 0, applies + 1)
        applied[0] = len(records)
        return batch

    inner.commit_with(make)
    return applied[0]
