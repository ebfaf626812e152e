"""Reference check of the lab harness, with ISC dhcpd as the server.

These tests prove that lab.py and its client helpers (dhclient, udhcpc,
dhcpcd, perfdhcp, dhcrelay) work on this machine, independently of cnrd:
when a cnrd integration test fails, run these to tell a harness problem
from a server problem.
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess

import pytest

from tests.integration.lab import (
    Lab,
    _list_netns,
    _pid_alive,
    _read_pidfile,
    dhclient,
    dhclient_release,
    dhclient_renew,
    dhcpcd,
    dhcrelay,
    isc_dhcpd,
    isc_lease_states,
    perfdhcp,
    random_mac_base,
    read_log,
    udhcpc,
    udhcpc_release,
    wait_for,
)

LAN = ipaddress.ip_network("10.66.0.0/24")
POOL = (ipaddress.ip_address("10.66.0.100"), ipaddress.ip_address("10.66.0.200"))

LAN_CONF = """\
authoritative;
default-lease-time 600;
max-lease-time 600;
subnet 10.66.0.0 netmask 255.255.255.0 {
    range 10.66.0.100 10.66.0.200;
    option routers 10.66.0.1;
}
"""


def in_pool(addr: str | None) -> bool:
    return addr is not None and POOL[0] <= ipaddress.ip_address(addr) <= POOL[1]


def lan(lab: Lab, nclients: int, conf: str = LAN_CONF, extra_ifaces=()):
    """Server namespace with 10.66.0.1/24 on a bridge, a client namespace with
    ``nclients`` veths on that bridge, ISC dhcpd serving the bridge."""
    srv = lab.netns("srv")
    cli = lab.netns("cli")
    br = lab.bridge(srv, "br0", addr="10.66.0.1/24")
    ifaces = [lab.link(srv, cli, a_bridge=br)[1] for _ in range(nclients)]
    dhcpd = isc_dhcpd(srv, conf, [br, *extra_ifaces])
    return srv, cli, ifaces, dhcpd


def test_three_clients_get_addresses(lab):
    srv, cli, (if1, if2, if3), dhcpd = lan(lab, 3)

    a = dhclient(cli, if1)
    b = udhcpc(cli, if2)
    c = dhcpcd(cli, if3)

    for lease in (a, b, c):
        assert in_pool(lease.address), lease
        assert lease.server == "10.66.0.1", lease
    assert len({a.address, b.address, c.address}) == 3
    # the hooks put the address on the interface (dhcpcd configures it itself)
    assert f"{a.address}/24" in cli.ipv4_addresses(if1)
    assert f"{b.address}/24" in cli.ipv4_addresses(if2)
    assert f"{c.address}/24" in cli.ipv4_addresses(if3)
    log = read_log(dhcpd)
    assert log.count("DHCPACK on") >= 3


def test_dhclient_renew_keeps_address_and_release_frees_it(lab):
    srv, cli, (if1,), dhcpd = lan(lab, 1)

    first = dhclient(cli, if1)
    assert in_pool(first.address)

    again = dhclient_renew(cli, if1)
    assert again.address == first.address
    assert f"DHCPREQUEST for {first.address}" in again.output
    assert "DHCPDISCOVER" not in again.output  # INIT-REBOOT, not a new lease

    rel = dhclient_release(cli, if1)
    assert rel.returncode == 0
    assert rel.released == first.address
    assert cli.ipv4_addresses(if1) == []
    wait_for(lambda: isc_lease_states(dhcpd.lease_file).get(first.address) == "free",
             5, what=f"dhcpd to mark {first.address} free")
    assert f"DHCPRELEASE of {first.address}" in read_log(dhcpd)


def test_udhcpc_release(lab):
    srv, cli, (if1,), dhcpd = lan(lab, 1)

    lease = udhcpc_release(cli, if1)
    assert in_pool(lease.address)
    assert lease.released == lease.address
    wait_for(lambda: isc_lease_states(dhcpd.lease_file).get(lease.address) == "free",
             5, what=f"dhcpd to mark {lease.address} free")


def test_perfdhcp_gets_responses(lab):
    conf = LAN_CONF + """\
subnet 10.77.0.0 netmask 255.255.255.0 {
    range 10.77.0.10 10.77.0.250;
}
"""
    srv = lab.netns("srv")
    perf = lab.netns("perf")
    br = lab.bridge(srv, "br0", addr="10.66.0.1/24")
    srv_if, _ = lab.link(srv, perf, a_addr="10.77.0.1/24", b_addr="10.77.0.2/24")
    isc_dhcpd(srv, conf, [br, srv_if])

    res = perfdhcp(perf, "10.77.0.2", "10.77.0.1", rate=50, duration=3, clients=200,
                   mac_base=random_mac_base())

    assert res.returncode in (0, 3), res.raw
    assert res.do.sent >= 100, res.raw
    assert res.do.received >= 0.9 * res.do.sent, res.raw
    assert res.ra.received >= 0.9 * res.ra.sent > 0, res.raw
    assert res.rate is not None and res.rate > 20, res.raw
    assert res.received == res.do.received + res.ra.received


def test_dhcrelay_relays_dhclient(lab):
    conf = """\
authoritative;
default-lease-time 600;
max-lease-time 600;
subnet 10.99.0.0 netmask 255.255.255.0 { }
subnet 10.88.0.0 netmask 255.255.255.0 {
    range 10.88.0.100 10.88.0.150;
    option routers 10.88.0.1;
}
"""
    srv = lab.netns("srv")
    rly = lab.netns("rly")
    cli = lab.netns("cli")
    srv_if, rly_up = lab.link(srv, rly, a_addr="10.99.0.1/24", b_addr="10.99.0.2/24")
    rly_down, cli_if = lab.link(rly, cli, a_addr="10.88.0.1/24")
    srv.run("ip", "route", "add", "10.88.0.0/24", "via", "10.99.0.2")
    dhcpd = isc_dhcpd(srv, conf, srv_if)
    relay = dhcrelay(rly, rly_down, rly_up, "10.99.0.1")

    lease = dhclient(cli, cli_if)

    assert ipaddress.ip_address(lease.address) in ipaddress.ip_network("10.88.0.0/24")
    assert f"DHCPACK on {lease.address}" in read_log(dhcpd)
    assert "via 10.88.0.1" in read_log(dhcpd)
    assert relay.poll() is None


def test_lab_cleans_up_after_an_error():
    with pytest.raises(RuntimeError, match="boom"):
        with Lab() as lab:
            srv, cli, (if1,), dhcpd = lan(lab, 1)
            lease = dhclient(cli, if1)
            daemon = _read_pidfile(lab.path(f"dhclient-cli-{if1}.pid"))
            assert daemon and _pid_alive(daemon)
            sleeper = cli.popen("sleep", "300")
            names = [srv.name, cli.name]
            tmp = lab.dir
            raise RuntimeError("boom")
    assert lease.ok
    assert not set(names) & set(_list_netns())
    assert dhcpd.poll() is not None and sleeper.poll() is not None
    assert not _pid_alive(daemon)
    assert not tmp.exists()


def test_stop_escalates_to_sigkill(lab):
    ns = lab.netns("x")
    # a process that ignores SIGTERM
    proc = ns.popen("sh", "-c", "trap '' TERM; echo ready; exec sleep 60")
    wait_for(lambda: "ready" in read_log(proc), 5, what="sh to start")
    assert ns.stop(proc, signal.SIGTERM, timeout=0.5) == -signal.SIGKILL
    with pytest.raises(subprocess.CalledProcessError, match="false"):
        ns.run("false")
