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
