"""What one durable commit costs on a disk: the floor under cnrd's REQUEST→ACK latency.

``python -m bench.disksync --dir /var/lib/cnrd`` appends records to a lease
journal ring (:class:`cnrd.leases.ring.Journal`, the file and the
``pwrite`` + ``fdatasync`` cnrd's every commit makes) in a scratch file in
``--dir``, ``--count`` times, sleeping ``--interval`` seconds between two
(0: back to back), and prints the wall time of each append as percentiles,
with the CPU time the appending thread spent on it.

cnrd sends an ACK only once its lease is synced, so no REQUEST→ACK can be
shorter than this disk's sync; at the rates of the bench's latency step a
commit comes every few hundred microseconds, which ``--interval 0.0002``
imitates (a disk that syncs quickly back to back may be slower when each
sync finds it idle).  Kea's memfile, the bench's anchor, does not sync.

Run it on the file system of the server's ``data-dir``.  It checks what it
measured: every append must have been written (the ring never fills, each
record is released once synced) and read back intact, else it exits 1.
The scratch file (16 MiB) is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from cnrd.leases.ring import Journal

__all__ = ["measure", "percentile", "main"]

#: The payload of a commit of a few leases with their events (bytes).
RECORD = 512


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``sorted_values``, nearest rank."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure(directory: str, count: int, interval: float, size: int = RECORD) -> dict[str, float]:
    """Append ``count`` records of ``size`` bytes to a scratch journal in ``directory``; the figures in µs."""
    scratch = tempfile.mkdtemp(prefix="cnrd-disksync-", dir=directory)
    try:
        journal = Journal(os.path.join(scratch, "journal"))
        payload = os.urandom(size)
        walls: list[float] = []
        cpu = 0.0
        written: list[tuple[int, int]] = []  # (seq, start) of a sample, read back below
        for seq in range(1, count + 1):
            c0, t0 = time.thread_time(), time.perf_counter()
            if not journal.append(1, seq, payload):
                raise RuntimeError(f"the ring had no room for record {seq}")
            walls.append(time.perf_counter() - t0)
            cpu += time.thread_time() - c0
            if seq % 97 == 0:
                written.append((seq, journal.live[-1][1]))
            journal.release(seq)
            if interval:
                time.sleep(interval)
        for seq, start in written:
            got = journal.record_at(start, 1, seq)
            if got is None or got[0] != payload:
                raise RuntimeError(f"record {seq} did not read back intact")
        os.close(journal.fd)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    walls.sort()
    us = 1e6
    return {
        "appends": len(walls), "checked": len(written), "interval_s": interval,
        "p50_us": percentile(walls, 0.50) * us, "p90_us": percentile(walls, 0.90) * us,
        "p99_us": percentile(walls, 0.99) * us, "p999_us": percentile(walls, 0.999) * us,
        "max_us": walls[-1] * us, "cpu_us": cpu / len(walls) * us,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.disksync", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="a directory on the disk to measure")
    ap.add_argument("--count", type=int, default=5000, help="appends (1..100,000; default 5,000)")
    ap.add_argument("--interval", type=float, action="append",
                    help="seconds between two appends, 0..0.01; repeat for several runs (default 0 and 0.0002)")
    a = ap.parse_args(argv)
    intervals = a.interval or [0.0, 0.0002]
    if not 1 <= a.count <= 100_000 or any(not 0 <= i <= 0.01 for i in intervals):
        ap.error("--count must be 1..100,000 and --interval 0..0.01")
    print(f"{RECORD}-byte journal appends (pwrite + fdatasync) in {a.dir}, {a.count} per run")
    for interval in intervals:
        try:
            r = measure(a.dir, a.count, interval)
        except (OSError, RuntimeError) as e:
            print(f"disksync: {e}", file=sys.stderr)
            return 1
        if r["appends"] != a.count or not r["checked"]:
            print("disksync: fewer appends measured than asked", file=sys.stderr)
            return 1
        print(f"  every {interval * 1e6:.0f} µs: p50 {r['p50_us']:.0f} µs, p90 {r['p90_us']:.0f}, "
              f"p99 {r['p99_us']:.0f}, p99.9 {r['p999_us']:.0f}, max {r['max_us']:.0f}; "
              f"CPU {r['cpu_us']:.0f} µs per append ({r['checked']} read back intact)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
