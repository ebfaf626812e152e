"""When the cyclic garbage collector runs, so that it never stalls the request path.

CPython's collector walks every container object of the generation it
collects.  The oldest generation holds every lease, scope and module of the
server, so a full collection costs about a microsecond per lease in memory:
tens of milliseconds with tens of thousands of leases, about a second with a
million.  CPython starts one by itself whenever a quarter more objects have
survived since the last; at thousands of new leases a second that is every
few seconds, and every request that arrives meanwhile waits: such pauses
dominate the REQUEST→ACK tail.

The policy: no collections while the leases are loaded (:meth:`GcPolicy.loading`);
then the young generations are collected and everything *frozen*
(``gc.freeze``: what exists now is never walked again; reference counting
still frees it as usual).  From then on the young generations are collected
as CPython would (well under a millisecond each), the automatic full
collection is off, and every ``gc-freeze-interval`` what survived the young
collections is frozen too, so no generation ever grows large.  The one thing
freezing gives up is reclaiming a reference cycle that was alive when it was
frozen and died later (the request path makes none); a full collection every
``gc-full-interval`` (default a day) unfreezes, reclaims those and freezes
again.  ``gc-freeze-interval = 0`` leaves CPython's collector as it is.

Thin adapter over the ``gc`` module (injectable for tests) and an
``IReactorTime`` for the timers; it reads the process clock only to measure
the collector's pauses.
"""

from __future__ import annotations

import gc as _gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger(namespace="cnrd.gc")

# gc.set_threshold's third figure: full collections only when we ask.
NEVER = 1 << 30

#: A ``gc.callbacks`` entry: called with "start"/"stop" and the collection's info.
GcCallback = Callable[[Literal["start", "stop"], dict[str, int]], object]


class GcModule(Protocol):
    """What the policy uses of the ``gc`` module (tests pass a fake)."""

    callbacks: list[GcCallback]

    def isenabled(self) -> bool: ...
    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def collect(self, generation: int = 2, /) -> int: ...
    def freeze(self) -> None: ...
    def unfreeze(self) -> None: ...
    def get_threshold(self) -> tuple[int, int, int]: ...
    def set_threshold(self, threshold0: int, threshold1: int = 0, threshold2: int = 0, /) -> None: ...


class GcPolicy:
    """Freeze what survives, periodically; full collections on a timer only."""

    def __init__(self, reactor: IReactorTime, freeze_interval: float, full_interval: float, *,
                 gc: GcModule = _gc) -> None:
        self.reactor = reactor
        self.freeze_interval = freeze_interval
        self.full_interval = full_interval
        self.gc = gc
        # generation -> [collections, seconds paused, longest pause], for the metrics
        self.pauses: dict[int, list[float]] = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}
        self.freezes = 0
        self.full_collections = 0
        self._saved_threshold: tuple[int, int, int] | None = None
        self._freeze_loop: LoopingCall | None = None
        self._full_loop: LoopingCall | None = None
        self._started = 0.0
        self._callback_installed = False

    @property
    def active(self) -> bool:
        """Whether the policy runs (started, with a freeze interval)."""
        return self._freeze_loop is not None

    @contextmanager
    def loading(self) -> Iterator[None]:
        """Around the start-up load: no collections while a million leases are read.

        CPython would walk the whole heap each time it grew by a quarter
        (several times over a load, seconds in all); loading makes no garbage
        cycles worth that.  What the load made is frozen before the
        collector comes back: enabled with a million new objects young, it
        walked them all at the next allocation (0.17 s at 1,000,000 leases)
        and :meth:`start`'s young collection walked them again (0.19 s).
        """
        if self.freeze_interval <= 0 or not self.gc.isenabled():
            yield
            return
        self.gc.disable()
        try:
            yield
        finally:
            self.gc.freeze()
            self.gc.enable()

    def start(self) -> None:
        """Called once the leases are in memory: freeze, start the timers."""
        if not self._callback_installed:
            self.gc.callbacks.append(self._observe)
            self._callback_installed = True
        if self.freeze_interval <= 0 or self.active:
            return
        self.freeze()
        young, middle, _ = self.gc.get_threshold()
        self._saved_threshold = self.gc.get_threshold()
        self.gc.set_threshold(young, middle, NEVER)
        self._freeze_loop = self._loop(self.freeze, self.freeze_interval)
        if self.full_interval > 0:
            self._full_loop = self._loop(self.full_collection, self.full_interval)

    def _loop(self, f: Callable[[], object], interval: float) -> LoopingCall:
        loop = LoopingCall(f)
        loop.clock = self.reactor
        loop.start(interval, now=False)
        return loop

    def freeze(self) -> None:
        """Collect the young generations, then freeze what survived them."""
        self.gc.collect(1)
        self.gc.freeze()
        self.freezes += 1

    def full_collection(self) -> int:
        """Walk everything once (unfreezing first); returns the objects reclaimed."""
        t0 = time.monotonic()
        self.gc.unfreeze()
        n = self.gc.collect()
        self.gc.freeze()
        self.full_collections += 1
        log.info("full garbage collection: {n} unreachable objects reclaimed in {ms:.0f} ms",
                 n=n, ms=(time.monotonic() - t0) * 1000)
        return n

    def stop(self) -> None:
        """Stop the timers and give CPython its collector back as it was.

        Unfreezes too: a process that goes on (tests, an in-process restart)
        gets its garbage reclaimed as usual again."""
        for loop in (self._freeze_loop, self._full_loop):
            if loop is not None and loop.running:
                loop.stop()
        self._freeze_loop = self._full_loop = None
        if self._saved_threshold is not None:
            self.gc.set_threshold(*self._saved_threshold)
            self._saved_threshold = None
            self.gc.unfreeze()
        if self._callback_installed:
            try:
                self.gc.callbacks.remove(self._observe)
            except ValueError:
                pass
            self._callback_installed = False

    def _observe(self, phase: Literal["start", "stop"], info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            secs = time.perf_counter() - self._started
            p = self.pauses.setdefault(info.get("generation", 0), [0, 0.0, 0.0])
            p[0] += 1
            p[1] += secs
            if secs > p[2]:
                p[2] = secs
