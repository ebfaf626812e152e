"""RFC 2131 §4.3.2 (and §3.1 step 4): how the server answers DHCPREQUEST in SELECTING and INIT-REBOOT.

The expected answers are written from the RFC text:

* SELECTING (server identifier names us): the named server commits the
  binding and ACKs, or NAKs when it cannot (§3.1 step 4, "the requested
  network address has already been allocated").  The requested address must
  be the yiaddr of our offer (§4.3.2), and our offer to a client with a
  binding is that binding (§4.3.1), so a request for another address is NAKed.
  An address in no pool of ours is neither ours to give nor to refuse.
* INIT-REBOOT: NAK when the client's notion of its address is wrong; when the
  server has no record of the client it MUST remain silent — unless
  ``[server] authoritative`` says every address of the network is ours.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.dhcp.server import DhcpServer
from cnrd.leases.model import LeaseState

from tests.dhcp.helpers import BCAST, SERVER_IP, make_server, mac, request, u32

NOW = 1_000_000
CLIENT = mac(1)
OTHER = mac(2)
FREE = ip_to_int("10.1.0.101")  # in the range 10.1.0.100-109, no record
HELD = ip_to_int("10.1.0.102")  # leased to OTHER
OUTSIDE = ip_to_int("10.1.0.200")  # in the subnet, outside every range
OWN = ip_to_int("10.1.0.105")  # CLIENT's lease, when it has one
ADDRESSES = {"free": FREE, "held-by-another": HELD, "outside-pools": OUTSIDE}


def _server(authoritative: bool, client_has_lease: bool) -> DhcpServer:
    s, config = make_server()
    s.configure(replace(config, server=replace(config.server, authoritative=authoritative)))
    _bind(s, OTHER, HELD)
    if client_has_lease:
        _bind(s, CLIENT, OWN)
    s.table.take_dirty()
    return s


def _bind(s: DhcpServer, hw: bytes, address: int) -> None:
    """Give ``hw`` ``address`` through a full DISCOVER/REQUEST exchange."""
    offer = s.handle(request(M.DISCOVER, hw, o50=u32(address)), BCAST, NOW - 100)
    assert offer is not None and offer.packet.yiaddr == address
    ack = s.handle(request(M.REQUEST, hw, o50=u32(address), o54=u32(SERVER_IP)), BCAST, NOW - 100)
    assert ack is not None and ack.packet.message_type == M.ACK


def _expected(state: str, address: str, has_lease: bool, authoritative: bool) -> str:
    """The answer RFC 2131 §4.3.2 asks for (see the module docstring)."""
    if state == "SELECTING":
        if address == "outside-pools":
            return "silent"
        if address == "held-by-another" or has_lease:
            return "NAK"
        return "ACK"
    # INIT-REBOOT: none of these three addresses is the client's.
    if has_lease:
        return "NAK"
    return "NAK" if authoritative else "silent"


CASES = [
    pytest.param(st, ad, hl, au, _expected(st, ad, hl, au),
                 id=f"{st}-{ad}-{'lease' if hl else 'nolease'}-{'auth' if au else 'nonauth'}")
    for st in ("SELECTING", "INIT-REBOOT")
    for ad in ADDRESSES
    for hl in (True, False)
    for au in (True, False)
]


@pytest.mark.parametrize(("state", "address", "has_lease", "authoritative", "answer"), CASES)
def test_request_answer_table(state: str, address: str, has_lease: bool, authoritative: bool, answer: str) -> None:
    s = _server(authoritative, has_lease)
    want = ADDRESSES[address]
    before_held = s.table.get(HELD)
    opts = {"o50": u32(want)}
    if state == "SELECTING":
        opts["o54"] = u32(SERVER_IP)
    reply = s.handle(request(M.REQUEST, CLIENT, **opts), BCAST, NOW)
    got = "silent" if reply is None else M(reply.packet.message_type).name
    assert got == answer
    if answer == "ACK":
        assert reply is not None and reply.packet.yiaddr == want
        lease = s.table.get(want)
        assert lease is not None and lease.state is LeaseState.LEASED and lease.hw == b"\x01" + CLIENT
    else:
        # Whatever the answer, another client's binding is untouched and
        # the client got nothing.
        assert s.table.get(HELD) == before_held
        lease = s.table.get(want)
        assert lease is None or lease.hw != b"\x01" + CLIENT
    if answer == "silent":
        assert sum(s.counters.drops.values()) >= 1


def test_selecting_after_restart_acks_the_offered_address_with_no_offer_on_record() -> None:
    # The process that made the offer is gone: a fresh table has no record.
    s, _ = make_server()
    reply = s.handle(request(M.REQUEST, CLIENT, o50=u32(FREE), o54=u32(SERVER_IP)), BCAST, NOW)
    assert reply is not None and reply.packet.message_type == M.ACK and reply.packet.yiaddr == FREE
    leases, events = s.table.take_dirty()
    assert [e.what for e in events] == ["ack"]


def test_selecting_for_another_server_is_silent_and_frees_our_offer() -> None:
    s, _ = make_server()
    offer = s.handle(request(M.DISCOVER, CLIENT), BCAST, NOW)
    assert offer is not None
    reply = s.handle(request(M.REQUEST, CLIENT, o50=u32(offer.packet.yiaddr), o54=u32(ip_to_int("10.1.0.254"))),
                     BCAST, NOW)
    assert reply is None and s.counters.drops["request-for-other-server"] == 1
    lease = s.table.get(offer.packet.yiaddr)
    assert lease is not None and lease.state is not LeaseState.OFFERED


def test_selecting_outside_pools_is_counted() -> None:
    s, _ = make_server()
    reply = s.handle(request(M.REQUEST, CLIENT, o50=u32(OUTSIDE), o54=u32(SERVER_IP)), BCAST, NOW)
    assert reply is None and s.counters.drops["request-outside-pools"] == 1
    assert s.table.get(OUTSIDE) is None


def test_selecting_reserved_address_of_another_client_naks() -> None:
    s, _ = make_server()
    reply = s.handle(request(M.REQUEST, CLIENT, o50=u32(ip_to_int("10.1.0.50")), o54=u32(SERVER_IP)), BCAST, NOW)
    assert reply is not None and reply.packet.message_type == M.NAK


def test_init_reboot_unknown_client_silence_is_counted() -> None:
    s = _server(False, False)
    assert s.handle(request(M.REQUEST, CLIENT, o50=u32(FREE)), BCAST, NOW) is None
    assert s.counters.drops["init-reboot-unknown-client"] == 1


def test_init_reboot_own_address_is_acked_either_way() -> None:
    for authoritative in (False, True):
        s = _server(authoritative, True)
        reply = s.handle(request(M.REQUEST, CLIENT, o50=u32(OWN)), BCAST, NOW)
        assert reply is not None and reply.packet.message_type == M.ACK and reply.packet.yiaddr == OWN


def test_init_reboot_wrong_network_naks_whatever_authoritative() -> None:
    # RFC 2131 §4.3.2: the wrong-network NAK comes before the no-record rule.
    s = _server(False, False)
    reply = s.handle(request(M.REQUEST, CLIENT, o50=u32(ip_to_int("192.0.2.9"))), BCAST, NOW)
    assert reply is not None and reply.packet.message_type == M.NAK


class _Refusing:
    """A failover gate that answers no request (a partner's hash, or a state that does not serve)."""

    def admit(self, kind: str, lb_key: bytes, secs: int, now: int) -> tuple[bool, str | None, str]:
        return False, None, "failover-not-ours"

    def lease_time(self, lease: object, desired: int, now: int) -> int:
        return desired

    def potential_expiration(self, desired: int, granted: int, now: int) -> int:
        return now + desired


@pytest.mark.parametrize("authoritative", [False, True])
@pytest.mark.parametrize(("selecting", "address"), [(True, FREE), (True, HELD), (False, FREE), (False, HELD)])
def test_answers_obey_the_failover_gate(authoritative: bool, selecting: bool, address: int) -> None:
    s = _server(authoritative, True)
    s.gates["lan"] = _Refusing()
    opts = {"o50": u32(address)}
    if selecting:
        opts["o54"] = u32(SERVER_IP)
    assert s.handle(request(M.REQUEST, CLIENT, **opts), BCAST, NOW) is None
    assert s.counters.drops["failover-not-ours"] == 1
