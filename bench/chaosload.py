"""Did the chaos run's own load run?  Seeds for its generators and the verdict.

A fault-injection run that audits no traffic proves nothing, so the load is
judged like the servers are: every load generator (perfdhcp, each dhclient
and udhcpc loop) must have run without an error of its own, and the clients
must have been answered at least a stated floor derived from what the run
asked for.  Everything here is pure: it takes what ``bench.chaos`` recorded
(exit codes, output, timestamps, ACKs counted from the captures) and returns
numbers and reasons; no clock, no processes, no root.

The floors (see :func:`floors`):

* perfdhcp: ``PERF_FLOOR_FRACTION`` of its configured rate (DORA/s) times the
  seconds the load ran with no fault in progress.  A fault may silence the
  servers from its start until both are NORMAL again (a killed server, a
  main cut off from the clients whose backup in NORMAL answers nobody,
  POTENTIAL-CONFLICT and RECOVER-WAIT after a heal), so that time earns
  nothing.  Outside faults a healthy run still falls short of rate × time:
  perfdhcp runs in 15 s chunks with a 2 s exit wait and a start-up between
  them, a burst overruns max-dhcp-requests for a second or two,
  and the servers' first seconds after a heal may still drop.  Half of the
  nominal rate leaves room for all of that and more; a generator that did
  not run gets no ACK at all, far below it.  Renewals (``-f``) add ACKs above the floor, never below it.
* dhclient and udhcpc loops: one ACK per ``CLIENT_SECONDS_PER_ACK`` seconds
  without a fault, and at least one.  A loop's slowest healthy cycle (its
  longest sleeps, 8 + 8 + 4 s, plus a second or two per exchange) brings
  two ACKs in under 25 s; one per 30 s leaves room for runs that waited out
  a fault.

Every floor is at least 1: a generator that got no ACK at all fails the run,
whatever the schedule.
"""

from __future__ import annotations

import hashlib
import math
import re
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: perfdhcp's ``-s`` takes a positive signed 32-bit integer (``0`` means "no
#: seed": a different run every time), so every seed lies in [1, 2**31 - 1].
PERF_SEED_MAX = 2**31 - 1

#: perfdhcp's exit codes that are not an error of the generator: 0 every
#: exchange completed, 3 some did not (servers under faults), and the SIGINT
#: that ends a run at the end of the load (as a signal or as a shell's 130).
PERF_OK_RC = frozenset({0, 3, -int(signal.SIGINT), 128 + int(signal.SIGINT)})

PERF_FLOOR_FRACTION = 0.5
CLIENT_SECONDS_PER_ACK = 30.0

#: What a client prints when it refused its command line (perfdhcp, ISC
#: dhclient, busybox udhcpc): the run tested nothing, whatever its exit code.
_OPTION_ERROR = re.compile(
    r"ERROR: parsing command line|must be (?:a )?non-negative|unrecognized option|invalid option"
    r"|Unknown command|option requires an argument|^Usage: ",
    re.MULTILINE,
)

DHCLIENT_RUNS = ("dhclient", "renew", "release")  # what the dhclient loop records its runs as


def perf_seed(run_seed: int, stream: str, index: int) -> int:
    """perfdhcp's ``-s`` for run ``index`` of ``stream`` ("churn", "burst").

    Stable for a given ``--seed`` (a hash, not Python's salted ``hash()``),
    different (but for a 2**-31 chance) per stream and index, and always inside the range perfdhcp
    accepts whatever the run seed is (negative or beyond 32 bits).
    """
    digest = hashlib.blake2b(f"{run_seed}/{stream}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % PERF_SEED_MAX + 1


def _first_line(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    if m is None:
        return None
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    return text[start:end if end >= 0 else len(text)].strip()[:200]


def _tail(text: str, n: int = 200) -> str:
    return " ".join(text.split())[-n:]


def perfdhcp_error(rc: int | None, exchanges: Mapping[str, Any], output: str,
                   interrupted: bool = False) -> str | None:
    """Why one perfdhcp run is an error of the generator, or None.

    ``exchanges`` is what its final report counted (empty when it printed
    none).  Exchanges that got no answer are the servers' business (exit 3),
    not an error here.  ``interrupted``: the end of the load sent it SIGINT,
    perhaps before it could set up its handler, so a missing report is not
    its fault then.
    """
    bad_option = _first_line(_OPTION_ERROR, output)
    if bad_option is not None:
        return f"perfdhcp refused its command line (rc {rc}): {bad_option}"
    if rc not in PERF_OK_RC:
        return f"perfdhcp exited {rc}: {_tail(output)}"
    if not exchanges and not interrupted:
        return f"perfdhcp printed no statistics (rc {rc}): {_tail(output)}"
    return None


def client_run_error(what: str, rc: int | None, timed_out: bool, output: str) -> str | None:
    """Why one dhclient or udhcpc run of the loops is an error of the client, or None.

    ``what`` is the run's kind as the loops record it.  Getting no answer is
    not an error here (faults silence the servers for a while): dhclient
    ``-1`` exits 2 without a lease, udhcpc ``-n`` exits 1 saying "no lease,
    failing", and a run the loop stopped after its timeout got nothing in
    time.  Anything else (a refused command line, a missing binary, another
    exit code) means the client did not do what the loop asked.
    """
    bad_option = _first_line(_OPTION_ERROR, output)
    if bad_option is not None:
        return f"{what}: refused its command line (rc {rc}): {bad_option}"
    if what in DHCLIENT_RUNS:
        if what == "release":
            if timed_out or rc != 0:
                return f"release: dhclient -r {'timed out' if timed_out else f'exited {rc}'}: {_tail(output)}"
            return None
        if timed_out or rc in (0, 2):
            return None
        return f"{what}: dhclient exited {rc}: {_tail(output)}"
    if what == "udhcpc":
        if timed_out or rc == 0 or (rc == 1 and "no lease, failing" in output):
            return None
        return f"udhcpc exited {rc}: {_tail(output)}"
    if what == "udhcpc-release":
        # the running client is ended by SIGTERM, on which it releases and exits 0
        if rc == 0:
            return None
        return f"udhcpc-release: udhcpc exited {rc} (0 expected after SIGTERM): {_tail(output)}"
    return f"{what}: not a client run the loops make"


def fault_free_seconds(start: float, end: float, faults: Iterable[tuple[float, float]]) -> float:
    """Seconds of [start, end] outside every (from, to) fault interval."""
    spans = sorted((max(a, start), min(b, end)) for a, b in faults if min(b, end) > max(a, start))
    covered = 0.0
    cur: tuple[float, float] | None = None  # the merged interval being extended
    for a, b in spans:
        if cur is None or a > cur[1]:
            if cur is not None:
                covered += cur[1] - cur[0]
            cur = (a, b)
        else:
            cur = (cur[0], max(cur[1], b))
    if cur is not None:
        covered += cur[1] - cur[0]
    return max(0.0, (end - start) - covered)


@dataclass(frozen=True)
class Plan:
    """What the run asked of its load, and the time it had."""

    perf_rate: float  # DORA/s asked of perfdhcp
    load_s: float  # seconds from the load's start to its stop
    fault_free_s: float  # of which no fault was in progress


@dataclass(frozen=True)
class Generator:
    """One load generator as recorded: a namespace's perfdhcp or client loop."""

    role: str  # its namespace (perf, dh1, ud1, burst)
    kind: str  # perfdhcp, dhclient, udhcpc, burst
    runs: int  # runs it recorded
    acks: int  # DHCPACKs to its own clients, counted from its capture
    errors: tuple[str, ...] = ()  # its runs' errors (perfdhcp_error, client_run_error)
    judged: bool = True  # False: its errors count, its ACKs have no floor (bursts)


def generators(roles: Iterable[tuple[str, str]], perf_runs: Sequence[Mapping[str, Any]],
               client_runs: Sequence[Mapping[str, Any]], burst_runs: Sequence[Mapping[str, Any]],
               acks: Mapping[str, int]) -> list[Generator]:
    """The generators of a run from its records.

    ``roles`` is (namespace, kind) of every client namespace; perfdhcp's
    churn runs belong to the ``perfdhcp`` namespace, the burst runs to the
    ``burst`` one, each client run to the namespace it names (``client``);
    every run carries its ``error`` (None when it had none).  ``acks`` counts
    the ACKs each namespace's capture saw to its own clients.
    """
    out = []
    for role, kind in roles:
        if kind == "perfdhcp":
            runs = list(perf_runs)
        elif kind == "burst":
            runs = list(burst_runs)
        else:
            runs = [r for r in client_runs if r.get("client") == role]
        errors = tuple(str(r["error"]) for r in runs if r.get("error"))
        out.append(Generator(role, kind, len(runs), acks.get(role, 0), errors, judged=kind != "burst"))
    return out


def floors(plan: Plan) -> dict[str, int]:
    """Minimum ACKs per generator kind, from the plan (module docstring)."""
    perf = math.ceil(PERF_FLOOR_FRACTION * plan.perf_rate * plan.fault_free_s)
    client = math.floor(plan.fault_free_s / CLIENT_SECONDS_PER_ACK)
    return {"perfdhcp": max(1, perf), "dhclient": max(1, client), "udhcpc": max(1, client)}


@dataclass
class Verdict:
    """The load check: ``ok`` only with no generator error and every floor met."""

    ok: bool
    plan: Plan
    floors: dict[str, int]
    reasons: list[str] = field(default_factory=list)
    generators: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> what it did, its floor

    def to_json(self) -> dict[str, Any]:
        p = self.plan
        return {"ok": self.ok, "reasons": self.reasons,
                "plan": {"perf_rate": p.perf_rate, "load_s": round(p.load_s, 1),
                         "fault_free_s": round(p.fault_free_s, 1),
                         "perf_floor_fraction": PERF_FLOOR_FRACTION,
                         "client_seconds_per_ack": CLIENT_SECONDS_PER_ACK},
                "floors": self.floors, "generators": self.generators}


def report_lines(load: Mapping[str, Any]) -> list[str]:
    """The report's text from :meth:`Verdict.to_json`: what was asked, what was measured, why it failed."""
    out = []
    p = load.get("plan")
    if p:
        out.append(f"load: ran {p['load_s']:.0f} s, {p['fault_free_s']:.0f} s of it without a fault in progress; "
                   f"floors: perfdhcp {p['perf_floor_fraction']:.0%} of {p['perf_rate']:g}/s x that time = "
                   f"{load['floors']['perfdhcp']} ACKs, a client loop 1 ACK per {p['client_seconds_per_ack']:g} s "
                   f"(at least 1) = {load['floors']['dhclient']}")
    for role, g in load.get("generators", {}).items():
        floor = f"floor {g['floor']}" if g["floor"] is not None else "no floor"
        out.append(f"  {role:<6} {g['kind']:<9} {g['runs']:4d} runs {g['acks']:7d} ACKs ({floor}), "
                   f"{g['errors']} errors")
    out.append("LOAD: OK" if load.get("ok") else f"LOAD: FAILED ({len(load.get('reasons', []))} reasons)")
    out += [f"  {r}" for r in load.get("reasons", [])]
    return out


def judge(plan: Plan, generators: Sequence[Generator], loop_errors: Sequence[str] = ()) -> Verdict:
    """The load verdict from what was recorded.

    Fails on any error of a generator's run, on ``loop_errors`` (a load
    thread that crashed or did not stop), on a generator that never ran, and
    on a judged generator whose ACKs fall below its kind's floor.
    """
    fl = floors(plan)
    v = Verdict(ok=True, plan=plan, floors=fl)
    for e in loop_errors:
        lines = e.strip().splitlines() or [e]
        # a traceback: its first line names the loop, its last the exception
        v.reasons.append(f"load error: {lines[0]}{' ... ' + lines[-1] if len(lines) > 1 else ''}"[:400])
    for g in generators:
        floor = fl.get(g.kind) if g.judged else None
        v.generators[g.role] = {"kind": g.kind, "runs": g.runs, "acks": g.acks, "floor": floor,
                                "errors": len(g.errors), "first_errors": list(g.errors[:5])}
        if g.runs == 0 and g.judged:
            v.reasons.append(f"{g.role} ({g.kind}) never ran")
        if g.errors:
            v.reasons.append(f"{g.role} ({g.kind}): {len(g.errors)} of {g.runs} runs failed; "
                             f"first: {g.errors[0]}"[:400])
        if floor is not None and g.acks < floor:
            v.reasons.append(f"{g.role} ({g.kind}): {g.acks} ACKs, below the floor of {floor}")
    if not any(g.judged for g in generators):
        v.reasons.append("no load generator was configured")
    v.ok = not v.reasons
    return v
