"""Many failover relationships on one cnrd server: CNR 7.2's back-office and
symmetrical scenarios, with real ``twistd cnrd`` processes in namespaces.

The servers share one server LAN; the clients sit on two networks behind an
ISC dhcrelay that forwards every request to every server, so each server hears
every client and must answer only where its relationship says it serves::

    srv (bridge) 10.90.0.0/24 ── server namespaces 10.90.0.1, .2, .3
                              ── relay 10.90.0.254 ── net1 (bridge) 10.91.0.1/24 ── c1 (dhclient)
                                                   ── net2 (bridge) 10.92.0.1/24 ── c2 (dhclient)

Scope s1 is 10.91.0.0/24 and scope s2 10.92.0.0/24, each with 20 addresses
and backup-pct 20, so the backup of each pair holds 4 of them.  Back-office:
main M1 (s1) and main M2 (s2) share the backup B, whose one INI has both
pairs.  Symmetrical: X is main of pairA (s1) and backup of pairB (s2), Y the
reverse.  Every relationship uses port 647 at the servers' single addresses.

Which server answered a client is read from the server identifier in
dhclient's lease file (behind a relay the reply's source is the relay), and
confirmed by that server's lease store.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import time
from dataclasses import dataclass

from cnrd.failover import wire as w
from cnrd.text import int_to_ip
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import (
    Lab,
    Lease,
    Netns,
    _dhclient_files,
    dhclient,
    dhcrelay,
    wait_for,
)
from tests.integration.test_cnrctl_pair import cnrctl

SRV_NET = "10.90.0"
RELAY_UP = f"{SRV_NET}.254"
#: scope name -> (the first three octets of its /24, the relay's bridge there)
NETS = {"s1": ("10.91.0", "net1"), "s2": ("10.92.0", "net2")}
#: the backup's share of each scope: backup-pct 20 of the 20 addresses
BACKUP_SHARE = 4

SERVER = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600
"""

SCOPE = """
[scope {name}]
subnet = {net}.0/24
ranges = {net}.100-{net}.119
"""

PAIR = """
[failover-pair {name}]
main = {main}
backup = {backup}
scopes = {scopes}
mclt = 30
backup-pct = 20
failover-poll-interval = 2
failover-poll-timeout = 6
"""


def ini(name: str, iface: str, scopes: list[str], pairs: list[tuple[str, str, str, str]]) -> str:
    """A server's INI: ``scopes`` by name, ``pairs`` as (name, main, backup, scopes)."""
    text = SERVER.format(name=name, iface=iface)
    text += "".join(SCOPE.format(name=s, net=NETS[s][0]) for s in scopes)
    text += "".join(PAIR.format(name=n, main=m, backup=b, scopes=s) for n, m, b, s in pairs)
    return text


@dataclass
class Site:
    """The server LAN, the relay and the client namespaces of one test."""

    lab: Lab
    servers: dict[str, tuple[Netns, str]]  # name -> (namespace, interface on the server LAN)
    relay: Netns
    relay_up: str
    clients: dict[str, Netns]  # scope -> the namespace its clients live in
    addresses: list[str]  # the servers' addresses, where the relay forwards


def build_site(lab: Lab, servers: dict[str, str]) -> Site:
    """Namespaces and links for ``servers`` (name -> address on the server LAN);
    the relay is started by :func:`start_relay` once the servers run."""
    lan = lab.netns("srv")
    br = lab.bridge(lan, "br0")
    out: dict[str, tuple[Netns, str]] = {}
    for name, addr in servers.items():
        ns = lab.netns(name)
        _, iface = lab.link(lan, ns, a_bridge=br, b_addr=f"{addr}/24")
        for net, _ in NETS.values():
            # replies to a relayed request go to its giaddr
            ns.run("ip", "route", "add", f"{net}.0/24", "via", RELAY_UP)
        out[name] = (ns, iface)
    relay = lab.netns("relay")
    _, up = lab.link(lan, relay, a_bridge=br, b_addr=f"{RELAY_UP}/24")
    clients = {}
    for scope, (net, bridge) in NETS.items():
        lab.bridge(relay, bridge, addr=f"{net}.1/24")
        clients[scope] = lab.netns(f"c{scope[1:]}")
    return Site(lab, out, relay, up, clients, list(servers.values()))


def start_relay(site: Site) -> None:
    """dhcrelay from both client networks to every server."""
    for scope in NETS:  # a port on each bridge before dhcrelay looks at it
        site.lab.link(site.relay, site.clients[scope], a_bridge=NETS[scope][1])
    dhcrelay(site.relay, [b for _, b in NETS.values()], site.relay_up, site.addresses)


def new_client(site: Site, scope: str) -> Lease:
    """A fresh client (a new interface, so a new MAC) on ``scope``'s network, bound by dhclient."""
    ns = site.clients[scope]
    _, iface = site.lab.link(site.relay, ns, a_bridge=NETS[scope][1])
    lease = dhclient(ns, iface)
    assert lease.address is not None
    assert ipaddress.ip_address(lease.address) in ipaddress.ip_network(f"{NETS[scope][0]}.0/24"), lease.output
    return lease


def server_id(site: Site, scope: str, lease: Lease) -> str:
    """The server identifier of the ACK the client is bound by (its lease file)."""
    lease_file, _, _ = _dhclient_files(site.clients[scope], lease.iface)
    ids = re.findall(r"option dhcp-server-identifier (\S+);", lease_file.read_text())
    assert ids, f"no server identifier in {lease_file}"
    return ids[-1]


def mac_of(site: Site, scope: str, lease: Lease) -> str:
    return site.clients[scope].mac(lease.iface)


# -- reading a server ---------------------------------------------------------------

def related(proc: CnrdProcess) -> dict[str, dict]:
    """``cnrctl dhcp getRelatedServers``, by pair name."""
    rows = json.loads(cnrctl(proc, "--json", "dhcp", "getRelatedServers").stdout)["related-servers"]
    return {r["pair"]: r for r in rows}


def pair_states(proc: CnrdProcess) -> dict[str, object]:
    """Each pair's state as ``GET /failover-pairs`` (``cnrctl failover-pair list``) gives it."""
    rows = json.loads(cnrctl(proc, "--json", "failover-pair", "list").stdout)["failover-pairs"]
    return {p["name"]: p.get("state") for p in rows}


def all_normal(proc: CnrdProcess, pairs: set[str]) -> bool:
    rel = related(proc)
    return set(rel) == pairs and all(
        r["state"] == "NORMAL" and r["partner-state"] == "NORMAL" and r["communication"] == "OK"
        for r in rel.values())


FETCH = "import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=10).read().decode())"


def metric(proc: CnrdProcess, name: str, default: float | None = None, **labels: str) -> float:
    """One sample of the server's ``GET /metrics``."""
    text = proc.ns.run(sys.executable, "-c", FETCH, "http://127.0.0.1:8067/metrics").stdout
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    if default is not None:
        return default
    raise AssertionError(f"no {name}{labels} in {proc.name}'s /metrics:\n{text}")


def received_updates(proc: CnrdProcess, pair: str) -> float:
    return metric(proc, "cnrd_failover_bndupd_received_total", pair=pair)


def backup_drops(proc: CnrdProcess) -> float:
    return metric(proc, "cnrd_dhcp_drops_total", 0.0, reason="failover-normal-backup")


def backup_addresses(proc: CnrdProcess, scope: str) -> set[str]:
    """The addresses in ``scope`` that the server's store holds in state BACKUP."""
    return {int_to_ip(l.address) for l in proc.leases()
            if l.state.name == "BACKUP" and l.scope == scope}


def listeners_647(proc: CnrdProcess) -> list[str]:
    """The TCP listeners on port 647 in the server's namespace (``ss -tlnp``)."""
    out = proc.ns.run("ss", "-Htlnp", "sport = :647").stdout
    return [line for line in out.splitlines() if line.strip()]


def one_listener(proc: CnrdProcess, addr: str) -> None:
    rows = listeners_647(proc)
    assert len(rows) == 1, f"{proc.name}: {len(rows)} listeners on 647:\n" + "\n".join(rows)
    assert f"{addr}:647" in rows[0] and f"pid={proc.proc.pid}," in rows[0], rows[0]


def served(site: Site, scope: str, lease: Lease, by: CnrdProcess, addr: str,
           replica: CnrdProcess | None) -> None:
    """``lease`` came from ``by`` (at ``addr``) and, with a partner in touch, is in ``replica``'s store too."""
    assert server_id(site, scope, lease) == addr
    mac = mac_of(site, scope, lease)
    assert by.leased().get(lease.address) == mac
    if replica is not None:
        wait_for(lambda: replica.leased().get(lease.address) == mac, 15,
                 what=f"{lease.address} leased to {mac} in {replica.name}'s store")
        rec = [l for l in replica.leases() if int_to_ip(l.address) == lease.address]
        assert rec and rec[0].scope == scope


# -- the back-office scenario ------------------------------------------------------

M1, M2, B = f"{SRV_NET}.1", f"{SRV_NET}.2", f"{SRV_NET}.3"
BACK_OFFICE_PAIRS = {"pair1", "pair2"}


def back_office(lab: Lab) -> tuple[Site, CnrdProcess, CnrdProcess, CnrdProcess]:
    """M1, M2 and their shared backup B, started, with both relationships NORMAL on B."""
    site = build_site(lab, {"m1": M1, "m2": M2, "b": B})
    pair1, pair2 = ("pair1", M1, B, "s1"), ("pair2", M2, B, "s2")
    m1 = CnrdProcess(site.servers["m1"][0], ini("m1", site.servers["m1"][1], ["s1"], [pair1]), name="m1")
    m2 = CnrdProcess(site.servers["m2"][0], ini("m2", site.servers["m2"][1], ["s2"], [pair2]), name="m2")
    b = CnrdProcess(site.servers["b"][0], ini("b", site.servers["b"][1], ["s1", "s2"], [pair1, pair2]),
                    name="b")
    t0 = time.monotonic()
    for proc in (b, m1, m2):
        proc.start()
    wait_for(lambda: all_normal(b, BACK_OFFICE_PAIRS), 45, interval=0.5, what="pair1 and pair2 NORMAL on B")
    wait_for(lambda: all_normal(m1, {"pair1"}) and all_normal(m2, {"pair2"}), 15, interval=0.5,
             what="each main NORMAL in its pair")
    print(f"back office: both relationships NORMAL on B after {time.monotonic() - t0:.1f} s")
    return site, m1, m2, b


def test_back_office_two_mains_share_one_backup(lab):
    site, m1, m2, b = back_office(lab)
    rel = related(b)
    assert {n: (r["role"], r["our-address"], r["partner-address"]) for n, r in rel.items()} == \
        {"pair1": ("backup", B, M1), "pair2": ("backup", B, M2)}
    assert pair_states(b) == {"pair1": "NORMAL", "pair2": "NORMAL"}
    printed = cnrctl(b, "dhcp", "getRelatedServers").stdout
    assert f"failover-pair pair1: partner {M1}\n" in printed and f"failover-pair pair2: partner {M2}\n" in printed
    print(f"--- B: cnrctl dhcp getRelatedServers ---\n{printed}", end="")
    one_listener(b, B)

    # Each main gives B its share of its own scope only.
    wait_for(lambda: len(backup_addresses(b, "s1")) == BACKUP_SHARE == len(backup_addresses(b, "s2")), 15,
             what=f"{BACKUP_SHARE} BACKUP addresses of s1 and of s2 in B's store")
    b_share_s1 = backup_addresses(b, "s1")
    start_relay(site)

    # A client of s1 is served by M1; B hears it and stays silent; the binding
    # reaches B over pair1 and nothing arrives over pair2.
    upd = {p: received_updates(b, p) for p in BACK_OFFICE_PAIRS}
    drops = backup_drops(b)
    c1 = new_client(site, "s1")
    served(site, "s1", c1, m1, M1, replica=b)
    assert received_updates(b, "pair1") > upd["pair1"]
    assert received_updates(b, "pair2") == upd["pair2"]
    assert backup_drops(b) > drops, "B never heard the s1 client: the test proves nothing about its silence"

    upd = {p: received_updates(b, p) for p in BACK_OFFICE_PAIRS}
    drops = backup_drops(b)
    c2 = new_client(site, "s2")
    served(site, "s2", c2, m2, M2, replica=b)
    assert received_updates(b, "pair2") > upd["pair2"]
    assert received_updates(b, "pair1") == upd["pair1"]
    assert backup_drops(b) > drops
    assert metric(b, "cnrd_dhcp_packets_sent_total", type="ACK") == 0

    # M1 dies: pair1 on B is interrupted, pair2 is untouched.
    pair2_since = related(b)["pair2"]["state-since"]
    m1.kill9()
    wait_for(lambda: related(b)["pair1"]["state"] == "COMMUNICATIONS-INTERRUPTED", 20, interval=0.5,
             what="pair1 COMMUNICATIONS-INTERRUPTED on B")
    rel = related(b)
    assert rel["pair1"]["communication"] == "INTERRUPTED"
    assert (rel["pair2"]["state"], rel["pair2"]["communication"], rel["pair2"]["state-since"]) == \
        ("NORMAL", "OK", pair2_since)
    assert pair_states(b) == {"pair1": "COMMUNICATIONS-INTERRUPTED", "pair2": "NORMAL"}

    # B answers s1's clients from its own share; M2 still answers s2's.
    c3 = new_client(site, "s1")
    served(site, "s1", c3, b, B, replica=None)
    assert c3.address in b_share_s1, f"{c3.address} is not one of B's addresses {sorted(b_share_s1)}"
    c4 = new_client(site, "s2")
    served(site, "s2", c4, m2, M2, replica=b)

    # setPartnerDown: a partner in touch is refused, by name or by address;
    # M1's address acts on pair1 alone.
    for partner in ("pair2", M2):
        r = cnrctl(b, "dhcp", "setPartnerDown", partner, check=False)
        assert (r.returncode, r.stderr) == (1, "cnrctl: partner is in touch (state NORMAL)\n"), r
    out = cnrctl(b, "dhcp", "setPartnerDown", M1).stdout
    assert out.startswith("failover-pair pair1: PARTNER-DOWN (partner down since 20"), out
    rel = related(b)
    assert rel["pair1"]["state"] == "PARTNER-DOWN"
    assert (rel["pair2"]["state"], rel["pair2"]["state-since"]) == ("NORMAL", pair2_since)
    c5 = new_client(site, "s1")
    served(site, "s1", c5, b, B, replica=None)


# -- an unknown relationship name ---------------------------------------------------

# Connect from SRC to DST:647, send the payload, read until the server closes
# (at most 10 s); print what happened as JSON.
INJECT = r"""
import json, socket, sys
src, dst, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
out = {"connected": False, "got": "", "eof": False, "error": None}
s = socket.socket()
try:
    s.bind((src, 0))
    s.settimeout(10)
    s.connect((dst, 647))
    out["connected"] = True
    s.sendall(payload)
    got = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            out["eof"] = True
            break
        got += chunk
    out["got"] = got.hex()
except OSError as e:
    out["error"] = f"{type(e).__name__}: {e}"
    out["got"] = locals().get("got", b"").hex()
print(json.dumps(out))
"""


def connect_message(name: str) -> bytes:
    """A primary's CONNECT for relationship ``name``, as cnrd or ISC would send it."""
    return w.encode(w.connect(4711, int(time.time()), relationship_name=name, max_unacked=10, receive_timer=6,
                              vendor_class="cnrd-test", mclt=30, hba=w.hba_from_split(128)))


def inject(ns: Netns, src: str, dst: str, payload: bytes) -> tuple[dict, list[w.Message]]:
    """Send ``payload`` from ``src`` (in ``ns``) to ``dst``:647; what happened, and the messages received."""
    cp = ns.run(sys.executable, "-c", INJECT, src, dst, payload.hex(), timeout=30)
    out = json.loads(cp.stdout)
    try:
        messages = w.Framer(strict=False).feed(bytes.fromhex(out["got"]))
    except w.FailoverWireError as e:
        messages = e.preceding
    return out, messages


def closed(out: dict) -> bool:
    """The server ended the connection (a close or a reset), rather than the injector giving up."""
    return out["eof"] or (out["error"] or "").startswith(("ConnectionResetError", "BrokenPipeError"))


def refuses_unknown_name(ns: Netns, src: str, dst: str) -> None:
    """A CONNECT naming no relationship of ``dst``'s, sent from ``src``, gets CONNECTACK
    reject 8 carrying the name it did not know, and the server closes."""
    out, msgs = inject(ns, src, dst, connect_message("nosuchpair"))
    print(f"unknown name from {src} to {dst}: {out}; {msgs}")
    assert out["connected"] and closed(out), out
    assert [m.type for m in msgs] == [w.MessageType.CONNECTACK], (out, msgs)
    assert int(msgs[0].reject_reason) == w.RejectReason.INVALID_PARTNER == 8
    assert msgs[0].relationship_name == "nosuchpair"


def test_connect_naming_an_unknown_relationship_is_rejected_and_the_others_stay_normal(lab):
    site, m1, m2, b = back_office(lab)
    m1_ns = site.servers["m1"][0]
    before = {n: r["state-since"] for n, r in related(b).items()}
    transitions = {p: metric(b, "cnrd_failover_state_transitions_total", pair=p) for p in BACK_OFFICE_PAIRS}

    # From M1's own address (a configured partner, its relationship up).
    refuses_unknown_name(m1_ns, M1, B)

    # From M1's address naming M2's relationship: never accepted.
    out, msgs = inject(m1_ns, M1, B, connect_message("pair2"))
    print(f"pair2 from M1's address: {out}; {msgs}")
    assert out["connected"] and closed(out), out
    accepted = [m for m in msgs if m.type == w.MessageType.CONNECTACK and m.reject_reason is None]
    assert not accepted and not [m for m in msgs if m.type == w.MessageType.STATE], msgs

    # From an address that is nobody's partner (the relay's): closed
    # unanswered, maybe even before connect() returns.
    out, msgs = inject(site.relay, RELAY_UP, B, connect_message("pair1"))
    print(f"pair1 from a stranger: {out}; {msgs}")
    assert closed(out), out
    assert msgs == [], msgs

    # Both relationships stayed up throughout, on B and on their mains.
    assert all_normal(b, BACK_OFFICE_PAIRS)
    assert {n: r["state-since"] for n, r in related(b).items()} == before
    assert {p: metric(b, "cnrd_failover_state_transitions_total", pair=p) for p in BACK_OFFICE_PAIRS} == transitions
    assert all_normal(m1, {"pair1"}) and all_normal(m2, {"pair2"})


# -- the symmetrical scenario -------------------------------------------------------

X, Y = f"{SRV_NET}.1", f"{SRV_NET}.2"
SYM_PAIRS = [("pairA", X, Y, "s1"), ("pairB", Y, X, "s2")]


def test_symmetrical_each_server_main_of_one_pair_and_backup_of_the_other(lab):
    site = build_site(lab, {"x": X, "y": Y})
    x = CnrdProcess(site.servers["x"][0], ini("x", site.servers["x"][1], ["s1", "s2"], SYM_PAIRS), name="x")
    y = CnrdProcess(site.servers["y"][0], ini("y", site.servers["y"][1], ["s1", "s2"], SYM_PAIRS), name="y")
    t0 = time.monotonic()
    x.start()
    y.start()
    wait_for(lambda: all_normal(x, {"pairA", "pairB"}) and all_normal(y, {"pairA", "pairB"}), 45, interval=0.5,
             what="pairA and pairB NORMAL on X and on Y")
    print(f"symmetrical: both relationships NORMAL on both servers after {time.monotonic() - t0:.1f} s")
    for proc, me, other in ((x, X, Y), (y, Y, X)):
        rel = related(proc)
        roles = {n: (r["role"], r["our-address"], r["partner-address"]) for n, r in rel.items()}
        assert roles == {"pairA": ("main" if me == X else "backup", me, other),
                         "pairB": ("backup" if me == X else "main", me, other)}, roles
        assert pair_states(proc) == {"pairA": "NORMAL", "pairB": "NORMAL"}
        one_listener(proc, me)
    print(f"--- X: cnrctl dhcp getRelatedServers ---\n{cnrctl(x, 'dhcp', 'getRelatedServers').stdout}", end="")

    # Both relationships have the same partner: a CONNECT is routed by its
    # name, and a name neither carries is refused without touching them.
    since = {p.name: {n: r["state-since"] for n, r in related(p).items()} for p in (x, y)}
    refuses_unknown_name(y.ns, Y, X)
    refuses_unknown_name(x.ns, X, Y)
    assert all_normal(x, {"pairA", "pairB"}) and all_normal(y, {"pairA", "pairB"})
    assert {p.name: {n: r["state-since"] for n, r in related(p).items()} for p in (x, y)} == since

    # Each server is the backup of the other's scope.
    wait_for(lambda: len(backup_addresses(y, "s1")) == BACKUP_SHARE == len(backup_addresses(x, "s2")), 15,
             what=f"{BACKUP_SHARE} BACKUP addresses of s1 at Y and of s2 at X")
    x_share_s2 = backup_addresses(x, "s2")
    start_relay(site)

    drops = backup_drops(y)
    a = new_client(site, "s1")
    served(site, "s1", a, x, X, replica=y)
    assert backup_drops(y) > drops, "Y never heard the s1 client"
    drops = backup_drops(x)
    bc = new_client(site, "s2")
    served(site, "s2", bc, y, Y, replica=x)
    assert backup_drops(x) > drops, "X never heard the s2 client"

    # Y dies: both of X's relationships are interrupted, and X answers both
    # scopes: s1 from the main's addresses, s2 from its share as pairB's backup.
    y_share_s1 = backup_addresses(y, "s1")
    y.kill9()
    wait_for(lambda: {r["state"] for r in related(x).values()} == {"COMMUNICATIONS-INTERRUPTED"}, 20,
             interval=0.5, what="both pairs COMMUNICATIONS-INTERRUPTED on X")
    b2 = new_client(site, "s2")
    served(site, "s2", b2, x, X, replica=None)
    assert b2.address in x_share_s2, f"{b2.address} is not one of X's addresses {sorted(x_share_s2)}"
    a2 = new_client(site, "s1")
    served(site, "s1", a2, x, X, replica=None)
    assert a2.address not in y_share_s1, f"{a2.address} is one of Y's addresses {sorted(y_share_s1)}"

    # Declaring pairB's partner down by name acts on pairB alone; by Y's
    # address, on every pair with that partner.
    pair_a_since = related(x)["pairA"]["state-since"]
    out = cnrctl(x, "dhcp", "setPartnerDown", "pairB").stdout
    assert out.startswith("failover-pair pairB: PARTNER-DOWN (partner down since 20"), out
    rel = related(x)
    assert (rel["pairB"]["state"], rel["pairA"]["state"], rel["pairA"]["state-since"]) == \
        ("PARTNER-DOWN", "COMMUNICATIONS-INTERRUPTED", pair_a_since)
    out = cnrctl(x, "dhcp", "setPartnerDown", Y).stdout
    assert out.startswith("failover-pair pairA: PARTNER-DOWN (partner down since 20"), out
    assert {n: r["state"] for n, r in related(x).items()} == {"pairA": "PARTNER-DOWN", "pairB": "PARTNER-DOWN"}
    served(site, "s2", new_client(site, "s2"), x, X, replica=None)
