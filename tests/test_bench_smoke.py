"""`python -m bench.run --smoke` runs end to end and writes every metric.

Seconds, not minutes: cnrd only, 1 s perfdhcp runs, a 1,000-lease start-up.
Only the shape of the JSON and the sign of cnrd's numbers are checked, never
how fast anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.lab import missing_requirements

REPO = Path(__file__).resolve().parents[1]
MISSING = missing_requirements(("ip", "perfdhcp"))

# cnrd numbers that are positive in any successful run (drops may be 0)
POSITIVE = (
    "dora_per_s", "sat_asked_rate", "sat_leases", "cpu_s_per_1k", "peak_rss_mb",
    "lat_rate", "lat_do_p50_ms", "lat_do_p99_ms", "lat_ra_p50_ms", "lat_ra_p99_ms",
    "renew_per_s", "renew_asked_rate", "renew_dora_per_s",
)
NON_NEGATIVE = ("sat_do_drop_pct", "sat_ra_drop_pct", "renew_drop_pct", "other_cpu_pct")


def _smoke(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``bench.run --smoke ARGS``; its output and JSON (skips, or fails under CI, without root/perfdhcp)."""
    if MISSING:
        reason = "the bench needs root and perfdhcp; missing: " + ", ".join(MISSING)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: not skipping)", pytrace=False)
        pytest.skip(reason)
    out = tmp_path / "bench.json"
    cp = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", *args, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert cp.returncode == 0, f"exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp, json.loads(out.read_text())


@pytest.mark.integration
def test_bench_smoke_writes_every_metric(tmp_path):
    from bench.run import metric_keys

    cp, data = _smoke(tmp_path)

    assert data["settings"]["mode"] == "smoke"
    assert data["machine"]["nproc"] >= 1 and data["machine"]["kernel"]
    keys = metric_keys(data["settings"]["startup_sizes"])
    assert data["metric_keys"] == keys
    cnrd = data["servers"]["cnrd"]
    assert cnrd["errors"] == []
    assert set(keys) <= set(cnrd["metrics"]), set(keys) - set(cnrd["metrics"])
    m = cnrd["metrics"]
    for key in POSITIVE + tuple(k for k in keys if k.startswith(("startup_", "rss_"))):
        assert isinstance(m[key], (int, float)) and m[key] > 0, (key, m[key])
    for key in NON_NEGATIVE:
        assert isinstance(m[key], (int, float)) and m[key] >= 0, (key, m[key])
    # the raw perfdhcp outputs are kept
    assert "Rate:" in cnrd["saturation"]["tries"][0]["perfdhcp"]["raw"]
    assert "timestamp lines elided" in cnrd["latency"]["tries"][0]["perfdhcp"]["raw"]
    # and the table was printed
    assert "DORA/s at saturation" in cp.stdout


def test_latency_figures_are_the_median_of_the_tries():
    from bench.run import _median_delays

    tries = [{"REQUEST-ACK": {"n": 10, "p50_ms": 0.5, "p99_ms": 4.0}},
             {"REQUEST-ACK": {"n": 12, "p50_ms": 0.7, "p99_ms": 1.0}, "DISCOVER-OFFER": {"n": 3, "p99_ms": None}},
             {"REQUEST-ACK": {"n": 11, "p50_ms": 0.6, "p99_ms": 2.0}}]
    m = _median_delays(tries)
    assert m["REQUEST-ACK"] == {"n": 11, "p50_ms": 0.6, "p99_ms": 2.0}
    assert m["DISCOVER-OFFER"] == {"n": 3, "p99_ms": None}


@pytest.mark.integration
def test_bench_latency_at_one_rate_measures_only_latency(tmp_path):
    cp, data = _smoke(tmp_path, "--latency-at", "100")
    assert data["settings"]["latency_at"] == 100
    cnrd = data["servers"]["cnrd"]
    assert cnrd["errors"] == [] and "saturation" not in cnrd and "startup" not in cnrd
    m = cnrd["metrics"]
    assert m["lat_rate"] == 100 and m["dora_per_s"] is None
    for key in ("lat_do_p50_ms", "lat_do_p99_ms", "lat_ra_p50_ms", "lat_ra_p99_ms"):
        assert isinstance(m[key], (int, float)) and m[key] > 0, (key, m[key])
    assert "REQUEST-ACK p99 ms" in cp.stdout and "DORA/s at saturation" not in cp.stdout


def test_bench_latency_at_refuses_pairs_and_bad_rates():
    for args in (["--latency-at", "100", "--servers", "cnrd-pair"], ["--latency-at", "0"]):
        cp = subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", "/nonexistent/x.json"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert cp.returncode == 2 and "--latency-at" in cp.stderr, (args, cp.returncode, cp.stderr)


@pytest.mark.integration
@pytest.mark.skipif(missing_requirements(("kea-dhcp4",)) == ["kea-dhcp4"], reason="kea-dhcp4 not installed")
def test_bench_smoke_kea_ha_pair_serves_and_syncs_a_fresh_standby(tmp_path):
    cp, data = _smoke(tmp_path, "--servers", "kea-ha-pair")
    kea = data["servers"]["kea-ha-pair"]
    assert kea["errors"] == []
    m = kea["metrics"]
    for key in ("dora_per_s", "sat_leases", "cpu_s_per_1k", "recovery_s", "recovery_full_s"):
        assert isinstance(m[key], (int, float)) and m[key] > 0, (key, m[key])
    # the standby's own lease file holds every lease the primary had
    assert m["recovery_leases"] == 1000 and m["recovery_backup_leases"] == 1000
    rec = kea["recovery"]
    assert rec["primary_status_ok"] is True, rec["primary_status"]
    assert rec["backup_moves"][-1].endswith("to HOT-STANDBY") and any("SYNCING" in mv for mv in rec["backup_moves"])
    assert "pair: fresh backup to NORMAL, s" in cp.stdout
