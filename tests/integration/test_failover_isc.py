"""cnrd paired with a real ISC dhcpd 4.4 in either role, in namespaces.

The ISC side is judged by its own log lines ("I move from X to normal",
"peer moves from X to normal") and its lease file; the cnrd side by its log
and its lease store.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import dhclient, isc_dhcpd, isc_lease_states, read_log, wait_for
from tests.integration.test_failover_pair import PAIR, reached, state_lines

ISC = """
authoritative;
default-lease-time 3600; max-lease-time 3600;
failover peer "examplepair" {{
  {role};
  address {me}; port 647; peer address {peer}; peer port 647;
  max-response-delay 6; max-unacked-updates 10; load balance max seconds 3;
  {extra}
}}
subnet 10.98.0.0 netmask 255.255.255.0 {{
  pool {{ failover peer "examplepair"; range 10.98.0.100 10.98.0.149; }}
}}
"""


class Isc:
    """An ISC dhcpd that can be killed and restarted on the same lease file."""

    def __init__(self, ns, conf: str, iface: str) -> None:
        self.ns, self.iface = ns, iface
        self.proc = isc_dhcpd(ns, conf, iface)
        self.conf, self.leases = self.proc.conf_file, self.proc.lease_file
        self.logs = [self.proc]
        self.restarts = 0

    def log(self) -> str:
        return "".join(read_log(p) for p in self.logs)

    def moves_to(self, state: str) -> int:
        return sum(1 for l in self.log().splitlines() if "I move from" in l and l.rstrip().endswith(f"to {state}"))

    def kill9(self) -> None:
        self.ns.stop(self.proc, signal.SIGKILL)

    def start(self) -> None:
        self.restarts += 1
        pid = self.ns.lab.path(f"dhcpd-restart-{self.restarts}.pid")
        self.proc = self.ns.popen("dhcpd", "-4", "-f", "-d", "-cf", self.conf, "-lf", self.leases,
                                  "-pf", pid, self.iface, name="dhcpd")
        self.logs.append(self.proc)
        wait_for(lambda: "Server starting service." in read_log(self.proc), 10, what="dhcpd to restart")


@pytest.fixture
def net(lab):
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b, c = lab.netns("main"), lab.netns("backup"), lab.netns("cli")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
    _, cif = lab.link(lan, c, a_bridge=br)
    return lab, m, mif, b, bif, c, cif


def test_cnrd_main_with_isc_secondary(net):
    lab, m, mif, b, bif, c, cif = net
    t0 = time.monotonic()
    ours = CnrdProcess(m, PAIR.format(name="main", iface=mif), name="main").start()
    isc = Isc(b, ISC.format(role="secondary", me="10.98.0.2", peer="10.98.0.1", extra=""), bif)
    wait_for(lambda: reached(ours, "NORMAL") and isc.moves_to("normal") >= 1
             and "peer moves from recover-done to normal" in isc.log(), 60, what="both NORMAL")
    print(f"cnrd main + ISC secondary NORMAL after {time.monotonic() - t0:.1f} s")
    # ISC holds the backup's share handed over by cnrd
    wait_for(lambda: list(isc_lease_states(isc.leases).values()).count("backup") >= 5, 10,
             what="5 backup addresses in ISC's lease file")
    lease = dhclient(c, cif)
    assert lease.server == "10.98.0.1"
    wait_for(lambda: isc_lease_states(isc.leases).get(lease.address) == "active", 10,
             what="the lease active in ISC's lease file")
    # ISC restarts (lease file intact): cnrd goes COMMUNICATIONS-INTERRUPTED and back
    seen = len(state_lines(ours))
    isc.kill9()
    wait_for(lambda: reached(ours, "COMMUNICATIONS-INTERRUPTED", seen), 15, what="cnrd COMM-INT")
    seen = len(state_lines(ours))
    isc.start()
    wait_for(lambda: reached(ours, "NORMAL", seen), 30, what="cnrd NORMAL again")
    # cnrd restarts: ISC goes communications-interrupted and back to normal
    before = isc.moves_to("normal")
    ours.kill9()
    wait_for(lambda: isc.moves_to("communications-interrupted") >= 1, 15, what="ISC comm-interrupted")
    ours.start()
    wait_for(lambda: isc.moves_to("normal") > before and reached(ours, "NORMAL"), 30, what="both NORMAL again")
    assert lease.address in ours.leased()


def test_isc_primary_with_cnrd_backup(net):
    lab, m, mif, b, bif, c, cif = net
    t0 = time.monotonic()
    isc = Isc(m, ISC.format(role="primary", me="10.98.0.1", peer="10.98.0.2", extra="mclt 30; split 256;"), mif)
    ours = CnrdProcess(b, PAIR.format(name="backup", iface=bif), name="backup").start()
    wait_for(lambda: reached(ours, "NORMAL") and isc.moves_to("normal") >= 1
             and "peer moves from recover-done to normal" in isc.log(), 60, what="both NORMAL")
    print(f"ISC primary + cnrd backup NORMAL after {time.monotonic() - t0:.1f} s")
    wait_for(lambda: sum(l.state.name == "BACKUP" for l in ours.leases()) >= 5, 15,
             what="backup addresses from ISC in cnrd's store")
    lease = dhclient(c, cif)
    assert lease.server == "10.98.0.1"
    wait_for(lambda: lease.address in ours.leased(), 10, what="ISC's lease in cnrd's store")
    # cnrd restarts: ISC goes communications-interrupted and back to normal
    before = isc.moves_to("normal")
    ours.kill9()
    wait_for(lambda: isc.moves_to("communications-interrupted") >= 1, 15, what="ISC comm-interrupted")
    ours.start()
    wait_for(lambda: isc.moves_to("normal") > before and reached(ours, "NORMAL"), 30, what="both NORMAL again")
    # ISC restarts: cnrd goes COMMUNICATIONS-INTERRUPTED and back
    seen = len(state_lines(ours))
    isc.kill9()
    wait_for(lambda: reached(ours, "COMMUNICATIONS-INTERRUPTED", seen), 15, what="cnrd COMM-INT")
    seen = len(state_lines(ours))
    isc.start()
    wait_for(lambda: reached(ours, "NORMAL", seen), 30, what="cnrd NORMAL again")
    assert lease.address in ours.leased()
