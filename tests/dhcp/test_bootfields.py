"""Network boot: the BOOTP header fields siaddr, sname and file (RFC 2131 §2, Table 3), option
overload when options need those fields (RFC 2132 §9.3), options 66/67, and PXE clients
(RFC 4578) classed by their vendor class identifier.

Offsets are RFC 2131 §2's message layout: siaddr at byte 20, sname 44..108, file 108..236,
the magic cookie at 236 and options after it.
"""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP  # type: ignore[import-untyped]

from cnrd.config import ConfigError, loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int, parse

from tests.dhcp.helpers import BASE_CONFIG, BCAST, SERVER_IP, make_server, mac, request, u32

NEXT_SERVER = "10.1.0.7"
BOOT_FILE = "pxelinux.0"
SERVER_NAME = "boot1.example.net"

BOOT_POLICY = f"""
[policy default]
lease-time = 3600
option.routers = 10.1.0.1
packet-siaddr = {NEXT_SERVER}
packet-file-name = {BOOT_FILE}
packet-server-name = {SERVER_NAME}
"""


def config_with(policy: str, extra: str = "") -> str:
    """BASE_CONFIG with its default policy replaced by ``policy``, plus ``extra`` sections."""
    start = BASE_CONFIG.index("[policy default]")
    end = BASE_CONFIG.index("[scope lan]")
    return BASE_CONFIG[:start] + policy.strip() + "\n\n" + BASE_CONFIG[end:] + extra


def field(raw: bytes, start: int, size: int) -> bytes:
    """A null-terminated header string field as it is on the wire, without its padding."""
    return raw[start:start + size].split(b"\0", 1)[0]


def wire(reply: object) -> bytes:
    from cnrd.dhcp.model import Reply

    assert isinstance(reply, Reply)
    return reply.packet.serialize(reply.max_size)


def dora(text: str, hw: bytes, **options: bytes) -> tuple[bytes, bytes]:
    """The serialized OFFER and ACK a server with config ``text`` gives client ``hw``."""
    s, _ = make_server(text)
    offer = s.handle(request(M.DISCOVER, hw, **options), BCAST, 100)
    assert offer is not None and offer.packet.message_type == M.OFFER
    ack = s.handle(request(M.REQUEST, hw, o50=u32(offer.packet.yiaddr), o54=u32(SERVER_IP), **options),
                   BCAST, 100)
    assert ack is not None and ack.packet.message_type == M.ACK
    return wire(offer), wire(ack)


# -- configuration -----------------------------------------------------------------


def test_policy_boot_attributes_load() -> None:
    policy = loads(config_with(BOOT_POLICY)).policies["default"]
    assert policy.packet_siaddr == ip_to_int(NEXT_SERVER)
    assert policy.packet_file_name == BOOT_FILE
    assert policy.packet_server_name == SERVER_NAME


@pytest.mark.parametrize(("key", "size"), [("packet-file-name", 128), ("packet-server-name", 64)])
def test_boot_text_must_leave_room_for_its_terminating_nul(key: str, size: int) -> None:
    # RFC 2131 §2: sname and file are null-terminated strings of 64 and 128 bytes.
    fits = "x" * (size - 1)
    assert loads(config_with(f"[policy default]\n{key} = {fits}\n"))
    with pytest.raises(ConfigError, match=key):
        loads(config_with(f"[policy default]\n{key} = {fits}x\n"))


def test_boot_text_refuses_non_ascii_and_a_bad_siaddr() -> None:
    with pytest.raises(ConfigError, match="packet-file-name"):
        loads(config_with("[policy default]\npacket-file-name = bööt.efi\n"))
    with pytest.raises(ConfigError, match="packet-siaddr"):
        loads(config_with("[policy default]\npacket-siaddr = 10.1.0.300\n"))


# -- header fields -----------------------------------------------------------------


def test_offer_and_ack_carry_siaddr_sname_and_file() -> None:
    for raw in dora(config_with(BOOT_POLICY), mac(1)):
        assert raw[20:24] == u32(ip_to_int(NEXT_SERVER))
        assert field(raw, 44, 64) == SERVER_NAME.encode()
        assert field(raw, 108, 128) == BOOT_FILE.encode()
        # Not overloaded: a parser reading option 52 would empty the fields it names.
        back = parse(raw)
        assert back.file == BOOT_FILE.encode() and back.sname == SERVER_NAME.encode()


def test_without_boot_attributes_the_fields_are_zero() -> None:
    for raw in dora(BASE_CONFIG, mac(2)):
        assert raw[20:24] == bytes(4)
        assert raw[44:236] == bytes(192)


def test_nak_has_no_boot_fields() -> None:
    # RFC 2131 Table 3: a DHCPNAK's siaddr is 0 and its sname and file unused.
    s, _ = make_server(config_with(BOOT_POLICY))
    nak = s.handle(request(M.REQUEST, mac(3), o50=u32(ip_to_int("192.0.2.9"))), BCAST, 100)
    assert nak is not None and nak.packet.message_type == M.NAK
    raw = wire(nak)
    assert raw[20:24] == bytes(4)
    assert raw[44:236] == bytes(192)


def test_bootreply_carries_the_boot_fields() -> None:
    # RFC 951: a BOOTP client learns its boot server and file only from these fields.
    text = config_with(BOOT_POLICY).replace("policy = default\n", "policy = default\nbootp = true\n"
                                                                  "dynamic-bootp = true\n", 1)
    s, _ = make_server(text)
    reply = s.handle(request(None, mac(4)), BCAST, 100)
    assert reply is not None and reply.packet.message_type is None
    raw = wire(reply)
    assert raw[20:24] == u32(ip_to_int(NEXT_SERVER))
    assert field(raw, 108, 128) == BOOT_FILE.encode()
    assert field(raw, 44, 64) == SERVER_NAME.encode()


def test_options_66_and_67_are_ordinary_options() -> None:
    text = config_with("[policy default]\noption.routers = 10.1.0.1\n"
                       "option.tftp-server-name = tftp.example.net\noption.bootfile-name = grubx64.efi\n")
    for raw in dora(text, mac(5), o55=bytes([1, 3, 66, 67])):
        opts = parse(raw).options
        assert opts[66] == b"tftp.example.net"
        assert opts[67] == b"grubx64.efi"
        # They do not fill the header fields (RFC 2132 §9.4, §9.5 are for when those are overloaded).
        assert raw[44:236] == bytes(192)


# -- option overload (RFC 2132 §9.3) ------------------------------------------------

def big_policy(codes: tuple[int, ...], size: int, boot: str = "") -> str:
    """A policy with site-specific options ``codes`` of ``size`` bytes each (byte value = code)."""
    return "[policy default]\noption.routers = 10.1.0.1\n" + boot + "".join(
        f"option.{code} = 0x{bytes([code]).hex() * size}\n" for code in codes)


def test_overflowing_options_go_into_free_file_and_sname() -> None:
    # Three 120-byte options and the lease options: over 400 bytes, where a
    # 576-byte message (no option 57) has 312 for options.
    codes = (224, 225, 226)
    for raw in dora(config_with(big_policy(codes, 120)), mac(6), o55=bytes([1, 3, *codes])):
        assert len(raw) <= 576 - 28
        back = parse(raw)
        # All asked-for options arrive, reassembled from the three areas.
        for code in codes:
            assert back.options[code] == bytes([code]) * 120
        assert raw[236:240] == bytes([99, 130, 83, 99])
        # Option 52 is in the options field and names the areas used.
        overload = raw.index(b"\x34\x01", 240)
        assert raw[overload + 2] in (1, 3)


def test_overload_leaves_a_configured_boot_file_alone() -> None:
    # The file field holds the boot file name: only sname is free for options.
    # Two 150-byte options and the lease options overflow 312 bytes by less than sname's 64.
    boot = f"packet-file-name = {BOOT_FILE}\n"
    for raw in dora(config_with(big_policy((224, 225), 150, boot)), mac(7), o55=bytes([1, 3, 224, 225])):
        assert len(raw) <= 576 - 28
        assert field(raw, 108, 128) == BOOT_FILE.encode()
        overload = raw.index(b"\x34\x01", 240)
        assert raw[overload + 2] == 2  # RFC 2132 §9.3: 2 = sname holds options
        back = parse(raw)
        assert back.options[224] == bytes([224]) * 150
        assert back.options[225] == bytes([225]) * 150
        assert back.file == BOOT_FILE.encode()


# -- PXE clients (RFC 4578) ---------------------------------------------------------

PXE_CLASS = f"""
[policy pxe]
lease-time = 600
packet-siaddr = {NEXT_SERVER}
packet-file-name = {BOOT_FILE}

[client-class pxe]
match-vendor-class = PXEClient
policy = pxe
"""

UUID = bytes(range(16))


def scapy_pxe(kind: str, hw: bytes, *, requested: str | None = None, vendor: bytes = b"PXEClient:Arch:00000:UNDI:002001"
              ) -> bytes:
    """A PXE firmware's DHCPDISCOVER or DHCPREQUEST as scapy builds it: options 60, 93, 94, 97 (RFC 4578 §2)."""
    options: list[tuple[str, object] | str] = [
        ("message-type", kind),
        ("param_req_list", [1, 3, 43, 60, 66, 67, 97, 128]),
        ("max_dhcp_size", 1260),
        ("vendor_class_id", vendor),
        (93, b"\x00\x00"),  # client system architecture: x86 BIOS
        (94, b"\x01\x02\x01"),  # network interface identifier: UNDI 2.1
        (97, b"\x00" + UUID),  # client machine identifier: type 0, a 16-byte UUID
    ]
    if requested is not None:
        options += [("requested_addr", requested), ("server_id", "10.1.0.1")]
    options.append("end")
    return bytes(BOOTP(chaddr=hw + bytes(10), xid=0x5150, flags=0x8000) / DHCP(options=options))


def test_a_scripted_pxe_client_gets_its_class_boot_fields_and_option_97_back() -> None:
    s, _ = make_server(BASE_CONFIG + PXE_CLASS)
    hw = mac(8)
    offer = s.handle(parse(scapy_pxe("discover", hw)), BCAST, 100)
    assert offer is not None and offer.packet.message_type == M.OFFER
    yiaddr = offer.packet.yiaddr
    ack = s.handle(parse(scapy_pxe("request", hw, requested=f"10.1.0.{yiaddr & 255}")), BCAST, 100)
    assert ack is not None and ack.packet.message_type == M.ACK
    for reply in (offer, ack):
        raw = wire(reply)
        back = BOOTP(raw)
        assert back.siaddr == NEXT_SERVER
        assert back.file.rstrip(b"\0") == BOOT_FILE.encode()
        dhcp = {o[0]: o[1] for o in back[DHCP].options if isinstance(o, tuple) and len(o) == 2}
        assert dhcp["pxe_client_machine_identifier"] == b"\x00" + UUID
        # The pxe policy's lease time, so the class was the one applied.
        assert dhcp["lease_time"] == 600


def test_a_client_with_another_vendor_class_is_not_in_the_pxe_class() -> None:
    s, _ = make_server(BASE_CONFIG + PXE_CLASS)
    offer = s.handle(parse(scapy_pxe("discover", mac(9), vendor=b"MSFT 5.0")), BCAST, 100)
    assert offer is not None
    raw = wire(offer)
    assert raw[20:24] == bytes(4) and raw[108:236] == bytes(128)
    assert 97 not in offer.packet.options
    assert offer.packet.options[51] == u32(3600)


def test_the_longest_matching_vendor_class_prefix_wins() -> None:
    extra = PXE_CLASS + """
[policy uefi]
lease-time = 900
packet-file-name = grubx64.efi

[client-class uefi]
match-vendor-class = PXEClient:Arch:00007
policy = uefi
"""
    s, _ = make_server(BASE_CONFIG + extra)
    offer = s.handle(parse(scapy_pxe("discover", mac(10), vendor=b"PXEClient:Arch:00007:UNDI:003016")),
                     BCAST, 100)
    assert offer is not None
    assert offer.packet.file == b"grubx64.efi"
    assert offer.packet.options[51] == u32(900)


def test_two_classes_cannot_match_the_same_vendor_class() -> None:
    with pytest.raises(ConfigError, match="match-vendor-class"):
        loads(BASE_CONFIG + PXE_CLASS + "\n[client-class other]\nmatch-vendor-class = PXEClient\n")
