"""Two in-process failover sessions joined by an in-memory link, on a Clock.

Each side is a real LeaseTable + DhcpServer + FailoverSession; messages cross as bytes
through the wire codec and the Framer, and BNDACKs leave only after the
receiving side's "commit" (take_dirty), as the adapter does.
"""

from __future__ import annotations

import dataclasses

from cnrd.config import loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import DhcpServer, RxInfo
from cnrd.failover import wire
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import S, Role
from cnrd.leases.model import LeaseFlag, LeaseState
from cnrd.leases.table import LeaseTable
from tests.dhcp.helpers import IFACE, mac, request, u32

CONFIG = """
[server]
name = {name}
interfaces = eth1
data-dir = /nonexistent

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149

[failover-pair examplepair]
main = 10.1.0.1
backup = 10.1.0.2
mclt = 60
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""

T0 = 1_800_000_000


class Side:
    def __init__(self, role: Role, now: int, stored=None, queue=(), table=None, text=CONFIG):
        self.config = loads(text.format(name=role.value))
        self.table = LeaseTable() if table is None else table
        self.server = DhcpServer(self.config, self.table)
        self.server.set_interfaces([IFACE])
        for pool in self.table.pools.values():
            pool.failover = True
        self.log = []
        self.session = FailoverSession(self.config.failover_pairs["examplepair"], role, self.table, ["lan"],
                                       now=now, stored_state=stored, stored_queue=list(queue),
                                       log=lambda e, f: self.log.append((e, f)))
        self.table.listeners.append(self.session.lease_changed)
        self.server.gates["lan"] = self.session.gate
        self.framer = wire.Framer()
        self.persisted = {}
        self.wire_log = []


class Link:
    """Moves the sessions' output across, committing before acks like the adapter."""

    def __init__(self, a: Side, b: Side, now: int):
        self.a, self.b, self.now = a, b, now
        self.up = False

    def connect(self):
        self.up = True
        self.a.session.connection_made(self.now)
        self.b.session.connection_made(self.now)
        self.settle()

    def drop(self):
        self.up = False
        self.a.session.connection_lost(self.now)
        self.b.session.connection_lost(self.now)
        self.settle()

    def settle(self, rounds: int = 2000):
        for _ in range(rounds):
            moved = self._flush(self.a, self.b) + self._flush(self.b, self.a)
            if not moved:
                return
        raise AssertionError("link never settled")

    def _flush(self, src: Side, dst: Side) -> int:
        src.session.pump(self.now)  # the adapter does this after each DHCP batch
        return self.carry(src, dst, src.session.take())

    def carry(self, src: Side, dst: Side, out) -> int:
        """Commit ``src``'s changes and deliver its output ``out`` to ``dst``; how many messages."""
        src.table.take_dirty()  # the commit
        src.persisted.update(src.session.take_persist())
        msgs = out.send + out.acks
        if out.close and self.up:
            self.drop()
        if not self.up:
            return 0
        for m in msgs:
            data = wire.encode(m)
            src.wire_log.append(m)
            for got in dst.framer.feed(data):
                dst.session.receive(got, self.now)
        return len(msgs)

    def advance(self, seconds: int, step: int = 1):
        for _ in range(0, seconds, step):
            self.now += step
            self.a.session.tick(self.now)
            self.b.session.tick(self.now)
            self.settle()


def pair():
    main, backup = Side(Role.MAIN, T0), Side(Role.BACKUP, T0)
    return main, backup, Link(main, backup, T0)


BROADCAST = RxInfo(2, ip_to_int("10.1.0.1"), 0xFFFFFFFF, 0)


def dora(side: Side, client: int, now: int) -> int:
    """DISCOVER then REQUEST from ``mac(client)``; the address it was given."""
    offer = side.server.handle(request(M.DISCOVER, mac(client)), BROADCAST, now)
    yi = offer.packet.yiaddr
    side.server.handle(request(M.REQUEST, mac(client), o50=u32(yi), o54=u32(ip_to_int("10.1.0.1"))),
                       BROADCAST, now)
    return yi


def restart(side: Side, role: Role, now: int, queue) -> Side:
    """The same server after a restart: its table (the store), stored state and queue."""
    table = side.table
    table.listeners.clear()
    return Side(role, now, stored=side.persisted.get("failover/examplepair/state"), queue=queue, table=table)


def states(main, backup):
    return main.session.state, backup.session.state


def test_fresh_pair_recovers_then_normal_and_backup_gets_its_share():
    main, backup, link = pair()
    link.connect()
    assert states(main, backup) == (S.NORMAL, S.NORMAL)
    types = [wire.MessageType(m.type).name for m in main.wire_log[:4]]
    assert types[0] == "CONNECT" and "UPDREQALL" in [wire.MessageType(m.type).name for m in main.wire_log]
    # 10 % of 50 addresses handed to the backup, known on both sides as BACKUP
    on_main = [l.address for l in main.table.leases.values() if l.state is LeaseState.BACKUP]
    on_backup = [l.address for l in backup.table.leases.values() if l.state is LeaseState.BACKUP]
    assert len(on_main) == 5 and sorted(on_main) == sorted(on_backup)
    # the backup asked for its pool (CNR), the main answered
    assert any(m.type == wire.MessageType.POOLREQ for m in backup.wire_log)
    assert any(m.type == wire.MessageType.POOLRESP for m in main.wire_log)
    assert main.session.updates.unacked == {} and backup.session.updates.unacked == {}
    assert main.persisted["failover/examplepair/state"]


def test_lease_on_main_reaches_backup_with_mclt_times():
    main, backup, link = pair()
    link.connect()
    now = link.now
    bc = RxInfo(2, ip_to_int("10.1.0.1"), 0xFFFFFFFF, 0)
    offer = main.server.handle(request(M.DISCOVER, mac(1)), bc, now)
    assert offer is not None
    yi = offer.packet.yiaddr
    # a new client's first lease is the MCLT
    assert offer.packet.options[51] == u32(60)
    ack = main.server.handle(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(ip_to_int("10.1.0.1"))), bc, now)
    assert ack.packet.options[51] == u32(60)
    link.settle()
    theirs = backup.table.get(yi)
    assert theirs.state is LeaseState.LEASED and theirs.hw == b"\x01" + mac(1)
    assert theirs.expiration == now + 60
    assert theirs.partner_time == now + 3600 + 60  # potential expiration: now + desired + MCLT
    # after the ack, a renewal gets the desired time and tells desired x 1.5
    assert main.table.get(yi).partner_time == now + 3660
    link.advance(30)
    renew = main.server.handle(request(M.REQUEST, mac(1), ciaddr=yi), RxInfo(2, ip_to_int("10.1.0.1"), ip_to_int("10.1.0.1"), yi), link.now)
    assert renew.packet.options[51] == u32(3600)
    link.settle()
    assert backup.table.get(yi).partner_time == link.now + 5400


def test_backup_answers_no_client_in_normal():
    main, backup, link = pair()
    link.connect()
    bc = RxInfo(2, ip_to_int("10.1.0.2"), 0xFFFFFFFF, 0)
    assert backup.server.handle(request(M.DISCOVER, mac(1)), bc, link.now) is None
    assert backup.server.counters.drops["failover-normal-backup"] == 1


def test_communications_interrupted_and_back_to_normal():
    main, backup, link = pair()
    link.connect()
    link.drop()
    assert states(main, backup) == (S.COMMUNICATIONS_INTERRUPTED, S.COMMUNICATIONS_INTERRUPTED)
    # the backup now serves new clients, only from its share
    bc = RxInfo(2, ip_to_int("10.1.0.2"), 0xFFFFFFFF, 0)
    share = {l.address for l in backup.table.leases.values() if l.state is LeaseState.BACKUP}
    offer = backup.server.handle(request(M.DISCOVER, mac(7)), bc, link.now)
    assert offer.packet.yiaddr in share
    backup.server.handle(request(M.REQUEST, mac(7), o50=u32(offer.packet.yiaddr),
                                 o54=u32(ip_to_int("10.1.0.1"))), bc, link.now)
    link.connect()
    assert states(main, backup) == (S.NORMAL, S.NORMAL)
    # what the backup did while apart reached the main
    assert main.table.get(offer.packet.yiaddr).state is LeaseState.LEASED


def test_silent_partner_times_out_and_contact_keeps_link_alive():
    main, backup, link = pair()
    link.connect()
    link.advance(20)
    assert states(main, backup) == (S.NORMAL, S.NORMAL)
    assert any(m.type == wire.MessageType.CONTACT for m in main.wire_log)
    # one side stops hearing anything: the link is dropped after the poll timeout
    link.up = False
    for _ in range(8):
        link.now += 1
        main.session.tick(link.now)
    out = main.session.take()
    assert out.close
    main.session.connection_lost(link.now)
    assert main.session.state is S.COMMUNICATIONS_INTERRUPTED


def test_connect_rejects_wrong_name_skew_and_mclt():
    backup = Side(Role.BACKUP, T0)
    backup.session.connection_made(T0)

    def answer(**kw):
        args = dict(relationship_name="examplepair", max_unacked=10, receive_timer=6,
                    vendor_class="isc-4.4.3-P1", mclt=60, hba=wire.hba_from_split(128))
        args.update(kw)
        msg_time = args.pop("time", T0)
        backup.session.link.handshaken = False
        backup.session.receive(wire.connect(0, msg_time, **args), T0)
        out = backup.session.take()
        return out.send[0], out.close

    ack, close = answer(relationship_name="other")
    assert ack.reject_reason == wire.RejectReason.INVALID_PARTNER and close
    ack, close = answer(time=T0 + 120)
    assert ack.reject_reason == wire.RejectReason.TIME_MISMATCH
    ack, close = answer(mclt=3600)
    assert ack.reject_reason == wire.RejectReason.INVALID_MCLT
    ack, close = answer()
    assert ack.reject_reason is None and not close


def test_unacked_updates_survive_restart_through_the_persisted_queue():
    main, backup, link = pair()
    link.connect()
    link.drop()
    bc = RxInfo(2, ip_to_int("10.1.0.1"), 0xFFFFFFFF, 0)
    offer = main.server.handle(request(M.DISCOVER, mac(3)), bc, link.now)
    main.server.handle(request(M.REQUEST, mac(3), o50=u32(offer.packet.yiaddr),
                               o54=u32(ip_to_int("10.1.0.1"))), bc, link.now)
    main.persisted.update(main.session.take_persist())  # the commit
    # The lease's record carries the queue entry: no key of its own.
    assert main.table.get(offer.packet.yiaddr).flags & LeaseFlag.UPDATE_PENDING
    assert not [k for k in main.persisted if "/q/" in k]
    reborn = restart(main, Role.MAIN, link.now, ())
    assert offer.packet.yiaddr in reborn.session.updates.pending
    link.a = reborn
    link.connect()
    assert states(reborn, backup) == (S.NORMAL, S.NORMAL)
    assert backup.table.get(offer.packet.yiaddr).state is LeaseState.LEASED


def test_change_while_update_in_flight_is_sent_after_the_ack():
    main, backup, link = pair()
    link.connect()
    bc = RxInfo(2, ip_to_int("10.1.0.1"), 0xFFFFFFFF, 0)
    offer = main.server.handle(request(M.DISCOVER, mac(4)), bc, link.now)
    yi = offer.packet.yiaddr
    main.server.handle(request(M.REQUEST, mac(4), o50=u32(yi), o54=u32(ip_to_int("10.1.0.1"))), bc, link.now)
    main.session.pump(link.now)  # the ACTIVE update is now in flight, unacked
    assert yi in main.session.updates.inflight
    # the client releases before the partner acknowledged
    main.server.handle(request(M.RELEASE, mac(4), ciaddr=yi), bc, link.now)
    link.settle()
    # the backup ends with the release, not the stale ACTIVE binding
    assert backup.table.get(yi).state is LeaseState.AVAILABLE
    assert main.table.get(yi).state is LeaseState.AVAILABLE  # freed once the partner acked the release
    assert not main.session.updates.pending and not main.session.updates.inflight


def test_fresh_backup_joining_a_main_that_was_normal_gets_everything():
    """The bench's recovery case: main restarted with leases and a stored NORMAL state,
    backup with an empty store. The backup must RECOVER with UPDREQALL, not
    go POTENTIAL-CONFLICT."""
    main, backup, link = pair()
    link.connect()
    bc = RxInfo(2, ip_to_int("10.1.0.1"), 0xFFFFFFFF, 0)
    for n in range(5):
        offer = main.server.handle(request(M.DISCOVER, mac(20 + n)), bc, link.now)
        main.server.handle(request(M.REQUEST, mac(20 + n), o50=u32(offer.packet.yiaddr),
                                   o54=u32(ip_to_int("10.1.0.1"))), bc, link.now)
    link.settle()
    stored = main.persisted["failover/examplepair/state"]
    table = main.table
    table.listeners.clear()
    reborn = Side(Role.MAIN, link.now, stored=stored, table=table)
    fresh = Side(Role.BACKUP, link.now)
    link2 = Link(reborn, fresh, link.now)
    link2.connect()
    assert fresh.session.state in (S.RECOVER_WAIT, S.RECOVER_DONE, S.NORMAL)
    assert any(m.type == wire.MessageType.UPDREQALL for m in fresh.wire_log), "\n".join(map(str, fresh.log + [("MAIN",)] + reborn.log))
    link2.advance(61)
    assert states(reborn, fresh) == (S.NORMAL, S.NORMAL)
    leased = {a for a, l in table.leases.items() if l.state is LeaseState.LEASED}
    assert len(leased) == 5
    assert {a for a, l in fresh.table.leases.items() if l.state is LeaseState.LEASED} == leased


def test_two_mains_and_two_backups_are_refused():
    main = Side(Role.MAIN, T0)
    main.session.connection_made(T0)
    main.session.take()
    main.session.receive(wire.connect(0, T0, relationship_name="examplepair", max_unacked=10, receive_timer=6,
                                   vendor_class="x", mclt=60, hba=wire.hba_from_split(256)), T0)
    out = main.session.take()
    assert out.send[0].type == wire.MessageType.CONNECTACK
    assert out.send[0].reject_reason == wire.RejectReason.INVALID_PARTNER and out.close
    backup = Side(Role.BACKUP, T0)
    backup.session.connection_made(T0)
    backup.session.receive(wire.connectack(0, T0, relationship_name="examplepair", vendor_class="x",
                                        max_unacked=10, receive_timer=6), T0)
    out = backup.session.take()
    assert out.send[-1].type == wire.MessageType.DISCONNECT and out.close


def _from_partner(side: Side, msg, now: int) -> list:
    """Deliver one message as if from the partner; what the side answers."""
    for got in side.framer.feed(wire.encode(msg)):
        side.session.receive(got, now)
    return side.session.take().acks


def test_restarted_backup_resending_a_stale_free_does_not_take_a_partner_down_lease():
    # The backup, killed with a FREE update for an address unacked, resends it
    # after restart; the main, in PARTNER-DOWN, has leased that address since
    # and must not take the FREE (draft figure 7.1.3-1, time2).
    main, backup, link = pair()
    link.connect()
    yi = dora(main, 7, link.now)
    link.advance(5)
    stale = link.now
    # the backup's last word on the address, never acknowledged: FREE
    backup.table.update(yi, durable=True, event="free", now=stale, state=LeaseState.AVAILABLE, scope="lan",
                        hw=b"", client_id=None, expiration=0, cltt=stale)
    link.up = False  # kill -9: nothing more crosses
    main.session.connection_lost(link.now)
    link.advance(3)
    assert main.session.set_partner_down(link.now)
    link.advance(6)
    # leases granted before it queue ahead of its ACTIVE update, so the
    # backup's stale FREE reaches the main before the main's update leaves
    for i in range(20, 30):
        dora(main, i, link.now)
    assert dora(main, 7, link.now) == yi
    assert main.table.get(yi).state is LeaseState.LEASED
    reborn = restart(backup, Role.BACKUP, link.now, [yi])
    reborn.session.reconfigure(dataclasses.replace(reborn.session.pair, max_unacked_updates=1), ["lan"], {}, None,
                               link.now)
    link.b = reborn
    link.connect()
    link.advance(200, step=5)
    assert main.table.get(yi).state is LeaseState.LEASED
    assert main.table.get(yi).hw == b"\x01" + mac(7)
    assert reborn.table.get(yi).state is LeaseState.LEASED
    assert states(main, reborn) == (S.NORMAL, S.NORMAL)


def test_stale_free_backup_expired_or_release_is_refused_for_an_unexpired_lease():
    # draft figure 7.1.3-1: time2 for FREE/BACKUP/EXPIRED, time1 for RELEASED
    main, backup, link = pair()
    link.connect()
    link.drop()
    link.advance(10)
    assert main.session.set_partner_down(link.now)
    link.advance(5)
    yi = dora(main, 7, link.now)
    assert main.table.get(yi).state is LeaseState.LEASED
    link.connect()
    stale = link.now - 9
    for status, hw in ((wire.BindingStatus.FREE, None), (wire.BindingStatus.BACKUP, None),
                       (wire.BindingStatus.EXPIRED, b"\x01" + bytes(6)),
                       (wire.BindingStatus.RELEASED, b"\x01" + bytes(6))):
        acks = _from_partner(main, wire.bndupd(900 + status, link.now, assigned_address=yi, binding_status=status,
                                               lease_expiration=0, potential_expiration=0,
                                               start_time_of_state=stale, client_hw=hw, cltt=stale), link.now)
        assert [a.reject_reason for a in acks] == [int(wire.RejectReason.OUTDATED_BINDING_INFO)], status
        lease = main.table.get(yi)
        assert lease.state is LeaseState.LEASED and lease.hw == b"\x01" + mac(7), status
    # a release newer than the ACK is the client's and is taken
    acks = _from_partner(main, wire.bndupd(999, link.now, assigned_address=yi, binding_status=wire.BindingStatus.RELEASED,
                                           lease_expiration=link.now + 1, potential_expiration=link.now + 1,
                                           start_time_of_state=link.now, client_hw=b"\x01" + mac(7),
                                           cltt=link.now + 1), link.now + 1)
    assert [a.reject_reason for a in acks] == [None]
    assert main.table.get(yi).state is LeaseState.AVAILABLE


def test_both_servers_acked_the_client_the_longer_lease_wins_on_both():
    # Partitioned, the backup in PARTNER-DOWN renews a client for the full time
    # while the main, COMMUNICATIONS-INTERRUPTED, gives the same client the
    # MCLT; the client may hold either lease, so the longer one must win the
    # duel on both servers whoever is primary.
    main, backup, link = pair()
    link.connect()
    yi = dora(main, 7, link.now)
    main.session.pump(link.now)  # our ACTIVE update is in flight, not yet acked
    assert yi in main.session.updates.inflight
    ours = main.table.get(yi)
    assert ours.expiration - link.now <= 60  # a first lease: the MCLT
    longer = link.now + 3600
    acks = _from_partner(main, wire.bndupd(
        700, link.now, assigned_address=yi, binding_status=wire.BindingStatus.ACTIVE, lease_expiration=longer,
        potential_expiration=longer + 1800, start_time_of_state=link.now, client_hw=b"\x01" + mac(7),
        cltt=ours.cltt), link.now)
    assert [a.reject_reason for a in acks] == [None]  # not "less critical": it runs longer
    assert main.table.get(yi).expiration == longer
    link.settle()
    # a shorter binding of the same client, even with a newer CLTT, does not cut it short
    for got in main.framer.feed(wire.encode(wire.bndupd(
            701, link.now, assigned_address=yi, binding_status=wire.BindingStatus.ACTIVE,
            lease_expiration=link.now + 30, potential_expiration=link.now + 3630, start_time_of_state=link.now,
            client_hw=b"\x01" + mac(7), cltt=link.now + 1))):
        main.session.receive(got, link.now + 1)
    out = main.session.take()
    assert [a.reject_reason for a in out.acks] == [None]
    assert main.table.get(yi).expiration == longer
    assert yi in main.session.updates.inflight  # and the partner is told the longer one back
    link.carry(main, backup, out)
    link.settle()
    assert backup.table.get(yi).expiration == longer
    assert main.table.get(yi).state is backup.table.get(yi).state is LeaseState.LEASED


def test_acknowledged_partner_time_needs_no_commit_of_its_own_and_rides_with_the_next():
    # draft §7.1.5: the acked potential expiration only lets a later renewal
    # run longer; losing it shortens that renewal, so the BNDACK does not
    # make the lease dirty (no sync), and the next commit or tick writes it.
    main, backup, link = pair()
    link.connect()
    main.session.exchange.mark_acked_times()  # the commits after the handshake's updates
    main.table.take_dirty()
    now = link.now
    yi = dora(main, 1, now)
    assert main.table.get(yi).flags & LeaseFlag.UPDATE_PENDING  # written with the ACK's commit
    main.session.pump(now)
    out = main.session.take()
    main.table.take_dirty()  # the commit before the BNDUPD left
    assert [m.type for m in out.send] == [wire.MessageType.BNDUPD]
    for m in out.send:
        for got in backup.framer.feed(wire.encode(m)):
            backup.session.receive(got, now)
    backup.table.take_dirty()
    acks = backup.session.take().acks
    assert len(acks) == 1
    for got in main.framer.feed(wire.encode(acks[0])):
        main.session.receive(got, now)
    assert main.table.get(yi).partner_time == now + 3660  # in force at once (lease_time reads it)
    assert not main.table.has_dirty  # nothing to sync for it
    assert main.session.exchange.mark_acked_times() == 1
    dirty, _ = main.table.take_dirty()
    # one record: the partner time and the pending flag cleared
    assert [(l.address, l.partner_time, l.flags) for l in dirty] == [(yi, now + 3660, LeaseFlag.NONE)]
    assert main.session.exchange.mark_acked_times() == 0  # marked once


def test_tick_writes_acknowledged_partner_times():
    main, backup, link = pair()
    link.connect()
    yi = dora(main, 2, link.now)
    link.settle()
    main.table.take_dirty()
    assert main.table.get(yi).partner_time == link.now + 3660
    link.now += 1
    main.session.tick(link.now)
    dirty, _ = main.table.take_dirty()
    assert yi in [l.address for l in dirty]
