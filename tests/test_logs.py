"""log-settings (failover-detail, no-failover-activity, no-failover-conflict,
incoming-packet-detail, json), read live, and JSON log lines from a real twistd."""

from __future__ import annotations

import http.server
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from cnrd.ops import logs
from cnrd.dhcp.packet import MessageType as M
from cnrd.failover import wire
from cnrd.failover.protocol import FailoverProtocol
from cnrd.failover.states import Role, S
from cnrd.failover.wire import BindingStatus, RejectReason
from tests.dhcp.helpers import mac, request
from tests.failover.test_peer import T0
from tests.test_metrics import Node, PairLink
from tests.test_service import Rx, make
from tests.test_traps import captured, closed_port

REPO = Path(__file__).resolve().parents[1]
TWISTD = str(Path(sys.executable).with_name("twistd"))
PAIR = "examplepair"


def set_log_settings(dhcp, *words: str) -> None:
    """What the admin API does on PATCH attributes: a new frozen config in place of the old."""
    dhcp.reconfigure(replace(dhcp.config, server=replace(dhcp.config.server, log_settings=frozenset(words))))


def texts(events) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events]


# -- the categories ---------------------------------------------------------------------
def test_shown():
    s = frozenset
    assert not logs.shown(logs.DETAIL, s()) and logs.shown(logs.DETAIL, s({"failover-detail"}))
    assert logs.shown(logs.ACTIVITY, s()) and not logs.shown(logs.ACTIVITY, s({"no-failover-activity"}))
    assert logs.shown(logs.CONFLICT, s()) and not logs.shown(logs.CONFLICT, s({"no-failover-conflict"}))
    assert not logs.shown(logs.PACKET_DETAIL, s()) and logs.shown(logs.PACKET_DETAIL, s({"incoming-packet-detail"}))
    # the detail lines were asked for by name: no-failover-activity does not hide them
    assert logs.shown(logs.DETAIL, s({"failover-detail", "no-failover-activity"}))
    assert logs.shown(logs.ALWAYS, s({"no-failover-activity", "no-failover-conflict"}))


# -- failover-detail, live, through the adapter ------------------------------------------------
def _handshaken_backup():
    node = Node(Role.BACKUP)
    fs = node.links[0]
    proto = FailoverProtocol(fs)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.0.1", 40000))
    proto.makeConnection(transport)
    proto.dataReceived(wire.encode(wire.connect(
        0, T0, relationship_name=PAIR, max_unacked=10, receive_timer=6, vendor_class="x", mclt=60,
        hba=wire.hba_from_split(256))))
    proto.dataReceived(wire.encode(wire.state(1, T0, server_state=int(S.NORMAL), start_time_of_state=T0)))
    return node, proto, transport


def _bndupd(xid: int, last_octet: int) -> bytes:
    return wire.encode(wire.bndupd(xid, T0, assigned_address=0x0A010000 + last_octet,
                                   binding_status=int(BindingStatus.BACKUP), lease_expiration=0,
                                   potential_expiration=0, start_time_of_state=T0))


def test_failover_detail_logs_each_update_and_follows_the_running_config():
    node, proto, _ = _handshaken_backup()
    with captured() as events:
        proto.dataReceived(_bndupd(10, 120))
    assert not any("DHCPBNDUPD" in t or "DHCPBNDACK" in t for t in texts(events))

    set_log_settings(node.dhcp, "failover-detail")  # no restart, no push to the peer or the link
    with captured() as events:
        proto.dataReceived(_bndupd(11, 121))
    lines = texts(events)
    assert any("received DHCPBNDUPD" in t and "address=10.1.0.121" in t for t in lines)
    assert any("sending DHCPBNDACK" in t for t in lines)

    set_log_settings(node.dhcp)
    with captured() as events:
        proto.dataReceived(_bndupd(12, 122))
    assert not any("DHCPBND" in t for t in texts(events))


# -- no-failover-activity ------------------------------------------------------------------------
def test_no_failover_activity_hides_normal_activity_but_not_state_changes_or_traps():
    main, backup = Node(Role.MAIN), Node(Role.BACKUP)
    link = PairLink(main, backup, T0)
    for node in (main, backup):
        set_log_settings(node.dhcp, "no-failover-activity")
    with captured() as quiet:
        link.connect()
        backup.port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)  # dropped: backup in NORMAL
        link.drop()
    lines = texts(quiet)
    assert any("state STARTUP -> RECOVER" in t or "-> NORMAL" in t for t in lines)  # state changes stay
    assert any("-> COMMUNICATIONS-INTERRUPTED" in t for t in lines)
    assert any(e.get("event") == "trap" for e in quiet)  # traps stay
    assert not any("partner heard" in t for t in lines)
    assert not any("handed to the backup" in t for t in lines)
    assert not any("because failover is in NORMAL" in t for t in lines)

    # the same pair without the setting logs all of it
    main, backup = Node(Role.MAIN), Node(Role.BACKUP)
    link = PairLink(main, backup, T0)
    with captured() as loud:
        link.connect()
        backup.port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    lines = texts(loud)
    assert any("partner heard, in state" in t for t in lines)
    assert any("5 free addresses handed to the backup" in t for t in lines)
    assert any("backup server dropped 1 DHCP requests because failover is in NORMAL" in t for t in lines)


def test_no_failover_activity_hides_link_lines_of_the_adapter():
    node = Node(Role.BACKUP)
    fs = node.links[0]
    for settings, expect in ((("no-failover-activity",), False), ((), True)):
        set_log_settings(node.dhcp, *settings)
        proto = FailoverProtocol(fs)
        with captured() as events:
            proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.1.0.1", 40000)))
            proto.connectionLost(None)
        lines = texts(events)
        assert any("connected to 10.1.0.1" in t for t in lines) is expect
        assert any("link to 10.1.0.1 closed" in t for t in lines) is expect


# -- no-failover-conflict --------------------------------------------------------------------------
def test_no_failover_conflict_hides_rejected_updates():
    node, proto, transport = _handshaken_backup()
    with captured() as events:
        proto.dataReceived(_bndupd(20, 240))  # not in the pair's ranges
    [line] = [e for e in events if e.get("event") == "failover-bndupd-reject"]
    assert line["address"] == "10.1.0.240" and line["reason_name"] == "ILLEGAL_IP_ADDRESS"
    assert line["log_level"] is LogLevel.warn

    set_log_settings(node.dhcp, "no-failover-conflict")
    with captured() as events:
        proto.dataReceived(_bndupd(21, 241))
    assert not [e for e in events if e.get("event") == "failover-bndupd-reject"]
    # the reject still went out, and a configuration-mismatch trap is not a conflict line
    assert wire.Framer().feed(transport.value())[-1].reject_reason == RejectReason.ILLEGAL_IP_ADDRESS


# -- incoming-packet-detail ---------------------------------------------------------------------------
def test_incoming_packet_detail_logs_drops_live():
    svc, port, _, _ = make()
    svc.server.enabled = False
    with captured() as events:
        port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    assert not any("dropped request" in t for t in texts(events))
    set_log_settings(svc, "incoming-packet-detail")
    with captured() as events:
        port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    assert "dropped request: dhcp-disabled" in texts(events)


# -- JSON lines ------------------------------------------------------------------------------------------
def _event(**kw):
    events = []
    from twisted.logger import LogPublisher

    pub = LogPublisher(events.append)
    Logger(namespace="cnrd.test", observer=pub).info("hello {who}", **kw)
    return events[0]


def test_json_line_is_one_valid_object():
    ev = _event(who="world\nnext line", raw=b"\x01\x02", flags={"b", "a"}, severity=LogLevel.warn,
                nan=math.nan, nested={"x": [1, (2, 3)]}, obj=object())
    line = logs.json_line(ev)
    assert line.endswith("\n") and line.count("\n") == 1
    data = json.loads(line)
    assert data["message"] == "hello world\nnext line"
    assert data["level"] == "info" and data["namespace"] == "cnrd.test"
    assert data["time"].endswith("Z") and "T" in data["time"]
    assert data["raw"] == "0102" and data["flags"] == ["a", "b"] and data["severity"] == "warn"
    assert data["nan"] == "nan" and data["nested"] == {"x": [1, [2, 3]]}
    assert data["obj"].startswith("<object")


def test_json_line_carries_the_traceback():
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        failure = Failure()
    events = []
    from twisted.logger import LogPublisher

    Logger(namespace="cnrd", observer=LogPublisher(events.append)).failure("boom", failure)
    data = json.loads(logs.json_line(events[0]))
    assert data["level"] == "critical" and "ZeroDivisionError" in data["traceback"]


def test_observer_switches_between_text_and_json_live():
    out = StringIO()
    settings = logs.SettingsSource(frozenset())
    observer = logs.observer(out, settings)
    observer(_event(who="text"))
    holder = {"s": frozenset({"json"})}
    settings.follow(lambda: holder["s"])
    observer(_event(who="json"))
    holder["s"] = frozenset()
    observer(_event(who="text again"))
    first, second, third = out.getvalue().splitlines()
    assert "[cnrd.test#info] hello text" in first
    assert json.loads(second)["message"] == "hello json"
    assert third.endswith("hello text again")


# -- a real twistd -------------------------------------------------------------------------------------
STANDALONE = """
[server]
name = jsontest
data-dir = {data}
server-port = 0
log-settings = {settings}
stats-interval = 0

[api]
enabled = false

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.109
"""

FAILOVER = STANDALONE + """
[failover-pair loop]
main = 127.0.0.1
backup = 127.0.0.2
port = {port}
failover-poll-interval = 1
failover-poll-timeout = 2
"""


class Twistd:
    """``twistd -n cnrd`` in a subprocess, its output in a file."""

    def __init__(self, tmp: Path, text: str, *args: str) -> None:
        self.config = tmp / "cnrd.ini"
        self.config.write_text(text)
        self.out = tmp / "stdout"
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", *args, "cnrd", "--config", str(self.config)],
                stdout=f, stderr=subprocess.STDOUT, cwd=tmp,
                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})

    def wait_for(self, text: str, path: Path | None = None, timeout: float = 30) -> str:
        path = path or self.out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = path.read_text() if path.exists() else ""
            if text in got:
                return got
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen; output:\n{self.out.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _json_lines(text: str) -> list[dict]:
    lines = [l for l in text.splitlines() if l.strip()]
    assert lines
    out = []
    for line in lines:
        data = json.loads(line)  # every line, twistd's own included
        assert isinstance(data, dict) and {"time", "level", "namespace", "message"} <= set(data), line
        out.append(data)
    return out


def test_twistd_writes_json_lines_to_stdout(tmp_path):
    d = Twistd(tmp_path, STANDALONE.format(data=tmp_path / "db", settings="json"))
    try:
        d.wait_for("serving DHCP on port")
    finally:
        d.stop()
    assert d.proc.returncode in (0, -signal.SIGTERM), d.out.read_text()  # twistd re-raises SIGTERM
    lines = _json_lines(d.out.read_text())
    loaded = next(l for l in lines if "loaded 0 leases" in l["message"])
    assert loaded["namespace"] == "cnrd" and loaded["name"] == "jsontest" and loaded["count"] == 0
    assert any("twistd" in l["message"] and "starting up" in l["message"] for l in lines)
    assert any(l["message"] == "Server Shut Down." for l in lines)


def test_twistd_writes_json_lines_to_its_logfile(tmp_path):
    logfile = tmp_path / "cnrd.log"
    d = Twistd(tmp_path, STANDALONE.format(data=tmp_path / "db", settings="json, failover-detail"),
               f"--logfile={logfile}")
    try:
        d.wait_for("serving DHCP on port", path=logfile)
    finally:
        d.stop()
    assert d.proc.returncode in (0, -signal.SIGTERM), d.out.read_text()  # twistd re-raises SIGTERM
    _json_lines(logfile.read_text())


def test_twistd_text_lines_without_json(tmp_path):
    d = Twistd(tmp_path, STANDALONE.format(data=tmp_path / "db", settings="default"))
    try:
        text = d.wait_for("serving DHCP on port")
    finally:
        d.stop()
    line = next(l for l in text.splitlines() if "serving DHCP" in l)
    assert "[cnrd#info] serving DHCP on port" in line
    with pytest.raises(ValueError):
        json.loads(line)


class _Hook(http.server.BaseHTTPRequestHandler):
    posts: list[dict]  # set per test

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_twistd_trap_is_a_json_line_and_a_webhook_post(tmp_path):
    hook = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.posts = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{hook.server_address[1]}/trap"
    text = FAILOVER.format(data=tmp_path / "db", settings="json", port=closed_port()).replace(
        "stats-interval = 0", f"stats-interval = 0\ntrap-webhook = {url}")
    d = Twistd(tmp_path, text)
    try:
        # the backup (127.0.0.2) is not there: not heard after failover-poll-timeout
        d.wait_for('"trap": "other-server-not-responding"')
        deadline = time.monotonic() + 10
        while not _Hook.posts and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        d.stop()
        hook.shutdown()
    lines = _json_lines(d.out.read_text())
    [trap] = [l for l in lines if l.get("event") == "trap"]
    assert trap["pair"] == "loop" and trap["server"] == "jsontest" and trap["level"] == "warn"
    [post] = _Hook.posts
    assert post["event"] == "other-server-not-responding" and post["pair"] == "loop"
    assert post["server"] == "jsontest" and post["time"].endswith("Z")


def test_log_settings_are_accepted_by_config():
    from cnrd.config import loads

    text = STANDALONE.format(data="/tmp/x", settings="failover-detail, no-failover-conflict, "
                                                      "no-failover-activity, json")
    assert loads(text).server.log_settings == {"failover-detail", "no-failover-conflict",
                                               "no-failover-activity", "json"}
    assert os.path.exists(TWISTD)
