"""sd_notify(3) over $NOTIFY_SOCKET, SIGHUP reload, journald lines, bounded log files, version and help."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.logger import LogLevel

from cnrd import __version__
from cnrd.app import notify as sdn
from cnrd.app.tap import HangupReload, Options, check_main
from cnrd.ops import logs

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "cnrd.service"


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2)
    yield str(path), s
    s.close()


def test_notify_sends_one_datagram_to_the_socket_path(listener):
    path, s = listener
    assert sdn.notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": path})
    assert s.recv(4096) == b"READY=1\nSTATUS=x"


def test_notify_reaches_an_abstract_socket():
    name = f"cnrd-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    try:
        assert sdn.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(64) == b"WATCHDOG=1"
    finally:
        s.close()


def test_notify_without_socket_or_with_a_gone_one_does_nothing(tmp_path):
    assert not sdn.notify("READY=1", {})
    assert not sdn.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


@pytest.mark.parametrize("env,expected", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec(env, expected):
    assert sdn.watchdog_interval(env, pid=4242) == expected


def _notifier(env):
    clock = task.Clock()
    sent: list[str] = []
    n = sdn.SystemdNotifier(clock, lambda: "serving", env=env, send=lambda m: sent.append(m) or True)
    return clock, sent, n


def test_ready_on_the_first_reactor_turn_then_watchdog_at_half_the_interval_then_stopping():
    clock, sent, n = _notifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000"})
    n.startService()
    assert "READY=1\nSTATUS=serving" not in sent  # not before the reactor turns
    clock.advance(0)
    assert sent.count("READY=1\nSTATUS=serving") == 1 and n.ready_sent
    pings = sent.count("WATCHDOG=1")
    clock.advance(2)
    clock.advance(2)
    assert sent.count("WATCHDOG=1") == pings + 2
    n.stopService()
    assert sent[-1] == "STOPPING=1"
    clock.advance(10)
    assert sent[-1] == "STOPPING=1"  # no pings after stop


def test_nothing_is_sent_outside_systemd():
    clock, sent, n = _notifier({"WATCHDOG_USEC": "4000000"})
    n.startService()
    clock.advance(10)
    n.reloading()
    n.reloaded("x")
    n.stopService()
    assert sent == []


class _Admin:
    def __init__(self, result):
        self.result = result
        self.calls = 0
        self.config = type("C", (), {"path": "/etc/cnrd/cnrd.ini"})()

    def reload_checked(self, body):
        self.calls += 1
        return defer.succeed(self.result) if isinstance(self.result, dict) else defer.fail(self.result)


class _Notifier:
    def __init__(self):
        self.seen: list[str] = []

    def reloading(self):
        self.seen.append("RELOADING")

    def reloaded(self, outcome):
        self.seen.append(outcome)


def test_sighup_reload_tells_systemd_what_was_applied():
    admin, n = _Admin({"warnings": ["w"], "restart-required": ["data-dir"]}), _Notifier()
    out = []
    HangupReload(task.Clock(), admin, n).reload().addCallback(out.append)
    assert admin.calls == 1
    assert n.seen == ["RELOADING", "reloaded /etc/cnrd/cnrd.ini; restart required for: data-dir"]
    assert out == [n.seen[-1]]


def test_sighup_reload_refused_says_why_and_that_nothing_changed():
    from cnrd.admin.values import AdminError

    admin, n = _Admin(AdminError(400, "cnrd.ini: [server] name: missing")), _Notifier()
    HangupReload(task.Clock(), admin, n).reload()
    assert n.seen[0] == "RELOADING"
    assert "refused, nothing changed" in n.seen[1] and "[server] name: missing" in n.seen[1]


def test_journal_lines_carry_the_priority_and_no_time_stamp():
    event = {"log_format": "lost {n}\nsecond line", "n": 3, "log_level": LogLevel.warn,
             "log_namespace": "cnrd", "log_time": 1_700_000_000.0}
    line = logs.journal_line(event)
    assert line == "<4>[cnrd] lost 3\n<4>[cnrd] second line\n"
    assert "2023" not in line


def test_journal_stream_matches_only_the_stream_systemd_named(tmp_path):
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        assert logs.journal_stream(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.journal_stream(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logs.journal_stream(f, {})


def test_log_file_rotation_is_bounded_in_size_and_count(tmp_path):
    path = tmp_path / "cnrd.log"
    out = logs.open_log_file(str(path), max_size=1000, max_files=3)
    try:
        for i in range(200):
            out.write(f"line {i:04d} " + "x" * 40 + "\n")
    finally:
        out.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["cnrd.log", "cnrd.log.1", "cnrd.log.2", "cnrd.log.3"], files
    assert all((tmp_path / f).stat().st_size <= 1000 + 60 for f in files)
    assert "line 0199" in path.read_text()


def test_twistd_cnrd_version_and_cnrd_check_help(capsys):
    with pytest.raises(SystemExit) as e:
        Options().parseOptions(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnrd {__version__}"
    assert check_main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: cnrd-check CONFIG.ini")
    assert check_main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_the_installed_commands_print_the_version():
    bindir = Path(sys.executable).parent
    twistd = subprocess.run([str(bindir / "twistd"), "cnrd", "--version"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert twistd.returncode == 0 and twistd.stdout.strip() == f"cnrd {__version__}", twistd
    ctl = subprocess.run([str(bindir / "cnrctl"), "--version"], capture_output=True, text=True, timeout=60)
    assert ctl.returncode == 0 and __version__ in ctl.stdout, ctl
    check = subprocess.run([str(bindir / "cnrd-check"), "--help"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "usage: cnrd-check" in check.stdout, check


def test_the_unit_asks_for_notify_watchdog_and_the_hardening():
    text = UNIT.read_text()
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            settings.setdefault(k, []).append(v)
    assert settings["Type"] == ["notify"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["DynamicUser"] == ["yes"] and settings["StateDirectory"] == ["cnrd"]
    assert set(settings["CapabilityBoundingSet"][0].split()) == {"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    assert settings["ProtectSystem"] == ["strict"]
    assert any("kill -HUP $MAINPID" in v for v in settings["ExecReload"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # The unit's /opt/cnrd paths, pointed at this venv's commands so verify finds them.
    bindir = str(Path(sys.executable).parent) + "/"
    unit = tmp_path / "cnrd.service"
    unit.write_text(UNIT.read_text().replace("/opt/cnrd/bin/", bindir))
    cp = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "cnrd.service" not in cp.stderr, cp.stderr
