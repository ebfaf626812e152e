"""Fault injection: a cnrd failover pair under crashes, partitions and lost
databases, with real clients, audited for duplicate and lost leases.

Usage::

    bench/chaos [--duration 300] [--seed 1] [--faults kill,partition,...]
                [--hold 5,20] [--out results/chaos.json] [--keep DIR]
                [--load-balancing] [--relationships 2]

``--load-balancing`` balances the pair (RFC 3074, split 128); ``--relationships 2``
runs two relationships between the two servers, each the main of one
(bench/chaospairs.py); the auditor's rules hold per relationship.

Needs root (network namespaces) and the packages scripts/setup installs.
The lab, as in tests/integration/test_recovery_pair.py::

    lan (bridge br0) ── main    10.98.0.1/16  cnrd
                     ── backup  10.98.0.2/16  cnrd
                     ── perf    10.98.0.10/16 perfdhcp churn (a relay: giaddr 10.98.0.10, broadcast to both)
                     ── burst   10.98.0.11/16 perfdhcp bursts
                     ── dhN, udN              dhclient / udhcpc in a bounded renew/release loop

Every client port of the bridge is ``isolated``: clients never hear each
other, only the servers; isolating a server's port as well cuts it off from
the clients while the failover link (server to server) stays up.

Faults, one at a time, each healed and followed by a settle period in which
both servers must be NORMAL (drawn from ``random.Random(seed)``: the order is
a shuffled round of the chosen kinds, sides and hold times are drawn too):

``kill``                    kill -9 main or backup, restart it after a hold
``kill-partner-down``       kill -9, the survivor goes COMMUNICATIONS-INTERRUPTED,
                            the operator runs ``cnrctl dhcp setPartnerDown``
                            on it, hold, restart (RECOVER, UPDREQ)
``lost-db``                 kill -9, delete its data directory, setPartnerDown
                            on the survivor (the seed's procedure), restart
                            (RECOVER, UPDREQALL, RECOVER-WAIT for the MCLT)
``partition``               blackhole routes between the servers only
``partition-partner-down``  the same, and setPartnerDown on one side: the
                            deliberate operator mistake the seed warns about;
                            heal before MCLT, so POTENTIAL-CONFLICT resolves it
``cut-clients``             one server's bridge port isolated from the clients
``burst``                   perfdhcp: ten times max-dhcp-requests in about a second

Operator rules the injector keeps (and checks before every setPartnerDown):
never both partners PARTNER-DOWN; never setPartnerDown on a server whose
partner is running and reachable, except in ``partition-partner-down``.

The auditor does not trust the servers' bookkeeping: tcpdump runs in every
client namespace; each DHCP packet is decoded with cnrd.dhcp.packet.parse.
From the ACKs, releases and NAKs the clients saw it checks (a) no address
held by two clients over overlapping lease times, (b) every ACKed lease still
unexpired at the end is in both servers' LMDB stores, (c) the pair back to
NORMAL within a bound after every fault, and counts (d) how many client
requests made during single-server outages were answered.  The load itself
is judged too (bench/chaosload.py): a generator's error, or fewer ACKs than
the floor derived from what the run asked for, fails the run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import chaosload, chaospairs
from cnrd.dhcp.packet import MalformedPacket, format_hw, int_to_ip, parse
from cnrd.leases.model import Lease, LeaseState
from tests.integration.cnrd_proc import CnrdProcess
from tests.integration.lab import (
    Lab,
    Netns,
    dhclient,
    dhclient_release,
    dhclient_renew,
    missing_requirements,
    read_log,
    udhcpc,
    udhcpc_release,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
CNRCTL = str(Path(sys.executable).with_name("cnrctl"))

KINDS = ("kill", "kill-partner-down", "lost-db", "partition", "partition-partner-down", "cut-clients", "burst")
SIDES = ("main", "backup")
IP = {"main": "10.98.0.1", "backup": "10.98.0.2"}
PERF_IP, BURST_IP = "10.98.0.10", "10.98.0.11"
PAIR_NAME = "examplepair"
MCLT = 30
POLL_TIMEOUT = 6
MAX_DHCP_REQUESTS = 100
POOL = ("10.98.16.0", "10.98.79.255")  # 16,384 addresses
LEASE_TIME = 3600
PERF_MAC = "02:c0:00:00:00:00"  # perfdhcp -b mac= bases (the last two octets count clients)
BURST_MAC = "02:c1:00:00:00:00"
OVERLAP_TOLERANCE_S = 2.0  # capture time vs the server's own: an overlap must exceed this
EXPIRY_MARGIN_S = 5.0  # (b) looks only at leases with more than this left
SYNC_WAIT_S = 30  # (b): how long the stores may take to catch up with the last ACKs

CONFIG = f"""
[server]
name = {{name}}
interfaces = {{iface}}
data-dir = @DATA@
max-dhcp-requests = {MAX_DHCP_REQUESTS}
{{extra}}

[policy default]
lease-time = {LEASE_TIME}
option.routers = 10.98.0.1

{{pairs}}"""
SUBNET = "10.98.0.0/16"

_STATE_RX = re.compile(r"failover pair (\S+): state (\S+) -> (\S+) \((.*)\)")
_LOGTIME_RX = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) ")
_ERROR_RX = re.compile(r"Traceback \(most recent call last\)|Unhandled [Ee]rror|#critical\]")


def _now() -> float:
    return time.time()


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds")


def _log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------


@dataclass
class Options:
    duration: float = 300.0  # seconds of fault injection (from both NORMAL)
    seed: int = 1
    faults: tuple[str, ...] = KINDS
    hold: tuple[float, float] = (5.0, 20.0)  # a fault lasts this long (drawn), before its heal
    gap: tuple[float, float] = (2.0, 6.0)  # quiet time between faults, after the settle
    settle: float = 5.0  # both NORMAL this long after a heal before the next fault
    warmup: float = 8.0  # load before the first fault
    normal_bound: float = 60.0  # (c): heal -> both NORMAL within this (lost-db: + MCLT)
    perf_clients: int = 3000
    perf_rate: int = 30  # DORA/s
    perf_renew_rate: int = 5  # perfdhcp -f
    perf_release_rate: int = 2  # perfdhcp -F
    perf_chunk: int = 15  # seconds per perfdhcp run (each run is bounded by -p and -n)
    dhclients: int = 2
    udhcpcs: int = 2
    max_client_cycles: int = 500
    log_settings: str | None = None  # [server] log-settings, e.g. failover-detail
    load_balancing: bool = False  # the pair(s) balanced (RFC 3074 split 128)
    relationships: int = 1  # 2: symmetrical, each server the main of one (bench/chaospairs.py)
    out: Path | None = None
    keep: Path | None = None


# ------------------------------------------------------------------------------
# pcap and packet decoding
# ------------------------------------------------------------------------------


_PCAP_FORMATS = {b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
                 b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9)}


class PcapReader:
    """Reads a pcap file that tcpdump -U is still writing, a little more each call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rec: struct.Struct | None = None
        self.scale = 1e6
        self.linktype = 1

    def read(self) -> list[tuple[float, int, bytes]]:
        """(timestamp, linktype, frame) of every whole record written since the last call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        off = 0
        if self.rec is None:
            if len(data) < 24:
                return []
            if data[:4] not in _PCAP_FORMATS:
                raise ValueError(f"{self.path}: not a pcap file")
            endian, self.scale = _PCAP_FORMATS[data[:4]]
            self.linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
            self.rec = struct.Struct(endian + "IIII")
            off = 24
        out = []
        while off + 16 <= len(data):
            sec, frac, incl, _orig = self.rec.unpack_from(data, off)
            if off + 16 + incl > len(data):
                break  # not all written yet (or cut short when tcpdump stopped)
            out.append((sec + frac / self.scale, self.linktype, data[off + 16:off + 16 + incl]))
            off += 16 + incl
        self.offset += off
        return out


def udp_payload(linktype: int, frame: bytes) -> tuple[str, str, int, int, bytes] | None:
    """(src ip, dst ip, sport, dport, payload) of an unfragmented IPv4/UDP frame."""
    try:
        if linktype == 1:  # Ethernet
            eth, off = struct.unpack_from("!H", frame, 12)[0], 14
            if eth == 0x8100:
                eth, off = struct.unpack_from("!H", frame, 16)[0], 18
        elif linktype == 113:  # Linux cooked (SLL)
            eth, off = struct.unpack_from("!H", frame, 14)[0], 16
        else:
            return None
        if eth != 0x0800 or (frame[off] >> 4) != 4 or frame[off + 9] != 17:
            return None
        if struct.unpack_from("!H", frame, off + 6)[0] & 0x3FFF:
            return None  # a fragment
        ihl = (frame[off] & 0x0F) * 4
        src = ".".join(map(str, frame[off + 12:off + 16]))
        dst = ".".join(map(str, frame[off + 16:off + 20]))
        u = off + ihl
        sport, dport, ulen = struct.unpack_from("!HHH", frame, u)
        return src, dst, sport, dport, frame[u + 8:u + max(ulen, 8)]
    except (struct.error, IndexError):
        return None


@dataclass
class Seen:
    """One DHCP packet seen in a client namespace."""

    t: float
    ns: str
    op: int  # 1 request (from a client), 2 reply
    mtype: int | None
    xid: int
    chaddr: str
    ciaddr: str
    yiaddr: str
    giaddr: str
    server_id: str | None
    lease_time: int | None
    requested: str | None


MTYPE = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}


def decode_frames(frames: Iterable[tuple[float, int, bytes]], ns: str) -> tuple[list[Seen], int]:
    """The DHCP packets among captured frames, and how many did not parse."""
    out: list[Seen] = []
    bad = 0
    for t, lt, frame in frames:
        u = udp_payload(lt, frame)
        if u is None or not ({u[2], u[3]} & {67, 68}):
            continue
        try:
            p = parse(u[4])
            mtype = p.message_type
            sid = p.server_identifier
            lt_ = p.lease_time
            req = p.requested_address
        except MalformedPacket:
            bad += 1
            continue
        out.append(Seen(t, ns, p.op, mtype, p.xid, format_hw(p.chaddr), int_to_ip(p.ciaddr),
                        int_to_ip(p.yiaddr), int_to_ip(p.giaddr),
                        int_to_ip(sid) if sid is not None else None, lt_,
                        int_to_ip(req) if req is not None else None))
    return out, bad


def decode_capture(path: Path, ns: str) -> tuple[list[Seen], int]:
    """The DHCP packets of one whole capture file, and how many did not parse."""
    return decode_frames(PcapReader(path).read(), ns)


# ------------------------------------------------------------------------------
# the servers' states, from their logs
# ------------------------------------------------------------------------------


class StateWatcher:
    """Follows both servers' logs (one file per process start) in a thread.

    ``state[side]`` is the last failover state logged by the running process,
    ``STARTUP`` before its first state line, ``DOWN`` while it is not running.
    Every change is stamped when seen (polled every 0.1 s; the logs' own
    timestamps have whole seconds only).  With several relationships
    (``pairs``), ``state[side]`` is their :func:`chaospairs.composite` and
    ``pair_events`` has each relationship's own moves.
    """

    def __init__(self, pairs: tuple[str, ...] = (PAIR_NAME,)) -> None:
        self.lock = threading.Lock()
        self.pairs = pairs
        self.state = {s: "DOWN" for s in SIDES}
        self.pair_state = {s: {p: "DOWN" for p in pairs} for s in SIDES}
        self.pair_events: list[dict] = []  # {t, side, pair, from, to, reason}
        self.events: list[dict] = []  # {t, side, from, to, reason}
        self.errors: list[dict] = []  # {t, side, line}
        self.logs: dict[str, list[Path]] = {s: [] for s in SIDES}
        self._files: dict[str, tuple[Path, int] | None] = {s: None for s in SIDES}
        self._partial: dict[str, str] = {s: "" for s in SIDES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-watcher", daemon=True)
        self._thread.start()

    def _set(self, side: str, new: str, reason: str, t: float | None = None, pair: str | None = None) -> None:
        for p in (self.pairs if pair is None else (pair,)):
            if self.pair_state[side][p] != new:
                self.pair_events.append({"t": t or _now(), "side": side, "pair": p,
                                         "from": self.pair_state[side][p], "to": new, "reason": reason})
                self.pair_state[side][p] = new
        new = chaospairs.composite(self.pair_state[side].values())
        old = self.state[side]
        if old == new:
            return
        self.state[side] = new
        self.events.append({"t": t or _now(), "side": side, "from": old, "to": new, "reason": reason})

    def attach(self, side: str, log_path: Path) -> None:
        """A new process of ``side`` writes to log_path (read from its start)."""
        with self.lock:
            self._read(side)
            self.logs[side].append(Path(log_path))
            self._files[side] = (Path(log_path), 0)
            self._partial[side] = ""
            self._set(side, "STARTUP", "process started")
        self.poll()

    def down(self, side: str, why: str) -> None:
        with self.lock:
            self._read(side)
            self._files[side] = None
            self._set(side, "DOWN", why)

    def _read(self, side: str) -> None:
        cur = self._files[side]
        if cur is None:
            return
        path, off = cur
        try:
            with open(path, "rb") as f:
                f.seek(off)
                chunk = f.read()
        except FileNotFoundError:
            return
        if not chunk:
            return
        self._files[side] = (path, off + len(chunk))
        text = self._partial[side] + chunk.decode(errors="replace")
        lines = text.split("\n")
        self._partial[side] = lines.pop()
        t = _now()
        for line in lines:
            if (m := _STATE_RX.search(line)) and m.group(1) in self.pair_state[side]:
                self._set(side, m.group(3), m.group(4), t, pair=m.group(1))
            elif _ERROR_RX.search(line):
                self.errors.append({"t": t, "side": side, "line": line.strip()[:300]})

    def poll(self) -> None:
        with self.lock:
            for side in SIDES:
                self._read(side)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 -- never die silently: note it and go on
                self.errors.append({"t": _now(), "side": "-", "line": f"watcher: {e!r}"})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.poll()

    def get(self, side: str) -> str:
        with self.lock:
            return self.state[side]

    def both(self, state: str) -> bool:
        with self.lock:
            return all(self.state[s] == state for s in SIDES)

    def any_in(self, side: str, state: str) -> bool:
        """Is one of the side's relationships in ``state``?"""
        with self.lock:
            return chaospairs.is_in(self.state[side], state)

    def timeline(self, t0: float, t1: float, pair: str | None = None) -> dict[str, list[tuple[float, float, str]]]:
        """Per side: (start, end, state) intervals clipped to [t0, t1], of
        the composite state or of one relationship's."""
        out: dict[str, list[tuple[float, float, str]]] = {}
        with self.lock:
            events = list(self.events) if pair is None else [e for e in self.pair_events if e["pair"] == pair]
        for side in SIDES:
            ev = [e for e in events if e["side"] == side]
            spans = []
            state, since = "DOWN", t0
            for e in ev:
                if e["t"] <= t0:
                    state = e["to"]
                    continue
                if e["t"] >= t1:
                    break
                spans.append((since, e["t"], state))
                state, since = e["to"], e["t"]
            spans.append((since, t1, state))
            out[side] = [(a, b, s) for a, b, s in spans if b > a]
        return out


# ------------------------------------------------------------------------------
# the lab
# ------------------------------------------------------------------------------


@dataclass
class ClientNs:
    kind: str  # perfdhcp, burst, dhclient, udhcpc
    ns: Netns
    iface: str
    port: str  # its port on the bridge (in lan)
    mac: str
    ip: str | None = None
    capture: subprocess.Popen | None = None
    pcap: Path | None = None


class ChaosLab:
    """The pair, its clients and the fault primitives."""

    def __init__(self, lab: Lab, opts: Options) -> None:
        self.lab = lab
        self.opts = opts
        self.lan = lab.netns("lan")
        self.br = lab.bridge(self.lan, "br0")
        self.srv_ns: dict[str, Netns] = {}
        self.srv_if: dict[str, str] = {}
        self.srv_port: dict[str, str] = {}
        for side in SIDES:
            ns = lab.netns(side)
            port, iface = lab.link(self.lan, ns, a_bridge=self.br, b_addr=f"{IP[side]}/16")
            self.srv_ns[side], self.srv_if[side], self.srv_port[side] = ns, iface, port
        self.clients: list[ClientNs] = []
        self._client("perfdhcp", "perf", PERF_IP)
        self._client("burst", "burst", BURST_IP)
        for i in range(opts.dhclients):
            self._client("dhclient", f"dh{i + 1}")
        for i in range(opts.udhcpcs):
            self._client("udhcpc", f"ud{i + 1}")
        self.rels = chaospairs.relationships(opts.relationships, PAIR_NAME, POOL)
        self.pair_names = tuple(r.name for r in self.rels)
        pairs = chaospairs.sections(self.rels, ips=IP, subnet=SUBNET, mclt=MCLT, poll_timeout=POLL_TIMEOUT,
                                    load_balancing=opts.load_balancing)
        self.procs = {side: CnrdProcess(self.srv_ns[side], CONFIG.format(name=side, iface=self.srv_if[side],
                                                      extra=f"log-settings = {opts.log_settings}"
                                                      if opts.log_settings else "", pairs=pairs),
                                        name=side) for side in SIDES}
        self.watcher = StateWatcher(self.pair_names)
        self.partitioned = False
        self.isolated: set[str] = set()
        self.expected_exit: dict[str, bool] = {s: False for s in SIDES}

    def _client(self, kind: str, role: str, ip: str | None = None) -> None:
        ns = self.lab.netns(role)
        port, iface = self.lab.link(self.lan, ns, a_bridge=self.br, b_addr=f"{ip}/16" if ip else None)
        self.lab.isolate(self.lan, port, True)
        self.clients.append(ClientNs(kind, ns, iface, port, ns.mac(iface), ip))

    # -- captures ----------------------------------------------------------

    def start_captures(self) -> None:
        for c in self.clients:
            c.pcap = self.lab.path(f"{c.ns.role}.pcap")
            c.capture = c.ns.popen("tcpdump", "-i", c.iface, "-n", "-U", "--immediate-mode", "-B", "16384", "-s", "1500",
                                   "-w", c.pcap, "udp and (port 67 or port 68)", name="tcpdump")
        for c in self.clients:
            cap = c.capture
            wait_for(lambda cap=cap: cap.poll() is not None or "listening on" in read_log(cap), 10,
                     what=f"tcpdump in {c.ns.name}")
            if c.capture.poll() is not None:
                raise RuntimeError(f"tcpdump in {c.ns.name} exited:\n{read_log(c.capture)}")

    def stop_captures(self) -> dict[str, dict]:
        stats = {}
        for c in self.clients:
            if c.capture is None:
                continue
            c.ns.stop(c.capture, signal.SIGINT, timeout=10)
            text = read_log(c.capture)
            m = re.search(r"(\d+) packets captured", text)
            d = re.search(r"(\d+) packets dropped by kernel", text)
            stats[c.ns.role] = {"captured": int(m.group(1)) if m else None,
                                "dropped_by_kernel": int(d.group(1)) if d else None}
        return stats

    # -- servers -----------------------------------------------------------

    def start(self, side: str) -> None:
        p = self.procs[side]
        p.start(timeout=30)
        self.expected_exit[side] = False
        self.watcher.attach(side, Path(p.proc.log_path))

    def kill9(self, side: str) -> None:
        self.expected_exit[side] = True
        self.procs[side].kill9()
        self.watcher.down(side, "kill -9")

    def stop(self, side: str) -> int | None:
        p = self.procs[side]
        if p.proc is None or p.proc.poll() is not None:
            return p.proc.returncode if p.proc else None
        self.expected_exit[side] = True
        rc = p.stop()
        self.watcher.down(side, "stopped (SIGTERM)")
        return rc

    def alive(self, side: str) -> bool:
        p = self.procs[side].proc
        return p is not None and p.poll() is None

    def wipe(self, side: str) -> None:
        shutil.rmtree(self.procs[side].data_dir, ignore_errors=True)

    def partition(self, on: bool) -> None:
        for side in SIDES:
            other = IP["backup" if side == "main" else "main"]
            self.srv_ns[side].run("ip", "route", "add" if on else "del", "blackhole", f"{other}/32")
        self.partitioned = on

    def isolate(self, side: str, on: bool) -> None:
        self.lab.isolate(self.lan, self.srv_port[side], on)
        (self.isolated.add if on else self.isolated.discard)(side)

    def ctl(self, side: str, *args: str) -> tuple[int, Any]:
        p = self.procs[side]
        r = p.ns.run(CNRCTL, "--config", str(p.config_path), "--json", *args, check=False, timeout=20)
        try:
            body = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            body = r.stdout
        return r.returncode, body if r.returncode == 0 else (r.stdout + r.stderr).strip()


def other(side: str) -> str:
    return "backup" if side == "main" else "main"


class Captures:
    """Every client namespace's capture, decoded as it grows."""

    def __init__(self, cl: ChaosLab) -> None:
        self.cl = cl
        self.readers = {c.ns.role: PcapReader(c.pcap) for c in cl.clients}
        self.by_ns: dict[str, list[Seen]] = {c.ns.role: [] for c in cl.clients}
        self.own: list[Seen] = []  # each namespace's own client traffic
        self.malformed = 0
        self.lock = threading.Lock()

    def update(self) -> list[Seen]:
        with self.lock:
            for c in self.cl.clients:
                seen, bad = decode_frames(self.readers[c.ns.role].read(), c.ns.role)
                self.malformed += bad
                self.by_ns[c.ns.role] += seen
                self.own += [p for p in seen if own(c, p)]
            return list(self.own)


# ------------------------------------------------------------------------------
# load: perfdhcp churn, dhclient and udhcpc loops
# ------------------------------------------------------------------------------


def _mac_plus(base: str, n: int) -> str:
    v = int(base.replace(":", ""), 16) + n
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def perfdhcp_stats(raw: str) -> dict[str, dict[str, int]]:
    """sent/received/drops/orphans per '***Statistics for: NAME***' block of
    perfdhcp's output (names with blanks too: 'REQUEST-ACK (renewal)')."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    for line in raw.splitlines():
        if m := re.match(r"\*\*\*Statistics for: (.+?)\*\*\*", line):
            cur = out.setdefault(m.group(1), {})
        elif cur is not None and (m := re.match(r"(sent packets|received packets|drops|orphans): (\d+)$", line)):
            cur[m.group(1).split()[0]] = int(m.group(2))
    return out


class Load:
    """Client load in background threads, every loop bounded in count and time."""

    def __init__(self, cl: ChaosLab, opts: Options, seed: int, until: float) -> None:
        self.cl = cl
        self.opts = opts
        self.seed = seed
        self.until = until  # time.time() after which no loop starts anything new
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.perf_runs: list[dict] = []
        self.client_runs: list[dict] = []
        self.errors: list[str] = []
        self._perf_proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def _done(self) -> bool:
        return self.stop_event.is_set() or _now() >= self.until

    def _sleep(self, s: float) -> None:
        self.stop_event.wait(max(0.0, min(s, self.until - _now())))

    def start(self) -> None:
        for c in self.cl.clients:
            target = {"perfdhcp": self._perf_loop, "dhclient": self._dhclient_loop,
                      "udhcpc": self._udhcpc_loop}.get(c.kind)
            if target is None:
                continue
            t = threading.Thread(target=self._guard, args=(target, c), name=f"load-{c.ns.role}", daemon=True)
            self.threads.append(t)
            t.start()

    def _guard(self, fn: Callable[[ClientNs], None], c: ClientNs) -> None:
        try:
            fn(c)
        except Exception:  # noqa: BLE001 -- reported with the run
            self.errors.append(f"{c.ns.role}: {traceback.format_exc()}")

    def stop(self, timeout: float = 40) -> None:
        self.stop_event.set()
        p = self._perf_proc
        if p is not None and p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGINT)  # perfdhcp prints its report on SIGINT
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.errors += [f"{t.name} still running after {timeout:g} s" for t in self.threads if t.is_alive()]

    def run_perfdhcp(self, c: ClientNs, argv: list[str], seconds: float, label: str) -> dict:
        t0 = _now()
        proc = c.ns.popen("perfdhcp", *argv, name="perfdhcp")
        if label == "churn":
            self._perf_proc = proc
        try:
            proc.wait(seconds + 20)
        except subprocess.TimeoutExpired:
            pass
        rc = c.ns.stop(proc, signal.SIGINT, timeout=5)
        raw = read_log(proc)
        ex = perfdhcp_stats(raw)
        zero = {"sent": 0, "received": 0, "drops": 0}
        return {"label": label, "start": t0, "end": _now(), "rc": rc, "argv": argv, "exchanges": ex,
                "DO": ex.get("DISCOVER-OFFER", zero), "RA": ex.get("REQUEST-ACK", zero),
                "raw_tail": None if ex else raw[-800:],
                "error": chaosload.perfdhcp_error(rc, ex, raw, interrupted=self.stop_event.is_set())}

    def _perf_loop(self, c: ClientNs) -> None:
        o = self.opts
        extra = []
        if o.perf_renew_rate:
            extra += ["-f", str(o.perf_renew_rate)]
        if o.perf_release_rate:
            extra += ["-F", str(o.perf_release_rate)]
        offset = 0
        for i in range(10_000):
            if self._done():
                break
            secs = int(max(1, min(o.perf_chunk, self.until - _now())))
            n = o.perf_rate * secs
            # perfdhcp's MACs run up from the base and restart at each run:
            # move the base so the runs go round all perf_clients clients
            first = offset % max(1, o.perf_clients)
            offset += n
            argv = ["-4", "-l", c.iface, "-r", str(o.perf_rate), "-p", str(secs), "-n", str(n),
                    "-R", str(o.perf_clients), "-b", f"mac={_mac_plus(PERF_MAC, first)}", "-d", "2", "-W", "2000000",
                    "-g", "single", "-s", str(chaosload.perf_seed(self.seed, "churn", i)), *extra]
            run = self.run_perfdhcp(c, argv, secs, "churn")
            with self.lock:
                self.perf_runs.append(run)
            if run["error"]:  # it fails the run (bench.chaosload); pause rather than spin on it
                _log(f"perfdhcp churn run {i}: {run['error']}")
                self._sleep(2)

    def _record(self, c: ClientNs, what: str, lease) -> None:
        with self.lock:
            self.client_runs.append({"t": _now(), "client": c.ns.role, "what": what, "address": lease.address,
                                     "released": lease.released, "server": lease.server,
                                     "timed_out": lease.timed_out, "rc": lease.returncode,
                                     "error": chaosload.client_run_error(what, lease.returncode, lease.timed_out,
                                                                         lease.output)})

    def _dhclient_loop(self, c: ClientNs) -> None:
        rng = random.Random(f"{self.seed}-{c.ns.role}")
        for _ in range(self.opts.max_client_cycles):
            if self._done():
                break
            self._record(c, "dhclient", dhclient(c.ns, c.iface, timeout=20, check=False))
            self._sleep(rng.uniform(2, 8))
            if self._done():
                break
            self._record(c, "renew", dhclient_renew(c.ns, c.iface, timeout=20, check=False))
            self._sleep(rng.uniform(2, 8))
            if self._done():
                break
            if rng.random() < 0.5:
                self._record(c, "release", dhclient_release(c.ns, c.iface, timeout=20, check=False))
                self._sleep(rng.uniform(1, 4))

    def _udhcpc_loop(self, c: ClientNs) -> None:
        rng = random.Random(f"{self.seed}-{c.ns.role}")
        for _ in range(self.opts.max_client_cycles):
            if self._done():
                break
            self._record(c, "udhcpc", udhcpc(c.ns, c.iface, timeout=20, check=False))
            self._sleep(rng.uniform(2, 8))
            if self._done():
                break
            self._record(c, "udhcpc-release", udhcpc_release(c.ns, c.iface, timeout=20, check=False))
            self._sleep(rng.uniform(1, 5))


# ------------------------------------------------------------------------------
# the fault injector
# ------------------------------------------------------------------------------


class NotNormal(Exception):
    """The pair did not get back to NORMAL within the bound."""


@dataclass
class Fault:
    kind: str
    side: str | None
    hold: float
    start: float = 0.0
    heal: float | None = None
    normal: float | None = None
    recovery_s: float | None = None  # heal -> both NORMAL
    bound_s: float = 0.0
    outage: tuple[float, float] | None = None  # a single server out of the clients' reach
    actions: list[tuple[float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    perf: dict | None = None
    partner_down: bool = True  # lost-db: does the operator set the survivor PARTNER-DOWN?

    def act(self, what: str) -> None:
        self.actions.append((_now(), what))
        _log(f"  {self.kind}: {what}")


# rough seconds each kind needs besides its hold (to see whether it fits)
NEEDS = {"kill": 5, "kill-partner-down": 6, "lost-db": MCLT + 12, "partition": POLL_TIMEOUT + 6,
         "partition-partner-down": POLL_TIMEOUT + 8, "cut-clients": 2, "burst": 5}


class Injector:
    def __init__(self, cl: ChaosLab, opts: Options, load: Load, caps: Captures) -> None:
        self.cl = cl
        self.opts = opts
        self.load = load
        self.caps = caps
        self.store_checks: list[dict] = []
        self.store_violations: list[dict] = []
        self.missing_seen: dict[tuple, dict] = {}
        self.rng = random.Random(opts.seed)
        self.faults: list[Fault] = []
        self.violations: list[dict] = []
        self.skipped: list[str] = []
        self.pd_actions: list[dict] = []

    # -- waiting -----------------------------------------------------------

    def wait_state(self, side: str, state: str, timeout: float) -> bool:
        try:
            wait_for(lambda: self.cl.watcher.get(side) == state, timeout, interval=0.1, what=f"{side} {state}")
            return True
        except AssertionError:
            return False

    def wait_normal(self, timeout: float) -> float | None:
        """Seconds until both sides are NORMAL, or None after timeout."""
        t0 = _now()
        try:
            wait_for(lambda: self.cl.watcher.both("NORMAL"), timeout, interval=0.1, what="both NORMAL")
        except AssertionError:
            return None
        return _now() - t0

    def settle(self, seconds: float, timeout: float) -> bool:
        """Both NORMAL for ``seconds`` without a break (within timeout)."""
        deadline = _now() + timeout
        while _now() < deadline:
            if self.wait_normal(max(0.1, deadline - _now())) is None:
                return False
            since = _now()
            while _now() - since < seconds and self.cl.watcher.both("NORMAL"):
                time.sleep(0.1)
            if self.cl.watcher.both("NORMAL"):
                return True
        return False

    # -- operator actions, with the seed's rules ---------------------------

    def set_partner_down(self, f: Fault, side: str, deliberate: bool = False) -> bool:
        """``cnrctl dhcp setPartnerDown`` on ``side``, only where the rules allow it."""
        cl, partner = self.cl, other(side)
        why = None
        if cl.watcher.any_in(partner, "PARTNER-DOWN"):
            why = "its partner is PARTNER-DOWN (never both)"
        elif cl.alive(partner) and partner not in cl.isolated and not deliberate:
            why = "its partner is running and reachable"
        elif deliberate and not cl.partitioned:
            why = "no partition in place"
        if why:
            f.notes.append(f"setPartnerDown on {side} not done: {why}")
            self.skipped.append(f"{f.kind}: setPartnerDown on {side}: {why}")
            return False
        for name in cl.pair_names:  # every relationship with that partner
            rc, body = cl.ctl(side, "dhcp", "setPartnerDown", name)
            f.act(f"cnrctl dhcp setPartnerDown {name} on {side}: rc {rc} {body}")
            self.pd_actions.append({"t": _now(), "side": side, "pair": name, "fault": f.kind, "rc": rc,
                                    "answer": body, "partner_alive": cl.alive(partner),
                                    "partitioned": cl.partitioned})
            if rc != 0:
                f.notes.append(f"setPartnerDown {name} refused on {side}: {body}")
                return False
        if not self.wait_state(side, "PARTNER-DOWN", 10):
            f.notes.append(f"{side} did not log PARTNER-DOWN within 10 s")
            return False
        return True

    # -- faults ------------------------------------------------------------

    def run(self, until: float) -> None:
        kinds = list(self.opts.faults)
        queue: list[str] = []
        while True:
            if not queue:
                queue = kinds[:]
                self.rng.shuffle(queue)
            remaining = until - _now()
            lo = self.opts.hold[0]
            fitting = [k for k in queue if NEEDS[k] + lo <= remaining]
            if not fitting:
                break
            kind = fitting[0]
            queue.remove(kind)
            side = self.rng.choice(SIDES)
            hold = self.rng.uniform(*self.opts.hold)
            hold = max(lo, min(hold, remaining - NEEDS[kind]))
            f = Fault(kind, None if kind in ("partition", "burst") else side, round(hold, 1))
            if kind == "lost-db":  # the seed's procedure sets the survivor PARTNER-DOWN; cnrd must cope either way
                f.partner_down = self.rng.random() < 0.7
            f.bound_s = self.opts.normal_bound + (MCLT if kind == "lost-db" else 0)
            self.faults.append(f)
            _log(f"fault {len(self.faults)}: {kind} side={f.side} hold={f.hold:.1f}s "
                 f"({remaining:.0f} s left)")
            f.start = _now()
            try:
                getattr(self, "_" + kind.replace("-", "_"))(f)
            finally:
                if f.heal is None:
                    f.heal = _now()
            rec = self.wait_normal(f.bound_s)
            if rec is None:
                f.notes.append(f"not both NORMAL within {f.bound_s:.0f} s of the heal")
                self.violations.append({"type": "not-normal", "fault": len(self.faults), "kind": kind,
                                        "detail": f"pair not NORMAL {f.bound_s:.0f} s after healing "
                                                  f"{kind} (states {dict(self.cl.watcher.state)})"})
                raise NotNormal(kind)
            f.normal = _now()
            f.recovery_s = round(max(0.0, f.normal - f.heal), 2)
            if f.outage is not None and f.outage[1] is None:
                f.outage = (f.outage[0], f.normal)
            _log(f"  both NORMAL {f.recovery_s:.1f} s after the heal")
            if not self.settle(self.opts.settle, f.bound_s):
                self.violations.append({"type": "not-normal", "fault": len(self.faults), "kind": kind,
                                        "detail": "pair did not stay NORMAL after the heal"})
                raise NotNormal(kind)
            self.check_stores(f)
            time.sleep(max(0.0, min(self.rng.uniform(*self.opts.gap), until - _now())))

    def check_stores(self, f: Fault) -> None:
        """(b) after every fault, once NORMAL: what the clients hold is in both
        stores (after a lost database too: the partner gave it back)."""
        n = len(self.faults)
        missing, counts, _ = audit_stores(self.cl, self.caps, 15)
        counts = {"fault": n, "kind": f.kind, "t": _iso(_now()), **counts, "missing": len(missing)}
        self.store_checks.append(counts)
        f.act(f"stores checked: {counts['expected']} leases held by clients, {len(missing)} missing")
        self.note_missing(missing, f"after fault {n} ({f.kind})")

    def note_missing(self, missing: list[dict], when: str) -> None:
        """One violation per lost lease and server, however many checks see it."""
        for m in missing:
            key = (m["server"], m["address"], m["client"], m["acked"])
            v = self.missing_seen.get(key)
            if v is None:
                v = self.missing_seen[key] = {"type": "missing-lease", "when": when, "seen_at": [], **m}
                self.store_violations.append(v)
            v["seen_at"].append(when)
            v["record"] = m["record"]

    def _kill(self, f: Fault) -> None:
        self.cl.kill9(f.side)
        f.act(f"kill -9 {f.side}")
        f.outage = (_now(), None)
        time.sleep(f.hold)
        self._restart(f)

    def _restart(self, f: Fault) -> None:
        # the heal is the operator's restart, so heal -> NORMAL includes the
        # process start-up (until it serves DHCP) as well as the handshake
        t = _now()
        try:
            self.cl.start(f.side)
        except AssertionError as e:
            f.notes.append(f"restart failed: {e}")
            self.violations.append({"type": "restart-failed", "kind": f.kind, "detail": str(e)[-2000:]})
            raise
        f.heal = t
        f.act(f"restarted {f.side} (serving DHCP after {_now() - t:.1f} s)")

    def _kill_partner_down(self, f: Fault, wipe: bool = False) -> None:
        survivor = other(f.side)
        self.cl.kill9(f.side)
        f.act(f"kill -9 {f.side}")
        f.outage = (_now(), None)
        if wipe:
            self.cl.wipe(f.side)
            f.act(f"deleted {f.side}'s lease database")
        t = _now()
        if self.wait_state(survivor, "COMMUNICATIONS-INTERRUPTED", POLL_TIMEOUT + 15):
            f.act(f"{survivor} COMMUNICATIONS-INTERRUPTED after {_now() - t:.1f} s")
            if f.partner_down:
                self.set_partner_down(f, survivor)
            else:
                f.act(f"no setPartnerDown: {survivor} stays COMMUNICATIONS-INTERRUPTED")
        else:
            f.notes.append(f"{survivor} not COMMUNICATIONS-INTERRUPTED (state {self.cl.watcher.get(survivor)})")
        time.sleep(max(0.0, f.hold - (_now() - t)))
        self._restart(f)

    def _lost_db(self, f: Fault) -> None:
        self._kill_partner_down(f, wipe=True)

    def _partition(self, f: Fault, partner_down: bool = False) -> None:
        """Blackhole routes between the servers; the hold starts once both are
        COMMUNICATIONS-INTERRUPTED (and, with partner_down, one is PARTNER-DOWN)."""
        self.cl.partition(True)
        f.act("partitioned the servers (blackhole routes both ways)")
        try:
            t = _now()
            ok = all(self.wait_state(s, "COMMUNICATIONS-INTERRUPTED", POLL_TIMEOUT + 15) for s in SIDES)
            f.act(f"both COMMUNICATIONS-INTERRUPTED after {_now() - t:.1f} s" if ok
                  else f"not both COMMUNICATIONS-INTERRUPTED: {dict(self.cl.watcher.state)}")
            if partner_down and ok:
                self.set_partner_down(f, f.side, deliberate=True)
            time.sleep(f.hold)
        finally:
            self.cl.partition(False)
            f.heal = _now()
            f.act("healed the partition")

    def _partition_partner_down(self, f: Fault) -> None:
        self._partition(f, partner_down=True)

    def _cut_clients(self, f: Fault) -> None:
        self.cl.isolate(f.side, True)
        f.act(f"{f.side} cut off from the clients (bridge port isolated)")
        f.outage = (_now(), None)
        try:
            time.sleep(f.hold)
        finally:
            self.cl.isolate(f.side, False)
            f.heal = _now()
            f.outage = (f.outage[0], f.heal)
            f.act(f"{f.side} reachable again")

    def _burst(self, f: Fault) -> None:
        c = next(c for c in self.cl.clients if c.kind == "burst")
        n = 10 * MAX_DHCP_REQUESTS
        k = sum(1 for x in self.faults if x.kind == "burst") - 1
        argv = ["-4", "-l", c.iface, "-r", str(n), "-p", "2", "-n", str(n), "-R", str(n),
                "-b", f"mac={_mac_plus(BURST_MAC, k * n)}",  # new clients at every burst
                "-d", "2", "-W", "2000000", "-g", "single",
                "-s", str(chaosload.perf_seed(self.opts.seed, "burst", len(self.faults)))]
        f.act(f"perfdhcp burst: {n} DORA at {n}/s")
        f.perf = self.load.run_perfdhcp(c, argv, 2, "burst")
        f.heal = _now()
        do, ra = f.perf["DO"], f.perf["RA"]
        f.act(f"burst done: DISCOVER {do['sent']} sent / {do['received']} answered, "
              f"REQUEST {ra['sent']} / {ra['received']}")


# ------------------------------------------------------------------------------
# the audit
# ------------------------------------------------------------------------------


@dataclass
class Audit:
    acks: int = 0
    acks_by_server: dict = field(default_factory=dict)
    leases: int = 0  # distinct (client, address) pairs ACKed
    clients: int = 0
    addresses: int = 0
    naks: int = 0
    releases: int = 0
    duplicates: list = field(default_factory=list)
    near_misses: int = 0
    holdings: dict = field(default_factory=dict)  # client -> (address, end, ack time, server id)


def own(c: ClientNs, p: Seen) -> bool:
    """Is ``p`` (seen in c's namespace) this namespace's client traffic?"""
    if c.kind in ("perfdhcp", "burst"):
        return p.giaddr == c.ip
    return p.chaddr == c.mac


def audit_leases(packets: list[Seen]) -> Audit:
    """(a): replay ACKs, releases, declines and NAKs in time order."""
    a = Audit()
    holders: dict[str, dict[str, float]] = defaultdict(dict)  # address -> client -> end
    holding: dict[str, tuple[str, float, float, str | None]] = {}  # client -> (address, end, ack t, server)
    pairs = set()
    by_server: Counter = Counter()
    for p in sorted(packets, key=lambda p: p.t):
        c = p.chaddr
        if p.op == 2 and p.mtype == 5 and p.yiaddr != "0.0.0.0":
            a.acks += 1
            by_server[p.server_id or "?"] += 1
            addr = p.yiaddr
            end = p.t + (p.lease_time if p.lease_time is not None else 0)
            pairs.add((c, addr))
            prev = holding.get(c)
            if prev is not None and prev[0] != addr:  # the client moved: it gave the old address up
                holders[prev[0]][c] = min(holders[prev[0]].get(c, p.t), p.t)
            for c2, end2 in holders[addr].items():
                if c2 == c or end2 <= p.t:
                    continue
                if end2 - p.t > OVERLAP_TOLERANCE_S:
                    h2 = holding.get(c2)
                    a.duplicates.append({
                        "address": addr, "t": _iso(p.t), "client": c, "server": p.server_id,
                        "lease_time": p.lease_time, "other_client": c2,
                        "other_until": _iso(end2), "overlap_s": round(end2 - p.t, 1),
                        "other_ack": _iso(h2[2]) if h2 and h2[0] == addr else None,
                        "other_server": h2[3] if h2 and h2[0] == addr else None})
                else:
                    a.near_misses += 1
            holders[addr][c] = end
            holding[c] = (addr, end, p.t, p.server_id)
        elif p.op == 2 and p.mtype == 6:
            a.naks += 1
            prev = holding.pop(c, None)
            if prev is not None:
                holders[prev[0]][c] = min(holders[prev[0]].get(c, p.t), p.t)
        elif p.op == 1 and p.mtype in (4, 7):  # DECLINE, RELEASE
            addr = p.ciaddr if p.mtype == 7 else (p.requested or p.ciaddr)
            a.releases += p.mtype == 7
            if c in holders.get(addr, {}):
                holders[addr][c] = min(holders[addr][c], p.t)
            prev = holding.get(c)
            if prev is not None and prev[0] == addr:
                holding.pop(c)
    a.acks_by_server = dict(by_server)
    a.leases = len(pairs)
    a.clients = len({c for c, _ in pairs})
    a.addresses = len({x for _, x in pairs})
    a.holdings = holding
    return a


@dataclass
class Txn:
    ns: str
    kind: str
    client: str
    xid: int
    first: float
    last: float
    mtype: int
    answered: float | None = None


def transactions(cl: ChaosLab, packets_by_ns: dict[str, list[Seen]]) -> list[Txn]:
    """Client requests (DISCOVER, REQUEST, INFORM) by xid, with their first answer."""
    out: list[Txn] = []
    for c in cl.clients:
        txns: dict[tuple[str, int], Txn] = {}
        for p in sorted(packets_by_ns.get(c.ns.role, []), key=lambda p: p.t):
            if not own(c, p):
                continue
            key = (p.chaddr, p.xid)
            if p.op == 1 and p.mtype in (1, 3, 8):
                t = txns.get(key)
                if t is None or (t.answered is not None and p.mtype != t.mtype):
                    # perfdhcp may reuse an xid for the REQUEST after the OFFER
                    t = txns[key] = Txn(c.ns.role, c.kind, p.chaddr, p.xid, p.t, p.t, p.mtype)
                    out.append(t)
                else:
                    t.last = p.t
            elif p.op == 2 and p.mtype in (2, 5, 6):
                t = txns.get(key)
                if t is not None and t.answered is None:
                    t.answered = p.t
    return out


def unanswered(txns: list[Txn]) -> dict:
    """Longest time a client went unanswered.

    Real clients (dhclient, udhcpc), each on its own: from its first request
    that got no answer to the next answer it got.  perfdhcp's thousands of
    clients ask a few times each, so for them the gap counts for the load as
    a whole: from a request nobody answered to the next answer to any of them.
    """
    best: dict[str, dict] = {}

    def note(label: str, start: float, end: float, **extra) -> None:
        cur = best.get(label)
        if cur is None or end - start > cur["seconds"]:
            best[label] = {"seconds": round(end - start, 2), "from": start, "to": end, **extra}

    def streaks(items: list[Txn], label: str) -> None:
        events = [(t.first, 0, t) for t in items] + [(t.answered, 1, t) for t in items if t.answered is not None]
        events.sort(key=lambda e: (e[0], e[1]))
        start = None
        for when, what, t in events:
            if what == 0 and t.answered is None and start is None:
                start = when
            elif what == 1 and start is not None:
                note(label, start, when)
                start = None
        if start is not None:
            note(label, start, max(start, max(t.last for t in items)), never_answered=True)

    real: dict[str, list[Txn]] = defaultdict(list)
    perf = []
    for t in txns:
        if t.kind in ("dhclient", "udhcpc"):
            real[f"{t.ns} ({t.kind} {t.client})"].append(t)
        elif t.kind == "perfdhcp":
            perf.append(t)
    for label, items in real.items():
        streaks(items, label)
    if perf:
        streaks(perf, "perfdhcp (any client)")
    return best


def served_in(txns: list[Txn], windows: list[tuple[str, float, float]], perf_runs: list[dict]) -> list[dict]:
    """(d): client requests first sent inside each window, and how many got an
    answer (at all, and before the window ended); with perfdhcp's own counts
    of the runs that overlapped the window (coarser: a run is 15 s)."""
    out = []
    for label, a, b in windows:
        row = {"fault": label, "from": _iso(a), "to": _iso(b), "seconds": round(b - a, 1)}
        runs = [r for r in perf_runs if r["start"] < b and r["end"] > a]
        tot: Counter = Counter()
        for r in runs:
            for name, st in r["exchanges"].items():
                if name != "RELEASE":
                    tot["sent"] += st.get("sent", 0)
                    tot["received"] += st.get("received", 0)
        row["perfdhcp_runs_overlapping"] = {"runs": len(runs), **tot}
        for kind in ("perfdhcp", "real"):
            sel = [t for t in txns if a <= t.first < b
                   and (t.kind == "perfdhcp" if kind == "perfdhcp" else t.kind in ("dhclient", "udhcpc"))]
            n = len(sel)
            ok = sum(1 for t in sel if t.answered is not None)
            inside = sum(1 for t in sel if t.answered is not None and t.answered < b)
            row[kind] = {"requests": n, "answered": ok, "pct": round(100.0 * ok / n, 1) if n else None,
                         "answered_before_the_end": inside}
        out.append(row)
    return out


def read_stores(cl: ChaosLab) -> dict[str, dict[str, Lease]]:
    """side -> address -> lease record, from each LMDB store (read-only, next
    to the running server, as CnrdProcess.leases() does)."""
    return {side: {int_to_ip(l.address): l for l in cl.procs[side].leases()} for side in SIDES}


def _record(lease: Lease | None) -> dict | None:
    if lease is None:
        return None
    return {"state": lease.state.name, "hw": format_hw(lease.hw[1:]) if lease.hw else None,
            "start": _iso(lease.start), "expiration": _iso(lease.expiration) if lease.expiration > 0 else None,
            "cltt": _iso(lease.cltt), "potential_expiration": _iso(lease.potential_expiration),
            "partner_time": _iso(lease.partner_time)}


def check_stores(stores: dict[str, dict[str, Lease]], holdings: dict, t_audit: float) -> tuple[list[dict], dict]:
    """(b): every lease a client still holds is LEASED to it in both stores."""
    expected = {c: h for c, h in holdings.items() if h[1] > t_audit + EXPIRY_MARGIN_S}
    leased = {side: {a: format_hw(l.hw[1:]) for a, l in recs.items() if l.state is LeaseState.LEASED}
              for side, recs in stores.items()}
    missing = []
    for c, (addr, end, t_ack, sid) in sorted(expected.items(), key=lambda kv: kv[1][2]):
        for side in SIDES:
            got = leased[side].get(addr)
            if got != c:
                missing.append({"server": side, "address": addr, "client": c, "acked": _iso(t_ack),
                                "by": sid, "until": _iso(end), "store_has": got,
                                "record": _record(stores[side].get(addr))})
    return missing, {"expected": len(expected), "main_leased": len(leased["main"]),
                     "backup_leased": len(leased["backup"])}


def audit_stores(cl: ChaosLab, caps: Captures, wait_s: float) -> tuple[list[dict], dict, Audit]:
    """(b) as of now, from the captures so far.

    The stores are read first and the captures after, and only clients quiet
    for a second around that read are judged (a RELEASE the server already
    handled may not be in the capture file yet).  What is still missing is
    looked for again, everything read afresh, for up to wait_s: binding
    updates on their way to the partner."""
    t_start = _now()
    first = None
    while True:
        t_read = _now()
        stores = read_stores(cl)
        time.sleep(1.0)  # what the clients sent around the read is in the captures by now
        packets = caps.update()
        cutoff = t_read - 1.0
        a = audit_leases([p for p in packets if p.t <= cutoff])
        busy = {p.chaddr for p in packets if p.t > cutoff}
        holdings = {c: h for c, h in a.holdings.items() if c not in busy}
        missing, counts = check_stores(stores, holdings, t_read)
        counts["not_judged_busy"] = len(busy & set(a.holdings))
        if first is None:
            first = missing
        if not missing or _now() - t_start >= wait_s:
            counts["waited_s"] = round(_now() - t_start, 1)
            if first:
                # missing at the first look, found later: binding updates on their way
                counts["late"] = {"count": len(first), "by_server": dict(Counter(m["server"] for m in first)),
                                  "oldest_ack": min(m["acked"] for m in first), "sample": first[:3]}
            return missing, counts, audit_leases(packets)
        time.sleep(0.5)


# ------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------


def run(opts: Options, lab: Lab | None = None) -> dict:
    """One chaos run; returns the report (``violations`` must be empty)."""
    missing = missing_requirements(("ip", "bridge", "dhclient", "udhcpc", "perfdhcp", "tcpdump"))
    if missing:
        raise RuntimeError("bench.chaos needs root and: " + ", ".join(missing))
    own_lab = lab is None
    lab = lab or Lab()
    try:
        return _run(lab, opts)
    except BaseException:
        if opts.keep is None:
            opts.keep = REPO / f"results/chaos-s{opts.seed}-{time.strftime('%Y%m%dT%H%M%S')}-error"
        raise
    finally:
        if opts.keep:
            _keep(lab, opts.keep)
        if own_lab:
            lab.close()


def _keep(lab: Lab, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in lab.dir.iterdir():
        if p.is_file() and p.suffix in (".log", ".pcap", ".ini"):
            shutil.copy2(p, dest / p.name)
        elif p.is_dir() and p.name.endswith("-data"):  # the lease stores (LMDB), as left at the end
            shutil.copytree(p, dest / p.name, dirs_exist_ok=True)
    _log(f"logs and captures kept in {dest}")


def _run(lab: Lab, opts: Options) -> dict:
    t_begin = _now()
    cl = ChaosLab(lab, opts)
    report: dict[str, Any] = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
                              "lab": lab.tag, "started": _iso(t_begin)}
    violations: list[dict] = []
    load = injector = None
    try:
        cl.start_captures()
        for side in SIDES:
            cl.start(side)
        wait_for(lambda: cl.watcher.both("NORMAL"), 60, what="both NORMAL at the start")
        t0 = _now()
        report["pair_normal_s"] = round(t0 - t_begin, 2)
        _log(f"pair NORMAL after {t0 - t_begin:.1f} s; load and faults for {opts.duration:.0f} s (seed {opts.seed})")
        until = t0 + opts.duration
        load = Load(cl, opts, opts.seed, until)
        load.start()
        caps = Captures(cl)
        injector = Injector(cl, opts, load, caps)
        time.sleep(min(opts.warmup, opts.duration / 4))
        try:
            injector.run(until)
        except NotNormal as e:
            _log(f"stopped injecting: pair not NORMAL after {e}")
        except AssertionError as e:  # a restart that failed (recorded)
            _log(f"stopped injecting: {e}")
        violations += injector.violations
        # the rest of the run: load only
        while _now() < until and not violations:
            time.sleep(min(1.0, until - _now()))
        _log("load stopping")
        t_load_stop = _now()
        load.stop()
        # (c): each fault's heal -> NORMAL is in its record; the pair must be NORMAL at the end too
        final = injector.wait_normal(opts.normal_bound + MCLT)
        report["final_normal"] = {"normal": final is not None, "waited_s": round(final, 2) if final is not None else None,
                                  "bound_s": opts.normal_bound + MCLT}
        if final is None:
            violations.append({"type": "not-normal", "detail": f"pair not NORMAL at the end: {dict(cl.watcher.state)}"})
        time.sleep(3)  # the last binding updates
        capture_stats = cl.stop_captures()
        t_audit = _now()
        # (a) over the whole run, (b) at the end, with the servers running
        # (LMDB allows a second, read-only reader)
        missing_leases: list[dict] = []
        store_counts: dict = {}
        if all(cl.alive(s) for s in SIDES):
            missing_leases, store_counts, a = audit_stores(cl, caps, SYNC_WAIT_S)
        else:
            a = audit_leases(caps.update())
            violations.append({"type": "server-down", "detail": "a server was not running at the audit"})
        packets, by_ns, bad = caps.own, caps.by_ns, caps.malformed
        for d in a.duplicates:
            violations.append({"type": "duplicate", **d})
        injector.note_missing(missing_leases, "end")
        violations += injector.store_violations
        wiped_before = []
        lost_db = [(f.start, f.side) for f in injector.faults if f.kind == "lost-db"]
        side_ip = {IP[s]: s for s in SIDES}
        for addr, end, t_ack, sid in a.holdings.values():
            if end > t_audit + EXPIRY_MARGIN_S and any(side_ip.get(sid) == s and t_ack < t
                                                      for t, s in lost_db):
                wiped_before.append(addr)
        store_counts["held_across_a_lost_database"] = len(wiped_before)
        # unexpected exits and both-PARTNER-DOWN
        for side in SIDES:
            if not cl.alive(side) and not cl.expected_exit[side]:
                violations.append({"type": "server-exited", "side": side,
                                   "detail": cl.procs[side].log()[-2000:]})
        cl.watcher.poll()
        t_end = _now()
        tl = cl.watcher.timeline(t0, t_end)
        for side in SIDES:
            rc = cl.stop(side)
            report.setdefault("server_exit", {})[side] = rc
        cl.watcher.stop()
        for name in cl.pair_names:  # never both partners PARTNER-DOWN, in any relationship
            ptl = cl.watcher.timeline(t0, t_end, pair=name)
            both_pd = _overlaps([(a_, b_) for a_, b_, s in ptl["main"] if s == "PARTNER-DOWN"],
                                [(a_, b_) for a_, b_, s in ptl["backup"] if s == "PARTNER-DOWN"])
            if both_pd:
                violations.append({"type": "both-partner-down", "pair": name,
                                   "detail": [(_iso(x), _iso(y)) for x, y in both_pd]})
        for e in cl.watcher.errors:
            violations.append({"type": "log-error", "side": e["side"], "t": _iso(e["t"]), "line": e["line"]})
        # the load itself: a run whose generators failed or idled audited nothing
        fault_spans = [(f.start, f.normal or f.heal or t_load_stop) for f in injector.faults]
        acks = [p for p in packets if p.op == 2 and p.mtype == 5 and p.yiaddr != "0.0.0.0"]
        acks_by_ns = Counter(p.ns for p in acks)
        # who answers while nothing is broken: the main alone (hot standby), both (balanced, symmetrical)
        calm = Counter(p.server_id or "?" for p in acks if not any(x <= p.t <= y for x, y in fault_spans))
        verdict = chaosload.judge(
            chaosload.Plan(opts.perf_rate, t_load_stop - t0, chaosload.fault_free_seconds(t0, t_load_stop, fault_spans)),
            chaosload.generators([(c.ns.role, c.kind) for c in cl.clients], load.perf_runs, load.client_runs,
                                 [f.perf for f in injector.faults if f.perf], acks_by_ns),
            load.errors)
        report["load"] = verdict.to_json()
        if not verdict.ok:
            report["load_errors"] = verdict.reasons
            violations.append({"type": "load", "detail": verdict.reasons})
        # (d) and the longest unanswered stretch
        txns = transactions(cl, by_ns)
        windows = [(f"{i + 1} {f.kind} {f.side}", f.outage[0], f.outage[1]) for i, f in enumerate(injector.faults)
                   if f.outage and f.outage[1]]
        report.update({
            "duration_s": round(t_end - t_begin, 1),
            "faults": [_fault_json(i, f) for i, f in enumerate(injector.faults)],
            "faults_per_kind": dict(Counter(f.kind for f in injector.faults)),
            "operator_partner_down": [{**x, "t": _iso(x["t"])} for x in injector.pd_actions],
            "skipped_actions": injector.skipped,
            "leases": {"acks": a.acks, "acks_by_server": a.acks_by_server,
                       "acks_by_relationship": dict(Counter(
                           chaospairs.relationship_of(cl.rels, p.yiaddr) or "?" for p in packets
                           if p.op == 2 and p.mtype == 5 and p.yiaddr != "0.0.0.0")),
                       "acks_by_server_outside_faults": dict(calm),
                       "client_address_pairs": a.leases,
                       "clients": a.clients, "addresses": a.addresses, "naks": a.naks, "releases": a.releases,
                       "near_misses_within_tolerance": a.near_misses},
            "stores": store_counts,
            "store_checks_after_faults": injector.store_checks,
            "states": _state_times(tl),
            "transitions": [{**e, "t": _iso(e["t"])} for e in cl.watcher.events],
            "relationship_transitions": [{**e, "t": _iso(e["t"])} for e in cl.watcher.pair_events],
            "unanswered": {k: {**v, "from": _iso(v["from"]), "to": _iso(v["to"]),
                               "during": _during(injector.faults, v["from"], v["to"])}
                           for k, v in unanswered(txns).items()},
            "requests": _request_totals(txns),
            "outages": served_in(txns, windows, load.perf_runs),
            "perfdhcp": _perf_summary(load.perf_runs),
            "clients": _client_summary(load.client_runs),
            "captures": {"stats": capture_stats, "packets": len(packets), "malformed": bad},
            "last_fault_recovery_s": injector.faults[-1].recovery_s if injector.faults else None,
            "recovery_s_per_kind": {k: {"max": max(v), "mean": round(sum(v) / len(v), 2)} for k, v in
                                    _group((f.kind, f.recovery_s) for f in injector.faults
                                           if f.recovery_s is not None).items()},
            "violations": violations,
            "passed": not violations and verdict.ok,
        })
        return report
    finally:
        if load is not None:
            load.stop(timeout=5)
        cl.watcher.stop()
        if opts.keep is None and violations:
            opts.keep = REPO / f"results/chaos-s{opts.seed}-{time.strftime('%Y%m%dT%H%M%S')}"


def _group(pairs: Iterable[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for k, v in pairs:
        out[k].append(v)
    return dict(out)


def _overlaps(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for a, b in xs:
        for c, d in ys:
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                out.append((lo, hi))
    return out


def _during(faults: list[Fault], a: float, b: float) -> list[str]:
    out = []
    for i, f in enumerate(faults):
        end = f.normal or f.heal or f.start
        if f.start < b and end > a:
            out.append(f"{i + 1} {f.kind}{' ' + f.side if f.side else ''}")
    return out


def _fault_json(i: int, f: Fault) -> dict:
    return {"n": i + 1, "kind": f.kind, "side": f.side, "hold_s": f.hold, "start": _iso(f.start),
            "heal": _iso(f.heal), "normal": _iso(f.normal), "recovery_s": f.recovery_s, "bound_s": f.bound_s,
            "outage": [_iso(f.outage[0]), _iso(f.outage[1])] if f.outage else None,
            "actions": [(_iso(t), w) for t, w in f.actions], "notes": f.notes,
            **({"burst": {k: f.perf[k] for k in ("DO", "RA", "rc", "error")}} if f.perf else {})}


def _state_times(tl: dict) -> dict:
    out = {}
    for side, spans in tl.items():
        acc: Counter = Counter()
        for a, b, s in spans:
            acc[s] += b - a
        out[side] = {s: round(v, 1) for s, v in sorted(acc.items(), key=lambda kv: -kv[1])}
    return out


def _request_totals(txns: list[Txn]) -> dict:
    out = {}
    for kind in ("perfdhcp", "burst", "dhclient", "udhcpc"):
        sel = [t for t in txns if t.kind == kind]
        ok = sum(1 for t in sel if t.answered is not None)
        out[kind] = {"requests": len(sel), "answered": ok,
                     "pct": round(100.0 * ok / len(sel), 1) if sel else None}
    return out


def _perf_summary(runs: list[dict]) -> dict:
    tot: dict[str, Counter] = defaultdict(Counter)
    for r in runs:
        for name, st in r["exchanges"].items():
            tot[name].update(st)
    return {"runs": len(runs), "exchanges": {k: dict(v) for k, v in tot.items()},
            "per_run": [{"start": _iso(r["start"]), "end": _iso(r["end"]), "rc": r["rc"],
                         **{k: [v.get("sent", 0), v.get("received", 0)] for k, v in r["exchanges"].items()},
                         **({"output": r["raw_tail"]} if r["raw_tail"] else {})} for r in runs]}


def _client_summary(runs: list[dict]) -> dict:
    out: dict[str, Counter] = defaultdict(Counter)
    for r in runs:
        ok = r["address"] is not None or r["released"] is not None
        out[r["what"]]["runs"] += 1
        out[r["what"]]["ok"] += ok
    return {k: dict(v) for k, v in out.items()}


# ------------------------------------------------------------------------------
# the report as text
# ------------------------------------------------------------------------------


def text_report(r: dict) -> str:
    L = []
    s = r["settings"]
    L.append(f"cnrd chaos run: seed {s['seed']}, {s['duration']:.0f} s of faults "
             f"({', '.join(s['faults'])}), lab {r['lab']}, {r.get('duration_s', 0):.0f} s in all; "
             f"{s.get('relationships', 1)} relationship(s), load balancing {'on' if s.get('load_balancing') else 'off'}")
    L.append(f"pair NORMAL {r.get('pair_normal_s')} s after start")
    L.append("")
    L.append("faults:")
    for f in r.get("faults", []):
        L.append(f"  {f['n']:2d} {f['start'][11:23]} {f['kind']:<23} {f['side'] or '-':<6} hold {f['hold_s']:5.1f} s"
                 f"  -> NORMAL {f['recovery_s'] if f['recovery_s'] is not None else '-'} s after heal"
                 f" (bound {f['bound_s']:.0f} s)")
        for t, what in f["actions"]:
            L.append(f"       {t[11:23]} {what}")
        for n in f["notes"]:
            L.append(f"       note: {n}")
    L.append(f"faults per kind: {r.get('faults_per_kind')}")
    L.append("heal -> both NORMAL, per kind (s): " + ", ".join(
        f"{k} max {v['max']} mean {v['mean']}" for k, v in r.get("recovery_s_per_kind", {}).items()))
    L.append(f"last fault: both NORMAL {r.get('last_fault_recovery_s')} s after its heal; "
             f"at the end: {r.get('final_normal')}")
    le = r.get("leases", {})
    L.append("")
    L.append(f"leases: {le.get('acks')} ACKs ({le.get('acks_by_server')}; by relationship "
             f"{le.get('acks_by_relationship')}; outside faults {le.get('acks_by_server_outside_faults')}), "
             f"{le.get('client_address_pairs')} "
             f"client/address pairs, {le.get('clients')} clients, {le.get('addresses')} addresses; "
             f"{le.get('naks')} NAKs, {le.get('releases')} releases")
    L.append(f"stores at the audit: {r.get('stores')}")
    L.append("")
    L.append("time in each state (s):")
    for side, st in r.get("states", {}).items():
        L.append(f"  {side:<6} " + ", ".join(f"{k} {v}" for k, v in st.items()))
    L.append("")
    L.append("requests answered (from the captures):")
    for k, v in r.get("requests", {}).items():
        L.append(f"  {k:<9} {v['answered']}/{v['requests']} ({v['pct']} %)")
    p = r.get("perfdhcp", {})
    L.append(f"  perfdhcp's own count over {p.get('runs')} runs (received/sent): " + ", ".join(
        f"{k} {v.get('received', 0)}/{v.get('sent', 0)}" for k, v in p.get("exchanges", {}).items()
        if k != "RELEASE"))
    L.append(f"  dhclient/udhcpc runs: {r.get('clients')}")
    L.append("single-server outages (requests made in the window, answered):")
    for o in r.get("outages", []):
        pr = o.get("perfdhcp_runs_overlapping", {})
        L.append(f"  {o['fault']:<28} {o['seconds']:5.1f} s  perfdhcp {o['perfdhcp']['answered']}/"
                 f"{o['perfdhcp']['requests']} ({o['perfdhcp']['pct']} %)  dhclient+udhcpc "
                 f"{o['real']['answered']}/{o['real']['requests']} ({o['real']['pct']} %)"
                 f"  [perfdhcp's own count, {pr.get('runs', 0)} runs overlapping: "
                 f"{pr.get('received', 0)}/{pr.get('sent', 0)}]")
    L.append("longest unanswered:" + ("" if r.get("unanswered") else " none (every request was answered)"))
    for k, v in sorted(r.get("unanswered", {}).items(), key=lambda kv: -kv[1]["seconds"]):
        L.append(f"  {v['seconds']:6.1f} s  {k}  from {v['from'][11:23]}  during {v['during'] or '-'}")
    L.append("")
    v = r.get("violations", [])
    L.append(f"VIOLATIONS: {len(v)}")
    for x in v[:50]:
        L.append(f"  {json.dumps(x)[:400]}")
    L.append("")
    L += chaosload.report_lines(r["load"]) if "load" in r else ["LOAD: not judged (the run ended before its audit)"]
    L.append("RESULT: " + ("PASS" if passed(r) else "FAIL"))
    return "\n".join(L)


def passed(r: dict) -> bool:
    """A run passes with no violation and its load judged OK (bench.chaosload)."""
    return not r.get("violations") and bool(r.get("load", {}).get("ok"))


def parse_pair(text: str) -> tuple[float, float]:
    a, _, b = text.partition(",")
    lo = float(a)
    hi = float(b) if b else lo
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError("want MIN,MAX seconds")
    return lo, hi


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kinds {bad}; choose from {', '.join(KINDS)}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load and faults (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="draws the fault schedule (default 1)")
    ap.add_argument("--faults", type=parse_kinds, default=KINDS, help=f"kinds to inject (default all: {','.join(KINDS)})")
    ap.add_argument("--hold", type=parse_pair, default=(5.0, 20.0), help="MIN,MAX seconds a fault lasts (default 5,20)")
    ap.add_argument("--settle", type=float, default=5.0, help="both NORMAL this long between faults (default 5)")
    ap.add_argument("--gap", type=parse_pair, default=(2.0, 6.0), help="MIN,MAX seconds between faults after the settle (default 2,6)")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds of load before the first fault (default 8)")
    ap.add_argument("--perf-clients", type=int, default=3000)
    ap.add_argument("--perf-rate", type=int, default=30)
    ap.add_argument("--dhclients", type=int, default=2)
    ap.add_argument("--udhcpcs", type=int, default=2)
    ap.add_argument("--load-balancing", action="store_true", help="balance the pair(s): RFC 3074, split 128")
    ap.add_argument("--relationships", type=int, choices=(1, 2), default=1,
                    help="2: two relationships, each server the main of one (default 1)")
    ap.add_argument("--log-settings", help="the servers' [server] log-settings, e.g. failover-detail (every BNDUPD)")
    ap.add_argument("--out", type=Path, help="write the JSON report here (e.g. results/chaos.json)")
    ap.add_argument("--keep", type=Path, help="copy logs and captures here (done anyway on violations)")
    args = ap.parse_args(argv)
    if max(args.hold) >= MCLT:
        ap.error(f"--hold must stay under the MCLT ({MCLT} s): partner-down faults rely on it")
    opts = Options(duration=args.duration, seed=args.seed, faults=args.faults, hold=args.hold, settle=args.settle,
                   gap=args.gap, warmup=args.warmup,
                   perf_clients=args.perf_clients, perf_rate=args.perf_rate, dhclients=args.dhclients,
                   udhcpcs=args.udhcpcs, out=args.out, keep=args.keep,
                   log_settings=args.log_settings, load_balancing=args.load_balancing,
                   relationships=args.relationships)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    report = run(opts)
    text = text_report(report)
    print(text)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"\nJSON: {opts.out}")
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
