"""Bulk leasequery (RFC 6926) against the real ``twistd cnrd``, from a relay's namespace.

Topology::

    rel 10.1.0.2 ── br0 in srv, 10.1.0.1/24 ── cnrd (leasequery-allow = 10.1.0.2)
    rel 10.2.0.1 (the relay's downstream address, giaddr; srv routes 10.2/24 via 10.1.0.2)
    odd 10.1.0.3 ── br0 (an address not allowed)

A relay agent written here with scapy binds three clients through cnrd,
inserting option 82 with a remote-id (RFC 3046 sub-option 2) and a
relay-id (RFC 6925 sub-option 12) per client; then a TCP client in the
relay's namespace asks cnrd over TCP 67 for the bindings of one remote-id,
of one relay-id and of every configured address, framing each message
with its two-octet length (RFC 6926 §6.1) itself.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.integration.cnrd_proc import CnrdProcess, config

SCOPES = """
[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.119

[scope far]
subnet = 10.2.0.0/24
ranges = 10.2.0.100-10.2.0.129
"""

CLIENTS = [
    ("020000000b01", "cm-1", "R1"),
    ("020000000b02", "cm-1", "R1"),
    ("020000000b03", "cm-2", "R2"),
]

# A relay agent (RFC 1542 / RFC 3046) for the clients given as JSON: each
# DISCOVER/REQUEST goes to the server from giaddr:67 with option 82, and the
# server's answers come back to giaddr:67.  Prints {mac: address}.
RELAY = r"""
import json, socket, sys, time
from scapy.layers.dhcp import BOOTP, DHCP
giaddr, server, clients = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((giaddr, 67))
s.settimeout(1.0)

def opt82(remote, relay):
    return bytes([1, 4]) + b"port" + bytes([2, len(remote)]) + remote.encode() + bytes([12, len(relay)]) + relay.encode()

def exchange(packet, xid, want):
    for attempt in range(5):
        s.sendto(bytes(packet), (server, 67))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(4096)
            except socket.timeout:
                break
            reply = BOOTP(data)
            opts = dict(o for o in reply[DHCP].options if isinstance(o, tuple) and len(o) == 2)
            if reply.xid == xid and opts.get("message-type") == want:
                return reply
    raise SystemExit(f"no message type {want} for xid {xid:#x}")

out = {}
for i, (mac, remote, relay) in enumerate(clients):
    xid, chaddr, o82 = 0x5100 + i, bytes.fromhex(mac), opt82(remote, relay)
    head = dict(op=1, htype=1, hlen=6, hops=1, xid=xid, giaddr=giaddr, chaddr=chaddr)
    offer = exchange(BOOTP(**head) / DHCP(options=[("message-type", "discover"),
                                                   ("relay_agent_information", o82), "end"]), xid, 2)
    ack = exchange(BOOTP(**head) / DHCP(options=[("message-type", "request"), ("requested_addr", offer.yiaddr),
                                                 ("server_id", server), ("relay_agent_information", o82), "end"]),
                   xid, 5)
    out[mac] = ack.yiaddr
print(json.dumps(out))
"""

# A bulk leasequery requestor: sends each query (JSON [xid, sub-option code
# or 0 for all, value]) on one TCP connection, reads until each one's
# DHCPLEASEQUERYDONE/STATUS, and prints every message it got as JSON.
REQUESTOR = r"""
import json, socket, struct, sys, time
from scapy.layers.dhcp import BOOTP, DHCP
server, queries = sys.argv[1], json.loads(sys.argv[2])
c = socket.create_connection((server, 67), timeout=10)
for xid, sub, value in queries:
    options = [("message-type", 14)]
    if sub:
        options.append(("relay_agent_information", bytes([sub, len(value)]) + value.encode()))
    q = bytes(BOOTP(op=1, xid=xid, hlen=0, htype=0) / DHCP(options=options + ["end"]))
    c.sendall(struct.pack("!H", len(q)) + q)
buf, got, finished = b"", [], set()
deadline = time.monotonic() + 30
while len(finished) < len(queries) and time.monotonic() < deadline:
    data = c.recv(65536)
    if not data:
        break
    buf += data
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
        size = struct.unpack_from("!H", buf)[0]
        p, buf = BOOTP(buf[2:2 + size]), buf[2 + size:]
        opts = {}
        for o in p[DHCP].options:
            if isinstance(o, tuple) and len(o) == 2:
                v = o[1]
                opts[str(o[0])] = v.hex() if isinstance(v, bytes) else str(v)
        mtype = int(opts["message-type"])
        if mtype in (15, 17):
            finished.add(p.xid)
        got.append({"xid": p.xid, "type": mtype, "ciaddr": p.ciaddr, "chaddr": bytes(p.chaddr)[:p.hlen].hex(),
                    "opts": opts})
print(json.dumps({"messages": got, "finished": sorted(finished)}))
"""

# A connection from an address leasequery-allow does not name: what comes back.
STRANGER = r"""
import socket, struct, sys
q = bytes(236) + b"\x63\x82\x53\x63\x35\x01\x0e\xff"
got = b""
try:
    # The server may reset the connection before connect() has even returned here.
    c = socket.create_connection((sys.argv[1], 67), timeout=10)
    c.sendall(struct.pack("!H", len(q)) + q)
    while True:
        data = c.recv(65536)
        if not data:
            break
        got += data
except (ConnectionResetError, BrokenPipeError):
    pass
print(len(got))
"""


def opt82(remote: str, relay: str) -> str:
    return (bytes([1, 4]) + b"port" + bytes([2, len(remote)]) + remote.encode()
            + bytes([12, len(relay)]) + relay.encode()).hex()


def metric(server: CnrdProcess, name: str, label: str, value: str) -> int:
    text = server.ns.run("curl", "-s", "--max-time", "5", "http://127.0.0.1:8067/metrics").stdout
    m = re.search(rf'^{name}\{{[^}}]*{label}="{value}"[^}}]*\}} (\S+)$', text, re.M)
    assert m, f"no {name}{{{label}={value!r}}} in /metrics:\n{text[:3000]}"
    return int(float(m.group(1)))


@pytest.fixture
def net(lab):
    srv = lab.netns("srv")
    br = lab.bridge(srv, "br0", addr="10.1.0.1/24")
    rel = lab.netns("rel")
    lab.link(srv, rel, a_bridge=br, b_addr="10.1.0.2/24")
    far = lab.netns("far")
    lab.link(rel, far, a_addr="10.2.0.1/24")
    srv.run("ip", "route", "add", "10.2.0.0/24", "via", "10.1.0.2")
    odd = lab.netns("odd")
    lab.link(srv, odd, a_bridge=br, b_addr="10.1.0.3/24")
    server = CnrdProcess(srv, config(br, SCOPES, "leasequery-allow = 10.1.0.2"))
    return lab, srv, rel, odd, server


def test_bulk_leasequery_by_remote_id_relay_id_and_all_from_the_relay(net):
    lab, srv, rel, odd, server = net
    server.start()
    assert "bulk leasequery: listening on TCP" in server.log()

    bound = json.loads(rel.run(sys.executable, "-c", RELAY, "10.2.0.1", "10.1.0.1", json.dumps(CLIENTS)).stdout)
    assert len(bound) == 3 and len(set(bound.values())) == 3, bound
    leased = server.leased()
    assert set(leased) == set(bound.values()), (leased, bound)

    queries = [[0x101, 2, "cm-1"], [0x102, 12, "R2"], [0x103, 0, ""]]
    out = json.loads(rel.run(sys.executable, "-c", REQUESTOR, "10.1.0.1", json.dumps(queries), timeout=60).stdout)
    assert out["finished"] == [0x101, 0x102, 0x103], out["finished"]
    by_xid: dict[int, list[dict]] = {}
    for m in out["messages"]:
        by_xid.setdefault(m["xid"], []).append(m)

    # remote-id cm-1: its two clients, each with the option 82 the relay inserted, then DONE.
    cm1 = by_xid[0x101]
    assert [m["type"] for m in cm1] == [13, 13, 15]
    assert {m["ciaddr"] for m in cm1[:2]} == {bound[mac] for mac, remote, _ in CLIENTS if remote == "cm-1"}
    for m in cm1[:2]:
        assert bound[m["chaddr"]] == m["ciaddr"]
        assert m["opts"]["relay_agent_information"] == opt82("cm-1", "R1")
        assert 0 < int(m["opts"]["lease_time"]) <= 3600

    # relay-id R2: the third client only.
    r2 = by_xid[0x102]
    assert [m["type"] for m in r2] == [13, 15]
    assert r2[0]["chaddr"] == "020000000b03" and r2[0]["ciaddr"] == bound["020000000b03"]
    assert r2[0]["opts"]["relay_agent_information"] == opt82("cm-2", "R2")

    # all: every configured address once, ACTIVE exactly where the store says leased.
    everything = by_xid[0x103]
    assert everything[-1]["type"] == 15 and [m["type"] for m in everything].count(15) == 1
    answered = [m["ciaddr"] for m in everything[:-1]]
    configured = {f"10.1.0.{n}" for n in range(100, 120)} | {f"10.2.0.{n}" for n in range(100, 130)}
    assert len(answered) == len(configured) and set(answered) == configured
    active = {m["ciaddr"] for m in everything if m["type"] == 13}
    assert active == set(leased)
    assert all(m["type"] == 11 for m in everything[:-1] if m["ciaddr"] not in active)

    assert metric(server, "cnrd_dhcp_packets_received_total", "type", "BULKLEASEQUERY") == 3
    assert metric(server, "cnrd_dhcp_packets_sent_total", "type", "LEASEQUERYDONE") == 3


def test_bulk_leasequery_from_an_address_not_allowed_gets_nothing_and_is_counted(net):
    lab, srv, rel, odd, server = net
    server.start()
    got = odd.run(sys.executable, "-c", STRANGER, "10.1.0.1", timeout=30).stdout.strip()
    assert got == "0"
    assert metric(server, "cnrd_dhcp_drops_total", "reason", "bulk-leasequery-not-allowed") == 1
    # The same query from the relay's address is answered: the refusal was the address, not the query.
    out = json.loads(rel.run(sys.executable, "-c", REQUESTOR, "10.1.0.1", json.dumps([[7, 0, ""]]),
                             timeout=60).stdout)
    assert out["finished"] == [7] and len(out["messages"]) == 20 + 30 + 1
