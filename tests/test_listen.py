"""``[api] listen`` and ``[api] metrics-listen``: Twisted endpoint descriptions.

The parsing (pure), the one-line errors naming the key, the ``host:port``
form older files use, and the real listeners in-process: a Unix socket
spoken to by cnrctl's client, and /metrics on its own port and not on the
API's.
"""

from __future__ import annotations

import io
import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from cnrd.admin.api import ApiService
from cnrd.admin.commands import Admin
from cnrd.app.build import metrics_resource
from cnrd.config import ConfigError, InvalidValue, loads
from cnrd.config.listen import Listen, parse_endpoint
from cnrd.ctl.client import Client, find_target
from cnrd.ctl.errors import ApiError, UsageError
from tests.adminkit import STANDALONE, TOKEN, Server
from tests.test_api import V1
from tests.test_api import Client as HttpClient

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")


# -- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("tcp:8067:interface=127.0.0.1", Listen("tcp:8067:interface=127.0.0.1", "tcp", "127.0.0.1", 8067)),
    ("tcp:port=9000", Listen("tcp:port=9000", "tcp", "", 9000)),
    ("tcp6:0:interface=\\:\\:1", Listen("tcp6:0:interface=\\:\\:1", "tcp6", "::1", 0)),
    ("ssl:8443:privateKey=/k.pem:certKey=/c.pem",
     Listen("ssl:8443:privateKey=/k.pem:certKey=/c.pem", "ssl", "", 8443)),
    ("unix:/run/cnrd/api.sock", Listen("unix:/run/cnrd/api.sock", "unix", path="/run/cnrd/api.sock")),
    ("unix:address=/run/a\\:b.sock:mode=600", Listen("unix:address=/run/a\\:b.sock:mode=600", "unix",
                                                     path="/run/a:b.sock")),
    ("systemd:domain=INET:index=0", Listen("systemd:domain=INET:index=0", "systemd")),
    # host:port, the older form: tcp on that interface (tcp6 for an IPv6 address, its colons escaped).
    ("127.0.0.1:8067", Listen("tcp:8067:interface=127.0.0.1", "tcp", "127.0.0.1", 8067)),
    ("0.0.0.0:0", Listen("tcp:0:interface=0.0.0.0", "tcp", "0.0.0.0", 0)),
    ("localhost:9000", Listen("tcp:9000:interface=localhost", "tcp", "localhost", 9000)),
    ("[::1]:8067", Listen("tcp6:8067:interface=\\:\\:1", "tcp6", "::1", 8067)),
])
def test_parse_endpoint(text, want):
    assert parse_endpoint(text) == want


def test_the_schemes_a_client_uses():
    assert [parse_endpoint(t).scheme for t in ("tcp:1", "tcp6:1", "ssl:1:privateKey=k", "unix:/s",
                                               "systemd:domain=INET:index=0")] == \
        ["http", "http", "https", "unix", ""]


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("8067", "use host:port"),
    ("localhost:http", "bad integer 'http'"),
    ("tcp:", "no port"),
    ("tcp:99999", "bad port"),
    ("tcp:80:colour=blue", "unknown argument 'colour'"),
    ("ssl:8443", "privateKey=FILE is required"),
    ("unix:", "no socket path"),
    ("tls:8443:privateKey=k", "unknown endpoint type 'tls'"),
])
def test_bad_endpoints(text, reason):
    with pytest.raises(InvalidValue) as info:
        parse_endpoint(text)
    assert reason in str(info.value)


def config_text(tmp_path, api: str) -> str:
    return STANDALONE.format(name="t", data=tmp_path).replace("listen = 127.0.0.1:0\n", api)


@pytest.mark.parametrize("key, value", [("listen", "tcp:80:colour=blue"), ("metrics-listen", "ssl:9")])
def test_a_bad_listen_is_one_line_naming_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError) as info:
        loads(config_text(tmp_path, f"listen = 127.0.0.1:0\n{key} = {value}\n"), "cnrd.ini")
    e = info.value
    assert (e.section, e.key) == ("api", key)
    assert str(e).startswith(f"cnrd.ini: [api] {key}: ") and "\n" not in str(e)


def test_metrics_listen_may_not_be_the_api_listen(tmp_path):
    with pytest.raises(ConfigError) as info:
        loads(config_text(tmp_path, "listen = tcp:9000\nmetrics-listen = tcp:9000\n"), "cnrd.ini")
    assert (info.value.key, "same as listen" in info.value.reason) == ("metrics-listen", True)


def test_a_missing_tls_key_stops_the_start_with_one_line(tmp_path):
    (tmp_path / "test").mkdir()
    server = Server(tmp_path, STANDALONE.replace(
        "listen = 127.0.0.1:0\n", f"listen = ssl:0:interface=127.0.0.1:privateKey={tmp_path}/nokey.pem\n"))
    api = ApiService(server.dhcp.config, reactor, Admin(server.dhcp))
    with pytest.raises(ConfigError) as info:
        api.prepare()
    e = info.value
    assert (e.section, e.key) == ("api", "listen") and "nokey.pem" in e.reason and "\n" not in str(e)


def test_a_unix_socket_in_a_missing_directory_stops_the_start(tmp_path):
    server = Server(tmp_path, STANDALONE.replace("listen = 127.0.0.1:0\n",
                                                 f"listen = unix:{tmp_path}/nodir/api.sock\n"))
    with pytest.raises(ConfigError) as info:
        ApiService(server.dhcp.config, reactor, Admin(server.dhcp)).prepare()
    assert info.value.key == "listen" and "nodir does not exist" in info.value.reason


# -- real listeners -----------------------------------------------------------------------

@pytest.fixture
def started():
    services: list[ApiService] = []
    yield services
    for api in services:
        pytest_twisted.blockon(api.stopService())


def start(server: Server, services: list[ApiService]) -> ApiService:
    api = ApiService(server.dhcp.config, reactor, Admin(server.dhcp), metrics=metrics_resource(server.dhcp))
    api.startService()
    services.append(api)
    return api


@pytest_twisted.ensureDeferred
async def test_metrics_listen_serves_metrics_and_only_there(tmp_path, started):
    server = Server(tmp_path, STANDALONE.replace(
        "listen = 127.0.0.1:0\n", "listen = 127.0.0.1:0\nmetrics-listen = tcp:0:interface=127.0.0.1\n"))
    api = start(server, started)
    assert api.metrics_port is not None and api.port is not None
    metrics = HttpClient(f"http://127.0.0.1:{api.metrics_port.getHost().port}")
    status, _, body = await metrics.call("GET", "/metrics", token=None)
    assert status == 200 and b"cnrd_" in body
    status, _, got = await metrics.call("GET", V1 + "/dhcp")
    assert status == 404 and "metrics only" in got["error"]
    main = HttpClient(f"http://127.0.0.1:{api.port.getHost().port}")
    status, _, got = await main.call("GET", "/metrics", token=None)
    assert (status, got) == (404, {"error": "metrics are served on [api] metrics-listen, not on the API"})
    status, _, got = await main.call("GET", V1 + "/dhcp")
    assert status == 200 and got["dhcp-enabled"] is True


@pytest_twisted.ensureDeferred
async def test_without_metrics_listen_metrics_stay_on_the_api(tmp_path, started):
    api = start(Server(tmp_path, STANDALONE), started)
    assert api.metrics_port is None
    status, _, body = await HttpClient(f"http://127.0.0.1:{api.port.getHost().port}").call(
        "GET", "/metrics", token=None)
    assert status == 200 and b"cnrd_" in body


@pytest_twisted.ensureDeferred
async def test_unix_socket_with_cnrctls_client(tmp_path, started):
    sock = tmp_path / "api.sock"
    server = Server(tmp_path, STANDALONE.replace("listen = 127.0.0.1:0\n", f"listen = unix:{sock}:mode=600\n"))
    start(server, started)
    assert sock.exists() and (os.stat(sock).st_mode & 0o777) == 0o600
    # cnrctl finds the socket from the server's INI file, like a tcp address.
    target = find_target(None, None, str(server.path), env={})
    assert (target.socket, target.base) == (str(sock), f"unix:{sock}/api/v1")
    client = Client(target, timeout=10)
    # cnrctl's client blocks; the server answers on this reactor meanwhile.
    status, _, got = await threads.deferToThread(client.call, "GET", "/dhcp")
    assert status == 200 and got["dhcp-enabled"] is True
    status, _, got = await threads.deferToThread(client.call, "POST", "/dhcp/stop")
    assert (status, got) == (200, {"dhcp-enabled": False}) and not server.dhcp.server.enabled
    out = io.BytesIO()
    written = await threads.deferToThread(client.download, "/dhcp", out)
    assert written == len(out.getvalue()) > 0 and json.loads(out.getvalue())["dhcp-enabled"] is False
    with pytest.raises(ApiError) as info:
        await threads.deferToThread(client.download, "/no-such-route", io.BytesIO())
    assert (info.value.status, info.value.reason) == (404, "no such route")
    (tmp_path / "wrong").write_text("wrong-" + TOKEN + "\n")
    wrong = Client(find_target(f"unix:{sock}", None, None, env={"CNRCTL_TOKEN_FILE": str(tmp_path / "wrong")}))
    with pytest.raises(ApiError) as info:
        await threads.deferToThread(wrong.call, "GET", "/dhcp")
    assert (info.value.status, info.value.reason) == (401, "wrong API token")


def test_cnrctl_reaches_nothing_on_a_missing_socket(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    client = Client(find_target(f"unix:{tmp_path}/none.sock", str(tmp_path / "token"), None, env={}))
    with pytest.raises(ApiError) as info:
        client.call("GET", "/dhcp")
    assert "cannot reach the cnrd API at unix:" in info.value.reason


# -- cnrctl's target from the server's listen ---------------------------------------------

@pytest.mark.parametrize("listen, base", [
    ("ssl:8443:interface=127.0.0.1:privateKey=/k.pem", "https://127.0.0.1:8443/api/v1"),
    ("tcp:8067", "http://127.0.0.1:8067/api/v1"),
    ("tcp6:8067:interface=\\:\\:", "http://[::1]:8067/api/v1"),
    ("127.0.0.1:9000", "http://127.0.0.1:9000/api/v1"),
])
def test_cnrctl_target_from_listen(tmp_path, listen, base):
    ini = tmp_path / "cnrd.ini"
    ini.write_text(config_text(tmp_path, f"listen = {listen}\n"))
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert find_target(None, None, str(ini), env={}).base == base


def test_cnrctl_asks_for_api_with_a_systemd_socket(tmp_path):
    ini = tmp_path / "cnrd.ini"
    ini.write_text(config_text(tmp_path, "listen = systemd:domain=INET:index=0\n"))
    (tmp_path / "token").write_text(TOKEN + "\n")
    with pytest.raises(UsageError) as info:
        find_target(None, None, str(ini), env={})
    assert "give the API's address with --api" in str(info.value)


def test_cnrctl_cacert_must_exist(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    with pytest.raises(UsageError) as info:
        find_target("https://127.0.0.1:1", str(tmp_path / "token"), None,
                    env={"CNRCTL_CACERT": str(tmp_path / "ca.pem")})
    assert "ca.pem does not exist" in str(info.value)
    (tmp_path / "ca.pem").write_text("x")
    target = find_target("https://127.0.0.1:1", str(tmp_path / "token"), None, cacert=str(tmp_path / "ca.pem"))
    assert target.cacert == str(tmp_path / "ca.pem")
