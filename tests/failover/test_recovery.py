"""Issue 6: the seed's Table 27-3 cases over two in-process failover sessions, on a clock.

Each test runs two real LeaseTable + DhcpServer + FailoverSession sides joined by the
in-memory link of test_peer (bytes through the codec, acks after commits),
restarts a side the way the process does (its lease records reloaded from
their packed form, its persisted failover state and queue), and ends with an
audit of both tables against the leases the clients were ACKed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnrd.config import loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import DhcpServer, RxInfo
from cnrd.failover import wire
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import S, Role
from cnrd.leases.model import Lease, LeaseFlag, LeaseState
from cnrd.leases.table import LeaseTable
from tests.dhcp.helpers import IFACE, mac, request, u32
from tests.failover.test_peer import CONFIG, T0, Link

SERVER_IP = {Role.MAIN: "10.1.0.1", Role.BACKUP: "10.1.0.2"}
MCLT = 60


class Side:
    """One server: config, table, DHCP core and failover session (same face as test_peer.Side)."""

    def __init__(self, role: Role, now: int, *, extra: str = "", stored=None, queue=(), leases=(),
                 failover_recover: int | None = None, enabled: bool = True):
        self.role = role
        self.config = loads(CONFIG.format(name=role.value) + extra)
        self.table = LeaseTable()
        self.server = DhcpServer(self.config, self.table)
        self.server.set_interfaces([IFACE])
        self.server.enabled = enabled
        for pool in self.table.pools.values():
            pool.failover = True
        self.table.load([Lease.unpack(p) for p in leases], now)
        self.log: list = []
        self.session = FailoverSession(self.config.failover_pairs["examplepair"], role, self.table, ["lan"],
                                       now=now, stored_state=stored, stored_queue=list(queue),
                                       failover_recover=failover_recover, log=lambda e, f: self.log.append((e, f)))
        self.table.listeners.append(self.session.lease_changed)
        self.server.gates["lan"] = self.session.gate
        self.framer = wire.Framer()
        self.persisted: dict = {}
        self.wire_log: list = []
        self.states = [self.session.status().label]
        self.extra = extra

    def restart(self, now: int, *, lose_database: bool = False, **kw) -> "Side":
        """The same server after a process restart: what its store holds, nothing else."""
        if lose_database:
            return Side(self.role, now, extra=self.extra, **kw)
        self.persisted.update(self.session.take_persist())
        # The update queue comes back with the lease records (their UPDATE_PENDING flags).
        packed = [lease.pack() for lease in self.table.leases.values() if lease.state is not LeaseState.OFFERED]
        return Side(self.role, now, extra=self.extra, stored=self.persisted.get("failover/examplepair/state"),
                    leases=packed, **kw)

    def track(self) -> None:
        label = self.session.status().label
        if self.states[-1] != label:
            self.states.append(label)


class TrackedLink(Link):
    """The test_peer link, recording every state each side passes through."""

    def settle(self, rounds: int = 2000):
        for _ in range(rounds):
            moved = self._flush(self.a, self.b) + self._flush(self.b, self.a)
            self.a.track()
            self.b.track()
            if not moved:
                return
        raise AssertionError("link never settled")


@dataclass
class Acked:
    address: int
    key: bytes
    start: int
    expiration: int
    server: Role


class Clients:
    """DHCP clients of both servers; remembers every ACK (the auditor's input)."""

    def __init__(self) -> None:
        self.acked: list[Acked] = []

    def dora(self, side: Side, n: int, now: int) -> int | None:
        ip = ip_to_int(SERVER_IP[side.role])
        bc = RxInfo(2, ip, 0xFFFFFFFF, 0)
        offer = side.server.handle(request(M.DISCOVER, mac(n)), bc, now)
        if offer is None:
            return None
        yi = offer.packet.yiaddr
        ack = side.server.handle(request(M.REQUEST, mac(n), o50=u32(yi), o54=u32(ip)), bc, now)
        assert ack is not None and ack.packet.options[53] == bytes([M.ACK])
        lt = int.from_bytes(ack.packet.options[51], "big")
        self.acked.append(Acked(yi, b"\x00\x01" + mac(n), now, now + lt, side.role))
        side.table.take_dirty()  # the commit before the ACK leaves
        return yi


def audit(clients: Clients, sides: list[Side], now: int, *, both: bool = True) -> None:
    """No address held by two clients at once; no ACKed, unexpired lease lost."""
    for side in sides:  # shown with -s: the states each side passed through
        print(f"  {side.role.value}: {' > '.join(side.states)}")
    grants: dict[int, list[Acked]] = {}
    for a in clients.acked:
        for b in grants.get(a.address, ()):
            # one address, two clients, lease times that overlap
            assert b.key == a.key or a.start >= b.expiration or b.start >= a.expiration, \
                f"{a.address:#x} held by two clients at once"
        grants.setdefault(a.address, []).append(a)
    for side in sides:
        by_addr = {}
        for lease in side.table.leases.values():
            if lease.state is LeaseState.LEASED:
                by_addr[lease.address] = lease.key
        # every current ACK is on the server that granted it, and (NORMAL) on both
        latest: dict[int, Acked] = {}
        for a in clients.acked:
            if a.expiration > now:
                latest[a.address] = a
        for a in latest.values():
            if both or side.role is a.server:
                assert by_addr.get(a.address) == a.key, \
                    f"{side.role.value} lost the lease of {a.address:#x}"
    # the two tables never bind one address to two clients
    if len(sides) == 2:
        for address, lease in sides[0].table.leases.items():
            other = sides[1].table.get(address)
            if lease.state is LeaseState.LEASED and other is not None and other.state is LeaseState.LEASED:
                assert lease.key == other.key, f"{address:#x} leased to two clients across the pair"


def normal_pair(extra: str = ""):
    main, backup = Side(Role.MAIN, T0, extra=extra), Side(Role.BACKUP, T0, extra=extra)
    link = TrackedLink(main, backup, T0)
    link.connect()
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    return main, backup, link


def rejoin_with_empty_store(backup: Side, link: TrackedLink) -> Side:
    """``backup`` restarted after losing its lease database, and connected again."""
    fresh = backup.restart(link.now, lose_database=True)
    link.b = fresh
    link.connect()
    return fresh


def backup_share(side: Side) -> set[int]:
    return {l.address for l in side.table.leases.values() if l.state is LeaseState.BACKUP}


def free_of_main(side: Side) -> bool:
    return True


def test_comm_interrupted_then_both_normal():
    main, backup, link = normal_pair()
    clients = Clients()
    clients.dora(main, 1, link.now)
    link.settle()
    link.drop()
    assert (main.session.state, backup.session.state) == (S.COMMUNICATIONS_INTERRUPTED,) * 2
    b_addr = clients.dora(backup, 2, link.now)
    assert b_addr in backup_share(backup) or backup.table.get(b_addr).state is LeaseState.LEASED
    link.advance(10)
    link.connect()
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    assert backup.states[-2:] == ["COMMUNICATIONS-INTERRUPTED", "NORMAL"]
    audit(clients, [main, backup], link.now)


def test_partner_down_refused_in_touch_and_uses_partner_pool_only_after_mclt():
    main, backup, link = normal_pair()
    clients = Clients()
    assert not backup.session.set_partner_down(link.now)  # the partner answers: refused
    assert backup.session.state is S.NORMAL
    m_addr = clients.dora(main, 1, link.now)
    link.settle()
    main.server.handle(request(M.RELEASE, mac(1), ciaddr=m_addr), RxInfo(2, ip_to_int("10.1.0.1"), ip_to_int("10.1.0.1"), m_addr), link.now)
    link.up = False  # the main dies without a word: no RELEASE update reaches the backup
    backup.session.connection_lost(link.now)
    assert backup.session.state is S.COMMUNICATIONS_INTERRUPTED
    link.now += 100
    assert backup.session.set_partner_down(link.now)
    assert backup.session.state is S.PARTNER_DOWN
    share = backup_share(backup)
    # before MCLT: only the backup's own addresses, however many clients ask
    got = [clients.dora(backup, 10 + i, link.now) for i in range(len(share) + 3)]
    assert set(filter(None, got)) == share and got.count(None) == 3
    # after MCLT past the partner-down time: the main's free addresses too
    link.now += MCLT
    backup.session.tick(link.now)
    extra = clients.dora(backup, 40, link.now)
    assert extra is not None and extra not in share
    # the address the main's client had stays with that client until MCLT past
    # its expiration: expired by now (requests expire what is due), never free
    lease = backup.table.get(m_addr)
    assert lease.state in (LeaseState.LEASED, LeaseState.EXPIRED)
    assert m_addr not in got and extra != m_addr
    assert not backup.table.is_available(m_addr, b"\x00\x01" + mac(99))
    audit(clients, [backup], link.now, both=False)


def test_partner_down_reclaims_expired_leases_mclt_after_the_later_time():
    main, backup, link = normal_pair()
    clients = Clients()
    m_addr = clients.dora(main, 1, link.now)  # a 60 s (MCLT) first lease
    link.settle()
    link.drop()
    since = link.now
    link.now += 30
    assert backup.session.set_partner_down(link.now, since=since)
    assert backup.session.status().stos == since
    lease = backup.table.get(m_addr)
    told = max(since, lease.expiration, lease.potential_expiration, lease.partner_time)
    link.now = told + MCLT - 1
    for _ in range(3):
        backup.session.tick(link.now)
    backup.table.expire(link.now)
    assert backup.table.get(m_addr).state is not LeaseState.AVAILABLE
    link.now = told + MCLT + 60
    backup.table.expire(link.now)
    for _ in range(3):
        backup.session.tick(link.now)
    assert backup.table.get(m_addr).state is LeaseState.AVAILABLE


def test_safe_period_moves_to_partner_down_by_itself():
    main, backup, link = normal_pair("use-safe-period = true\nsafe-period = 120\n")
    link.drop()
    link.advance(119)
    assert backup.session.state is S.COMMUNICATIONS_INTERRUPTED
    link.advance(2)
    assert backup.session.state is S.PARTNER_DOWN and main.session.state is S.PARTNER_DOWN


def test_server_that_was_down_returns_to_partner_down_recover_updreq_normal():
    main, backup, link = normal_pair()
    clients = Clients()
    clients.dora(main, 1, link.now)
    link.settle()
    # the main stops; the operator declares it down on the backup
    link.drop()
    assert backup.session.set_partner_down(link.now)
    link.advance(MCLT + 5)
    for n in range(2, 6):
        assert clients.dora(backup, n, link.now) is not None
    # the main comes back with its store
    reborn = main.restart(link.now)
    link.a = reborn
    link.connect()
    assert reborn.states[:3] == ["STARTUP", "RECOVER", "RECOVER-WAIT"] or "RECOVER" in reborn.states
    sent = [wire.MessageType(m.type).name for m in reborn.wire_log]
    assert "UPDREQ" in sent and "UPDREQALL" not in sent
    link.advance(MCLT + 2)
    assert (reborn.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    assert "RECOVER-DONE" in reborn.states and "PARTNER-DOWN" in backup.states
    audit(clients, [reborn, backup], link.now)


def test_both_running_partner_down_then_potential_conflict_settles_to_normal():
    main, backup, link = normal_pair()
    clients = Clients()
    clients.dora(main, 1, link.now)
    link.settle()
    link.drop()  # a partition: both keep running
    clients.dora(main, 9, link.now)  # the main serves its own pool before the operator acts
    link.now += 20
    assert backup.session.set_partner_down(link.now)
    link.now += MCLT + 5
    backup.session.tick(link.now)
    main.session.tick(link.now)
    for n in range(2, 8):
        clients.dora(backup, n, link.now)
    link.connect()
    assert "POTENTIAL-CONFLICT" in main.states and "POTENTIAL-CONFLICT" in backup.states
    link.advance(5)
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    # the main asked first (UPDREQ), then the backup (after CONFLICT-DONE)
    m_req = [i for i, m in enumerate(main.wire_log) if m.type == wire.MessageType.UPDREQ]
    b_req = [i for i, m in enumerate(backup.wire_log) if m.type == wire.MessageType.UPDREQ]
    assert m_req and b_req
    assert "CONFLICT-DONE" in main.states
    audit(clients, [main, backup], link.now)


def test_lost_database_recovers_everything_and_waits_mclt():
    for partner_state in ("COMMUNICATIONS-INTERRUPTED", "PARTNER-DOWN"):
        main, backup, link = normal_pair()
        clients = Clients()
        for n in range(1, 6):
            clients.dora(main, n, link.now)
        link.settle()
        link.drop()
        if partner_state == "PARTNER-DOWN":
            assert main.session.set_partner_down(link.now)
        link.advance(10)
        fresh = rejoin_with_empty_store(backup, link)
        assert fresh.states[:2] == ["STARTUP", "RECOVER"]
        assert any(m.type == wire.MessageType.UPDREQALL for m in fresh.wire_log)
        assert fresh.session.state is S.RECOVER_WAIT  # MCLT from its start
        link.advance(MCLT - 5)
        assert fresh.session.state is S.RECOVER_WAIT
        link.advance(10)
        assert (main.session.state, fresh.session.state) == (S.NORMAL, S.NORMAL), (partner_state, fresh.states)
        assert "RECOVER-DONE" in fresh.states
        audit(clients, [main, fresh], link.now)


def test_failover_recover_asks_everything_waits_from_that_time_and_warns():
    main, backup, link = normal_pair()
    clients = Clients()
    for n in range(1, 4):
        clients.dora(main, n, link.now)
    link.settle()
    link.advance(300)
    link.drop()
    # backup restored from a copy taken 100 s ago: failover-recover = that time
    restored = backup.restart(link.now, failover_recover=link.now - 100)
    link.b = restored
    link.connect()
    assert any(m.type == wire.MessageType.UPDREQALL for m in restored.wire_log)
    assert restored.session.state is S.NORMAL  # MCLT (60 s) since the backup time has passed
    # the failover-disabled case: now - MCLT, so no wait either; and a later time waits
    again = restored.restart(link.now, failover_recover=link.now - 10)
    link.drop()
    link.b = again
    link.connect()
    assert again.session.state is S.RECOVER_WAIT
    link.advance(MCLT - 10 + 1)
    assert again.session.state is S.NORMAL
    warned = [e for e, f in again.log if e == "failover-recover-still-set"]
    assert len(warned) == 1
    link.advance(3600, step=2)
    assert len([e for e, f in again.log if e == "failover-recover-still-set"]) == 2
    audit(clients, [main, again], link.now)


def test_role_change_discards_the_stored_relationship_state():
    main, backup, link = normal_pair()
    stored = main.persisted["failover/examplepair/state"]
    swapped = Side(Role.BACKUP, link.now, stored=stored, queue=[0x0A010064])
    assert ("failover-role-changed", {"pair": "examplepair", "role": "backup"}) in swapped.log
    assert swapped.session.full_recover and not swapped.session.updates.pending
    assert swapped.session.previous is S.RECOVER


def test_state_stored_before_roles_were_recorded_still_loads():
    import struct
    old = struct.pack("!BqBqIBB", int(S.NORMAL), T0, int(S.NORMAL), T0, 60, int(S.NORMAL), 1)
    side = Side(Role.MAIN, T0, stored=old)
    assert side.session.previous is S.NORMAL and not side.session.full_recover


def test_start_with_dhcp_disabled_keeps_failover_running():
    main = Side(Role.MAIN, T0, enabled=False)
    backup = Side(Role.BACKUP, T0)
    link = TrackedLink(main, backup, T0)
    link.connect()
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    clients = Clients()
    assert clients.dora(main, 1, link.now) is None
    main.server.enabled = True
    assert clients.dora(main, 1, link.now) is not None


def test_standalone_server_made_main_serves_in_partner_down_until_its_backup_recovers():
    # a standalone server with leases gets failover configured (seed, "Making
    # Nonfailover Servers Failover Mains"), or a role swap made it the main
    standalone = Side(Role.MAIN, T0)
    del standalone.server.gates["lan"]  # no failover yet
    for pool in standalone.table.pools.values():
        pool.failover = False
    clients = Clients()
    for n in range(1, 4):
        clients.dora(standalone, n, T0)
    packed = [l.pack() for l in standalone.table.leases.values()]
    main = Side(Role.MAIN, T0, leases=packed)
    for t in range(1, 8):
        main.session.tick(T0 + t)
    assert main.session.state is S.PARTNER_DOWN
    assert clients.dora(main, 10, T0 + 8) is not None  # still serving
    backup = Side(Role.BACKUP, T0 + 8)
    link = TrackedLink(main, backup, T0 + 8)
    link.connect()
    assert backup.states[:2] == ["STARTUP", "RECOVER"]
    assert any(m.type == wire.MessageType.UPDREQALL for m in backup.wire_log)
    link.advance(MCLT + 2)
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    audit(clients, [main, backup], link.now)


def test_main_with_an_empty_store_and_no_history_waits_for_its_partner():
    main = Side(Role.MAIN, T0)
    for t in range(1, 20):
        main.session.tick(T0 + t)
    assert main.session.state is S.RECOVER
    assert Clients().dora(main, 1, T0 + 20) is None


# -- the update queue in the lease records (LeaseFlag.UPDATE_PENDING) -----------------------

def pending(side: Side) -> set[int]:
    """The addresses whose lease record carries the pending flag (what a restart queues)."""
    return {a for a, lease in side.table.leases.items() if lease.flags & LeaseFlag.UPDATE_PENDING}


def test_the_pending_flag_is_the_queue_and_leaves_with_the_acknowledgement():
    main, backup, link = normal_pair()
    clients = Clients()
    assert pending(main) == set()  # the handshake's updates were all acknowledged
    link.drop()
    granted = {clients.dora(main, n, link.now) for n in range(1, 4)}
    assert pending(main) == granted  # written with the ACKs: no key of their own
    assert not [k for k in main.persisted if "/q/" in k]
    link.advance(5)
    reborn = main.restart(link.now)
    link.a = reborn
    assert set(reborn.session.updates.pending) == granted  # the records alone bring the queue back
    link.connect()
    assert (reborn.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    assert pending(reborn) == set()
    audit(clients, [reborn, backup], link.now)


def test_a_lease_changed_while_its_update_is_in_flight_stays_pending_until_the_second_ack():
    main, backup, link = normal_pair()
    clients = Clients()
    yi = clients.dora(main, 1, link.now)
    main.session.pump(link.now)
    assert yi in main.session.updates.inflight
    clients.dora(main, 1, link.now + 1)  # the client renews before the first update is acknowledged
    link.carry(main, backup, main.session.take())  # the first update reaches the backup
    link._flush(backup, main)  # and its BNDACK comes back
    # the newer binding is still to be sent, so the flag stays
    assert main.session.updates.is_outstanding(yi) and yi in pending(main)
    link.settle()
    assert pending(main) == set()


def test_answers_to_an_update_request_are_not_flagged():
    main, backup, link = normal_pair()
    clients = Clients()
    for n in range(1, 4):
        clients.dora(main, n, link.now)
    link.settle()
    assert pending(main) == set()
    link.drop()
    link.advance(10)
    fresh = rejoin_with_empty_store(backup, link)  # it asks for everything (UPDREQALL)
    assert any(m.type == wire.MessageType.UPDREQALL for m in fresh.wire_log)
    # the main sent its whole table without marking a lease as pending: after a
    # crash the backup would ask again, and a restart must not resend it all
    assert pending(main) == set()
