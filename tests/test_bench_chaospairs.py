"""bench/chaospairs.py and the chaos state watcher over several relationships: no root."""

from __future__ import annotations

import ipaddress
import time

import pytest

from bench import chaos, chaospairs
from cnrd.config import loads


def _config(count: int, lb: bool) -> str:
    rels = chaospairs.relationships(count, chaos.PAIR_NAME, chaos.POOL)
    pairs = chaospairs.sections(rels, ips=chaos.IP, subnet=chaos.SUBNET, mclt=chaos.MCLT,
                                poll_timeout=chaos.POLL_TIMEOUT, load_balancing=lb)
    return chaos.CONFIG.format(name="main", iface="eth0", extra="", pairs=pairs).replace("@DATA@", "/nonexistent")


def test_two_relationships_split_the_pool_and_each_server_is_main_of_one():
    r1, r2 = chaospairs.relationships(2, "examplepair", chaos.POOL)
    assert (r1.main_side, r2.main_side) == ("main", "backup")
    n = lambda a: int(ipaddress.IPv4Address(a))
    assert n(r1.first) == n(chaos.POOL[0]) and n(r2.last) == n(chaos.POOL[1])
    assert n(r1.last) + 1 == n(r2.first)
    assert n(r1.last) - n(r1.first) == n(r2.last) - n(r2.first)
    assert chaospairs.relationship_of((r1, r2), r1.first) == "examplepair"
    assert chaospairs.relationship_of((r1, r2), r2.first) == "examplepair2"
    assert chaospairs.relationship_of((r1, r2), "10.98.0.5") is None
    with pytest.raises(ValueError):
        chaospairs.relationships(3, "x", chaos.POOL)


@pytest.mark.parametrize("count,lb", [(1, False), (1, True), (2, False), (2, True)])
def test_every_mode_is_a_config_cnrd_loads(count, lb):
    c = loads(_config(count, lb))
    assert len(c.failover_pairs) == count
    assert all(p.load_balancing is lb for p in c.failover_pairs.values())
    if count == 2:
        a, b = c.failover_pairs["examplepair"], c.failover_pairs["examplepair2"]
        assert (a.main, a.backup) == (b.backup, b.main)
        assert set(a.scopes) | set(b.scopes) == set(c.scopes) and not set(a.scopes) & set(b.scopes)


def test_composite_is_common_state_or_the_mix():
    assert chaospairs.composite(["NORMAL", "NORMAL"]) == "NORMAL"
    mixed = chaospairs.composite(["NORMAL", "PARTNER-DOWN"])
    assert mixed == "NORMAL|PARTNER-DOWN" and mixed != "NORMAL"
    assert chaospairs.is_in(mixed, "PARTNER-DOWN") and not chaospairs.is_in(mixed, "RECOVER")


def test_watcher_says_normal_only_when_every_relationship_is(tmp_path):
    logs = {s: tmp_path / f"{s}.log" for s in chaos.SIDES}
    for p in logs.values():
        p.write_text("")
    w = chaos.StateWatcher(("examplepair", "examplepair2"))
    try:
        for side, p in logs.items():
            w.attach(side, p)

        def say(side: str, pair: str, old: str, new: str) -> None:
            with open(logs[side], "a") as f:
                f.write(f"2026-01-01T00:00:00+0000 [x] failover pair {pair}: state {old} -> {new} (why)\n")
            w.poll()

        for side in chaos.SIDES:
            say(side, "examplepair", "STARTUP", "NORMAL")
        assert not w.both("NORMAL")
        assert w.get("main") == "NORMAL|STARTUP"
        for side in chaos.SIDES:
            say(side, "examplepair2", "STARTUP", "NORMAL")
        assert w.both("NORMAL")
        say("backup", "examplepair2", "NORMAL", "PARTNER-DOWN")
        assert w.any_in("backup", "PARTNER-DOWN") and not w.both("NORMAL")
        # another relationship's name in the log is not ours
        say("main", "otherpair", "NORMAL", "RECOVER")
        assert w.get("main") == "NORMAL"
        t = time.time() + 1
        tl = w.timeline(t - 10, t, pair="examplepair2")
        assert tl["backup"][-1][2] == "PARTNER-DOWN" and tl["main"][-1][2] == "NORMAL"
        assert w.timeline(t - 10, t, pair="examplepair")["backup"][-1][2] == "NORMAL"
    finally:
        w.stop()
