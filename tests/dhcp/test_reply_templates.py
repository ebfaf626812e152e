"""Replies built from per-scope templates stay what each client is owed.

The part of a reply every client of a scope shares is kept between
requests; these check the cases where sharing it would be wrong: a reload
(new options), a reservation's own options (RFC 2131 §4.3.1: the options
are the client's binding's), the host name only when asked for (RFC 2132
§9.8), and a client that varies its parameter request list.
"""

from __future__ import annotations

from cnrd.config import loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int

from tests.dhcp.helpers import BASE_CONFIG, BCAST, mac, make_server, request

NOW = 1_000_000
RESERVED = BASE_CONFIG.replace("hardware-address = 02:00:00:00:00:50\n",
                               "hardware-address = 02:00:00:00:00:50\noption.routers = 10.1.0.253\n", 1)


def test_a_reload_changes_the_options_of_the_next_reply() -> None:
    server, _ = make_server()
    first = server.handle(request(M.DISCOVER, mac(1)), BCAST, NOW)
    assert first is not None and first.packet.options[3] == bytes([10, 1, 0, 1])
    server.configure(loads(BASE_CONFIG.replace("option.routers = 10.1.0.1", "option.routers = 10.1.0.9")))
    again = server.handle(request(M.DISCOVER, mac(2)), BCAST, NOW)
    assert again is not None and again.packet.options[3] == bytes([10, 1, 0, 9])


def test_a_reservation_s_options_reach_its_client_only() -> None:
    server, _ = make_server(RESERVED)
    reserved = server.handle(request(M.DISCOVER, mac(0x50), o55=bytes([3])), BCAST, NOW)
    other = server.handle(request(M.DISCOVER, mac(1), o55=bytes([3])), BCAST, NOW)
    again = server.handle(request(M.DISCOVER, mac(0x50), o55=bytes([3])), BCAST, NOW)
    assert reserved is not None and other is not None and again is not None
    assert reserved.packet.yiaddr == ip_to_int("10.1.0.50")
    assert reserved.packet.options[3] == bytes([10, 1, 0, 253])
    assert other.packet.options[3] == bytes([10, 1, 0, 1])
    assert again.packet.options[3] == bytes([10, 1, 0, 253])


def test_per_client_options_do_not_leak_into_the_next_reply() -> None:
    server, _ = make_server()
    named = server.handle(request(M.DISCOVER, mac(1), o12=b"alpha", o61=b"\x01" + mac(1)), BCAST, NOW)
    plain = server.handle(request(M.DISCOVER, mac(2)), BCAST, NOW)
    assert named is not None and plain is not None
    assert named.packet.options[12] == b"alpha" and named.packet.options[61] == b"\x01" + mac(1)
    assert 12 not in plain.packet.options and 61 not in plain.packet.options


def test_host_name_follows_the_parameter_request_list() -> None:
    server, _ = make_server()
    asked = server.handle(request(M.DISCOVER, mac(1), o12=b"alpha", o55=bytes([3, 12])), BCAST, NOW)
    unasked = server.handle(request(M.DISCOVER, mac(2), o12=b"beta", o55=bytes([3])), BCAST, NOW)
    assert asked is not None and unasked is not None
    assert list(asked.packet.options)[-3:] == [3, 6, 12]  # asked, always sent (DNS), then the name
    assert 12 not in unasked.packet.options


def test_many_parameter_request_lists_keep_the_order_each_asks_for() -> None:
    server, _ = make_server()
    for n in range(600):
        prl = bytes([6, 3]) if n % 2 else bytes([3, 6])
        prl += bytes([100 + n % 150, n % 7])
        reply = server.handle(request(M.DISCOVER, mac(1), o55=prl), BCAST, NOW)
        assert reply is not None
        sent = [c for c in reply.packet.options if c in (3, 6)]
        assert sent == list(prl[:2])
    assert all(len(s.reply_templates) <= 256 for s in server.scopes.values())


def test_a_reply_s_encoded_template_part_is_what_serialize_would_write() -> None:
    """The template's options, encoded once, make the same datagram as encoding the reply's options afresh,
    including when a client's option replaces a template's (PXE's 97, RFC 4578 §2.2)."""
    text = BASE_CONFIG.replace("option.domain-name-servers = 10.1.0.1, 10.1.0.2\n",
                               "option.domain-name-servers = 10.1.0.1, 10.1.0.2\noption.97 = 00aabb\n", 1)
    for config in (BASE_CONFIG, text):
        server, _ = make_server(config)
        for n, opts in enumerate([
            {},
            {"o55": bytes([1, 3, 6, 12, 97]), "o12": b"host"},
            {"o61": b"\x01" + mac(9), "o55": bytes([61, 3])},
            {"o60": b"PXEClient:Arch:00000", "o97": b"\x00" + bytes(16), "o55": bytes([97, 3])},
            {"o82": b"\x01\x03abc"},
        ]):
            for mtype in (M.DISCOVER, M.INFORM):
                reply = server.handle(request(mtype, mac(n + 1), ciaddr=ip_to_int("10.1.0.120")
                                              if mtype == M.INFORM else 0, giaddr=0, **opts), BCAST, NOW)
                assert reply is not None
                packet = reply.packet
                fresh = packet.serialize(reply.max_size)
                assert packet.serialize(reply.max_size, reply.wire_prefix) == fresh
        assert any(r.wire_prefix is None for r in [server.handle(request(
            M.DISCOVER, mac(50), o60=b"PXEClient", o97=b"\x00" + bytes(16)), BCAST, NOW)] if r is not None) \
            or config == BASE_CONFIG
