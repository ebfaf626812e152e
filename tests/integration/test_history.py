"""Lease history through a real cnrd failover pair and real clients.

    lan (bridge) ── main 10.97.0.1   (twistd cnrd; API on 127.0.0.1:8067 in its namespace)
                 ── backup 10.97.0.2
                 ── cli1, cli2, cli3 (dhclient, one each)

The scope has one address, so each client in turn gets 10.97.0.100: the
first releases it (dhclient -r), the operator takes it from the second with
``cnrctl lease 10.97.0.100 force-available`` on the main, the third holds
it.  ``cnrctl lease 10.97.0.100 history`` must then show the three holders
with their times, and say which server made each change: on the main its
own (dhcp and operator), on the backup the main's (received as binding
updates: source partner, server 10.97.0.1).  The forced change reaches the
backup, and the main frees the address only after the backup's ack (RESET
until then, draft-ietf-dhc-failover-12 §5.11).  Set CNRD_SAVE_OUTPUTS=DIR
to keep both printouts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cnrd.config.timespec import format_iso, parse_iso
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import dhclient, dhclient_release, wait_for
from tests.integration.test_cnrctl_pair import CNRCTL, cnrctl
from tests.integration.test_failover_pair import reached

ADDR = "10.97.0.100"

PAIR = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.97.0.0/24
ranges = 10.97.0.100-10.97.0.100

[failover-pair examplepair]
main = 10.97.0.1
backup = 10.97.0.2
failover = true
mclt = 30
backup-pct = 0
failover-poll-interval = 2
failover-poll-timeout = 6
"""


def keep(name: str, text: str) -> None:
    print(f"--- {name} ---\n{text}", end="")
    where = os.environ.get("CNRD_SAVE_OUTPUTS")
    if where:
        Path(where, name).write_text(text)


def history(proc: CnrdProcess) -> list[dict]:
    return json.loads(cnrctl(proc, "--json", "lease", ADDR, "history").stdout)["history"]


def state(proc: CnrdProcess) -> str:
    return json.loads(cnrctl(proc, "--json", "lease", ADDR).stdout)["state"]


def test_three_holders_in_the_history_of_both_servers(lab):
    assert Path(CNRCTL).exists(), f"{CNRCTL} is missing: pip install -e . installs the cnrctl console script"
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b = lab.netns("main"), lab.netns("backup")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.97.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.97.0.2/24")
    main = CnrdProcess(m, PAIR.format(name="main", iface=mif), name="main").start()
    backup = CnrdProcess(b, PAIR.format(name="backup", iface=bif), name="backup").start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")

    clients = []
    for i in (1, 2, 3):
        ns = lab.netns(f"cli{i}")
        _, cif = lab.link(lan, ns, a_bridge=br)
        clients.append((ns, cif, ns.mac(cif)))

    ns1, if1, mac1 = clients[0]
    first = dhclient(ns1, if1)
    assert first.address == ADDR and first.server == "10.97.0.1"
    dhclient_release(ns1, if1)
    # RELEASED until the backup acknowledges; then the main's to give again.
    wait_for(lambda: state(main) == "available", 15, what="the released address available on the main")

    ns2, if2, mac2 = clients[1]
    second = dhclient(ns2, if2)
    assert second.address == ADDR
    wait_for(lambda: state(backup) == "leased", 15, what="the second client's lease on the backup")
    # A whole second in which only the second client holds it, for the --at question below.
    acked = max(parse_iso(e["time"]) for e in history(main) if e["event"] == "ack")
    wait_for(lambda: time.time() >= acked + 2, 5, what="a second to pass")
    forced = cnrctl(main, "lease", ADDR, "force-available")
    assert forced.stdout.startswith(f"{ADDR}: force-available done, leased -> ")
    # The change reaches the backup as a binding update; the main frees it on the ack.
    wait_for(lambda: state(backup) == "available", 15, what="force-available on the backup")
    wait_for(lambda: state(main) == "available", 15, what="the forced address available on the main")

    ns3, if3, mac3 = clients[2]
    third = dhclient(ns3, if3)
    assert third.address == ADDR
    wait_for(lambda: state(backup) == "leased", 15, what="the third client's lease on the backup")

    ours = history(main)
    acks = [e for e in ours if e["event"] == "ack" and e["state"] == "leased"]
    assert [e["hardware-address"] for e in acks] == [mac1, mac2, mac3]
    assert all(e["time"] and e["source"] == "dhcp" and e["server"] == "10.97.0.1" for e in acks)
    assert acks[0]["time"] <= acks[1]["time"] <= acks[2]["time"]
    forced_events = [e for e in ours if e["event"] == "force-available"]
    assert [(e["source"], e["server"], e["hardware-address"]) for e in forced_events] == [
        ("operator", "10.97.0.1", mac2)]
    assert any(e["event"] == "release" and e["hardware-address"] == mac1 for e in ours)

    theirs = history(backup)
    held = [e["hardware-address"] for e in theirs if e["state"] == "leased"]
    assert [h for i, h in enumerate(held) if i == 0 or held[i - 1] != h] == [mac1, mac2, mac3]
    assert {(e["source"], e["server"]) for e in theirs} == {("partner", "10.97.0.1")}

    # Who had it while the second client held it: one command.
    before = format_iso(parse_iso(acks[1]["time"]) + 1)
    at = json.loads(cnrctl(main, "--json", "lease", ADDR, "history", "--at", before).stdout)
    assert at["holder"]["hardware-address"] == mac2

    keep("history-main.txt", cnrctl(main, "lease", ADDR, "history").stdout)
    keep("history-backup.txt", cnrctl(backup, "lease", ADDR, "history").stdout)
    keep("history-at.txt", cnrctl(main, "lease", ADDR, "history", "--at", before).stdout)
    keep("history-mac.txt", cnrctl(main, "history", "--mac", mac2, "--since", "-1d").stdout)
