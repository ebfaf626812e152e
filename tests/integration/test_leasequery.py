"""DHCPLEASEQUERY (RFC 4388) to a cnrd failover pair, and to the backup alone once the main is gone.

    lan (bridge 10.98.0.0/24) ── main   10.98.0.1
                              ── backup 10.98.0.2
                              ── rel    10.98.0.3 ── down0 10.99.0.1/24 ── far (dhclient, udhcpc)
                              ── lq     10.98.0.5 (allowed), 10.98.0.6 (not allowed)

ISC dhcrelay ``-a`` in ``rel`` relays the far clients to both servers and
inserts option 82 (a circuit-id sub-option naming the interface the request
came in on: "down0").  ``lq`` stands for a relay agent that lost its table:
it sends DHCPLEASEQUERYs that scapy builds (an implementation of RFC 4388's
packets independent of cnrd) with giaddr set to its own address, and takes
the answers on port 67 there.

The seed, "DHCPLEASEQUERY and Failover": the main sends the relay-agent-info
(82) values to its partner in failover updates, so the backup can answer
DHCPLEASEQUERYs while the main is down.  So after kill -9 of the main, the
same queries to the backup must give the same answers, option 82 included.
Only relay agents in ``[server] leasequery-allow`` are answered; a query
from another address gets nothing and is counted in /metrics.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Lab, Netns, dhclient, dhcrelay, isc_dhcpd, isc_lease_states, read_log, udhcpc, \
    wait_for
from tests.integration.lab import Lease as LabLease
from tests.integration.test_failover_pair import reached, state_lines

MAIN_IP, BACKUP_IP, RELAY_UP, RELAY_DOWN = "10.98.0.1", "10.98.0.2", "10.98.0.3", "10.99.0.1"
ALLOWED, NOT_ALLOWED = "10.98.0.5", "10.98.0.6"
ISC_IP = "10.98.0.12"  # ISC dhcpd as the secondary, in the last test
DOWNSTREAM = "down0"  # the relay's client-side bridge: dhcrelay -a's circuit-id
CLIENT_ID = bytes.fromhex("ff00000017000100012b3c4d5e0011223344")  # an RFC 4361-style identifier
HOST, VENDOR = "lq-host-b", "lq-vendor-b"

PAIR = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@
leasequery-allow = {allowed}, 10.97.0.0/24

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149

[scope far]
subnet = 10.99.0.0/24
ranges = 10.99.0.100-10.99.0.149

[failover-pair examplepair]
main = {main}
backup = {backup}
failover = true
mclt = 600
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""

# Run inside ``lq``: sends each query from SRC:67 with giaddr SRC to SERVER:67
# and prints the answers as JSON.  Bounded: TRIES sends of WAIT seconds each.
QUERIER = r"""
import json, socket, sys, time
from scapy.layers.dhcp import BOOTP, DHCP, DHCPOptions

spec = json.loads(sys.argv[1])
codes = {}
for code, opt in DHCPOptions.items():
    codes[opt if isinstance(opt, str) else opt.name] = code

def to_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return value.to_bytes(4, "big")
    if isinstance(value, str):
        try:
            return socket.inet_aton(value)
        except OSError:
            return value.encode()
    raise TypeError(repr(value))

def packet(q, xid):
    mac = bytes.fromhex(q.get("mac", ""))
    opts = [("message-type", 10), ("param_req_list", [1, 12, 51, 54, 60, 61, 82, 91, 92])]
    if "client_id" in q:
        opts.append(("client_id", bytes.fromhex(q["client_id"])))
    boot = BOOTP(op=1, htype=1 if mac else 0, hlen=len(mac), xid=xid,
                 ciaddr=q.get("ciaddr", "0.0.0.0"), giaddr=spec["src"], chaddr=mac + bytes(16 - len(mac)))
    return bytes(boot / DHCP(options=opts + ["end"]))

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((spec["src"], 67))
out = {}
for n, q in enumerate(spec["queries"]):
    xid = 0x4C510000 + n
    got = None
    for _ in range(spec["tries"]):
        sock.sendto(packet(q, xid), (spec["server"], 67))
        end = time.monotonic() + spec["wait"]
        while got is None and time.monotonic() < end:
            sock.settimeout(max(end - time.monotonic(), 0.01))
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                break
            reply = BOOTP(data)
            if reply.xid != xid or DHCP not in reply:
                continue
            options = {}
            for item in reply[DHCP].options:
                if isinstance(item, tuple):
                    name, *values = item
                    options[str(codes.get(name, name))] = b"".join(to_bytes(v) for v in values).hex()
            got = {"type": int(options.pop("53"), 16), "ciaddr": reply.ciaddr, "from": peer[0],
                   "chaddr": bytes(reply.chaddr)[:reply.hlen].hex(), "options": options, "at": time.time()}
        if got is not None:
            break
    out[q["name"]] = got
print(json.dumps(out))
"""

LEASEACTIVE, LEASEUNASSIGNED, LEASEUNKNOWN = 13, 11, 12  # RFC 4388 §6.1


@dataclass
class Site:
    """The namespaces, interfaces and the two cnrd servers of the module's picture."""

    lab: Lab
    lan: Netns
    rel: Netns
    far: Netns
    lq: Netns
    main_if: str
    backup_if: str
    up: str
    main: CnrdProcess
    backup: CnrdProcess
    querier: Path

    def relay_clients(self, servers: list[str]) -> tuple[LabLease, LabLease]:
        """ISC dhcrelay -a to ``servers``; a dhclient and a udhcpc (client-id, host name,
        vendor class) behind it bound.  Their leases."""
        dhcrelay(self.rel, DOWNSTREAM, self.up, servers)
        _, a_if = self.lab.link(self.rel, self.far, a_bridge=DOWNSTREAM)
        _, b_if = self.lab.link(self.rel, self.far, a_bridge=DOWNSTREAM)
        a = dhclient(self.far, a_if)
        b = udhcpc(self.far, b_if, extra=["-C", "-x", f"0x3d:{CLIENT_ID.hex()}", "-x", f"hostname:{HOST}",
                                          "-V", VENDOR])
        for lease in (a, b):
            assert ipaddress.ip_address(lease.address) in ipaddress.ip_network("10.99.0.0/24"), lease
        assert a.address != b.address
        return a, b


@pytest.fixture
def site(lab):
    lan = lab.netns("lan")
    lab.bridge(lan, "br0")
    m, b, rel, far, lq = (lab.netns(n) for n in ("main", "backup", "rel", "far", "lq"))
    _, mif = lab.link(lan, m, a_bridge="br0", b_addr=f"{MAIN_IP}/24")
    _, bif = lab.link(lan, b, a_bridge="br0", b_addr=f"{BACKUP_IP}/24")
    _, up = lab.link(lan, rel, a_bridge="br0", b_addr=f"{RELAY_UP}/24")
    _, lqif = lab.link(lan, lq, a_bridge="br0", b_addr=f"{ALLOWED}/24")
    lq.run("ip", "addr", "add", f"{NOT_ALLOWED}/24", "dev", lqif)
    lab.bridge(rel, DOWNSTREAM, addr=f"{RELAY_DOWN}/24")
    rel.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    for ns in (m, b):
        ns.run("ip", "route", "add", "10.99.0.0/24", "via", RELAY_UP)
    cfg = dict(main=MAIN_IP, backup=BACKUP_IP, allowed=ALLOWED)
    main = CnrdProcess(m, PAIR.format(name="main", iface=mif, **cfg), name="main")
    backup = CnrdProcess(b, PAIR.format(name="backup", iface=bif, **cfg), name="backup")
    querier = lab.path("querier.py")
    querier.write_text(QUERIER)
    return Site(lab, lan, rel, far, lq, mif, bif, up, main, backup, querier)


def ask(lq, querier, server: str, queries: list[dict], *, src: str = ALLOWED, tries: int = 3,
        wait: float = 2.0) -> dict:
    spec = {"src": src, "server": server, "queries": queries, "tries": tries, "wait": wait}
    out = lq.run(sys.executable, querier, json.dumps(spec), timeout=30 + len(queries) * tries * wait).stdout
    return json.loads(out.strip().splitlines()[-1])


def drops_not_allowed(proc: CnrdProcess) -> int:
    """cnrd_leasequery_drops_total{reason="leasequery-not-allowed"} from the server's /metrics."""
    text = proc.ns.run("curl", "-s", "--max-time", "5", "http://127.0.0.1:8067/metrics").stdout
    m = re.search(r'^cnrd_leasequery_drops_total\{[^}]*reason="leasequery-not-allowed"[^}]*\} (\S+)$', text, re.M)
    assert m, f"no leasequery-not-allowed counter in {proc.name}'s /metrics:\n{text[:3000]}"
    return int(float(m.group(1)))


def circuit_id(agent_info: bytes) -> bytes | None:
    """Sub-option 1 of an option 82 value (RFC 3046 §2.0)."""
    i = 0
    while i + 2 <= len(agent_info):
        code, length = agent_info[i], agent_info[i + 1]
        if code == 1:
            return agent_info[i + 2 : i + 2 + length]
        i += 2 + length
    return None


def test_leasequery_by_ip_mac_and_client_id_answered_alike_by_the_backup_with_the_main_dead(site):
    main, backup, lq, querier = site.main, site.backup, site.lq, site.querier
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 40, what="both NORMAL")
    a, b = site.relay_clients([MAIN_IP, BACKUP_IP])
    a_mac = site.far.mac(a.iface).replace(":", "")

    # Both leases, with the relay's option 82, on the backup before the main goes.
    def on_backup() -> bool:
        got = {str(ipaddress.ip_address(l.address)): l for l in backup.leases() if l.state.name == "LEASED"}
        return all(addr in got and got[addr].relay_info for addr in (a.address, b.address))

    wait_for(on_backup, 15, what="both leases with option 82 in the backup's store")

    queries = [
        {"name": "by-ip", "ciaddr": a.address},
        {"name": "by-mac", "mac": a_mac},
        {"name": "by-client-id", "client_id": CLIENT_ID.hex()},
        {"name": "free", "ciaddr": "10.99.0.149"},
        {"name": "not-ours", "ciaddr": "192.0.2.7"},
    ]
    before = ask(lq, querier, MAIN_IP, queries)
    check_answers(before, a.address, a_mac, b.address, MAIN_IP)

    # Not in leasequery-allow: nothing comes back, and the main counts it.
    dropped = drops_not_allowed(main)
    refused = ask(lq, querier, MAIN_IP, queries[:1], src=NOT_ALLOWED, tries=1)
    assert refused == {"by-ip": None}
    wait_for(lambda: drops_not_allowed(main) > dropped, 10, what="the main to count the refused query")

    main.kill9()
    assert main.proc.poll() is not None
    after = ask(lq, querier, BACKUP_IP, queries)
    check_answers(after, a.address, a_mac, b.address, BACKUP_IP)
    for name in ("by-ip", "by-mac", "by-client-id"):
        m, k = before[name], after[name]
        assert (k["type"], k["ciaddr"], k["chaddr"]) == (m["type"], m["ciaddr"], m["chaddr"]), name
        for code in ("82", "61", "12", "60"):
            assert k["options"].get(code) == m["options"].get(code), (name, code)
        # The same lease end: the backup holds the expiration the main sent it.
        ends = [r["at"] + int(r["options"]["51"], 16) for r in (m, k)]
        assert abs(ends[0] - ends[1]) <= 2, (name, ends)
    for name in ("free", "not-ours"):
        assert after[name]["type"] == before[name]["type"], name

    dropped = drops_not_allowed(backup)
    assert ask(lq, querier, BACKUP_IP, queries[:1], src=NOT_ALLOWED, tries=1) == {"by-ip": None}
    wait_for(lambda: drops_not_allowed(backup) > dropped, 10, what="the backup to count the refused query")


def check_answers(got: dict, a_addr: str, a_mac: str, b_addr: str, server: str) -> None:
    """What RFC 4388 §6.4 says each query's answer is, from ``server``."""
    for name in ("by-ip", "by-mac", "by-client-id", "free", "not-ours"):
        assert got.get(name) is not None, f"{server} did not answer {name}: {got}"
        assert got[name]["from"] == server
    for name in ("by-ip", "by-mac"):
        r = got[name]
        assert r["type"] == LEASEACTIVE, (name, r)
        assert (r["ciaddr"], r["chaddr"]) == (a_addr, a_mac), (name, r)
        assert circuit_id(bytes.fromhex(r["options"]["82"])) == DOWNSTREAM.encode(), (name, r)
        assert int(r["options"]["51"], 16) > 0 and "91" in r["options"], (name, r)
        assert r["options"].get("54") == bytes(map(int, server.split("."))).hex(), (name, r)
    r = got["by-client-id"]
    assert r["type"] == LEASEACTIVE and r["ciaddr"] == b_addr, r
    assert bytes.fromhex(r["options"]["61"]) == CLIENT_ID, r
    assert bytes.fromhex(r["options"]["12"]) == HOST.encode(), r
    assert bytes.fromhex(r["options"]["60"]) == VENDOR.encode(), r
    assert circuit_id(bytes.fromhex(r["options"]["82"])) == DOWNSTREAM.encode(), r
    assert got["free"]["type"] == LEASEUNASSIGNED, got["free"]
    assert got["not-ours"]["type"] == LEASEUNKNOWN, got["not-ours"]


ISC_SECONDARY = """
authoritative;
default-lease-time 3600; max-lease-time 3600;
failover peer "examplepair" {{
  secondary;
  address {me}; port 647; peer address {peer}; peer port 647;
  max-response-delay 6; max-unacked-updates 10; load balance max seconds 3;
}}
subnet 10.98.0.0 netmask 255.255.255.0 {{
  pool {{ failover peer "examplepair"; range 10.98.0.100 10.98.0.149; }}
}}
subnet 10.99.0.0 netmask 255.255.255.0 {{
  pool {{ failover peer "examplepair"; range 10.99.0.100 10.99.0.149; }}
}}
"""


def test_isc_secondary_takes_the_bndupds_that_carry_the_clients_options(site):
    """ISC dhcpd 4.4 parses client-request-options as opaque bytes: the
    BNDUPDs that carry a relayed client's option 82, host name and vendor
    class must reach it on the wire, be acknowledged, not refused, and not
    cost the link."""
    isc_ns = site.lab.netns("isc")
    _, isc_if = site.lab.link(site.lan, isc_ns, a_bridge="br0", b_addr=f"{ISC_IP}/24")
    isc_ns.run("ip", "route", "add", "10.99.0.0/24", "via", RELAY_UP)
    main = CnrdProcess(site.main.ns, PAIR.format(name="main", iface=site.main_if, main=MAIN_IP, backup=ISC_IP,
                                                 allowed=ALLOWED), name="main-isc")
    capture = site.lab.path("failover.pcap")
    dump = main.ns.popen("tcpdump", "-i", site.main_if, "-U", "-w", capture, "tcp", "port", "647",
                         name="tcpdump")
    main.start()
    isc = isc_dhcpd(isc_ns, ISC_SECONDARY.format(me=ISC_IP, peer=MAIN_IP), isc_if)
    wait_for(lambda: reached(main, "NORMAL") and "peer moves from recover-done to normal" in read_log(isc), 60,
             what="cnrd main and ISC secondary NORMAL")
    normal_at = len(state_lines(main))
    leases = site.relay_clients([MAIN_IP, ISC_IP])
    for lease in leases:
        wait_for(lambda: isc_lease_states(isc.lease_file).get(lease.address) == "active", 15,
                 what=f"{lease.address} active in ISC's lease file")
    stored = {str(ipaddress.ip_address(l.address)): l for l in main.leases()}
    assert all(stored[lease.address].relay_info for lease in leases), "the main stored no option 82"
    assert "bndack-reject" not in main.log(), main.log()[-3000:]
    assert state_lines(main)[normal_at:] == [], "cnrd left NORMAL while updating ISC"
    assert "FAILOVER:" not in read_log(isc), read_log(isc)[-3000:]
    main.ns.stop(dump)
    # On the wire to ISC: client-request-options (code 8) = cookie + options,
    # with option 82 holding the relay's circuit-id, the host name and the vendor class.
    # Either server may have opened the connection the pair uses: take what the main sent.
    to_isc = b"".join(bytes(p[TCP].payload) for p in rdpcap(str(capture))
                      if TCP in p and p[IP].src == MAIN_IP and bytes(p[TCP].payload))
    assert to_isc, "no failover bytes captured"
    cookie = bytes((99, 130, 83, 99))
    at = to_isc.find(cookie)
    assert at >= 4 and to_isc[at - 4 : at - 2] == b"\x00\x08", "no client-request-options sent to ISC"
    agent = bytes([82, 2 + len(DOWNSTREAM), 1, len(DOWNSTREAM)]) + DOWNSTREAM.encode()
    assert agent in to_isc, "option 82 with the relay's circuit-id not sent to ISC"
    assert bytes([12, len(HOST)]) + HOST.encode() in to_isc
    assert bytes([60, len(VENDOR)]) + VENDOR.encode() in to_isc
