"""cnrctl against a real cnrd failover pair, as the seed's operator uses nrcmd.

    lan (bridge) ── main 10.98.0.1   (twistd cnrd; its API on 127.0.0.1:8067 in its namespace)
                 ── backup 10.98.0.2 (twistd cnrd; likewise in its own namespace)

``ip netns exec <main> cnrctl --config <main's ini> dhcp getRelatedServers``
shows NORMAL/NORMAL; with the backup process stopped it shows
COMMUNICATIONS-INTERRUPTED; ``dhcp setPartnerDown examplepair`` then moves
the main to PARTNER-DOWN.  Set CNRD_SAVE_OUTPUTS=DIR to keep the two
getRelatedServers printouts (getRelatedServers-normal.txt,
getRelatedServers-comm-interrupted.txt) for the docs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import wait_for
from tests.integration.test_failover_pair import PAIR, reached

CNRCTL = str(Path(sys.executable).with_name("cnrctl"))


def cnrctl(proc: CnrdProcess, *args: str, check: bool = True):
    """``ip netns exec NS cnrctl --config INI args...`` for the server ``proc``."""
    r = proc.ns.run(CNRCTL, "--config", str(proc.config_path), *args, check=False)
    if check:
        assert r.returncode == 0, f"cnrctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def related(proc: CnrdProcess) -> dict:
    return json.loads(cnrctl(proc, "--json", "dhcp", "getRelatedServers").stdout)["related-servers"][0]


def keep(name: str, text: str) -> None:
    print(f"--- {name} ---\n{text}", end="")
    where = os.environ.get("CNRD_SAVE_OUTPUTS")
    if where:
        Path(where, name).write_text(text)


def test_get_related_servers_and_set_partner_down_through_cnrctl(lab):
    assert Path(CNRCTL).exists(), f"{CNRCTL} is missing: pip install -e . installs the cnrctl console script"
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b = lab.netns("main"), lab.netns("backup")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
    # No [api] section: each server's API is on the default 127.0.0.1:8067 of
    # its own namespace, its token made in <data-dir>/api-token.
    main = CnrdProcess(m, PAIR.format(name="main", iface=mif), name="main").start()
    backup = CnrdProcess(b, PAIR.format(name="backup", iface=bif), name="backup").start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")
    wait_for(lambda: related(main)["partner-state"] == "NORMAL", 10, what="main to know the backup is NORMAL")

    r = related(main)
    assert (r["pair"], r["role"], r["our-address"], r["partner-address"]) == \
        ("examplepair", "main", "10.98.0.1", "10.98.0.2")
    assert (r["state"], r["partner-state"], r["communication"]) == ("NORMAL", "NORMAL", "OK")
    assert r["comm-interrupted-since"] is None and r["last-contact"] is not None
    normal = cnrctl(main, "dhcp", "getRelatedServers").stdout
    assert normal.startswith("failover-pair examplepair: partner 10.98.0.2\n")
    assert "  state                   NORMAL\n" in normal and "  partner-state           NORMAL\n" in normal
    assert "  communication           OK\n" in normal
    keep("getRelatedServers-normal.txt", normal)
    assert related(backup)["role"] == "backup" and related(backup)["state"] == "NORMAL"

    # While the partner is in touch, declaring it down is refused.
    refused = cnrctl(main, "dhcp", "setPartnerDown", "examplepair", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "cnrctl: partner is in touch (state NORMAL)\n"

    backup.stop()
    wait_for(lambda: related(main)["state"] == "COMMUNICATIONS-INTERRUPTED", 20,
             what="main in COMMUNICATIONS-INTERRUPTED")
    interrupted = cnrctl(main, "dhcp", "getRelatedServers").stdout
    assert "  state                   COMMUNICATIONS-INTERRUPTED\n" in interrupted
    assert "  communication           INTERRUPTED\n" in interrupted
    assert "  comm-interrupted-since  20" in interrupted
    keep("getRelatedServers-comm-interrupted.txt", interrupted)

    out = cnrctl(main, "dhcp", "setPartnerDown", "examplepair").stdout
    assert out.startswith("failover-pair examplepair: PARTNER-DOWN (partner down since 20")
    wait_for(lambda: reached(main, "PARTNER-DOWN"), 10, what="main PARTNER-DOWN in its log")
    after = cnrctl(main, "dhcp", "getRelatedServers").stdout
    assert "  state                   PARTNER-DOWN\n" in after
    print(f"--- after setPartnerDown ---\n{after}", end="")
    # The main answers clients alone: ready.
    assert cnrctl(main, "ready").stdout == "ready\n"
