"""Issue 7: bench/chaos for a minute with a fixed seed, as CI runs it.

A cnrd pair in namespaces with perfdhcp, dhclient and udhcpc clients; the
fault injector (bench/chaos.py) crashes, partitions and cuts off the servers
and plays the operator with cnrctl, while tcpdump in every client namespace
records what the clients were told.  The audit must find nothing: no address
held by two clients at once, every unexpired ACKed lease in both stores, the
pair back to NORMAL after every fault.  The short schedule fits a minute:
each of its kinds is injected at least once.  The load is checked too: every
generator ran without an error and got at least its floor of ACKs.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from bench import chaos

IN_CI = os.environ.get("CI") == "true"

#: cheap enough that all four fit in a minute (lost-db alone needs MCLT + ~15 s,
#: kill and partition are covered by the partner-down variants)
SCHEDULE = ("kill-partner-down", "partition-partner-down", "cut-clients", "burst")


@pytest.fixture(autouse=True)
def _tcpdump() -> None:
    if shutil.which("tcpdump", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        if IN_CI:
            pytest.fail("tcpdump is missing (CI=true: not skipping)", pytrace=False)
        pytest.skip("bench.chaos needs tcpdump (scripts/setup installs it)")


def _minute(lab, tmp_path, **mode) -> dict:
    """One minute of the CI schedule in the given mode, with every check that
    holds whatever the mode; returns the report for the mode's own checks."""
    opts = chaos.Options(
        duration=60, seed=6, faults=SCHEDULE, hold=(3.0, 5.0), settle=3.0, gap=(1.0, 2.0), warmup=5.0,
        perf_clients=1000, perf_rate=30, dhclients=1, udhcpcs=1,
        out=tmp_path / "chaos.json", keep=tmp_path / "artifacts", **mode,
    )
    report = chaos.run(opts, lab=lab)
    text = chaos.text_report(report)
    print(text)
    (tmp_path / "chaos.json").write_text(json.dumps(report, indent=1, default=str))

    assert report["violations"] == [], text
    # the load ran as asked: no generator error, and every generator over its
    # floor (bench/chaosload.py), so a run whose clients never ran cannot pass
    load = report["load"]
    assert load["ok"] and report["passed"], text
    assert load["plan"]["fault_free_s"] > 0, load["plan"]
    for role, g in load["generators"].items():
        assert g["errors"] == 0 and g["runs"] > 0, (role, g)
        if g["kind"] != "burst":
            assert g["floor"] >= 1 and g["acks"] >= g["floor"], (role, g)
    assert load["generators"]["perf"]["floor"] >= 0.5 * opts.perf_rate * 10, load  # at least 10 s without faults
    assert report["perfdhcp"]["exchanges"]["REQUEST-ACK"]["received"] > 0, report["perfdhcp"]
    injected = report["faults_per_kind"]
    for kind in SCHEDULE:
        assert injected.get(kind, 0) >= 1, f"{kind} never injected: {injected}\n{text}"
    # every fault healed into NORMAL within its bound, and the pair ended NORMAL
    for f in report["faults"]:
        assert f["recovery_s"] is not None and f["recovery_s"] <= f["bound_s"], f
    assert report["final_normal"]["normal"]
    # the operator's setPartnerDown was accepted each time, never on both sides at once
    pd = report["operator_partner_down"]
    assert pd and all(x["rc"] == 0 for x in pd), pd
    assert not report["skipped_actions"], report["skipped_actions"]
    # each relationship's own moves: a server's composite state is only
    # POTENTIAL-CONFLICT while all its relationships are
    moves = {(t["pair"], t["to"]) for t in report["relationship_transitions"]}
    assert any(to == "POTENTIAL-CONFLICT" for _, to in moves), "partition + partner-down never conflicted"
    # the clients were there and the auditor saw them
    le = report["leases"]
    assert le["acks"] > 500 and le["acks_by_server"].get("10.98.0.2", 0) > 0, le
    assert report["stores"]["expected"] > 0
    assert all(s["dropped_by_kernel"] == 0 for s in report["captures"]["stats"].values()), report["captures"]
    req = report["requests"]
    assert req["dhclient"]["answered"] > 0 and req["udhcpc"]["answered"] > 0, req
    return report


def test_chaos_minute_with_a_fixed_seed_has_no_violations(lab, tmp_path):
    report = _minute(lab, tmp_path)
    # hot standby: outside faults the main serves
    calm = report["leases"]["acks_by_server_outside_faults"]
    assert calm.get("10.98.0.1", 0) > 0, calm


def _share(acks: dict[str, int], server: str) -> float:
    total = sum(acks.values())
    assert total > 0, acks
    return acks.get(server, 0) / total


def test_chaos_minute_load_balanced(lab, tmp_path):
    """A balanced pair (RFC 3074, split 128) under the same faults: the same
    audit, and outside faults each server answers about half the clients."""
    report = _minute(lab, tmp_path, load_balancing=True)
    calm = report["leases"]["acks_by_server_outside_faults"]
    for server in ("10.98.0.1", "10.98.0.2"):
        assert _share(calm, server) >= 0.3, (server, calm)


def test_chaos_minute_two_relationships(lab, tmp_path):
    """Two relationships between the two servers, each the main of one
    scope: the same audit per relationship, and both relationships serve."""
    report = _minute(lab, tmp_path, relationships=2)
    by_rel = report["leases"]["acks_by_relationship"]
    assert by_rel.get("examplepair", 0) > 0 and by_rel.get("examplepair2", 0) > 0, by_rel
    assert "?" not in by_rel, by_rel
    calm = report["leases"]["acks_by_server_outside_faults"]
    for server in ("10.98.0.1", "10.98.0.2"):
        assert _share(calm, server) >= 0.1, (server, calm)
    # setPartnerDown went to every relationship
    assert {x["pair"] for x in report["operator_partner_down"]} == {"examplepair", "examplepair2"}
    conflicted = {t["pair"] for t in report["relationship_transitions"] if t["to"] == "POTENTIAL-CONFLICT"}
    assert conflicted == {"examplepair", "examplepair2"}, conflicted
