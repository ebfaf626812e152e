"""Latency histograms kept on the hot paths and read by /metrics.

A :class:`Histogram` is a fixed list of bucket bounds and a count per
bucket: :meth:`Histogram.observe` costs one ``bisect`` and two additions,
nothing is allocated and no lock is taken (everything runs on the reactor
thread; /metrics copies the counts there).  The exported form is
Prometheus's: cumulative ``le`` buckets, ``+Inf``, the sum.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["Histogram", "REPLY_BUCKETS", "COMMIT_BUCKETS", "BNDACK_BUCKETS"]

#: request -> reply, seconds: from tens of microseconds (an OFFER) to a slow fsync (an ACK).
REPLY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: one group commit (journal append and fsync), seconds.
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: BNDUPD sent -> its BNDACK received, seconds (a LAN round trip plus the partner's commit).
BNDACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observations per bucket, and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        """``n`` observations of ``seconds`` each (a batch answered at one instant)."""
        self.counts[bisect_left(self.bounds, seconds)] += n
        self.total += seconds * n

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus's cumulative buckets: ``(le, count)`` with ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, c in zip(self.bounds, self.counts):
            running += c
            out.append((repr(float(bound)), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out
