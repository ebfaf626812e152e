"""The lease lines of the real ``twistd cnrd`` log as ISC dhcpd's syslog has them (issue 18 item 10).

Topology::

    cli (dhclient) ── veth ── br0 in srv, 10.1.0.1/24 ── cnrd

dhclient runs with its own configuration file, so what it sends is known:
a host name (option 12) and a client identifier (option 61).  The line an
operator greps for is dhcpd's "DHCPACK on <address> to <chaddr> (<host>)
via <interface>", with cnrd's client-id and lease time; it must name the
address dhclient reports it was bound to, once, and the release must leave
"DHCPRELEASE of <address> from <chaddr>".  With ``log-settings = json`` the
same exchange is one JSON object per line, the lease's fields among them.
"""

from __future__ import annotations

import json
import re

from tests.integration.cnrd_proc import CnrdProcess, config
from tests.integration.lab import Lease, Netns, _dhclient_run, wait_for

SCOPES = """
[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149
"""

HOST = "leaselog-host"
CLIENT_ID = "leaselog-cid"  # dhclient sends a quoted string as the option's bytes
CLIENT_ID_HEX = CLIENT_ID.encode().hex(":")
TIMEOUT = 20


def _dhclient(cli: Netns, iface: str, *extra: str) -> Lease:
    conf = cli.lab.path(f"dhclient-leaselog-{iface}.conf")
    conf.write_text(f'send host-name "{HOST}";\nsend dhcp-client-identifier "{CLIENT_ID}";\n')
    return _dhclient_run(cli, iface, ("-cf", str(conf), *extra), TIMEOUT)


def _start(lab, extra_server: str = "") -> tuple[CnrdProcess, Netns, str, str]:
    srv = lab.netns("srv")
    br = lab.bridge(srv, "br0", addr="10.1.0.1/24")
    cli = lab.netns("cli")
    _, iface = lab.link(srv, cli, a_bridge=br)
    server = CnrdProcess(srv, config(br, SCOPES, extra_server)).start()
    return server, cli, br, iface


def test_dhclient_exchange_and_release_leave_dhcpd_lines_in_the_log(lab):
    server, cli, br, iface = _start(lab)
    lease = _dhclient(cli, iface)
    assert lease.ok, lease.output
    mac = cli.mac(iface)
    ack = (f"DHCPACK on {lease.address} to {mac} ({HOST}) (client-id {CLIENT_ID_HEX}) via {br} "
           "lease 3600 s")
    log = wait_for(lambda: server.log() if ack in server.log() else None, TIMEOUT, what="the DHCPACK line")
    lines = log.splitlines()
    assert sum(ack in line for line in lines) == 1, log
    assert sum(f"DHCPOFFER on {lease.address} to {mac} " in line for line in lines) == 1, log
    assert all("[cnrd#info]" in line for line in lines if " on " + lease.address + " to " in line), log

    released = _dhclient(cli, iface, "-r")
    assert released.returncode == 0, released.output
    release = f"DHCPRELEASE of {lease.address} from {mac} ({HOST}) (client-id {CLIENT_ID_HEX})"
    log = wait_for(lambda: server.log() if release in server.log() else None, TIMEOUT, what="the DHCPRELEASE line")
    assert sum(release in line for line in log.splitlines()) == 1, log


def test_json_log_carries_the_lease_line_with_its_fields(lab):
    server, cli, br, iface = _start(lab, "log-settings = json")
    lease = _dhclient(cli, iface)
    assert lease.ok, lease.output
    mac = cli.mac(iface)

    def acks() -> list[dict]:
        out = []
        for line in server.log().splitlines():
            if line.startswith("{"):
                obj = json.loads(line)
                if obj.get("event") == "dhcp-lease" and obj.get("kind") == "DHCPACK":
                    out.append(obj)
        return out

    found = wait_for(acks, TIMEOUT, what="a JSON DHCPACK line")
    assert len(found) == 1, found
    ack = found[0]
    assert {k: ack[k] for k in ("address", "hw", "client_id", "host_name", "via", "level")} == {
        "address": lease.address, "hw": mac, "client_id": CLIENT_ID_HEX, "host_name": HOST, "via": br,
        "level": "info",
    }
    assert ack["lease_time"] == 3600  # the policy's lease-time (config())
    assert re.fullmatch(rf"DHCPACK on {re.escape(lease.address)} to {mac} .* lease \d+ s", ack["message"])
