"""RFC conformance through relays, on the wire, against the real ``twistd cnrd``.

Topology::

    lan (bridge br0 10.98.0.0/24) ── srv  10.98.0.1  cnrd
                                  ── rel  10.98.0.3 ── down0 10.99.0.1/24 ── far (dhclients)
                                  ── sr   10.98.0.5, 10.96.0.1 (a scripted relay agent)

``rel`` runs ISC dhcrelay ``-a`` (giaddr 10.99.0.1, option 82 with a
circuit-id).  ``sr`` stands for a relay agent whose packets scapy builds
(an encoder independent of cnrd): giaddr 10.96.0.1, option 82 carrying the
RFC 3527 link-selection sub-option (5) naming 10.95.0.0/24, a network no
giaddr names, and the RFC 5107 server-identifier-override sub-option (11).
The answers are read back as raw bytes and decoded here.

Checked: dhclient behind dhcrelay bound in the giaddr's scope, with and
without ``send dhcp-client-identifier`` (RFC 6842: OFFER and ACK carry the
client's option 61 exactly, and none when it sent none — on the captured
wire); link selection picks the scope and the reply still goes to giaddr
with option 82 whole; the override is option 54 and a REQUEST naming it is
ACKed; a relayed DHCPINFORM is answered to giaddr without lease times and
adds no lease, one without ciaddr is dropped and counted in /metrics; a
DHCPRELEASE from another client-id is counted and leaves the lease; a
dhclient INIT-REBOOTing to a server that lost its records gets no answer,
or a NAK when ``[server] authoritative = true``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP
from scapy.utils import rdpcap

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Lab, Netns, _dhclient_run, _dhclient_stop_daemon, dhclient, dhcrelay, wait_for

SRV_IP, RELAY_UP, RELAY_DOWN = "10.98.0.1", "10.98.0.3", "10.99.0.1"
SR_LAN, SR_GIADDR = "10.98.0.5", "10.96.0.1"
LINK = "10.95.0.1"  # named by sub-option 5 only
OVERRIDE = "10.95.0.1"  # sub-option 11: the address the client will talk to
DOWNSTREAM = "down0"
CLIENT_ID = bytes.fromhex("ff00000042000100012b3c4d5e0011223355")  # RFC 4361-style

CONFIG = """
[server]
name = conformance
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600
option.routers = 10.98.0.1
option.domain-name-servers = 10.98.0.1

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149

[scope far]
subnet = 10.99.0.0/24
ranges = 10.99.0.100-10.99.0.149

[scope relaynet]
subnet = 10.96.0.0/24
ranges = 10.96.0.100-10.96.0.149

[scope linksel]
subnet = 10.95.0.0/24
ranges = 10.95.0.100-10.95.0.149
"""

# Run inside ``sr``: for each packet of the spec, sends it from GIADDR:67 to
# SERVER:67 and waits for the answer with its xid.  Prints the answers as
# JSON, options as hex of the raw bytes.  Bounded: TRIES sends of WAIT s each.
SENDER = r"""
import json, socket, sys, time
from scapy.layers.dhcp import BOOTP, DHCP

spec = json.loads(sys.argv[1])

def packet(q, xid):
    mac = bytes.fromhex(q["mac"])
    opts = [("message-type", q["type"])]
    for code, value in q.get("options", []):
        opts.append((code, bytes.fromhex(value)))
    boot = BOOTP(op=1, htype=1, hlen=6, xid=xid, ciaddr=q.get("ciaddr", "0.0.0.0"),
                 giaddr=q.get("giaddr", spec["src"]), chaddr=mac + bytes(10))
    raw = bytes(boot / DHCP(options=[o for o in opts if isinstance(o[0], str)] + ["end"]))
    # Numeric options are written by hand, after message-type, before end.
    extra = b"".join(bytes([c, len(v)]) + v for c, v in opts if isinstance(c, int))
    at = raw.rindex(b"\xff")
    return raw[:at] + extra + raw[at:]

def options(data):
    out, i = {}, 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        n = data[i + 1]
        out[str(code)] = data[i + 2:i + 2 + n].hex()
        i += 2 + n
    return out

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((spec["src"], 67))
out = {}
for n, q in enumerate(spec["packets"]):
    xid = 0x5C0F0000 + n
    got = None
    for _ in range(q.get("tries", spec["tries"])):
        sock.sendto(packet(q, xid), (spec["server"], 67))
        end = time.monotonic() + spec["wait"]
        while got is None and time.monotonic() < end:
            sock.settimeout(max(end - time.monotonic(), 0.01))
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                break
            reply = BOOTP(data)
            if reply.xid != xid or len(data) < 240 or data[236:240] != bytes((99, 130, 83, 99)):
                continue
            o = options(data)
            got = {"type": int(o.pop("53"), 16), "yiaddr": reply.yiaddr, "ciaddr": reply.ciaddr,
                   "from": peer[0], "port": peer[1], "options": o}
        if got is not None:
            break
    out[q["name"]] = got
print(json.dumps(out))
"""


def ip_hex(address: str) -> str:
    return ipaddress.ip_address(address).packed.hex()


def sub(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def metric(ns: Netns, name: str, reason: str) -> int:
    """One labelled counter from cnrd's /metrics (0 when the series is absent)."""
    text = ns.run("curl", "-s", "--max-time", "5", "http://127.0.0.1:8067/metrics").stdout
    assert f"# TYPE {name}" in text, f"no {name} in /metrics:\n{text[:2000]}"
    m = re.search(rf'^{name}\{{[^}}]*reason="{reason}"[^}}]*\}} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


class Site:
    """The namespaces of the module's picture and the cnrd process."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.srv = lab.netns("srv")
        lab.bridge(self.srv, "br0", addr=f"{SRV_IP}/24")
        self.rel, self.far, self.sr = (lab.netns(n) for n in ("rel", "far", "sr"))
        _, self.up = lab.link(self.srv, self.rel, a_bridge="br0", b_addr=f"{RELAY_UP}/24")
        _, sr_if = lab.link(self.srv, self.sr, a_bridge="br0", b_addr=f"{SR_LAN}/24")
        self.sr.run("ip", "addr", "add", f"{SR_GIADDR}/24", "dev", sr_if)
        lab.bridge(self.rel, DOWNSTREAM, addr=f"{RELAY_DOWN}/24")
        self.rel.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.srv.run("ip", "route", "add", "10.99.0.0/24", "via", RELAY_UP)
        self.srv.run("ip", "route", "add", "10.96.0.0/24", "via", SR_LAN)
        self.cnrd = CnrdProcess(self.srv, CONFIG.format(iface="br0"))
        self.sender = lab.path("sender.py")
        self.sender.write_text(SENDER)

    def send(self, packets: list[dict], *, tries: int = 3, wait: float = 2.0) -> dict:
        spec = {"src": SR_GIADDR, "server": SRV_IP, "packets": packets, "tries": tries, "wait": wait}
        out = self.sr.run(sys.executable, self.sender, json.dumps(spec),
                          timeout=30 + len(packets) * tries * wait).stdout
        return json.loads(out.strip().splitlines()[-1])

    def leases_by_address(self) -> dict[str, object]:
        return {str(ipaddress.ip_address(l.address)): l for l in self.cnrd.leases()}


@pytest.fixture
def site(lab):
    return Site(lab)


def _in(address: str | None, net: str) -> bool:
    return address is not None and ipaddress.ip_address(address) in ipaddress.ip_network(net)


def test_dhclient_behind_dhcrelay_with_and_without_client_id_echo_on_the_wire(site):
    capture = site.lab.path("relay.pcap")
    dump = site.srv.popen("tcpdump", "-i", "br0", "-U", "-n", "-w", capture, "udp", "port", "67",
                          name="tcpdump")
    site.cnrd.start()
    dhcrelay(site.rel, DOWNSTREAM, site.up, [SRV_IP])
    _, plain_if = site.lab.link(site.rel, site.far, a_bridge=DOWNSTREAM)
    _, cid_if = site.lab.link(site.rel, site.far, a_bridge=DOWNSTREAM)
    plain = dhclient(site.far, plain_if)
    conf = site.lab.path("dhclient-cid.conf")
    quoted = ":".join(f"{b:02x}" for b in CLIENT_ID)
    conf.write_text(f"send dhcp-client-identifier {quoted};\n")
    with_cid = _dhclient_run(site.far, cid_if, ("-cf", str(conf)), 20)
    assert with_cid.ok, with_cid.output
    for lease in (plain, with_cid):
        assert _in(lease.address, "10.99.0.0/24"), lease  # giaddr's scope
    assert plain.address != with_cid.address
    stored = site.leases_by_address()
    assert stored[with_cid.address].client_id == CLIENT_ID
    assert stored[plain.address].client_id is None
    assert stored[plain.address].relay_info  # dhcrelay -a's option 82 kept with the lease
    wait_for(lambda: len(rdpcap(str(capture))) >= 8, 10, what="8 DHCP packets captured")
    site.srv.stop(dump)
    requests: dict[int, bytes | None] = {}
    replies: list[tuple[int, int, bytes | None]] = []
    for pkt in rdpcap(str(capture)):
        if BOOTP not in pkt:
            continue
        raw = bytes(pkt[BOOTP])
        opts = _raw_options(raw)
        if raw[0] == 1:
            requests[int.from_bytes(raw[4:8], "big")] = opts.get(61)
        elif opts.get(53) in (b"\x02", b"\x05"):
            replies.append((int.from_bytes(raw[4:8], "big"), opts[53][0], opts.get(61)))
            assert opts.get(54) == ipaddress.ip_address(SRV_IP).packed, opts
            assert int.from_bytes(raw[24:28], "big") == int(ipaddress.ip_address(RELAY_DOWN))  # giaddr
    assert len(replies) >= 4, replies  # an OFFER and an ACK for each client
    echoed = [r for r in replies if r[2] is not None]
    assert {r[1] for r in echoed} == {2, 5}, replies  # OFFER and ACK both carry it
    for xid, _, cid in replies:
        assert xid in requests, f"reply with xid {xid:#x} for no captured request"
        assert cid == requests[xid], (hex(xid), cid, requests[xid])  # exactly as received, or absent
    assert CLIENT_ID in {r[2] for r in echoed}

    # A RELEASE of the client-id client's address with its chaddr but another
    # client-id: not its client (RFC 2131 §4.2), so ignored and counted.
    before = metric(site.srv, "cnrd_dhcp_drops_total", "release-identity-mismatch")
    mac = site.far.mac(cid_if).replace(":", "")
    site.send([{"name": "release", "type": 7, "mac": mac, "ciaddr": with_cid.address, "giaddr": "0.0.0.0",
                "options": [[54, ip_hex(SRV_IP)], [61, "ff0bad0bad"]], "tries": 1}], tries=1, wait=0.5)
    wait_for(lambda: metric(site.srv, "cnrd_dhcp_drops_total", "release-identity-mismatch") > before, 10,
             what="the mismatched release counted")
    kept = site.leases_by_address()[with_cid.address]
    assert kept.state.name == "LEASED" and kept.client_id == CLIENT_ID


def _raw_options(raw: bytes) -> dict[int, bytes]:
    out, i = {}, 240
    while i < len(raw) and raw[i] != 255:
        if raw[i] == 0:
            i += 1
            continue
        out[raw[i]] = raw[i + 2 : i + 2 + raw[i + 1]]
        i += 2 + raw[i + 1]
    return out


def test_scripted_relay_link_selection_override_and_inform(site):
    site.cnrd.start()
    agent = sub(1, b"sr-port-1") + sub(5, ipaddress.ip_address(LINK).packed) \
        + sub(11, ipaddress.ip_address(OVERRIDE).packed)
    plain_agent = sub(1, b"sr-port-2")
    mac_a, mac_b = "02c0ff000001", "02c0ff000002"
    got = site.send([
        {"name": "offer", "type": 1, "mac": mac_a, "options": [[82, agent.hex()]]},
        {"name": "giaddr-offer", "type": 1, "mac": mac_b, "options": [[82, plain_agent.hex()]]},
    ])
    offer, plain = got["offer"], got["giaddr-offer"]
    assert offer is not None and offer["type"] == 2, got
    assert _in(offer["yiaddr"], "10.95.0.0/24"), offer  # sub-option 5's network, not giaddr's
    assert (offer["from"], offer["port"]) == (SRV_IP, 67)  # to giaddr, from the server itself
    assert offer["options"]["54"] == ip_hex(OVERRIDE)
    assert offer["options"]["82"] == agent.hex()  # echoed whole
    assert plain is not None and _in(plain["yiaddr"], "10.96.0.0/24"), plain  # giaddr's scope
    assert plain["options"]["54"] == ip_hex(SRV_IP)

    got = site.send([
        {"name": "ack", "type": 3, "mac": mac_a,
         "options": [[50, ip_hex(offer["yiaddr"])], [54, ip_hex(OVERRIDE)], [82, agent.hex()]]},
    ])
    ack = got["ack"]
    assert ack is not None and ack["type"] == 5 and ack["yiaddr"] == offer["yiaddr"], got
    assert ack["options"]["54"] == ip_hex(OVERRIDE) and ack["options"]["82"] == agent.hex()
    lease = site.leases_by_address()[offer["yiaddr"]]
    assert lease.state.name == "LEASED" and lease.scope == "linksel"

    # DHCPINFORM through the relay: to giaddr, no lease times, no lease made.
    before = site.leases_by_address()
    dropped = metric(site.srv, "cnrd_dhcp_drops_total", "inform-without-ciaddr")
    got = site.send([
        {"name": "inform", "type": 8, "mac": "02c0ff000003", "ciaddr": "10.96.0.77",
         "options": [[55, "0103060f333a3b"], [82, plain_agent.hex()]]},
        {"name": "no-ciaddr", "type": 8, "mac": "02c0ff000004", "options": [[82, plain_agent.hex()]],
         "tries": 1},
    ], wait=1.5)
    inform = got["inform"]
    assert inform is not None and inform["type"] == 5, got
    assert (inform["from"], inform["port"]) == (SRV_IP, 67)
    assert inform["yiaddr"] == "0.0.0.0" and inform["ciaddr"] == "10.96.0.77"
    assert not {"51", "58", "59"} & set(inform["options"]), inform
    assert inform["options"]["3"] == ip_hex("10.98.0.1")
    assert got["no-ciaddr"] is None
    wait_for(lambda: metric(site.srv, "cnrd_dhcp_drops_total", "inform-without-ciaddr") > dropped, 10,
             what="the INFORM without ciaddr counted")
    after = site.leases_by_address()
    assert "10.96.0.77" not in after
    assert {a: (l.state, l.hw) for a, l in after.items()} == {a: (l.state, l.hw) for a, l in before.items()}


@pytest.mark.parametrize("authoritative", [False, True])
def test_init_reboot_unknown_to_a_fresh_server_is_nak_only_when_authoritative(site, authoritative):
    """RFC 2131 §4.3.2 with a real dhclient: it INIT-REBOOTs with a lease from a server
    that has since lost its records.  Not authoritative: no answer (the client
    falls back to DISCOVER after its reboot timeout); authoritative: a NAK."""
    old = site.cnrd.start()
    _, cif = site.lab.link(site.srv, site.far, a_bridge="br0")
    conf = site.lab.path("dhclient-reboot.conf")
    conf.write_text("reboot 4;\n")  # how long dhclient waits in INIT-REBOOT before DISCOVER
    first = _dhclient_run(site.far, cif, ("-cf", str(conf)), 20)
    assert first.ok and _in(first.address, "10.98.0.0/24"), first.output
    _dhclient_stop_daemon(site.far, cif)
    old.stop()
    fresh = CnrdProcess(site.srv, CONFIG.format(iface="br0").replace(
        "[server]\n", f"[server]\nauthoritative = {'true' if authoritative else 'false'}\n"), name="fresh")
    site.cnrd = fresh
    capture = site.lab.path("reboot.pcap")
    dump = site.srv.popen("tcpdump", "-i", "br0", "-U", "-n", "-w", capture, "udp", "port", "67",
                          name="tcpdump")
    fresh.start()
    again = _dhclient_run(site.far, cif, ("-cf", str(conf)), 30)
    assert again.ok, again.output
    assert re.search(rf"^DHCPREQUEST for {re.escape(first.address)} ", again.output, re.M), again.output
    silent = metric(site.srv, "cnrd_dhcp_drops_total", "init-reboot-unknown-client")
    wait_for(lambda: len(rdpcap(str(capture))) >= 2, 10, what="packets captured")
    site.srv.stop(dump)
    naks = 0
    reboot_requests = 0
    for pkt in rdpcap(str(capture)):
        if BOOTP not in pkt:
            continue
        raw = bytes(pkt[BOOTP])
        opts = _raw_options(raw)
        if raw[0] == 1 and opts.get(53) == b"\x03" and 54 not in opts and raw[12:16] == bytes(4):
            reboot_requests += 1
        if raw[0] == 2 and opts.get(53) == b"\x06":
            naks += 1
    assert reboot_requests >= 1  # the INIT-REBOOT REQUEST (no server id, no ciaddr) is on the wire
    if authoritative:
        assert naks >= 1 and "DHCPNAK" in again.output, again.output
        assert silent == 0
    else:
        assert naks == 0 and "DHCPNAK" not in again.output, again.output
        assert silent >= reboot_requests
    # Either way the client ends bound through DISCOVER.
    assert "DHCPDISCOVER" in again.output and _in(again.address, "10.98.0.0/24")
