"""Latency histograms in /metrics: request -> reply, group commit, BNDUPD -> BNDACK.

Prometheus's histogram form: cumulative buckets, an observation equal to a
bound counts under that bound (``le``), ``+Inf`` equals ``_count``.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.task import Clock

from cnrd.dhcp.packet import MessageType as M
from cnrd.failover import wire
from cnrd.failover.protocol import FailoverProtocol, FailoverService
from cnrd.failover.wire import MessageType as FM
from cnrd.ops.latency import Histogram
from tests.test_metrics import scrape, series, value
from tests.test_service import Rx, make, request, mac, u32, SERVER_IP


def test_histogram_buckets_are_cumulative_and_le():
    h = Histogram((0.001, 0.01, 0.1))
    h.observe(0.001)  # on the bound: counted under it
    h.observe(0.005, n=3)  # one batch of three
    h.observe(5.0)
    assert h.buckets() == [("0.001", 1.0), ("0.01", 4.0), ("0.1", 4.0), ("+Inf", 5.0)]
    assert h.count == 5
    assert abs(h.total - (0.001 + 0.015 + 5.0)) < 1e-12


def test_reply_and_commit_latency_are_exported_per_type():
    svc, port, _, _ = make()
    before = scrape(svc)
    # The usual reply types are there from the start, at 0.
    assert value(before, "cnrd_dhcp_reply_seconds_count", type="OFFER") == 0
    assert value(before, "cnrd_dhcp_reply_seconds_count", type="ACK") == 0
    commits0 = value(before, "cnrd_lease_commit_seconds_count")
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize()), Rx(request(M.DISCOVER, mac(2)).serialize())], 0)
    offer = port.sent[-1][1]
    assert offer.message_type == M.OFFER
    port.on_batch([Rx(request(M.REQUEST, mac(2), o50=u32(offer.yiaddr), o54=u32(SERVER_IP)).serialize())], 0)
    assert port.sent[-1][1].message_type == M.ACK
    m = scrape(svc)
    assert value(m, "cnrd_dhcp_reply_seconds_count", type="OFFER") == 2
    assert value(m, "cnrd_dhcp_reply_seconds_count", type="ACK") == 1
    assert value(m, "cnrd_dhcp_reply_seconds_bucket", type="ACK", le="+Inf") == 1
    assert value(m, "cnrd_dhcp_reply_seconds_sum", type="ACK") > 0
    assert value(m, "cnrd_lease_commit_seconds_count") > commits0
    assert value(m, "cnrd_lease_commit_seconds_sum") > 0
    assert series(m, "cnrd_failover_bndack_seconds_count") == {}  # no pair


class _Transport:
    def __init__(self):
        self.data = b""

    def write(self, data):
        self.data += data


def _msg(kind, xid):
    # One binding's address: the least a BNDUPD or BNDACK carries ([D] §7.1.1).
    return wire.Message(kind, xid, 0, [(wire.Option.ASSIGNED_IP_ADDRESS, bytes([10, 1, 0, xid]))])


def _bndupd(xid):
    return _msg(FM.BNDUPD, xid)


def test_bndupd_to_bndack_round_trip_by_xid():
    sends = [[_bndupd(7), _bndupd(8), wire.Message(FM.CONTACT, 9, 0)]]
    received = []
    session = SimpleNamespace(
        name="examplepair",
        pump=lambda now: None,
        take=lambda: SimpleNamespace(send=sends.pop() if sends else [], acks=[], close=False),
        receive=lambda msg, now: received.append(msg.xid),
        connection_lost=lambda now: None,
    )
    svc = FailoverService(session, Clock(), local_ip="10.1.0.1", partner_ip="10.1.0.2", port=647,
                          commit=lambda then: then(True))
    proto = FailoverProtocol(svc)
    proto.transport = _Transport()
    proto.active = True
    svc.link = proto
    svc.flush()
    assert set(svc.bndupd_sent) == {7, 8}  # the CONTACT is not timed
    # The partner acks 8, and sends a BNDACK for an xid we never sent.
    proto.dataReceived(wire.encode(_msg(FM.BNDACK, 8)) + wire.encode(_msg(FM.BNDACK, 99)))
    assert received == [8, 99]
    h = svc.bndack_seconds
    assert h.count == 1 and h.total >= 0
    assert set(svc.bndupd_sent) == {7}
    svc.link_down(proto)
    assert svc.bndupd_sent == {}
