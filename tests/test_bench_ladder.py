"""The saturation ladder of bench.run: which rates it asks for and which try it reports.

The runs are scripted (asked rate -> achieved DORA/s, one value per run), so
these check the ladder's decisions without a lab or perfdhcp.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.run import FULL, Bench, median_try


class ScriptedBench(Bench):
    """A Bench whose runs return scripted figures instead of running perfdhcp."""

    def __init__(self, script: dict[int, list[float]], **settings: int) -> None:  # no lab
        self.s = replace(FULL, **settings)
        self.script = {rate: list(runs) for rate, runs in script.items()}
        self.asked: list[int] = []
        self.said: list[str] = []
        self.say = self.said.append

    def _saturation_try(self, factory: object, rate: int) -> dict:
        self.asked.append(rate)
        achieved = self.script[rate].pop(0)
        return {"asked": rate, "achieved": achieved, "leases": 0, "cpu_s": 0.0}


def test_median_try_takes_the_middle_run_and_the_lower_middle_of_an_even_count() -> None:
    runs = [{"achieved": a} for a in (15_900.0, 13_800.0, 15_700.0)]
    assert median_try(runs)["achieved"] == 15_700.0
    assert median_try([{"achieved": 10.0}, {"achieved": 20.0}])["achieved"] == 10.0
    assert median_try([{"achieved": None}, {"achieved": 5.0}])["achieved"] is None
    with pytest.raises(ValueError):
        median_try([])


def test_a_stalled_run_does_not_stop_the_ladder() -> None:
    # 16,000/s: the first run stalls (13,865), the two repeats keep up.
    b = ScriptedBench({
        2000: [2000], 4000: [4000], 8000: [8000], 16000: [13_865, 15_900, 15_700],
        32000: [16_100, 15_800, 16_300], 24000: [16_000, 15_600, 16_200], 20000: [15_900, 16_100, 15_850],
    })
    out = b.saturation(object())
    assert b.asked == [2000, 4000, 8000, 16000, 16000, 16000, 32000, 32000, 32000,
                       24000, 24000, 24000, 20000, 20000, 20000]
    assert [t["asked"] for t in out["tries"]] == [2000, 4000, 8000, 16000, 32000, 24000, 20000]
    # 16,000/s counts as kept up with (its median run, 15,700), so the lowest
    # rate not kept up with is 20,000/s, reported by its median run.
    assert out["result"]["asked"] == 20000
    assert out["result"]["achieved"] == 15_900
    assert out["result"]["rung"] == [15_900, 16_100, 15_850]
    assert out["tries"][3]["rung"] == [13_865, 15_900, 15_700]


def test_one_run_per_rate_when_rung_tries_is_one() -> None:
    b = ScriptedBench({2000: [2000], 4000: [4000], 8000: [8000], 16000: [13_865],
                       12000: [12_000], 14000: [12_100]}, rung_tries=1)
    out = b.saturation(object())
    assert b.asked == [2000, 4000, 8000, 16000, 12000, 14000]
    assert out["result"]["asked"] == 14000 and out["result"]["achieved"] == 12_100
    assert "rung" not in out["result"]


def test_rates_kept_up_with_are_run_once() -> None:
    b = ScriptedBench({r: [float(r)] for r in (2000, 4000, 8000, 16000, 32000)})
    out = b.saturation(object())
    assert b.asked == [2000, 4000, 8000, 16000, 32000]
    assert out["saturated"] is False and out["result"]["asked"] == 32000
