"""The Kea HA pair of the bench (bench/pairs.py), the bench's cnrd [server]
lines and the run options (bench/servers.py, bench/run.py): no root, no
servers, except the config check, which asks kea-dhcp4 -t itself.

Expected values come from Kea 2.2's documentation (the HA hook's
``status-get`` answer, the HA_STATE_TRANSITION message "server transitions
from %1 to %2 state, partner state is %3") and from the CSV lease4 format
Kea writes, not from running the bench.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import pairs
from bench.report import table
from bench.servers import KEA_LEASE4_HEADER, RUN, THROUGHPUT_NET, cnrd_server_lines, kea_lease_count

REPO = Path(__file__).resolve().parents[1]


def _status(local_state="hot-standby", scopes=("primary",), remote_state="hot-standby", in_touch=True,
            interrupted=False, mode="hot-standby") -> dict:
    return {"result": 0, "arguments": {"pid": 1, "high-availability": [{
        "ha-mode": mode,
        "ha-servers": {
            "local": {"role": "primary", "scopes": list(scopes), "state": local_state},
            "remote": {"role": "standby", "last-state": remote_state, "in-touch": in_touch, "age": 0,
                       "communication-interrupted": interrupted, "last-scopes": []},
        }}]}}


def test_ha_verdict_wants_both_in_hot_standby_in_touch_and_the_primary_serving():
    ok, seen = pairs.kea_ha_verdict(_status())
    assert ok and "local hot-standby" in seen and "remote hot-standby" in seen
    for bad in (_status(remote_state="ready"), _status(remote_state="syncing"), _status(in_touch=False),
                _status(interrupted=True), _status(local_state="partner-down"), _status(scopes=()),
                _status(mode="load-balancing")):
        assert pairs.kea_ha_verdict(bad)[0] is False, bad
    ok, seen = pairs.kea_ha_verdict({"result": 1, "text": "unknown command"})
    assert not ok and "no HA status" in seen


def test_kea_state_is_the_last_transition_of_the_log():
    log = ("2026-12-05 05:41:51.279 INFO  [kea-dhcp4.ha-hooks/1.2] HA_SERVICE_STARTED started high availability "
           "service in hot-standby mode as primary server\n"
           "2026-12-05 05:41:53.284 INFO  [kea-dhcp4.ha-hooks/1.2] HA_STATE_TRANSITION server transitions from "
           "WAITING to SYNCING state, partner state is WAITING\n"
           "2026-12-05 05:41:53.285 INFO  [kea-dhcp4.ha-hooks/1.2] HA_STATE_TRANSITION server transitions from "
           "SYNCING to READY state, partner state is WAITING\n")
    assert pairs.KeaHaPair._state(log) == "READY"
    assert pairs.KeaHaPair._state("") is None
    later = log + ("2026-12-05 05:41:55.289 INFO  [kea-dhcp4.ha-hooks/1.3] HA_STATE_TRANSITION server1: server "
                   "transitions from READY to HOT-STANDBY state, partner state is READY\n")
    assert pairs.KeaHaPair._state(later) == pairs.KEA_HOT
    assert pairs.KeaHaPair.MOVE.findall(later)[-1] == "transitions from READY to HOT-STANDBY"


def test_kea_lease_count_reads_the_last_line_per_address(tmp_path):
    now = 1_800_000_000
    f = tmp_path / "leases4.csv"
    f.write_text(KEA_LEASE4_HEADER + "\n"
                 f"10.8.0.10,02:be:00:00:00:01,,3600,{now + 3600},1,0,0,,0,\n"
                 f"10.8.0.11,02:be:00:00:00:02,,3600,{now + 3600},1,0,0,,0,\n"
                 # released later: the last line for .11 is state 0 with expire now-1 (expired)
                 f"10.8.0.11,02:be:00:00:00:02,,0,{now - 1},1,0,0,,0,\n"
                 f"10.8.0.12,02:be:00:00:00:03,,3600,{now + 3600},1,0,0,,1,\n"  # declined
                 f"10.8.0.13,02:be:00:00:00:04,,3600,{now - 5},1,0,0,,0,\n"  # expired
                 f"10.8.0.14,02:be:00:00:00:05,,3600,{now + 3600},1,0,0,,0,\n"
                 "10.8.0.15,02:be:00:0")  # a line being written
    assert kea_lease_count(f, now=now) == 2
    assert kea_lease_count(tmp_path / "absent.csv", now=now) == 0


def test_cnrd_bench_servers_log_no_lease_lines_unless_asked(monkeypatch):
    monkeypatch.delenv("CNRD_BENCH_SERVER_EXTRA", raising=False)
    monkeypatch.setattr(RUN, "cnrd_lease_lines", False)
    assert cnrd_server_lines().splitlines() == ["log-settings = no-success-messages"]
    assert cnrd_server_lines("commit-thread = true").splitlines() == [
        "log-settings = no-success-messages", "commit-thread = true"]
    monkeypatch.setattr(RUN, "cnrd_lease_lines", True)
    assert "log-settings" not in cnrd_server_lines()
    # a hand-written log-settings replaces the bench's: the key appears once
    monkeypatch.setattr(RUN, "cnrd_lease_lines", False)
    monkeypatch.setenv("CNRD_BENCH_SERVER_EXTRA", "log-settings = failover-detail\\ncommit-thread = true")
    lines = cnrd_server_lines().splitlines()
    assert lines == ["log-settings = failover-detail", "commit-thread = true"]


def test_cnrd_loads_the_bench_server_lines(monkeypatch, tmp_path):
    monkeypatch.delenv("CNRD_BENCH_SERVER_EXTRA", raising=False)
    monkeypatch.setattr(RUN, "cnrd_lease_lines", False)
    # the real cnrd loader accepts the bench's [server] and reads the setting
    from cnrd.config import loads
    from tests.integration.cnrd_proc import config

    text = config("eth0", f"[scope s]\nsubnet = {THROUGHPUT_NET.subnet}\n"
                          f"ranges = {THROUGHPUT_NET.pool_first}-{THROUGHPUT_NET.pool_last}\n",
                  cnrd_server_lines()).replace("@DATA@", str(tmp_path))
    cfg = loads(text)
    assert "no-success-messages" in cfg.server.log_settings


def _ha_pair(tmp_path: Path) -> pairs.KeaHaPair:
    srv = pairs.KeaHaPair(THROUGHPUT_NET)
    srv.dir = tmp_path
    return srv


def test_kea_ha_config_is_hot_standby_multithreaded_with_its_own_listener(tmp_path, monkeypatch):
    monkeypatch.setattr(RUN, "cores", 1)
    srv = _ha_pair(tmp_path)
    conf = json.loads(srv._conf("standby", "eth9", tmp_path / "l.csv", tmp_path / "s.sock"))["Dhcp4"]
    assert conf["multi-threading"]["enable-multi-threading"] is True
    assert conf["lease-database"]["type"] == "memfile" and conf["lease-database"]["persist"] is True
    assert conf["control-socket"] == {"socket-type": "unix", "socket-name": str(tmp_path / "s.sock")}
    libs = [Path(h["library"]).name for h in conf["hooks-libraries"]]
    assert libs == ["libdhcp_lease_cmds.so", "libdhcp_ha.so"]
    ha = conf["hooks-libraries"][1]["parameters"]["high-availability"][0]
    assert ha["this-server-name"] == "standby" and ha["mode"] == "hot-standby"
    mt = ha["multi-threading"]
    assert mt["enable-multi-threading"] and mt["http-dedicated-listener"]
    assert mt["http-listener-threads"] >= 1 and mt["http-client-threads"] >= 1
    roles = {p["name"]: (p["role"], p["url"]) for p in ha["peers"]}
    assert roles == {"primary": ("primary", f"http://{pairs.MAIN_FO}:{pairs.KEA_HA_PORT}/"),
                     "standby": ("standby", f"http://{pairs.BACKUP_FO}:{pairs.KEA_HA_PORT}/")}
    # the same subnet id and pool as the single Kea, and the HA state lines logged
    assert conf["subnet4"][0]["id"] == 1
    assert {"name": "kea-dhcp4.ha-hooks", "severity": "INFO",
            "output_options": [{"output": "stdout"}]} in conf["loggers"]
    monkeypatch.setattr(RUN, "cores", 2)
    assert json.loads(srv._conf("primary", "eth9", tmp_path / "l.csv", tmp_path / "p.sock"))[
        "Dhcp4"]["multi-threading"]["thread-pool-size"] == 2


@pytest.mark.skipif(shutil.which("kea-dhcp4") is None or not pairs.KEA_HOOKS.is_dir(),
                    reason="kea-dhcp4 2.2 with its HA hook (kea-dhcp4-server) not installed")
def test_kea_itself_accepts_both_ha_configs(tmp_path):
    srv = _ha_pair(tmp_path)
    env = {**os.environ, "KEA_PIDFILE_DIR": str(tmp_path), "KEA_LOCKFILE_DIR": str(tmp_path)}
    for me in ("primary", "standby"):
        f = tmp_path / f"{me}.conf"
        f.write_text(srv._conf(me, "lo", tmp_path / f"{me}.csv", tmp_path / f"{me}.sock"))
        cp = subprocess.run(["kea-dhcp4", "-t", str(f)], capture_output=True, text=True, env=env, timeout=60)
        assert cp.returncode == 0, (me, cp.stdout, cp.stderr)


def test_single_kea_threads_follow_the_cores(monkeypatch):
    from bench.servers import KeaServer

    monkeypatch.setattr(RUN, "cores", 1)
    assert KeaServer(THROUGHPUT_NET).multi_threading() == {"enable-multi-threading": False}
    monkeypatch.setattr(RUN, "cores", 2)
    mt = KeaServer(THROUGHPUT_NET).multi_threading()
    assert mt["enable-multi-threading"] is True and mt["thread-pool-size"] == 2


def test_the_table_compares_the_cnrd_pair_with_the_kea_ha_pair():
    def m(dora: float, full: float) -> dict:
        return {"metrics": {"dora_per_s": dora, "recovery_full_s": full}, "errors": []}

    result = {"servers": {"cnrd-pair": m(6000.0, 10.0), "kea-ha-pair": m(5000.0, 40.0)},
              "settings": {"startup_sizes": [], "mode": "quick", "duration": 10},
              "machine": {"nproc": 2, "kernel": "k", "cpu": "c", "mem_kb": 1024,
                          "versions": {"cnrd": "x", "isc": "y", "kea": "z", "perfdhcp": "p"}},
              "runtime_s": 1.0}
    text = table(result)
    assert "cnrd-pair/kea-ha-pair" in text
    row = next(line for line in text.splitlines() if line.startswith("DORA/s at saturation"))
    assert row.split()[-2] == "1.20"
    row = next(line for line in text.splitlines() if line.startswith("  backup holds every lease after"))
    assert "0.25" in row


def _args(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *argv, "--out", "/nonexistent/x.json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cores_must_fit_the_machine_and_keep_pinning():
    n = len(os.sched_getaffinity(0))
    for argv in (["--cores", str(n + 1)], ["--cores", "0"], ["--cores", "2", "--no-pin"],
                 ["--recovery-leases", "0"]):
        cp = _args(*argv)
        assert cp.returncode == 2 and ("--cores" in cp.stderr or "--recovery-leases" in cp.stderr), (argv, cp.stderr)


def test_parse_args_takes_the_new_options():
    from bench.run import parse_args

    a = parse_args(["--servers", "cnrd-pair,kea-ha-pair", "--cnrd-lease-lines", "--recovery-leases", "100000"])
    assert a.server_list == ["cnrd-pair", "kea-ha-pair"] and a.cnrd_lease_lines and a.recovery_leases == 100000
    assert a.cores == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_pinning_gives_the_server_the_last_n_cpus():
    code = ("import os, bench.run as r\n"
            "cpus = sorted(os.sched_getaffinity(0))\n"
            "assert r.pin_load(1) and r.SERVER_CPUS == {cpus[-1]}\n"
            "assert sorted(os.sched_getaffinity(0)) == cpus[:-1]\n"
            "os.sched_setaffinity(0, cpus)\n"
            "assert r.pin_load(len(cpus)) and r.SERVER_CPUS == set(cpus)\n"
            "assert sorted(os.sched_getaffinity(0)) == cpus  # the load shares every CPU\n"
            "assert not r.pin_load(len(cpus) + 1)\n")
    cp = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr


def test_kea_command_speaks_json_over_the_unix_socket(tmp_path):
    import socket
    import threading

    path = tmp_path / "k.sock"
    got: list[dict] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            got.append(json.loads(conn.recv(65536)))
            body = json.dumps(_status()).encode()
            conn.sendall(body[:40])
            time.sleep(0.05)
            conn.sendall(body[40:])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        answer = pairs.kea_command(path, "status-get", timeout=5)
    finally:
        t.join(5)
        srv.close()
    assert got == [{"command": "status-get"}]
    assert pairs.kea_ha_verdict(answer)[0]
