"""The servers under test, one class each, behind one face.

Every server is configured the same way (see bench/README.md): one pool for
the relayed client network ``Net``, lease time 3600 s, the same two options
(routers, domain-name-servers), durable lease storage:

* cnrd: its LMDB store (an fsync per batch of requests read in one turn);
* ISC dhcpd 4.4: ``ping-check false``, ``authoritative``, its lease file
  (an fsync per ACK);
* Kea 2.2 kea-dhcp4: memfile ``persist true``, ``lfc-interval 0``, UDP
  sockets (all traffic is relayed), multi-threading off (the 2.2 default,
  written out).  Memfile does no fsync.

Logging: none per lease where a server allows it.  cnrd runs with
``log-settings = no-success-messages`` (no lease line per successful
exchange; NAKs, DECLINEs and failover problems still appear), unless the run
keeps them (``RUN.cnrd_lease_lines``, bench.run ``--cnrd-lease-lines``); Kea
runs at WARN (at its shipped INFO level it logs every offer and allocation,
which halved its DORA rate here); ISC dhcpd cannot turn per-packet logging
off, and run in the foreground (``-d``) it writes it to its log file
(measured: the same rate as logging to nowhere).

Cores: ``RUN.cores`` is how many CPUs each server gets (bench.run
``--cores``).  Kea gets as many packet-processing threads (multi-threading on
from 2 cores; the HA pair is always multi-threaded); cnrd and ISC dhcpd run
as they are (one process each; cnrd's journal applier is a second process).

A server object is built by a factory from the ``SERVERS`` registry
(``SERVERS[name](net, preload=N)``) and used once::

    srv = SERVERS["isc"](THROUGHPUT_NET)
    srv.start(lab, ns, iface)        # returns once the process serves
    ... srv.pid, srv.pids(), srv.lease_count() ...
    srv.stop(); srv.cleanup()

``preload=N`` writes N leased records into the server's own store format
before the process starts (start-up measurements).  ``spawned_at`` is the
``time.monotonic()`` just before the process was spawned (after the store
was written), so a caller can time start-up against another process's
clock reading.  A later pair configuration ("cnrd-pair", "isc-pair") is one
more class with the same face — several processes, so ``pids()`` lists
them all — and one more registry entry.
"""

from __future__ import annotations

import csv
import datetime as _dt
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from bench import perf
from cnrd import __version__ as CNRD_VERSION
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import Lease, LeaseState
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.cnrd_proc import config as cnrd_config
from tests.integration.lab import Lab, Netns, isc_lease_states, read_log, wait_for

__all__ = [
    "KEA_LEASE4_HEADER",
    "LEASE_TIME",
    "LINK_PREFIX",
    "LOAD_IP",
    "RUN",
    "SERVERS",
    "SERVER_IP",
    "STARTUP_NET",
    "THROUGHPUT_NET",
    "BenchServer",
    "CnrdServer",
    "IscServer",
    "KeaServer",
    "Net",
    "RunOptions",
    "cnrd_server_lines",
    "kea_lease_count",
    "versions",
]

SERVER_IP = "10.1.0.1"  # the server's end of the veth
LOAD_IP = "10.1.0.3"  # the load generator's end
LINK_PREFIX = 24
LEASE_TIME = 3600
OPTIONS = {"routers": SERVER_IP, "domain-name-servers": SERVER_IP}

# The header kea-dhcp4 2.2.0 writes at the top of a memfile lease4 CSV
# (read from a file Kea wrote itself on this machine).
KEA_LEASE4_HEADER = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context"


@dataclass
class RunOptions:
    """What one bench run sets for every server it starts."""

    cores: int = 1  # CPUs each server gets (Kea: that many DHCP threads)
    cnrd_lease_lines: bool = False  # keep cnrd's lease line per exchange (its INFO default)


#: The options of the current run (bench.run sets them from its command line).
RUN = RunOptions()


def cnrd_server_lines(extra: str = "") -> str:
    """The [server] lines every bench cnrd gets: no lease line per successful
    exchange (the same per-lease logging as Kea at WARN, problems only)
    unless the run keeps them, then ``extra`` and CNRD_BENCH_SERVER_EXTRA
    (e.g. "commit-thread = true", to compare settings)."""
    env = os.environ.get("CNRD_BENCH_SERVER_EXTRA", "").replace("\\n", "\n")
    # a log-settings line given by hand replaces the bench's (an INI key appears once)
    own = "log-settings" in extra or "log-settings" in env
    lines = [] if RUN.cnrd_lease_lines or own else ["log-settings = no-success-messages"]
    lines += [t for t in (extra, env) if t]
    return "\n".join(lines)


@dataclass(frozen=True)
class Net:
    """A relayed client network: the subnet, its one pool, and the relay
    address (giaddr) the load generator uses inside it."""

    subnet: str
    pool_first: str
    pool_last: str
    giaddr: str

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def pool_size(self) -> int:
        return int(ipaddress.IPv4Address(self.pool_last)) - int(ipaddress.IPv4Address(self.pool_first)) + 1

    def pool_addresses(self, n: int) -> Iterator[int]:
        """The first n pool addresses (host-order ints)."""
        if n > self.pool_size:
            raise ValueError(f"{n} leases do not fit the pool {self.pool_first}-{self.pool_last}")
        first = int(ipaddress.IPv4Address(self.pool_first))
        return iter(range(first, first + n))


#: Throughput and latency runs: a /16 pool (65,265 addresses).
THROUGHPUT_NET = Net("10.8.0.0/16", "10.8.0.10", "10.8.255.250", "10.8.0.1")
#: Start-up runs: a /12 pool (1,048,557 addresses), big enough for a million leases.
STARTUP_NET = Net("10.16.0.0/12", "10.16.0.10", "10.31.255.250", "10.16.0.1")


def preload_mac(i: int) -> bytes:
    """The MAC of preloaded client number i (locally administered, distinct)."""
    return b"\x02\xbe" + i.to_bytes(4, "big")


def _ip(n: int) -> str:
    return str(ipaddress.IPv4Address(n))


_seq = itertools.count(1)


class BenchServer:
    """One server process (or, for pairs later, several) under test."""

    name = "?"

    def __init__(self, net: Net, *, preload: int = 0) -> None:
        self.net = net
        self.preload = preload
        self.n = next(_seq)
        self.lab: Lab | None = None
        self.ns: Netns | None = None
        self.iface: str | None = None
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.spawned_at: float | None = None  # time.monotonic() just before the spawn
        self.ready_at: float | None = None  # when start() saw the server's "serving" marker
        self.preload_s: float = 0.0  # time spent writing the preloaded store

    # -- the face -------------------------------------------------------------
    def start(self, lab: Lab, ns: Netns, iface: str, timeout: float = 60) -> "BenchServer":
        """Write config (and the preloaded store), start, return once serving."""
        self.lab, self.ns, self.iface = lab, ns, iface
        self.dir = lab.path(f"bench-{self.name}-{self.n}")
        self.dir.mkdir()
        self._configure()
        if self.preload:
            t0 = time.monotonic()
            self._write_store(self.preload, int(time.time()))
            self.preload_s = time.monotonic() - t0
        self.spawned_at = time.monotonic()
        self._spawn(timeout)
        self.ready_at = time.monotonic()
        return self

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after a while) by PID; returns the exit status."""
        if self.proc is None or self.ns is None:
            return None
        return self.ns.stop(self.proc, signal.SIGTERM, timeout=15)

    def cleanup(self) -> None:
        """Remove this server's files (big stores) once it is stopped."""
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def pids(self) -> list[int]:
        """Every process of this server: the one started and what it started
        (cnrd's journal applier), so all are pinned and counted alike."""
        return perf.with_descendants([self.pid])

    def lease_count(self) -> int:
        """Addresses currently leased, read from the server's durable store."""
        raise NotImplementedError

    def log(self) -> str:
        return read_log(self.proc) if self.proc is not None else ""

    # -- per server -------------------------------------------------------------
    def _configure(self) -> None:
        raise NotImplementedError

    def _write_store(self, n: int, now: int) -> None:
        raise NotImplementedError

    def _spawn(self, timeout: float) -> None:
        raise NotImplementedError

    def _wait_marker(self, marker: str, timeout: float) -> None:
        proc = self.proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {proc.returncode}:\n{read_log(proc)[-3000:]}")
            return marker in read_log(proc)

        wait_for(ready, timeout, interval=0.02, what=f"{self.name} to serve ({marker!r})")


# ------------------------------------------------------------------------------
# cnrd
# ------------------------------------------------------------------------------


class CnrdServer(BenchServer):
    """``twistd -n cnrd`` through tests/integration/cnrd_proc.CnrdProcess."""

    name = "cnrd"
    scope = "bench"

    def _configure(self) -> None:
        assert self.ns is not None and self.iface is not None
        scopes = f"""
[scope {self.scope}]
subnet = {self.net.subnet}
ranges = {self.net.pool_first}-{self.net.pool_last}
"""
        # config() sets lease-time 3600 and the same routers / name servers.
        self.cp = CnrdProcess(self.ns, cnrd_config(self.iface, scopes, cnrd_server_lines()), name=f"cnrd{self.n}")

    def _write_store(self, n: int, now: int) -> None:
        store = LmdbLeaseStore(str(self.cp.data_dir))
        try:
            batch: list[Lease] = []
            for i, addr in enumerate(self.net.pool_addresses(n)):
                batch.append(Lease(
                    address=addr, state=LeaseState.LEASED, scope=self.scope,
                    hw=b"\x01" + preload_mac(i), start=now, expiration=now + LEASE_TIME,
                    cltt=now, potential_expiration=now + LEASE_TIME,
                ))
                if len(batch) >= 50000:
                    store.commit(batch)
                    batch = []
            if batch:
                store.commit(batch)
        finally:
            store.close()

    def _spawn(self, timeout: float) -> None:
        self.cp.start(timeout=timeout)
        self.proc = self.cp.proc

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return self.cp.stop()

    def lease_count(self) -> int:
        return sum(1 for lease in self.cp.leases() if lease.state is LeaseState.LEASED)

    def cleanup(self) -> None:
        super().cleanup()
        if getattr(self, "cp", None) is not None:
            shutil.rmtree(self.cp.data_dir, ignore_errors=True)


# ------------------------------------------------------------------------------
# ISC dhcpd 4.4
# ------------------------------------------------------------------------------


def _isc_time(t: int) -> str:
    d = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    return f"{(d.weekday() + 1) % 7} {d:%Y/%m/%d %H:%M:%S}"


class IscServer(BenchServer):
    """``dhcpd -4 -f -d -cf CONF -lf LEASES -pf PID IFACE`` (lab-notes command)."""

    name = "isc"

    def _configure(self) -> None:
        assert self.dir is not None
        net, link = self.net.network, ipaddress.IPv4Network(f"{SERVER_IP}/{LINK_PREFIX}", strict=False)
        self.conf_file = self.dir / "dhcpd.conf"
        self.lease_file = self.dir / "dhcpd.leases"
        self.pid_file = self.dir / "dhcpd.pid"
        self.conf_file.write_text(f"""\
ping-check false;
authoritative;
ddns-update-style none;
default-lease-time {LEASE_TIME};
max-lease-time {LEASE_TIME};
option routers {OPTIONS['routers']};
option domain-name-servers {OPTIONS['domain-name-servers']};

subnet {link.network_address} netmask {link.netmask} {{
}}

subnet {net.network_address} netmask {net.netmask} {{
  range {self.net.pool_first} {self.net.pool_last};
}}
""")
        self.lease_file.touch()

    def _write_store(self, n: int, now: int) -> None:
        starts, ends = _isc_time(now), _isc_time(now + LEASE_TIME)
        with open(self.lease_file, "w") as f:
            f.write("# written by bench.servers for a start-up benchmark\n"
                    "authoring-byte-order little-endian;\n\n")
            chunk: list[str] = []
            for i, addr in enumerate(self.net.pool_addresses(n)):
                chunk.append(
                    f"lease {_ip(addr)} {{\n  starts {starts};\n  ends {ends};\n  cltt {starts};\n"
                    "  binding state active;\n  next binding state free;\n  rewind binding state free;\n"
                    f"  hardware ethernet {preload_mac(i).hex(':')};\n}}\n"
                )
                if len(chunk) >= 20000:
                    f.write("".join(chunk))
                    chunk = []
            f.write("".join(chunk))

    def _spawn(self, timeout: float) -> None:
        assert self.ns is not None
        self.proc = self.ns.popen(
            "dhcpd", "-4", "-f", "-d", "-cf", self.conf_file, "-lf", self.lease_file,
            "-pf", self.pid_file, self.iface, name=f"dhcpd{self.n}",
        )
        self._wait_marker("Server starting service.", timeout)

    def lease_count(self) -> int:
        return sum(1 for state in isc_lease_states(self.lease_file).values() if state == "active")


# ------------------------------------------------------------------------------
# Kea 2.2 kea-dhcp4
# ------------------------------------------------------------------------------


class KeaServer(BenchServer):
    """``kea-dhcp4 -c CONF`` after ``kea-dhcp4 -t CONF``, with KEA_PIDFILE_DIR
    and KEA_LOCKFILE_DIR in its own directory."""

    name = "kea"
    subnet_id = 1
    log_severity = "WARN"

    def multi_threading(self) -> dict:
        """Kea's ``multi-threading`` map: off on one core (2.2's default), else
        one packet-processing thread per core."""
        if RUN.cores < 2:
            return {"enable-multi-threading": False}
        return {"enable-multi-threading": True, "thread-pool-size": RUN.cores, "packet-queue-size": 64}

    def dhcp4(self, iface: str, lease_file: Path) -> dict:
        """The ``Dhcp4`` map of a bench Kea serving ``iface``, leases in ``lease_file``."""
        return {
            "interfaces-config": {"interfaces": [iface], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "persist": True, "name": str(lease_file),
                               "lfc-interval": 0},
            "multi-threading": self.multi_threading(),
            "valid-lifetime": LEASE_TIME,
            "subnet4": [{
                "id": self.subnet_id,
                "subnet": self.net.subnet,
                "pools": [{"pool": f"{self.net.pool_first} - {self.net.pool_last}"}],
                "option-data": [{"name": k, "data": v} for k, v in OPTIONS.items()],
            }],
            # WARN, like cnrd, logs nothing per lease (Kea's INFO logs every
            # offer and allocation); kea-dhcp4.dhcp4 at INFO only says
            # DHCP4_STARTED and the like, which start() waits for.
            "loggers": [
                {"name": "kea-dhcp4", "severity": self.log_severity,
                 "output_options": [{"output": "stdout"}]},
                {"name": "kea-dhcp4.dhcp4", "severity": "INFO",
                 "output_options": [{"output": "stdout"}]},
            ],
        }

    def _configure(self) -> None:
        assert self.dir is not None and self.iface is not None
        self.conf_file = self.dir / "kea-dhcp4.conf"
        self.lease_file = self.dir / "kea-leases4.csv"
        self.env = {"KEA_PIDFILE_DIR": str(self.dir), "KEA_LOCKFILE_DIR": str(self.dir)}
        self.conf_file.write_text(json.dumps({"Dhcp4": self.dhcp4(self.iface, self.lease_file)}, indent=2))

    def _write_store(self, n: int, now: int) -> None:
        expire = now + LEASE_TIME
        with open(self.lease_file, "w") as f:
            f.write(KEA_LEASE4_HEADER + "\n")
            chunk: list[str] = []
            for i, addr in enumerate(self.net.pool_addresses(n)):
                chunk.append(f"{_ip(addr)},{preload_mac(i).hex(':')},,{LEASE_TIME},{expire},"
                             f"{self.subnet_id},0,0,,0,\n")
                if len(chunk) >= 20000:
                    f.write("".join(chunk))
                    chunk = []
            f.write("".join(chunk))

    def _spawn(self, timeout: float) -> None:
        assert self.ns is not None
        self.ns.run("kea-dhcp4", "-t", self.conf_file, env=self.env, timeout=60)
        self.proc = self.ns.popen("kea-dhcp4", "-c", self.conf_file, env=self.env, name=f"kea{self.n}")
        self._wait_marker("DHCP4_STARTED", timeout)

    def lease_count(self) -> int:
        return kea_lease_count(self.lease_file)


def kea_lease_count(lease_file: Path, now: float | None = None) -> int:
    """Leases in a Kea memfile lease4 CSV: state default (0), unexpired, by
    the last line per address (memfile appends every change)."""
    if not lease_file.exists():
        return 0
    now = time.time() if now is None else now
    last: dict[str, tuple[str, str, str]] = {}
    with open(lease_file, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("address") is None or row.get("state") is None:
                continue  # a line being written as we read
            last[row["address"]] = (row["valid_lifetime"], row["expire"], row["state"])
    return sum(1 for vl, exp, st in last.values()
               if st == "0" and (vl or "0").isdigit() and (exp or "0").isdigit()
               and int(vl or 0) > 0 and int(exp or 0) > now)


#: name -> factory(net, preload=0) -> BenchServer.  Pairs go here later.
SERVERS: dict[str, Callable[..., BenchServer]] = {
    "cnrd": CnrdServer,
    "isc": IscServer,
    "kea": KeaServer,
}


def versions() -> dict[str, str]:
    """Versions of the servers and of perfdhcp on this machine."""
    def out(*argv: str) -> str:
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unavailable ({e})"
        return (cp.stdout + cp.stderr).strip().splitlines()[0] if (cp.stdout + cp.stderr).strip() else ""

    return {
        "cnrd": CNRD_VERSION,
        "isc": out("dhcpd", "--version"),
        "kea": out("kea-dhcp4", "-v"),
        "perfdhcp": out("perfdhcp", "-v").replace("VERSION: ", ""),
    }
