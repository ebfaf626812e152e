"""A cnrd main and a cnrd backup, real processes in namespaces, with a real client.

    lan (bridge) ── main 10.98.0.1   (twistd cnrd, etc/main.ini's pair section)
                 ── backup 10.98.0.2
                 ── cli (dhclient)
"""

from __future__ import annotations

import time

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import dhclient, wait_for

PAIR = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149

[failover-pair examplepair]
main = 10.98.0.1
backup = 10.98.0.2
failover = true
mclt = 30
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""


def state_lines(proc: CnrdProcess) -> list[str]:
    return [l.split("state ", 1)[1] for l in proc.log().splitlines() if "failover pair examplepair: state" in l]


def reached(proc: CnrdProcess, state: str, after: int = 0) -> bool:
    return any(f"-> {state} " in l for l in state_lines(proc)[after:])


@pytest.fixture
def pair(lab):
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b, c = lab.netns("main"), lab.netns("backup"), lab.netns("cli")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
    main = CnrdProcess(m, PAIR.format(name="main", iface=mif), name="main")
    backup = CnrdProcess(b, PAIR.format(name="backup", iface=bif), name="backup")
    return lab, lan, br, c, main, backup


def test_pair_reaches_normal_shares_pool_and_replicates_leases(pair):
    lab, lan, br, c, main, backup = pair
    t0 = time.monotonic()
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")
    print(f"cnrd pair NORMAL after {time.monotonic() - t0:.1f} s")
    # the backup holds backup-pct (10 %) of the 50 addresses
    wait_for(lambda: sum(l.state.name == "BACKUP" for l in backup.leases()) == 5, 10,
             what="5 BACKUP addresses in the backup's store")
    _, cif = lab.link(lan, c, a_bridge=br)
    lease = dhclient(c, cif)
    assert lease.server == "10.98.0.1"  # the backup answers nobody in NORMAL
    wait_for(lambda: lease.address in backup.leased(), 10, what="the lease in the backup's store")
    assert backup.leased()[lease.address] == main.leased()[lease.address]
    assert "because failover is in NORMAL" in backup.log()


def test_restarting_either_side_goes_through_communications_interrupted(pair):
    lab, lan, br, c, main, backup = pair
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")
    _, cif = lab.link(lan, c, a_bridge=br)
    lease = dhclient(c, cif)
    for victim, survivor in ((backup, main), (main, backup)):
        seen = len(state_lines(survivor))
        victim.kill9()
        wait_for(lambda: reached(survivor, "COMMUNICATIONS-INTERRUPTED", seen), 15,
                 what=f"{survivor.name} in COMMUNICATIONS-INTERRUPTED")
        seen = len(state_lines(survivor))
        victim.start()
        wait_for(lambda: reached(survivor, "NORMAL", seen) and reached(victim, "NORMAL"), 30,
                 what="both back to NORMAL")
    assert lease.address in main.leased() and lease.address in backup.leased()
