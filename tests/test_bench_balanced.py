"""The balanced-pair bench's arithmetic (bench/balanced.py, bench/run.py): no root, no processes."""

from __future__ import annotations

import pytest

from bench import balanced
from bench.run import table

METRICS = """\
# HELP cnrd_dhcp_packets_sent_total DHCP and BOOTP replies sent, by message type
# TYPE cnrd_dhcp_packets_sent_total counter
cnrd_dhcp_packets_sent_total{type="OFFER"} 5012.0
cnrd_dhcp_packets_sent_total{type="ACK"} 4987.0
cnrd_dhcp_packets_sent_total_created{type="ACK"} 1.7e9
cnrd_dhcp_packets_sent_totals 3
cnrd_lease_commits_total 77
"""


def test_prom_value_reads_the_sample_with_exactly_these_labels():
    assert balanced.prom_value(METRICS, "cnrd_dhcp_packets_sent_total", {"type": "ACK"}) == 4987.0
    assert balanced.prom_value(METRICS, "cnrd_dhcp_packets_sent_total", {"type": "OFFER"}) == 5012.0
    assert balanced.prom_value(METRICS, "cnrd_lease_commits_total") == 77
    # a longer name sharing the prefix, other labels, absent samples
    assert balanced.prom_value(METRICS, "cnrd_dhcp_packets_sent_total", {"type": "NAK"}) is None
    assert balanced.prom_value(METRICS, "cnrd_dhcp_packets_sent_total") is None
    assert balanced.prom_value("", "cnrd_lease_commits_total") is None


def test_isc_acks_counts_lease_acks_not_inform_acks():
    log = ("DHCPDISCOVER from 00:0c:01:02:03:04 via 10.8.0.1\n"
           "DHCPOFFER on 10.8.0.10 to 00:0c:01:02:03:04 via 10.8.0.1\n"
           "DHCPREQUEST for 10.8.0.10 (10.1.0.1) from 00:0c:01:02:03:04 via 10.8.0.1\n"
           "DHCPACK on 10.8.0.10 to 00:0c:01:02:03:04 via 10.8.0.1\n"
           "DHCPACK to 10.8.0.77 (00:0c:01:02:03:05) via 10.8.0.1\n"
           "DHCPDISCOVER from 00:0c:01:02:03:06 via 10.8.0.1: load balance to peer benchpair\n"
           "DHCPACK on 10.8.0.11 to 00:0c:01:02:03:07 via 10.8.0.1\n")
    assert balanced.isc_acks(log) == 2


def test_per_server_delta_is_cpu_over_that_servers_own_grants():
    before = {"main": {"cpu_s": 1.0, "grants": 0}, "backup": {"cpu_s": 0.5, "grants": 10}}
    after = {"main": {"cpu_s": 4.0, "grants": 6000}, "backup": {"cpu_s": 2.5, "grants": 4010}}
    d = balanced.per_server_delta(before, after)
    assert d["main"]["grants"] == 6000 and d["backup"]["grants"] == 4000
    assert d["main"]["cpu_s_per_1k"] == pytest.approx(0.5)
    assert d["backup"]["cpu_s_per_1k"] == pytest.approx(0.5)
    idle = balanced.per_server_delta(before, {**after, "backup": {"cpu_s": 0.9, "grants": 10}})
    assert idle["backup"]["grants"] == 0 and idle["backup"]["cpu_s_per_1k"] is None


@pytest.mark.parametrize("main,backup,ok", [
    (5000, 5000, True), (4100, 5900, True), (5900, 4100, True),
    (10000, 0, False), (0, 10000, False), (3000, 7000, False), (7000, 3000, False), (0, 0, False),
])
def test_share_verdict_needs_both_servers_near_half(main, backup, ok):
    v = balanced.share_verdict({"main": {"grants": main}, "backup": {"grants": backup}})
    assert v["ok"] is ok, v
    if main + backup:
        assert v["main_share"] == pytest.approx(main / (main + backup))
    if ok:
        return
    assert v["reason"]
    if backup == 0 and main:
        assert "main answered every client" in v["reason"]


def _result(cnrd_ok: bool) -> dict:
    def m(dora: float, ok: bool) -> dict:
        return {"metrics": {"dora_per_s": dora, "lb_both_answered": "yes" if ok else "NO",
                            "lb_main_grants": 100, "lb_backup_grants": 100 if ok else 0},
                "errors": []}

    return {"servers": {"cnrd-lb-pair": m(9000.0, cnrd_ok), "isc-lb-pair": m(1000.0, True)},
            "settings": {"startup_sizes": [], "mode": "quick", "duration": 10},
            "machine": {"nproc": 2, "kernel": "k", "cpu": "c", "mem_kb": 1024,
                        "versions": {"cnrd": "x", "isc": "y", "kea": "z", "perfdhcp": "p"}},
            "runtime_s": 1.0}


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(label))


def test_table_quotes_the_ratio_only_when_both_pairs_balanced():
    good = table(_result(True))
    assert "cnrd-lb/isc-lb" in good
    assert "9.00" in _row(good, "DORA/s at saturation")
    bad = table(_result(False))
    row = _row(bad, "DORA/s at saturation")
    assert "9.00" not in row and "n/a: cnrd-lb-pair unbalanced" in row
    assert "NO" in _row(bad, "  both answered, each near half")


def test_a_balanced_pair_is_quoted_by_its_fastest_balanced_try():
    ok, bad = {"ok": True}, {"ok": False}
    tries = [{"achieved": 490, "share": ok}, {"achieved": 980, "share": ok},
             {"achieved": 1850, "share": bad}]
    t, balanced_ = balanced.pick_try(tries)
    assert balanced_ and t["achieved"] == 980
    t, balanced_ = balanced.pick_try([{"achieved": 700, "share": bad}, {"achieved": 650, "share": bad}])
    assert not balanced_ and t["achieved"] == 650


def test_one_more_try_halfway_once_the_pair_stopped_balancing():
    ok, bad = {"ok": True}, {"ok": False}
    kept = {"asked": 2000, "achieved": 1966, "share": ok}
    assert balanced.refine_rate([kept, {"asked": 4000, "achieved": 2508, "share": bad}]) == 3000
    # balanced but overloaded: its saturation lies between too
    assert balanced.refine_rate([kept, {"asked": 4000, "achieved": 2500, "share": ok}]) == 3000
    # kept up and balanced at the higher rate: doubling goes on, nothing to refine
    assert balanced.refine_rate([kept, {"asked": 4000, "achieved": 3900, "share": ok}]) is None
    # the lower try did not keep up, or was not balanced either
    assert balanced.refine_rate([{**kept, "achieved": 1500}, {"asked": 4000, "achieved": 2508, "share": bad}]) is None
    assert balanced.refine_rate([{**kept, "share": bad}, {"asked": 4000, "achieved": 2508, "share": bad}]) is None
    assert balanced.refine_rate([kept]) is None
