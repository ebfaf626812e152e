"""One command that measures cnrd against ISC dhcpd 4.4 and Kea 2.2.

    .venv/bin/python -m bench.run [--servers cnrd,isc,kea] [--quick] [--smoke]
                                  [--duration S] [--out results/bench.json]

Needs root (network namespaces).  What is measured and how is in
bench/README.md.  Every measurement runs on a freshly started server; all
servers share one lab (a server and a load namespace joined by a veth),
destroyed at the end, also after errors or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import signal
import statistics
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from bench import balanced, perf  # balanced registers cnrd-lb-pair and isc-lb-pair
from bench import pairs as _pairs  # noqa: F401  (registers cnrd-pair, isc-pair and kea-ha-pair)
from bench.report import _f, _rcvbuf, machine, metric_keys, size_label, table
from bench.servers import (
    LINK_PREFIX,
    LOAD_IP,
    RUN,
    SERVER_IP,
    SERVERS,
    STARTUP_NET,
    THROUGHPUT_NET,
    BenchServer,
    Net,
)
from tests.integration.lab import (
    Lab,
    missing_requirements,
    random_mac_base,
    read_log,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
MAX_POOL_SHARE = 0.8  # of the /16 pool: the most DISCOVERs one run may send
QUIET_PCT = 15.0  # other processes' CPU (% of one core) below which the machine counts as quiet


# ------------------------------------------------------------------------------
# settings and metric names
# ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    duration: int = 10  # seconds per perfdhcp run (perfdhcp -p takes whole seconds)
    start_rate: int = 2000  # first asked DORA rate of the saturation search
    sat_tries: int = 5  # tries (2000, 4000, ... 32000/s), at most
    # then tries halfway between the highest rate kept up with and the lowest
    # not: doubling alone reports 15,600 for a server that keeps up with
    # 16,000/s and collapses at 32,000/s, wherever between it saturates
    refine_tries: int = 2
    # runs at a rate the server falls short of (median taken): single 3-s
    # tries of one build moved cnrd's figure by 25 % when one of them stalled
    rung_tries: int = 3
    renew_tries: int = 3
    renew_refine_tries: int = 1
    # latency runs per server; the table shows the median of each figure: one
    # 10-second run's p99 moved 2-3x between back-to-back runs, for ISC too
    latency_tries: int = 3
    clients: int = 1_000_000  # perfdhcp -R: more than any run sends, so every client is new
    startup_sizes: tuple[int, ...] = (100_000, 1_000_000)
    start_timeout: float = 900.0  # a server with a million leases may take a while
    quiet_wait: float = 20.0  # most seconds to wait for a quiet machine before a run
    quiet_wait_total: float = 180.0  # ... and over the whole bench
    mode: str = "full"
    recovery_leases: int = 100_000  # pairs: leases on the main when a fresh backup joins
    pin: bool = True  # load generator on the first CPU, the server(s) under test on the last
    # --latency-at: only the latency step, at this DORA rate for every server
    # (the same rate for all, where the full run takes each one's sat/2)
    latency_at: int | None = None
    cores: int = 1  # CPUs each server gets (--cores; Kea: as many DHCP threads)
    cnrd_lease_lines: bool = False  # --cnrd-lease-lines: cnrd keeps its lease line per exchange


FULL = Settings()


def _kept_up(t: dict, achieved: str = "achieved") -> bool:
    return (t.get(achieved) or 0) > 0.9 * t["asked"]


def median_try(tries: list[dict], achieved: str = "achieved") -> dict:
    """The try of median ``achieved`` (of an even number, the lower middle
    one: no rate counts as kept up with on the strength of half its tries)."""
    if not tries:
        raise ValueError("no tries")
    ranked = sorted(tries, key=lambda t: t.get(achieved) or 0)
    return ranked[(len(ranked) - 1) // 2]


def refine_rate(tries: list[dict], achieved: str = "achieved") -> int | None:
    """The next try halfway between the highest asked rate kept up with (its
    ``achieved`` figure over 90 % of it) and the lowest one not, or None (no
    failure yet, none kept up with, or the two within 10 % of each other)."""
    kept = [t["asked"] for t in tries if _kept_up(t, achieved)]
    failed = [t["asked"] for t in tries if not _kept_up(t, achieved)]
    if not kept or not failed:
        return None
    lo = max(kept)
    above = [r for r in failed if r > lo]
    if not above:
        return None
    hi = min(above)
    if hi - lo <= 0.1 * lo:
        return None
    return (lo + hi) // 2
QUICK = replace(FULL, startup_sizes=(100_000,), recovery_leases=10_000, mode="quick")
SMOKE = replace(FULL, duration=1, start_rate=500, sat_tries=1, refine_tries=0, rung_tries=1, renew_tries=1,
                renew_refine_tries=0, latency_tries=1,
                clients=100_000, startup_sizes=(1000,), start_timeout=120.0, quiet_wait=0.0,
                recovery_leases=1000, mode="smoke")
# A pool a little larger than the 100,000 recovery leases: UPDREQALL sends every
# address of the pool, so a /12 would measure never-used addresses.
RECOVERY_NET = Net("10.32.0.0/15", "10.32.0.10", "10.33.255.250", "10.32.0.1")


#: the CPUs the server under test gets (set by pin_load)
SERVER_CPUS: set[int] | None = None


def pin_load(cores: int = 1) -> bool:
    """Keep this process and what it starts (perfdhcp, the servers until
    :func:`pin_server` moves them) off the last ``cores`` CPUs, which the
    server under test gets to itself: on a small machine perfdhcp's busy loop
    otherwise shares a core with the server and the latency tail measures
    the scheduler.  When the server gets every CPU (``--cores`` = nproc),
    the load keeps them all too and shares them.  Applied to every server
    alike; False with a single CPU."""
    global SERVER_CPUS
    c = sorted(os.sched_getaffinity(0))
    if len(c) < 2 or not 1 <= cores <= len(c):
        return False
    SERVER_CPUS = set(c[-cores:])
    os.sched_setaffinity(0, c[:-cores] or c)
    return True


def pin_server(pids: Iterable[int]) -> None:
    """Every thread of the server processes onto :data:`SERVER_CPUS`."""
    if SERVER_CPUS is None:
        return
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, SERVER_CPUS)
            except OSError:
                pass  # a thread that just ended


def _median_delays(summaries: list[dict]) -> dict:
    """Per exchange and statistic, the median over the tries that have it."""
    out: dict = {}
    for name in {n for s in summaries for n in s}:
        stats = [s[name] for s in summaries if name in s]
        out[name] = {k: statistics.median(v[k] for v in stats if v.get(k) is not None)
                     if any(v.get(k) is not None for v in stats) else None for k in stats[0]}
    return out


# ------------------------------------------------------------------------------
# the lab and one measurement session
# ------------------------------------------------------------------------------


class Bench:
    """The lab (server namespace, load namespace, one veth) and the runs."""

    NETS = (THROUGHPUT_NET, STARTUP_NET)

    def __init__(self, lab: Lab, settings: Settings, log: Callable[[str], None], *, bridged: bool = False) -> None:
        self.lab = lab
        self.s = settings
        self.say = log
        self.current: BenchServer | None = None
        self.foreign: list[tuple[float, float]] = []  # (other processes' CPU s, wall s) per perfdhcp run
        self.waited_total = 0.0
        # perfdhcp's -l and its server argument
        self.perf_local, self.perf_target = THROUGHPUT_NET.giaddr, SERVER_IP
        self.bridged = bridged
        if bridged:
            self._bridged_lab()
            return
        self.srv = lab.netns("srv")
        self.load = lab.netns("load")
        self.srv_if, self.load_if = lab.link(
            self.srv, self.load, a_addr=f"{SERVER_IP}/{LINK_PREFIX}", b_addr=f"{LOAD_IP}/{LINK_PREFIX}")
        for net in self.NETS:
            self.load.run("ip", "addr", "add", f"{net.giaddr}/{net.network.prefixlen}", "dev", self.load_if)
            self.srv.run("ip", "route", "add", net.subnet, "via", LOAD_IP)

    def _bridged_lab(self) -> None:
        """Balanced pairs (bench/balanced.py): the main, the backup and the
        load on one bridge; the load's only address is the relay address, and
        perfdhcp broadcasts every relayed request to both servers."""
        lab = self.lab
        self.lan = lab.netns("lblan")
        self.br = lab.bridge(self.lan, "br0")
        self.srv = lab.netns("lbsrv")
        self.load = lab.netns("lbload")
        _, self.srv_if = lab.link(self.lan, self.srv, a_bridge=self.br, b_addr=f"{SERVER_IP}/{LINK_PREFIX}")
        _, self.load_if = lab.link(self.lan, self.load, a_bridge=self.br,
                                   b_addr=f"{THROUGHPUT_NET.giaddr}/{THROUGHPUT_NET.network.prefixlen}")
        self.srv.run("ip", "route", "add", THROUGHPUT_NET.subnet, "dev", self.srv_if)
        self.perf_local, self.perf_target = self.load_if, "all"

    @contextmanager
    def server(self, factory: Callable[..., BenchServer], net: Net = THROUGHPUT_NET,
               preload: int = 0) -> Iterator[BenchServer]:
        srv = factory(net, preload=preload)
        if getattr(srv, "balanced", False):
            if not self.bridged:
                raise AssertionError(f"{srv.name} needs the bridged lab")
            srv.bridge = (self.lan, self.br)
        self.current = srv
        try:
            srv.start(self.lab, self.srv, self.srv_if, timeout=self.s.start_timeout)
            if self.s.pin:
                pin_server(srv.pids())
            yield srv
        except Exception:
            if srv.proc is not None:
                self.say(f"    {srv.name} log tail:\n{srv.log()[-2000:]}")
            raise
        finally:
            self.current = None
            srv.stop()
            srv.cleanup()

    def perfdhcp(self, rate: int, extra: list[str] = ()) -> tuple[Any, dict]:
        """One perfdhcp run of ``duration`` s, stopped earlier once it has sent
        MAX_POOL_SHARE of the /16 pool in DISCOVERs (``-n``: every DISCOVER
        comes from a new client and may hold an address, so the pool never
        runs dry).  Returns (result, its JSON record, with the run's length
        and the UDP counters of both namespaces over the run)."""
        max_discovers = int(MAX_POOL_SHARE * THROUGHPUT_NET.pool_size)
        waited, busy = self.wait_quiet()
        udp_srv, udp_load = perf.udp_counters(self.srv), perf.udp_counters(self.load)
        io0, cpu0, t0 = perf.written_by_pid(), perf.cpu_by_pid(), time.monotonic()
        res = perf.run(self.load, self.perf_local, self.perf_target, rate=rate, duration=self.s.duration,
                       clients=self.s.clients, mac_base=random_mac_base(),
                       extra=["-n", str(max_discovers), *extra])
        wall = time.monotonic() - t0
        foreign = perf.foreign_cpu_s(cpu0, perf.cpu_by_pid(), self._ours())
        written = perf.foreign_cpu_s(io0, perf.written_by_pid(), self._ours())  # same sum, in bytes
        self.foreign.append((foreign, wall))
        rec = perf.record(res)
        rec.update(seconds=perf.run_seconds(res, self.s.duration),
                   udp_server_ns=perf.counter_delta(udp_srv, perf.udp_counters(self.srv)),
                   udp_load_ns=perf.counter_delta(udp_load, perf.udp_counters(self.load)),
                   other_processes_cpu_s=round(foreign, 2), wall_s=round(wall, 2),
                   other_processes_written_mb=round(written / 2**20, 1),
                   waited_for_quiet_s=round(waited, 1), other_cpu_before_pct=round(busy, 1))
        return res, rec

    def _ours(self) -> set[int]:
        return {os.getpid(), *(self.current.pids() if self.current and self.current.proc else ())}

    def wait_quiet(self) -> tuple[float, float]:
        """Wait (bounded) until other processes use under QUIET_PCT of a core:
        this machine may be shared, and a benchmark on 2 cores next to a busy
        neighbour measures the neighbour.  Returns (seconds waited, their
        last CPU %)."""
        t0 = time.monotonic()
        limit = min(self.s.quiet_wait, max(0.0, self.s.quiet_wait_total - self.waited_total))
        while True:
            before = perf.cpu_by_pid()
            time.sleep(0.5)
            pct = 100 * perf.foreign_cpu_s(before, perf.cpu_by_pid(), self._ours()) / 0.5
            waited = time.monotonic() - t0
            if pct < QUIET_PCT or waited >= limit:
                self.waited_total += waited
                if pct >= QUIET_PCT:
                    self.say(f"    (other processes use {pct:.0f}% of a core; measuring anyway)")
                return waited, pct

    # -- measurements -------------------------------------------------------------
    def saturation(self, factory) -> dict:
        """Double the asked DORA rate while the server keeps up (>90 %), then
        bisect between the highest rate kept up with and the lowest not
        (``refine_tries`` times, :func:`refine_rate`); a balanced pair gets
        one try between its last balanced rate it kept up with and the next
        (bench/balanced.py refine_rate).  A rate the server falls short of is
        tried ``rung_tries`` times in all, a fresh server each, and counts as
        the try of median DORA/s (:func:`median_try`): one stalled 3-second
        run otherwise decides where the ladder stops and what it reports."""
        rate, tries = min(self.s.start_rate, getattr(factory, "start_rate", self.s.start_rate)), []
        refined = False
        refines = 0
        for i in range(self.s.sat_tries + 1 + self.s.refine_tries):
            try:
                t = self._saturation_try(factory, rate)
            except Exception as e:
                if not tries:
                    raise
                # keep what the lower rates measured; the error is in the JSON
                tries[-1]["next_try_failed"] = {"asked": rate, "error": str(e)}
                self.say(f"    asked {rate}/s: FAILED ({str(e).splitlines()[0]}); keeping {tries[-1]['asked']}/s")
                break
            if not _kept_up(t) and self.s.rung_tries > 1:
                t = self._confirm(factory, t)
            tries.append(t)
            split = t.get("per_server")
            if _kept_up(t) and i + 1 < self.s.sat_tries and not refined and not refines:
                rate *= 2
                continue
            if split is not None:
                mid = None if refined else balanced.refine_rate(tries)
                if mid is not None:
                    refined, rate = True, mid
                    continue
                break
            mid = refine_rate(tries) if refines < self.s.refine_tries else None
            if mid is None:
                break
            refines, rate = refines + 1, mid
        failed = [t for t in tries if not _kept_up(t)]
        # The figures of the lowest rate the server did not keep up with (the
        # last try when it kept up with every one).
        result = min(failed, key=lambda t: t["asked"]) if failed else tries[-1]
        return {"tries": tries, "saturated": bool(failed),
                "best_achieved": max(t["achieved"] or 0 for t in tries), "result": result}

    def _confirm(self, factory, first: dict) -> dict:
        """``first`` fell short: try its rate again (``rung_tries`` in all) and
        return the median try, every try's DORA/s listed under ``rung``."""
        rung = [first]
        for _ in range(self.s.rung_tries - 1):
            try:
                rung.append(self._saturation_try(factory, first["asked"]))
            except Exception as e:
                first["repeat_failed"] = str(e)
                self.say(f"    asked {first['asked']}/s again: FAILED ({str(e).splitlines()[0]})")
                break
        chosen = median_try(rung)
        chosen["rung"] = [t["achieved"] for t in rung]
        self.say(f"    {first['asked']}/s counts as {chosen['achieved'] or 0:.0f} DORA/s, the median of "
                 + ", ".join(f"{a or 0:.0f}" for a in chosen["rung"]))
        return chosen

    def _saturation_try(self, factory, rate: int) -> dict:
        """One perfdhcp run at ``rate`` on a fresh server: what it achieved and cost."""
        with self.server(factory) as srv:
            split0 = srv.per_server() if getattr(srv, "balanced", False) else None
            marks = srv.move_marks() if split0 is not None else None
            before = perf.proc_sample(srv.pids())
            res, rec = self.perfdhcp(rate)
            # A pair: how far the backup has followed when the load stops
            # (read first: it keeps catching up while we look).
            backup_leases = srv.backup_lease_count() if hasattr(srv, "backup_lease_count") else None
            after = perf.proc_sample(srv.pids())
            split = balanced.per_server_delta(split0, srv.per_server()) if split0 is not None else None
            moves = srv.moves_since(marks) if marks is not None else None
            leases = srv.lease_count()
        t = {
            "asked": rate, "achieved": res.rate, "leases": leases,
            "do_drop_pct": res.do.drops_ratio, "ra_drop_pct": res.ra.drops_ratio,
            "cpu_s": after.cpu_s - before.cpu_s,
            "vmrss_before_kb": before.vmrss_kb, "vmhwm_kb": after.vmhwm_kb, "vmrss_after_kb": after.vmrss_kb,
            "pool_used_pct": 100.0 * leases / THROUGHPUT_NET.pool_size,
            "perfdhcp": rec,
        }
        if backup_leases is not None:
            t["backup_leases"] = backup_leases
        if split is not None:
            t["per_server"] = split
            t["share"] = balanced.share_verdict(split)
            t["moves_during_run"] = moves
            t["idle_wait_s"] = round(srv.idle_wait_s or 0.0, 1)  # before the run: pool hand-over
            t["idle_cpu_before"] = srv.idle_cpu
        held = f" (the backup {backup_leases} when the load stopped)" if backup_leases is not None else ""
        self.say(f"    asked {rate}/s for {rec['seconds']:.1f} s: {res.rate or 0:.0f} DORA/s, drops "
                 f"DO {_f(res.do.drops_ratio)}% RA {_f(res.ra.drops_ratio)}%, {leases} leases{held}, "
                 f"{t['cpu_s']:.1f} CPU s; UDP buffer drops server {_rcvbuf(rec, 'server')}, "
                 f"load {_rcvbuf(rec, 'load')}")
        if split is not None:
            self.say("      " + "; ".join(f"{role} {v['grants']} ACKs, {v['cpu_s']:.1f} CPU s" for role, v in
                                          split.items()) + f" -> {t['share']['reason']} "
                     f"(pair idle {t['idle_wait_s']:.0f} s after NORMAL)")
            if any(moves.values()):
                self.say(f"      state moves during the run: {moves}")
        return t

    def latency(self, factory, sat_rate: float) -> dict:
        """perfdhcp at half the saturation rate, ``latency_tries`` times (a fresh
        server each); per exchange and statistic, the median over the tries."""
        rate = max(1, int(round(sat_rate / 2)))
        tries = []
        for _ in range(self.s.latency_tries):
            with self.server(factory) as srv:
                res, rec = self.perfdhcp(rate, ["-x", "t"])
            delays = perf.exchange_delays(res.raw)
            summary = {name: perf.delay_summary(d) for name, d in delays.items()}
            do, ra = summary.get("DISCOVER-OFFER", {}), summary.get("REQUEST-ACK", {})
            self.say(f"    at {rate}/s ({res.rate or 0:.0f} achieved): DO p50 {_f(do.get('p50_ms'))} "
                     f"p99 {_f(do.get('p99_ms'))} ms, RA p50 {_f(ra.get('p50_ms'))} p99 {_f(ra.get('p99_ms'))} ms")
            tries.append({"rate": rate, "achieved": res.rate, "delays": summary,
                          "do_drop_pct": res.do.drops_ratio, "ra_drop_pct": res.ra.drops_ratio, "perfdhcp": rec})
        return {"rate": rate, "achieved": statistics.median(t["achieved"] or 0 for t in tries),
                "delays": _median_delays([t["delays"] for t in tries]), "tries": tries}

    def renew(self, factory, sat_rate: float) -> dict:
        """perfdhcp -r R -f R (renew rate may not exceed -r), R from sat/2,
        doubled while the renewals keep up (>90 % of R), then one try halfway
        between the last R kept up with and the first not."""
        rate, tries = max(2, int(round(sat_rate / 2))), []
        refines = 0
        for i in range(self.s.renew_tries + self.s.renew_refine_tries):
            with self.server(factory) as srv:
                res, rec = self.perfdhcp(rate, ["-f", str(rate)])
            rn = perf.renewals(res)
            per_s = rn.received / rec["seconds"]
            tries.append({"asked": rate, "renew_per_s": per_s, "renew_sent": rn.sent,
                          "renew_received": rn.received, "renew_drop_pct": rn.drops_ratio,
                          "dora_per_s": res.rate, "perfdhcp": rec})
            self.say(f"    -r {rate} -f {rate}: {per_s:.0f} renewals/s (drops {rn.drops_ratio}%), "
                     f"{res.rate or 0:.0f} DORA/s alongside")
            if per_s > 0.9 * rate and i + 1 < self.s.renew_tries and not refines:
                rate *= 2
                continue
            mid = refine_rate(tries, "renew_per_s") if refines < self.s.renew_refine_tries else None
            if mid is None:
                break
            refines, rate = refines + 1, mid
        best = max(tries, key=lambda t: t["renew_per_s"])
        return {"tries": tries, "result": best}

    def startup(self, factory, n: int) -> dict:
        """Preload n leases, start, time until the first OFFER to a probe."""
        probe = self.load.popen(sys.executable, "-m", "bench.probe", "--giaddr", STARTUP_NET.giaddr,
                                "--server", SERVER_IP, "--timeout", str(self.s.start_timeout),
                                name="probe", env={"PYTHONPATH": str(REPO)})
        try:
            wait_for(lambda: "ready" in read_log(probe) or probe.poll() is not None, 30, what="probe ready")
            if "ready" not in read_log(probe):
                raise AssertionError(f"probe failed:\n{read_log(probe)}")
            with self.server(factory, STARTUP_NET, preload=n) as srv:
                try:
                    probe.wait(self.s.start_timeout)
                except Exception:
                    raise AssertionError("no OFFER before the start-up timeout") from None
                out = read_log(probe).split()
                if probe.returncode != 0 or "offer" not in out:
                    raise AssertionError(f"probe got no OFFER:\n{read_log(probe)}")
                offer_at = float(out[out.index("offer") + 1])
                sample = perf.proc_sample(srv.pids())
                r = {
                    "leases": n,
                    "startup_s": offer_at - srv.spawned_at,
                    "ready_marker_s": srv.ready_at - srv.spawned_at,
                    "vmrss_kb": sample.vmrss_kb, "vmhwm_kb": sample.vmhwm_kb,
                    "store_write_s": srv.preload_s,
                    "probe": read_log(probe).strip(),
                }
        finally:
            self.load.stop(probe)
        self.say(f"    {n} leases: first OFFER after {r['startup_s']:.2f} s, RSS {r['vmrss_kb'] / 1024:.0f} MiB "
                 f"(store written in {r['store_write_s']:.1f} s)")
        return r

    # -- one server, everything -------------------------------------------------
    def measure(self, name: str, out: dict[str, Any]) -> dict:
        """Everything for one server, filled into ``out`` as it goes (so an
        interrupted run still reports what it measured)."""
        factory = SERVERS[name]
        out["errors"] = []
        m: dict[str, Any] = {k: None for k in metric_keys(self.s.startup_sizes)}
        out["metrics"] = m

        def step(what: str, fn: Callable[[], Any]) -> Any:
            self.say(f"  {name}: {what}")
            t0 = time.monotonic()
            try:
                return fn()
            except KeyboardInterrupt:
                raise
            except Exception as e:  # keep going with the other measurements
                out["errors"].append({"step": what, "error": str(e), "trace": traceback.format_exc()})
                self.say(f"    FAILED: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
                return None
            finally:
                out.setdefault("step_seconds", {})[what] = round(time.monotonic() - t0, 1)

        first_run = len(self.foreign)
        if name.endswith("-pair"):
            return self._measure_pair(name, factory, out, m, step, first_run)
        if self.s.latency_at:
            rate = self.s.latency_at
            lat = out["latency"] = step(f"latency at {rate}/s", lambda: self.latency(factory, 2 * rate))
            self._fill_latency(m, lat)
            return out
        sat = out["saturation"] = step("saturation", lambda: self.saturation(factory))
        sat_rate = None
        if sat:
            # the best rate any try achieved (noise on a shared machine only
            # ever lowers a try); drops, CPU and memory of the last try, the
            # first asked rate the server did not keep up with
            r = sat["result"]
            sat_rate = sat["best_achieved"]
            leases = r["leases"]
            m.update(dora_per_s=sat_rate, sat_asked_rate=r["asked"], sat_do_drop_pct=r["do_drop_pct"],
                     sat_ra_drop_pct=r["ra_drop_pct"], sat_leases=leases,
                     peak_rss_mb=r["vmhwm_kb"] / 1024)
            if leases:
                m["cpu_s_per_1k"] = r["cpu_s"] / (leases / 1000)
                m["rss_kb_per_1k"] = (r["vmhwm_kb"] - r["vmrss_before_kb"]) / (leases / 1000)
        if sat_rate:
            lat = out["latency"] = step("latency at half saturation", lambda: self.latency(factory, sat_rate))
            self._fill_latency(m, lat)
            ren = out["renew"] = step("renewals", lambda: self.renew(factory, sat_rate))
            if ren:
                r = ren["result"]
                m.update(renew_per_s=r["renew_per_s"], renew_asked_rate=r["asked"],
                         renew_dora_per_s=r["dora_per_s"], renew_drop_pct=r["renew_drop_pct"])
        runs = self.foreign[first_run:]
        if runs:
            m["other_cpu_pct"] = 100 * sum(c for c, _ in runs) / max(1e-9, sum(w for _, w in runs))
        out["startup"] = {}
        for n in self.s.startup_sizes:
            st = out["startup"][str(n)] = step(f"start-up with {n} leases", lambda n=n: self.startup(factory, n))
            if st:
                m[f"startup_{size_label(n)}_s"] = st["startup_s"]
                m[f"rss_{size_label(n)}_mb"] = st["vmrss_kb"] / 1024
        return out

    @staticmethod
    def _fill_latency(m: dict[str, Any], lat: dict | None) -> None:
        if lat:
            d = lat["delays"]
            m.update(lat_rate=lat["rate"],
                     lat_do_p50_ms=d.get("DISCOVER-OFFER", {}).get("p50_ms"),
                     lat_do_p99_ms=d.get("DISCOVER-OFFER", {}).get("p99_ms"),
                     lat_ra_p50_ms=d.get("REQUEST-ACK", {}).get("p50_ms"),
                     lat_ra_p99_ms=d.get("REQUEST-ACK", {}).get("p99_ms"))

    def _measure_pair(self, name: str, factory, out: dict, m: dict, step, first_run: int) -> dict:
        """A failover pair: DORA/s at saturation on the main, and a fresh backup's recovery."""
        sat = out["saturation"] = step("saturation (load on the main)", lambda: self.saturation(factory))
        if sat:
            r = sat["result"]
            best = sat["best_achieved"]
            if "per_server" in r:
                # quoted by its fastest balanced try (bench/balanced.py pick_try)
                r, ok = balanced.pick_try(sat["tries"])
                m["lb_dora_any_split"] = best
                best = r["achieved"] if ok else best
            m.update(dora_per_s=best, sat_asked_rate=r["asked"], sat_do_drop_pct=r["do_drop_pct"],
                     sat_ra_drop_pct=r["ra_drop_pct"], sat_leases=r["leases"])
            if r.get("backup_leases") is not None:
                m["sat_backup_leases"] = r["backup_leases"]
            m["peak_rss_mb"] = r["vmhwm_kb"] / 1024  # both processes
            if r["leases"]:
                m["cpu_s_per_1k"] = r["cpu_s"] / (r["leases"] / 1000)
                m["rss_kb_per_1k"] = (r["vmhwm_kb"] - r["vmrss_before_kb"]) / (r["leases"] / 1000)
            if "per_server" in r:
                ps, share = r["per_server"], r["share"]
                m.update(lb_main_grants=ps["main"]["grants"], lb_backup_grants=ps["backup"]["grants"],
                         lb_main_share_pct=None if share["main_share"] is None else 100 * share["main_share"],
                         lb_both_answered="yes" if share["ok"] else "NO",
                         lb_main_cpu_s_per_1k=ps["main"]["cpu_s_per_1k"],
                         lb_backup_cpu_s_per_1k=ps["backup"]["cpu_s_per_1k"])
        runs = self.foreign[first_run:]
        if runs:
            m["other_cpu_pct"] = 100 * sum(c for c, _ in runs) / max(1e-9, sum(w for _, w in runs))
        if getattr(factory, "balanced", False):
            return out  # the speed of the balanced pair; recovery is measured on the hot-standby pairs
        n = self.s.recovery_leases

        def recover() -> dict:
            with self.server(factory, net=RECOVERY_NET, preload=n) as srv:
                res = srv.recovery(timeout=self.s.start_timeout)
            self.say(f"    {n} leases on the main: fresh backup NORMAL after {res['recovery_s']:.1f} s "
                     f"({res['recover_wait_s']:.0f} s of it the MCLT wait), holding {res['backup_leases']} "
                     f"leases then, all {n} after {_f(res['backup_has_all_s'])} s; backup moves: "
                     f"{'; '.join(res['backup_moves'])}")
            return res

        rec = out["recovery"] = step(f"recovery with {n} leases on the main", recover)
        if rec:
            m.update(recovery_leases=n, recovery_s=rec["recovery_s"], recovery_backup_leases=rec["backup_leases"],
                     recovery_full_s=rec["backup_has_all_s"],
                     recovery_minus_mclt_s=rec["recovery_minus_mclt_s"])
        return out


# ------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default=None,
                    help=f"comma-separated, from {','.join(SERVERS)} (default: the single servers; cnrd with --smoke)")
    ap.add_argument("--quick", action="store_true", help="skip the 1,000,000-lease start-up")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, not minutes: 1 s runs, one try each, 1,000-lease start-up")
    ap.add_argument("--duration", type=int, default=None,
                    help="whole seconds per perfdhcp run (default 10; runs at high rates stop earlier, see README)")
    ap.add_argument("--out", default="results/bench.json", help="JSON output (default results/bench.json)")
    ap.add_argument("--no-pin", action="store_true",
                    help="let the scheduler place perfdhcp and the servers (default: the server under test "
                         "alone on the last CPU, everything else on the others)")
    ap.add_argument("--latency-at", type=int, default=None, metavar="RATE",
                    help="only the latency step, at RATE DORA/s for every server (compares servers at one "
                         "request rate; the full run takes each server's own half saturation)")
    ap.add_argument("--cnrd-lease-lines", action="store_true",
                    help="cnrd logs its lease line per exchange (its INFO default; the bench's cnrd runs with "
                         "log-settings = no-success-messages, like Kea at WARN), to measure what the lines cost")
    ap.add_argument("--cores", type=int, default=1, metavar="N",
                    help="CPUs each server gets (default 1): Kea runs N DHCP threads (multi-threading from 2), "
                         "cnrd and ISC run as they are; with N = nproc the load generator shares the CPUs")
    ap.add_argument("--recovery-leases", type=int, default=None, metavar="N",
                    help="pairs: leases on the main when a fresh backup joins (default 100,000; --quick 10,000)")
    a = ap.parse_args(argv)
    ncpu = len(os.sched_getaffinity(0))
    if not 1 <= a.cores <= ncpu:
        ap.error(f"--cores must be between 1 and this machine's {ncpu} CPUs")
    if a.cores > 1 and a.no_pin:
        ap.error("--cores pins the servers; it cannot go with --no-pin")
    if a.recovery_leases is not None and not 1 <= a.recovery_leases <= RECOVERY_NET.pool_size:
        ap.error(f"--recovery-leases must be between 1 and {RECOVERY_NET.pool_size}")
    # pairs run only when named: the default is the single servers
    servers = a.servers or ("cnrd" if a.smoke else ",".join(n for n in SERVERS if not n.endswith("-pair")))
    a.server_list = [s.strip() for s in servers.split(",") if s.strip()]
    unknown = [s for s in a.server_list if s not in SERVERS]
    if unknown or not a.server_list:
        ap.error(f"unknown server(s) {unknown}; choose from {list(SERVERS)}")
    if a.latency_at is not None:
        if a.latency_at < 1:
            ap.error("--latency-at must be a positive rate")
        if any(s.endswith("-pair") for s in a.server_list):
            ap.error("--latency-at measures single servers only")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    s = SMOKE if a.smoke else QUICK if a.quick else FULL
    if a.duration is not None:
        if not 0 < a.duration <= 600:
            print("--duration must be in (0, 600] seconds", file=sys.stderr)
            return 2
        s = replace(s, duration=a.duration)
    if a.latency_at is not None:
        s = replace(s, latency_at=a.latency_at, startup_sizes=(), mode=f"{s.mode}, latency at {a.latency_at}/s only")
    if a.recovery_leases is not None:
        s = replace(s, recovery_leases=a.recovery_leases)
    s = replace(s, cores=a.cores, cnrd_lease_lines=a.cnrd_lease_lines)
    if a.cores > 1:
        s = replace(s, mode=f"{s.mode}, {a.cores} cores per server")
    if a.cnrd_lease_lines:
        s = replace(s, mode=f"{s.mode}, cnrd lease lines on")
    RUN.cores, RUN.cnrd_lease_lines = s.cores, s.cnrd_lease_lines
    s = replace(s, pin=not a.no_pin and pin_load(s.cores))
    need = {"isc": "dhcpd", "isc-pair": "dhcpd", "isc-lb-pair": "dhcpd", "cnrd-lb-pair": "curl", "kea": "kea-dhcp4",
            "kea-ha-pair": "kea-dhcp4"}
    binaries = ["ip", "perfdhcp"] + [need[n] for n in a.server_list if n in need]
    missing = missing_requirements(binaries)
    if missing:
        print(f"bench needs: {', '.join(missing)}", file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # SIGTERM ends the run like Ctrl-C: the lab is torn down on the way out.
    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    out = Path(a.out)
    started = time.time()
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv if argv is None else argv,
        "machine": machine(),
        "settings": {**s.__dict__, "startup_sizes": list(s.startup_sizes), "servers": a.server_list,
                     "throughput_pool": THROUGHPUT_NET.__dict__, "startup_pool": STARTUP_NET.__dict__},
        "metric_keys": metric_keys(s.startup_sizes),
        "servers": {},
    }
    say(f"bench: {', '.join(a.server_list)}; mode {s.mode}; {s.duration:g} s runs; "
        f"machine nproc {result['machine']['nproc']}, kernel {result['machine']['kernel']}")
    try:
        with Lab() as lab:
            bench = Bench(lab, s, say)
            bridged: Bench | None = None  # the balanced pairs' lab, made when first needed
            for name in a.server_list:
                if getattr(SERVERS[name], "balanced", False):
                    bridged = bridged or Bench(lab, s, say, bridged=True)
                    bridged.measure(name, result["servers"].setdefault(name, {}))
                    continue
                bench.measure(name, result["servers"].setdefault(name, {}))
    except KeyboardInterrupt:
        say("interrupted: lab torn down; partial results follow")
        result["interrupted"] = True
    result["runtime_s"] = time.monotonic() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(table(result) if result["servers"] else "no results")
    print(f"\nraw numbers and perfdhcp outputs: {out}")
    failed = any(r["errors"] for r in result["servers"].values())
    return 130 if result.get("interrupted") else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
