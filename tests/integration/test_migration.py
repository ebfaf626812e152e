"""Moving from ISC dhcpd to cnrd with real servers and clients, in namespaces.

    lan (bridge) ── srv/main 10.98.0.1  (ISC dhcpd)
                 ── backup   10.98.0.2  (cnrd, in the failover path)
                 ── relay    10.98.0.3  (perfdhcp: many clients at once)
                 ── c1..c3              (dhclient)

Two paths, as docs/migration.md gives them:

* offline: ISC's lease file, written by dhcpd for real clients, goes through
  ``cnrd-import leases`` into a stopped cnrd made from ``cnrd-import config``
  of the same dhcpd.conf; cnrd then serves those clients their addresses;
* by failover: a cnrd backup is paired with the running ISC primary, its
  RECOVER copies every lease (UPDREQALL), then the roles are swapped as
  CNR 7.2's "Repairing Partners to Their Original Roles" does (ISC stopped,
  cnrd the main with failover off) and the clients renew from cnrd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cnrd_proc import REPO, CnrdProcess
from tests.integration.lab import (
    dhclient,
    dhclient_release,
    dhclient_renew,
    isc_dhcpd,
    isc_lease_states,
    perfdhcp,
    random_mac_base,
    read_log,
    udhcpc,
    wait_for,
)
from tests.integration.test_failover_pair import state_lines

ISC_STANDALONE = """
authoritative;
default-lease-time 3600; max-lease-time 3600;
option domain-name-servers 10.98.0.1;
subnet 10.98.0.0 netmask 255.255.255.0 {
  option routers 10.98.0.1;
  pool { range 10.98.0.10 10.98.0.250; }
}
"""

ISC_PRIMARY = """
authoritative;
default-lease-time 3600; max-lease-time 3600;
option domain-name-servers 10.98.0.1;
failover peer "examplepair" {
  primary;
  address 10.98.0.1; port 647; peer address 10.98.0.2; peer port 647;
  max-response-delay 6; max-unacked-updates 10; load balance max seconds 3;
  mclt 30; split 256;
}
subnet 10.98.0.0 netmask 255.255.255.0 {
  option routers 10.98.0.1;
  pool { failover peer "examplepair"; range 10.98.0.10 10.98.0.250; }
}
"""


def cnrd_import(*args: str) -> subprocess.CompletedProcess[str]:
    """``cnrd-import`` as the console script runs it (its module's main)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "cnrd.migrate.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def convert(lab, conf_text: str, name: str, iface: str) -> str:
    """The INI ``cnrd-import config`` makes of a dhcpd.conf, with @DATA@ for CnrdProcess to fill in."""
    conf = lab.path(f"{name}-dhcpd.conf")
    conf.write_text(conf_text)
    res = cnrd_import("config", str(conf), "--name", name, "--data-dir", "@DATA@", "--interfaces", iface)
    assert res.returncode == 0, res.stderr
    return res.stdout


def active(lease_file: Path) -> dict[str, str]:
    """address -> MAC of the leases ISC's file has active (last block of each address)."""
    text = lease_file.read_text()
    macs: dict[str, str] = {}
    for addr, state in isc_lease_states(lease_file).items():
        if state == "active":
            block = text.rsplit(f"lease {addr} {{", 1)[1].split("}", 1)[0]
            macs[addr] = block.split("hardware ethernet ", 1)[1].split(";", 1)[0]
    return macs


@pytest.fixture
def net(lab):
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    srv, bk, rl = lab.netns("main"), lab.netns("backup"), lab.netns("relay")
    _, sif = lab.link(lan, srv, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, bk, a_bridge=br, b_addr="10.98.0.2/24")
    lab.link(lan, rl, a_bridge=br, b_addr="10.98.0.3/24")
    clients = []
    for i in range(3):
        c = lab.netns(f"cli{i}")
        _, cif = lab.link(lan, c, a_bridge=br)
        clients.append((c, cif))
    return lab, srv, sif, bk, bif, rl, clients


def give_isc_clients(rl, clients, n_perf: int, rate: int = 20) -> dict[str, str]:
    """Real clients on ISC: dhclient on each client namespace, udhcpc on the last, perfdhcp through the relay."""
    got = {}
    for c, cif in clients[:-1]:
        lease = dhclient(c, cif)
        assert lease.server == "10.98.0.1"
        got[lease.address] = "dhclient"
    c, cif = clients[-1]
    lease = udhcpc(c, cif)
    got[lease.address] = "udhcpc"
    res = perfdhcp(rl, "10.98.0.3", "10.98.0.1", rate=rate, duration=3, clients=n_perf, mac_base=random_mac_base())
    assert res.do.received > 0
    return got


def test_import_leases_dhcpd_wrote_then_serve_them(net):
    lab, srv, sif, _, _, rl, clients = net
    isc = isc_dhcpd(srv, ISC_STANDALONE, sif)
    give_isc_clients(rl, clients, n_perf=30)
    # one client lets its address go: dhcpd appends a later block for it, no longer active
    c1, c1if = clients[1]
    released = dhclient_release(c1, c1if).released
    wait_for(lambda: isc_lease_states(isc.lease_file).get(released) not in (None, "active"), 10,
             what="the release in dhcpd's lease file")
    srv.stop(isc, signal.SIGTERM)
    held = active(isc.lease_file)
    assert released not in held
    assert len(held) >= 10, held  # the three real clients and most of perfdhcp's
    blocks = isc.lease_file.read_text().count("\nlease ")
    ours = CnrdProcess(srv, convert(lab, ISC_STANDALONE, "cnrd", sif), name="cnrd")
    t0 = time.monotonic()
    res = cnrd_import("leases", "--config", str(ours.config_path), "--isc", str(isc.lease_file), "--json")
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    print(f"ISC dhcpd wrote {blocks} lease blocks for {len(isc_lease_states(isc.lease_file))} addresses, "
          f"{len(held)} active; cnrd-import: imported {report['imported']}, superseded {report['superseded']}, "
          f"skipped {report['skipped']} in {took:.2f} s")
    assert report["imported"] == len(held)
    assert report["skipped"]["malformed"] == 0 and report["skipped"]["outside-scope"] == 0
    # the released address: its earlier active block superseded, the current one not leased
    assert report["superseded"] >= 1 and report["skipped"]["not-leased"] == 1
    assert [r["address"] for r in report["records"]] == [released]
    ours.start()
    assert ours.leased() == held  # every active lease, each with its client's MAC
    # while it runs, the store is refused
    again = cnrd_import("leases", "--config", str(ours.config_path), "--isc", str(isc.lease_file))
    assert again.returncode == 1 and "is open in process" in again.stderr
    # a dhclient that ISC served gets the same address from cnrd
    c, cif = clients[0]
    before = next(a for a, what in give_names(held, clients).items() if what == "c0")
    renewed = dhclient_renew(c, cif)
    # ISC is stopped and cnrd has its address: the ACK is cnrd's, and its log says so
    assert renewed.address == before and renewed.server == "10.98.0.1"
    assert any("DHCPACK" in line and before in line for line in ours.log().splitlines())


def give_names(held: dict[str, str], clients) -> dict[str, str]:
    """address -> "cN" for the client namespaces' own addresses (by their MACs)."""
    macs = {c.mac(cif).lower(): f"c{i}" for i, (c, cif) in enumerate(clients)}
    return {a: macs[m.lower()] for a, m in held.items() if m.lower() in macs}


def test_migrate_by_failover_then_swap_roles(net):
    lab, srv, sif, bk, bif, rl, clients = net
    t: dict[str, float] = {"start": time.monotonic()}

    def mark(step: str) -> None:
        t[step] = time.monotonic()
        print(f"{t[step] - t['start']:7.2f} s  {step}")

    isc = isc_dhcpd(srv, ISC_STANDALONE, sif)
    give_isc_clients(rl, clients, n_perf=200, rate=100)
    held = active(isc.lease_file)
    mark(f"ISC dhcpd alone holds {len(held)} active leases from real clients")
    assert len(held) >= 10
    # Step 1: dhcpd gets the failover peer declaration (one restart, lease file kept).
    srv.stop(isc, signal.SIGTERM)
    isc.conf_file.write_text("ping-check false;\n" + ISC_PRIMARY)
    isc2 = srv.popen("dhcpd", "-4", "-f", "-d", "-cf", isc.conf_file, "-lf", isc.lease_file,
                     "-pf", lab.path("dhcpd-primary.pid"), sif, name="dhcpd")
    wait_for(lambda: "Server starting service." in read_log(isc2), 10, what="dhcpd with its failover peer")
    mark("ISC dhcpd restarted as failover primary")
    # Step 2: a cnrd backup made from the same dhcpd.conf, with an empty store.
    ours = CnrdProcess(bk, convert(lab, ISC_PRIMARY, "backup", bif), name="backup").start()
    mark("cnrd backup serving (empty store)")
    seen: dict[str, float] = {}

    def progress() -> bool:
        lines = state_lines(ours)
        for st in ("RECOVER", "RECOVER-WAIT", "RECOVER-DONE", "NORMAL"):
            if st not in seen and any(f"-> {st} " in l for l in lines):
                seen[st] = time.monotonic()
                mark(f"cnrd backup -> {st}")
        if "all" not in seen and set(held) <= set(ours.leased()):
            seen["all"] = time.monotonic()
            mark(f"cnrd backup's store holds all {len(held)} leases")
        return "NORMAL" in seen and "all" in seen and "peer moves from recover-done to normal" in read_log(isc2)

    wait_for(progress, 120, interval=0.1, what="cnrd backup NORMAL with every lease")
    assert ours.leased() == held  # each address with its client's MAC, nothing extra
    assert "RECOVER" in seen  # a backup with an empty store recovers from its partner
    print(f"RECOVER: {len(held)} leases in the store {seen['all'] - seen['RECOVER']:.2f} s after entering it; "
          f"states seen: {', '.join(s for s in seen if s != 'all')}")
    # Step 3: the role swap (CNR 7.2, "Repairing Partners to Their Original Roles", step 3):
    # stop both, make cnrd the main with failover off, start it: it serves the whole pool.
    srv.stop(isc2, signal.SIGTERM)
    ours.stop()
    mark("ISC dhcpd and cnrd stopped")
    text = ours.config_path.read_text()
    text = text.replace("main = 10.98.0.1", "main = 10.98.0.2").replace("backup = 10.98.0.2", "backup = 10.98.0.1")
    text = text.replace("[failover-pair examplepair]", "[failover-pair examplepair]\nfailover = false")
    ours.config_path.write_text(text)
    ours.start()
    mark("cnrd restarted as main, failover off")
    assert ours.leased() == held
    names = give_names(held, clients)
    for i, (c, cif) in enumerate(clients[:-1]):
        mine = next(a for a, n in names.items() if n == f"c{i}")
        lease = dhclient_renew(c, cif)
        assert (lease.address, lease.server) == (mine, "10.98.0.2")
    mark(f"{len(clients) - 1} dhclients renewed their addresses from cnrd")
    # a new client gets an address nobody held
    c, cif = clients[-1]
    new = dhclient(c, cif)
    assert new.server == "10.98.0.2"
    # never an address another client holds
    assert ours.leased()[new.address].lower() == c.mac(cif).lower()
    assert all(m.lower() == c.mac(cif).lower() for a, m in held.items() if a == new.address)
    mark("a client new to cnrd got an address")


KEA_INI = """
[server]
name = fromkea
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.199
"""


def test_import_leases_kea_wrote_then_serve_them(net):
    lab, srv, sif, _, _, rl, clients = net
    csv = lab.path("kea-leases4.csv")
    conf = lab.path("kea-dhcp4.json")
    conf.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": [sif], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "name": str(csv), "persist": True, "lfc-interval": 0},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": "10.98.0.0/24", "pools": [{"pool": "10.98.0.100 - 10.98.0.199"}]}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}],
    }}))
    env = {"KEA_PIDFILE_DIR": str(lab.dir), "KEA_LOCKFILE_DIR": str(lab.dir)}
    srv.run("kea-dhcp4", "-t", conf, env=env)
    kea = srv.popen("kea-dhcp4", "-c", conf, env=env, name="kea-dhcp4")
    wait_for(lambda: "DHCP4_STARTED" in read_log(kea), 15, what="kea-dhcp4 to start")
    for c, cif in clients[:-1]:
        assert dhclient(c, cif).server == "10.98.0.1"
    perfdhcp(rl, "10.98.0.3", "10.98.0.1", rate=20, duration=3, clients=30, mac_base=random_mac_base())
    srv.stop(kea, signal.SIGTERM)
    rows = [r.split(",") for r in csv.read_text().splitlines()[1:] if r]
    current = {r[0]: r for r in rows}  # the last row of an address is current
    held = {a: r[1] for a, r in current.items() if r[3] != "0" and r[9] == "0"}
    assert len(held) >= 10, held
    ours = CnrdProcess(srv, KEA_INI.format(iface=sif), name="fromkea")
    res = cnrd_import("leases", "--config", str(ours.config_path), "--kea", str(csv), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    print(f"kea-dhcp4 wrote {len(rows)} rows for {len(current)} addresses, {len(held)} leased; cnrd-import: "
          f"imported {report['imported']}, superseded {report['superseded']}, skipped {report['skipped']}")
    assert report["imported"] == len(held) and report["skipped"]["malformed"] == 0
    ours.start()
    assert ours.leased() == held
    c, cif = clients[0]
    mine = next(a for a, m in held.items() if m.lower() == c.mac(cif).lower())
    assert dhclient_renew(c, cif).address == mine
