"""The container deployment, for real: the image from the Dockerfile, the pair
from the compose files under podman-compose, a real DHCP client (dhclient).

Two variants of the same test, each a fresh compose project with its own
volumes and the API token file mounted as the compose secret:

* ``internal-network``: compose.internal.yaml as it is (what a reader runs to
  try the pair on one machine).  Podman's internal network 10.98.0.0/24, main
  10.98.0.1, backup 10.98.0.2; the client is a lab namespace whose veth joins
  the network's bridge (no client image needed).
* ``host-network``: compose.yaml (the deployment: network_mode host) with one
  override, network_mode ``ns:/run/netns/<namespace>``: each service gets "its
  own host", a lab namespace with an eth0 on a LAN bridge (10.98.0.1/.2, as
  deploy/*.ini say), and sees exactly what host networking shows it: the
  host's interfaces, no NAT, the LAN's broadcasts.  Real host networking on
  this machine would put DHCP on its actual LAN; namespaces keep it in the lab.

Each: ``up -d``, both /api/v1/ready (the image's health check command), both
NORMAL by GET /api/v1/dhcp/related-servers, a lease, the lease replicated to
the backup, stop the backup (SIGTERM to twistd as PID 1: immediate, exit 0),
main in COMMUNICATIONS-INTERRUPTED, start it, both NORMAL, the lease still on
both, ``down -v``.  Everything a run creates (containers, pod, volumes,
network, namespaces) is removed even when it fails.  Images are kept: the
next run reuses the base image (debootstrap, ~35 s) and the build cache.

Needs root, podman and podman-compose (scripts/setup installs them) and, for
a cold build, debootstrap and the network (apt and pip in the build).
Without them the tests are skipped with the reason, except under CI=true.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.lab import dhclient, wait_for

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/cnrd:test"
BUILD_STAGE = "localhost/cnrd-build:test"
SUBNET = ipaddress.ip_network("10.98.0.0/24")
UID = 10067  # the image's cnrd user
IN_CI = os.environ.get("CI") == "true"


def _podman_compose() -> str | None:
    venv = Path(sys.executable).with_name("podman-compose")
    return str(venv) if venv.exists() else shutil.which("podman-compose")


PODMAN = shutil.which("podman")
PODMAN_COMPOSE = _podman_compose()
MISSING = [name for name, path in (("podman", PODMAN), ("podman-compose", PODMAN_COMPOSE)) if path is None]
REASON = f"container tests need {', '.join(MISSING)} (scripts/setup installs them)"
pytestmark = pytest.mark.skipif(bool(MISSING) and not IN_CI, reason=REASON)

# podman on machines like this one (sandboxed root, hybrid cgroups): lower
# ulimits and runc; see deploy/podman-containers.conf.  A caller's own wins.
ENV = dict(os.environ)
ENV.setdefault("CONTAINERS_CONF", str(REPO / "deploy" / "podman-containers.conf"))


def run(*argv: object, timeout: float = 60, check: bool = True, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    cmd = [str(a) for a in argv]
    cp = subprocess.run(cmd, check=False, capture_output=True, text=True, errors="replace", timeout=timeout,
                        env=env or ENV, input=input, cwd=REPO,
                        stdin=None if input is not None else subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise AssertionError(f"$ {' '.join(cmd)}\nexit {cp.returncode}\n{cp.stdout[-4000:]}\n{cp.stderr[-4000:]}")
    return cp


def podman(*argv: object, **kw) -> subprocess.CompletedProcess:
    return run(PODMAN, *argv, **kw)


@pytest.fixture(scope="module")
def image():
    """localhost/cnrd:test built from the Dockerfile (on the local base image)."""
    if MISSING:  # only under CI: there a missing tool fails the test
        pytest.fail(REASON + " (CI=true: not skipping)", pytrace=False)
    t0 = time.monotonic()
    run(REPO / "scripts" / "container-base-image", timeout=600)
    t1 = time.monotonic()
    run(REPO / "scripts" / "container-build", IMAGE, timeout=900)
    t2 = time.monotonic()
    # Keep the build stage tagged (it is the pip cache of the next build) and
    # drop what earlier builds of this Dockerfile left untagged, nothing else.
    run(REPO / "scripts" / "container-build", BUILD_STAGE, "--target", "build", timeout=900)
    podman("image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=cnrd", check=False)
    size = podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()
    print(f"\ncontainers: base image {t1 - t0:.1f} s, build {t2 - t1:.1f} s, image {int(size) / 1e6:.0f} MB")
    return IMAGE


class Pair:
    """One compose project (compose files ``files``) with a unique name."""

    def __init__(self, tmp: Path, files: list[Path]) -> None:
        self.files = files
        self.project = "cnrdt" + secrets.token_hex(3)
        self.token = secrets.token_urlsafe(32)
        token_file = tmp / "api-token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        os.chown(token_file, UID, UID)  # readable by the image's user only
        self.env = {**ENV, "CNRD_PROJECT": self.project, "CNRD_IMAGE": IMAGE,
                    "CNRD_API_TOKEN_FILE": str(token_file)}

    def name(self, service: str) -> str:
        return f"{self.project}-{service}"

    def compose(self, *argv: object, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        files = [a for f in self.files for a in ("-f", f)]
        return run(PODMAN_COMPOSE, *files, *argv, timeout=timeout, check=check, env=self.env)

    def api(self, service: str, path: str) -> tuple[int, dict]:
        """GET path from the service's admin API, inside its container, with the mounted token."""
        code = (
            "import sys, urllib.request as u, urllib.error as e\n"
            "r = u.Request('http://127.0.0.1:8067' + sys.argv[1],"
            " headers={'Authorization': 'Bearer ' + sys.stdin.read().strip()})\n"
            "try:\n    a = u.urlopen(r, timeout=5); print(a.status); print(a.read().decode())\n"
            "except e.HTTPError as x:\n    print(x.code); print(x.read().decode())\n"
        )
        cp = podman("exec", "-i", self.name(service), "python3", "-c", code, path,
                    input=self.token, check=False, timeout=20)
        if cp.returncode != 0:
            return 0, {"error": (cp.stderr or cp.stdout).strip()[-300:]}
        status, _, body = cp.stdout.partition("\n")
        return int(status), json.loads(body)

    def relation(self, service: str) -> dict | None:
        status, body = self.api(service, "/api/v1/dhcp/related-servers")
        return body["related-servers"][0] if status == 200 and body.get("related-servers") else None

    def normal(self, service: str, since: str = "") -> bool:
        """Both sides NORMAL as this service sees it, in touch since ``since`` (ISO UTC)."""
        rs = self.relation(service)
        return (rs is not None and rs["state"] == "NORMAL" and rs["partner-state"] == "NORMAL"
                and rs["communication"] == "OK" and (rs["last-contact"] or "") >= since)

    def ready(self, service: str) -> bool:
        """The image's health check command asked about readiness, run by hand (no systemd timers here)."""
        return podman("exec", self.name(service), "cnrd-healthcheck", "--ready", check=False, timeout=20).returncode == 0

    def lease(self, service: str, address: str) -> dict:
        status, body = self.api(service, f"/api/v1/leases/{address}")
        assert status == 200, body
        return body

    def logs(self) -> str:
        out = []
        for service in ("main", "backup"):
            cp = podman("logs", "--tail", "60", self.name(service), check=False)
            out.append(f"--- {self.name(service)} ---\n{cp.stdout}{cp.stderr}")
        return "\n".join(out)

    def remove(self) -> list[str]:
        """compose down -v, then whatever still carries the project's label. Returns leftovers."""
        self.compose("down", "-v", "-t", "10", timeout=120, check=False)
        label = f"label=io.podman.compose.project={self.project}"
        left = []
        for kind, ls, fmt, rm in (("container", ("ps", "-a"), "{{.Names}}", ("rm", "-f")),
                                  ("volume", ("volume", "ls"), "{{.Name}}", ("volume", "rm", "-f")),
                                  ("network", ("network", "ls"), "{{.Name}}", ("network", "rm", "-f"))):
            for n in podman(*ls, "--filter", label, "--format", fmt, check=False).stdout.split():
                left.append(f"{kind} {n}")
                podman(*rm, n, check=False)
        pod = f"pod_{self.project}"
        if podman("pod", "exists", pod, check=False).returncode == 0:
            left.append(f"pod {pod}")
            podman("pod", "rm", "-f", pod, check=False)
        return left


def internal_network(lab, tmp: Path) -> tuple[list[Path], object]:
    """compose.internal.yaml as it is; the client's veth joins the network's bridge."""
    # it fixes the subnet: a pair someone left up would clash
    for net in podman("network", "ls", "--format", "{{.Name}}").stdout.split():
        info = json.loads(podman("network", "inspect", net).stdout)[0]
        for s in info.get("subnets") or []:
            if ipaddress.ip_network(s["subnet"]).overlaps(SUBNET):
                pytest.fail(f"podman network {net} already uses {s['subnet']} "
                            f"(a pair from compose.internal.yaml still up?)", pytrace=False)

    def attach_client(pair: Pair):
        net = json.loads(podman("network", "inspect", f"{pair.project}_lan").stdout)[0]
        c = lab.netns("cli")
        host_if, cli_if = lab.ifname("h"), lab.ifname("c")
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", cli_if,
                        "netns", c.name], check=True)
        subprocess.run(["ip", "link", "set", host_if, "master", net["network_interface"], "up"], check=True)
        subprocess.run(["ip", "-n", c.name, "link", "set", cli_if, "up"], check=True)
        return c, cli_if

    return [REPO / "compose.internal.yaml"], attach_client


def host_network(lab, tmp: Path) -> tuple[list[Path], object]:
    """compose.yaml, each service on "its own host": a lab namespace with an
    eth0 on a LAN bridge, as deploy/*.ini expect.  The only change is
    network_mode host -> ns:/run/netns/<that namespace> (what the container
    sees is the same: the host's interfaces, no NAT, the LAN's broadcasts)."""
    lan = lab.netns("lan")
    br = lab.bridge(lan, "br0")
    services = {}
    for service, addr in (("main", "10.98.0.1/24"), ("backup", "10.98.0.2/24")):
        ns = lab.netns(service)
        _, ifname = lab.link(lan, ns, a_bridge=br, b_addr=addr)
        for dev, *change in ((ifname, "down"), (ifname, "name", "eth0"), ("eth0", "up")):
            subprocess.run(["ip", "-n", ns.name, "link", "set", "dev", dev, *change], check=True)
        services[service] = {"network_mode": f"ns:/run/netns/{ns.name}"}
    override = tmp / "compose.netns.yaml"
    override.write_text(json.dumps({"services": services}))  # JSON is YAML

    def attach_client(pair: Pair):
        c = lab.netns("cli")
        _, cli_if = lab.link(lan, c, a_bridge=br)
        return c, cli_if

    return [REPO / "compose.yaml", override], attach_client


@pytest.fixture(params=["internal-network", "host-network"])
def pair(request, image, lab, tmp_path):
    files, attach_client = (internal_network if request.param == "internal-network" else host_network)(lab, tmp_path)
    p = Pair(tmp_path, files)
    p.attach_client = attach_client
    try:
        yield p
    finally:
        rep = getattr(request.node, "_lab_rep_call", None)
        if rep is not None and rep.failed:
            print(p.logs())
        left = p.remove()
        if left:
            print(f"removed after compose down: {', '.join(left)}")


def test_image_runs_unprivileged_with_two_capabilities(image):
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == "cnrd"
    assert "/var/lib/cnrd" in cfg["Volumes"]
    assert cfg["Entrypoint"][:2] == ["twistd", "--nodaemon"]
    # kept only in the docker image format (scripts/container-build: --format docker)
    health = info.get("Healthcheck") or info.get("HealthCheck") or {}
    assert health.get("Test") == ["CMD", "cnrd-healthcheck"], info
    cp = podman("run", "--rm", "--network", "none", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE,NET_RAW",
                "--entrypoint", "sh", image, "-c",
                "getcap \"$(readlink -f /opt/cnrd/bin/python3)\"; twistd --help >/dev/null && echo plugin-ok; "
                "/opt/cnrd/bin/python -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM); "
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"0.0.0.0\", 67)); print(\"bind-ok\")'; "
                "id -u", timeout=60)
    assert "cap_net_bind_service,cap_net_raw=ep" in cp.stdout
    assert "plugin-ok" in cp.stdout and "bind-ok" in cp.stdout
    assert cp.stdout.split()[-1] == str(UID)
    # the plugin cache made at build time is current: twistd never tries to rewrite it
    cp = podman("run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python", image, "-c",
                "import sys; from twisted.python import log; log.startLogging(sys.stdout); "
                "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))", timeout=60)
    assert "plugin cache" not in cp.stdout, cp.stdout
    # the host-network deployment is valid compose, with the same services
    cfg = run(PODMAN_COMPOSE, "-f", REPO / "compose.yaml", "config",
              env={**ENV, "CNRD_API_TOKEN_FILE": "/dev/null"}).stdout
    assert "network_mode: host" in cfg and "main.ini" in cfg and "backup.ini" in cfg


def test_pair_in_containers_serves_a_client_and_survives_a_backup_restart(pair):
    t0 = time.monotonic()
    pair.compose("up", "-d")
    wait_for(lambda: pair.ready("main") and pair.ready("backup"), 60, interval=0.5,
             what="both containers' /api/v1/ready")
    t_ready = time.monotonic() - t0
    wait_for(lambda: pair.normal("main") and pair.normal("backup"), 60, interval=0.5, what="both NORMAL")
    t_normal = time.monotonic() - t0
    print(f"\ncontainers ({pair.files[0].name}): up -> both ready {t_ready:.1f} s, both NORMAL {t_normal:.1f} s")
    main, backup = pair.relation("main"), pair.relation("backup")
    assert (main["role"], main["our-address"], main["partner-address"]) == ("main", "10.98.0.1", "10.98.0.2")
    assert (backup["role"], backup["our-address"]) == ("backup", "10.98.0.2")
    # the image's HEALTHCHECK, as the engine would run it
    assert podman("healthcheck", "run", pair.name("main"), check=False).returncode == 0
    # unprivileged, with exactly NET_BIND_SERVICE and NET_RAW
    status = podman("exec", pair.name("main"), "cat", "/proc/1/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[0] == str(UID)
    assert int(fields["CapEff"], 16) == (1 << 10) | (1 << 13)

    # a real client on the LAN
    c, cli_if = pair.attach_client(pair)
    lease = dhclient(c, cli_if)
    mac = c.mac(cli_if)
    assert ipaddress.ip_address(lease.address) in SUBNET and lease.server == "10.98.0.1", lease
    wait_for(lambda: pair.lease("backup", lease.address)["hardware-address"] == mac, 15,
             what="the lease on the backup")

    # restart the backup: SIGTERM to twistd (PID 1) stops it at once and cleanly
    t1 = time.monotonic()
    pair.compose("stop", "backup")
    t_stop = time.monotonic() - t1
    state = podman("inspect", "--format", "{{.State.ExitCode}}", pair.name("backup")).stdout.strip()
    assert state == "0", pair.logs()
    assert t_stop < 8, f"stopping took {t_stop:.1f} s"
    wait_for(lambda: (pair.relation("main") or {}).get("communication") == "INTERRUPTED", 15,
             what="main to see the backup gone")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t2 = time.monotonic()
    pair.compose("start", "backup")
    wait_for(lambda: pair.normal("main", since) and pair.normal("backup", since), 60, interval=0.5,
             what="both NORMAL again after the backup restart")
    # the main went through COMMUNICATIONS-INTERRUPTED and back (the backup
    # restored NORMAL from its store: its state-since is from before)
    assert pair.relation("main")["state-since"] >= since
    print(f"containers: backup stop {t_stop:.1f} s, start -> both NORMAL {time.monotonic() - t2:.1f} s")
    # the lease survived in the backup's volume, and is the client's on both sides
    for service in ("backup", "main"):
        got = pair.lease(service, lease.address)
        assert (got["state"], got["hardware-address"]) == ("leased", mac), (service, got)

    pair.compose("down", "-v", "-t", "10")
    left = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={pair.project}", "-q").stdout
    assert not left.strip()
