"""A cnrd failover pair whose partners share one LDAP server give every client the same class.

    lan (bridge) ── main   10.98.0.1  twistd cnrd, API on 10.98.0.1:8067
                 ── backup 10.98.0.2  likewise on 10.98.0.2
                 ── dir    10.98.0.5  OpenLDAP slapd on :389 (tests/ldapfix.py)
                 ── cli    dhclient, one veth per client MAC

The seed's checklist asks both partners to use the same LDAP server for
client registration (Table 27-4: mismatched client-classes → "use LDAP for
client registration"), so that whichever server answers, a client gets the
class (and so the policy and options) its entry names.  Both files here have
the same ``[ldap dir]`` section, the same classes and policies, and no
``[client]`` section: every client's class comes from the directory.

Three clients are registered: two ``staff`` (policy staff: domain-name
staff.example, routers 10.98.0.11) and one ``printers`` (policy printers:
printers.example, routers 10.98.0.12); the default policy (lan.example,
routers 10.98.0.1) is what a client whose lookup failed would get.  The
first two bind through the main in NORMAL; the main is stopped; they
renew through the backup, and the third, never seen by the main, binds
through the backup, which asked the directory itself.  Each gets its own
class's options from either server.  Both servers' configuration
comparison (``config`` of ``GET /api/v1/failover-pairs/NAME``) says
``match`` with the LDAP section compared, and the mismatch gauge is 0.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Netns, dhclient, dhclient_renew, wait_for
from tests.ldapfix import CLIENTS, DHCP_DN, Slapd, client_ldif, missing_ldap_requirements

PAIR_NAME = "ldappair"
DIR_IP = "10.98.0.5"
STAFF_1, STAFF_2, PRINTER = "02:00:00:00:17:01", "02:00:00:00:17:02", "02:00:00:00:17:03"
CLASS_OF = {STAFF_1: "staff", STAFF_2: "staff", PRINTER: "printers"}
#: what each class's policy puts in the client's lease (dhclient's lease file)
OPTIONS_OF = {
    "staff": {"domain-name": "staff.example", "routers": "10.98.0.11"},
    "printers": {"domain-name": "printers.example", "routers": "10.98.0.12"},
}
DEFAULT_OPTIONS = {"domain-name": "lan.example", "routers": "10.98.0.1"}

# Everything but [server] and [api] is the same on both servers.
SHARED = f"""
[policy default]
lease-time = 3600
option.routers = 10.98.0.1
option.domain-name = lan.example

[policy staff]
lease-time = 3600
option.routers = 10.98.0.11
option.domain-name = staff.example

[policy printers]
lease-time = 3600
option.routers = 10.98.0.12
option.domain-name = printers.example

[client-class staff]
policy = staff

[client-class printers]
policy = printers

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149

[ldap dir]
hostname = {DIR_IP}
port = 389
username = {DHCP_DN}
password-file = @LAB@/ldap-password
search-path = {CLIENTS}
search-scope = onelevel
search-filter = (macAddress=%s)
query-dictionary = description=client-class, cn=host-name
timeout = 2s

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
api-token-file = @LAB@/api-token
"""

NODE = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@
client-class = true
client-lookup-id = mac
client-cache-ttl = 10s
client-lookup-failure = default

[api]
listen = {address}:8067
token-file = @LAB@/api-token
"""


def state_lines(proc: CnrdProcess) -> list[str]:
    return [l.split("state ", 1)[1] for l in proc.log().splitlines() if f"failover pair {PAIR_NAME}: state" in l]


def reached(proc: CnrdProcess, state: str, after: int = 0) -> bool:
    return any(f"-> {state} " in l for l in state_lines(proc)[after:])


def lease_options(ns: Netns, iface: str) -> dict[str, str]:
    """The options of the last lease block dhclient wrote for ``iface`` (lab.py's file naming)."""
    text = ns.lab.path(f"dhclient-{ns.role}-{iface}.leases").read_text()
    blocks = re.findall(r"^lease \{\n(.*?)^\}", text, re.M | re.S)
    assert blocks, f"no lease in dhclient's lease file:\n{text}"
    return {m.group(1): m.group(2).strip('"') for m in re.finditer(r"^\s*option (\S+) (.*);$", blocks[-1], re.M)}


def class_options(options: dict[str, str]) -> dict[str, str]:
    return {k: options.get(k, "") for k in ("domain-name", "routers")}


def api(proc: CnrdProcess, address: str, path: str, token: str) -> dict:
    out = proc.ns.run("curl", "-s", "--max-time", "10", "-H", f"Authorization: Bearer {token}",
                      "-w", "\n%{http_code}", f"http://{address}:8067{path}", timeout=20).stdout
    body, _, code = out.rpartition("\n")
    assert code == "200", f"GET {path} on {proc.name}: {code} {body[:1000]}"
    return json.loads(body)


def metrics(proc: CnrdProcess, address: str) -> str:
    text = proc.ns.run("curl", "-s", "--max-time", "10", f"http://{address}:8067/metrics", timeout=20).stdout
    assert "cnrd_" in text, f"{proc.name}'s /metrics answered nothing useful:\n{text[:500]}"
    return text


def series(text: str, name: str, **labels: str) -> float | None:
    """The value of ``name`` whose labels include ``labels`` (summed), None if there is none."""
    found = None
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found = (found or 0.0) + float(m.group(2))
    return found


@pytest.fixture
def site(lab):
    missing = missing_ldap_requirements()
    if missing:
        pytest.fail(f"slapd and ldap-utils are needed (scripts/setup installs them): missing {missing}", pytrace=False)
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b, d, c = lab.netns("main"), lab.netns("backup"), lab.netns("dir"), lab.netns("cli")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.98.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.98.0.2/24")
    lab.link(lan, d, a_bridge=br, b_addr=f"{DIR_IP}/24")
    token = secrets.token_urlsafe(24)
    lab.path("api-token").write_text(token + "\n")
    lab.path("api-token").chmod(0o600)
    slapd = Slapd(lab.path("slapd"), host=DIR_IP, port=389, netns=d)
    slapd.start()
    try:
        slapd.add("\n".join(client_ldif(mac, f"host-{mac[-2:]}", cls) for mac, cls in CLASS_OF.items()))
        slapd.write_password_file(lab.path("ldap-password"))

        def node(name: str, iface: str, address: str, ns: Netns) -> CnrdProcess:
            text = (NODE.format(name=name, iface=iface, address=address) + SHARED).replace("@LAB@", str(lab.dir))
            return CnrdProcess(ns, text, name=name)

        main, backup = node("main", mif, "10.98.0.1", m), node("backup", bif, "10.98.0.2", b)
        yield lab, lan, br, c, main, backup, slapd, token
    finally:
        slapd.stop()


def test_both_partners_give_each_client_the_class_its_ldap_entry_names(site):
    lab, lan, br, c, main, backup, slapd, token = site
    # the directory holds the three entries the servers will find
    found = {e["macAddress"][0]: e["description"][0] for e in slapd.search("(objectClass=ieee802Device)", CLIENTS)}
    assert found == CLASS_OF
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 40, what="both NORMAL")
    wait_for(lambda: sum(l.state.name == "BACKUP" for l in backup.leases()) >= 1, 15,
             what="the backup's share of the pool")

    ifaces = {}
    for mac in CLASS_OF:
        _, ifaces[mac] = lab.link(lan, c, a_bridge=br, b_mac=mac)

    # -- through the main in NORMAL: the two first clients, each with its class's options
    first = {}
    for mac in (STAFF_1, PRINTER):
        lease = dhclient(c, ifaces[mac])
        assert lease.server == "10.98.0.1", lease.output
        got = class_options(lease_options(c, ifaces[mac]))
        assert got == OPTIONS_OF[CLASS_OF[mac]], f"{mac} ({CLASS_OF[mac]}) from the main: {got}"
        assert got != DEFAULT_OPTIONS
        first[mac] = lease.address
    main_text = metrics(main, "10.98.0.1")
    assert (series(main_text, "cnrd_ldap_lookups_total", result="found") or 0) >= 2, main_text[-3000:]
    assert series(main_text, "cnrd_ldap_up") == 1

    # -- the configuration comparison: same LDAP server on both, so no mismatch
    for proc, address in ((main, "10.98.0.1"), (backup, "10.98.0.2")):
        path = f"/api/v1/failover-pairs/{PAIR_NAME}"
        try:
            wait_for(lambda: api(proc, address, path, token)["config"]["status"] == "match", 40,
                     interval=0.5, what=f"{proc.name}: config status match")
        except AssertionError as e:
            raise AssertionError(f"{e}; last: {api(proc, address, path, token)['config']}") from None
        assert series(metrics(proc, address), "cnrd_failover_config_mismatch", pair=PAIR_NAME) == 0
    # ... and the comparison had the LDAP section to compare: each side's sync view carries it
    view = api(backup, "10.98.0.2", f"/api/v1/failover-pairs/{PAIR_NAME}/sync-view", token)
    assert "ldap" in json.dumps(view) and DIR_IP in json.dumps(view), json.dumps(view)[:3000]

    for mac, address in first.items():
        wait_for(lambda: address in backup.leased(), 10, what=f"{mac}'s lease in the backup's store")

    # -- the main is gone: the backup serves, asking the same directory
    seen = len(state_lines(backup))
    main.stop()
    wait_for(lambda: reached(backup, "COMMUNICATIONS-INTERRUPTED", seen), 20,
             what="the backup in COMMUNICATIONS-INTERRUPTED")
    for mac in (STAFF_1, PRINTER):
        renewed = dhclient_renew(c, ifaces[mac])
        assert (renewed.address, renewed.server) == (first[mac], "10.98.0.2"), renewed.output
        got = class_options(lease_options(c, ifaces[mac]))
        assert got == OPTIONS_OF[CLASS_OF[mac]], f"{mac} ({CLASS_OF[mac]}) from the backup: {got}"
    # a client the main never saw: the backup's own lookup finds its class
    fresh = dhclient(c, ifaces[STAFF_2])
    assert fresh.server == "10.98.0.2", fresh.output
    got = class_options(lease_options(c, ifaces[STAFF_2]))
    assert got == OPTIONS_OF["staff"], f"{STAFF_2} (staff) from the backup: {got}"
    backup_text = metrics(backup, "10.98.0.2")
    assert (series(backup_text, "cnrd_ldap_lookups_total", result="found") or 0) >= 1, backup_text[-3000:]
