"""bench.disksync: the journal appends it times are real, counted and read back."""

from __future__ import annotations

import os

import pytest

from bench import disksync


def test_measures_every_append_and_reads_a_sample_back(tmp_path):
    r = disksync.measure(str(tmp_path), 300, 0.0)
    assert r["appends"] == 300 and r["checked"] == 3  # records 97, 194 and 291
    assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"]
    assert r["cpu_us"] > 0
    assert os.listdir(tmp_path) == []  # the scratch journal is gone


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert disksync.percentile(values, 0.5) == 51.0
    assert disksync.percentile(values, 0.99) == 100.0
    assert disksync.percentile([7.0], 0.999) == 7.0


def test_refuses_counts_and_intervals_out_of_range(capsys):
    with pytest.raises(SystemExit):
        disksync.main(["--count", "0"])
    with pytest.raises(SystemExit):
        disksync.main(["--interval", "1"])
    assert "--count must be" in capsys.readouterr().err


def test_prints_one_line_per_interval(tmp_path, capsys):
    assert disksync.main(["--dir", str(tmp_path), "--count", "100", "--interval", "0", "--interval", "0.0001"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("512-byte journal appends") and len(out) == 3
    assert out[1].startswith("  every 0 µs: p50 ") and out[2].startswith("  every 100 µs: p50 ")
