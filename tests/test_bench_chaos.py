"""bench.chaosload: the chaos run fails when its own load did not run.

perfdhcp's manual: ``-s`` "must be 0 or a positive integer", 0 meaning no
seed; Kea 2.2's perfdhcp reads it as a signed 32-bit integer, so it refuses
anything past 2**31 - 1 with "-s <seed> must be non-negative integer" and
exits 1 (exit 2 is documented for command-line errors, 3 for exchanges that
did not complete).  ISC dhclient ``-1`` exits 2 when it gets no lease; busybox
udhcpc ``-n`` exits 1 after "no lease, failing".  No root needed: everything
here is pure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import chaosload as cl
from bench.chaosload import Generator, Plan

REPO = Path(__file__).resolve().parents[1]

#: what perfdhcp 2.2 prints (after its usage text) for ``-s 20261128000``
REJECTED_SEED = ("perfdhcp [-1] [-4 | -6] [-A encapsulation-level] [-b base] [-B] [-c]\n"
                 "...\n3 if there are no general failures in operation, but one or more\n"
                 "  exchanges are not successfully completed.\n"
                 "ERROR: parsing command line options: value of seed: -s <seed> must be non-negative integer\n")
STATS = {"DISCOVER-OFFER": {"sent": 450, "received": 449, "drops": 1},
         "REQUEST-ACK": {"sent": 449, "received": 449, "drops": 0}}


# -- seeds -------------------------------------------------------------------


def test_the_issues_seed_gives_perfdhcp_seeds_it_accepts() -> None:
    # the old derivation, seed * 1000 + i, is out of perfdhcp's range for this seed
    assert 20261128 * 1000 > cl.PERF_SEED_MAX
    for stream in ("churn", "burst"):
        seeds = [cl.perf_seed(20261128, stream, i) for i in range(5000)]
        assert all(1 <= s <= 2**31 - 1 for s in seeds), stream  # 0 would mean "no seed"
        assert len(set(seeds)) == len(seeds), "two runs of one stream share a seed"


@pytest.mark.parametrize("run_seed", [0, 1, 6, -5, 2**31, 2**64 + 3, 20261128])
def test_any_run_seed_stays_in_range(run_seed: int) -> None:
    assert all(1 <= cl.perf_seed(run_seed, "churn", i) <= cl.PERF_SEED_MAX for i in range(200))


def test_seeds_are_deterministic_and_differ_by_stream_and_run_seed() -> None:
    assert cl.perf_seed(20261128, "churn", 3) == cl.perf_seed(20261128, "churn", 3)
    assert cl.perf_seed(20261128, "churn", 3) != cl.perf_seed(20261128, "burst", 3)
    assert cl.perf_seed(20261128, "churn", 3) != cl.perf_seed(20261129, "churn", 3)


def test_seeds_do_not_depend_on_the_interpreter_s_hash_salt() -> None:
    # a --seed must replay the same load in another process
    code = "from bench.chaosload import perf_seed; print([perf_seed(20261128, 'churn', i) for i in range(5)])"
    outs = set()
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": str(REPO)}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert outs == {str([cl.perf_seed(20261128, "churn", i) for i in range(5)]) + "\n"}


# -- one run of a generator ----------------------------------------------------


def test_perfdhcp_refusing_its_seed_is_an_error() -> None:
    err = cl.perfdhcp_error(1, {}, REJECTED_SEED)
    assert err is not None and "must be non-negative integer" in err


@pytest.mark.parametrize("rc", [0, 3])
def test_perfdhcp_with_a_report_and_a_normal_exit_is_fine(rc: int) -> None:
    assert cl.perfdhcp_error(rc, STATS, "***Statistics for: DISCOVER-OFFER***\n") is None


def test_perfdhcp_failures() -> None:
    assert cl.perfdhcp_error(1, STATS, "") is not None  # a general error, even with a report
    assert cl.perfdhcp_error(2, {}, "") is not None
    assert cl.perfdhcp_error(0, {}, "") is not None  # ran, but reported nothing
    assert cl.perfdhcp_error(None, {}, "") is not None  # never exited


def test_perfdhcp_stopped_by_the_end_of_the_load_before_reporting_is_not_an_error() -> None:
    assert cl.perfdhcp_error(-2, {}, "", interrupted=True) is None
    assert cl.perfdhcp_error(130, STATS, "", interrupted=True) is None
    # but a refused command line stays an error
    assert cl.perfdhcp_error(1, {}, REJECTED_SEED, interrupted=True) is not None


def test_clients_that_got_no_answer_are_not_in_error() -> None:
    assert cl.client_run_error("dhclient", 2, False, "Unable to obtain a lease on first try.  Exiting.") is None
    assert cl.client_run_error("renew", None, True, "DHCPREQUEST for 10.98.16.4 on v1 ...") is None
    assert cl.client_run_error("udhcpc", 1, False, "udhcpc: sending discover\nudhcpc: no lease, failing\n") is None
    assert cl.client_run_error("dhclient", 0, False, "bound to 10.98.16.9 -- renewal in 1700 seconds.") is None
    assert cl.client_run_error("release", 0, False, "DHCPRELEASE of 10.98.16.9 on v1 to 10.98.0.1 port 67") is None
    assert cl.client_run_error("udhcpc-release", 0, False, "udhcpc: received SIGTERM\n") is None


@pytest.mark.parametrize(("what", "rc", "out"), [
    ("dhclient", 1, "Unknown command: --bogus\nUsage: dhclient [-4|-6] [-SNTPRI1dvrxi] [-nw]\n"),
    ("udhcpc", 1, "udhcpc: unrecognized option '--bogus'\nBusyBox v1.35.0 multi-call binary.\n"),
    ("udhcpc", 127, "nsenter: failed to execute udhcpc: No such file or directory\n"),
    ("udhcpc", 1, "udhcpc: bad option\n"),  # exit 1 without "no lease, failing"
    ("renew", 1, "can't open /nonexistent\n"),
    ("release", 2, ""),
    ("udhcpc-release", -9, ""),  # did not end on SIGTERM
    ("udhcpc-release", 1, "udhcpc: invalid option -- 'Z'\n"),
])
def test_client_errors(what: str, rc: int, out: str) -> None:
    assert cl.client_run_error(what, rc, False, out) is not None


def test_a_timed_out_release_is_an_error() -> None:
    # dhclient -r waits for no answer; hanging is the client's fault, not a fault's
    assert cl.client_run_error("release", None, True, "") is not None


# -- time without faults and floors -------------------------------------------


def test_fault_free_seconds() -> None:
    assert cl.fault_free_seconds(0, 100, []) == 100
    assert cl.fault_free_seconds(0, 100, [(10, 20), (15, 30), (50, 60)]) == 100 - 20 - 10
    # clipped to the load's time; a fault that started before it or outlasted it
    assert cl.fault_free_seconds(10, 100, [(0, 20), (90, 130)]) == 70
    assert cl.fault_free_seconds(0, 100, [(0, 100)]) == 0
    assert cl.fault_free_seconds(0, 100, [(200, 300)]) == 100


def test_floors_from_what_the_run_asked() -> None:
    f = cl.floors(Plan(perf_rate=30, load_s=300, fault_free_s=100))
    assert f == {"perfdhcp": 1500, "dhclient": 3, "udhcpc": 3}
    # never zero: a generator with no ACK fails even when faults filled the run
    assert cl.floors(Plan(perf_rate=30, load_s=60, fault_free_s=0)) == {"perfdhcp": 1, "dhclient": 1, "udhcpc": 1}


# -- the verdict ----------------------------------------------------------------

PLAN = Plan(perf_rate=30, load_s=120, fault_free_s=60)  # floors: perfdhcp 900, a client loop 2


def healthy() -> list[Generator]:
    return [Generator("perf", "perfdhcp", 8, 1900), Generator("burst", "burst", 2, 1800, judged=False),
            Generator("dh1", "dhclient", 14, 12), Generator("dh2", "dhclient", 13, 11),
            Generator("ud1", "udhcpc", 16, 15), Generator("ud2", "udhcpc", 15, 14)]


def test_a_healthy_record_passes() -> None:
    v = cl.judge(PLAN, healthy())
    assert v.ok and v.reasons == []
    j = v.to_json()
    assert j["ok"] and j["floors"]["perfdhcp"] == 900 and j["generators"]["perf"]["acks"] == 1900
    assert j["generators"]["burst"]["floor"] is None
    text = "\n".join(cl.report_lines(j))
    assert "LOAD: OK" in text and "900" in text and "1900" in text


def test_the_issues_run_fails_with_the_reason() -> None:
    # 120 s with --seed 20261128: perfdhcp refused every -s, four clients ACKed 104 times
    runs = 8
    gens = [Generator("perf", "perfdhcp", runs, 0, tuple([cl.perfdhcp_error(1, {}, REJECTED_SEED) or ""] * runs)),
            Generator("burst", "burst", 1, 0, (cl.perfdhcp_error(1, {}, REJECTED_SEED) or "",), judged=False),
            Generator("dh1", "dhclient", 10, 26), Generator("dh2", "dhclient", 10, 26),
            Generator("ud1", "udhcpc", 10, 26), Generator("ud2", "udhcpc", 10, 26)]
    v = cl.judge(PLAN, gens)
    assert not v.ok
    assert any("perf (perfdhcp): 8 of 8 runs failed" in r and "must be non-negative" in r for r in v.reasons)
    assert any("burst" in r for r in v.reasons)  # the burst's error counts though it has no floor
    assert any("perf (perfdhcp): 0 ACKs, below the floor of 900" in r for r in v.reasons)
    assert "LOAD: FAILED" in "\n".join(cl.report_lines(v.to_json()))


def test_one_generator_error_fails_the_run() -> None:
    gens = healthy()
    gens[2] = Generator("dh1", "dhclient", 14, 12, ("renew: dhclient exited 1: can't open",))
    v = cl.judge(PLAN, gens)
    assert not v.ok and len(v.reasons) == 1 and v.reasons[0].startswith("dh1 (dhclient)")


def test_load_below_the_floor_fails_the_run() -> None:
    gens = healthy()
    gens[0] = Generator("perf", "perfdhcp", 8, 899)
    v = cl.judge(PLAN, gens)
    assert not v.ok and v.reasons == ["perf (perfdhcp): 899 ACKs, below the floor of 900"]
    gens[0] = Generator("perf", "perfdhcp", 8, 900)
    gens[4] = Generator("ud1", "udhcpc", 3, 1)
    assert cl.judge(PLAN, gens).reasons == ["ud1 (udhcpc): 1 ACKs, below the floor of 2"]


def test_a_client_that_never_started_fails_the_run() -> None:
    gens = healthy()
    gens[3] = Generator("dh2", "dhclient", 0, 0)
    v = cl.judge(PLAN, gens)
    assert not v.ok and "dh2 (dhclient) never ran" in v.reasons


def test_a_crashed_load_loop_fails_the_run() -> None:
    tb = "ud2: Traceback (most recent call last):\n  File \"x\", line 1\nOSError: [Errno 24] Too many open files"
    v = cl.judge(PLAN, healthy(), [tb])
    assert not v.ok and v.reasons == ["load error: ud2: Traceback (most recent call last): ... "
                                      "OSError: [Errno 24] Too many open files"]


def test_zero_load_fails_even_when_faults_filled_the_run() -> None:
    plan = Plan(perf_rate=30, load_s=60, fault_free_s=0)
    v = cl.judge(plan, [Generator("perf", "perfdhcp", 4, 0), Generator("ud1", "udhcpc", 3, 0)])
    assert not v.ok and len(v.reasons) == 2


def test_generators_from_the_records() -> None:
    roles = [("perf", "perfdhcp"), ("burst", "burst"), ("dh1", "dhclient"), ("ud1", "udhcpc")]
    perf_runs = [{"rc": 3, "error": None}, {"rc": 1, "error": "perfdhcp exited 1: x"}]
    client_runs = [{"client": "dh1", "error": None}, {"client": "dh1", "error": None},
                   {"client": "ud1", "error": "udhcpc exited 127: y"}]
    gens = cl.generators(roles, perf_runs, client_runs, [{"error": None}], {"perf": 700, "dh1": 2, "burst": 990})
    by = {g.role: g for g in gens}
    assert by["perf"] == Generator("perf", "perfdhcp", 2, 700, ("perfdhcp exited 1: x",))
    assert by["burst"] == Generator("burst", "burst", 1, 990, (), judged=False)
    assert by["dh1"] == Generator("dh1", "dhclient", 2, 2)
    assert by["ud1"] == Generator("ud1", "udhcpc", 1, 0, ("udhcpc exited 127: y",))
