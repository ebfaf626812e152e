"""What a bench run reports: the table's rows, the metric keys of the JSON,
the machine it ran on, and the table itself (bench/run.py measures)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from bench.servers import SERVERS, versions

__all__ = [
    "BALANCED_ROWS",
    "BASE_ROWS",
    "PAIR_ROWS",
    "RATIOS",
    "machine",
    "metric_keys",
    "size_label",
    "startup_rows",
    "table",
]

def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


#: (key, table label, which way is better: "high", "low" or None)
BASE_ROWS: list[tuple[str, str, str | None]] = [
    ("dora_per_s", "DORA/s at saturation", "high"),
    ("sat_asked_rate", "  last asked rate /s", None),
    ("sat_do_drop_pct", "  DISCOVER-OFFER drops %", "low"),
    ("sat_ra_drop_pct", "  REQUEST-ACK drops %", "low"),
    ("sat_leases", "  leases granted", None),
    ("cpu_s_per_1k", "CPU s per 1k leases", "low"),
    ("peak_rss_mb", "peak RSS MiB (VmHWM)", "low"),
    ("rss_kb_per_1k", "RSS growth KiB per 1k leases", "low"),
    ("lat_rate", "latency run rate /s (sat/2)", None),
    ("lat_do_p50_ms", "  DISCOVER-OFFER p50 ms", "low"),
    ("lat_do_p99_ms", "  DISCOVER-OFFER p99 ms", "low"),
    ("lat_ra_p50_ms", "  REQUEST-ACK p50 ms", "low"),
    ("lat_ra_p99_ms", "  REQUEST-ACK p99 ms", "low"),
    ("renew_per_s", "renewals/s (perfdhcp -f)", "high"),
    ("renew_asked_rate", "  asked -r = -f /s", None),
    ("renew_dora_per_s", "  DORA/s alongside", None),
    ("renew_drop_pct", "  renewal drops %", "low"),
    ("other_cpu_pct", "other processes' CPU % during runs", None),
]


#: balanced pairs (bench/balanced.py): each server's own share, from the last saturation try
BALANCED_ROWS: list[tuple[str, str, str | None]] = [
    ("lb_dora_any_split", "balanced: DORA/s, any try (unbalanced too)", None),
    ("lb_main_grants", "  ACKs sent by the main", None),
    ("lb_backup_grants", "  ACKs sent by the backup", None),
    ("lb_main_share_pct", "  main's share of the ACKs %", None),
    ("lb_both_answered", "  both answered, each near half", None),
    ("lb_main_cpu_s_per_1k", "  main CPU s per 1k of its leases", "low"),
    ("lb_backup_cpu_s_per_1k", "  backup CPU s per 1k of its leases", "low"),
]


PAIR_ROWS: list[tuple[str, str, str | None]] = [
    ("sat_backup_leases", "pair: backup's leases when the load stopped", None),
    ("recovery_leases", "pair: leases on the main at recovery", None),
    ("recovery_backup_leases", "  leases the backup holds at NORMAL", None),
    ("recovery_s", "pair: fresh backup to NORMAL, s", "low"),
    ("recovery_minus_mclt_s", "  same, MCLT wait excluded, s", "low"),
    ("recovery_full_s", "  backup holds every lease after, s", "low"),
]


def startup_rows(sizes: tuple[int, ...]) -> list[tuple[str, str, str | None]]:
    rows = []
    for n in sizes:
        lab = size_label(n)
        rows.append((f"startup_{lab}_s", f"start-up s, {lab} leases", "low"))
        rows.append((f"rss_{lab}_mb", f"RSS MiB after start, {lab} leases", "low"))
    return rows


def metric_keys(sizes) -> list[str]:
    """Every key of a server's ``metrics`` in the JSON, for these start-up sizes."""
    return [k for k, _, _ in BASE_ROWS + startup_rows(tuple(sizes)) + PAIR_ROWS + BALANCED_ROWS]




def _rcvbuf(rec: dict, side: str) -> str:
    return str(rec.get(f"udp_{side}_ns", {}).get("RcvbufErrors", "?"))


def _f(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        return f"{v:.3f}" if a < 1 else f"{v:.2f}" if a < 10 else f"{v:.1f}" if a < 100 else f"{v:.0f}"
    return str(v)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu, "mem_kb": mem_kb,
            "python": platform.python_version(), "hostname": platform.node(), "versions": versions()}


#: (ours, theirs, column label): the ratio columns, each shown when both servers ran
RATIOS: list[tuple[str, str, str]] = [
    ("cnrd", "isc", "cnrd/ISC"),
    ("cnrd", "kea", "cnrd/Kea"),
    ("cnrd-pair", "isc-pair", "cnrd-pair/isc-pair"),
    ("cnrd-pair", "kea-ha-pair", "cnrd-pair/kea-ha-pair"),
    ("cnrd-lb-pair", "isc-lb-pair", "cnrd-lb/isc-lb"),
]


def table(result: dict) -> str:
    names = list(result["servers"])
    sizes = tuple(result["settings"]["startup_sizes"])
    hot_standby = any(n.endswith("-pair") and not getattr(SERVERS.get(n), "balanced", False) for n in names)
    rows = BASE_ROWS + startup_rows(sizes) + (PAIR_ROWS if hot_standby else [])
    if any(getattr(SERVERS.get(n), "balanced", False) for n in names):
        rows = rows + BALANCED_ROWS
    ratios = [r for r in RATIOS if r[0] in names and r[1] in names]
    head = ["metric"] + names + [label for _, _, label in ratios] + ["better"]
    body = []
    latency_only = bool(result["settings"].get("latency_at"))
    for key, label, better in rows:
        vals = [result["servers"][n]["metrics"].get(key) for n in names]
        if latency_only:
            if all(v is None for v in vals):
                continue  # steps this mode does not run
            label = label.replace(" (sat/2)", "")
        line = [label] + [_f(v) for v in vals]
        for ours, other, _ in ratios:
            a = result["servers"][ours]["metrics"].get(key)
            b = result["servers"][other]["metrics"].get(key)
            unbalanced = [n for n in (ours, other) if result["servers"][n]["metrics"].get("lb_both_answered") == "NO"]
            if unbalanced and better:
                # one server answered (nearly) everything: not a balanced pair's figure
                line.append(f"n/a: {'/'.join(unbalanced)} unbalanced")
                continue
            line.append(f"{a / b:.2f}" if better and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                        else "")
        line.append({"high": "higher", "low": "lower", None: ""}[better])
        body.append(line)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    mach = result["machine"]
    v = mach["versions"]
    lines = [
        f"machine: nproc {mach['nproc']}, kernel {mach['kernel']}, {mach['cpu']}, "
        f"{(mach['mem_kb'] or 0) // 1024} MiB",
        f"servers: cnrd {v['cnrd']}, {v['isc']}, kea {v['kea']}; perfdhcp {v['perfdhcp']}",
        f"mode {result['settings']['mode']}, {result['settings']['duration']:g} s per perfdhcp run, "
        f"runtime {result['runtime_s']:.0f} s",
        "",
        fmt(head),
        fmt(["-" * w for w in widths]),
        *(fmt(r) for r in body),
    ]
    for n in names:
        for e in result["servers"][n]["errors"]:
            lines.append(f"{n}: {e['step']} failed: {e['error'].splitlines()[0] if e['error'] else ''}")
    return "\n".join(lines)

