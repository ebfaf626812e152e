"""RFC 6842: the client identifier echoed in OFFER, ACK and NAK."""

from __future__ import annotations

from dataclasses import replace

from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int

from tests.dhcp.helpers import BCAST, SERVER_IP, make_server, mac, request, u32

CID = b"\x00\x01\x02weird-but-valid-\xff"


def test_offer_and_ack_carry_option_61_exactly_as_received():
    s, _ = make_server()
    offer = s.handle(request(M.DISCOVER, mac(1), o61=CID), BCAST, 100)
    assert offer is not None and offer.packet.options[61] == CID
    ack = s.handle(request(M.REQUEST, mac(1), o61=CID, o50=u32(offer.packet.yiaddr), o54=u32(SERVER_IP)),
                   BCAST, 100)
    assert ack is not None and ack.packet.message_type == M.ACK and ack.packet.options[61] == CID


def test_nak_carries_option_61():
    s, _ = make_server()
    nak = s.handle(request(M.REQUEST, mac(2), o61=CID, o50=u32(ip_to_int("192.0.2.9"))), BCAST, 100)
    assert nak is not None and nak.packet.message_type == M.NAK and nak.packet.options[61] == CID


def test_no_option_61_without_one_in_the_request():
    s, _ = make_server()
    offer = s.handle(request(M.DISCOVER, mac(3)), BCAST, 100)
    assert offer is not None and 61 not in offer.packet.options


def test_echo_client_id_off_leaves_it_out():
    s, config = make_server()
    s.configure(replace(config, server=replace(config.server, echo_client_id=False)))
    offer = s.handle(request(M.DISCOVER, mac(4), o61=CID), BCAST, 100)
    assert offer is not None and 61 not in offer.packet.options


def test_the_option_survives_serialization():
    s, _ = make_server()
    offer = s.handle(request(M.DISCOVER, mac(5), o61=CID), BCAST, 100)
    assert offer is not None
    from cnrd.dhcp.packet import parse

    assert parse(offer.packet.serialize()).options[61] == CID
