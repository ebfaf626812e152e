"""cnrd.ops.gcpolicy: the collector is frozen after the load and on a timer, full collections only on a timer."""

from __future__ import annotations

import gc
import weakref

from twisted.internet.task import Clock

from cnrd.ops.gcpolicy import NEVER, GcPolicy
from tests.test_service import make


class FakeGc:
    """Records what the policy asks of the ``gc`` module."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.threshold = (700, 10, 10)
        self.callbacks: list = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(("collect", generation))
        return 0

    def isenabled(self) -> bool:
        return ("disable",) not in self.calls or self.calls[-1] == ("enable",)

    def disable(self) -> None:
        self.calls.append(("disable",))

    def enable(self) -> None:
        self.calls.append(("enable",))

    def freeze(self) -> None:
        self.calls.append(("freeze",))

    def unfreeze(self) -> None:
        self.calls.append(("unfreeze",))

    def get_threshold(self) -> tuple:
        return self.threshold

    def set_threshold(self, *t: int) -> None:
        self.threshold = t


def test_start_collects_freezes_and_turns_automatic_full_collections_off():
    fake, clock = FakeGc(), Clock()
    p = GcPolicy(clock, 10, 3600, gc=fake)
    with p.loading():
        assert fake.calls == [("disable",)]
    # what the load made is frozen before the collector is back, so that
    # neither an automatic young collection nor start()'s walks it
    assert fake.calls == [("disable",), ("freeze",), ("enable",)]
    p.start()
    assert fake.calls == [("disable",), ("freeze",), ("enable",), ("collect", 1), ("freeze",)]
    assert fake.threshold == (700, 10, NEVER)
    fake.calls.clear()
    clock.advance(10)
    assert fake.calls == [("collect", 1), ("freeze",)]  # young generations only, then freeze
    fake.calls.clear()
    for _ in range(359):
        clock.advance(10)
    assert ("unfreeze",) in fake.calls and ("collect", 2) in fake.calls
    assert fake.calls[-1] == ("freeze",)
    assert p.full_collections == 1 and p.freezes == 1 + 360
    p.stop()
    assert fake.threshold == (700, 10, 10)
    assert fake.calls[-1] == ("unfreeze",)
    fake.calls.clear()
    clock.advance(100000)
    assert fake.calls == []


def test_interval_zero_leaves_the_collector_alone():
    fake, clock = FakeGc(), Clock()
    p = GcPolicy(clock, 0, 3600, gc=fake)
    with p.loading():
        pass
    p.start()
    clock.advance(10000)
    assert fake.calls == [] and fake.threshold == (700, 10, 10)
    assert not p.active
    p.stop()
    assert fake.calls == []


def test_full_interval_zero_never_walks_everything():
    fake, clock = FakeGc(), Clock()
    p = GcPolicy(clock, 10, 0, gc=fake)
    p.start()
    fake.calls.clear()
    clock.advance(100000)
    assert ("unfreeze",) not in fake.calls and ("collect", 2) not in fake.calls
    p.stop()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_real_collector_young_cycles_are_still_reclaimed_and_frozen_ones_by_the_full_collection():
    clock = Clock()
    p = GcPolicy(clock, 10, 3600)
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # alive when frozen
        frozen = weakref.ref(a)
        p.start()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[2] == NEVER
        del a, b
        young = cycle()  # made after the freeze: a young collection takes it
        p.freeze()
        assert young() is None
        assert frozen() is not None  # frozen while alive: only the full collection walks it
        assert p.full_collection() >= 2
        assert frozen() is None
        assert p.pauses[1][0] >= 1 and p.pauses[2][0] >= 1 and p.pauses[2][2] > 0
    finally:
        p.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[2] != NEVER


def test_service_freezes_after_loading_and_gives_the_collector_back_at_stop():
    svc, port, store, clock = make()
    assert svc.gc is not None and svc.gc.active
    assert gc.get_freeze_count() > 0
    clock.advance(svc.config.server.gc_freeze_interval)
    assert svc.gc.freezes == 2
    svc.stopService()
    assert not svc.gc.active
    assert gc.get_freeze_count() == 0
