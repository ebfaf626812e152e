"""The lease journal's applier: a process of its own that copies the journal into LMDB.

Started by :class:`cnrd.leases.journal.JournaledStore` as
``python -m cnrd.leases.applier DATA_DIR MAP_SIZE EVENT_HISTORY INTERVAL [EVENT_HISTORY_AGE]``.
Every INTERVAL seconds it applies, in one synced LMDB transaction, the
journal records that follow LMDB's ``journal/applied`` number (read inside
that transaction, so the server's own applies never collide with ours).  It
runs at the lowest CPU priority (SCHED_IDLE): with a core shared, the
server answering requests comes first and LMDB catches up in the gaps.

Standard input is the lifeline: when the server closes it (or dies), what
is left is applied and the process exits.  Errors go to standard error and
exit status 1; the server then applies what is pending itself and starts
another applier.
"""

from __future__ import annotations

import os
import select
import sys

from cnrd.leases.apply import apply_journal, stored_epoch
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.ring import Journal

# Bytes of journal payload per LMDB transaction: bounds each apply's work.
APPLY_LIMIT = 4 << 20


def _lower_priority() -> None:
    # SCHED_IDLE: any request-handling thread that wakes on this core takes
    # it at once (SCHED_BATCH and nice 10 leave a longer REQUEST->ACK tail).
    # Starved under saturation, the ring fills and the server writes to LMDB
    # itself: slower, never unsafe.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass


def run(path: str, map_size: int, event_history: int, interval: float, event_history_age: int = 0) -> None:
    """Apply until standard input closes, then apply the rest and return."""
    inner = LmdbLeaseStore(path, map_size=map_size, event_history=event_history, event_history_age=event_history_age)
    journal = Journal(os.path.join(path, "journal"), readonly=True)
    try:
        epoch = stored_epoch(inner.get_state)
        if not epoch:
            raise SystemExit(f"{path}: LMDB has no journal epoch; the server sets it before starting us")
        while True:
            ready, _, _ = select.select([0], [], [], interval)
            if ready and not os.read(0, 4096):
                break
            apply_journal(inner, journal, epoch, limit=APPLY_LIMIT)
        while apply_journal(inner, journal, epoch, limit=APPLY_LIMIT):
            pass
    finally:
        journal.close()
        inner.close()


def main(argv: list[str]) -> int:
    """The applier process's entry point; returns its exit status."""
    if len(argv) not in (4, 5):
        print("usage: python -m cnrd.leases.applier DATA_DIR MAP_SIZE EVENT_HISTORY INTERVAL [EVENT_HISTORY_AGE]",
              file=sys.stderr)
        return 2
    _lower_priority()
    try:
        run(argv[0], int(argv[1]), int(argv[2]), float(argv[3]), int(argv[4]) if len(argv) == 5 else 0)
    except Exception as e:  # noqa: BLE001 -- reported to the server through stderr
        print(f"lease journal applier: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
