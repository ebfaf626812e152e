"""Failover pairs under test: a cnrd pair, an ISC dhcpd pair and a Kea HA pair.

The main runs where a single server would (the bench's server namespace, the
address perfdhcp talks to); the backup gets a namespace of its own, joined to
the main by a second veth that carries the failover link (main 10.97.0.1,
backup 10.97.0.2).  Both sides of each pair use the same pool, lease time and
options as the single servers, MCLT 30 s, backup-pct 10 (ISC: split 256, so
the secondary answers nobody in NORMAL, like a cnrd backup), and a pair is
"started" once both sides say NORMAL in their logs.  Load goes to the main:
every lease it grants is durable in its store, and its binding update is
queued durably and sent to the backup.

``start_backup`` / ``recovery``: the main alone first (with a preloaded store
and a stored NORMAL failover state, as after a partner was lost), then a
fresh backup with an empty store; the time until both are NORMAL is the
recovery time, reported with and without the MCLT wait that a recovering
server must sit out (RECOVER-WAIT, ISC's state 254).

The Kea HA pair (``kea-ha-pair``): two kea-dhcp4 2.2 with the lease_cmds and
HA hooks, hot-standby, multi-threaded (the DHCP threads and the HA hook's own
HTTP listener and client threads), memfile.  The primary is the main, the
standby the backup; their HA traffic (lease updates, heartbeats, the
standby's lease4-get-page sync) goes over the same second veth.  "NORMAL" is
Kea's HOT-STANDBY on both sides, and before load the bench also asks the
primary (``status-get`` on its control socket) that it is in hot-standby,
serves the primary's scope and is in touch with a partner in hot-standby.
Its recovery: the primary alone with a preloaded lease file, waited to
PARTNER-DOWN; then a standby with an empty lease file, which syncs every
lease from the primary (lease4-get-page) before HOT-STANDBY; the leases are
counted in the standby's memfile CSV.  Kea has no MCLT wait.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

from bench import perf
from bench.servers import (
    LEASE_TIME,
    OPTIONS,
    RUN,
    SERVERS,
    CnrdServer,
    IscServer,
    KeaServer,
    _isc_time,
    cnrd_server_lines,
    kea_lease_count,
)
from cnrd.failover import record
from cnrd.failover.states import Role, S
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import LeaseState
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.cnrd_proc import config as cnrd_config
from tests.integration.lab import isc_lease_states, read_log, wait_for

PAIR = "benchpair"
MAIN_FO, BACKUP_FO = "10.97.0.1", "10.97.0.2"
MCLT = 30
SYNC_WAIT_S = 60  # recovery: most seconds to wait, after NORMAL, for the backup to hold every lease
SETTLE_S = 8  # > the failover poll timeout (6 s) and max-response-delay (6 s)

_CNRD_NORMAL = re.compile(r"failover pair \S+: state \S+ -> NORMAL ")


def _cnrd_normal(text: str) -> bool:
    return bool(_CNRD_NORMAL.search(text))


_CNRD_MOVE = re.compile(r"failover pair \S+: state \S+ -> (\S+)")
_ISC_MOVE = re.compile(r"I move from \S+ to (\S+)")


def _last_move(rx: re.Pattern, text: str) -> str | None:
    moves = rx.findall(text)
    return moves[-1].lower() if moves else None


def _isc_normal(text: str) -> bool:
    return "I move from" in text and bool(re.search(r"I move from \S+ to normal", text))


class _PairMixin:
    """The backup side and the failover link, shared by the pairs."""

    WAIT_IN: str | None = None  # what the backup's log says entering / leaving the MCLT wait
    WAIT_OUT: str | None = None
    backup_proc = None
    backup_ns = None

    main_fo_if = None

    def backup_lease_count(self) -> int:
        """Leases the backup's own store holds as bound now (what a failover would keep)."""
        raise NotImplementedError

    def _failover_link(self) -> None:
        lab = self.lab
        self.backup_ns = lab.netns(f"bk{self.n}")
        self.main_fo_if, self.backup_if = lab.link(self.ns, self.backup_ns, a_addr=f"{MAIN_FO}/24",
                                                   b_addr=f"{BACKUP_FO}/24")

    def pids(self) -> list[int]:
        out = [self.pid]
        if self.backup_proc is not None and self.backup_proc.poll() is None:
            out.append(self.backup_proc.pid)
        return perf.with_descendants(out)

    def stop(self):
        if self.backup_proc is not None and self.backup_ns is not None:
            self.backup_ns.stop(self.backup_proc, signal.SIGTERM, timeout=15)
        rc = super().stop()
        # Every pair gets a fresh failover veth with the same main address
        # (10.97.0.1) in the shared server namespace: remove this one, or the
        # next pair's traffic to 10.97.0.2 is routed into this dead link.
        if self.main_fo_if is not None and self.ns is not None:
            self.ns.run("ip", "link", "del", self.main_fo_if, check=False)
            self.main_fo_if = None
        return rc

    def _both_normal(self, timeout: float) -> float:
        """Seconds until both sides logged NORMAL."""
        t0 = time.monotonic()
        wait_for(lambda: self._main_normal() and self._backup_normal(), timeout, interval=0.05,
                 what=f"{self.name} to reach NORMAL on both sides")
        return time.monotonic() - t0

    def _settle(self, timeout: float) -> None:
        """Before load: both sides NORMAL and still NORMAL a poll timeout
        later (cnrd's main splits the pool right after NORMAL and may drop
        the link then); at most 3 rounds."""
        for _ in range(3):
            self._both_normal(timeout)
            time.sleep(SETTLE_S)
            if self._still_normal():
                return
        raise AssertionError(f"{self.name}: not steadily NORMAL on both sides")

    def recovery(self, timeout: float = 600) -> dict:
        """Start a fresh backup next to the running main; time both to NORMAL."""
        t0 = time.monotonic()
        self.start_backup(timeout)
        # Watch the backup's log while it recovers: the time it spends in
        # RECOVER-WAIT is the MCLT wait (which may overlap the bulk update:
        # the wait counts from the RECOVER start), stamped here because the
        # logs' timestamps have whole seconds only.
        entered = left = None
        # When the backup first holds every lease of the main: a cnrd backup
        # has them at the end of RECOVER, before the MCLT wait, so this is
        # looked for while it recovers, about once a second.
        full_s = None
        next_count = t0 + 1.0
        deadline = t0 + timeout
        while not (self._main_normal() and self._backup_normal()):
            log = self._logs()[1].lower()
            now = time.monotonic()
            if full_s is None and now >= next_count:
                try:
                    held = self.backup_lease_count()
                except Exception:  # the backup has not created its store yet
                    held = 0
                if held >= self.preload:
                    full_s = now - t0
                next_count = time.monotonic() + 1.0
            if self.WAIT_IN is not None and entered is None and self.WAIT_IN in log:
                entered = now
            if entered is not None and left is None and self.WAIT_OUT and self.WAIT_OUT in log:
                left = now
            if now > deadline:
                raise AssertionError(f"{self.name} did not reach NORMAL on both sides in {timeout:.0f} s")
            time.sleep(0.05)
        total = time.monotonic() - t0
        if entered is not None and left is None:
            left = time.monotonic()
        waited = (left - entered) if entered is not None else 0.0
        # what the backup holds once both say NORMAL: a recovery that skipped
        # the bulk update (UPDREQALL) is fast and worthless
        backup_leases = self.backup_lease_count()
        # and when (if within SYNC_WAIT_S more) the backup holds all the main's leases
        deadline = time.monotonic() + SYNC_WAIT_S
        while full_s is None:
            if self.backup_lease_count() >= self.preload:
                full_s = time.monotonic() - t0
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        main_log, backup_log = self._logs()
        return {"recovery_s": total, "recover_wait_s": waited, "recovery_minus_mclt_s": max(total - waited, 0.0),
                "backup_leases": backup_leases, "backup_has_all_s": full_s,
                "main_moves": self.MOVE.findall(main_log), "backup_moves": self.MOVE.findall(backup_log),
                **self._recovery_extra()}

    def _recovery_extra(self) -> dict:
        return {}


class CnrdPair(_PairMixin, CnrdServer):
    """cnrd main + cnrd backup, same file except [server]."""

    name = "cnrd-pair"
    MOVE = re.compile(r"failover pair \S+: state (\S+ -> \S+ \(.*\))")

    def _logs(self) -> tuple[str, str]:
        return self.cp.log(), self.bp.log()

    def backup_lease_count(self) -> int:
        return sum(1 for lease in self.bp.leases() if lease.state is LeaseState.LEASED)

    def _pair_section(self) -> str:
        return f"""
[failover-pair {PAIR}]
main = {MAIN_FO}
backup = {BACKUP_FO}
mclt = {MCLT}
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""

    def _configure(self) -> None:
        self._failover_link()
        scopes = f"""
[scope {self.scope}]
subnet = {self.net.subnet}
ranges = {self.net.pool_first}-{self.net.pool_last}
""" + self._pair_section()
        lines = cnrd_server_lines()
        self.cp = CnrdProcess(self.ns, cnrd_config(self.iface, scopes, lines), name=f"cnrdmain{self.n}")
        self.bp = CnrdProcess(self.backup_ns, cnrd_config(self.backup_if, scopes, lines), name=f"cnrdbackup{self.n}")

    def _write_store(self, n: int, now: int) -> None:
        super()._write_store(n, now)
        # The main remembers a partner it was NORMAL with.
        normal = record.StateRecord(state=S.NORMAL, stos=now - 100, partner_state=S.NORMAL, partner_stos=now - 100,
                                    mclt=MCLT, previous=S.NORMAL, talked=True, role_code=record.role_code(Role.MAIN))
        store = LmdbLeaseStore(str(self.cp.data_dir))
        try:
            store.commit([], [], {record.key(PAIR): record.pack(normal)})
        finally:
            store.close()

    def _spawn(self, timeout: float) -> None:
        self.cp.start(timeout=timeout)
        self.proc = self.cp.proc
        if not self.preload:
            self.start_backup(timeout)
            self._settle(timeout)

    def start_backup(self, timeout: float) -> None:
        self.bp.start(timeout=timeout)
        self.backup_proc = self.bp.proc

    def _main_normal(self) -> bool:
        return _cnrd_normal(self.cp.log())

    def _backup_normal(self) -> bool:
        return _cnrd_normal(self.bp.log())

    WAIT_IN, WAIT_OUT = "-> recover-wait", "recover-wait ->"

    def _still_normal(self) -> bool:
        return all(_last_move(_CNRD_MOVE, t) == "normal" for t in (self.cp.log(), self.bp.log()))

    def cleanup(self) -> None:
        super().cleanup()


class IscPair(_PairMixin, IscServer):
    """ISC dhcpd primary + secondary (dhcpd -f -d, one lease file each)."""

    name = "isc-pair"
    MOVE = re.compile(r"failover peer \S+: (I move from \S+ to \S+)")

    def _logs(self) -> tuple[str, str]:
        return read_log(self.proc), read_log(self.backup_proc)

    def backup_lease_count(self) -> int:
        return sum(1 for st in isc_lease_states(self.backup_leases).values() if st == "active")

    def _recovery_extra(self) -> dict:
        # the state block dhcpd itself wrote (the syntax _write_store imitates)
        blocks = re.findall(r'failover peer "[^"]*" state \{[^}]*\}', self.backup_leases.read_text())
        return {"secondary_state_block": blocks[-1] if blocks else None}

    def _peer(self, role: str, me: str, peer: str) -> str:
        extra = f"mclt {MCLT}; split 256;" if role == "primary" else ""
        return (f'failover peer "{PAIR}" {{ {role}; address {me}; port 647; peer address {peer}; '
                f"peer port 647; max-response-delay 6; max-unacked-updates 100; "
                f"load balance max seconds 3; {extra} }}\n")

    def _conf(self, role: str, me: str, peer: str, link_subnet: str) -> str:
        net = self.net.network
        return f"""\
ping-check false;
authoritative;
ddns-update-style none;
default-lease-time {LEASE_TIME};
max-lease-time {LEASE_TIME};
option routers {OPTIONS['routers']};
option domain-name-servers {OPTIONS['domain-name-servers']};
{self._peer(role, me, peer)}
subnet {link_subnet} netmask 255.255.255.0 {{ }}
subnet 10.97.0.0 netmask 255.255.255.0 {{ }}
subnet {net.network_address} netmask {net.netmask} {{
  pool {{ failover peer "{PAIR}"; range {self.net.pool_first} {self.net.pool_last}; }}
}}
"""

    def _configure(self) -> None:
        super()._configure()
        self._failover_link()
        self.conf_file.write_text(self._conf("primary", MAIN_FO, BACKUP_FO, "10.1.0.0"))
        self.backup_conf = self.dir / "dhcpd-secondary.conf"
        self.backup_leases = self.dir / "dhcpd-secondary.leases"
        self.backup_conf.write_text(self._conf("secondary", BACKUP_FO, MAIN_FO, "10.1.0.0"))
        self.backup_leases.touch()

    def _write_store(self, n: int, now: int) -> None:
        super()._write_store(n, now)
        t = _isc_time(now - 100)
        with open(self.lease_file, "a") as f:
            f.write(f'\nfailover peer "{PAIR}" state {{\n  my state normal at {t};\n'
                    f"  partner state normal at {t};\n  mclt {MCLT};\n}}\n")

    def _spawn(self, timeout: float) -> None:
        assert self.ns is not None
        self.proc = self.ns.popen(
            "dhcpd", "-4", "-f", "-d", "-cf", self.conf_file, "-lf", self.lease_file,
            "-pf", self.pid_file, self.iface, self.main_fo_if, name=f"dhcpdmain{self.n}",
        )
        self._wait_marker("Server starting service.", timeout)
        if not self.preload:
            self.start_backup(timeout)
            self._settle(timeout)

    def start_backup(self, timeout: float) -> None:
        self.backup_proc = self.backup_ns.popen(
            "dhcpd", "-4", "-f", "-d", "-cf", self.backup_conf, "-lf", self.backup_leases,
            "-pf", self.dir / "dhcpd-secondary.pid", self.backup_if, name=f"dhcpdbackup{self.n}",
        )
        wait_for(lambda: "Server starting service." in read_log(self.backup_proc), timeout,
                 what="ISC secondary to start")

    def _main_normal(self) -> bool:
        return _isc_normal(read_log(self.proc))

    def _backup_normal(self) -> bool:
        return _isc_normal(read_log(self.backup_proc))

    WAIT_IN, WAIT_OUT = "to recover-wait", "from recover-wait"

    def _still_normal(self) -> bool:
        return all(_last_move(_ISC_MOVE, read_log(p)) == "normal" for p in (self.proc, self.backup_proc))


# ------------------------------------------------------------------------------
# Kea 2.2 HA, hot-standby
# ------------------------------------------------------------------------------

KEA_HOOKS = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")
KEA_HA_PORT = 8001  # each server's HA listener, on its failover-link address
HEARTBEAT_S = 1.0  # the HA hook's heartbeat-delay
KEA_HOT = "HOT-STANDBY"
# 2.2 logs "HA_STATE_TRANSITION server transitions from WAITING to SYNCING state, ..."; later
# versions put the server's name and a colon before "server"
_KEA_MOVE = re.compile(r"HA_STATE_TRANSITION (?:\S+: )?server transitions from (\S+) to (\S+) state")


def kea_command(sock_path: Path, command: str, arguments: dict | None = None, timeout: float = 10) -> dict:
    """One command over a Kea server's unix control socket; its JSON answer."""
    req: dict[str, Any] = {"command": command}
    if arguments is not None:
        req["arguments"] = arguments
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(json.dumps(req).encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            try:
                return json.loads(buf)
            except ValueError:
                continue  # more to come
    return json.loads(buf)


def kea_ha_verdict(status: dict) -> tuple[bool, str]:
    """From a primary's ``status-get`` answer: is the pair in hot-standby with
    the partner in touch and in hot-standby, this server serving the
    primary's scope?  (ok, what was seen)."""
    try:
        ha = status["arguments"]["high-availability"][0]
        local, remote = ha["ha-servers"]["local"], ha["ha-servers"]["remote"]
    except (KeyError, IndexError, TypeError):
        return False, f"no HA status in {json.dumps(status)[:300]}"
    seen = (f"mode {ha.get('ha-mode')}, local {local.get('state')} scopes {local.get('scopes')}, "
            f"remote {remote.get('last-state')} in-touch {remote.get('in-touch')} "
            f"interrupted {remote.get('communication-interrupted')}")
    ok = (ha.get("ha-mode") == "hot-standby" and local.get("state") == "hot-standby"
          and local.get("scopes") == ["primary"] and remote.get("last-state") == "hot-standby"
          and remote.get("in-touch") is True and not remote.get("communication-interrupted"))
    return ok, seen


class KeaHaPair(_PairMixin, KeaServer):
    """Kea 2.2 primary + standby (HA hook, hot-standby, multi-threaded, memfile)."""

    name = "kea-ha-pair"
    MOVE = re.compile(r"HA_STATE_TRANSITION (?:\S+: )?server (transitions from \S+ to \S+) state")
    ha_status: tuple[bool, str] | None = None

    #: DHCP threads and the HA hook's HTTP listener and client threads per
    #: server, at least 2: a parked packet waits for the standby's answer
    #: while another is processed.
    @staticmethod
    def threads() -> int:
        return max(2, RUN.cores)

    def multi_threading(self) -> dict:
        return {"enable-multi-threading": True, "thread-pool-size": self.threads(), "packet-queue-size": 64}

    def _ha(self, me: str) -> list[dict]:
        n = self.threads()
        return [
            {"library": str(KEA_HOOKS / "libdhcp_lease_cmds.so"), "parameters": {}},
            {"library": str(KEA_HOOKS / "libdhcp_ha.so"), "parameters": {"high-availability": [{
                "this-server-name": me,
                "mode": "hot-standby",
                "heartbeat-delay": int(HEARTBEAT_S * 1000),
                "max-response-delay": 3000,
                "max-ack-delay": 1000,
                "max-unacked-clients": 0,
                "sync-timeout": 60000,
                "multi-threading": {"enable-multi-threading": True, "http-dedicated-listener": True,
                                    "http-listener-threads": n, "http-client-threads": n},
                "peers": [
                    {"name": "primary", "url": f"http://{MAIN_FO}:{KEA_HA_PORT}/", "role": "primary",
                     "auto-failover": True},
                    {"name": "standby", "url": f"http://{BACKUP_FO}:{KEA_HA_PORT}/", "role": "standby",
                     "auto-failover": True},
                ],
            }]}},
        ]

    def _conf(self, me: str, iface: str, lease_file: Path, sock: Path) -> str:
        d = self.dhcp4(iface, lease_file)
        d["hooks-libraries"] = self._ha(me)
        d["control-socket"] = {"socket-type": "unix", "socket-name": str(sock)}
        # the HA hook's state transitions (INFO; nothing per lease at INFO)
        d["loggers"].append({"name": "kea-dhcp4.ha-hooks", "severity": "INFO",
                             "output_options": [{"output": "stdout"}]})
        return json.dumps({"Dhcp4": d}, indent=2)

    def _configure(self) -> None:
        super()._configure()
        assert self.dir is not None and self.iface is not None
        self._failover_link()
        self.sock = self.dir / "primary.sock"
        self.conf_file.write_text(self._conf("primary", self.iface, self.lease_file, self.sock))
        sdir = self.dir / "standby"
        sdir.mkdir()
        self.backup_env = {"KEA_PIDFILE_DIR": str(sdir), "KEA_LOCKFILE_DIR": str(sdir)}
        self.backup_conf = sdir / "kea-dhcp4-standby.conf"
        self.backup_lease_file = sdir / "kea-leases4.csv"
        self.backup_sock = sdir / "standby.sock"
        self.backup_conf.write_text(self._conf("standby", self.backup_if, self.backup_lease_file,
                                               self.backup_sock))

    def _logs(self) -> tuple[str, str]:
        return read_log(self.proc), read_log(self.backup_proc) if self.backup_proc is not None else ""

    @staticmethod
    def _state(text: str) -> str | None:
        moves = _KEA_MOVE.findall(text)
        return moves[-1][1] if moves else None

    def _main_normal(self) -> bool:
        return self._state(read_log(self.proc)) == KEA_HOT

    def _backup_normal(self) -> bool:
        return self.backup_proc is not None and self._state(read_log(self.backup_proc)) == KEA_HOT

    def _still_normal(self) -> bool:
        if not (self._main_normal() and self._backup_normal()):
            return False
        self.ha_status = kea_ha_verdict(kea_command(self.sock, "status-get"))
        return self.ha_status[0]

    def _settle(self, timeout: float) -> None:
        try:
            super()._settle(timeout)
        except AssertionError:
            seen = self.ha_status[1] if self.ha_status else "no status-get answer"
            raise AssertionError(f"{self.name}: not in hot-standby with the partner in sync: {seen}") from None

    def backup_lease_count(self) -> int:
        return kea_lease_count(self.backup_lease_file)

    def _spawn(self, timeout: float) -> None:
        assert self.ns is not None
        self.ns.run("kea-dhcp4", "-t", self.conf_file, env=self.env, timeout=60)
        self.proc = self.ns.popen("kea-dhcp4", "-c", self.conf_file, env=self.env, name=f"keaprimary{self.n}")
        self._wait_marker("DHCP4_STARTED", timeout)
        if not self.preload:
            self.start_backup(timeout)
            self._settle(timeout)
            return
        # alone, as after losing its partner: the primary serves once it has
        # given the standby up (max-response-delay after start)
        wait_for(lambda: self._state(read_log(self.proc)) == "PARTNER-DOWN", timeout, interval=0.05,
                 what="the Kea primary alone to reach PARTNER-DOWN")

    def start_backup(self, timeout: float) -> None:
        assert self.backup_ns is not None
        self.backup_ns.run("kea-dhcp4", "-t", self.backup_conf, env=self.backup_env, timeout=60)
        self.backup_proc = self.backup_ns.popen("kea-dhcp4", "-c", self.backup_conf, env=self.backup_env,
                                                name=f"keastandby{self.n}")
        proc = self.backup_proc

        def started() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"Kea standby exited with {proc.returncode}:\n{read_log(proc)[-3000:]}")
            return "DHCP4_STARTED" in read_log(proc)

        wait_for(started, timeout, interval=0.02, what="the Kea standby to start")

    def _recovery_extra(self) -> dict:
        # The primary learns the standby's HOT-STANDBY from its next
        # heartbeat (1 s): ask a few heartbeats long.
        ok, seen = False, ""
        deadline = time.monotonic() + 5 * HEARTBEAT_S
        while True:
            ok, seen = kea_ha_verdict(kea_command(self.sock, "status-get"))
            if ok or time.monotonic() >= deadline:
                return {"primary_status": seen, "primary_status_ok": ok}
            time.sleep(0.2)


SERVERS["cnrd-pair"] = CnrdPair
SERVERS["isc-pair"] = IscPair
SERVERS["kea-ha-pair"] = KeaHaPair
