"""deploy/healthcheck.py, the image's HEALTHCHECK, against the real API service on each kind of listener.

It asks /health (alive) by default, so a server that is not ready (DHCP
stopped here; RECOVER-WAIT in a pair) is not restarted; ``--ready`` asks
/ready.  It follows ``[api] listen`` whatever its form: ``host:port``, an
``ssl:`` description (https) and a ``unix:`` socket.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from tests.adminkit import STANDALONE, Server
from tests.integration.test_api_tls import make_certificates
from tests.test_listen import start, started  # noqa: F401 (the fixture)

HEALTHCHECK = Path(__file__).resolve().parents[1] / "deploy" / "healthcheck.py"


def check(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args, str(config)], capture_output=True, text=True,
                          timeout=30, check=False)


def listen_on(tmp_path: Path, kind: str) -> str:
    if kind == "tcp":
        return "127.0.0.1:0"
    if kind == "ssl":
        certs = tmp_path / "certs"
        certs.mkdir()
        _, crt, key = make_certificates(certs)
        return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={crt}"
    return f"unix:{tmp_path}/api.sock"


@pytest.mark.parametrize("kind", ["tcp", "ssl", "unix"])
@pytest_twisted.ensureDeferred
async def test_alive_while_not_ready(tmp_path, started, kind):  # noqa: F811
    server = Server(tmp_path, STANDALONE.replace("listen = 127.0.0.1:0\n", f"listen = {listen_on(tmp_path, kind)}\n"))
    api = start(server, started)
    config = server.path
    if kind != "unix":
        # The check reads the file: give it the port the service got.
        port = api.port.getHost().port
        text = config.read_text()
        config = tmp_path / "check.ini"
        config.write_text(text.replace("127.0.0.1:0\n", f"127.0.0.1:{port}\n")
                          .replace("ssl:0:", f"ssl:{port}:"))
    r = await threads.deferToThread(check, config)
    assert (r.returncode, r.stdout) == (0, '{"status":"alive"}\n'), r.stdout + r.stderr
    r = await threads.deferToThread(check, config, "--ready")
    assert (r.returncode, r.stdout) == (0, '{"ready":true,"state":"STANDALONE"}\n'), r.stdout + r.stderr
    server.dhcp.server.enabled = False
    r = await threads.deferToThread(check, config)
    assert r.returncode == 0, r.stdout
    r = await threads.deferToThread(check, config, "--ready")
    assert r.returncode == 1 and r.stdout.endswith('/api/v1/ready: 503: {"ready":false,"state":"DISABLED"}\n')


def test_nobody_listening_is_unhealthy(tmp_path):
    config = tmp_path / "cnrd.ini"
    config.write_text(f"[api]\nlisten = unix:{tmp_path}/none.sock\n")
    r = check(config)
    assert r.returncode == 1 and r.stdout.startswith(f"unix:{tmp_path}/none.sock/api/v1/health: ")
