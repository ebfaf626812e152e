"""bench.perf's process accounting: a server's helper processes count as the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import perf


def _wait_children(pid: int, n: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = perf.with_descendants([pid])
        if len(found) >= n:
            return found
        time.sleep(0.02)
    raise AssertionError(f"only {perf.with_descendants([pid])} after 10 s")


def test_descendants_include_children_and_grandchildren() -> None:
    # parent -> child -> grandchild, each waiting on its stdin
    script = (
        "import subprocess, sys\n"
        "depth = int(sys.argv[1])\n"
        "if depth:\n"
        "    p = subprocess.Popen([sys.executable, '-c', sys.argv[2], str(depth - 1), sys.argv[2]],"
        " stdin=subprocess.PIPE)\n"
        "sys.stdin.read()\n"
    )
    top = subprocess.Popen([sys.executable, "-c", script, "2", script], stdin=subprocess.PIPE)
    try:
        found = _wait_children(top.pid, 3)
        assert found[0] == top.pid
        assert len(found) == 3 and len(set(found)) == 3
        sample = perf.proc_sample(found)
        assert sample.vmrss_kb > 0 and sample.vmhwm_kb >= sample.vmrss_kb
    finally:
        top.stdin.close()  # its child's stdin pipe closes with it, and so on down
        top.wait(timeout=10)


def test_sample_skips_a_helper_that_has_ended_but_not_the_server() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = perf.proc_sample([os.getpid()])
    both = perf.proc_sample([os.getpid(), gone.pid])
    assert both.vmrss_kb > 0 and abs(both.vmrss_kb - me.vmrss_kb) < 10_000
    try:
        perf.proc_sample([gone.pid])
    except OSError:
        pass
    else:
        raise AssertionError("a vanished server must not sample as zero")


def _try(asked: int, achieved: float) -> dict:
    return {"asked": asked, "achieved": achieved}


def test_saturation_bisects_between_the_last_rate_kept_up_with_and_the_first_not() -> None:
    from bench.run import refine_rate

    ladder = [_try(2000, 2000), _try(4000, 3999), _try(8000, 7998), _try(16000, 15635), _try(32000, 8793)]
    assert refine_rate(ladder) == 24000
    # kept up with 24,000 (> 90 %): the next try is between it and 32,000
    assert refine_rate(ladder + [_try(24000, 23000)]) == 28000
    # did not: between 16,000 and 24,000
    assert refine_rate(ladder + [_try(24000, 20000)]) == 20000


def test_saturation_stops_refining_without_a_bracket_or_once_it_is_narrow() -> None:
    from bench.run import refine_rate

    assert refine_rate([_try(2000, 1500)]) is None  # nothing kept up with
    assert refine_rate([_try(2000, 2000), _try(4000, 4000)]) is None  # nothing failed yet
    assert refine_rate([_try(16000, 15900), _try(17000, 9000)]) is None  # within 10 %


def test_renewals_bisect_on_their_own_figure() -> None:
    from bench.run import refine_rate

    tries = [{"asked": 7818, "renew_per_s": 7700}, {"asked": 15636, "renew_per_s": 6816}]
    assert refine_rate(tries, "renew_per_s") == 11727
