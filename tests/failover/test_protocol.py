"""The failover adapter: bad bytes drop the link with a DISCONNECT, strangers are refused."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from cnrd.failover import wire
from cnrd.failover.protocol import FailoverProtocol, FailoverService
from tests.failover.test_peer import T0, Side
from cnrd.failover import record
from cnrd.failover.states import Role, S


# a backup that was NORMAL with its partner when it stopped
NORMAL_RECORD = record.pack(record.StateRecord(
    state=S.NORMAL, stos=T0, partner_state=S.NORMAL, partner_stos=T0, mclt=60, previous=S.NORMAL, talked=True,
    role_code=record.role_code(Role.BACKUP)))


def make(role=Role.BACKUP, stored=None):
    reactor = MemoryReactorClock()
    reactor.advance(T0)
    side = Side(role, T0, stored=stored)
    commits = []
    svc = FailoverService(side.session, reactor, local_ip="10.1.0.2", partner_ip="10.1.0.1", port=647,
                          commit=lambda then: (commits.append(1), then(True)))
    return svc, side, commits


def connect(svc, host):
    proto = FailoverProtocol(svc)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    proto.makeConnection(transport)
    return proto, transport


def messages(transport):
    return wire.Framer().feed(transport.value())


def test_stranger_is_refused_at_once():
    svc, side, _ = make()
    proto, transport = connect(svc, "10.1.0.77")
    assert transport.disconnecting and svc.link is None
    assert not side.session.status().connected


def test_garbage_gets_disconnect_and_close():
    svc, side, _ = make()
    proto, transport = connect(svc, "10.1.0.1")
    assert svc.link is proto
    proto.dataReceived(b"\x00\x05\x05\x0c" + b"\x00" * 8)  # length 5 < 12: broken framing
    out = messages(transport)
    assert out[-1].type == wire.MessageType.DISCONNECT
    assert out[-1].reject_reason is not None
    assert transport.disconnecting


def test_connect_without_hba_is_rejected_with_18():
    svc, side, _ = make()
    proto, transport = connect(svc, "10.1.0.1")
    msg = wire.connect(0, T0, relationship_name="examplepair", max_unacked=10, receive_timer=6,
                       vendor_class="x", mclt=60, hba=b"\xff" * 31)
    proto.dataReceived(wire.encode(msg))
    out = messages(transport)
    assert out[0].type == wire.MessageType.CONNECTACK
    assert out[0].reject_reason == wire.RejectReason.HBA_CONFLICT
    assert transport.disconnecting


def test_good_connect_is_answered_and_acks_wait_for_commit():
    svc, side, commits = make()
    proto, transport = connect(svc, "10.1.0.1")
    msg = wire.connect(0, T0, relationship_name="examplepair", max_unacked=10, receive_timer=6,
                       vendor_class="x", mclt=60, hba=wire.hba_from_split(256))
    proto.dataReceived(wire.encode(msg))
    out = messages(transport)
    assert [m.type for m in out] == [wire.MessageType.CONNECTACK, wire.MessageType.STATE]
    assert out[0].reject_reason is None
    assert commits  # the handshake's state was committed before anything else went out


def test_stopping_records_the_lost_link_while_the_store_is_still_open():
    svc, side, commits = make(stored=NORMAL_RECORD)
    svc.startService()
    proto, transport = connect(svc, "10.1.0.1")
    # the main's handshake and STATE(NORMAL): the backup is in touch, in NORMAL
    proto.dataReceived(wire.encode(wire.connect(0, T0, relationship_name="examplepair", max_unacked=10,
                                                receive_timer=6, vendor_class="x", mclt=60,
                                                hba=wire.hba_from_split(256))))
    proto.dataReceived(wire.encode(wire.state(1, T0, server_state=int(S.NORMAL), start_time_of_state=T0)))
    assert side.session.status().in_touch and side.session.state is S.NORMAL
    before = len(commits)
    svc.stopService()
    # the session knows at once (not on a later reactor turn), and its new state was committed
    assert side.session.state is wire.ServerState.COMMUNICATIONS_INTERRUPTED
    assert len(commits) > before and svc.link is None
    proto.connectionLost(None)  # the transport's own report later changes nothing
    assert side.session.state is wire.ServerState.COMMUNICATIONS_INTERRUPTED


def test_a_backup_dials_the_main_once_when_it_starts():
    svc, side, _ = make(role=Role.BACKUP)
    svc.startService()
    reactor = svc.reactor
    assert [(c[0], c[1], c[4]) for c in reactor.tcpClients] == [("10.1.0.1", 647, ("10.1.0.2", 0))]
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
    reactor.advance(120)
    assert len(reactor.tcpClients) == 1  # no redial: the main redials
    svc.stopService()


def test_the_backups_own_dial_is_its_link_and_a_second_one_is_closed():
    svc, side, commits = make(role=Role.BACKUP)
    svc.startService()
    factory = svc.reactor.tcpClients[0][2]
    dialled = factory.buildProtocol(IPv4Address("TCP", "10.1.0.1", 647))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.0.1", 647))
    dialled.makeConnection(transport)
    assert svc.link is not None and svc.link.outgoing
    # The main sends CONNECT on the link the backup opened (as ISC's primary does).
    dialled.dataReceived(wire.encode(wire.connect(0, T0, relationship_name="examplepair", max_unacked=10,
                                                  receive_timer=6, vendor_class="x", mclt=60,
                                                  hba=wire.hba_from_split(256))))
    assert [m.type for m in messages(transport)] == [wire.MessageType.CONNECTACK, wire.MessageType.STATE]
    # The main's own dial arriving meanwhile is closed; the link stays.
    link = svc.link
    _, second = connect(svc, "10.1.0.1")
    assert second.disconnecting and svc.link is link
    svc.stopService()


def test_a_main_keeps_redialling():
    svc, side, _ = make(role=Role.MAIN)
    svc.startService()
    reactor = svc.reactor
    for _ in range(3):
        reactor.tcpClients[-1][2].clientConnectionFailed(reactor.connectors[-1], Failure(ConnectionRefusedError()))
        reactor.advance(5)
    assert len(reactor.tcpClients) == 4
    svc.stopService()
