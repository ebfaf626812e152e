"""cnrctl backup, restore and leases export against the real twistd cnrd while perfdhcp loads it.

    srv (twistd cnrd, its API on 127.0.0.1:8067; a /health poller) ── perf 10.77.0.2 (Kea perfdhcp as a relay)

While perfdhcp makes new leases, the test reads the API's leased set
(``cnrctl leases export --format json --state leased``), takes ``cnrctl
backup FILE`` and reads the set again.  The copy must hold every lease of
the first read (each was ACKed, so durable: the backup applies the journal)
and nothing the second read lacks.  A poller in the server's namespace
asks ``/health`` every 10 ms: the longest answer while the backup ran is
the reactor's longest stall then (reported, compared with the load alone;
no timed assertion).  ``cnrctl restore`` is refused while cnrd runs; once
it is stopped the restore puts the copy in place and prints the
failover-recover guidance; cnrd started again serves exactly the copy's
leases.  The CSV export parses with Python's csv module under Kea's lease4
header and names the same leases as the JSON one.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
from pathlib import Path

from tests.integration.cnrd_proc import CnrdProcess, config
from tests.integration.lab import perfdhcp, random_mac_base, read_log, wait_for

CNRCTL = str(Path(sys.executable).with_name("cnrctl"))
KEA_HEADER = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context"

SCOPES = """
[scope relayed]
subnet = 10.77.0.0/16
ranges = 10.77.1.0-10.77.40.255
"""

# Runs in the server's namespace: GET /health every INTERVAL s for at most
# SECONDS s and COUNT requests; one line per answer: "start-time duration".
POLLER = r"""
import sys, time, urllib.request
url, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
end = time.time() + seconds
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with open(out, "w") as f:
    for _ in range(100000):
        if time.time() >= end:
            break
        t0 = time.time()
        try:
            opener.open(url, timeout=30).read()
        except OSError as e:
            f.write(f"{t0:.6f} error {e}\n")
        else:
            f.write(f"{t0:.6f} {time.time() - t0:.6f}\n")
        f.flush()
        time.sleep(0.01)
"""


def cnrctl(proc: CnrdProcess, *args: str, check: bool = True):
    r = proc.ns.run(CNRCTL, "--config", str(proc.config_path), *args, check=False)
    if check:
        assert r.returncode == 0, f"cnrctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def leased_now(proc: CnrdProcess) -> dict[str, str]:
    """address -> hardware address of every leased address, as the API says now."""
    got = json.loads(cnrctl(proc, "leases", "export", "--format", "json", "--state", "leased").stdout)
    return {l["address"]: l["hardware-address"] for l in got}


def test_backup_while_loaded_restore_offline_and_export(lab):
    assert Path(CNRCTL).exists(), f"{CNRCTL} is missing: pip install -e . installs the cnrctl console script"
    srv, perf = lab.netns("srv"), lab.netns("perf")
    srv_if, _ = lab.link(srv, perf, a_addr="10.77.0.1/16", b_addr="10.77.0.2/16")
    cnrd = CnrdProcess(srv, config(srv_if, SCOPES)).start()
    wait_for(lambda: cnrctl(cnrd, "ready", check=False).returncode == 0, 10, what="the API to answer")

    samples = lab.path("health.txt")
    seconds = 14.0
    poller = srv.popen(sys.executable, "-c", POLLER, "http://127.0.0.1:8067/api/v1/health", str(seconds),
                       str(samples), name="poller")
    load: dict[str, object] = {}

    def run_load() -> None:
        load["result"] = perfdhcp(perf, "10.77.0.2", "10.77.0.1", rate=250, duration=10, clients=5000,
                                  mac_base=random_mac_base())

    loader = threading.Thread(target=run_load, daemon=True)
    loader.start()
    wait_for(lambda: len(leased_now(cnrd)) >= 300, 20, what="perfdhcp to hold 300 leases")

    copy = lab.path("leases.mdb")
    before = leased_now(cnrd)
    b_start = time.time()
    out = cnrctl(cnrd, "backup", str(copy)).stdout
    b_end = time.time()
    after = leased_now(cnrd)
    print(f"--- cnrctl backup (during load) ---\n{out}", end="")
    assert out.startswith("backup: ") and str(copy) in out

    loader.join(60)
    assert not loader.is_alive(), "perfdhcp did not finish"
    assert len(after) > len(before), "the load did not go on across the backup"
    poller.wait(seconds + 30)

    # The copy, read by the store's own code: every lease leased before the
    # backup, nothing that was not leased after it.
    info = json.loads(srv.run(sys.executable, "-m", "cnrd.leases.backup", "info", str(copy),
                              env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])}).stdout)
    restore_refused = cnrctl(cnrd, "restore", str(copy), check=False)
    assert restore_refused.returncode == 1
    assert "open in process" in restore_refused.stderr and "stop cnrd before a restore" in restore_refused.stderr

    final = leased_now(cnrd)
    cnrd.stop()
    restored = cnrctl(cnrd, "restore", str(copy))
    print(f"--- cnrctl restore ---\n{restored.stdout}", end="")
    assert f"restored {info['leases']} lease records ({info['leased']} leased)" in restored.stdout
    assert "failover-recover" in restored.stdout and "UPDREQALL" in restored.stdout
    in_copy = cnrd.leased()
    assert len(in_copy) == info["leased"]
    missing = {a: m for a, m in before.items() if in_copy.get(a) != m}
    assert not missing, f"{len(missing)} leases ACKed before the backup are not in it: {sorted(missing)[:5]}"
    extra = {a: m for a, m in in_copy.items() if after.get(a) != m}
    assert not extra, f"the copy holds leases the server did not: {sorted(extra)[:5]}"
    assert len(final) > len(in_copy)  # the store went on past the copy, and the restore put the copy back

    cnrd.start()
    wait_for(lambda: cnrctl(cnrd, "ready", check=False).returncode == 0, 10, what="the API after the restore")
    assert leased_now(cnrd) == in_copy

    # Export: Kea's CSV header, parsed by the csv module, the same leases as JSON.
    text = cnrctl(cnrd, "leases", "export", "--format", "csv").stdout
    assert text.splitlines()[0] == KEA_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(None not in r and len(r) == 11 for r in rows)
    assert {r["address"]: r["hwaddr"] for r in rows if r["state"] == "0"} == in_copy
    assert all(r["subnet_id"] == "1" and int(r["expire"]) > int(r["valid_lifetime"]) > 0 for r in rows)

    # The reactor while the backup ran, as /health answers saw it.
    points = []
    for line in samples.read_text().splitlines():
        t0, dt = line.split()
        assert dt != "error", line
        points.append((float(t0), float(dt)))
    during = [dt for t0, dt in points if b_start <= t0 <= b_end or t0 <= b_start <= t0 + dt]
    load_only = [dt for t0, dt in points if not (b_start - 0.5 <= t0 <= b_end + 0.5)]
    assert during and load_only, f"no /health samples around the backup ({len(points)} in all)"
    res = load["result"]
    print(f"--- figures ---\nleases before/in copy/after/final: {len(before)}/{len(in_copy)}/{len(after)}/"
          f"{len(final)}; copy {info}\nbackup took {b_end - b_start:.3f} s (cnrctl, whole); "
          f"/health samples during it: {len(during)}, longest {max(during) * 1000:.1f} ms; "
          f"outside it under the same load: {len(load_only)}, longest {max(load_only) * 1000:.1f} ms\n"
          f"perfdhcp: {res}\n", end="")
    assert "Traceback" not in read_log(cnrd.proc)
