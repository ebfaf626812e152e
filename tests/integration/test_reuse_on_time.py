"""Issue 18 item 6 through the real ``twistd cnrd``: an address comes back the moment it may.

Topology::

    cli (veths) ── br0 in srv, 10.1.0.1/24 ── cnrd (one address: 10.1.0.100)

The expiry sweep is set to run once an hour (``expiry-interval = 3600``),
so what frees the address in these tests can only be the request that
arrives after the lease (or the DECLINE's hold) ran out.
"""

from __future__ import annotations

import sys
import time

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import dhclient, udhcpc, wait_for

ONLY = "10.1.0.100"

CONFIG = """
[server]
name = itest
interfaces = {br}
data-dir = @DATA@
expiry-interval = 3600

[policy default]
lease-time = {lease_time}
grace-period = 0
unavailable-timeout = 3
option.routers = 10.1.0.1

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.100
"""

# A DHCPDECLINE (RFC 2131 §4.4.1: ciaddr 0, option 50 the address, option 54
# the server) for ADDRESS from MAC, broadcast out of IFACE.  It carries the
# client-identifier udhcpc used (type 1 and the MAC, RFC 2132 §9.14): a
# DECLINE must identify the lease's client (RFC 2131 §4.2).  Built here with
# struct, not with cnrd's codec.
DECLINE = r"""
import socket, struct, sys
iface, mac, address, server = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3], sys.argv[4]
head = struct.pack("!BBBBIHHIIII16s64s128s", 1, 1, 6, 0, 0x18D0C0DE, 0, 0, 0, 0, 0, 0, mac, b"", b"")
opts = (b"\x63\x82\x53\x63" + b"\x35\x01\x04" + b"\x32\x04" + socket.inet_aton(address)
        + b"\x36\x04" + socket.inet_aton(server) + b"\x3d\x07\x01" + mac + b"\xff")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
s.sendto((head + opts).ljust(300, b"\0"), ("255.255.255.255", 67))
print("sent")
"""


@pytest.fixture
def net(lab):
    srv = lab.netns("srv")
    br = lab.bridge(srv, "br0", addr="10.1.0.1/24")
    cli = lab.netns("cli")
    return lab, srv, br, cli


def start(lab, srv, br, lease_time: int) -> CnrdProcess:
    return CnrdProcess(srv, CONFIG.format(br=br, lease_time=lease_time)).start()


def client_if(lab, srv, br, cli) -> str:
    _, ifname = lab.link(srv, cli, a_bridge=br)
    return ifname


def record(server: CnrdProcess):
    """The store's record of the only address: (state name, client MAC)."""
    for lease in server.leases():
        if lease.address == int.from_bytes(bytes(map(int, ONLY.split("."))), "big"):
            return lease.state.name, lease.hw[1:].hex(":")
    return None


def sleep_past(start: float, seconds: float) -> None:
    """Wait until ``seconds`` have passed since the monotonic time ``start`` (bounded by it)."""
    left = start + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)


def test_second_client_gets_the_only_address_4s_after_the_first_ack(net):
    """The issue's scenario: one address, lease-time 3, grace-period 0."""
    lab, srv, br, cli = net
    server = start(lab, srv, br, lease_time=3)
    first_if, second_if = client_if(lab, srv, br, cli), client_if(lab, srv, br, cli)
    # udhcpc -q quits once bound: it will not renew, so its lease runs out.
    first = udhcpc(cli, first_if)
    acked = time.monotonic()
    assert first.address == ONLY and first.lease_time == 3, first.output
    wait_for(lambda: record(server) == ("LEASED", cli.mac(first_if)), 10, what="the first lease in the store")
    sleep_past(acked, 4)
    # Run out, but nothing has touched it: the sweep is an hour away.
    assert record(server) == ("LEASED", cli.mac(first_if))
    second = dhclient(cli, second_if)
    assert second.address == ONLY, second.output
    wait_for(lambda: record(server) == ("LEASED", cli.mac(second_if)), 10, what="the second lease in the store")
    assert "no-address-available" not in server.log()


def test_declined_address_is_offered_again_after_unavailable_timeout(net):
    lab, srv, br, cli = net
    server = start(lab, srv, br, lease_time=3600)
    first_if, second_if = client_if(lab, srv, br, cli), client_if(lab, srv, br, cli)
    first = udhcpc(cli, first_if)
    assert first.address == ONLY, first.output
    out = cli.run(sys.executable, "-c", DECLINE, first_if, cli.mac(first_if), ONLY, "10.1.0.1").stdout
    assert out.strip() == "sent"
    declined = time.monotonic()
    wait_for(lambda: (record(server) or ("",))[0] == "UNAVAILABLE", 10, what="the DECLINE in the store")
    sleep_past(declined, 3)
    # The hold (unavailable-timeout 3 s) has run out; no sweep has run.
    assert record(server)[0] == "UNAVAILABLE"
    second = dhclient(cli, second_if)
    assert second.address == ONLY, second.output
    wait_for(lambda: record(server) == ("LEASED", cli.mac(second_if)), 10, what="the second lease in the store")
