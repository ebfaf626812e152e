"""Dynamic BOOTP with a real cnrd pair: the backup alone hands out only its own addresses,
in COMMUNICATIONS-INTERRUPTED and in PARTNER-DOWN.

    lan (bridge) ── main 10.97.0.1   (killed once the pair is in NORMAL)
                 ── backup 10.97.0.2
                 ── cli (a scripted RFC 951 client, one chaddr per request)

CNR 7.2, "Dynamic BOOTP" and "BOOTP Backup Percentage": the main gives the
backup dynamic-bootp-backup-pct of a dynamic-BOOTP scope, and in a
dynamic-BOOTP scope each partner only ever allocates its own addresses.
"""

from __future__ import annotations

import sys
import time

from cnrd.text import ip_to_int
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import wait_for
from tests.integration.test_cnrctl_pair import cnrctl
from tests.integration.test_failover_pair import reached, state_lines

PAIR = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600

[scope boot]
subnet = 10.97.0.0/24
ranges = 10.97.0.100-10.97.0.119
bootp = true
dynamic-bootp = true
dhcp = false

[failover-pair examplepair]
main = 10.97.0.1
backup = 10.97.0.2
mclt = 30
backup-pct = 10
dynamic-bootp-backup-pct = 25
failover-poll-interval = 2
failover-poll-timeout = 6
"""

# One BOOTREQUEST (RFC 951, 300 bytes, broadcast flag set) from chaddr
# 02:00:00:00:00:NN out of argv[1]; prints the yiaddr of the reply, or
# nothing after argv[3] seconds.
BOOTP_CLIENT = r"""
import os, socket, struct, sys, time
iface, n, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
xid = struct.unpack("!I", os.urandom(4))[0]
chaddr = bytes([2, 0, 0, 0, 0, n])
pkt = struct.pack("!BBBBIHH4s4s4s4s16s64s128s64s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4),
                  bytes(4), bytes(4), chaddr.ljust(16, b"\0"), bytes(64), bytes(128), bytes(64))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
deadline = time.monotonic() + wait
s.sendto(pkt, ("255.255.255.255", 67))
while time.monotonic() < deadline:
    s.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        data = s.recv(2048)
    except socket.timeout:
        break
    if len(data) >= 44 and data[0] == 2 and struct.unpack("!I", data[4:8])[0] == xid:
        print(socket.inet_ntoa(data[16:20]))
        break
"""


def bootp(cli, iface: str, n: int, wait: float = 3.0) -> str | None:
    out = cli.run(sys.executable, "-c", BOOTP_CLIENT, iface, n, wait, timeout=wait + 10).stdout.strip()
    return out or None


def test_backup_alone_gives_bootp_clients_only_its_share(lab):
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    m, b, c = lab.netns("main"), lab.netns("backup"), lab.netns("cli")
    _, mif = lab.link(lan, m, a_bridge=br, b_addr="10.97.0.1/24")
    _, bif = lab.link(lan, b, a_bridge=br, b_addr="10.97.0.2/24")
    _, cif = lab.link(lan, c, a_bridge=br)
    main = CnrdProcess(m, PAIR.format(name="main", iface=mif), name="main")
    backup = CnrdProcess(b, PAIR.format(name="backup", iface=bif), name="backup")
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 30, what="both NORMAL")
    # dynamic-bootp-backup-pct (25 % of 20), not backup-pct (10 %).
    wait_for(lambda: sum(l.state.name == "BACKUP" for l in backup.leases()) == 5, 10,
             what="5 BACKUP addresses in the backup's store")
    share = {l.address for l in backup.leases() if l.state.name == "BACKUP"}
    seen = len(state_lines(backup))
    main.kill9()
    wait_for(lambda: reached(backup, "COMMUNICATIONS-INTERRUPTED", seen), 15,
             what="the backup in COMMUNICATIONS-INTERRUPTED")
    got = [bootp(c, cif, n) for n in range(1, 7)]
    assert all(a is not None for a in got[:5]), got
    assert {ip_to_int(a) for a in got[:5]} == share
    # Its share used up, the backup gives nothing from the main's addresses.
    assert got[5] is None
    # Nor in PARTNER-DOWN, even once the MCLT has passed (CNR 7.2, "Dynamic
    # BOOTP": the main may have given its addresses to BOOTP clients for ever).
    seen = len(state_lines(backup))
    cnrctl(backup, "dhcp", "setPartnerDown", "examplepair")
    wait_for(lambda: reached(backup, "PARTNER-DOWN", seen), 15, what="the backup in PARTNER-DOWN")
    time.sleep(32)  # MCLT (30 s) after the partner-down time: the main's free addresses would be fair game
    later = [bootp(c, cif, n) for n in range(7, 10)]
    assert later == [None, None, None], later
    leased = {ip_to_int(a) for a in backup.leased()}
    assert leased == share, "the backup leased an address outside its share"
