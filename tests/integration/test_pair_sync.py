"""Failover pair synchronization with two real cnrd servers (CNR 7.2 "Synchronizing Failover Pairs").

    lan (bridge) ── main   10.98.0.1  twistd cnrd, API on 10.98.0.1:8067, trap webhook receiver on its 127.0.0.1
                 ── backup 10.98.0.2  likewise on 10.98.0.2
                 ── cli    dhclient (two clients)

Both servers carry ``main-api``, ``backup-api`` and ``api-token-file`` in the
pair's section.  The backup's file differs on purpose in what the seed's
checklist says must match: policy ``default`` gives another router, a policy
``lab-only`` and a client using it exist only there, and client
02:00:00:00:00:aa exists only on the main.  The backup's file also has comments
of its own.

The test walks the seed's procedure: both servers notice the mismatch (trap,
gauge, getRelatedServers); ``cnrctl failover-pair examplepair sync exact``
reports the differences; a Run with a wrong token is refused and changes
nothing; a Run makes the backup's file match in everything but its own node's
sections, keeping its comments, and the backup reloads without a restart; the
mismatch clears; clients get leases from the main and, with the main stopped,
from the backup, with the synchronized policies and client.

Set CNRD_SAVE_OUTPUTS=DIR to keep the printed tables (sync-exact-report.txt,
sync-exact-run.txt, sync-exact-run-refused.txt) for the docs.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path

from cnrd.config.inifile import read_values
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import dhclient, dhclient_renew, read_log, wait_for
from tests.integration.test_cnrctl_pair import CNRCTL, cnrctl, keep
from tests.integration.test_failover_pair import reached, state_lines

PAIR_NAME = "examplepair"
HOOK_PORT = 8099
OFFICE_MAC = "02:00:00:00:00:aa"  # a client only the main's file has at first
LAB_MAC = "02:00:00:00:00:bb"  # a client only the backup's file has

# The pair's section, identical on both servers.  @LAB@ is the lab's directory.
PAIR_SECTION = f"""
[failover-pair {PAIR_NAME}]
main = 10.98.0.1
backup = 10.98.0.2
failover = true
mclt = 30
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
main-api = http://10.98.0.1:8067
backup-api = http://10.98.0.2:8067
api-token-file = @LAB@/sync-token
"""

MAIN = """
[server]
name = main
interfaces = {iface}
data-dir = @DATA@
trap-webhook = http://127.0.0.1:{hook}/trap

[api]
listen = 10.98.0.1:8067
token-file = @LAB@/api-token

[policy default]
lease-time = 3600
option.routers = 10.98.0.1
option.domain-name-servers = 10.98.0.1

[policy office]
lease-time = 7200
option.routers = 10.98.0.3
option.domain-name = office.example

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149

[client {office}]
policy = office
""" + PAIR_SECTION

BACKUP = """# The backup of examplepair.  This comment is the backup's own and must survive a sync.
[server]
# node identity: never copied from the main
name = backup
interfaces = {iface}
data-dir = @DATA@
trap-webhook = http://127.0.0.1:{hook}/trap

[api]
listen = 10.98.0.2:8067
token-file = @LAB@/api-token

; the default policy: a router that differs from the main's on purpose
[policy default]
lease-time = 3600
# routers: to be replaced by the main's
option.routers = 10.98.0.254
option.domain-name-servers = 10.98.0.1

[policy office]
lease-time = 7200
option.routers = 10.98.0.3
option.domain-name = office.example

# a policy only this server has
[policy lab-only]
lease-time = 600
option.routers = 10.98.0.254

[scope lan]
# the pair's scope, as on the main
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149

[client {lab}]
policy = lab-only
""" + PAIR_SECTION

# The objects the two files differ in, as the design names them.
DIFFERING = {"policy default", "policy lab-only", f"client {OFFICE_MAC}", f"client {LAB_MAC}"}

# A trap webhook receiver: prints each POSTed body on one line.
HOOK = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        sys.stdout.write("POST " + body.decode("utf-8", "replace") + "\n")
        sys.stdout.flush()
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("listening", flush=True)
server.serve_forever()
"""


def start_hook(proc: CnrdProcess):
    hook = proc.ns.popen(sys.executable, "-c", HOOK, str(HOOK_PORT), name=f"hook-{proc.name}")
    wait_for(lambda: "listening" in read_log(hook), 10, what=f"{proc.name}'s trap receiver")
    return hook


def mismatch_traps(hook) -> list[dict]:
    """The configuration-mismatch traps a receiver got for the pair."""
    bodies = [json.loads(l[5:]) for l in read_log(hook).splitlines() if l.startswith("POST ")]
    return [b for b in bodies if b.get("event") == "failover-configuration-mismatch" and b.get("pair") == PAIR_NAME]


def gauge(proc: CnrdProcess, host: str) -> float | None:
    """``cnrd_failover_config_mismatch{pair="examplepair"}`` from the server's /metrics, None if absent."""
    text = proc.ns.run("curl", "-s", "--max-time", "5", f"http://{host}:8067/metrics").stdout
    assert "cnrd_" in text, f"{proc.name}'s /metrics answered nothing useful:\n{text[:500]}"
    m = re.search(r'^cnrd_failover_config_mismatch\{pair="examplepair"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def config_status(proc: CnrdProcess) -> dict:
    """The ``config`` field of getRelatedServers for the pair."""
    out = json.loads(cnrctl(proc, "--json", "dhcp", "getRelatedServers").stdout)
    [pair] = [r for r in out["related-servers"] if r["pair"] == PAIR_NAME]
    return pair["config"]


def sync(proc: CnrdProcess, *args: str, check: bool = True):
    return cnrctl(proc, "failover-pair", PAIR_NAME, "sync", *args, check=check)


def has_header(table: str) -> bool:
    """True when the printout has the change table's header line."""
    return any(l.split() == ["CLASS", "NAME", "PROPERTY", "FUNCTION", "OLD", "NEW"] for l in table.splitlines())


def shared_sections(text: str) -> dict:
    """What must match between partners: every section but the node's own [server] and [api]."""
    return {k: v for k, v in read_values(text).items() if k[0] not in ("server", "api")}


def dhcp_options(lab, ns, iface: str) -> dict[str, str]:
    """The options of the last lease in dhclient's lease file for ``iface`` (lab.py's naming)."""
    text = lab.path(f"dhclient-{ns.role}-{iface}.leases").read_text()
    last = text.rsplit("lease {", 1)[-1]
    return dict(re.findall(r"^\s*option (\S+) (.*?);$", last, re.M))


def test_exact_sync_report_refused_run_and_run(lab):
    assert Path(CNRCTL).exists(), f"{CNRCTL} is missing: pip install -e . installs the cnrctl console script"
    token = secrets.token_urlsafe(32)
    # In the lab both "hosts" share one filesystem: api-token is what each
    # server's API accepts, sync-token the pair's api-token-file (the same
    # path on both hosts).  They hold the same token, so a wrong sync token
    # can be written without changing what the APIs accept.
    lab.path("api-token").write_text(token + "\n")
    lab.path("sync-token").write_text(token + "\n")
    lab.path("api-token").chmod(0o600)
    lab.path("sync-token").chmod(0o600)

    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b, c = lab.netns("main"), lab.netns("backup"), lab.netns("cli")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
    main = CnrdProcess(m, MAIN.format(iface=mif, hook=HOOK_PORT, office=OFFICE_MAC).replace("@LAB@", str(lab.dir)),
                       name="main")
    backup = CnrdProcess(b, BACKUP.format(iface=bif, hook=HOOK_PORT, lab=LAB_MAC).replace("@LAB@", str(lab.dir)),
                         name="backup")
    hooks = {"main": start_hook(main), "backup": start_hook(backup)}
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")
    main_text = main.config_path.read_text()
    backup_before = backup.config_path.read_bytes()
    assert shared_sections(main_text) != shared_sections(backup_before.decode())  # the premise

    # -- both servers notice the mismatch (first check once the link is NORMAL)
    for proc, host in ((main, "10.98.0.1"), (backup, "10.98.0.2")):
        wait_for(lambda: config_status(proc)["status"] == "mismatch", 30, what=f"{proc.name}: config mismatch")
        status = config_status(proc)
        assert set(status["objects"]) == DIFFERING, status
        assert status["checked"]
        assert gauge(proc, host) == 1.0
        [trap] = wait_for(lambda: mismatch_traps(hooks[proc.name]), 15,
                          what=f"{proc.name}'s mismatch trap at its webhook")
        assert trap["server"] == proc.name and set(trap["objects"]) == DIFFERING, trap
        assert "trap failover-configuration-mismatch: failover pair examplepair" in proc.log()
    related = cnrctl(backup, "dhcp", "getRelatedServers").stdout
    keep("getRelatedServers-mismatch.txt", related)
    assert re.search(r"^  config\s+status=mismatch, objects=", related, re.M), related

    # -- Report (the default): the differences, from either server; nothing changes
    report = json.loads(cnrctl(main, "--json", "failover-pair", PAIR_NAME, "sync", "exact").stdout)
    assert (report["pair"], report["operation"], report["direction"]) == (PAIR_NAME, "exact", "main-to-backup")
    assert (report["source"], report["target"], report["run"]) == ("main", "backup", False)
    changes = report["changes"]
    objects = {f"{ch['class']} {ch['name']}" for ch in changes}
    assert objects == DIFFERING, changes
    assert {ch["function"] for ch in changes} == {"exact"}
    by_object = {(ch["class"], ch["name"], ch["property"]): ch for ch in changes}
    router = by_object[("policy", "default", "option.routers")]
    assert (router["old"], router["new"]) == ("10.98.0.254", "10.98.0.1")
    assert by_object[("policy", "lab-only", None)]["new"] is None  # removed from the backup
    assert by_object[("client", LAB_MAC, None)]["new"] is None  # deleted on the main: only Exact removes it
    assert by_object[("client", OFFICE_MAC, None)]["old"] is None  # added to the backup
    # the same Report asked of the backup: it plans with the same source and target
    from_backup = json.loads(cnrctl(backup, "--json", "failover-pair", PAIR_NAME, "sync", "exact").stdout)
    assert sorted(map(json.dumps, from_backup["changes"])) == sorted(map(json.dumps, changes))

    table = sync(main, "exact", "--report").stdout
    keep("sync-exact-report.txt", table)
    assert has_header(table), table
    for obj in DIFFERING:
        cls, name = obj.split(" ", 1)
        assert re.search(rf"^{re.escape(cls)}\s+{re.escape(name)}\s", table, re.M), (obj, table)
    assert backup.config_path.read_bytes() == backup_before

    # -- a Run with a wrong token: refused, the reason comes back, nothing changes
    lab.path("sync-token").write_text("not-the-token\n")
    refused = sync(main, "exact", "--run", check=False)
    keep("sync-exact-run-refused.txt", refused.stdout + refused.stderr)
    assert refused.returncode == 1 and refused.stdout == "", refused
    assert refused.stderr.startswith("cnrctl: partner http://10.98.0.2:8067 refused: ") and "token" in refused.stderr
    assert backup.config_path.read_bytes() == backup_before
    assert main.config_path.read_text() == main_text
    lab.path("sync-token").write_text(token + "\n")

    # -- the Run: the backup's file made to match; it reloads without a restart
    states = {p.name: len(state_lines(p)) for p in (main, backup)}
    reloads = backup.log().count("configuration reloaded:")
    backup_proc = backup.proc
    run = sync(main, "exact", "--run")
    keep("sync-exact-run.txt", run.stdout)
    assert has_header(run.stdout) and "4 changes made\n" in run.stdout, run.stdout
    # what the backup's reload applied, and nothing that waits for a restart
    assert "applied by the target's reload:\n" in run.stdout and "needs a restart" not in run.stdout
    backup_after = backup.config_path.read_text()
    assert shared_sections(backup_after) == shared_sections(main_text)
    for section in (("server", None), ("api", None)):
        assert read_values(backup_after)[section] == read_values(backup_before.decode())[section]
    for comment in ("# The backup of examplepair.  This comment is the backup's own and must survive a sync.",
                    "# node identity: never copied from the main",
                    "; the default policy: a router that differs from the main's on purpose",
                    "# the pair's scope, as on the main"):
        assert comment in backup_after.splitlines(), comment
    assert main.config_path.read_text() == main_text  # main to backup: the main is the source
    wait_for(lambda: backup.log().count("configuration reloaded:") > reloads, 10, what="the backup's reload")
    assert "configuration reloaded: " in backup.log() and ", 0 need a restart" in backup.log().rsplit(
        "configuration reloaded:", 1)[1].splitlines()[0]
    assert backup.proc is backup_proc and backup_proc.poll() is None  # reloaded, not restarted
    # The seed's "Restarting the Failover Servers": reload both; the main has nothing to apply.
    reloaded = json.loads(cnrctl(main, "--json", "dhcp", "reload").stdout)
    assert reloaded["restart-required"] == [] and reloaded["applied"] == []
    # the failover link never noticed
    assert {p.name: len(state_lines(p)) for p in (main, backup)} == states

    # -- the mismatch clears on both sides (at the next comparison, within a minute)
    for proc, host in ((main, "10.98.0.1"), (backup, "10.98.0.2")):
        wait_for(lambda: config_status(proc)["status"] == "match", 90, interval=1, what=f"{proc.name}: config match")
        assert config_status(proc)["objects"] == []
        assert gauge(proc, host) == 0.0
    again = json.loads(cnrctl(main, "--json", "failover-pair", PAIR_NAME, "sync", "exact").stdout)
    assert again["changes"] == []
    # the episode raised one trap on each side, however often the servers compared
    assert [len(mismatch_traps(h)) for h in hooks.values()] == [1, 1]
    keep("getRelatedServers-match.txt", cnrctl(backup, "dhcp", "getRelatedServers").stdout)

    # -- clients: one from the main in NORMAL, then the backup serves with the synchronized file
    _, cif = lab.link(lan, c, a_bridge=br)
    first = dhclient(c, cif)
    assert first.server == "10.98.0.1"
    assert dhcp_options(lab, c, cif)["routers"] == "10.98.0.1"
    wait_for(lambda: first.address in backup.leased(), 10, what="the lease in the backup's store")
    wait_for(lambda: sum(l.state.name == "BACKUP" for l in backup.leases()) >= 1, 10,
             what="the backup's share of the pool")
    seen = len(state_lines(backup))
    main.stop()
    wait_for(lambda: reached(backup, "COMMUNICATIONS-INTERRUPTED", seen), 20,
             what="the backup in COMMUNICATIONS-INTERRUPTED")
    # the default policy's router is now the main's (it was 10.98.0.254 on the backup)
    renewed = dhclient_renew(c, cif)
    assert (renewed.address, renewed.server) == (first.address, "10.98.0.2")
    assert dhcp_options(lab, c, cif)["routers"] == "10.98.0.1"
    # the client that only the main had is known to the backup now, with its policy
    _, oif = lab.link(lan, c, a_bridge=br, b_mac=OFFICE_MAC)
    office = dhclient(c, oif)
    assert office.server == "10.98.0.2"
    options = dhcp_options(lab, c, oif)
    assert options["routers"] == "10.98.0.3" and options["domain-name"] == '"office.example"', options
