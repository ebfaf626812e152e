"""Several bindings per BNDUPD/BNDACK between two cnrd servers ([D] §6.3).

draft-ietf-dhc-failover-12 §6.3 lets a BNDUPD carry several bindings, each
opening with its assigned-IP-address, and the BNDACK answer each of them;
§6.1 caps a message at 2048 bytes.  ISC dhcpd 4.4 takes one binding per
message, so a partner whose CONNECT/CONNECTACK vendor class is not ours
gets one binding per BNDUPD.
"""

from __future__ import annotations

from cnrd.failover import wire
from cnrd.failover.updates import InFlight, Updates
from cnrd.leases.model import LeaseState
from tests.failover.test_peer import dora, pair

ADDRESS = wire.Option.ASSIGNED_IP_ADDRESS


def _sent(side, mtype):
    return [m for m in side.wire_log if m.type == mtype]


def test_cnrd_partners_batch_bindings_within_the_size_limit_and_all_are_acked():
    main, backup, link = pair()
    link.connect()
    before = len(_sent(main, wire.MessageType.BNDUPD))
    given = [dora(main, client, link.now) for client in range(1, 41)]
    link.settle()
    updates = _sent(main, wire.MessageType.BNDUPD)[before:]
    counts = [len(m.get_all(ADDRESS)) for m in updates]
    assert sum(counts) >= 40 and max(counts) > 1
    assert all(len(wire.encode(m)) <= 2048 for m in updates)
    acks = _sent(backup, wire.MessageType.BNDACK)
    assert max(len(m.get_all(ADDRESS)) for m in acks) > 1
    for address in given:
        assert backup.table.get(address).state is LeaseState.LEASED
    upd = main.session.updates
    assert not upd.pending and not upd.unacked and not upd.inflight
    assert upd.acked_updates == upd.sent_updates and upd.rejected_updates == 0
    assert main.session.status().queued == 0


def test_a_partner_that_is_not_cnrd_gets_one_binding_per_bndupd():
    main, backup, link = pair()
    link.connect()
    main.session.link._partner_vendor = "isc-4.4.3-P1"  # as if the CONNECTACK came from ISC dhcpd
    before = len(_sent(main, wire.MessageType.BNDUPD))
    given = [dora(main, client, link.now) for client in range(1, 11)]
    link.settle()
    updates = _sent(main, wire.MessageType.BNDUPD)[before:]
    assert len(updates) >= 10 and all(len(m.get_all(ADDRESS)) == 1 for m in updates)
    for address in given:
        assert backup.table.get(address).state is LeaseState.LEASED


def test_one_binding_is_settled_by_its_xid_as_isc_acks_it():
    upd = Updates("p")
    upd.queue(10)
    assert upd.next_due(1) == 10
    upd.sent_update(7, InFlight(10, 3, 0))
    assert upd.next_due(1) is None  # the window counts messages
    assert upd.acked(7, rejected=False, address=99) == InFlight(10, 3, 0)
    assert upd.in_flight_count == 0


def test_a_batch_is_settled_binding_by_binding_by_xid_and_address():
    upd = Updates("p")
    for a in (10, 11, 12):
        upd.queue(a)
    assert upd.next_due(1) == 10
    upd.sent_update(7, InFlight(10, 3, 0))
    assert upd.next_in_message() == 11
    upd.sent_update(7, InFlight(11, 3, 0))
    assert upd.next_due(1) is None and upd.next_in_message() == 12
    upd.put_back(12)
    assert list(upd.pending) == [12]
    assert upd.in_flight_count == 2
    assert upd.acked(7, rejected=False, address=99) is None  # not a binding of that BNDUPD
    assert upd.acked(7, rejected=True, address=11) == InFlight(11, 3, 0)
    assert upd.in_flight(10) == InFlight(10, 3, 0) and upd.in_flight(11) is None
    # the last binding left of the batch still needs its own address
    assert upd.acked(7, rejected=False, address=12) is None
    assert upd.acked(7, rejected=False, address=10) == InFlight(10, 3, 0)
    assert not upd.unacked and upd.rejected_updates == 1 and upd.acked_updates == 1
    persist = upd.take_persist()
    assert persist[f"failover/p/q/{10:08x}"] is None and persist[f"failover/p/q/{11:08x}"] is None
    assert persist[f"failover/p/q/{12:08x}"] == b""


def test_link_loss_requeues_every_binding_of_a_batch():
    upd = Updates("p")
    for a in (10, 11):
        upd.queue(a)
    upd.sent_update(7, InFlight(upd.next_due(1), 3, 0))
    upd.sent_update(7, InFlight(upd.next_in_message(), 3, 0))
    upd.requeue()
    assert list(upd.pending) == [10, 11] and not upd.unacked and not upd.inflight
