"""Builders for DHCP requests in unit tests."""

from __future__ import annotations

import struct

from cnrd.config import Config, loads
from cnrd.dhcp.packet import BOOTREQUEST, DhcpPacket, ip_to_int
from cnrd.dhcp.server import DhcpServer, Interface, RxInfo
from cnrd.leases.table import LeaseTable

BASE_CONFIG = """
[server]
name = test
interfaces = eth1
data-dir = /nonexistent

[policy default]
lease-time = 3600
option.routers = 10.1.0.1
option.domain-name-servers = 10.1.0.1, 10.1.0.2

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.109
policy = default

[reservation 10.1.0.50]
hardware-address = 02:00:00:00:00:50
"""

SERVER_IP = ip_to_int("10.1.0.1")
IFACE = Interface("eth1", 2, ((SERVER_IP, 24),))
BCAST = RxInfo(ifindex=2, local_ip=SERVER_IP, dst_ip=0xFFFFFFFF, src_ip=0, src_port=68)


def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, (n >> 8) & 255, n & 255])


def request(
    mtype: int | None,
    hw: bytes,
    *,
    ciaddr: int = 0,
    giaddr: int = 0,
    flags: int = 0,
    xid: int = 0x1234,
    secs: int = 0,
    **options: bytes,
) -> DhcpPacket:
    """A BOOTREQUEST; ``options`` are raw values keyed ``o50=...``."""
    opts: dict[int, bytes] = {}
    if mtype is not None:
        opts[53] = bytes([mtype])
    for k, v in options.items():
        opts[int(k[1:])] = v
    return DhcpPacket(
        op=BOOTREQUEST, htype=1, hlen=len(hw), hops=0, xid=xid, secs=secs, flags=flags,
        ciaddr=ciaddr, yiaddr=0, siaddr=0, giaddr=giaddr, chaddr=hw, sname=b"", file=b"",
        options=opts, has_cookie=mtype is not None,
    )


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def make_server(text: str = BASE_CONFIG) -> tuple[DhcpServer, Config]:
    config = loads(text)
    server = DhcpServer(config, LeaseTable())
    server.set_interfaces([IFACE])
    return server, config
