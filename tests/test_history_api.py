"""The history and lease-command routes over real HTTP, and cnrctl's verbs for them.

The API is the production ApiService on 127.0.0.1:0 in front of the real
Runtime of tests/adminkit.py; cnrctl runs as a real process against it (in a
thread, so the reactor keeps serving).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from cnrd.admin.api import ApiService
from cnrd.admin.commands import Admin
from cnrd.ctl import main as ctl_main
from cnrd.ctl import parse_args
from cnrd.ctl.formatting import format_history, format_holder, format_lease_command
from tests.adminkit import STANDALONE, TOKEN, Server
from tests.dhcp.helpers import mac
from tests.test_api import Client

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")

ONE = STANDALONE.replace("ranges = 10.1.0.100-10.1.0.149", "ranges = 10.1.0.100-10.1.0.100")
CNRCTL = str(Path(sys.executable).parent / "cnrctl")


@pytest.fixture
def api(tmp_path: Path) -> Any:
    server = Server(tmp_path, ONE)
    svc = ApiService(server.dhcp.config, reactor, Admin(server.dhcp))
    svc.startService()
    port = svc.port.getHost().port
    yield server, Client(f"http://127.0.0.1:{port}"), port
    pytest_twisted.blockon(svc.stopService())


def hw(n: int) -> str:
    return ":".join(f"{b:02x}" for b in mac(n))


@pytest_twisted.ensureDeferred
async def test_routes_need_the_token_and_record_the_operator(api: Any) -> None:
    server, c, _ = api
    server.lease(1)
    for method, path in (("GET", "/api/v1/leases/10.1.0.100/history"), ("GET", "/api/v1/history"),
                         ("POST", "/api/v1/leases/10.1.0.100/force-available"),
                         ("POST", "/api/v1/leases/10.1.0.100/delete")):
        status, _, body = await c.call(method, path, token=None)
        assert status == 401, (path, body)
    assert server.dhcp.table.get(0x0A010064).hw  # nothing changed without the token
    status, _, body = await c.call("POST", "/api/v1/leases/10.1.0.100/force-available")
    assert (status, body) == (200, {"address": "10.1.0.100", "was": "leased", "state": "available",
                                    "failover": False})
    status, _, body = await c.call("POST", "/api/v1/leases/10.1.0.100/force-available")
    assert status == 409 and "available already" in body["error"]
    status, _, body = await c.call("POST", "/api/v1/leases/10.1.0.100/force-available", {"x": 1})
    assert status == 400
    status, _, body = await c.call("GET", "/api/v1/leases/10.1.0.100/history")
    assert status == 200 and body["next"] is None
    assert [(e["event"], e["source"], e["hardware-address"]) for e in body["history"]] == [
        ("ack", "dhcp", hw(1)), ("force-available", "operator", hw(1))]
    status, _, body = await c.call("GET", "/api/v1/history?hardware-address=" + hw(1) + "&limit=1")
    assert status == 200 and len(body["history"]) == 1 and body["next"] is not None
    status, _, body2 = await c.call("GET", f"/api/v1/history?hardware-address={hw(1)}&limit=1&cursor={body['next']}")
    assert status == 200 and body2["history"][0]["event"] == "force-available" and body2["next"] is None
    status, _, body = await c.call("GET", "/api/v1/history?since=tomorrow")
    assert status == 400 and "since" in body["error"]


@pytest_twisted.ensureDeferred
async def test_cnrctl_lease_history_and_commands(api: Any, tmp_path: Path) -> None:
    server, _, port = api
    server.lease(1)
    server.clock.advance(60)
    token = tmp_path / "ctl-token"
    token.write_text(TOKEN + "\n")
    base = [CNRCTL, "--api", f"http://127.0.0.1:{port}", "--token-file", str(token)]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(base + list(argv), capture_output=True, text=True, timeout=60, check=False)

    forced = await threads.deferToThread(run, "lease", "10.1.0.100", "force-available")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "10.1.0.100: force-available done, leased -> available\n"
    server.clock.advance(60)
    server.lease(2)
    out = await threads.deferToThread(run, "lease", "10.1.0.100", "history")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["TIME", "STATE", "EVENT", "HARDWARE-ADDRESS", "CLIENT-ID", "EXPIRES", "SOURCE",
                                "SERVER"]
    assert [ln.split()[2:4] for ln in lines[1:]] == [["ack", hw(1)], ["force-available", hw(1)], ["ack", hw(2)]]
    assert [ln.split()[-2:] for ln in lines[1:]] == [["dhcp", "test"], ["operator", "test"], ["dhcp", "test"]]
    at = await threads.deferToThread(run, "lease", "10.1.0.100", "history", "--at", "2027-01-15T08:00:30Z")
    assert at.returncode == 0, at.stderr
    assert at.stdout.startswith(f"10.1.0.100 at 2027-01-15T08:00:30Z: held by {hw(1)} (server test)\n")
    mine = await threads.deferToThread(run, "history", "--mac", hw(2), "--since", "-1d")
    assert mine.returncode == 0, mine.stderr
    assert [ln.split()[0] for ln in mine.stdout.splitlines()[1:]] == ["10.1.0.100"]
    bad = await threads.deferToThread(run, "lease", "10.1.0.120", "delete")
    assert bad.returncode == 1 and "no lease record" in bad.stderr


def test_parse_lease_history_verbs() -> None:
    a = parse_args(["lease", "10.1.0.57", "history", "--at", "2026-12-01 14:00"])
    assert (a.verb, a.at) == ("history", "2026-12-01 14:00")
    b = parse_args(["lease", "10.1.0.57", "history", "--since", "-1d", "--limit", "5"])
    assert (b.since, b.limit) == ("-1d", 5)
    assert parse_args(["lease", "10.1.0.57", "force-available"]).verb == "force-available"
    assert parse_args(["lease", "10.1.0.57", "delete"]).verb == "delete"
    h = parse_args(["history", "--mac", "02:00:00:00:00:01", "--since", "-1d"])
    assert (h.object, h.mac, h.since) == ("history", "02:00:00:00:00:01", "-1d")


@pytest.mark.parametrize("argv, fragment", [
    (["lease", "10.1.0.57", "show", "--since", "-1d"], "go with lease ADDRESS history"),
    (["lease", "list", "--at", "-1d"], "go with lease ADDRESS history"),
    (["lease", "10.1.0.57", "history", "--at", "-1d", "--since", "-2d"], "--at goes alone"),
    (["lease", "10.1.0.57", "force-available", "--limit", "3"], "go with lease list"),
    (["lease", "10.1.0.57", "history", "--since", "yesterday-ish"], "bad"),
    (["history", "--limit", "0"], "at least 1"),
])
def test_history_usage_mistakes(argv: list[str], fragment: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    # --api: the mistake must be found before any connection is tried.
    assert ctl_main(["--api", "http://127.0.0.1:9"] + argv, out, err) == 2
    assert fragment in err.getvalue()


def test_formatting() -> None:
    assert format_history([], True) == "no history\n"
    table = format_history([{"address": "10.1.0.5", "time": "T", "state": "leased", "event": "ack",
                             "source": "partner", "server": "10.0.0.2"}], True)
    assert table.splitlines()[0].split()[0] == "ADDRESS" and "partner  10.0.0.2" in table
    assert format_holder({"address": "a", "at": "T", "holder": None, "history": []}) == (
        "a at T: held by no client\n(no recorded change before that time)\n")
    assert "partner acknowledges" in format_lease_command(
        "force-available", {"address": "a", "was": "leased", "state": "reset", "failover": True})
