"""Load balancing between cnrd and a real ISC dhcpd 4.4 (``split 128;``), in either role.

The lab of tests/integration/test_load_balancing.py: both servers on a
server-side network, the failover link on its own, perfdhcp behind an ISC
dhcrelay that forwards every request to both.  ISC's ``split 128`` gives
the primary buckets 0..127 (failover-protocol digest §10.4: a set HBA bit is
the primary's); cnrd's ``split = 128`` means the same.

Who answered whom comes from each server's own records: ISC's log (a
``DHCPACK on A to MAC`` line for each ACK it sent, ``load balance to peer``
for each DISCOVER it left to the partner) and cnrd's event history (``ack``
events are written only by the server that sent the ACK).  Replication is
read from the other side: ISC's lease file (``binding state active``) for
cnrd's grants, cnrd's lease store for ISC's.
"""

from __future__ import annotations

import re

from cnrd.text import int_to_ip, ip_to_int
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import isc_lease_states, perfdhcp, random_mac_base, wait_for
from tests.integration.test_failover_isc import Isc
from tests.integration.test_failover_pair import reached
from tests.integration.test_load_balancing import (
    BACKUP_FO,
    CLIENT_IP,
    MAIN_FO,
    PAIR,
    RELAY_DOWN,
    acks_sent,
    backup_share,
    granted,
    hash_key,
    lb_net,
    main_bucket,
)

RANGE_FIRST, RANGE_LAST = "10.90.1.0", "10.90.2.255"  # 512 addresses
POOL = 512
CLIENTS = 200

ISC_LB = """
authoritative;
default-lease-time 3600; max-lease-time 3600;
failover peer "examplepair" {{
  {role};
  address {me}; port 647; peer address {peer}; peer port 647;
  max-response-delay 6; max-unacked-updates 10; load balance max seconds 3;
  {extra}
}}
subnet 10.96.0.0 netmask 255.255.255.0 {{ }}
subnet 10.90.0.0 netmask 255.255.0.0 {{
  pool {{ failover peer "examplepair"; range {first} {last}; }}
}}
"""

_ISC_ACK = re.compile(r"^DHCPACK on (\S+) to ([0-9a-f:]+) ", re.M)
_ISC_BALANCED = re.compile(r"^DHCPDISCOVER from ([0-9a-f:]+) .*load balance to peer", re.M)


def _mac(text: str) -> bytes:
    # ISC prints hardware addresses without zero padding (2:4c:0:...)
    return bytes(int(x, 16) for x in text.split(":"))


def perfdhcp_client_id(chaddr: bytes) -> bytes:
    """perfdhcp's DHCPv4 client-identifier: type 1 and the MAC (ISC's lease
    file shows it as ``uid "\\001..."``), the RFC 3074 hash key of its clients."""
    return b"\x01" + chaddr


def isc_acked(isc: Isc) -> dict[bytes, str]:
    """client-id -> address of every DHCPACK ISC logged (the log names the MAC)."""
    return {perfdhcp_client_id(_mac(mac)): address for address, mac in _ISC_ACK.findall(isc.log())}


def isc_balanced_away(isc: Isc) -> set[bytes]:
    """client-ids of the DISCOVERs ISC left to its partner (``load balance to peer``)."""
    return {perfdhcp_client_id(_mac(mac)) for mac in _ISC_BALANCED.findall(isc.log())}


def isc_lines_of(isc: Isc, client_ids: list[bytes]) -> str:
    """ISC's log lines naming these perfdhcp clients (ISC prints MACs without zero padding)."""
    macs = {":".join(f"{b:x}" for b in k[1:]) for k in client_ids}
    return "\n".join(line for line in isc.log().splitlines() if any(f" {m} " in f"{line} " for m in macs))


def cnrd_config(name: str, iface: str) -> str:
    # The same max-unacked-updates on both sides, as an ISC pair is configured:
    # ISC holds its BNDACKs for up to 2 s unless as many updates as the
    # partner's max-unacked-updates are waiting.
    return PAIR.format(name=name, iface=iface, ranges=f"{RANGE_FIRST}-{RANGE_LAST}") + "max-unacked-updates = 10\n"


def run_load(net) -> None:
    res = perfdhcp(net.cli, CLIENT_IP, RELAY_DOWN, rate=50, duration=30, clients=CLIENTS,
                   mac_base=random_mac_base(), extra=["-n", CLIENTS, "-W", 3_000_000])
    print(f"perfdhcp: DO {res.do.sent}/{res.do.received}, RA {res.ra.sent}/{res.ra.received}")
    assert res.do.sent >= CLIENTS * 0.99, res.raw


def check_split(label: str, ours: CnrdProcess, isc: Isc, cnrd_is_main: bool) -> None:
    """Each server answered only its own buckets, together nearly every client,
    and each one's grants are in the other's records."""
    sent = acks_sent(ours)
    try:
        # cnrd's ack events reach LMDB within its journal's apply interval
        wait_for(lambda: len(granted(ours)) >= sent, 20, interval=1, what="cnrd's ACKs in its event history")
    except AssertionError:
        pass  # the comparison below shows what differs
    by_cnrd = {hash_key(k): a for k, a in granted(ours).items()}
    by_isc = isc_acked(isc)
    away = isc_balanced_away(isc)
    total = len(by_cnrd) + len(by_isc)
    print(f"{label}: cnrd ACKed {len(by_cnrd)} clients ({sent} ACKs), ISC {len(by_isc)} "
          f"(ISC left {len(away)} DISCOVERs to its peer), {total} of {CLIENTS}")
    assert total >= 0.95 * CLIENTS, f"only {total} of {CLIENTS} clients got a lease"
    assert sent == len(by_cnrd), "cnrd's ACK counter and its ack events disagree"
    # cnrd stored the client-ids perfdhcp sent, the keys ISC's side is given here
    assert all(len(k) == 7 and k[0] == 1 for k in by_cnrd), [k.hex() for k in by_cnrd][:5]
    # Whose buckets first: a client ACKed by both is then blamed on the one
    # that answered outside its own, with that server's log lines for it.
    cnrd_wrong = [m.hex() for m in by_cnrd if main_bucket(m) != cnrd_is_main]
    isc_wrong = [m for m in by_isc if main_bucket(m) == cnrd_is_main]
    assert not cnrd_wrong, f"cnrd answered {len(cnrd_wrong)} clients of ISC's buckets: {cnrd_wrong[:5]}"
    assert not isc_wrong, (f"ISC answered {len(isc_wrong)} clients of cnrd's buckets: "
                           f"{[m.hex() for m in isc_wrong[:5]]}\n{isc_lines_of(isc, isc_wrong[:3])}")
    assert not set(by_cnrd) & set(by_isc), "clients ACKed by both servers"
    assert not set(by_cnrd.values()) & {ip_to_int(a) for a in by_isc.values()}, "addresses granted by both"
    assert all(main_bucket(m) == cnrd_is_main for m in away), "ISC left its own clients to cnrd"
    for n in (len(by_cnrd), len(by_isc)):
        assert 0.35 <= n / total <= 0.65, (len(by_cnrd), len(by_isc))
    # Replication both ways.
    def replicated() -> bool:
        states, leased = isc_lease_states(isc.leases), ours.leased()
        return (all(states.get(int_to_ip(a)) == "active" for a in by_cnrd.values())
                and all(leased.get(a) == k[1:].hex(":") for k, a in by_isc.items()))
    wait_for(replicated, 30, interval=1, what="each server's grants in the partner's records")


def test_cnrd_main_with_isc_secondary_split_128(lab):
    net = lb_net(lab)
    ours = CnrdProcess(net.m, cnrd_config("main", net.mif), name="main").start()
    isc = Isc(net.b, ISC_LB.format(role="secondary", me=BACKUP_FO, peer=MAIN_FO, extra="",
                                   first=RANGE_FIRST, last=RANGE_LAST), net.bif)
    wait_for(lambda: reached(ours, "NORMAL") and isc.moves_to("normal") >= 1
             and "peer moves from recover-done to normal" in isc.log(), 60, what="both NORMAL")
    wait_for(lambda: list(isc_lease_states(isc.leases).values()).count("backup") >= 0.45 * POOL, 30,
             interval=1, what="ISC to hold about half the free addresses")
    run_load(net)
    check_split("cnrd main + ISC secondary", ours, isc, cnrd_is_main=True)


def test_isc_primary_with_cnrd_backup_split_128(lab):
    net = lb_net(lab)
    isc = Isc(net.m, ISC_LB.format(role="primary", me=MAIN_FO, peer=BACKUP_FO, extra="mclt 30; split 128;",
                                   first=RANGE_FIRST, last=RANGE_LAST), net.mif)
    ours = CnrdProcess(net.b, cnrd_config("backup", net.bif), name="backup").start()
    wait_for(lambda: reached(ours, "NORMAL") and isc.moves_to("normal") >= 1
             and "peer moves from recover-done to normal" in isc.log(), 60, what="both NORMAL")
    wait_for(lambda: backup_share(ours) >= 0.4 * POOL, 60, interval=1,
             what="the cnrd backup to hold about half the free addresses")
    run_load(net)
    check_split("ISC primary + cnrd backup", ours, isc, cnrd_is_main=False)
