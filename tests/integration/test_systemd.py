"""The unit's ExecStart (twistd cnrd) as systemd runs it: the sd_notify(3) protocol on $NOTIFY_SOCKET.

This machine has no systemd as PID 1, so the test plays systemd's part: it
binds the notification socket (a datagram socket with SO_PASSCRED, as
systemd's is, so each message names the PID that sent it) and starts the
real ``twistd --nodaemon --pidfile= cnrd`` in a namespace with
``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` set, as the unit's ``Type=notify``
and ``WatchdogSec=`` make systemd do.

    srv (cnrd, 10.1.0.1/24) ── cli (udhcpc)

Checked, from sd_notify(3) and the unit: READY=1 comes from the main
process once the store is loaded and DHCP is served (the log's "serving
DHCP" line is already written, and a client gets a lease right after);
WATCHDOG=1 keeps coming at half of WATCHDOG_USEC; SIGHUP (ExecReload) sends
RELOADING=1, then READY=1 with the outcome: a broken file is refused and
changes nothing, a good one is applied (the next client gets the new lease
time); SIGTERM sends STOPPING=1 and the server shuts down cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import sys
import time

import pytest

from tests.integration.cnrd_proc import REPO, TWISTD
from tests.integration.lab import Lab, read_log, udhcpc

pytestmark = pytest.mark.integration

CONFIG = """
[server]
name = sd
interfaces = {iface}
data-dir = {data}

[policy default]
lease-time = {lease_time}

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149
"""

SCRAPE = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8067/metrics', timeout=10).read().decode())"

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s


class NotifySocket:
    """systemd's end of $NOTIFY_SOCKET: every message with the PID that sent it."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.messages: list[tuple[int, str]] = []

    def wait(self, want: str, timeout: float, after: int = 0) -> tuple[int, str]:
        """The first message from index ``after`` on whose lines include ``want``; bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for pid, text in self.messages[after:]:
                if want in text.split("\n"):
                    return pid, text
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {want!r} within {timeout} s; got {self.messages}")
            self.sock.settimeout(min(left, 1.0))
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            self.messages.append((pid, data.decode()))

    def close(self) -> None:
        self.sock.close()


def test_notify_ready_watchdog_reload_and_stop():
    with Lab() as lab:
        srv, cli = lab.netns("srv"), lab.netns("cli")
        s_if, c_if = lab.link(srv, cli, a_addr="10.1.0.1/24")
        conf = lab.path("cnrd.ini")
        data = lab.path("data")

        def write(lease_time: int) -> None:
            conf.write_text(CONFIG.format(iface=s_if, data=data, lease_time=lease_time))

        write(3600)
        notify = NotifySocket(str(lab.path("notify.sock")))
        try:
            proc = srv.popen(TWISTD, "--nodaemon", "--pidfile=", "cnrd", "--config", conf, name="cnrd",
                             env={"PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(lab.path("notify.sock")),
                                  "WATCHDOG_USEC": str(WATCHDOG_USEC)})
            pid, ready = notify.wait("READY=1", 30)
            assert pid == proc.pid, (pid, proc.pid)  # the main process, as NotifyAccess=main requires
            log = read_log(proc)
            # READY=1 after the store was loaded and the DHCP socket opened.
            assert "loaded 0 leases" in log and "serving DHCP on port 67" in log, log
            assert "STATUS=serving DHCP on port 67, 1 scopes" in ready
            first = udhcpc(cli, c_if)
            assert first.address is not None and first.address.startswith("10.1.0.1")
            assert first.lease_time == 3600

            # The watchdog: WATCHDOG=1 keeps coming from the main process.
            start = len(notify.messages)
            seen = start
            for _ in range(3):
                _, _ = notify.wait("WATCHDOG=1", 5, after=seen)
                seen = next(i for i in range(seen, len(notify.messages))
                            if "WATCHDOG=1" in notify.messages[i][1].split("\n")) + 1
            pings = [m for m in notify.messages[start:] if m[1] == "WATCHDOG=1"]
            assert len(pings) >= 3 and {p for p, _ in pings} == {proc.pid}

            # SIGHUP with a broken file: refused, nothing changes.
            conf.write_text(conf.read_text().replace("ranges = ", "ranges = not-an-address "))
            mark = len(notify.messages)
            os.kill(proc.pid, signal.SIGHUP)
            notify.wait("RELOADING=1", 10, after=mark)
            _, outcome = notify.wait("READY=1", 10, after=mark)
            assert "refused, nothing changed" in outcome, outcome
            assert "SIGHUP: reload of" in read_log(proc) and proc.poll() is None

            # SIGHUP with a good file: applied; the next client sees the new lease time.
            write(600)
            mark = len(notify.messages)
            os.kill(proc.pid, signal.SIGHUP)
            notify.wait("RELOADING=1", 10, after=mark)
            _, outcome = notify.wait("READY=1", 10, after=mark)
            assert f"STATUS=reloaded {conf}" in outcome, outcome
            second = udhcpc(cli, c_if, extra=["-x", "hostname:again", "-x", "0x3d:01aabbccddeeff"])
            assert second.lease_time == 600, second.output

            # The latency histograms of the real server saw both exchanges.
            metrics = srv.run(sys.executable, "-c", SCRAPE, timeout=30).stdout
            counts = dict(re.findall(r'^(cnrd_dhcp_reply_seconds_count\{type="(?:OFFER|ACK)"\}) (\S+)$', metrics,
                                     re.M))
            assert float(counts['cnrd_dhcp_reply_seconds_count{type="OFFER"}']) == 2, metrics
            assert float(counts['cnrd_dhcp_reply_seconds_count{type="ACK"}']) == 2, metrics
            commits = re.search(r"^cnrd_lease_commit_seconds_count (\S+)$", metrics, re.M)
            assert commits is not None and float(commits.group(1)) >= 2, metrics
            for line in metrics.splitlines():
                if line.startswith(("cnrd_dhcp_reply_seconds_sum", "cnrd_lease_commit_seconds_sum")):
                    print(line)

            mark = len(notify.messages)
            # twistd ends by re-raising the SIGTERM it handled: a clean stop for
            # systemd (systemd.service(5): SIGTERM counts as success by default).
            rc = srv.stop(proc, signal.SIGTERM, timeout=15)
            assert rc in (0, -signal.SIGTERM), read_log(proc)
            assert "Server Shut Down." in read_log(proc)
            notify.wait("STOPPING=1", 5, after=mark)
        finally:
            notify.close()


def test_log_file_rotation_is_bounded_by_size_and_count():
    """twistd --logfile with [server] log-max-size 1 KiB and log-max-files 2: at most three files, none much larger."""
    with Lab() as lab:
        srv = lab.netns("srv")
        logdir = lab.path("logs")
        logdir.mkdir()
        conf = lab.path("cnrd.ini")
        conf.write_text(CONFIG.format(iface="", data=lab.path("data"), lease_time=3600)
                        .replace("[server]\n", "[server]\nlog-max-size = 1024\nlog-max-files = 2\n", 1))
        logfile = logdir / "cnrd.log"
        notify = NotifySocket(str(lab.path("notify.sock")))
        try:
            proc = srv.popen(TWISTD, "--nodaemon", "--pidfile=", f"--logfile={logfile}", "cnrd", "--config", conf,
                             name="cnrd", env={"PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(lab.path("notify.sock"))})
            notify.wait("READY=1", 30)
            # Each SIGHUP writes about 200 bytes of reload lines: 40 of them are ~8 KiB,
            # enough to rotate several times over.  The next signal waits for the
            # reload's READY=1, so no two signals arrive as one.
            for _ in range(40):
                mark = len(notify.messages)
                os.kill(proc.pid, signal.SIGHUP)
                _, outcome = notify.wait("READY=1", 10, after=mark)
                assert "STATUS=reloaded" in outcome, outcome
            assert srv.stop(proc, signal.SIGTERM, timeout=15) in (0, -signal.SIGTERM)
        finally:
            notify.close()
        names = sorted(p.name for p in logdir.iterdir())
        assert names == ["cnrd.log", "cnrd.log.1", "cnrd.log.2"], names
        sizes = {p.name: p.stat().st_size for p in logdir.iterdir()}
        # A file rotates once a write takes it to the limit: at most one line beyond it.
        assert all(size <= 1024 + 400 for size in sizes.values()), sizes
        # The start-up lines were rotated away long ago: the oldest file kept
        # holds reload output, as the others do.
        oldest = (logdir / "cnrd.log.2").read_text()
        assert "SIGHUP: reloaded" in oldest and "serving DHCP on port" not in oldest, oldest
        print("log files:", sizes)
