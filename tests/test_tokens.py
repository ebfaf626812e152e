"""The admin API's two tokens and RFC 6750 §3's answers, over real HTTP on 127.0.0.1.

The admin token may do everything; ``[api] read-token-file``'s token may
only read (GET).  A request without credentials gets 401 and the bare
``Bearer`` challenge; one with a token that is neither gets 401 and
``error="invalid_token"``; the read-only token on a write gets 403 and
``error="insufficient_scope"`` (RFC 6750 §3.1).  ``/ready`` and ``/health``
answer without a token, /ready with only its readiness and state name.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from cnrd.admin.api import ApiService
from cnrd.admin.commands import Admin
from cnrd.config import ConfigError
from tests.adminkit import STANDALONE, TOKEN, Server
from tests.test_api import V1, serve  # noqa: F401 (the fixture)

# Twisted's readBody warns about the non-persistent pool's transport; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")

READ_TOKEN = "read-only-token-9876543210"
WITH_READ = STANDALONE.replace("token-file = {data}/token\n",
                               "token-file = {data}/token\nread-token-file = {data}/read-token\n")

# Without a token, with a wrong one, the read-only one and the admin one.
NONE, WRONG, READ, ADMIN = None, "wrong-" + TOKEN, READ_TOKEN, TOKEN
BARE = ['Bearer realm="cnrd"']
INVALID = ['Bearer realm="cnrd", error="invalid_token"']
SCOPE = ['Bearer realm="cnrd", error="insufficient_scope"']


@pytest.fixture
def server(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "read-token").write_text(READ_TOKEN + "\n")
    return Server(tmp_path, WITH_READ)


# (token, method, path, body) -> (status, WWW-Authenticate); a write that passes stops DHCP.
MATRIX = [
    (NONE, "GET", "/dhcp", 401, BARE),
    (NONE, "POST", "/dhcp/stop", 401, BARE),
    (WRONG, "GET", "/dhcp", 401, INVALID),
    (WRONG, "POST", "/dhcp/stop", 401, INVALID),
    (READ, "GET", "/dhcp", 200, None),
    (READ, "GET", "/leases", 200, None),
    (READ, "POST", "/dhcp/stop", 403, SCOPE),
    (READ, "PATCH", "/dhcp/attributes", 403, SCOPE),
    (ADMIN, "GET", "/dhcp", 200, None),
    (ADMIN, "POST", "/dhcp/stop", 200, None),
]


@pytest.mark.parametrize("token, method, path, status, challenge", MATRIX)
@pytest_twisted.ensureDeferred
async def test_token_matrix(server, serve, token, method, path, status, challenge):  # noqa: F811
    api = serve(server)
    body = {"max-dhcp-requests": 10} if method == "PATCH" else None
    got_status, headers, got = await api.call(method, V1 + path, body, token=token)
    assert got_status == status, got
    assert headers.getRawHeaders("www-authenticate") == challenge
    if status != 200:
        assert set(got) == {"error"}
    writes = method != "GET" and status == 200
    # What a refused write would have changed is unchanged; the admin's write did change it.
    assert server.dhcp.server.enabled is not writes
    assert server.dhcp.config.server.max_dhcp_requests == 500


@pytest_twisted.ensureDeferred
async def test_the_refusals_say_why(server, serve):  # noqa: F811
    api = serve(server)
    _, _, got = await api.call("POST", V1 + "/dhcp/stop", token=READ)
    assert got == {"error": "the read-only API token may only GET"}
    _, _, got = await api.call("GET", V1 + "/dhcp", token=WRONG)
    assert got == {"error": "wrong API token"}
    _, _, got = await api.call("GET", V1 + "/dhcp", token=NONE)
    assert got == {"error": "missing Authorization: Bearer <token> header"}


@pytest_twisted.ensureDeferred
async def test_ready_without_a_token_says_only_ready_and_the_state(server, serve):  # noqa: F811
    api = serve(server)
    status, headers, got = await api.call("GET", V1 + "/ready", token=NONE)
    assert (status, got) == (200, {"ready": True, "state": "STANDALONE"})
    assert headers.getRawHeaders("www-authenticate") is None
    server.dhcp.server.enabled = False
    status, _, got = await api.call("GET", V1 + "/ready", token=NONE)
    # Not ready, and no reason: the reason is for those with a token.
    assert (status, got) == (503, {"ready": False, "state": "DISABLED"})
    status, _, got = await api.call("GET", V1 + "/ready", token=READ)
    assert status == 503 and got["reason"] == "DHCP is disabled (dhcp start enables it)"
    assert got["state"] == "DISABLED"
    # A token that is offered must be right, even where none is needed.
    status, headers, got = await api.call("GET", V1 + "/ready", token=WRONG)
    assert status == 401 and headers.getRawHeaders("www-authenticate") == INVALID


@pytest_twisted.ensureDeferred
async def test_health_needs_no_token_and_ignores_none(server, serve):  # noqa: F811
    api = serve(server)
    status, _, got = await api.call("GET", V1 + "/health", token=NONE)
    assert (status, got) == (200, {"status": "alive"})


def _start_error(server: Server) -> ConfigError:
    from twisted.internet import reactor

    with pytest.raises(ConfigError) as info:
        ApiService(server.dhcp.config, reactor, Admin(server.dhcp)).prepare()
    assert "\n" not in str(info.value)
    return info.value


def test_read_token_file_problems_stop_the_start(tmp_path):
    (tmp_path / "test").mkdir()
    read = tmp_path / "test" / "read-token"
    read.write_text(TOKEN + "\n")  # the admin token again
    server = Server(tmp_path, WITH_READ)
    e = _start_error(server)
    assert (e.section, e.key) == ("api", "read-token-file") and "holds the admin token" in e.reason
    read.write_text("\n")
    e = _start_error(server)
    assert (e.section, e.key) == ("api", "read-token-file") and "is empty" in e.reason
    read.unlink()
    e = _start_error(server)
    assert (e.section, e.key) == ("api", "read-token-file") and "cannot read" in e.reason


def test_read_token_file_may_not_be_the_token_file(tmp_path):
    from cnrd.config import loads

    text = WITH_READ.replace("{data}/read-token", "{data}/token").format(name="x", data=tmp_path)
    with pytest.raises(ConfigError) as info:
        loads(text, "cnrd.ini")
    assert (info.value.section, info.value.key) == ("api", "read-token-file")
