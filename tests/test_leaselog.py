"""The lease lines (issue 18 item 10): one per exchange, worded as ISC dhcpd's syslog lines.

The expected texts are written from dhcpd's wording ("DHCPACK on <address>
to <chaddr> (<host>) via <giaddr or interface>", "DHCPNAK on <address> to
<chaddr> via ...", "DHCPRELEASE of <address> from <chaddr>", "DHCPDECLINE of
<address> from <chaddr>", "DHCPACK to <ciaddr> (<chaddr>) via ..." for an
INFORM, "BOOTREPLY for <address> to <host> (<chaddr>) via ...") plus the
issue's additions (client-id, lease time, the NAK's reason, expiry), and
from RFC 2131's reply fields: yiaddr, chaddr, ciaddr (§4.3.5 for INFORM),
options 51, 56 and 61.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import replace

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from cnrd.app.runtime import Runtime
from cnrd.config import loads
from cnrd.dhcp.packet import DhcpPacket
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.ops import leaselog, logs

from tests.dhcp.helpers import BASE_CONFIG, IFACE, SERVER_IP, mac, request, u32
from tests.test_service import FakePort, RecordingStore, Rx, run_now

HW = mac(0x10)  # 02:00:00:00:00:10
CID = b"\x01" + HW
RELAY = ip_to_int("10.98.1.1")
A = ip_to_int("10.0.0.5")


def reply(mtype: int | None, *, yiaddr: int = A, ciaddr: int = 0, giaddr: int = RELAY,
          **options: bytes) -> DhcpPacket:
    """A reply as the server would send it: the request's skeleton with yiaddr and options."""
    r = request(M.REQUEST if mtype is not None else None, HW, giaddr=giaddr).reply_to(mtype)
    r.yiaddr = yiaddr
    r.ciaddr = ciaddr
    for k, v in options.items():
        r.options[int(k[1:])] = v
    return r


# -- one line per message kind ------------------------------------------------


def test_ack_reads_as_dhcpd_with_host_client_id_relay_and_lease_time():
    line = leaselog.reply_line(reply(M.ACK, o51=u32(3600), o61=CID), "10.98.1.1", host_name="laptop")
    assert line is not None and line.success
    assert line.text == ("DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 (laptop) (client-id 01:02:00:00:00:00:10) "
                         "via 10.98.1.1 lease 3600 s")


def test_offer_without_host_name_or_client_id_has_neither_part():
    line = leaselog.reply_line(reply(M.OFFER, giaddr=0, o51=u32(120)), "eth1")
    assert line is not None
    assert line.text == "DHCPOFFER on 10.0.0.5 to 02:00:00:00:00:10 via eth1 lease 120 s"


def test_client_id_the_reply_does_not_echo_comes_from_what_the_server_holds():
    # RFC 6842 echo turned off: the reply has no option 61, the lease has one.
    line = leaselog.reply_line(reply(M.ACK, o51=u32(60)), "eth1", client_id=b"\xff\x01")
    assert line is not None and "(client-id ff:01)" in line.text


def test_nak_names_the_requested_address_and_the_reason_and_is_not_a_success():
    req = request(M.REQUEST, HW, o50=u32(A))
    nak = reply(M.NAK, yiaddr=0, giaddr=0, o56=b"requested address not available")
    line = leaselog.reply_line(nak, "eth1", request=req)
    assert line is not None and not line.success
    assert line.text == "DHCPNAK on 10.0.0.5 to 02:00:00:00:00:10 via eth1: requested address not available"
    assert line.fields["reason"] == "requested address not available"


def test_nak_of_a_renewal_names_ciaddr():
    # RFC 2131 §4.3.2: RENEWING/REBINDING carry the address in ciaddr, not option 50.
    req = request(M.REQUEST, HW, ciaddr=A)
    line = leaselog.reply_line(reply(M.NAK, yiaddr=0, giaddr=0, o56=b"wrong"), "eth1", request=req)
    assert line is not None and line.text.startswith("DHCPNAK on 10.0.0.5 to 02:00:00:00:00:10 via eth1")


def test_nak_without_its_request_still_names_the_client():
    line = leaselog.reply_line(reply(M.NAK, yiaddr=0, giaddr=0), "eth1")
    assert line is not None and line.text == "DHCPNAK to 02:00:00:00:00:10 via eth1"
    assert line.fields["address"] is None


def test_inform_answer_is_dhcpds_ack_to_ciaddr():
    # RFC 2131 §4.3.5: the ACK to an INFORM has yiaddr 0 and no lease time.
    line = leaselog.reply_line(reply(M.ACK, yiaddr=0, ciaddr=A, giaddr=0), "eth1")
    assert line is not None and line.success
    assert line.text == "DHCPACK to 10.0.0.5 (02:00:00:00:00:10) via eth1"
    assert line.fields["lease_time"] is None


def test_bootreply_is_for_ever():
    line = leaselog.reply_line(reply(None, giaddr=0), "eth1")
    assert line is not None
    assert line.text == "BOOTREPLY for 10.0.0.5 to unknown (02:00:00:00:00:10) via eth1 lease infinite"


def test_lease_query_answers_have_no_line():
    assert leaselog.reply_line(reply(M.LEASEACTIVE), "eth1") is None
    assert leaselog.reply_line(reply(M.LEASEUNKNOWN, yiaddr=0), "eth1") is None


def test_release_decline_and_expiry_lines():
    assert leaselog.release_line(A, HW, CID, "laptop").text == \
        "DHCPRELEASE of 10.0.0.5 from 02:00:00:00:00:10 (laptop) (client-id 01:02:00:00:00:00:10)"
    decline = leaselog.decline_line(A, HW)
    assert decline.text == "DHCPDECLINE of 10.0.0.5 from 02:00:00:00:00:10" and not decline.success
    expiry = leaselog.expiry_line(A, HW, None)
    assert expiry.text == "lease 10.0.0.5 expired (02:00:00:00:00:10)" and expiry.success


def test_a_host_name_cannot_split_or_forge_a_line():
    line = leaselog.reply_line(reply(M.ACK, o51=u32(60)), "eth1", host_name="x\nDHCPACK on 10.9.9.9")
    assert line is not None and "\n" not in line.text and "(x\\nDHCPACK on 10.9.9.9)" in line.text


def test_a_client_without_a_hardware_address_is_dhcpds_no_identifier():
    assert leaselog.release_line(A, b"", CID).text.startswith("DHCPRELEASE of 10.0.0.5 from <no identifier>")


def test_braces_in_fields_survive_twisteds_formatting():
    line = leaselog.reply_line(reply(M.ACK, o51=u32(60)), "eth1", host_name="{kind}")
    assert line is not None
    event: LogEvent = {"log_format": line.format, **line.fields}
    assert formatEvent(event) == line.text == \
        "DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 ({kind}) via eth1 lease 60 s"


# -- through the running server ---------------------------------------------------


@pytest.fixture
def lines() -> Iterator[list[LogEvent]]:
    events: list[LogEvent] = []

    def keep(e: LogEvent) -> None:
        if e.get("event") in (leaselog.EVENT, "dhcp-decline", "dhcp-nak"):
            events.append(e)

    globalLogPublisher.addObserver(keep)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(keep)


def texts(events: list[LogEvent]) -> list[str]:
    return [formatEvent(e) for e in events]


def running(settings: frozenset[str] = frozenset(), text: str = BASE_CONFIG) -> tuple[Runtime, FakePort, Clock]:
    clock = Clock()
    clock.advance(1_000_000)
    ports: list[FakePort] = []

    def factory(*a: object, **kw: object) -> FakePort:
        ports.append(FakePort(*a, **kw))
        return ports[-1]

    if settings:
        text = text.replace("[server]\n", f"[server]\nlog-settings = {', '.join(sorted(settings))}\n", 1)
    config = loads(text)
    assert config.server.log_settings == settings
    svc = Runtime(config, clock, store=RecordingStore(), port_factory=factory, interfaces=lambda c: [IFACE],
                  commit_runner=run_now)
    svc.startService()
    return svc, ports[0], clock


def dora(port: FakePort, hw: bytes, **options: bytes) -> int:
    port.on_batch([Rx(request(M.DISCOVER, hw, **options).serialize())], 0)
    offer = port.sent[-1][1]
    assert offer.message_type == M.OFFER
    port.on_batch([Rx(request(M.REQUEST, hw, o50=u32(offer.yiaddr), o54=u32(SERVER_IP), **options).serialize())], 0)
    assert port.sent[-1][1].message_type == M.ACK
    return int(offer.yiaddr)


def test_one_offer_line_and_one_ack_line_per_exchange(lines):
    svc, port, clock = running()
    address = dora(port, HW, o12=b"laptop", o61=CID)
    dotted = ".".join(str(b) for b in struct.pack("!I", address))
    assert texts(lines) == [
        f"DHCPOFFER on {dotted} to 02:00:00:00:00:10 (laptop) (client-id 01:02:00:00:00:00:10) via eth1 "
        "lease 3600 s",
        f"DHCPACK on {dotted} to 02:00:00:00:00:10 (laptop) (client-id 01:02:00:00:00:00:10) via eth1 "
        "lease 3600 s",
    ]
    assert [e["log_level"].name for e in lines] == ["info", "info"]


def test_a_renewal_unicast_to_ciaddr_is_via_the_interface_of_its_subnet(lines):
    svc, port, clock = running()
    address = dora(port, HW)
    del lines[:]
    port.on_batch([Rx(request(M.REQUEST, HW, ciaddr=address).serialize(), src_ip="10.1.0.100",
                      dst_ip="10.1.0.1")], 0)
    assert port.sent[-1][1].message_type == M.ACK
    assert len(lines) == 1 and lines[0]["via"] == "eth1" and lines[0]["kind"] == "DHCPACK"


def test_nak_line_once_with_reason_and_none_from_the_core_event(lines):
    svc, port, clock = running()
    port.on_batch([Rx(request(M.REQUEST, HW, o50=u32(ip_to_int("10.9.9.9"))).serialize())], 0)
    assert port.sent[-1][1].message_type == M.NAK
    reason = port.sent[-1][1].options[56].decode()
    assert texts(lines) == [f"DHCPNAK on 10.9.9.9 to 02:00:00:00:00:10 via eth1: {reason}"]


def test_release_and_expiry_lines_come_from_the_lease_table(lines):
    svc, port, clock = running()
    first = dora(port, HW, o12=b"laptop")
    second = dora(port, mac(0x11))
    del lines[:]
    port.on_batch([Rx(request(M.RELEASE, HW, ciaddr=first, o54=u32(SERVER_IP)).serialize(),
                      src_ip="10.1.0.100", dst_ip="10.1.0.1")], 0)
    dotted = [".".join(str(b) for b in struct.pack("!I", a)) for a in (first, second)]
    assert texts(lines) == [f"DHCPRELEASE of {dotted[0]} from 02:00:00:00:00:10 (laptop)"]
    del lines[:]
    clock.advance(3600 + 86400)  # past the lease and any grace period
    svc.server.expire(int(clock.seconds()))
    assert f"lease {dotted[1]} expired (02:00:00:00:00:11)" in texts(lines)
    assert not any(t.startswith(f"lease {dotted[0]}") for t in texts(lines))  # released: nothing to expire


def test_decline_line_replaces_the_core_events_generic_line(lines):
    svc, port, clock = running()
    address = dora(port, HW)
    del lines[:]
    port.on_batch([Rx(request(M.DECLINE, HW, o50=u32(address), o54=u32(SERVER_IP)).serialize())], 0)
    dotted = ".".join(str(b) for b in struct.pack("!I", address))
    assert texts(lines) == [f"DHCPDECLINE of {dotted} from 02:00:00:00:00:10"]


def test_no_success_messages_hides_offers_acks_releases_but_not_naks(lines):
    svc, port, clock = running(frozenset({"no-success-messages"}))
    address = dora(port, HW)
    port.on_batch([Rx(request(M.RELEASE, HW, ciaddr=address, o54=u32(SERVER_IP)).serialize(),
                      src_ip="10.1.0.100", dst_ip="10.1.0.1")], 0)
    port.on_batch([Rx(request(M.REQUEST, HW, o50=u32(ip_to_int("10.9.9.9"))).serialize())], 0)
    assert [s[1].message_type for s in port.sent] == [M.OFFER, M.ACK, M.NAK]  # the exchanges did happen
    assert [e["kind"] for e in lines] == ["DHCPNAK"]


def test_lease_line_is_json_with_fields_in_the_json_format(lines):
    svc, port, clock = running(frozenset({"json"}))
    address = dora(port, HW, o61=CID)
    ack = json.loads(logs.json_line(lines[-1]))
    assert ack["message"].startswith("DHCPACK on ")
    assert ack["level"] == "info"
    assert {k: ack[k] for k in ("event", "kind", "address", "hw", "client_id", "via", "lease_time", "reason",
                                "host_name")} == {
        "event": "dhcp-lease", "kind": "DHCPACK", "address": ".".join(str(b) for b in struct.pack("!I", address)),
        "hw": "02:00:00:00:00:10", "client_id": "01:02:00:00:00:00:10", "via": "eth1", "lease_time": 3600,
        "reason": None, "host_name": None,
    }


def test_relayed_lines_are_via_giaddr(lines):
    text = BASE_CONFIG + "\n[scope far]\nsubnet = 10.98.1.0/24\nranges = 10.98.1.100-10.98.1.109\npolicy = default\n"
    svc, port, clock = running(text=text)
    port.on_batch([Rx(request(M.DISCOVER, HW, giaddr=RELAY).serialize(), src_ip="10.98.1.1", src_port=67,
                      dst_ip="10.1.0.1")], 0)
    assert port.sent[-1][1].message_type == M.OFFER
    assert [e["via"] for e in lines] == ["10.98.1.1"]
    assert texts(lines)[0].endswith(" via 10.98.1.1 lease 3600 s")


def test_no_success_messages_set_at_run_time_applies_from_the_next_line(lines):
    # The admin API replaces the configuration in force; each line reads it.
    svc, port, clock = running()
    dora(port, HW)
    config = svc.config
    svc.reconfigure(replace(config, server=replace(config.server, log_settings=frozenset({"no-success-messages"}))))
    dora(port, mac(0x11))
    assert [(e["kind"], e["hw"]) for e in lines] == [("DHCPOFFER", "02:00:00:00:00:10"),
                                                     ("DHCPACK", "02:00:00:00:00:10")]


def test_a_host_name_with_braces_is_written_as_sent(lines):
    # The line reaches Twisted as text: a client's "{...}" must not be read as a field.
    svc, port, clock = running()
    dora(port, HW, o12=b"{kind}{0}")
    assert texts(lines)[-1].startswith("DHCPACK on ") and "({kind}{0}) via eth1" in texts(lines)[-1]
    assert json.loads(logs.json_line(lines[-1]))["host_name"] == "{kind}{0}"


def test_text_lines_keep_twisteds_time_stamps():
    # The stamp is worked out once a second; it must be the one twistd writes.
    from twisted.logger import formatTime, timeFormatRFC3339

    from cnrd.ops.logs import _StampCache

    stamp = _StampCache()
    for when in (0.0, 0.999, 1.0, 1_764_900_000.25, 1_764_900_000.999, 1_764_900_001.0, 1_764_899_999.5, None):
        assert stamp(when) == formatTime(when, timeFormatRFC3339)
