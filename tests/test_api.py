"""The admin HTTP API over real HTTP on 127.0.0.1, in-process on the pytest-twisted reactor.

The API service is the production one (cnrd.admin.api.ApiService) listening on an
ephemeral port; behind it is a real Runtime (memory store, fake DHCP
port, a Clock) and, for the failover routes, two such servers whose real
Peers talk through their FailoverServices (tests/adminkit.py).
"""

from __future__ import annotations

import json
import os
import stat
from io import BytesIO
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from cnrd.admin.api import ApiService, load_token
from cnrd.config import ConfigError, loads
from cnrd.dhcp.packet import ip_to_int
from cnrd.failover.states import S
from cnrd.admin.commands import Admin
from cnrd.app.build import build, metrics_resource
from tests.adminkit import STANDALONE, TOKEN, Server, pair

V1 = "/api/v1"

# Twisted's readBody warns about the non-persistent pool's transport; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")


class Client:
    """Plain HTTP requests to one API server; answers are (status, headers, JSON)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
                   raw: bytes | None = None, ctype: str | None = "application/json",
                   auth: str | None = None, path_bytes: bytes | None = None) -> tuple[int, Any, Any]:
        headers = Headers({})
        if auth is not None:
            headers.addRawHeader("Authorization", auth)
        elif token is not None:
            headers.addRawHeader("Authorization", f"Bearer {token}")
        producer = None
        if body is not None or raw is not None:
            data = raw if raw is not None else json.dumps(body).encode()
            if ctype is not None:
                headers.addRawHeader("Content-Type", ctype)
            producer = FileBodyProducer(BytesIO(data))
        url = path_bytes if path_bytes is not None else (self.base + path).encode()
        resp = await self.agent.request(method.encode(), url, headers, producer)
        data = await readBody(resp)
        ctypes = resp.headers.getRawHeaders("content-type") or []
        parsed = json.loads(data) if ctypes and ctypes[0].startswith("application/json") else data
        return resp.code, resp.headers, parsed


@pytest.fixture
def serve():
    """serve(server) -> Client for an ApiService on 127.0.0.1:0 in front of that server."""
    started: list[ApiService] = []

    def start(server: Server) -> Client:
        api = ApiService(server.dhcp.config, reactor, Admin(server.dhcp), metrics=metrics_resource(server.dhcp))
        api.startService()
        started.append(api)
        port = api.port.getHost().port
        return Client(f"http://127.0.0.1:{port}")

    yield start
    for api in started:
        pytest_twisted.blockon(api.stopService())


@pytest.fixture
def server(tmp_path):
    return Server(tmp_path, STANDALONE)


# Every route that needs the token, with a body that would be accepted.
AUTH_ROUTES = [
    ("GET", V1 + "/dhcp", None),
    ("POST", V1 + "/dhcp/reload", None),
    ("POST", V1 + "/dhcp/stop", None),
    ("POST", V1 + "/dhcp/start", None),
    ("GET", V1 + "/dhcp/related-servers", None),
    ("POST", V1 + "/dhcp/partner-down", {"partner": "examplepair"}),
    ("GET", V1 + "/dhcp/attributes", None),
    ("PATCH", V1 + "/dhcp/attributes", {"max-dhcp-requests": 10}),
    ("GET", V1 + "/failover-pairs", None),
    ("GET", V1 + "/failover-pairs/examplepair", None),
    ("PATCH", V1 + "/failover-pairs/examplepair", {"mclt": 60}),
    ("GET", V1 + "/leases", None),
    ("GET", V1 + "/leases/10.1.0.100", None),
    ("GET", V1 + "/scopes", None),
    ("POST", V1 + "/save", None),
]


@pytest.mark.parametrize("method, path, body", AUTH_ROUTES)
@pytest_twisted.ensureDeferred
async def test_token_is_required(server, serve, method, path, body):
    api = serve(server)
    before = server.dhcp.config
    status, headers, got = await api.call(method, path, body, token=None)
    assert (status, got) == (401, {"error": "missing Authorization: Bearer <token> header"})
    assert headers.getRawHeaders("www-authenticate") == ['Bearer realm="cnrd"']
    for bad in ("Basic dGVzdDp0ZXN0", "Bearer", "Bearer   ", TOKEN):
        status, _, got = await api.call(method, path, body, auth=bad)
        assert status == 401, bad
        assert got["error"].startswith("malformed Authorization header")
    # RFC 6750 §3.1: a token that is not the API's is invalid_token, with a 401.
    status, headers, got = await api.call(method, path, body, token="wrong-" + TOKEN)
    assert (status, got) == (401, {"error": "wrong API token"})
    assert headers.getRawHeaders("www-authenticate") == ['Bearer realm="cnrd", error="invalid_token"']
    assert server.dhcp.config is before and server.dhcp.server.enabled


@pytest_twisted.ensureDeferred
async def test_health_needs_no_token(server, serve):
    api = serve(server)
    status, headers, got = await api.call("GET", V1 + "/health", token=None)
    assert (status, got) == (200, {"status": "alive"})
    assert headers.getRawHeaders("content-type") == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_status_stop_start_and_ready(server, serve):
    api = serve(server)
    server.lease(1)
    status, _, got = await api.call("GET", V1 + "/dhcp")
    assert status == 200
    assert set(got) == {"version", "server", "uptime-seconds", "dhcp-enabled", "leases", "counters", "commits"}
    assert got["leases"] == 1 and got["counters"]["sent"] == {"OFFER": 1, "ACK": 1}
    status, _, got = await api.call("GET", V1 + "/ready")
    assert (status, got) == (200, {"ready": True, "state": "STANDALONE"})
    status, _, got = await api.call("POST", V1 + "/dhcp/stop")
    assert (status, got) == (200, {"dhcp-enabled": False})
    assert server.discover(2) is None
    status, _, got = await api.call("GET", V1 + "/ready")
    assert (status, got) == (503, {"ready": False, "reason": "DHCP is disabled (dhcp start enables it)",
                                   "state": "DISABLED"})
    status, _, got = await api.call("POST", V1 + "/dhcp/start", {})
    assert (status, got) == (200, {"dhcp-enabled": True})
    assert server.discover(2) is not None
    status, _, got = await api.call("POST", V1 + "/dhcp/stop", {"now": True})
    assert status == 400 and got == {"error": "unknown key 'now'"}
    assert server.dhcp.server.enabled


@pytest_twisted.ensureDeferred
async def test_failover_routes_normal_then_interrupted(tmp_path, serve):
    main, backup, wire = pair(tmp_path)
    api = serve(main)
    status, _, got = await api.call("GET", V1 + "/dhcp/related-servers")
    assert status == 200
    [rs] = got["related-servers"]
    assert (rs["state"], rs["partner-state"], rs["communication"]) == ("NORMAL", "NORMAL", "OK")
    status, _, got = await api.call("GET", V1 + "/ready", token=TOKEN)
    assert status == 200
    # refused while the partner answers
    status, _, got = await api.call("POST", V1 + "/dhcp/partner-down", {"partner": "examplepair"})
    assert (status, got) == (409, {"error": "partner is in touch (state NORMAL)"})
    wire.advance(2)
    wire.close()
    status, _, got = await api.call("GET", V1 + "/dhcp/related-servers")
    [rs] = got["related-servers"]
    assert (rs["state"], rs["communication"]) == ("COMMUNICATIONS-INTERRUPTED", "INTERRUPTED")
    assert rs["comm-interrupted-since"] is not None
    # CNR: never earlier than the start of COMMUNICATIONS-INTERRUPTED
    status, _, got = await api.call("POST", V1 + "/dhcp/partner-down", {"partner": "10.1.0.2", "time": "-1h"})
    assert status == 409 and "earlier than" in got["error"]
    status, _, got = await api.call("POST", V1 + "/dhcp/partner-down",
                                    {"partner": "10.1.0.2", "time": rs["comm-interrupted-since"]})
    assert status == 200
    assert got["pair"] == "examplepair" and got["state"] == "PARTNER-DOWN"
    assert main.dhcp.sessions[0].state is S.PARTNER_DOWN
    status, _, got = await api.call("POST", V1 + "/dhcp/partner-down", {"partner": "nosuch"})
    assert status == 404 and got["error"].startswith("no failover partner 'nosuch'")
    status, _, got = await api.call("POST", V1 + "/dhcp/partner-down", {"partner": "examplepair", "time": "x"})
    assert status == 400


@pytest_twisted.ensureDeferred
async def test_bodies_that_are_not_json_objects(tmp_path, serve):
    main, backup, wire = pair(tmp_path)
    api = serve(main)
    for path, method in ((V1 + "/dhcp/partner-down", "POST"), (V1 + "/dhcp/attributes", "PATCH"),
                         (V1 + "/failover-pairs/examplepair", "PATCH"), (V1 + "/dhcp/reload", "POST")):
        status, _, got = await api.call(method, path, raw=b'{"partner": ')
        assert status == 400 and got["error"].startswith("malformed JSON body"), path
        status, _, got = await api.call(method, path, raw=b"\xff\xfe")
        assert status == 400 and got["error"].startswith("malformed JSON body"), path
        status, _, got = await api.call(method, path, raw=b'{"a": NaN}')
        assert status == 400, path
        status, _, got = await api.call(method, path, raw=b'{"partner": "x"}', ctype="text/plain")
        assert (status, got) == (400, {"error": "Content-Type must be application/json, not text/plain"}), path
        status, _, got = await api.call(method, path, raw=b"partner=x", ctype="application/x-www-form-urlencoded")
        assert status == 400, path
        status, _, got = await api.call(method, path, body=[1, 2])
        assert (status, got) == (400, {"error": "the body must be a JSON object"}), path
        status, _, got = await api.call(method, path, raw=b" " * 70000)
        assert status == 400 and "larger than" in got["error"], path
    assert main.dhcp.sessions[0].state is S.NORMAL


@pytest_twisted.ensureDeferred
async def test_attributes(server, serve):
    api = serve(server)
    status, _, got = await api.call("GET", V1 + "/dhcp/attributes")
    assert (status, got) == (200, {"start-on-reboot": True, "failover-recover": None, "log-settings": [],
                                   "max-dhcp-requests": 500, "safe-period": 86400})
    status, _, got = await api.call("PATCH", V1 + "/dhcp/attributes",
                                    {"start-on-reboot": False, "failover-recover": "2027-01-01T00:00:00Z"})
    assert status == 200 and got["start-on-reboot"] is False and got["failover-recover"] == "2027-01-01T00:00:00Z"
    status, _, got = await api.call("PATCH", V1 + "/dhcp/attributes", {"max-dhcp-request": 5})
    assert (status, got) == (400, {"error": "unknown key 'max-dhcp-request' (did you mean 'max-dhcp-requests'?)"})
    status, _, got = await api.call("PATCH", V1 + "/dhcp/attributes", {"max-dhcp-requests": -5})
    assert status == 400 and "out of range" in got["error"]
    assert server.dhcp.config.server.max_dhcp_requests == 500


@pytest_twisted.ensureDeferred
async def test_failover_pairs(tmp_path, serve):
    main, backup, wire = pair(tmp_path)
    api = serve(main)
    status, _, got = await api.call("GET", V1 + "/failover-pairs")
    assert status == 200 and [p["name"] for p in got["failover-pairs"]] == ["examplepair"]
    status, _, got = await api.call("GET", V1 + "/failover-pairs/examplepair")
    assert status == 200 and got["backup-pct"] == 10.0 and got["pending"] == {}
    status, _, got = await api.call("PATCH", V1 + "/failover-pairs/examplepair", {"backup-pct": 25, "main": "10.1.0.2",
                                                                                   "backup": "10.1.0.1"})
    assert status == 200 and got["backup-pct"] == 25.0 and got["restart-required"] == ["main", "backup"]
    assert got["pending"] == {"main": "10.1.0.2", "backup": "10.1.0.1"} and got["main"] == "10.1.0.1"
    assert main.dhcp.sessions[0].pair.backup_pct == 25.0
    for method, body in (("GET", None), ("PATCH", {"mclt": 60})):
        status, _, got = await api.call(method, V1 + "/failover-pairs/nosuch", body)
        assert (status, got) == (404, {"error": "no failover pair 'nosuch'"})
    status, _, got = await api.call("PATCH", V1 + "/failover-pairs/examplepair", {"mclt": "soon"})
    assert status == 400 and got == {"error": "bad duration 'soon'"}
    status, _, got = await api.call("GET", V1 + "/failover-pairs/example%20pair")
    assert status == 404


@pytest_twisted.ensureDeferred
async def test_leases_and_scopes(server, serve):
    api = serve(server)
    for n in range(5):
        server.lease(n)
    status, _, got = await api.call("GET", V1 + "/leases?limit=2")
    assert status == 200 and [l["address"] for l in got["leases"]] == ["10.1.0.100", "10.1.0.101"]
    assert got["next"] == "10.1.0.101"
    status, _, got = await api.call("GET", V1 + "/leases?limit=2&after=10.1.0.103")
    assert [l["address"] for l in got["leases"]] == ["10.1.0.104"] and got["next"] is None
    status, _, got = await api.call("GET", V1 + "/leases?hardware-address=02:00:00:00:00:03&state=leased&scope=lan")
    assert [l["address"] for l in got["leases"]] == ["10.1.0.103"]
    status, _, got = await api.call("GET", V1 + "/leases/10.1.0.100")
    assert status == 200 and got["state"] == "leased" and got["hardware-address"] == "02:00:00:00:00:00"
    status, _, got = await api.call("GET", V1 + "/leases/10.1.0.140")
    assert status == 200 and got["state"] == "available" and got["scope"] == "lan"
    status, _, got = await api.call("GET", V1 + "/leases/10.200.0.1")
    assert (status, got) == (404, {"error": "10.200.0.1 is not in any scope"})
    for bad in ("/leases/banana", "/leases?limit=5000", "/leases?after=x", "/leases?state=happy", "/leases?x=1",
                "/leases?limit=%ff"):
        status, _, got = await api.call("GET", V1 + bad)
        assert status == 400 and set(got) == {"error"}, bad
    status, _, got = await api.call("GET", V1 + "/scopes")
    assert got == {"scopes": [{"name": "lan", "subnet": "10.1.0.0/24", "total": 50, "leased": 5, "available": 45,
                               "available-main": 45, "available-backup": 0, "utilization-percent": 10.0}]}


@pytest_twisted.ensureDeferred
async def test_reload_bad_config_is_400_and_running_config_stays(server, serve):
    api = serve(server)
    before = server.dhcp.config
    server.write(server.text().replace("ranges = 10.1.0.100-10.1.0.149", "ranges = 10.1.0.100-10.1.1.149"))
    status, _, got = await api.call("POST", V1 + "/dhcp/reload")
    assert status == 400
    assert got == {"error": f"{server.path}: [scope lan] ranges: 10.1.0.100-10.1.1.149 is outside subnet 10.1.0.0/24"}
    assert server.dhcp.config is before
    assert server.discover(1) is not None  # still serving with the old configuration


@pytest_twisted.ensureDeferred
async def test_reload_adds_a_scope_that_serves_at_once(server, serve):
    api = serve(server)
    assert server.discover(1, giaddr="10.2.0.1") is None
    server.write(server.text() + "\n[scope second]\nsubnet = 10.2.0.0/24\nranges = 10.2.0.10-10.2.0.19\n")
    status, _, got = await api.call("POST", V1 + "/dhcp/reload", {"force": False})
    assert (status, got) == (200, {"reloaded": True, "applied": ["[scope second] added"], "restart-required": [],
                                   "warnings": []})
    assert server.lease(1, giaddr="10.2.0.1") == ip_to_int("10.2.0.10")
    # and removing it again while it holds a lease needs force
    server.write(server.text().split("\n[scope second]")[0] + "\n")
    status, _, got = await api.call("POST", V1 + "/dhcp/reload")
    assert status == 409 and got["error"].startswith("scope second holds 1 leased addresses")
    status, _, got = await api.call("POST", V1 + "/dhcp/reload", {"force": True})
    assert status == 200 and got["applied"] == ["[scope second] removed"] and len(got["warnings"]) == 1


@pytest_twisted.ensureDeferred
async def test_save_without_changes(server, serve):
    api = serve(server)
    status, _, got = await api.call("POST", V1 + "/save")
    assert (status, got) == (200, {"saved": str(server.path), "changed": []})


@pytest_twisted.ensureDeferred
async def test_unknown_routes_methods_and_paths_are_json(server, serve):
    api = serve(server)
    for path in ("/", "/api", V1, V1 + "/nosuch", V1 + "/dhcp/nosuch", "/api/v2/dhcp", V1 + "/leases/1/2"):
        status, headers, got = await api.call("GET", path)
        assert (status, got) == (404, {"error": "no such route"}), path
        assert headers.getRawHeaders("content-type") == ["application/json"]
    status, headers, got = await api.call("DELETE", V1 + "/dhcp/attributes")
    assert status == 405 and got["error"].startswith("method DELETE not allowed")
    assert "PATCH" in headers.getRawHeaders("allow")[0]
    status, _, got = await api.call("GET", V1 + "/dhcp/stop")
    assert status == 405
    status, _, got = await api.call("GET", "", path_bytes=api.base.encode() + V1.encode() + b"/leases/%ff%fe")
    assert (status, got) == (400, {"error": "the request path or host is not UTF-8"})


@pytest_twisted.ensureDeferred
async def test_a_bug_is_a_logged_500_in_json(server, serve):
    api = serve(server)
    server.dhcp.server.counters = None  # status() now fails: a stand-in for a bug
    status, _, got = await api.call("GET", V1 + "/dhcp")
    assert (status, got) == (500, {"error": "internal error (a bug in cnrd; see the server log)"})


@pytest_twisted.ensureDeferred
async def test_metrics_need_no_token(server, serve):
    api = serve(server)
    server.lease(1)
    status, headers, body = await api.call("GET", "/metrics", token=None)
    assert status == 200
    assert headers.getRawHeaders("content-type")[0].startswith("text/plain")
    assert b'cnrd_dhcp_packets_sent_total{type="ACK"} 1.0' in body


@pytest_twisted.ensureDeferred
async def test_save_writes_what_the_api_changed(tmp_path, serve):
    main, backup, wire = pair(tmp_path)
    api = serve(main)
    status, _, _ = await api.call("PATCH", V1 + "/dhcp/attributes", {"start-on-reboot": "disabled"})
    assert status == 200
    status, _, _ = await api.call("PATCH", V1 + "/failover-pairs/examplepair", {"mclt": "2m"})
    assert status == 200
    status, _, got = await api.call("POST", V1 + "/save", {})
    assert (status, got) == (200, {"saved": str(main.path), "changed": [
        "[failover-pair examplepair] mclt", "[server] start-on-reboot"]})
    text = main.text()
    assert "mclt = 120" in text and "start-on-reboot = false" in text and "# keep this comment" in text
    status, _, got = await api.call("POST", V1 + "/save", {"really": True})
    assert status == 400


# -- the token and the service tree ---------------------------------------------------

def test_token_generated_once_with_mode_0600(tmp_path):
    config = loads(STANDALONE.format(name="t", data=tmp_path / "data").replace(
        f"token-file = {tmp_path / 'data'}/token\n", ""))
    assert config.api.token_file is None
    token = load_token(config)
    path = tmp_path / "data" / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(token) >= 40 and path.read_text().strip() == token
    assert load_token(config) == token  # kept across restarts


def test_token_file_problems_are_config_errors(tmp_path):
    text = STANDALONE.format(name="t", data=tmp_path)
    config = loads(text)
    with pytest.raises(ConfigError) as e:
        load_token(config)
    assert "[api] token-file" in str(e.value) and "cannot read" in str(e.value)
    (tmp_path / "token").write_text("  \n")
    with pytest.raises(ConfigError) as e:
        load_token(config)
    assert "is empty" in str(e.value)


def test_build_adds_the_api_when_enabled(tmp_path):
    text = STANDALONE.format(name="t", data=tmp_path)
    top = build(loads(text), reactor)
    assert isinstance(top.getServiceNamed("api"), ApiService)
    top = build(loads(text.replace("[api]\n", "[api]\nenabled = false\n")), reactor)
    with pytest.raises(KeyError):
        top.getServiceNamed("api")
