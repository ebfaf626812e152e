"""Lease lines straight to twistd's observer, a reactor turn's lines in one write (issue 20).

What must not change is what the log holds: every lease line with the text
and the time stamp twistd's classic format gives a log event at the moment
the reply left ("{time} [cnrd#info] DHCPACK on ..."; journald's "<6>[cnrd]
..." on its stream), in the order the replies left, among the other lines
in the order they happened, and each rotated file ending where one write
per line would have ended it.  What changes is when: by the end of the
reactor turn, before any other line, or at exit.  With ``log-settings =
json`` a lease line is still a log event with its fields.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import (
    LogEvent,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    globalLogPublisher,
    timeFormatRFC3339,
)
from twisted.python.logfile import LogFile

from cnrd.dhcp.packet import MessageType as M
from cnrd.ops import leaselog, logs
from tests.dhcp.helpers import SERVER_IP, mac, request, u32
from tests.test_leaselog import CID, HW, A, dora, reply, running
from tests.test_service import Rx

REPO = Path(__file__).resolve().parents[1]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


@pytest.fixture
def lines() -> Iterator[list[LogEvent]]:
    """The lease lines that reach the log as events."""
    events: list[LogEvent] = []

    def keep(e: LogEvent) -> None:
        if e.get("event") == leaselog.EVENT:
            events.append(e)

    globalLogPublisher.addObserver(keep)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(keep)


class CountingOut(io.StringIO):
    """A text stream that counts its writes and flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.flushes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)

    def flush(self) -> None:
        self.flushes += 1


class Turns:
    """The reactor's end of turn: what ``schedule`` was given runs at :meth:`end`."""

    def __init__(self) -> None:
        self.calls: list = []

    def schedule(self, f) -> None:
        self.calls.append(f)

    def end(self) -> None:
        calls, self.calls = self.calls, []
        for f in calls:
            f()


def _classic(text: str, when: float) -> str:
    """The line twisted's classic format writes for an info event of namespace cnrd."""
    event = {"log_format": text.replace("{", "{{").replace("}", "}}"), "log_level": LogLevel.info,
             "log_namespace": "cnrd", "log_time": when}
    out = formatEventAsClassicLogText(event, formatTime=lambda t: formatTime(t, timeFormatRFC3339))
    assert out is not None
    return out


# -- the text of a reply's line -------------------------------------------------------------


@pytest.mark.parametrize("packet,kw,expected", [
    (reply(M.ACK, o51=u32(3600), o61=CID), {"host_name": "laptop"},
     ("DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 (laptop) (client-id 01:02:00:00:00:00:10) via 10.98.1.1 "
      "lease 3600 s")),
    (reply(M.OFFER, o51=u32(120)), {}, "DHCPOFFER on 10.0.0.5 to 02:00:00:00:00:10 via 10.98.1.1 lease 120 s"),
    (reply(M.OFFER, o51=u32(0xFFFFFFFF)), {"client_id": b"\xff\x01"},
     "DHCPOFFER on 10.0.0.5 to 02:00:00:00:00:10 (client-id ff:01) via 10.98.1.1 lease infinite"),
    (reply(M.ACK), {"host_name": "x\n{kind}"}, "DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 (x\\n{kind}) via 10.98.1.1"),
    (reply(M.ACK, yiaddr=0, ciaddr=A), {}, "DHCPACK to 10.0.0.5 (02:00:00:00:00:10) via 10.98.1.1"),
    (reply(M.NAK, yiaddr=0, o56=b"wrong"), {}, "DHCPNAK to 02:00:00:00:00:10 via 10.98.1.1: wrong"),
    (reply(None), {}, "BOOTREPLY for 10.0.0.5 to unknown (02:00:00:00:00:10) via 10.98.1.1 lease infinite"),
])
def test_reply_text_is_the_lines_text(packet, kw, expected):
    assert leaselog.reply_text(packet, "10.98.1.1", **kw) == expected
    line = leaselog.reply_line(packet, "10.98.1.1", **kw)
    assert line is not None and line.text == expected


def test_reply_text_of_a_client_without_hardware_address_and_of_lease_query_answers():
    packet = reply(M.ACK, o51=u32(60))
    packet.chaddr = b""
    assert leaselog.reply_text(packet, "eth1") == "DHCPACK on 10.0.0.5 to <no identifier> via eth1 lease 60 s"
    assert leaselog.reply_text(reply(M.LEASEACTIVE), "eth1") is None


# -- the writer -------------------------------------------------------------------------------


def test_a_turns_lines_are_one_write_and_one_flush_at_its_end_as_twisted_would_write_them():
    out, turns = CountingOut(), Turns()
    writer = logs.LogWriter(out, frozenset)
    writer.schedule = turns.schedule
    texts = [f"DHCPACK on 10.0.0.{i} to 02:00:00:00:00:10 via eth1 lease 3600 s" for i in range(10)]
    before = time.time()
    for text in texts:
        writer.lease_text(text)
    after = time.time()
    assert out.getvalue() == "" and len(turns.calls) == 1  # nothing before the turn's end, one call asked
    turns.end()
    assert (out.writes, out.flushes) == (1, 1)
    lines = out.getvalue().splitlines(keepends=True)
    assert len(lines) == 10
    assert all(line in (_classic(t, before), _classic(t, after)) for line, t in zip(lines, texts))
    turns.end()
    assert (out.writes, out.flushes) == (1, 1)  # an empty turn writes nothing


def test_another_line_writes_the_waiting_lease_lines_first():
    out, turns = CountingOut(), Turns()
    writer = logs.LogWriter(out, frozenset)
    writer.schedule = turns.schedule
    writer.lease_text("DHCPOFFER on 10.0.0.5 to 02:00:00:00:00:10 via eth1 lease 3600 s")
    writer({"log_format": "failover pair {pair}: state {old} -> {new}", "pair": "p", "old": "STARTUP",
            "new": "NORMAL", "log_level": LogLevel.info, "log_namespace": "cnrd", "log_time": 0.0})
    writer.lease_text("DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 via eth1 lease 3600 s")
    turns.end()
    text = out.getvalue()
    assert re.fullmatch(rf"{STAMP} \[cnrd#info\] DHCPOFFER on .*\n.* \[cnrd#info\] failover pair p: state STARTUP -> "
                        rf"NORMAL\n{STAMP} \[cnrd#info\] DHCPACK on .*\n", text), text


def test_lines_never_wait_beyond_the_limit():
    out, turns = CountingOut(), Turns()
    writer = logs.LogWriter(out, frozenset)
    writer.schedule = turns.schedule
    for i in range(logs.MAX_PENDING + 1):
        writer.lease_text(f"lease 10.0.{i >> 8}.{i & 255} expired (02:00:00:00:00:10)")
    assert len(out.getvalue().splitlines()) == logs.MAX_PENDING
    turns.end()
    assert len(out.getvalue().splitlines()) == logs.MAX_PENDING + 1


def test_without_a_turn_each_line_is_written_at_once():
    out = CountingOut()
    writer = logs.LogWriter(out, frozenset)
    writer.lease_text("DHCPRELEASE of 10.0.0.5 from 02:00:00:00:00:10")
    assert out.getvalue().endswith(" [cnrd#info] DHCPRELEASE of 10.0.0.5 from 02:00:00:00:00:10\n")


def test_journal_lines_have_the_info_priority_and_no_stamp():
    # sd-daemon(3): "<6>" is LOG_INFO; journald stamps the line itself.
    out = CountingOut()
    writer = logs.LogWriter(out, frozenset, journal=True)
    writer.lease_text("DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 via eth1 lease 3600 s")
    writer.lease_text("two\nlines")
    assert out.getvalue() == ("<6>[cnrd] DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 via eth1 lease 3600 s\n"
                              "<6>[cnrd] two\n<6>[cnrd] lines\n")


def test_a_rotated_file_ends_where_one_write_per_line_ends_it(tmp_path):
    lines = [_classic(f"DHCPACK on 10.0.0.{i} to 02:00:00:00:00:10 via eth1 lease {i * 37} s", 0.0)
             for i in range(60)]
    (tmp_path / "one").mkdir()
    one = LogFile.fromFullPath(str(tmp_path / "one" / "log"), rotateLength=700, maxRotatedFiles=None)
    for line in lines:  # what twisted's FileLogObserver does for each event
        one.write(line)
        one.flush()
    (tmp_path / "many").mkdir()
    many = LogFile.fromFullPath(str(tmp_path / "many" / "log"), rotateLength=700, maxRotatedFiles=None)
    logs._write(many, lines[:7])
    logs._write(many, lines[7:])
    one.close()
    many.close()
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) > 3 and names == sorted(p.name for p in (tmp_path / "many").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "many" / name).read_text(), name


def test_waiting_lines_are_written_when_the_process_exits(tmp_path):
    # The reactor never ends the turn here: only the exit can write the lines.
    path = tmp_path / "log"
    code = f"""
from cnrd.ops import logs
out = open({str(path)!r}, "w")
writer = logs.observer(out, frozenset)
lease_log = logs.LeaseLogger(frozenset, via=str, known=lambda a: ("", None))
logs.direct_lease_lines(lease_log, writer, lambda flush: None)
for i in range(3):
    writer.lease_text(f"lease 10.0.0.{{i}} expired (02:00:00:00:00:10)")
assert out.tell() == 0
"""
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert [l.split(" [cnrd#info] ")[1] for l in path.read_text().splitlines()] == [
        f"lease 10.0.0.{i} expired (02:00:00:00:00:10)" for i in range(3)]


# -- through the running server ---------------------------------------------------------------


def direct(svc, journal: bool = False) -> tuple[CountingOut, Turns]:
    out, turns = CountingOut(), Turns()
    writer = logs.observer(out, lambda: svc.config.server.log_settings, journal=journal)
    logs.direct_lease_lines(svc.lease_log, writer, turns.schedule)
    return out, turns


def test_a_running_servers_lines_are_written_at_the_end_of_each_turn(lines):
    svc, port, _clock = running()
    out, turns = direct(svc)
    port.on_batch([Rx(request(M.DISCOVER, HW, o61=CID).serialize())], 0)
    assert port.sent[-1][1].message_type == M.OFFER and out.getvalue() == ""
    turns.end()
    offer = port.sent[-1][1]
    dotted = ".".join(str(b) for b in u32(offer.yiaddr))
    assert re.fullmatch(rf"{STAMP} \[cnrd#info\] DHCPOFFER on {dotted} to 02:00:00:00:00:10 \(client-id "
                        rf"01:02:00:00:00:00:10\) via eth1 lease 3600 s\n", out.getvalue()), out.getvalue()
    assert lines == []  # no log event for a line written directly


def test_a_running_servers_lines_in_order_including_release_and_nak(lines):
    svc, port, _clock = running()
    out, turns = direct(svc)
    first = dora(port, HW, o12=b"laptop")
    port.on_batch([Rx(request(M.RELEASE, HW, ciaddr=first, o54=u32(SERVER_IP)).serialize(),
                      src_ip="10.1.0.100", dst_ip="10.1.0.1")], 0)
    port.on_batch([Rx(request(M.REQUEST, mac(0x11), o50=u32(0x0A090909)).serialize())], 0)
    turns.end()
    dotted = ".".join(str(b) for b in u32(first))
    got = [l.split(" [cnrd#info] ", 1)[1] for l in out.getvalue().splitlines()]
    assert got[:3] == [f"DHCPOFFER on {dotted} to 02:00:00:00:00:10 (laptop) via eth1 lease 3600 s",
                       f"DHCPACK on {dotted} to 02:00:00:00:00:10 (laptop) via eth1 lease 3600 s",
                       f"DHCPRELEASE of {dotted} from 02:00:00:00:00:10 (laptop)"]
    assert len(got) == 4 and got[3].startswith("DHCPNAK on 10.9.9.9 to 02:00:00:00:00:11 via eth1: ")
    assert out.flushes == 1


def test_json_lines_stay_log_events_with_their_fields(lines):
    svc, port, _clock = running(frozenset({"json"}))
    _out, turns = direct(svc)
    address = dora(port, HW, o61=CID)
    turns.end()
    assert [e["kind"] for e in lines] == ["DHCPOFFER", "DHCPACK"]  # events, as without the direct path
    ack = json.loads(logs.json_line(lines[-1]))
    assert ack["address"] == ".".join(str(b) for b in u32(address)) and ack["client_id"] == "01:02:00:00:00:00:10"


def test_no_success_messages_still_hides_the_direct_lines(lines):
    svc, port, _clock = running(frozenset({"no-success-messages"}))
    out, turns = direct(svc)
    dora(port, HW)
    turns.end()
    assert out.getvalue() == "" and lines == []


def test_the_direct_path_and_the_event_path_write_the_same_text():
    # The same exchanges, once as log events through the observer, once direct.
    written = []
    for connect in (False, True):
        svc, port, _clock = running()
        out, turns = CountingOut(), Turns()
        writer = logs.observer(out, frozenset)
        if connect:
            logs.direct_lease_lines(svc.lease_log, writer, turns.schedule)
        else:
            globalLogPublisher.addObserver(writer)
        try:
            dora(port, HW, o12=b"{host}", o61=CID)
            dora(port, mac(0x11))
            turns.end()
        finally:
            if not connect:
                globalLogPublisher.removeObserver(writer)
        written.append([l.split(" ", 1)[1] for l in out.getvalue().splitlines() if "[cnrd#info] DHCP" in l])
    assert len(written[0]) == 4 and written[0] == written[1]
