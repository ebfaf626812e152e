"""The admin API over TLS and over a Unix socket, from the real ``twistd cnrd`` to the real ``cnrctl``.

    lan (bridge) ── srv 10.98.0.1 (twistd cnrd; its API in its namespace:
                                   first ssl:8443 on 127.0.0.1, then unix:<lab>/api.sock)

A throwaway CA made with the openssl CLI signs the server's certificate
(subjectAltName IP:127.0.0.1, the address cnrctl connects to).  ``cnrctl
--api https://127.0.0.1:8443 --cacert CA dhcp show`` works, and so does
CNRCTL_CACERT; without the CA (the system's store does not know it) cnrctl
refuses the certificate, exit 1, and says to give the CA.  ``/ready`` answers over TLS without a
token with only readiness and the state's name.  Then the server is
restarted listening on a Unix socket only (mode 0600), and ``cnrctl
--config INI`` finds the socket from ``[api] listen``.  Set
CNRD_SAVE_OUTPUTS=DIR to keep cnrctl's https output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import Netns, wait_for

CNRCTL = str(Path(sys.executable).with_name("cnrctl"))

SERVER = """
[server]
name = tls
interfaces = {iface}
data-dir = @DATA@

[api]
listen = {listen}

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.98.0.0/24
ranges = 10.98.0.100-10.98.0.149
"""


def make_certificates(d: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key): a throwaway CA and a server certificate for 127.0.0.1."""
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    for argv in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", ca_key, "-out", ca_crt, "-subj", "/CN=cnrd test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-out", crt, "-extfile", ext],
    ):
        cp = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, f"{' '.join(map(str, argv))}: {cp.stderr}"
    os.chmod(key, 0o600)
    return ca_crt, crt, key


def cnrctl(ns: Netns, *args: str, env_cacert: Path | None = None) -> subprocess.CompletedProcess:
    # No CNRCTL_* from the environment running the tests: only what the test gives.
    env = {k: "" for k in ("CNRCTL_API", "CNRCTL_TOKEN_FILE", "CNRCTL_CONFIG", "CNRCTL_CACERT")}
    if env_cacert is not None:
        env["CNRCTL_CACERT"] = str(env_cacert)
    return ns.run(CNRCTL, *args, check=False, env=env)


READY_OVER_TLS = r"""
import json, ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    with urllib.request.urlopen("https://127.0.0.1:8443/api/v1/ready", context=ctx, timeout=10) as r:
        print(json.dumps({"status": r.status, "body": json.loads(r.read()), "auth": r.headers.get("www-authenticate")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": json.loads(e.read()), "auth": e.headers.get("www-authenticate")}))
"""


def keep(name: str, text: str) -> None:
    print(f"--- {name} ---\n{text}", end="")
    where = os.environ.get("CNRD_SAVE_OUTPUTS")
    if where:
        Path(where, name).write_text(text)


def test_cnrctl_over_https_and_a_unix_socket(lab):
    assert Path(CNRCTL).exists(), f"{CNRCTL} is missing: pip install -e . installs the cnrctl console script"
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    ns = lab.netns("srv")
    _, iface = lab.link(lan, ns, a_bridge=br, b_addr="10.98.0.1/24")
    certs = lab.path("certs")
    certs.mkdir()
    ca, crt, key = make_certificates(certs)
    listen = f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={crt}"
    server = CnrdProcess(ns, SERVER.format(iface=iface, listen=listen), name="tls").start()
    wait_for(lambda: "admin API listening on https://127.0.0.1:8443/api/v1" in server.log(), 10,
             what="the API to listen on TLS")
    token = server.data_dir / "api-token"

    https = ("--api", "https://127.0.0.1:8443", "--token-file", str(token))
    r = cnrctl(ns, *https, "--cacert", str(ca), "dhcp", "show")
    assert r.returncode == 0, r.stderr
    keep("cnrctl-https-dhcp-show.txt", "$ cnrctl --api https://127.0.0.1:8443 --token-file api-token --cacert ca.crt "
         f"dhcp show\n{r.stdout}")
    assert "dhcp-enabled    true\n" in r.stdout and "server          tls\n" in r.stdout
    r = cnrctl(ns, *https, "--json", "dhcp", "show", env_cacert=ca)
    assert r.returncode == 0 and json.loads(r.stdout)["server"] == "tls"

    # The CA is not in the system's store: the certificate cannot be verified, and cnrctl says what to do.
    r = cnrctl(ns, *https, "dhcp", "show")
    assert r.returncode == 1 and r.stdout == ""
    assert "cannot verify the certificate" in r.stderr and "--cacert" in r.stderr
    keep("cnrctl-https-no-ca.txt", f"$ cnrctl --api https://127.0.0.1:8443 --token-file api-token dhcp show\n{r.stderr}")
    # Plain http to the TLS port gets no answer cnrctl can read.
    r = cnrctl(ns, "--api", "http://127.0.0.1:8443", "--token-file", str(token), "dhcp", "show")
    assert r.returncode == 1

    # /ready over TLS, without a token: readiness and the state's name, nothing more.
    r = ns.run(sys.executable, "-c", READY_OVER_TLS, str(ca))
    got = json.loads(r.stdout)
    assert got == {"status": 200, "body": {"ready": True, "state": "STANDALONE"}, "auth": None}

    # The same server, restarted on a Unix socket only.
    server.stop()
    sock = lab.path("api.sock")
    server.config_path.write_text(SERVER.format(iface=iface, listen=f"unix:{sock}:mode=600")
                                  .replace("@DATA@", str(server.data_dir)))
    server.start()
    wait_for(lambda: f"admin API listening on unix:{sock}" in server.log(), 10, what="the API on the socket")
    # Nothing in this file speaks TLS: the server runs without pyOpenSSL and
    # cryptography (it had them while it listened on ssl:).
    assert "TLS not loaded: no setting of" in server.log()
    assert not tls_mapped(server), "TLS libraries mapped in a server whose configuration uses no TLS"
    assert (os.stat(sock).st_mode & 0o777) == 0o600
    r = cnrctl(ns, "--config", str(server.config_path), "--json", "dhcp", "show")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["server"] == "tls"
    r = cnrctl(ns, "--config", str(server.config_path), "ready")
    assert (r.returncode, r.stdout) == (0, "ready\n")
    # Nothing listens on TCP 8443 any more.
    r = cnrctl(ns, *https, "--cacert", str(ca), "dhcp", "show")
    assert r.returncode == 1 and "cannot reach the cnrd API" in r.stderr
    # A reload that turns on an https webhook keeps it for the next start.
    text = server.config_path.read_text()
    server.config_path.write_text(text.replace("[server]\n", "[server]\ntrap-webhook = https://127.0.0.1:9/t\n"
                                                             "stats-interval = 30\n", 1))
    r = cnrctl(ns, "--config", str(server.config_path), "--json", "dhcp", "reload")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["applied"] == ["[server] stats-interval"]
    assert out["restart-required"] == ["[server] trap-webhook (needs TLS, which this process did not load: "
                                       "nothing it started with used it)"]
    assert not tls_mapped(server)
    server.stop()
    # Started with it, the server loads TLS.
    server.start()
    wait_for(lambda: f"admin API listening on unix:{sock}" in server.log(), 10, what="the API on the socket")
    assert "TLS not loaded" not in server.log() and tls_mapped(server)
    server.stop()


def tls_mapped(server: CnrdProcess) -> bool:
    """Whether ``server``'s process has cryptography's Rust extension (pyOpenSSL's base) mapped."""
    assert server.proc is not None
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "python" in maps  # the process read is the server's interpreter
    return "cryptography/hazmat/bindings/_rust" in maps
