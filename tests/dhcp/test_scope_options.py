"""``option.*`` keys on a scope and a reservation (CNR's embedded policies).

For each option code the most specific setting wins: the reservation's over
the scope's, the scope's over the client's or client-class's policy, that
policy over the scope's policy.  Values are RFC 2132's encodings (option 3: a
list of 4-byte addresses; option 15: the text).
"""

from __future__ import annotations

import pytest

from cnrd.config import ConfigError, loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int

from tests.dhcp.helpers import BASE_CONFIG, BCAST, SERVER_IP, make_server, mac, request, u32

POLICY_ROUTER = u32(ip_to_int("10.1.0.1"))  # BASE_CONFIG's default policy
SCOPE_ROUTER = u32(ip_to_int("10.1.0.254"))
RESERVED_ROUTER = u32(ip_to_int("10.1.0.253"))
CLASS_ROUTER = u32(ip_to_int("10.1.0.252"))

SCOPE_OPTIONS = BASE_CONFIG.replace(
    "policy = default\n",
    "policy = default\noption.routers = 10.1.0.254\noption.domain-name = lan.example\n", 1,
).replace(
    "hardware-address = 02:00:00:00:00:50\n",
    "hardware-address = 02:00:00:00:00:50\noption.routers = 10.1.0.253\n", 1,
)

ASK = bytes([1, 3, 6, 15])  # subnet mask, routers, DNS servers, domain name


def offer_and_ack(text: str, hw: bytes, **options: bytes) -> list[dict[int, bytes]]:
    s, _ = make_server(text)
    options.setdefault("o55", ASK)
    offer = s.handle(request(M.DISCOVER, hw, **options), BCAST, 100)
    assert offer is not None and offer.packet.message_type == M.OFFER
    ack = s.handle(request(M.REQUEST, hw, o50=u32(offer.packet.yiaddr), o54=u32(SERVER_IP), **options),
                   BCAST, 100)
    assert ack is not None and ack.packet.message_type == M.ACK
    return [offer.packet.options, ack.packet.options]


def test_scope_and_reservation_options_load_as_wire_values() -> None:
    config = loads(SCOPE_OPTIONS)
    assert config.scopes["lan"].options == {3: SCOPE_ROUTER, 15: b"lan.example"}
    assert config.reservations[ip_to_int("10.1.0.50")].options == {3: RESERVED_ROUTER}
    # The policy keeps its own.
    assert config.policies["default"].options[3] == POLICY_ROUTER


def test_without_scope_options_the_policy_s_are_sent() -> None:
    for opts in offer_and_ack(BASE_CONFIG, mac(1)):
        assert opts[3] == POLICY_ROUTER
        assert 15 not in opts


def test_a_scope_option_overrides_the_policy_and_adds_to_it() -> None:
    for opts in offer_and_ack(SCOPE_OPTIONS, mac(2)):
        assert opts[3] == SCOPE_ROUTER
        assert opts[15] == b"lan.example"
        # The policy's option the scope does not set still comes from the policy.
        assert opts[6] == u32(ip_to_int("10.1.0.1")) + u32(ip_to_int("10.1.0.2"))


def test_a_reservation_option_overrides_the_scope_for_its_client_only() -> None:
    reserved = offer_and_ack(SCOPE_OPTIONS, bytes.fromhex("020000000050"))
    for opts in reserved:
        assert opts[3] == RESERVED_ROUTER
        assert opts[15] == b"lan.example"  # the scope's, not overridden
    for opts in offer_and_ack(SCOPE_OPTIONS, mac(3)):
        assert opts[3] == SCOPE_ROUTER


def test_a_reservation_by_client_id_gets_its_options() -> None:
    cid = b"\x00reserved-by-id"
    text = SCOPE_OPTIONS.replace("hardware-address = 02:00:00:00:00:50\n", f"client-id = {cid.hex(':')}\n", 1)
    for opts in offer_and_ack(text, mac(4), o61=cid):
        assert opts[3] == RESERVED_ROUTER


CLASSED = """
[policy voip]
option.routers = 10.1.0.252
option.tftp-server-name = tftp.voip.example

[client-class phones]
policy = voip

[client 02:00:00:00:01:00]
client-class = phones
"""


def test_a_class_policy_is_over_the_scope_policy_and_under_the_scope_options() -> None:
    # Without scope options: the class policy's router; the scope policy's DNS servers still sent.
    for opts in offer_and_ack(BASE_CONFIG + CLASSED, bytes.fromhex("020000000100"), o55=ASK + bytes([66])):
        assert opts[3] == CLASS_ROUTER
        assert opts[6] == u32(ip_to_int("10.1.0.1")) + u32(ip_to_int("10.1.0.2"))
    # With them: the scope's router over the class policy's, the class policy's option 66 kept.
    s, _ = make_server(SCOPE_OPTIONS + CLASSED)
    offer = s.handle(request(M.DISCOVER, bytes.fromhex("020000000100"), o55=ASK + bytes([66])), BCAST, 100)
    assert offer is not None
    assert offer.packet.options[3] == SCOPE_ROUTER
    assert offer.packet.options[66] == b"tftp.voip.example"


def test_scope_options_reach_an_inform() -> None:
    # RFC 2131 §4.3.5: the ACK to an INFORM carries the client's configuration parameters.
    s, _ = make_server(SCOPE_OPTIONS)
    ack = s.handle(request(M.INFORM, mac(5), ciaddr=ip_to_int("10.1.0.20"), o55=ASK), BCAST, 100)
    assert ack is not None and ack.packet.message_type == M.ACK
    assert ack.packet.options[3] == SCOPE_ROUTER


@pytest.mark.parametrize("section", ["scope lan", "reservation 10.1.0.50"])
@pytest.mark.parametrize(("line", "fragment"), [
    ("option.dhcp-lease-time = 60", "lease-time"),
    ("option.no-such-option = 1", "no-such-option"),
    ("option.routers = 10.1.0", "10.1.0"),
])
def test_scope_and_reservation_options_are_checked_as_a_policy_s(section: str, line: str, fragment: str) -> None:
    text = BASE_CONFIG.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    with pytest.raises(ConfigError) as e:
        loads(text)
    assert e.value.section == section and e.value.key is not None and e.value.key.startswith("option.")
    assert fragment in str(e.value)


def test_one_option_twice_in_a_scope_is_refused() -> None:
    text = BASE_CONFIG.replace("[scope lan]\n", "[scope lan]\noption.routers = 10.1.0.2\noption.3 = 10.1.0.3\n", 1)
    with pytest.raises(ConfigError, match="already set by option.routers"):
        loads(text)
