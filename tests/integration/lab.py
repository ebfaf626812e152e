"""Network-namespace labs for integration tests and demos.

A :class:`Lab` creates network namespaces, bridges and veth pairs whose names
are unique to the run, starts processes inside them and destroys all of it on
``close()`` / ``__exit__`` (and at interpreter exit), even after errors::

    with Lab() as lab:
        srv, cli = lab.netns("srv"), lab.netns("cli")
        br = lab.bridge(srv, "br0")
        lab.link(srv, cli, a_bridge=br)             # srv side on the bridge
        ...
        dhcpd = isc_dhcpd(srv, CONF, br)
        lease = dhclient(cli, cli_if)
        assert lease.address == "10.66.0.100"

Client helpers (``dhclient``, ``udhcpc``, ``dhcpcd``, ``perfdhcp``) are bounded
by timeouts and keep their lease/pid/hook files in the lab's temp dir; the
command lines and output formats are those in shared/docs/lab-notes.md.
Needs root, iproute2 and the packages that scripts/setup installs.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = [
    "Lab",
    "Netns",
    "LabCommandError",
    "Lease",
    "PerfResult",
    "ExchangeStats",
    "wait_for",
    "read_log",
    "dhclient",
    "dhclient_renew",
    "dhclient_release",
    "udhcpc",
    "udhcpc_release",
    "dhcpcd",
    "perfdhcp",
    "parse_perfdhcp",
    "random_mac_base",
    "dhcrelay",
    "isc_dhcpd",
    "isc_lease_states",
    "REQUIRED_BINARIES",
    "missing_requirements",
]

IFNAMSIZ = 15  # usable characters in a Linux interface name
DHCPCD_LEASE_DIR = Path("/var/lib/dhcpcd")

#: Programs the lab and its client helpers drive (all from scripts/setup).
REQUIRED_BINARIES = (
    "ip",
    "bridge",
    "dhclient",
    "udhcpc",
    "dhcpcd",
    "perfdhcp",
    "dhcrelay",
    "dhcpd",
)

_LOG = object()  # sentinel: send a process's output to a log file in the lab dir


def missing_requirements(binaries: Iterable[str] = REQUIRED_BINARIES) -> list[str]:
    """What is missing on this machine to run labs: root and the binaries."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (euid 0)")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for b in binaries:
        if shutil.which(b, path=path) is None:
            missing.append(b)
    return missing


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------


class LabCommandError(subprocess.CalledProcessError):
    """A lab command failed; str() includes its output."""

    def __str__(self) -> str:
        out = (self.stdout or "").strip()
        err = (self.stderr or "").strip()
        text = super().__str__()
        if out:
            text += f"\n--- stdout ---\n{out}"
        if err:
            text += f"\n--- stderr ---\n{err}"
        return text


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
):
    """Poll ``predicate`` until it returns something truthy and return that.

    Raises AssertionError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def read_log(proc: subprocess.Popen) -> str:
    """The output so far of a process started with ``Netns.popen`` (log file)."""
    path = getattr(proc, "log_path", None)
    if path is None:
        raise ValueError("process has no log file (started with explicit stdout?)")
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (PID 1 here is slow to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the first field after the parenthesised comm
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def _pid_comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def random_mac_base() -> str:
    """A random locally administered unicast MAC, e.g. for perfdhcp ``-b mac=``.

    The last two octets are zero so perfdhcp's sequential MACs stay in range.
    """
    b = secrets.token_bytes(4)
    first = (b[0] | 0x02) & 0xFE
    return ":".join(f"{x:02x}" for x in (first, b[1], b[2], b[3], 0, 0))


# --------------------------------------------------------------------------
# Netns and Lab
# --------------------------------------------------------------------------


class Netns:
    """One network namespace of a lab. Create it with :meth:`Lab.netns`."""

    def __init__(self, lab: "Lab", role: str, name: str) -> None:
        self.lab = lab
        self.role = role
        self.name = name

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def _argv(self, argv: Sequence[object]) -> list[str]:
        if not argv:
            raise ValueError("empty command")
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    @staticmethod
    def _env(env):
        return None if env is None else {**os.environ, **{k: str(v) for k, v in env.items()}}

    def run(
        self,
        *argv,
        timeout: float = 30,
        check: bool = True,
        env=None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``ip netns exec NAME argv...`` to completion, capturing text output.

        ``env`` entries are added to the current environment. On timeout the
        program is killed and subprocess.TimeoutExpired is raised. With
        ``check`` a non-zero exit raises LabCommandError (output included).
        """
        cmd = self._argv(argv)
        cp = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=self._env(env),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and cp.returncode != 0:
            raise LabCommandError(cp.returncode, cmd, cp.stdout, cp.stderr)
        return cp

    def popen(
        self,
        *argv,
        stdout=_LOG,
        stderr=subprocess.STDOUT,
        env=None,
        name: str | None = None,
    ) -> subprocess.Popen:
        """Start ``ip netns exec NAME argv...`` in the background.

        ``ip netns exec`` execs the program, so ``proc.pid`` is the program's.
        By default stdout and stderr go to a log file in the lab dir
        (``proc.log_path``; read it with :func:`read_log`), so a chatty daemon
        can never block on a full pipe. The process is registered with the
        lab: ``close()`` stops it.
        """
        cmd = self._argv(argv)
        log_path = None
        log_file = None
        if stdout is _LOG:
            label = name or Path(str(argv[0])).name
            log_path = self.lab.path(f"{self.role}-{label}-{self.lab._next('log')}.log")
            log_file = open(log_path, "wb")
            stdout = log_file
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=self._env(env),
            )
        finally:
            if log_file is not None:
                log_file.close()
        proc.log_path = log_path  # type: ignore[attr-defined]
        proc.netns = self  # type: ignore[attr-defined]
        self.lab._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> int:
        """Send ``sig`` to proc (by PID), wait ``timeout`` s, then SIGKILL.

        Returns the exit status (negative for a signal, as Popen does).
        """
        return self.lab._stop_proc(proc, sig, timeout)

    # -- conveniences ------------------------------------------------------

    def ipv4_addresses(self, iface: str) -> list[str]:
        """The IPv4 addresses ('a.b.c.d/len') on iface in this namespace."""
        cp = subprocess.run(
            ["ip", "-n", self.name, "-j", "-4", "addr", "show", "dev", iface],
            capture_output=True, text=True, check=True,
        )
        out = []
        for link in json.loads(cp.stdout or "[]"):
            for a in link.get("addr_info", []):
                out.append(f"{a['local']}/{a['prefixlen']}")
        return out

    def mac(self, iface: str) -> str:
        cp = subprocess.run(
            ["ip", "-n", self.name, "-j", "link", "show", "dev", iface],
            capture_output=True, text=True, check=True,
        )
        return json.loads(cp.stdout)[0]["address"]

    def pids(self) -> list[int]:
        """PIDs of all processes in this namespace (``ip netns pids``)."""
        cp = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True
        )
        return [int(x) for x in cp.stdout.split() if x.isdigit()]


class Lab:
    """Builds a throw-away network of namespaces; a context manager.

    Everything it creates (namespaces with their veths and bridges, processes,
    temp files, dhcpcd lease files) is destroyed by close(), which __exit__
    and an atexit hook call. Set CNRD_LAB_KEEP=1 to keep the temp dir.
    """

    def __init__(self, prefix: str | None = None) -> None:
        if prefix is None:
            existing = set(_list_netns())
            while True:
                prefix = "c" + secrets.token_hex(3)[:5]
                if not any(n.startswith(prefix + "-") for n in existing):
                    break
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,9}", prefix):
            raise ValueError(f"lab prefix must be 1-10 alphanumerics starting with a letter: {prefix!r}")
        self.tag = prefix
        self.dir = Path(tempfile.mkdtemp(prefix=f"cnrd-lab-{prefix}-"))
        self._namespaces: list[Netns] = []
        self._procs: list[subprocess.Popen] = []
        self._pids: list[tuple[int, str | None, Path | None]] = []  # (pid, comm, pidfile)
        self._files: list[Path] = []
        self._counters: dict[str, int] = {}
        self._closed = False
        atexit.register(self.close)

    # -- context manager ---------------------------------------------------

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({self.tag!r}, namespaces={[n.name for n in self._namespaces]})"

    # -- helpers -----------------------------------------------------------

    def _next(self, kind: str) -> int:
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return n

    def path(self, name: str) -> Path:
        """A path in this lab's private temp dir."""
        return self.dir / name

    def ifname(self, hint: str = "v") -> str:
        """A fresh interface name unique to this run (<= 15 characters)."""
        name = f"{self.tag}{hint}{self._next('if')}"
        if len(name) > IFNAMSIZ:
            raise ValueError(f"interface name too long: {name!r}")
        return name

    def track_pid(self, pid: int, comm: str | None = None, pidfile: Path | None = None) -> None:
        """Stop ``pid`` at close() (a daemon that forked away from us).

        ``comm`` guards against PID reuse: the PID is only signalled while
        /proc/PID/comm still equals it. With ``pidfile`` the PID named in the
        file at close() is stopped as well.
        """
        self._pids.append((pid, comm, pidfile))

    def track_file(self, path: Path | str) -> None:
        """Delete ``path`` at close() (a file a tool writes outside the lab dir)."""
        self._files.append(Path(path))

    # -- building ----------------------------------------------------------

    def netns(self, role: str, *, ipv6: bool = False) -> Netns:
        """Create namespace ``{tag}-{role}`` with lo up.

        IPv6 is disabled in it unless ``ipv6`` (less noise in captures).
        """
        self._check_open()
        if not re.fullmatch(r"[A-Za-z0-9_.]+", role):
            raise ValueError(f"bad role {role!r}")
        name = f"{self.tag}-{role}"
        if any(n.name == name for n in self._namespaces):
            raise ValueError(f"namespace {name} already exists in this lab")
        _ip("netns", "add", name)
        ns = Netns(self, role, name)
        self._namespaces.append(ns)
        _ip("-n", name, "link", "set", "lo", "up")
        if not ipv6:
            subprocess.run(
                ["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                 "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1"],
                capture_output=True,
            )
        return ns

    def bridge(self, ns: Netns, name: str, *, addr: str | None = None) -> str:
        """Create an up Linux bridge (STP off: ports forward at once) in ns."""
        self._check_open()
        if len(name) > IFNAMSIZ:
            raise ValueError(f"bridge name too long: {name!r}")
        _ip("-n", ns.name, "link", "add", name, "type", "bridge",
            "stp_state", "0", "forward_delay", "0")
        if addr:
            _ip("-n", ns.name, "addr", "add", addr, "dev", name)
        _ip("-n", ns.name, "link", "set", name, "up")
        return name

    def link(
        self,
        a: Netns,
        b: Netns,
        *,
        a_addr: str | None = None,
        b_addr: str | None = None,
        a_bridge: str | None = None,
        b_bridge: str | None = None,
        b_mac: str | None = None,
        a_mac: str | None = None,
    ) -> tuple[str, str]:
        """A veth pair between a and b (both ends up); returns (if_in_a, if_in_b).

        Each end optionally gets an address ('a.b.c.d/len'), is enslaved to a
        bridge in its namespace, or gets a MAC.
        """
        self._check_open()
        n = self._next("veth")
        a_if, b_if = f"{self.tag}v{n}a", f"{self.tag}v{n}b"
        if len(b_if) > IFNAMSIZ:
            raise ValueError(f"interface name too long: {b_if!r}")
        _ip("link", "add", a_if, "netns", a.name, "type", "veth",
            "peer", "name", b_if, "netns", b.name)
        for ns, ifname, addr, br, mac in (
            (a, a_if, a_addr, a_bridge, a_mac),
            (b, b_if, b_addr, b_bridge, b_mac),
        ):
            if mac:
                _ip("-n", ns.name, "link", "set", ifname, "address", mac)
            if br:
                _ip("-n", ns.name, "link", "set", ifname, "master", br)
            if addr:
                ipaddress.ip_interface(addr)  # validate early, clear error
                _ip("-n", ns.name, "addr", "add", addr, "dev", ifname)
            _ip("-n", ns.name, "link", "set", ifname, "up")
        return a_if, b_if

    def isolate(self, ns: Netns, port: str, on: bool = True) -> None:
        """Set a bridge port ``isolated on|off`` (isolated ports can't talk)."""
        ns.run("bridge", "link", "set", "dev", port, "isolated", "on" if on else "off")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("lab is closed")

    # -- teardown ----------------------------------------------------------

    def _stop_proc(self, proc: subprocess.Popen, sig: int, timeout: float) -> int:
        if proc.poll() is None:
            _kill_pid(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_pid(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def _stop_pid(self, pid: int, comm: str | None, timeout: float = 5) -> None:
        def ours() -> bool:
            return _pid_alive(pid) and (comm is None or _pid_comm(pid) == comm)

        if not ours():
            return
        _kill_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not ours():
                return
            time.sleep(0.05)
        if ours():
            _kill_pid(pid, signal.SIGKILL)

    def describe(self) -> str:
        """Logs of the lab's processes and its namespaces' addresses (debugging)."""
        parts = [repr(self), f"dir: {self.dir}"]
        for ns in self._namespaces:
            cp = subprocess.run(["ip", "-n", ns.name, "-br", "addr"], capture_output=True, text=True)
            parts.append(f"--- {ns.name} addresses ---\n{cp.stdout.strip()}")
        if self.dir.exists():
            for log in sorted(self.dir.glob("*.log")):
                text = log.read_text(errors="replace")
                if len(text) > 4000:
                    text = "...\n" + text[-4000:]
                parts.append(f"--- {log.name} ---\n{text.strip()}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every process, delete every namespace and temp file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover - interpreter shutting down
            pass
        errors: list[str] = []

        # 1. processes we started, newest first (clients before servers)
        for proc in reversed(list(self._procs)):
            try:
                self._stop_proc(proc, signal.SIGTERM, 5)
            except Exception as e:  # keep going whatever happens
                errors.append(f"stopping pid {proc.pid}: {e!r}")
        # 2. daemons that forked away (dhclient), by PID and PID file
        for pid, comm, pidfile in self._pids:
            try:
                self._stop_pid(pid, comm)
                if pidfile is not None:
                    other = _read_pidfile(pidfile)
                    if other and other != pid:
                        self._stop_pid(other, comm)
            except Exception as e:
                errors.append(f"stopping pid {pid}: {e!r}")
        # 3. anything else still inside our (uniquely named) namespaces,
        #    e.g. helpers the clients spawned; then the namespaces themselves,
        #    which takes their veths and bridges with them
        for ns in reversed(self._namespaces):
            try:
                leftovers = [p for p in ns.pids() if _pid_alive(p)]
                for p in leftovers:
                    errors.append(f"{ns.name}: process {p} ({_pid_comm(p)}) was still running")
                    self._stop_pid(p, _pid_comm(p), timeout=2)
            except Exception as e:
                errors.append(f"sweeping {ns.name}: {e!r}")
            cp = subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, text=True)
            if cp.returncode != 0 and ns.name in _list_netns():
                errors.append(f"ip netns del {ns.name}: {cp.stderr.strip()}")
        # 4. files
        for path in self._files:
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                errors.append(f"removing {path}: {e!r}")
        if os.environ.get("CNRD_LAB_KEEP") == "1":
            print(f"lab {self.tag}: kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        # leftovers are worth a warning, never an exception that would hide
        # the test's own failure
        for e in errors:
            warnings.warn(f"lab {self.tag} cleanup: {e}", RuntimeWarning, stacklevel=2)


def _ip(*args: str) -> None:
    cmd = ["ip", *args]
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        raise LabCommandError(cp.returncode, cmd, cp.stdout, cp.stderr)


def _list_netns() -> list[str]:
    cp = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------
# DHCP clients
# --------------------------------------------------------------------------


@dataclass
class Lease:
    """What a client run got. ``address`` is None when it got no lease."""

    client: str
    iface: str
    address: str | None
    server: str | None = None
    lease_time: int | None = None
    released: str | None = None  # address a release was sent for
    returncode: int | None = None
    timed_out: bool = False
    output: str = ""
    argv: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.address is not None


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _run_client(
    ns: Netns,
    name: str,
    argv: Sequence[object],
    timeout: float,
    strays: str | None = None,
) -> tuple[int | None, bool, str, list[str]]:
    """Run a client to completion with output to a file (a client that forks
    to the background may keep inherited pipes open).

    After a timeout or a failure, processes named ``name`` in ns whose command
    line contains ``strays`` are stopped: dhclient forks before it is bound
    and dhcpcd leaves privilege-separation helpers when killed.
    """
    log = ns.lab.path(f"{ns.role}-{name}-{ns.lab._next('log')}.log")
    cmd = ns._argv(argv)
    with open(log, "wb") as f:
        try:
            cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, timeout=timeout)
            rc, timed_out = cp.returncode, False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    if strays and (timed_out or rc != 0):
        for pid in ns.pids():
            if _pid_comm(pid) == name and strays in _pid_cmdline(pid):
                ns.lab._stop_pid(pid, name, timeout=2)
    return rc, timed_out, log.read_text(errors="replace"), cmd


def _fail(lease: Lease, what: str) -> None:
    raise AssertionError(
        f"{lease.client} on {lease.iface}: {what} "
        f"(rc={lease.returncode}, timed_out={lease.timed_out})\n"
        f"$ {' '.join(lease.argv)}\n{lease.output.strip()}"
    )


_DHCLIENT_HOOK = """#!/bin/sh
# dhclient -sf hook generated by tests/integration/lab.py: it only adds and
# removes the leased address on {iface}; never touches resolv.conf or routes.
[ "$interface" = "{iface}" ] || exit 0
addr_del() {{
    [ -n "$1" ] && ip -4 addr del "$1/${{2:-255.255.255.255}}" dev {iface} 2>/dev/null
    return 0
}}
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
        addr_del "$old_ip_address" "$old_subnet_mask"
    fi
    ip -4 addr replace "$new_ip_address/${{new_subnet_mask:-255.255.255.255}}" dev {iface}
    ;;
EXPIRE|RELEASE|FAIL|STOP)
    addr_del "$old_ip_address" "$old_subnet_mask"
    ;;
esac
exit 0
"""


def _dhclient_files(ns: Netns, iface: str) -> tuple[Path, Path, Path]:
    base = f"dhclient-{ns.role}-{iface}"
    lf, pf, hook = (ns.lab.path(base + s) for s in (".leases", ".pid", ".hook"))
    if not hook.exists():
        hook.write_text(_DHCLIENT_HOOK.format(iface=iface))
        hook.chmod(0o755)
    return lf, pf, hook


def _parse_dhclient(lease: Lease) -> Lease:
    out = lease.output
    if m := re.search(r"^bound to (\d+\.\d+\.\d+\.\d+) -- renewal in (\d+) seconds", out, re.M):
        lease.address = m.group(1)
        acks = re.findall(r"^DHCPACK of (\S+) from (\S+)", out, re.M)
        if acks:
            lease.server = acks[-1][1]
    if m := re.search(r"^DHCPRELEASE of (\S+) on \S+ to (\S+)", out, re.M):
        lease.released = m.group(1)
        lease.server = m.group(2)
    return lease


def _dhclient_run(ns: Netns, iface: str, extra: Sequence[str], timeout: float) -> Lease:
    lf, pf, hook = _dhclient_files(ns, iface)
    argv = ["dhclient", "-4", "-1", "-v", *extra, "-lf", lf, "-pf", pf, "-sf", hook, iface]
    rc, timed_out, out, cmd = _run_client(ns, "dhclient", argv, timeout, strays=str(lf))
    lease = _parse_dhclient(Lease("dhclient", iface, None, returncode=rc,
                                  timed_out=timed_out, output=out, argv=cmd))
    # once bound, dhclient forks to the background: track it by its PID file
    pid = _read_pidfile(pf)
    if pid:
        ns.lab.track_pid(pid, "dhclient", pf)
    return lease


def _dhclient_stop_daemon(ns: Netns, iface: str) -> None:
    _, pf, _ = _dhclient_files(ns, iface)
    pid = _read_pidfile(pf)
    if pid:
        ns.lab._stop_pid(pid, "dhclient")


def dhclient(ns: Netns, iface: str, timeout: float = 20, *, check: bool = True) -> Lease:
    """ISC dhclient: DISCOVER..ACK on iface; the address goes on iface.

    ``dhclient -4 -1 -v -lf LEASES -pf PID -sf HOOK IFACE``; exits 0 once
    bound, leaving a daemon (tracked by its PID file, stopped at close()).
    With ``check`` a failure raises AssertionError with the output.
    """
    lease = _dhclient_run(ns, iface, (), timeout)
    if check and not lease.ok:
        _fail(lease, "got no lease")
    return lease


def dhclient_renew(ns: Netns, iface: str, timeout: float = 20, *, check: bool = True) -> Lease:
    """Restart dhclient with the same lease file: it sends a REQUEST for the
    address it holds (INIT-REBOOT) and, once ACKed, reports it bound again.

    The previous dhclient daemon on iface is stopped first (a second
    dhclient does not replace it by itself).
    """
    _dhclient_stop_daemon(ns, iface)
    lease = _dhclient_run(ns, iface, (), timeout)
    if check and not lease.ok:
        _fail(lease, "renewal failed")
    return lease


def dhclient_release(ns: Netns, iface: str, timeout: float = 20, *, check: bool = True) -> Lease:
    """``dhclient -r`` with the same files: stops the daemon, sends DHCPRELEASE
    and removes the address from iface. ``released`` names the address."""
    lease = _dhclient_run(ns, iface, ("-r",), timeout)
    lease.address = None
    if check and (lease.returncode != 0 or lease.released is None):
        _fail(lease, "release failed")
    return lease


_UDHCPC_HOOK = """#!/bin/sh
# udhcpc -s hook generated by tests/integration/lab.py: it only sets the
# leased address on {iface}; never touches resolv.conf or routes.
[ "$interface" = "{iface}" ] || exit 0
case "$1" in
deconfig) ip -4 addr flush dev {iface} ;;
bound|renew) ip -4 addr replace "$ip/${{mask:-32}}" dev {iface} ;;
esac
exit 0
"""


def _udhcpc_hook(ns: Netns, iface: str) -> Path:
    hook = ns.lab.path(f"udhcpc-{ns.role}-{iface}.hook")
    if not hook.exists():
        hook.write_text(_UDHCPC_HOOK.format(iface=iface))
        hook.chmod(0o755)
    return hook


def _parse_udhcpc(lease: Lease) -> Lease:
    out = lease.output
    if m := re.search(r"lease of (\S+) obtained from (\S+?),? lease time (\d+)", out):
        lease.address, lease.server, lease.lease_time = m.group(1), m.group(2), int(m.group(3))
    elif m := re.search(r"lease of (\S+) obtained", out):
        lease.address = m.group(1)
    if m := re.search(r"(?:unicasting|broadcasting) a release of (\S+)", out):
        lease.released = m.group(1)
    return lease


def udhcpc(
    ns: Netns, iface: str, timeout: float = 20, *, check: bool = True, extra: Sequence[str] = ()
) -> Lease:
    """busybox udhcpc, one shot: ``udhcpc -f -q -n -t 3 -T 2 -i IFACE -s HOOK``.

    The hook puts the address on iface. ``extra`` goes before ``-i``.
    """
    hook = _udhcpc_hook(ns, iface)
    argv = ["udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "2", *extra, "-i", iface, "-s", hook]
    rc, timed_out, out, cmd = _run_client(ns, "udhcpc", argv, timeout)
    lease = _parse_udhcpc(Lease("udhcpc", iface, None, returncode=rc,
                                timed_out=timed_out, output=out, argv=cmd))
    if check and not lease.ok:
        _fail(lease, "got no lease")
    return lease


def udhcpc_release(ns: Netns, iface: str, timeout: float = 20, *, check: bool = True) -> Lease:
    """Get a lease with ``udhcpc -f -R ...`` and release it: busybox 1.35 only
    sends the DHCPRELEASE when the running client gets SIGTERM (``-q -R``
    does not). ``address`` is the lease obtained, ``released`` what was
    released."""
    hook = _udhcpc_hook(ns, iface)
    argv = ["udhcpc", "-f", "-R", "-t", "3", "-T", "2", "-i", iface, "-s", hook]
    proc = ns.popen(*argv, name="udhcpc")
    lease = Lease("udhcpc", iface, None, argv=list(proc.args))
    try:
        wait_for(lambda: proc.poll() is not None or "obtained" in read_log(proc)
                 or "failed" in read_log(proc),
                 timeout, what=f"udhcpc lease on {iface}")
    except AssertionError:
        lease.timed_out = True
    lease.returncode = ns.stop(proc, signal.SIGTERM, timeout=5)
    lease.output = read_log(proc)
    _parse_udhcpc(lease)
    if check and (lease.address is None or lease.released is None):
        _fail(lease, "lease or release failed")
    return lease


def dhcpcd(
    ns: Netns,
    iface: str,
    timeout: float = 20,
    *,
    check: bool = True,
    fresh: bool = True,
    extra: Sequence[str] = (),
) -> Lease:
    """dhcpcd 9 one shot: ``dhcpcd -1 -4 -B -A -f /dev/null -c /bin/true IFACE``.

    dhcpcd keeps /var/lib/dhcpcd/IFACE.lease (removed at close()). With
    ``fresh`` it is removed first so dhcpcd sends a DISCOVER; keep it
    (fresh=False) to see an INIT-REBOOT REQUEST. dhcpcd identifies itself
    with a DUID client-id, not the MAC.
    """
    lease_file = DHCPCD_LEASE_DIR / f"{iface}.lease"
    ns.lab.track_file(lease_file)
    if fresh:
        lease_file.unlink(missing_ok=True)
    argv = ["dhcpcd", "-1", "-4", "-B", "-A", "-f", "/dev/null", "-c", "/bin/true", *extra, iface]
    rc, timed_out, out, cmd = _run_client(ns, "dhcpcd", argv, timeout, strays=iface)
    lease = Lease("dhcpcd", iface, None, returncode=rc, timed_out=timed_out, output=out, argv=cmd)
    if m := re.search(rf"^{re.escape(iface)}: leased (\S+) for (\d+) seconds", out, re.M):
        lease.address, lease.lease_time = m.group(1), int(m.group(2))
    if m := re.search(rf"^{re.escape(iface)}: offered \S+ from (\S+)", out, re.M):
        lease.server = m.group(1)
    if check and not lease.ok:
        _fail(lease, "got no lease")
    return lease


# --------------------------------------------------------------------------
# perfdhcp
# --------------------------------------------------------------------------


@dataclass
class ExchangeStats:
    """One '***Statistics for: X***' block of perfdhcp's output."""

    sent: int = 0
    received: int = 0
    drops: int = 0
    drops_ratio: float | None = None  # percent
    orphans: int = 0
    rejected_leases: int = 0
    non_unique_addresses: int = 0
    min_delay_ms: float | None = None
    avg_delay_ms: float | None = None
    max_delay_ms: float | None = None


@dataclass
class PerfResult:
    """Parsed perfdhcp -4 output; ``raw`` is the whole text."""

    raw: str
    returncode: int | None
    argv: list[str]
    rate: float | None = None  # achieved 4-way exchanges/second
    expected_rate: float | None = None
    malformed: int | None = None
    exchanges: dict[str, ExchangeStats] = field(default_factory=dict)

    @property
    def do(self) -> ExchangeStats:
        """DISCOVER-OFFER exchanges."""
        return self.exchanges.get("DISCOVER-OFFER", ExchangeStats())

    @property
    def ra(self) -> ExchangeStats:
        """REQUEST-ACK exchanges."""
        return self.exchanges.get("REQUEST-ACK", ExchangeStats())

    @property
    def sent(self) -> int:
        return sum(e.sent for e in self.exchanges.values())

    @property
    def received(self) -> int:
        return sum(e.received for e in self.exchanges.values())

    @property
    def drops(self) -> int:
        return sum(e.drops for e in self.exchanges.values())


def _num(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return None if v != v or v in (float("inf"), float("-inf")) else v  # nan/inf -> None


_STAT_KEYS = {
    "sent packets": ("sent", int),
    "received packets": ("received", int),
    "drops": ("drops", int),
    "drops ratio": ("drops_ratio", float),
    "orphans": ("orphans", int),
    "rejected leases": ("rejected_leases", int),
    "non unique addresses": ("non_unique_addresses", int),
    "min delay": ("min_delay_ms", float),
    "avg delay": ("avg_delay_ms", float),
    "max delay": ("max_delay_ms", float),
}


def parse_perfdhcp(raw: str, returncode: int | None = None, argv: Sequence[str] = ()) -> PerfResult:
    """Parse perfdhcp 2.2 (-4) statistics output."""
    res = PerfResult(raw=raw, returncode=returncode, argv=list(argv))
    if m := re.search(r"^Rate: (\S+) 4-way exchanges/second, expected rate: (\S+)", raw, re.M):
        res.rate, res.expected_rate = _num(m.group(1)), _num(m.group(2))
    if m := re.search(r"^Malformed packets: (\d+)", raw, re.M):
        res.malformed = int(m.group(1))
    current: ExchangeStats | None = None
    for line in raw.splitlines():
        if m := re.match(r"\*\*\*Statistics for: (\S+)\*\*\*", line):
            current = res.exchanges.setdefault(m.group(1), ExchangeStats())
            continue
        if current is None:
            continue
        m = re.match(r"([a-z ]+): (-?(?:[0-9.]+|inf|nan))\b", line)
        if not m or m.group(1) not in _STAT_KEYS:
            continue
        attr, typ = _STAT_KEYS[m.group(1)]
        v = _num(m.group(2))
        setattr(current, attr, (int(v) if typ is int and v is not None else v))
    return res


def perfdhcp(
    ns: Netns,
    giaddr: str,
    server: str,
    *,
    rate: int,
    duration: float,
    clients: int,
    mac_base: str | None = None,
    extra: Sequence[str] = (),
    timeout: float | None = None,
    check: bool = True,
) -> PerfResult:
    """Kea perfdhcp as a relay: ``perfdhcp -4 -l GIADDR -r RATE -p SECONDS
    -R NCLIENTS -g single [-b mac=BASE] EXTRA... SERVER``.

    It binds UDP 67 on giaddr (an address in ns) and sends out of the
    interface owning it; the server must answer giaddr. Exit 3 only means
    some exchanges were dropped; any other non-zero exit fails with check.
    Client MACs restart from the base at every run: pass
    ``mac_base=random_mac_base()`` to measure new clients.
    """
    argv: list[str] = ["perfdhcp", "-4", "-l", giaddr, "-r", str(rate), "-p", f"{duration:g}",
                       "-R", str(clients), "-g", "single"]
    if mac_base:
        argv += ["-b", f"mac={mac_base}"]
    argv += [*map(str, extra), server]
    if timeout is None:
        timeout = duration + 20
    rc, timed_out, out, cmd = _run_client(ns, "perfdhcp", argv, timeout)
    res = parse_perfdhcp(out, rc, cmd)
    if check and (timed_out or rc not in (0, 3) or not res.exchanges):
        raise AssertionError(f"perfdhcp failed (rc={rc}, timed_out={timed_out})\n$ {' '.join(cmd)}\n{out}")
    return res


# --------------------------------------------------------------------------
# ISC relay and server
# --------------------------------------------------------------------------


def _wait_started(proc: subprocess.Popen, marker: str, timeout: float, what: str) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{read_log(proc)}")
        return marker in read_log(proc)

    try:
        wait_for(ready, timeout, interval=0.05, what=what)
    except AssertionError as e:
        if "exited" in str(e):
            raise
        raise AssertionError(f"{e}\n{read_log(proc)}") from None


def dhcrelay(
    ns: Netns,
    downstream: str | Sequence[str],
    upstream: str | Sequence[str],
    servers: str | Sequence[str],
    *,
    option82: bool = True,
    timeout: float = 10,
) -> subprocess.Popen:
    """ISC dhcrelay in the foreground: ``dhcrelay -4 -d -a -pf PID -id DOWN
    -iu UP SERVER...``; returns once it listens. Relays from the downstream
    interfaces (giaddr = their address) to the servers."""
    downs = [downstream] if isinstance(downstream, str) else list(downstream)
    ups = [upstream] if isinstance(upstream, str) else list(upstream)
    srvs = [servers] if isinstance(servers, str) else list(servers)
    pidfile = ns.lab.path(f"dhcrelay-{ns.role}-{ns.lab._next('relay')}.pid")
    argv = ["dhcrelay", "-4", "-d"] + (["-a"] if option82 else []) + ["-pf", str(pidfile)]
    for d in downs:
        argv += ["-id", d]
    for u in ups:
        argv += ["-iu", u]
    argv += srvs
    proc = ns.popen(*argv, name="dhcrelay")
    _wait_started(proc, "Sending on   Socket/fallback", timeout, "dhcrelay to start")
    return proc


def isc_dhcpd(
    ns: Netns,
    conf_text: str,
    iface: str | Sequence[str],
    *,
    timeout: float = 10,
) -> subprocess.Popen:
    """ISC dhcpd 4.4 in the foreground: ``dhcpd -4 -f -d -cf CONF -lf LEASES
    -pf PID IFACE...``; returns once it serves. ``ping-check false;`` is
    prepended unless the config sets ping-check. ``proc.lease_file`` and
    ``proc.conf_file`` are set on the returned Popen."""
    n = ns.lab._next("dhcpd")
    base = f"dhcpd-{ns.role}-{n}"
    conf, leases, pid = (ns.lab.path(base + s) for s in (".conf", ".leases", ".pid"))
    if "ping-check" not in conf_text:
        conf_text = "ping-check false;\n" + conf_text
    conf.write_text(conf_text)
    leases.touch()
    ifaces = [iface] if isinstance(iface, str) else list(iface)
    proc = ns.popen("dhcpd", "-4", "-f", "-d", "-cf", conf, "-lf", leases, "-pf", pid, *ifaces,
                    name="dhcpd")
    proc.lease_file = leases  # type: ignore[attr-defined]
    proc.conf_file = conf  # type: ignore[attr-defined]
    _wait_started(proc, "Server starting service.", timeout, "dhcpd to start")
    return proc


def isc_lease_states(lease_file: Path | str) -> dict[str, str]:
    """address -> 'binding state' of its last block in a dhcpd lease file
    (the file is append-only: the last block for an address is current)."""
    text = Path(lease_file).read_text(errors="replace")
    states: dict[str, str] = {}
    for m in re.finditer(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S):
        st = re.search(r"^\s*binding state (\w+);", m.group(2), re.M)
        if st:
            states[m.group(1)] = st.group(1)
    return states
