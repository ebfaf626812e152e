"""The latency histograms of a real failover pair: BNDUPD -> BNDACK round trips counted per pair.

    lan (bridge 10.98.0.0/24) ── main   10.98.0.1
                              ── backup 10.98.0.2
                              ── cli    (udhcpc, several client identifiers)

Each lease the main grants goes to the backup as a BNDUPD once NORMAL is
reached, and the backup acknowledges it with a BNDACK carrying the same xid
(draft-ietf-dhc-failover-12 §7.1, §7.2): the main's
``cnrd_failover_bndack_seconds_count{pair}`` must count at least one round
trip per client, its ``+Inf`` bucket equal the count, and the ACK latency
histogram count every ACK the clients got.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Lab, udhcpc, wait_for
from tests.integration.test_failover_pair import reached

pytestmark = pytest.mark.integration

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
mclt = 600
backup-pct = 10
"""

SCRAPE = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8067/metrics', timeout=10).read().decode())"
CLIENTS = 5


def sample(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m is not None, f"{name} not in /metrics"
    return float(m.group(1))


def test_bndupd_bndack_round_trips_are_counted_by_the_main():
    with Lab() as lab:
        lan = lab.netns("lan")
        br = lab.bridge(lan, "br0")
        m, b, c = lab.netns("main"), lab.netns("backup"), lab.netns("cli")
        _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
        _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
        _, cif = lab.link(lan, c, a_bridge=br)
        main = CnrdProcess(m, PAIR.format(name="main", iface=mif), name="main").start()
        backup = CnrdProcess(b, PAIR.format(name="backup", iface=bif), name="backup").start()
        wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 60, what="both in NORMAL")
        before = m.run(sys.executable, "-c", SCRAPE).stdout
        sent0 = sample(before, 'cnrd_failover_bndack_seconds_count{pair="examplepair"}')
        got = []
        for i in range(CLIENTS):
            lease = udhcpc(c, cif, extra=["-x", f"0x3d:01aabbccdd00{i:02x}"])
            got.append(lease.address)
        assert len(set(got)) == CLIENTS, got
        key = 'cnrd_failover_bndack_seconds_count{pair="examplepair"}'
        wait_for(lambda: sample(m.run(sys.executable, "-c", SCRAPE).stdout, key) >= sent0 + CLIENTS, 20,
                 what="a BNDACK per lease")
        after = m.run(sys.executable, "-c", SCRAPE).stdout
        count = sample(after, key)
        assert sample(after, 'cnrd_failover_bndack_seconds_bucket{le="+Inf",pair="examplepair"}') == count
        total = sample(after, 'cnrd_failover_bndack_seconds_sum{pair="examplepair"}')
        assert total > 0
        acks = sample(after, 'cnrd_dhcp_reply_seconds_count{type="ACK"}')
        assert acks >= CLIENTS
        ack_sum = sample(after, 'cnrd_dhcp_reply_seconds_sum{type="ACK"}')
        commits = sample(after, "cnrd_lease_commit_seconds_count")
        commit_sum = sample(after, "cnrd_lease_commit_seconds_sum")
        print(f"BNDUPD->BNDACK: {count:.0f} round trips, mean {1000 * total / count:.2f} ms; "
              f"ACK: {acks:.0f}, mean {1000 * ack_sum / acks:.2f} ms; "
              f"commits: {commits:.0f}, mean {1000 * commit_sum / commits:.2f} ms")
