"""RELEASE and DECLINE change a lease only for its own client (RFC 2131 §4.3.3, §4.3.4, §4.2).

A client is its client-identifier when it has one (§4.2: the client-id,
when present, MUST be used to identify the client), else its chaddr.  A
message from anyone else is counted, logged and ignored: the address stays
with its client.
"""

from __future__ import annotations

from typing import Any

import pytest

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.server import DhcpServer
from cnrd.leases.model import LeaseState

from tests.dhcp.helpers import BCAST, SERVER_IP, make_server, mac, request, u32

NOW = 1_000_000
CID = b"\x01\x02\x00\x00\x00\x00\x01"
OTHER_CID = b"\xffother-client"

# (lease made with a client-id?, request chaddr, request client-id, applied?)
CASES = [
    pytest.param(True, mac(1), OTHER_CID, False, id="same-chaddr-different-client-id"),
    pytest.param(True, mac(9), CID, True, id="different-chaddr-same-client-id"),
    pytest.param(True, mac(9), OTHER_CID, False, id="both-different"),
    pytest.param(True, mac(1), None, False, id="lease-has-client-id-request-none"),
    pytest.param(False, mac(1), None, True, id="neither-sent-same-chaddr"),
    pytest.param(False, mac(9), None, False, id="neither-sent-different-chaddr"),
    pytest.param(False, mac(1), CID, True, id="lease-without-client-id-same-chaddr"),
]


def _bound(with_cid: bool) -> tuple[DhcpServer, list[tuple[str, dict[str, Any]]], int]:
    s, _ = make_server()
    events: list[tuple[str, dict[str, Any]]] = []
    s.log_event = lambda name, fields: events.append((name, fields))
    opts = {"o61": CID} if with_cid else {}
    offer = s.handle(request(M.DISCOVER, mac(1), **opts), BCAST, NOW)
    assert offer is not None
    address = offer.packet.yiaddr
    ack = s.handle(request(M.REQUEST, mac(1), o50=u32(address), o54=u32(SERVER_IP), **opts), BCAST, NOW)
    assert ack is not None and ack.packet.message_type == M.ACK
    s.table.take_dirty()
    return s, events, address


def _opts(cid: bytes | None) -> dict[str, bytes]:
    return {"o61": cid} if cid is not None else {}


@pytest.mark.parametrize(("with_cid", "hw", "cid", "applied"), CASES)
def test_release_identity(with_cid: bool, hw: bytes, cid: bytes | None, applied: bool) -> None:
    s, events, address = _bound(with_cid)
    before = s.table.get(address)
    s.handle(request(M.RELEASE, hw, ciaddr=address, o54=u32(SERVER_IP), **_opts(cid)), BCAST, NOW + 10)
    lease = s.table.get(address)
    assert lease is not None
    _, changes = s.table.take_dirty()
    if applied:
        assert lease.state is LeaseState.RELEASED
        assert [e.what for e in changes] == ["release"]
        assert s.counters.drops["release-identity-mismatch"] == 0
    else:
        assert lease == before and lease.state is LeaseState.LEASED
        assert changes == []
        assert s.counters.drops["release-identity-mismatch"] == 1
        logged = [f for name, f in events if name == "dhcp-drop" and f["reason"] == "release-identity-mismatch"]
        assert len(logged) == 1 and logged[0]["client"] == (b"\x01" + hw).hex()


@pytest.mark.parametrize(("with_cid", "hw", "cid", "applied"), CASES)
def test_decline_identity(with_cid: bool, hw: bytes, cid: bytes | None, applied: bool) -> None:
    s, events, address = _bound(with_cid)
    before = s.table.get(address)
    s.handle(request(M.DECLINE, hw, o50=u32(address), o54=u32(SERVER_IP), **_opts(cid)), BCAST, NOW + 10)
    lease = s.table.get(address)
    assert lease is not None
    _, changes = s.table.take_dirty()
    if applied:
        assert lease.state is LeaseState.UNAVAILABLE
        assert [e.what for e in changes] == ["decline"]
        assert s.counters.drops["decline-identity-mismatch"] == 0
    else:
        assert lease == before and lease.state is LeaseState.LEASED
        assert changes == []
        assert s.counters.drops["decline-identity-mismatch"] == 1
        assert any(name == "dhcp-drop" and f["reason"] == "decline-identity-mismatch" for name, f in events)


def test_decline_of_an_offer_by_another_client_is_ignored() -> None:
    s, _ = make_server()
    offer = s.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    assert offer is not None
    s.handle(request(M.DECLINE, mac(2), o50=u32(offer.packet.yiaddr), o54=u32(SERVER_IP)), BCAST, NOW)
    lease = s.table.get(offer.packet.yiaddr)
    assert lease is not None and lease.state is LeaseState.OFFERED and lease.hw == b"\x01" + mac(1)
    assert s.counters.drops["decline-identity-mismatch"] == 1


def test_mismatched_release_leaves_the_client_able_to_renew() -> None:
    s, _, address = _bound(True)
    s.handle(request(M.RELEASE, mac(1), ciaddr=address, o61=OTHER_CID), BCAST, NOW + 10)
    renew = s.handle(request(M.REQUEST, mac(1), ciaddr=address, o61=CID), BCAST, NOW + 20)
    assert renew is not None and renew.packet.message_type == M.ACK and renew.packet.yiaddr == address
