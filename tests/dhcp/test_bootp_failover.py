"""Dynamic BOOTP under failover: whose free addresses a BOOTP client may get.

CNR 7.2, "Dynamic BOOTP": in a dynamic-BOOTP scope "each partner can only
allocate its own addresses", and "BOOTP Backup Percentage": a server, "even
in PARTNER-DOWN state, never grants leases on addresses that are available
to the other server".  Own addresses are the draft's: the backup's are those
in state BACKUP, the main's the other free ones (draft §5.4).  The real gate
runs over a fixed view of the failover state.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.failover import wire
from cnrd.failover.gate import ALL_MAIN, SPLIT_EVEN, Gate
from cnrd.failover.states import S, Role
from cnrd.leases.model import LeaseFlag, LeaseState
from tests.dhcp.helpers import BASE_CONFIG, BCAST, make_server, mac, request

NOW = 1_800_000_000
MCLT = 3600

MAIN_FREE = {ip_to_int(f"10.1.0.{i}") for i in range(100, 105)}
BACKUP_FREE = {ip_to_int(f"10.1.0.{i}") for i in range(105, 110)}

BOOTP_SCOPE = """
[scope boot]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.109
bootp = true
dynamic-bootp = true
{dhcp}
"""

DHCP_SCOPE = """
[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.109
"""


@dataclass
class View:
    """The session values the gate reads, fixed for a test."""

    state: S
    role: Role
    stos: int = NOW - 10 * MCLT
    mclt: int = MCLT
    hba: bytes = ALL_MAIN
    max_secs: int = 3


def server_for(view: View, scope_text: str, scope: str):
    # The test configuration's [scope lan] is replaced by the scope under test.
    text = BASE_CONFIG.split("[scope lan]")[0] + scope_text
    server, _ = make_server(text)
    server.table.pools[scope].failover = True
    for address in BACKUP_FREE:
        # The main's pool split (CNR 7.2, "Setting Backup Percentages").
        server.table.update(address, durable=True, state=LeaseState.BACKUP, scope=scope)
    server.gates[scope] = Gate(view)
    return server


def bootp_server(view: View, *, dhcp: bool = False):
    return server_for(view, BOOTP_SCOPE.format(dhcp="" if dhcp else "dhcp = false"), "boot")


def bootp_clients(server, count: int, first: int = 1) -> list[int | None]:
    out = []
    for n in range(first, first + count):
        r = server.handle(request(None, mac(n)), BCAST, NOW)
        out.append(None if r is None else r.packet.yiaddr)
    return out


def test_backup_in_communications_interrupted_gives_bootp_clients_only_backup_addresses():
    server = bootp_server(View(S.COMMUNICATIONS_INTERRUPTED, Role.BACKUP))
    got = bootp_clients(server, 6)
    assert set(got[:5]) == BACKUP_FREE
    # Its own addresses gone, the main's free ones stay the main's.
    assert got[5] is None
    assert server.counters.drops["no-address-available"] == 1
    for address in BACKUP_FREE:
        lease = server.table.get(address)
        assert lease.state is LeaseState.LEASED and lease.flags & LeaseFlag.DYNAMIC_BOOTP
    assert all(server.table.get(a) is None for a in MAIN_FREE)


def test_main_in_communications_interrupted_gives_bootp_clients_only_its_own_addresses():
    server = bootp_server(View(S.COMMUNICATIONS_INTERRUPTED, Role.MAIN))
    got = bootp_clients(server, 6)
    assert set(got[:5]) == MAIN_FREE and got[5] is None
    assert all(server.table.get(a).state is LeaseState.BACKUP for a in BACKUP_FREE)


def test_partner_down_after_mclt_never_gives_a_bootp_client_the_partners_addresses():
    for role, own, partners in ((Role.BACKUP, BACKUP_FREE, MAIN_FREE), (Role.MAIN, MAIN_FREE, BACKUP_FREE)):
        view = View(S.PARTNER_DOWN, role, stos=NOW - MCLT - 1)
        server = bootp_server(view)
        got = bootp_clients(server, 6)
        assert set(got[:5]) == own and got[5] is None, role
        assert all(server.table.get(a) is None or server.table.get(a).state is LeaseState.BACKUP
                   for a in partners)


def test_dhcp_client_of_a_dynamic_bootp_scope_is_held_to_its_own_addresses_in_partner_down():
    # The partner may have given its free addresses to BOOTP clients for
    # ever: no MCLT wait makes them safe, whoever the client is.
    server = bootp_server(View(S.PARTNER_DOWN, Role.BACKUP, stos=NOW - MCLT - 1), dhcp=True)
    offered = []
    for n in range(1, 7):
        offer = server.handle(request(M.DISCOVER, mac(n)), BCAST, NOW)
        offered.append(None if offer is None else offer.packet.yiaddr)
    assert set(offered[:5]) == BACKUP_FREE and offered[5] is None


def test_scope_without_dynamic_bootp_takes_the_partners_addresses_after_mclt():
    # The contrast the rule is drawn against (CNR 7.2, "Dynamic BOOTP"):
    # PARTNER-DOWN may allocate any available address of such a scope.
    server = server_for(View(S.PARTNER_DOWN, Role.BACKUP, stos=NOW - MCLT - 1), DHCP_SCOPE, "lan")
    offered = set()
    for n in range(1, 11):
        offer = server.handle(request(M.DISCOVER, mac(n)), BCAST, NOW)
        assert offer is not None
        offered.add(offer.packet.yiaddr)
    assert offered == MAIN_FREE | BACKUP_FREE


def test_load_balanced_bootp_goes_to_the_server_of_the_clients_bucket_from_its_own_pool():
    # "Broadcast BOOTP and DHCPINFORM requests are also load-balanced."
    server = bootp_server(View(S.NORMAL, Role.BACKUP, hba=SPLIT_EVEN))
    mains = [n for n in range(1, 400) if wire.hba_has_bucket(SPLIT_EVEN, wire.load_balance_hash(mac(n)))]
    backups = [n for n in range(1, 400) if n not in mains]
    r = server.handle(request(None, mac(mains[0])), BCAST, NOW)
    assert r is None and server.counters.drops["failover-load-balanced-to-partner"] == 1
    r = server.handle(request(None, mac(backups[0])), BCAST, NOW)
    assert r is not None and r.packet.yiaddr in BACKUP_FREE


def test_bootp_client_keeps_its_address_whoever_owned_it():
    server = bootp_server(View(S.COMMUNICATIONS_INTERRUPTED, Role.BACKUP))
    first = bootp_clients(server, 1)[0]
    assert bootp_clients(server, 1)[0] == first


def test_backup_does_not_reoffer_a_returning_clients_freed_address_that_is_the_mains():
    # The client's old address went back to the main's free pool (AVAILABLE):
    # a backup in COMMUNICATIONS-INTERRUPTED offers one of its own instead.
    server = server_for(View(S.COMMUNICATIONS_INTERRUPTED, Role.BACKUP), DHCP_SCOPE, "lan")
    old = min(MAIN_FREE)
    server.table.update(old, durable=True, state=LeaseState.AVAILABLE, scope="lan", hw=b"\x01" + mac(7),
                        client_id=None, expiration=0)
    assert server.table.get(old).key is not None  # the record still names the client
    offer = server.handle(request(M.DISCOVER, mac(7)), BCAST, NOW)
    assert offer is not None and offer.packet.yiaddr in BACKUP_FREE
    # The main (or a server in PARTNER-DOWN) may give it back to its client.
    main = server_for(View(S.COMMUNICATIONS_INTERRUPTED, Role.MAIN), DHCP_SCOPE, "lan")
    main.table.update(old, durable=True, state=LeaseState.AVAILABLE, scope="lan", hw=b"\x01" + mac(7),
                      client_id=None, expiration=0)
    assert main.handle(request(M.DISCOVER, mac(7)), BCAST, NOW).packet.yiaddr == old
