"""perfdhcp runs and what is read out of them, and /proc samples of a server.

perfdhcp 2.2 facts this relies on (checked with ``perfdhcp -h`` and runs):

* ``-x t`` prints, after the statistics, one block per exchange type,
  ``***Timestamps for packets: DISCOVER-OFFER***`` then one line
  ``sent / received: SSSSSS.UUUUUU / SSSSSS.UUUUUU`` per *successful*
  exchange (drops have no line): the delay is the difference.
* ``-f RATE`` (renew rate) needs ``-r`` and must be <= it (else exit 1 with
  the usage text).  It sends, alongside the DORA stream, REQUESTs in
  RENEWING form built from a random ACK received earlier in the same run
  (each ACK renewed at most once), and adds a block
  ``***Statistics for: REQUEST-ACK (renewal)***``.  The REQUEST-ACK block then
  counts the renewal ACKs as its ``orphans``.
* ``tests.integration.lab.parse_perfdhcp`` matches block names with
  ``\\S+``, so the renewal block's lines land on REQUEST-ACK: it is
  re-parsed here under the name ``RENEW``.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Sequence

from tests.integration.lab import ExchangeStats, Netns, PerfResult, parse_perfdhcp, perfdhcp

RENEW = "RENEW"

_TS_HEADER = re.compile(r"^\*\*\*Timestamps for packets: (.+?)\*\*\*\s*$")
_TS_LINE = re.compile(r"^sent / received: ([0-9.]+) / ([0-9.]+)\s*$")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def run(
    ns: Netns,
    giaddr: str,
    server: str,
    *,
    rate: int,
    duration: float,
    clients: int,
    mac_base: str,
    extra: Sequence[str] = (),
) -> PerfResult:
    """One perfdhcp run as a relay (the lab helper), with the renewal block
    parsed correctly; exit 3 (some drops) is a normal result."""
    res = perfdhcp(ns, giaddr, server, rate=rate, duration=duration, clients=clients,
                   mac_base=mac_base, extra=list(extra), timeout=duration + 60)
    if "(renewal)" in res.raw:
        fixed = parse_perfdhcp(res.raw.replace("REQUEST-ACK (renewal)", RENEW), res.returncode, res.argv)
        res.exchanges = fixed.exchanges
    return res


def run_seconds(res: PerfResult, duration: float) -> float:
    """How long the run sent: perfdhcp's rate is REQUEST-ACK replies over the
    test period, so the period is their quotient (``-n`` may end a run before
    ``-p``); ``duration`` when that cannot be told."""
    if res.rate and res.ra.received:
        return res.ra.received / res.rate
    return duration


def renewals(res: PerfResult) -> ExchangeStats:
    return res.exchanges.get(RENEW, ExchangeStats())


def exchange_delays(raw: str) -> dict[str, list[float]]:
    """Per-exchange delays in ms from ``-x t`` output, by exchange name."""
    out: dict[str, list[float]] = {}
    current: list[float] | None = None
    for line in raw.splitlines():
        if m := _TS_LINE.match(line):
            if current is not None:
                current.append((float(m.group(2)) - float(m.group(1))) * 1000.0)
            continue
        if m := _TS_HEADER.match(line):
            current = out.setdefault(m.group(1), [])
        elif line.startswith("***"):
            current = None
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return sorted_values[0]
    pos = (n - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def delay_summary(delays: Sequence[float]) -> dict[str, float | int | None]:
    s = sorted(delays)
    return {
        "n": len(s),
        "min_ms": s[0] if s else None,
        "p50_ms": percentile(s, 50),
        "p90_ms": percentile(s, 90),
        "p99_ms": percentile(s, 99),
        "p999_ms": percentile(s, 99.9),
        "max_ms": s[-1] if s else None,
    }


def elide_timestamps(raw: str) -> str:
    """perfdhcp output without the per-exchange timestamp lines (kept as a count)."""
    lines, elided = [], 0
    for line in raw.splitlines():
        if line.startswith("sent / received: "):
            elided += 1
            continue
        if elided:
            lines.append(f"[{elided} timestamp lines elided]")
            elided = 0
        lines.append(line)
    if elided:
        lines.append(f"[{elided} timestamp lines elided]")
    return "\n".join(lines)


def record(res: PerfResult) -> dict:
    """What goes into the JSON for one perfdhcp run."""
    return {
        "argv": res.argv,
        "returncode": res.returncode,
        "rate": res.rate,
        "expected_rate": res.expected_rate,
        "exchanges": {k: asdict(v) for k, v in res.exchanges.items()},
        "raw": elide_timestamps(res.raw),
    }


def udp_counters(ns: Netns) -> dict[str, int]:
    """The namespace's UDP counters from /proc/net/snmp (InDatagrams,
    RcvbufErrors, ...): a drop counted here happened in that namespace's
    kernel, at a full socket buffer, not in the network."""
    text = ns.run("cat", "/proc/net/snmp", timeout=10).stdout
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2:
        return {}
    return {k: int(v) for k, v in zip(rows[0], rows[1])}


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if k in ("InDatagrams", "OutDatagrams", "InErrors",
                                                                   "RcvbufErrors", "SndbufErrors", "NoPorts")}


_PF_KTHREAD = 0x00200000


def cpu_by_pid() -> dict[int, float]:
    """CPU seconds (utime+stime) of every user-space process on the machine."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[6]) & _PF_KTHREAD:
            continue
        out[int(entry)] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def written_by_pid() -> dict[int, int]:
    """Bytes every process caused to be written to storage (/proc/PID/io
    write_bytes): a neighbour busy on the disk slows every fsync here."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        out[int(entry)] = int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return out


def foreign_cpu_s(before: dict[int, float], after: dict[int, float], exclude: set[int]) -> float:
    """CPU seconds other processes used between two cpu_by_pid() snapshots
    (a process that started in between counts in full)."""
    return sum(c - before.get(pid, 0.0) for pid, c in after.items() if pid not in exclude)


@dataclass
class ProcSample:
    """CPU seconds (utime+stime) and memory (KiB) of processes, summed."""

    cpu_s: float
    vmrss_kb: int
    vmhwm_kb: int


def with_descendants(pids: Sequence[int]) -> list[int]:
    """``pids`` and every process they started, children before grandchildren.

    A server's helper processes (cnrd's journal applier) are part of what it
    costs: they are pinned with it and their CPU and memory count as its own.
    """
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop(0)
        if pid in out:
            continue
        out.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass  # a thread or process that just ended
    return out


def proc_sample(pids: Sequence[int]) -> ProcSample:
    """CPU seconds, RSS and peak RSS summed over ``pids`` (a process that has
    just ended, such as a helper being restarted, counts as nothing; the
    first, the server itself, must exist).  Shared pages (a store both
    processes map) count once per process: the sum errs high."""
    cpu, rss, hwm = 0.0, 0, 0
    for i, pid in enumerate(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            if i == 0:
                raise
            continue
        # after "(comm)": state is field 3, utime 14, stime 15 (1-based, man 5 proc)
        cpu += (int(fields[11]) + int(fields[12])) / _CLK_TCK
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return ProcSample(cpu, rss, hwm)
