"""A one-question DHCP relay client: DISCOVER until the first OFFER.

Run it inside the load namespace, where the relay address is configured::

    python -m bench.probe --giaddr 10.16.0.1 --server 10.1.0.1 [--timeout 900] [--interval 0.01]

It binds UDP 67 on the giaddr (as a relay agent does, and as perfdhcp does),
prints ``ready`` once bound, then sends a relayed DISCOVER (giaddr set,
hops 1, a fresh xid each time) every ``--interval`` seconds until an OFFER
for its chaddr and one of its xids arrives.  Then it prints
``offer MONOTONIC YIADDR SENT`` and exits 0; after ``--timeout`` seconds it
prints ``timeout SENT`` and exits 1.  MONOTONIC is ``time.monotonic()``
(CLOCK_MONOTONIC, one clock for every process on the machine), so the
caller can subtract the time it spawned a server.

Packets are built and parsed with cnrd's codec (cnrd.dhcp.packet).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import time

from cnrd.dhcp.packet import BOOTREQUEST, DhcpPacket, MalformedPacket, MessageType, int_to_ip, ip_to_int, parse

DHCP_SERVER_PORT = 67


def discover(giaddr: str, chaddr: bytes, xid: int) -> bytes:
    """A DISCOVER as a relay agent forwards it (RFC 2131 §4.1, RFC 1542)."""
    return DhcpPacket(
        BOOTREQUEST, 1, len(chaddr), 1, xid, 0, 0, 0, 0, 0, ip_to_int(giaddr), chaddr, b"", b"",
        {53: bytes((MessageType.DISCOVER,)), 55: bytes((1, 3, 6, 51, 54))},
    ).serialize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__.splitlines()[0])
    ap.add_argument("--giaddr", required=True, help="relay address to bind and put in giaddr")
    ap.add_argument("--server", required=True, help="server address to send to")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--interval", type=float, default=0.01)
    a = ap.parse_args(argv)

    chaddr = b"\x02\xfe" + os.urandom(4)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.giaddr, DHCP_SERVER_PORT))
    sock.setblocking(False)
    print("ready", flush=True)

    xid0 = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    sent = 0
    deadline = time.monotonic() + a.timeout
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            print(f"timeout {sent}", flush=True)
            return 1
        if now >= next_send:
            try:
                sock.sendto(discover(a.giaddr, chaddr, (xid0 + sent) & 0xFFFFFFFF), (a.server, DHCP_SERVER_PORT))
            except OSError:
                pass  # nothing listens yet, or the route is not up: try again
            sent += 1
            next_send = now + a.interval
        r, _, _ = select.select([sock], [], [], max(0.0, min(next_send, deadline) - time.monotonic()))
        if not r:
            continue
        try:
            data = sock.recv(4096)
        except OSError:
            continue
        at = time.monotonic()
        try:
            p = parse(data)
            mtype = p.message_type
        except MalformedPacket:
            continue
        if mtype == MessageType.OFFER and p.chaddr == chaddr and 0 <= (p.xid - xid0) & 0xFFFFFFFF < sent:
            print(f"offer {at:.6f} {int_to_ip(p.yiaddr)} {sent}", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
