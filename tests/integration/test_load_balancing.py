"""A load-balanced cnrd pair (RFC 3074), real processes in namespaces, clients behind a relay.

    sw: br0 (server side, 10.96.0.0/24) ── main 10.96.0.1 ── backup 10.96.0.2 ── relay 10.96.0.254
        br1 (failover link, 10.95.0.0/24) ── main 10.95.0.1 ── backup 10.95.0.2
    relay 10.90.0.1/16 ── cli 10.90.0.2/16 (perfdhcp as a relay with giaddr 10.90.0.2,
                                            and scripted clients broadcasting on the link)

ISC dhcrelay in ``relay`` forwards every request to both servers, as a
site relays to a failover pair.  The pair talks failover over its own
link, so the main's client-facing link can go down while the pair stays
in touch.

CNR 7.2, "Setting Load Balancing": in NORMAL the main answers the clients
whose RFC 3074 hash is in its buckets and the backup the others; in other
states each answers everyone.  ISC's ``load balance max seconds`` adds that
a client whose ``secs`` exceeds it is answered by either server.  Who
granted a lease is read from each server's own event history (an ``ack``
event is written only by the server that sent the ACK; the partner's copy
arrives as ``partner-update``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from subprocess import Popen

from cnrd.dhcp.packet import format_hw
from cnrd.failover.wire import load_balance_hash
from cnrd.leases.journal import JournaledStore
from cnrd.text import int_to_ip, ip_to_int
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Lab, Netns, dhcrelay, perfdhcp, random_mac_base, wait_for
from tests.integration.test_cnrctl_pair import cnrctl
from tests.integration.test_failover_pair import reached, state_lines

MAIN_IP, BACKUP_IP = "10.96.0.1", "10.96.0.2"
MAIN_FO, BACKUP_FO = "10.95.0.1", "10.95.0.2"
RELAY_DOWN, CLIENT_IP = "10.90.0.1", "10.90.0.2"
PAIR_NAME = "examplepair"
SPLIT = 128  # ISC's split 128: buckets 0..127 are the main's
MAX_SECS = 3  # load-balance-max-seconds
POLL_TIMEOUT = 6

PAIR = """
[server]
name = {name}
interfaces = {iface}
data-dir = @DATA@

[policy default]
lease-time = 3600

[scope clients]
subnet = 10.90.0.0/16
ranges = {ranges}

[failover-pair examplepair]
main = 10.95.0.1
backup = 10.95.0.2
mclt = 30
load-balancing = true
split = 128
load-balance-max-seconds = 3
failover-poll-interval = 2
failover-poll-timeout = 6
"""

# One client exchange, broadcast out of argv[1] with chaddr argv[2] (hex),
# secs argv[3], client-id argv[4] (hex, "-" for none).  Collects every OFFER
# for argv[6] seconds; with argv[5] == "dora" it then requests the first
# offer from the server that made it (a SELECTING REQUEST) and waits as long
# for the ACK or NAK.  Prints {"offers": [[server-id, yiaddr]...],
# "reply": [type, server-id, yiaddr] or null} as JSON.
CLIENT = r"""
import json, os, socket, struct, sys, time
iface, mac, secs, cid, mode, wait = sys.argv[1:7]
mac, secs, wait = bytes.fromhex(mac), int(secs), float(wait)
cid = None if cid == "-" else bytes.fromhex(cid)
xid = struct.unpack("!I", os.urandom(4))[0]

def packet(kind, extra=b""):
    opts = bytes([53, 1, kind])
    if cid is not None:
        opts += bytes([61, len(cid)]) + cid
    opts += extra + bytes([55, 4, 1, 3, 51, 54, 255])
    head = struct.pack("!BBBBIHH16s16s64s128s", 1, 1, 6, 0, xid, secs, 0x8000, bytes(16),
                       mac.ljust(16, b"\0"), bytes(64), bytes(128))
    return head + b"\x63\x82\x53\x63" + opts

def options(data):
    out, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        out[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out

def replies(deadline, kinds, first):
    got = []
    while time.monotonic() < deadline:
        s.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        if len(data) < 244 or data[0] != 2 or struct.unpack("!I", data[4:8])[0] != xid or data[28:34] != mac:
            continue
        o = options(data)
        kind = o.get(53, b"\0")[0]
        if kind in kinds:
            got.append([kind, socket.inet_ntoa(o.get(54, bytes(4))), socket.inet_ntoa(data[16:20])])
            if first:
                break
    return got

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
s.bind(("0.0.0.0", 68))
s.sendto(packet(1), ("255.255.255.255", 67))
offers = [o[1:] for o in replies(time.monotonic() + wait, (2,), False)]
reply = None
if mode == "dora" and offers:
    server, address = offers[0]
    s.sendto(packet(3, bytes([50, 4]) + socket.inet_aton(address) + bytes([54, 4]) + socket.inet_aton(server)),
             ("255.255.255.255", 67))
    got = replies(time.monotonic() + wait, (5, 6), True)
    reply = ["ACK" if got[0][0] == 5 else "NAK"] + got[0][1:] if got else None
print(json.dumps({"offers": offers, "reply": reply}))
"""


@dataclass
class Exchange:
    """What one scripted client saw: the OFFERs (server-id, address) and the final reply."""

    offers: list[tuple[str, str]]
    reply: tuple[str, str, str] | None  # (ACK|NAK, server-id, address)

    @property
    def offered_by(self) -> set[str]:
        return {server for server, _ in self.offers}


def exchange(cli: Netns, iface: str, mac: bytes, *, secs: int = 0, client_id: bytes | None = None,
             dora: bool = True, wait: float = 3.0) -> Exchange:
    """One scripted client on ``iface``: DISCOVER (and REQUEST with ``dora``)."""
    out = cli.run(sys.executable, "-c", CLIENT, iface, mac.hex(), secs,
                  client_id.hex() if client_id is not None else "-", "dora" if dora else "discover",
                  wait, timeout=2 * wait + 10).stdout
    got = json.loads(out)
    reply = got["reply"]
    return Exchange([tuple(o) for o in got["offers"]], tuple(reply) if reply else None)


def main_bucket(key: bytes) -> bool:
    """Whether the RFC 3074 hash of a client key (client-id, else chaddr) is in the main's buckets."""
    return load_balance_hash(key) < SPLIT


def macs(half: str, count: int, prefix: bytes = b"\x02\x4c\x42\x00") -> list[bytes]:
    """``count`` MACs whose chaddr hash is in the ``half`` ("main" or "backup") buckets."""
    out = [prefix + n.to_bytes(2, "big") for n in range(1 << 16)]
    return [m for m in out if main_bucket(m) == (half == "main")][:count]


def hash_key(key: bytes) -> bytes:
    """The RFC 3074 hash input of a stored client key (cnrd.leases.model.client_key):
    the client-id if the client sent one, else chaddr without the htype."""
    return key[1:] if key[:1] == b"\x01" else key[2:]


def granted(proc: CnrdProcess) -> dict[bytes, int]:
    """client key -> address of every ACK this server sent itself, from its
    own event history (the partner's grants arrive as ``partner-update``)."""
    store = JournaledStore(str(proc.data_dir), readonly=True)
    out: dict[bytes, int] = {}
    try:
        after = 0
        for _ in range(1000):  # bounded: 1,000,000 events at most
            batch = store.events(after, 1000)
            if not batch:
                break
            for seq, ev in batch:
                if ev.what == "ack":
                    out[ev.key] = ev.address
            after = batch[-1][0]
    finally:
        store.close()
    return out


def acks_sent(proc: CnrdProcess) -> int:
    """The server's count of ACKs sent, from GET /metrics."""
    text = proc.ns.run("curl", "-s", "--max-time", "5", "http://127.0.0.1:8067/metrics").stdout
    m = re.search(r'^cnrd_dhcp_(?:packets_)?sent_total\{[^}]*type="ACK"[^}]*\} (\S+)$', text, re.M)
    assert m, f"no ACK counter in {proc.name}'s /metrics:\n{text[:2000]}"
    return int(float(m.group(1)))


def pair_status(proc: CnrdProcess) -> dict:
    """This server's entry for the pair in ``cnrctl dhcp getRelatedServers``."""
    out = json.loads(cnrctl(proc, "--json", "dhcp", "getRelatedServers").stdout)["related-servers"]
    mine = [r for r in out if r["pair"] == PAIR_NAME]
    assert len(mine) == 1, out
    return mine[0]


def backup_share(proc: CnrdProcess) -> int:
    return sum(l.state.name == "BACKUP" for l in proc.leases())


@dataclass
class LbNet:
    """The lab of this module's docstring."""

    lab: Lab
    sw: Netns
    m: Netns
    mif: str
    m_port: str  # the main's client-facing port on br0, in ``sw``
    b: Netns
    bif: str
    rly: Netns
    relay: Popen
    cli: Netns
    cif: str


def lb_net(lab: Lab, servers: tuple[str, ...] = (MAIN_IP, BACKUP_IP)) -> LbNet:
    """Build the lab and start dhcrelay forwarding to ``servers``."""
    sw = lab.netns("sw")
    br0 = lab.bridge(sw, "br0")
    br1 = lab.bridge(sw, "br1")
    m, b, rly, cli = lab.netns("main"), lab.netns("backup"), lab.netns("relay"), lab.netns("cli")
    m_port, mif = lab.link(sw, m, a_bridge=br0, b_addr=f"{MAIN_IP}/24")
    _, bif = lab.link(sw, b, a_bridge=br0, b_addr=f"{BACKUP_IP}/24")
    lab.link(sw, m, a_bridge=br1, b_addr=f"{MAIN_FO}/24")
    lab.link(sw, b, a_bridge=br1, b_addr=f"{BACKUP_FO}/24")
    _, rly_up = lab.link(sw, rly, a_bridge=br0, b_addr="10.96.0.254/24")
    rly_down, cif = lab.link(rly, cli, a_addr=f"{RELAY_DOWN}/16", b_addr=f"{CLIENT_IP}/16")
    rly.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    for ns in (m, b):
        ns.run("ip", "route", "add", "10.90.0.0/16", "via", "10.96.0.254")
    cli.run("ip", "route", "add", "default", "via", RELAY_DOWN)
    relay = dhcrelay(rly, rly_down, rly_up, list(servers))
    return LbNet(lab, sw, m, mif, m_port, b, bif, rly, relay, cli, cif)


def start_pair(net: LbNet, ranges: str) -> tuple[CnrdProcess, CnrdProcess]:
    """Both cnrd servers, NORMAL, the backup holding (about) half the free addresses."""
    main = CnrdProcess(net.m, PAIR.format(name="main", iface=net.mif, ranges=ranges), name="main")
    backup = CnrdProcess(net.b, PAIR.format(name="backup", iface=net.bif, ranges=ranges), name="backup")
    main.start()
    backup.start()
    wait_for(lambda: reached(main, "NORMAL") and reached(backup, "NORMAL"), 40, what="both NORMAL")
    first, last = (ip_to_int(a) for a in ranges.split("-"))
    size = last - first + 1
    # CNR 7.2: with load balancing the backup's share is 50 % of the free addresses
    wait_for(lambda: backup_share(backup) >= 0.45 * size, 60, interval=1,
             what=f"the backup to hold about half of {size} free addresses")
    print(f"backup holds {backup_share(backup)} of {size} addresses")
    return main, backup


CLIENTS = 2000


def test_each_server_grants_half_of_2000_clients_and_no_address_twice(lab):
    net = lb_net(lab)
    main, backup = start_pair(net, "10.90.1.0-10.90.16.255")  # 4,096 addresses
    t0 = time.monotonic()
    res = perfdhcp(net.cli, CLIENT_IP, RELAY_DOWN, rate=200, duration=40, clients=CLIENTS,
                   mac_base=random_mac_base(), extra=["-n", CLIENTS, "-W", 3_000_000])
    print(f"perfdhcp: {time.monotonic() - t0:.1f} s, DO {res.do.sent}/{res.do.received}, "
          f"RA {res.ra.sent}/{res.ra.received}")
    assert res.do.sent >= CLIENTS * 0.99, res.raw
    n_main, n_backup = acks_sent(main), acks_sent(backup)
    # the ACKs' events reach each store's LMDB within its journal's apply interval
    try:
        wait_for(lambda: len(granted(main)) >= n_main and len(granted(backup)) >= n_backup, 20,
                 interval=1, what="every ACK sent in its server's event history")
    except AssertionError:
        pass  # the comparison below shows what differs
    by_main, by_backup = granted(main), granted(backup)
    total = len(by_main) + len(by_backup)
    print(f"cnrd/cnrd balanced: main ACKed {len(by_main)} clients ({n_main} ACKs), "
          f"backup {len(by_backup)} ({n_backup} ACKs), {total} of {CLIENTS}")
    assert total >= 0.95 * CLIENTS, f"only {total} of {CLIENTS} clients got a lease\n{res.raw}"
    assert (n_main, n_backup) == (len(by_main), len(by_backup))  # one ACK per client, none twice
    assert not set(by_main) & set(by_backup), "clients ACKed by both servers"
    assert not set(by_main.values()) & set(by_backup.values()), "addresses granted by both servers"
    wrong_main = [k.hex() for k in by_main if not main_bucket(hash_key(k))]
    wrong_backup = [k.hex() for k in by_backup if main_bucket(hash_key(k))]
    assert not wrong_main, f"the main answered {len(wrong_main)} clients of the backup's buckets"
    assert not wrong_backup, f"the backup answered {len(wrong_backup)} clients of the main's buckets"
    assert 0.45 <= len(by_main) / total <= 0.55
    assert 0.45 <= len(by_backup) / total <= 0.55
    # Replication: both stores hold every grant, the same client on each address.
    wait_for(lambda: len(main.leased()) == total and main.leased() == backup.leased(), 30, interval=1,
             what="both stores to hold the same leases")
    leased = main.leased()
    assert len(set(leased.values())) == len(leased), "a client holds two addresses"
    grants = {**by_main, **by_backup}
    assert set(leased) == {int_to_ip(a) for a in grants.values()}
    for key, address in grants.items():
        # perfdhcp's client-id is type 1 and the MAC
        mac = hash_key(key)[1:] if key[:1] == b"\x01" else hash_key(key)
        assert leased[int_to_ip(address)] == format_hw(mac), int_to_ip(address)


def test_backup_answers_both_halves_once_the_main_is_gone(lab):
    net = lb_net(lab)
    main, backup = start_pair(net, "10.90.1.0-10.90.1.99")
    theirs, ours = macs("main", 5), macs("backup", 4)
    # NORMAL: a client of the main's buckets is answered by the main alone.
    before = exchange(net.cli, net.cif, theirs[0], dora=False)
    assert before.offered_by == {MAIN_IP}, before
    seen = len(state_lines(backup))
    main.kill9()
    wait_for(lambda: reached(backup, "COMMUNICATIONS-INTERRUPTED", seen), POLL_TIMEOUT + 15,
             what="the backup in COMMUNICATIONS-INTERRUPTED")
    got = {mac: exchange(net.cli, net.cif, mac) for mac in theirs[1:] + ours}
    print("backup alone: " + ", ".join(f"{format_hw(m)} -> {e.reply}" for m, e in got.items()))
    for mac, e in got.items():
        assert e.reply is not None and e.reply[:2] == ("ACK", BACKUP_IP), (format_hw(mac), e)
    assert len({e.reply[2] for e in got.values() if e.reply}) == len(got), "an address given twice"
    assert pair_status(backup)["state"] == "COMMUNICATIONS-INTERRUPTED"


def test_client_identifier_decides_the_bucket(lab):
    net = lb_net(lab)
    start_pair(net, "10.90.1.0-10.90.1.99")
    # RFC 3074 §5: the hash is over the client-identifier when there is one.
    mac_b, mac_m = macs("backup", 1)[0], macs("main", 1)[0]
    cid_m = next(c for c in (b"\x00lb-%d" % n for n in range(1000)) if main_bucket(c))
    cid_b = next(c for c in (b"\x00lb-%d" % n for n in range(1000)) if not main_bucket(c))
    to_main = exchange(net.cli, net.cif, mac_b, client_id=cid_m)
    to_backup = exchange(net.cli, net.cif, mac_m, client_id=cid_b)
    assert to_main.offered_by == {MAIN_IP} and to_main.reply and to_main.reply[:2] == ("ACK", MAIN_IP), to_main
    assert to_backup.offered_by == {BACKUP_IP} and to_backup.reply \
        and to_backup.reply[:2] == ("ACK", BACKUP_IP), to_backup


def test_main_cut_off_from_clients_is_covered_through_secs(lab):
    net = lb_net(lab)
    main, backup = start_pair(net, "10.90.1.0-10.90.1.99")
    states = len(state_lines(main)), len(state_lines(backup))
    theirs, ours = macs("main", 1)[0], macs("backup", 1)[0]
    # The main's client-facing link goes down; the failover link stays up.
    net.sw.run("ip", "link", "set", "dev", net.m_port, "down")
    cut = time.monotonic()
    # The backup still answers its own half at once ...
    own = exchange(net.cli, net.cif, ours)
    assert own.reply is not None and own.reply[:2] == ("ACK", BACKUP_IP), own
    # ... but not the main's half while secs is within load-balance-max-seconds ...
    early = exchange(net.cli, net.cif, theirs, secs=0, dora=False)
    assert early.offers == [], early
    at_limit = exchange(net.cli, net.cif, theirs, secs=MAX_SECS, dora=False)
    assert at_limit.offers == [], at_limit
    # ... and does once the client has waited longer.
    late = exchange(net.cli, net.cif, theirs, secs=10)
    assert late.offered_by == {BACKUP_IP}, late
    assert late.reply is not None and late.reply[:2] == ("ACK", BACKUP_IP), late
    # Still in touch over the failover link, well past failover-poll-timeout.
    time.sleep(max(0.0, cut + 2 * POLL_TIMEOUT - time.monotonic()))
    for proc in (main, backup):
        st = pair_status(proc)
        assert (st["state"], st["partner-state"], st["communication"]) == ("NORMAL", "NORMAL", "OK"), st
    assert (len(state_lines(main)), len(state_lines(backup))) == states, "a state change while cut off"
