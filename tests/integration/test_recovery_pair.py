"""Issue 6, real processes: Table 27-3's recovery cases, cnrd with cnrd and with ISC dhcpd.

    lan (bridge) ── main 10.98.0.1   (cnrd, or ISC dhcpd as primary)
                 ── backup 10.98.0.2 (cnrd, or ISC dhcpd as secondary)
                 ── cli (dhclient on several interfaces)

The operator acts through cnrctl, as the seed's nrcmd lines do.  A partition
between the servers only is a blackhole route to the partner's address in
one server's namespace: the clients, on other addresses, still reach both.
Every test ends with an audit over both lease stores and the clients' own
leases: no address leased to two clients, no ACKed lease missing.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import sys
from pathlib import Path

from cnrd.dhcp.packet import int_to_ip
from cnrd.leases.model import LeaseState
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Lease, dhclient, dhclient_renew, wait_for
from tests.integration.test_failover_isc import ISC, Isc
from tests.integration.test_failover_pair import PAIR, reached, state_lines

CNRCTL = str(Path(sys.executable).with_name("cnrctl"))
MCLT = 30


def ctl(proc: CnrdProcess, *args: str) -> dict:
    """Run cnrctl against ``proc`` inside its namespace; its JSON answer."""
    r = proc.ns.run(CNRCTL, "--config", str(proc.config_path), "--json", *args, check=False)
    assert r.returncode == 0, f"cnrctl {' '.join(args)} failed ({r.returncode}): {r.stdout}{r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


def related(proc: CnrdProcess) -> dict:
    return ctl(proc, "dhcp", "getRelatedServers")["related-servers"][0]


def isc_bindings(lease_file: Path) -> dict[str, tuple[str, str | None]]:
    """address -> (binding state, hardware address) from ISC's append-only lease file."""
    out: dict[str, tuple[str, str | None]] = {}
    text = Path(lease_file).read_text(errors="replace")
    for m in re.finditer(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S):
        st = re.search(r"^\s*binding state (\w+);", m.group(2), re.M)
        hw = re.search(r"^\s*hardware ethernet ([0-9a-f:]+);", m.group(2), re.M)
        if st:
            out[m.group(1)] = (st.group(1), hw.group(1) if hw else None)
    return out


def audit(clients: list[tuple[Lease, str]], stores: list[dict[str, str]]) -> None:
    """``clients``: (lease, client MAC); ``stores``: address -> MAC of leased addresses, per server."""
    held: dict[str, str] = {}
    for lease, hw in clients:
        assert lease.address is not None
        assert held.setdefault(lease.address, hw) == hw, f"{lease.address} given to two clients"
    for store in stores:
        for address, hw in held.items():
            assert store.get(address) == hw, f"ACKed lease {address} ({hw}) missing: {store}"


def pair_net(lab, n_clients: int = 3):
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b, c = lab.netns("main"), lab.netns("backup"), lab.netns("cli")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
    cifs = [lab.link(lan, c, a_bridge=br)[1] for _ in range(n_clients)]
    return m, mif, b, bif, c, cifs


def client(c, iface: str) -> tuple[Lease, str]:
    return dhclient(c, iface), c.mac(iface)


def partition(ns, partner: str, on: bool) -> None:
    """Cut (or heal) this server's path to its partner only."""
    ns.run("ip", "route", "add" if on else "del", "blackhole", f"{partner}/32")


def cnrd_pair_config(name: str, iface: str) -> str:
    return PAIR.format(name=name, iface=iface)


def start_cnrd_pair(lab):
    m, mif, b, bif, c, cifs = pair_net(lab)
    main = CnrdProcess(m, cnrd_pair_config("main", mif), name="main").start()
    backup = CnrdProcess(b, cnrd_pair_config("backup", bif), name="backup").start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 40, what="both NORMAL")
    return main, backup, c, cifs


def holds_longer_than(proc: CnrdProcess, address: str | None, seconds: int) -> bool:
    """Whether ``proc``'s store has ``address`` leased for more than ``seconds`` from now."""
    ends = {int_to_ip(l.address): l.expiration for l in proc.leases() if l.state is LeaseState.LEASED}
    end = ends.get(address or "")
    return end is not None and (end == -1 or end > time.time() + seconds)


def states_since(proc: CnrdProcess, seen: int) -> list[str]:
    return [l.split(" -> ")[1].split(" ")[0] for l in state_lines(proc)[seen:]]


# -- cnrd with cnrd ------------------------------------------------------------------


def test_partner_down_then_the_returning_main_recovers_with_updreq(lab):
    main, backup, c, cifs = start_cnrd_pair(lab)
    clients = [client(c, cifs[0])]
    wait_for(lambda: clients[0][0].address in backup.leased(), 10, what="lease replicated")
    # A first lease is limited to the MCLT (30 s), about as long as the main's
    # recovery below, and dhclient's retransmissions can let it run out without
    # a rebind, which ends it without anything being lost.  The renewal gets
    # the desired time, so the lease the audit checks is still held at the end.
    clients[0] = (dhclient_renew(c, cifs[0]), clients[0][1])
    wait_for(lambda: holds_longer_than(backup, clients[0][0].address, 4 * MCLT), 10,
             what="renewal replicated")
    main.kill9()
    wait_for(lambda: reached(backup, "COMMUNICATIONS-INTERRUPTED"), 20, what="backup COMM-INT")
    r = related(backup)
    assert r["communication"] == "INTERRUPTED" and r["comm-interrupted-since"]
    ctl(backup, "dhcp", "setPartnerDown", "examplepair")
    wait_for(lambda: reached(backup, "PARTNER-DOWN"), 10, what="backup PARTNER-DOWN")
    clients.append(client(c, cifs[1]))  # served by the backup alone
    assert clients[1][0].server == "10.98.0.2"
    seen_b = len(state_lines(backup))
    main.start()  # its log starts afresh
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL", seen_b), 60,
             what="both NORMAL after recovery")
    passed = states_since(main, 0)
    assert "RECOVER" in passed and passed[-1] == "NORMAL", passed
    wait_for(lambda: clients[1][0].address in main.leased(), 10, what="the backup's lease on the main")
    audit(clients, [main.leased(), backup.leased()])


def test_lost_database_backup_asks_for_everything_and_waits_mclt(lab):
    main, backup, c, cifs = start_cnrd_pair(lab)
    clients = [client(c, cifs[0]), client(c, cifs[1])]
    for lease, _ in clients:
        wait_for(lambda: lease.address in backup.leased(), 10, what="lease replicated")
    backup.kill9()
    shutil.rmtree(backup.data_dir)
    wait_for(lambda: reached(main, "COMMUNICATIONS-INTERRUPTED"), 20, what="main COMM-INT")
    ctl(main, "dhcp", "setPartnerDown", "examplepair")
    wait_for(lambda: reached(main, "PARTNER-DOWN"), 10, what="main PARTNER-DOWN")
    seen_main = len(state_lines(main))
    backup.start()
    wait_for(lambda: reached(backup, "RECOVER-WAIT"), 30, what="backup RECOVER-WAIT")
    assert not reached(backup, "NORMAL")
    wait_for(lambda: reached(backup, "NORMAL") and reached(main, "NORMAL", seen_main), MCLT + 30,
             what="both NORMAL after MCLT")
    assert states_since(backup, 0)[:3] == ["RECOVER", "RECOVER-WAIT", "RECOVER-DONE"] or \
        "RECOVER-DONE" in states_since(backup, 0)
    audit(clients, [main.leased(), backup.leased()])


def test_partition_with_partner_down_resolves_through_potential_conflict(lab):
    main, backup, c, cifs = start_cnrd_pair(lab)
    clients = [client(c, cifs[0])]
    wait_for(lambda: clients[0][0].address in backup.leased(), 10, what="lease replicated")
    partition(main.ns, "10.98.0.2", True)
    partition(backup.ns, "10.98.0.1", True)
    wait_for(lambda: reached(main, "COMMUNICATIONS-INTERRUPTED") and reached(backup, "COMMUNICATIONS-INTERRUPTED"),
             30, what="both COMM-INT")
    ctl(backup, "dhcp", "setPartnerDown", "examplepair")  # the operator's mistake: the main is alive
    wait_for(lambda: reached(backup, "PARTNER-DOWN"), 10, what="backup PARTNER-DOWN")
    seen_m, seen_b = len(state_lines(main)), len(state_lines(backup))
    partition(main.ns, "10.98.0.2", False)
    partition(backup.ns, "10.98.0.1", False)
    wait_for(lambda: reached(main, "NORMAL", seen_m) and reached(backup, "NORMAL", seen_b), 60,
             what="both NORMAL after the conflict is resolved")
    assert "POTENTIAL-CONFLICT" in states_since(main, seen_m)
    assert "POTENTIAL-CONFLICT" in states_since(backup, seen_b)
    clients.append(client(c, cifs[1]))
    wait_for(lambda: clients[1][0].address in backup.leased(), 10, what="new lease replicated")
    audit(clients, [main.leased(), backup.leased()])


# -- cnrd with ISC dhcpd ---------------------------------------------------------------


def isc_leased(isc: Isc) -> dict[str, str]:
    return {a: hw for a, (st, hw) in isc_bindings(isc.leases).items() if st == "active" and hw}


def test_isc_secondary_returns_to_cnrd_main_in_partner_down(lab):
    m, mif, b, bif, c, cifs = pair_net(lab)
    ours = CnrdProcess(m, cnrd_pair_config("main", mif), name="main").start()
    isc = Isc(b, ISC.format(role="secondary", me="10.98.0.2", peer="10.98.0.1", extra=""), bif)
    wait_for(lambda: reached(ours, "NORMAL") and "peer moves from recover-done to normal" in isc.log(), 60,
             what="both NORMAL")
    clients = [client(c, cifs[0])]
    isc.kill9()
    wait_for(lambda: reached(ours, "COMMUNICATIONS-INTERRUPTED"), 20, what="cnrd COMM-INT")
    ctl(ours, "dhcp", "setPartnerDown", "examplepair")
    wait_for(lambda: reached(ours, "PARTNER-DOWN"), 10, what="cnrd PARTNER-DOWN")
    clients.append(client(c, cifs[1]))
    seen = len(state_lines(ours))
    before = isc.moves_to("normal")
    isc.start()
    wait_for(lambda: reached(ours, "NORMAL", seen) and isc.moves_to("normal") > before, 60,
             what="both NORMAL again")
    assert isc.moves_to("recover") >= 1 or "to recover" in isc.log()
    wait_for(lambda: all(l.address in isc_leased(isc) for l, _ in clients), 15, what="ISC has both leases")
    audit(clients, [ours.leased(), isc_leased(isc)])


def test_cnrd_backup_with_lost_database_recovers_from_isc_primary(lab):
    m, mif, b, bif, c, cifs = pair_net(lab)
    isc = Isc(m, ISC.format(role="primary", me="10.98.0.1", peer="10.98.0.2",
                            extra=f"mclt {MCLT}; split 256;"), mif)
    ours = CnrdProcess(b, cnrd_pair_config("backup", bif), name="backup").start()
    wait_for(lambda: reached(ours, "NORMAL") and "peer moves from recover-done to normal" in isc.log(), 60,
             what="both NORMAL")
    clients = [client(c, cifs[0]), client(c, cifs[1])]
    for lease, _ in clients:
        wait_for(lambda: lease.address in ours.leased(), 10, what="ISC's lease in cnrd")
    ours.kill9()
    shutil.rmtree(ours.data_dir)
    wait_for(lambda: isc.moves_to("communications-interrupted") >= 1, 20, what="ISC comm-interrupted")
    ours.start()
    wait_for(lambda: reached(ours, "NORMAL"), MCLT + 40, what="cnrd NORMAL after recovery")
    passed = states_since(ours, 0)
    assert passed[0] == "RECOVER" and "RECOVER-DONE" in passed, passed
    audit(clients, [ours.leased(), isc_leased(isc)])


def test_partition_with_isc_resolves_through_potential_conflict(lab):
    m, mif, b, bif, c, cifs = pair_net(lab)
    ours = CnrdProcess(m, cnrd_pair_config("main", mif), name="main").start()
    isc = Isc(b, ISC.format(role="secondary", me="10.98.0.2", peer="10.98.0.1", extra=""), bif)
    wait_for(lambda: reached(ours, "NORMAL") and "peer moves from recover-done to normal" in isc.log(), 60,
             what="both NORMAL")
    clients = [client(c, cifs[0])]
    partition(ours.ns, "10.98.0.2", True)
    partition(isc.ns, "10.98.0.1", True)
    wait_for(lambda: reached(ours, "COMMUNICATIONS-INTERRUPTED"), 30, what="cnrd COMM-INT")
    ctl(ours, "dhcp", "setPartnerDown", "examplepair")
    wait_for(lambda: reached(ours, "PARTNER-DOWN"), 10, what="cnrd PARTNER-DOWN")
    seen = len(state_lines(ours))
    partition(ours.ns, "10.98.0.2", False)
    partition(isc.ns, "10.98.0.1", False)
    wait_for(lambda: reached(ours, "NORMAL", seen), 90, what="cnrd NORMAL after the conflict")
    assert "POTENTIAL-CONFLICT" in states_since(ours, seen)
    assert "potential-conflict" in isc.log()
    clients.append(client(c, cifs[1]))
    wait_for(lambda: all(l.address in isc_leased(isc) for l, _ in clients), 15, what="ISC has the leases")
    audit(clients, [ours.leased(), isc_leased(isc)])


# -- failover-recover, role changes, start with DHCP disabled (cnrd with cnrd) ------


def test_backup_restored_from_a_copy_recovers_with_failover_recover(lab):
    main, backup, c, cifs = start_cnrd_pair(lab)
    clients = [client(c, cifs[0])]
    wait_for(lambda: clients[0][0].address in backup.leased(), 10, what="lease replicated")
    # the operator's backup of the backup server's database, taken at `taken`
    backup.stop()
    copy = backup.data_dir.with_name("backup-data-copy")
    shutil.copytree(backup.data_dir, copy)
    taken = int(time.time())
    backup.start()
    wait_for(lambda: reached(backup, "NORMAL"), 30, what="backup NORMAL again")
    clients.append(client(c, cifs[1]))  # a lease the copy does not have
    wait_for(lambda: clients[1][0].address in backup.leased(), 10, what="second lease replicated")
    # the disk dies; the copy is restored and failover-recover set to its time
    backup.kill9()
    shutil.rmtree(backup.data_dir)
    shutil.copytree(copy, backup.data_dir)
    text = backup.config_path.read_text().replace("[server]\n", f"[server]\nfailover-recover = {taken}\n", 1)
    backup.config_path.write_text(text)
    backup.start()
    wait_for(lambda: reached(backup, "NORMAL"), MCLT + 40, what="restored backup NORMAL")
    passed = states_since(backup, 0)
    assert passed[0] == "RECOVER" and "RECOVER-DONE" in passed, passed
    # the lease the copy lacked came back from the main (UPDREQALL)
    audit(clients, [main.leased(), backup.leased()])
    # the seed: unset it once NORMAL
    ctl(backup, "dhcp", "set", "failover-recover=0")
    ctl(backup, "save")
    assert "failover-recover" not in backup.config_path.read_text().split("[policy")[0] or \
        "failover-recover = 0" in backup.config_path.read_text()


def test_roles_reversed_then_repaired_keeps_every_lease(lab):
    main, backup, c, cifs = start_cnrd_pair(lab)
    clients = [client(c, cifs[0])]
    wait_for(lambda: clients[0][0].address in backup.leased(), 10, what="lease replicated")
    for proc in (main, backup):
        proc.stop()
    # swap the roles in both files (the seed's "Restoring the Failover Pair with Reversed Roles")
    for proc in (main, backup):
        t = proc.config_path.read_text()
        t = t.replace("main = 10.98.0.1", "main = @B@").replace("backup = 10.98.0.2", "backup = 10.98.0.1")
        proc.config_path.write_text(t.replace("@B@", "10.98.0.2"))
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), MCLT + 60, what="NORMAL, roles reversed")
    assert "role" in main.log() and "role" in backup.log()
    clients.append(client(c, cifs[1]))
    assert clients[1][0].server == "10.98.0.2"  # the new main answers
    wait_for(lambda: clients[1][0].address in main.leased(), 10, what="replicated to the new backup")
    audit(clients, [main.leased(), backup.leased()])


def test_start_with_dhcp_disabled_syncs_but_answers_nobody_until_started(lab):
    m, mif, b, bif, c, cifs = pair_net(lab)
    text = cnrd_pair_config("main", mif).replace("[server]\n", "[server]\nstart-on-reboot = false\n", 1)
    main = CnrdProcess(m, text, name="main").start()
    backup = CnrdProcess(b, cnrd_pair_config("backup", bif), name="backup").start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 40, what="both NORMAL")
    r = main.ns.run(CNRCTL, "--config", str(main.config_path), "ready", check=False)
    assert r.returncode != 0 and "disabled" in (r.stdout + r.stderr).lower()
    lease = dhclient(c, cifs[0], timeout=8, check=False)
    assert lease.address is None  # nobody answered: the backup is silent in NORMAL too
    ctl(main, "dhcp", "start")
    clients = [client(c, cifs[1])]
    assert clients[0][0].server == "10.98.0.1"
    wait_for(lambda: clients[0][0].address in backup.leased(), 10, what="lease replicated")
    audit(clients, [main.leased(), backup.leased()])
