"""Network boot and scope options through the real ``twistd cnrd`` in a namespace.

    cli (veths) ── br0 in srv, 10.1.0.1/24 ── cnrd

* ISC dhclient, asking for routers, bootfile-name and tftp-server-name: its
  script sees the scope's own router (not the policy's), the BOOTP header's
  file and sname (``filename``, ``server_name``) and options 66/67.
* A PXE firmware's DHCPDISCOVER and DHCPREQUEST, built by scapy (options 60
  ``PXEClient:Arch:00000:UNDI:002001``, 93, 94, 97; RFC 4578) and sent on
  the wire: the OFFER and ACK carry the PXE class's siaddr and file, echo
  option 97 and give the PXE policy's lease time; the lease is in the store.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import _dhclient_files, _dhclient_run

SCOPE_ROUTER = "10.1.0.254"
POLICY_ROUTER = "10.1.0.1"
NEXT_SERVER = "10.1.0.7"
BOOT_FILE = "pxelinux.0"
SERVER_NAME = "boot1.example.net"
PXE_FILE = "undionly.kpxe"
PXE_LEASE = 900

CONFIG = f"""
[server]
name = netboot
interfaces = br0
data-dir = @DATA@

[policy default]
lease-time = 3600
option.routers = {POLICY_ROUTER}
option.tftp-server-name = tftp.example.net
option.bootfile-name = grubx64.efi
packet-siaddr = {NEXT_SERVER}
packet-file-name = {BOOT_FILE}
packet-server-name = {SERVER_NAME}

[policy pxe]
lease-time = {PXE_LEASE}
packet-file-name = {PXE_FILE}

[client-class pxe]
match-vendor-class = PXEClient
policy = pxe

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.199
option.routers = {SCOPE_ROUTER}
"""

# dhclient's own configuration: what it asks for (option 55).
DHCLIENT_CONF = "request subnet-mask, routers, bootfile-name, tftp-server-name;\n"

# Run by dhclient for each event: the environment it hands its script (the
# variables an operator's hook reads), then the address on the interface.
HOOK = """#!/bin/sh
[ "$interface" = "{iface}" ] || exit 0
env | grep '^new_' >> {dump}
echo "reason=$reason" >> {dump}
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr replace "$new_ip_address/${{new_subnet_mask:-255.255.255.255}}" dev {iface}
    ;;
esac
exit 0
"""

# Run inside ``cli``: a PXE client's DISCOVER then REQUEST on IFACE, each
# sent at most TRIES times waiting WAIT seconds; prints the replies as JSON.
PXE_CLIENT = r"""
import json, sys
from scapy.all import conf, srp1
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

spec = json.loads(sys.argv[1])
iface, mac, tries, wait = spec["iface"], spec["mac"], spec["tries"], spec["wait"]
conf.checkIPaddr = False  # the replies come from the server to 255.255.255.255
hw = bytes.fromhex(mac.replace(":", ""))
uuid = bytes(range(16))
base = [("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"), (93, b"\x00\x00"), (94, b"\x01\x02\x01"),
        (97, b"\x00" + uuid), ("param_req_list", [1, 3, 43, 60, 66, 67, 97, 128]), ("max_dhcp_size", 1260)]

def exchange(kind, extra):
    pkt = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
           / UDP(sport=68, dport=67) / BOOTP(chaddr=hw + bytes(10), xid=0x5150, flags=0x8000)
           / DHCP(options=[("message-type", kind)] + base + extra + ["end"]))
    for _ in range(tries):
        ans = srp1(pkt, iface=iface, timeout=wait, verbose=False)
        if ans is not None and BOOTP in ans and ans[BOOTP].op == 2:
            b = ans[BOOTP]
            opts = {str(o[0]): o[1] for o in ans[DHCP].options if isinstance(o, tuple) and len(o) == 2}
            return {"yiaddr": b.yiaddr, "siaddr": b.siaddr, "file": b.file.rstrip(b"\0").decode(),
                    "sname": b.sname.rstrip(b"\0").decode(), "type": opts.get("message-type"),
                    "opt97": opts.get("pxe_client_machine_identifier", b"").hex(),
                    "lease_time": opts.get("lease_time"), "server_id": opts.get("server_id")}
    return None

offer = exchange("discover", [])
ack = None
if offer is not None:
    ack = exchange("request", [("requested_addr", offer["yiaddr"]), ("server_id", offer["server_id"])])
print(json.dumps({"offer": offer, "ack": ack, "uuid": ("00" + uuid.hex())}))
"""


@pytest.fixture
def site(lab):
    srv = lab.netns("srv")
    br = lab.bridge(srv, "br0", addr="10.1.0.1/24")
    cli = lab.netns("cli")
    server = CnrdProcess(srv, CONFIG.replace("interfaces = br0", f"interfaces = {br}"))
    server.start()
    return lab, srv, br, cli, server


def test_dhclient_sees_the_scope_router_boot_fields_and_options_66_67(site) -> None:
    lab, srv, br, cli, server = site
    _, ifname = lab.link(srv, cli, a_bridge=br)
    dump = lab.path("dhclient-env.txt")
    conf = lab.path("dhclient-netboot.conf")
    conf.write_text(DHCLIENT_CONF)
    _, _, hook = _dhclient_files(cli, ifname)
    hook.write_text(HOOK.format(iface=ifname, dump=dump))
    lease = _dhclient_run(cli, ifname, ["-cf", str(conf)], 20)
    assert lease.ok, lease.output
    env = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert env.get("reason") == "BOUND", env
    assert env["new_ip_address"] == lease.address
    # The scope's own option.routers, over the policy's.
    assert env["new_routers"] == SCOPE_ROUTER
    # The BOOTP header fields (RFC 2131 §2), as dhclient hands them to its script.
    assert env["new_filename"] == BOOT_FILE
    assert env["new_server_name"] == SERVER_NAME
    # Options 66 and 67 as ordinary options, asked for and sent.
    assert env["new_tftp_server_name"] == "tftp.example.net"
    assert env["new_bootfile_name"] == "grubx64.efi"
    assert lease.address in server.leased()


def test_a_pxe_client_gets_its_class_boot_fields_and_its_option_97_back(site) -> None:
    lab, srv, br, cli, server = site
    _, ifname = lab.link(srv, cli, a_bridge=br)
    mac = cli.mac(ifname)
    script = lab.path("pxe-client.py")
    script.write_text(PXE_CLIENT)
    spec = {"iface": ifname, "mac": mac, "tries": 3, "wait": 2}
    out = cli.run(sys.executable, script, json.dumps(spec), timeout=60).stdout
    result = json.loads(out.strip().splitlines()[-1])
    offer, ack = result["offer"], result["ack"]
    assert offer is not None, out
    assert ack is not None, out
    assert (offer["type"], ack["type"]) == (2, 5)  # DHCPOFFER, DHCPACK
    for reply in (offer, ack):
        # The pxe class's file; siaddr from the scope's policy (the class's sets none).
        assert reply["file"] == PXE_FILE
        assert reply["siaddr"] == NEXT_SERVER
        assert reply["sname"] == SERVER_NAME
        assert reply["opt97"] == result["uuid"]
        assert reply["lease_time"] == PXE_LEASE
    assert server.leased().get(ack["yiaddr"]) == mac
