"""The real ``twistd cnrd`` serving real DHCP clients in network namespaces.

Topology::

    cli (c1..cN veths) ──┐
    perf 10.1.0.3, 10.3.0.1 ─┤ br0 in srv, 10.1.0.1/24 ── cnrd
    rel 10.1.0.2 ────────┘         routes 10.2/24 via 10.1.0.2, 10.3/22 via 10.1.0.3
    rel 10.2.0.1 ── far (client behind ISC dhcrelay)
"""

from __future__ import annotations

import ipaddress
import sys

import pytest

from tests.integration.cnrd_proc import CnrdProcess, config
from tests.integration.lab import (
    dhclient,
    dhclient_release,
    dhclient_renew,
    dhcpcd,
    dhcrelay,
    perfdhcp,
    random_mac_base,
    udhcpc,
    wait_for,
)

SCOPES = """
[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.199

[scope far]
subnet = 10.2.0.0/24
ranges = 10.2.0.100-10.2.0.150

[scope perf]
subnet = 10.3.0.0/22
ranges = 10.3.0.10-10.3.3.250
"""


@pytest.fixture
def net(lab):
    """The server namespace with a bridge, and a namespace for direct clients."""
    srv = lab.netns("srv")
    br = lab.bridge(srv, "br0", addr="10.1.0.1/24")
    cli = lab.netns("cli")
    server = CnrdProcess(srv, config(br, SCOPES))
    return lab, srv, br, cli, server


def client_if(lab, srv, br, cli):
    _, ifname = lab.link(srv, cli, a_bridge=br)
    return ifname


def no_address_shared(server: CnrdProcess) -> None:
    leased = [l for l in server.leases() if l.state.name == "LEASED"]
    clients = [l.key for l in leased]
    assert len(clients) == len(set(clients)), "a client holds two leased addresses"


def test_dhclient_udhcpc_dhcpcd_get_distinct_leases(net):
    lab, srv, br, cli, server = net
    server.start()
    ifs = [client_if(lab, srv, br, cli) for _ in range(3)]
    got = {
        "dhclient": dhclient(cli, ifs[0]).address,
        "udhcpc": udhcpc(cli, ifs[1]).address,
        "dhcpcd": dhcpcd(cli, ifs[2]).address,
    }
    assert len(set(got.values())) == 3, got
    for addr in got.values():
        assert ipaddress.ip_address(addr) in ipaddress.ip_network("10.1.0.0/24")
        assert 100 <= int(addr.rsplit(".", 1)[1]) <= 199
    leased = server.leased()
    assert set(got.values()) <= set(leased), leased
    # each address is recorded for the MAC of the interface that got it
    assert leased[got["dhclient"]] == cli.mac(ifs[0])
    no_address_shared(server)


def test_renew_keeps_address_and_release_frees_it(net):
    lab, srv, br, cli, server = net
    server.start()
    ifname = client_if(lab, srv, br, cli)
    first = dhclient(cli, ifname)
    again = dhclient_renew(cli, ifname)
    assert again.address == first.address
    released = dhclient_release(cli, ifname)
    assert released.released == first.address
    wait_for(lambda: first.address not in server.leased(), 5, what="the release to reach the store")
    states = {l.address: l.state.name for l in server.leases()}
    assert "RELEASED" in states.values()
    # udhcpc's release path (SIGTERM with -R)
    other = client_if(lab, srv, br, cli)
    u = udhcpc(cli, other)
    assert u.address in server.leased()


def test_lease_survives_kill_9_and_client_keeps_address(net):
    lab, srv, br, cli, server = net
    server.start()
    ifname = client_if(lab, srv, br, cli)
    lease = dhclient(cli, ifname)
    server.kill9()
    assert lease.address in server.leased()  # on disk after the crash
    server.start()
    assert "loaded 1 leases" in server.log()
    again = dhclient_renew(cli, ifname)
    assert again.address == lease.address
    # a new client after the restart gets a different address
    other = dhclient(cli, client_if(lab, srv, br, cli))
    assert other.address != lease.address


def test_client_behind_isc_dhcrelay_gets_far_scope_with_option_82(net):
    lab, srv, br, cli, server = net
    rel = lab.netns("rel")
    far = lab.netns("far")
    up_srv, up = lab.link(srv, rel, a_bridge=br, b_addr="10.1.0.2/24")
    down, far_if = lab.link(rel, far, a_addr="10.2.0.1/24")
    srv.run("ip", "route", "add", "10.2.0.0/24", "via", "10.1.0.2")
    rel.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    server.start()
    dhcrelay(rel, down, up, "10.1.0.1")
    lease = dhclient(far, far_if)
    assert ipaddress.ip_address(lease.address) in ipaddress.ip_network("10.2.0.0/24")
    rec = [l for l in server.leases() if l.state.name == "LEASED"]
    assert len(rec) == 1 and rec[0].scope == "far"
    assert rec[0].relay_info, "option 82 from dhcrelay -a should be recorded"


def test_perfdhcp_few_hundred_clients_no_duplicates(net):
    lab, srv, br, cli, server = net
    perf = lab.netns("perf")
    _, perf_if = lab.link(srv, perf, a_bridge=br, b_addr="10.1.0.3/24")
    # perfdhcp sends out of the interface owning its giaddr
    perf.run("ip", "addr", "add", "10.3.0.1/22", "dev", perf_if)
    srv.run("ip", "route", "add", "10.3.0.0/22", "via", "10.1.0.3")
    server.start()
    res = perfdhcp(perf, "10.3.0.1", "10.1.0.1", rate=150, duration=4, clients=300,
                   mac_base=random_mac_base())
    assert res.ra.received > 200, res.raw
    leased = server.leased()
    perf_leases = {a: m for a, m in leased.items() if a.startswith("10.3.")}
    assert len(perf_leases) >= res.ra.received * 0.9 or len(perf_leases) >= 250, res.raw
    assert len(set(perf_leases.values())) == len(perf_leases), "one MAC holds two addresses"
    no_address_shared(server)


FLOOD = r"""
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
end = time.monotonic() + float(sys.argv[3])
n = 0
while n < int(sys.argv[2]) and time.monotonic() < end:
    # half garbage, half truncated BOOTREQUESTs: all must be counted and dropped
    s.sendto(os.urandom(64) if n % 2 else b"\x01\x01\x06\x00" + os.urandom(100), ("10.1.0.1", 67))
    n += 1
print(n)
"""


def test_flood_beyond_max_dhcp_requests_is_dropped_and_server_survives(net):
    lab, srv, br, cli, server = net
    server = CnrdProcess(srv, config(br, SCOPES, "max-dhcp-requests = 20\nstats-interval = 1"))
    perf = lab.netns("perf")
    _, perf_if = lab.link(srv, perf, a_bridge=br, b_addr="10.1.0.3/24")
    perf.run("ip", "addr", "add", "10.3.0.1/22", "dev", perf_if)
    srv.run("ip", "route", "add", "10.3.0.0/22", "via", "10.1.0.3")
    server.start()
    flood = lab.path("flood.py")
    flood.write_text(FLOOD)
    garbage = perf.popen(sys.executable, flood, "10.1.0.3", "200000", "4", name="flood")
    res = perfdhcp(perf, "10.3.0.1", "10.1.0.1", rate=20000, duration=3, clients=900,
                   mac_base=random_mac_base())
    garbage.wait(timeout=20)
    assert server.proc.poll() is None, server.log()
    # still serving after the flood
    lease = dhclient(cli, client_if(lab, srv, br, cli))
    assert lease.address in server.leased()
    wait_for(lambda: "malformed=" in server.log() and "overload=" in server.log(), 5,
             what="drop counters in the stats log line")
    assert res.ra.received > 0
    no_address_shared(server)
