"""A server without TLS settings runs without TLS loaded (cnrd.app.tls); its reloads keep TLS settings for the next start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cnrd.admin.commands import Admin
from cnrd.app.tls import leave_unloaded
from cnrd.config import loads
from tests.adminkit import pair
from tests.test_config import MINIMAL

REPO = Path(__file__).resolve().parents[1]
HELD = " (needs TLS, which this process did not load: nothing it started with used it)"
LDAP = """
[ldap dir]
hostname = 127.0.0.1
search-path = ou=clients,dc=cnrd,dc=test
query-dictionary = businessCategory=client-class
"""


def test_tls_settings_name_every_setting_that_speaks_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA\n")
    assert loads(MINIMAL + "trap-webhook = http://127.0.0.1:9/t\n" + LDAP).tls_settings() == []
    text = (MINIMAL + "trap-webhook = HTTPS://hooks.example:443/t\n"
            "[api]\nlisten = ssl:8443:privateKey=/k.pem\nmetrics-listen = tcp:9100\n"
            + LDAP + f"use-ssl = starttls\nca-file = {ca}\n"
            "[failover-pair p]\nmain = 10.0.0.1\nbackup = 10.0.0.2\nmain-api = https://10.0.0.1:8443\n"
            "backup-api = http://10.0.0.2:8067\napi-token-file = /t\n")
    assert loads(text).tls_settings() == ["[api] listen", "[server] trap-webhook",
                                          "[failover-pair p] main-api", "[ldap dir] use-ssl"]
    # An API that is off listens nowhere.
    off = MINIMAL + "[api]\nenabled = false\nlisten = ssl:8443:privateKey=/k.pem\nmetrics-listen = ssl:9443:privateKey=/k.pem\n"
    assert loads(off).tls_settings() == []
    on = off.replace("enabled = false", "enabled = true").replace("listen = ssl:8443:privateKey=/k.pem", "listen = tcp:8067")
    assert loads(on).tls_settings() == ["[api] metrics-listen"]


def test_leave_unloaded_marks_pyopenssl_only_while_twisted_has_not_decided() -> None:
    modules: dict = {"twisted": object()}
    assert leave_unloaded(modules) is True and modules["OpenSSL"] is None
    assert leave_unloaded(modules) is True  # already kept out
    assert leave_unloaded({"OpenSSL": object()}) is False
    assert leave_unloaded({"twisted.internet.reactor": object()}) is False
    assert leave_unloaded({"twisted.internet.posixbase": object()}) is False


SERVER_WITHOUT_TLS = r"""
import sys
from cnrd.app.tls import leave_unloaded
assert leave_unloaded()
from twisted.internet import reactor, posixbase
import cnrd.app.build, cnrd.app.tap, cnrd.admin.partner, cnrd.ops.webhook, cnrd.ldap.client
from twisted.internet.interfaces import IReactorSSL
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("OpenSSL", "cryptography")
                and sys.modules[m] is not None)
print(posixbase.tls, IReactorSSL.providedBy(reactor), loaded)
"""


def test_the_reactor_and_the_server_import_without_pyopenssl() -> None:
    out = subprocess.run([sys.executable, "-c", SERVER_WITHOUT_TLS], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "None False []\n"


def test_a_reload_without_tls_keeps_tls_settings_for_the_next_start(tmp_path: Path) -> None:
    main, _backup, _wire = pair(tmp_path)
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA\n")
    text = main.text().replace("[failover-pair examplepair]",
                               "[failover-pair examplepair]\nmain-api = https://10.1.0.1:8443\n"
                               "backup-api = http://10.1.0.2:8067\napi-token-file = /t")
    text = text.replace("[server]", "[server]\ntrap-webhook = https://hooks.example/t", 1)
    text += LDAP + f"use-ssl = starttls\nca-file = {ca}\n" + LDAP.replace("[ldap dir]", "[ldap plain]") + "preference = 2\n"
    main.write(text)
    out = Admin(main.dhcp, tls=False).reload(None)
    assert sorted(out["restart-required"]) == sorted(label + HELD for label in (
        "[server] trap-webhook", "[failover-pair examplepair] main-api", "[ldap dir] use-ssl"))
    # What needs no TLS is applied: the plain LDAP server, and backup-api with the pair.
    assert "[ldap plain] added" in out["applied"] and "[failover-pair examplepair] backup-api" in out["applied"]
    config = main.dhcp.config
    assert config.server.trap_webhook is None and list(config.ldap) == ["plain"]
    assert config.failover_pairs["examplepair"].main_api is None
    assert config.failover_pairs["examplepair"].backup_api == "http://10.1.0.2:8067"
    assert config.tls_settings() == []
    # The same file in a process with TLS: all of it applies.
    out = Admin(main.dhcp, tls=True).reload(None)
    assert out["restart-required"] == []
    assert main.dhcp.config.tls_settings() == ["[server] trap-webhook", "[failover-pair examplepair] main-api",
                                               "[ldap dir] use-ssl"]
