"""Balanced failover pairs: a cnrd pair and an ISC dhcpd pair, each server
answering its own half of the clients (RFC 3074 hash split 128).

Both servers must hear every client, as behind a relay that forwards to two
server addresses.  The lab for these pairs (``Bench(bridged=True)`` in
bench/run.py) is a bridge: the main (10.1.0.1), the backup (10.1.0.2, added
here) and the load namespace, whose only address is the relay address
10.8.0.1.  perfdhcp runs as ``perfdhcp -l IFACE ... all``: it sets giaddr to
that address and broadcasts each request on the bridge, so each server
receives each request once and answers the relay address directly, as with a
relay that has both servers as helpers.  No relay process sits in the path:
on a 2-core machine it would share the CPUs with perfdhcp and the servers and
cap both pairs at its own rate.

Per server, what the bench reads before and after each run
(:meth:`_BalancedMixin.per_server`): CPU seconds (utime+stime of the process
and its children, /proc/PID/stat) and ACKs sent by that server (cnrd:
``cnrd_dhcp_packets_sent_total{type="ACK"}`` of its ``GET /metrics``; ISC:
its ``DHCPACK on`` log lines).  :func:`per_server_delta` and
:func:`share_verdict` turn them into CPU per lease and a verdict on whether
both servers really answered: a bench where one server answered everything
measures a hot-standby pair and must say so instead of quoting a ratio.
"""

from __future__ import annotations

import re
import time
from typing import Any

from bench import perf
from bench.pairs import BACKUP_FO, MAIN_FO, MCLT, PAIR, CnrdPair, IscPair
from bench.servers import SERVERS, THROUGHPUT_NET, cnrd_server_lines
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.cnrd_proc import config as cnrd_config
from tests.integration.lab import read_log, wait_for

__all__ = [
    "BACKUP_LAN_IP",
    "NEAR_HALF",
    "CnrdBalancedPair",
    "IscBalancedPair",
    "isc_acks",
    "per_server_delta",
    "pick_try",
    "prom_value",
    "refine_rate",
    "share_verdict",
]

BACKUP_LAN_IP = "10.1.0.2"  # the backup's port on the clients' bridge (the main is SERVER_IP)
#: The main's share of the ACKs that counts as "near half" for split 128: a
#: hash of random MACs splits far closer than this; a pair outside it does
#: not balance (or balances some other split) and gets no ratio.
NEAR_HALF = (0.40, 0.60)
SPLIT = 128
#: Before load: both servers together under this share of a core over
#: IDLE_SAMPLE_S (the pool hand-over after NORMAL is done), at most IDLE_WAIT_S.
IDLE_CPU = 0.10
IDLE_SAMPLE_S = 1.0
IDLE_WAIT_S = 180.0

_ISC_ACK = re.compile(r"^DHCPACK on ", re.MULTILINE)


def prom_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample of a Prometheus text exposition, None if absent.

    ``labels`` must match the sample's labels exactly (order free).
    """
    want = dict(labels or {})
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name):]
        got: dict[str, str] = {}
        if rest.startswith("{"):
            body, sep, rest = rest[1:].partition("}")
            if not sep:
                continue
            for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body):
                got[k] = v
        elif rest[:1] not in (" ", "\t"):
            continue  # a longer metric name with this prefix
        if got != want:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            return float(fields[0])
        except ValueError:
            return None
    return None


def isc_acks(log_text: str) -> int:
    """DHCPACKs an ISC dhcpd logged (``DHCPACK on ADDR to MAC via RELAY``;
    INFORM's ``DHCPACK to`` is not a lease)."""
    return len(_ISC_ACK.findall(log_text))


def per_server_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per server (role -> {cpu_s, grants}), what one run added, and its CPU
    seconds per 1,000 leases it granted (None when it granted none)."""
    out: dict[str, dict] = {}
    for role, a in after.items():
        b = before.get(role, {"cpu_s": 0.0, "grants": 0})
        cpu = a["cpu_s"] - b["cpu_s"]
        grants = int(a["grants"] - b["grants"])
        out[role] = {"cpu_s": round(cpu, 3), "grants": grants,
                     "cpu_s_per_1k": (cpu / (grants / 1000)) if grants > 0 else None}
    return out


def share_verdict(per_server: dict[str, dict], near: tuple[float, float] = NEAR_HALF) -> dict[str, Any]:
    """Did both servers answer, each near half?  ``{ok, main_share, reason}``."""
    main = per_server.get("main", {}).get("grants", 0)
    backup = per_server.get("backup", {}).get("grants", 0)
    total = main + backup
    if total <= 0:
        return {"ok": False, "main_share": None, "reason": "no server granted a lease"}
    share = main / total
    if main == 0 or backup == 0:
        who = "main" if backup == 0 else "backup"
        return {"ok": False, "main_share": share, "reason": f"the {who} answered every client ({total} ACKs)"}
    if not near[0] <= share <= near[1]:
        return {"ok": False, "main_share": share,
                "reason": f"the main granted {100 * share:.1f} % of {total} ACKs, outside "
                          f"{100 * near[0]:.0f}-{100 * near[1]:.0f} %"}
    return {"ok": True, "main_share": share, "reason": f"main {main}, backup {backup} ({100 * share:.1f} % main)"}


def pick_try(tries: list[dict]) -> tuple[dict, bool]:
    """The saturation try a balanced pair is quoted by: the fastest one in
    which both servers answered near half (True), else the last (False).

    Past its saturation a pair may stop balancing (an overloaded partner
    misses its polls, the other serves everyone in COMMUNICATIONS-INTERRUPTED);
    such a try measures one server and is not the balanced pair's rate.
    """
    good = [t for t in tries if t.get("share", {}).get("ok")]
    if good:
        return max(good, key=lambda t: t.get("achieved") or 0), True
    return tries[-1], False


def refine_rate(tries: list[dict]) -> int | None:
    """The rate of one more saturation try, or None.

    Doubling jumps from a rate the pair kept up with, balanced, to one where
    it no longer balanced or no longer kept up; its balanced saturation lies
    between, so one try halfway tells it more closely (the rate grid alone
    caps one pair at the last rate it kept up with and measures the other
    overloaded, where a pair may achieve less than it could)."""
    if len(tries) < 2:
        return None
    prev, last = tries[-2], tries[-1]

    def kept_up(t: dict) -> bool:
        return (t.get("achieved") or 0) > 0.9 * t["asked"]

    if prev.get("share", {}).get("ok") and kept_up(prev) and not (last.get("share", {}).get("ok")
                                                                  and kept_up(last)):
        mid = (prev["asked"] + last["asked"]) // 2
        return mid if prev["asked"] < mid < last["asked"] else None
    return None


class _BalancedMixin:
    """The backup's port on the clients' bridge, and per-server samples."""

    balanced = True  # bench.run: a bridged lab, perfdhcp broadcasting, no recovery step
    # the saturation search starts here: a pair that stops balancing at the
    # bench's usual 2,000/s first try would have no balanced figure at all
    start_rate = 500
    bridge: tuple[Any, str] | None = None  # (namespace, bridge name), set by the bench before start
    backup_lan_port: str | None = None

    def _client_port(self) -> str:
        """The backup's interface on the clients' bridge, with a route to the relay network."""
        assert self.bridge is not None, "a balanced pair needs the bench's bridged lab"
        lan, br = self.bridge
        port, iface = self.lab.link(lan, self.backup_ns, a_bridge=br, b_addr=f"{BACKUP_LAN_IP}/24")
        self.backup_ns.run("ip", "route", "add", THROUGHPUT_NET.subnet, "dev", iface)
        self.backup_lan_port = port
        return iface

    def stop(self):
        rc = super().stop()
        # The next pair's backup takes the same address on the same bridge.
        if self.backup_lan_port is not None and self.bridge is not None:
            self.bridge[0].run("ip", "link", "del", self.backup_lan_port, check=False)
            self.backup_lan_port = None
        return rc

    idle_wait_s: float | None = None
    idle_cpu: float | None = None

    def _spawn(self, timeout: float) -> None:
        super()._spawn(timeout)
        self._wait_idle()

    def _wait_idle(self) -> None:
        """Wait until the pair is idle: right after NORMAL, a balanced main
        gives its partner half the free addresses (cnrd) or both sides
        balance their pools (ISC), tens of thousands of binding updates that
        would otherwise be counted as the first run's CPU and slow it."""
        t0 = time.monotonic()
        while True:
            pids = self.pids()
            a = perf.proc_sample(pids).cpu_s
            time.sleep(IDLE_SAMPLE_S)
            used = (perf.proc_sample(pids).cpu_s - a) / IDLE_SAMPLE_S
            if used < IDLE_CPU or time.monotonic() - t0 >= IDLE_WAIT_S:
                self.idle_wait_s, self.idle_cpu = time.monotonic() - t0, used
                return

    def per_server(self) -> dict[str, dict[str, float]]:
        """role -> {cpu_s, grants}: each server's CPU seconds so far (with its
        children) and the ACKs it has sent."""
        out = {}
        for role, pid in (("main", self.pid), ("backup", self.backup_proc.pid)):
            out[role] = {"cpu_s": perf.proc_sample(perf.with_descendants([pid])).cpu_s,
                         "grants": self._grants(role)}
        return out

    def _grants(self, role: str) -> int:
        raise NotImplementedError

    def move_marks(self) -> tuple[int, int]:
        """How many state moves each side has logged so far."""
        main, backup = self._logs()
        return len(self.MOVE.findall(main)), len(self.MOVE.findall(backup))

    def moves_since(self, marks: tuple[int, int]) -> dict[str, list[str]]:
        """The state moves each side logged after ``marks`` (why a run stopped balancing)."""
        main, backup = self._logs()
        return {"main": self.MOVE.findall(main)[marks[0]:], "backup": self.MOVE.findall(backup)[marks[1]:]}


class CnrdBalancedPair(_BalancedMixin, CnrdPair):
    """cnrd main + backup with ``load-balancing = true`` (split 128, max seconds 3)."""

    name = "cnrd-lb-pair"

    def _pair_section(self) -> str:
        return f"""
[failover-pair {PAIR}]
main = {MAIN_FO}
backup = {BACKUP_FO}
mclt = {MCLT}
load-balancing = true
split = {SPLIT}
load-balance-max-seconds = 3
failover-poll-interval = 2
failover-poll-timeout = 6
"""

    def _configure(self) -> None:
        self._failover_link()
        backup_lan_if = self._client_port()
        scopes = f"""
[scope {self.scope}]
subnet = {self.net.subnet}
ranges = {self.net.pool_first}-{self.net.pool_last}
""" + self._pair_section()
        lines = cnrd_server_lines()
        self.cp = CnrdProcess(self.ns, cnrd_config(self.iface, scopes, lines), name=f"cnrdlbmain{self.n}")
        self.bp = CnrdProcess(self.backup_ns, cnrd_config(backup_lan_if, scopes, lines), name=f"cnrdlbbackup{self.n}")

    def _grants(self, role: str) -> int:
        ns = self.ns if role == "main" else self.backup_ns
        r = ns.run("curl", "-s", "--max-time", "10", "http://127.0.0.1:8067/metrics", check=False, timeout=20)
        v = prom_value(r.stdout, "cnrd_dhcp_packets_sent_total", {"type": "ACK"})
        if v is None:
            raise AssertionError(f"{self.name} {role}: no ACK counter in GET /metrics:\n{r.stdout[:500]}{r.stderr}")
        return int(v)


class IscBalancedPair(_BalancedMixin, IscPair):
    """ISC dhcpd primary + secondary, ``split 128; load balance max seconds 3;``."""

    name = "isc-lb-pair"

    def _peer(self, role: str, me: str, peer: str) -> str:
        extra = f"mclt {MCLT}; split {SPLIT};" if role == "primary" else ""
        return (f'failover peer "{PAIR}" {{ {role}; address {me}; port 647; peer address {peer}; '
                f"peer port 647; max-response-delay 6; max-unacked-updates 100; "
                f"load balance max seconds 3; {extra} }}\n")

    def _configure(self) -> None:
        super()._configure()
        self.backup_lan_if = self._client_port()

    def start_backup(self, timeout: float) -> None:
        self.backup_proc = self.backup_ns.popen(
            "dhcpd", "-4", "-f", "-d", "-cf", self.backup_conf, "-lf", self.backup_leases,
            "-pf", self.dir / "dhcpd-secondary.pid", self.backup_lan_if, self.backup_if,
            name=f"dhcpdlbbackup{self.n}",
        )
        wait_for(lambda: "Server starting service." in read_log(self.backup_proc), timeout,
                 what="ISC secondary to start")

    def _grants(self, role: str) -> int:
        return isc_acks(read_log(self.proc if role == "main" else self.backup_proc))


SERVERS["cnrd-lb-pair"] = CnrdBalancedPair
SERVERS["isc-lb-pair"] = IscBalancedPair
