"""The DHCP request path in one process, without sockets: CPU per DORA of the core.

``python -m bench.inproc`` runs relayed DISCOVER→OFFER→REQUEST→ACK exchanges
for fresh clients through :class:`cnrd.dhcp.protocol.RequestPath` and
:class:`cnrd.dhcp.server.DhcpServer` (parse, decide, serialize, the lease
table), with the same configuration as ``bench/servers.py``'s cnrd (one /16
pool, lease time 3600, relayed through 10.8.0.1), and commits each batch's
lease changes to a real store (``--store journal``, the default, as a server
runs; ``lmdb``; ``memory`` to take the disk out).  The socket is a list:
what it measures is the interpreter time of everything between
``recvmsg`` and ``sendmsg``, the part `bench.run` cannot separate from the
kernel and perfdhcp.  ``--profile FILE`` writes cProfile stats of the run.
``--lease-lines FILE`` adds the lease line of each reply, written to FILE
as ``twistd -n cnrd`` writes its log to stdout (each harness batch is one
reactor turn).

It checks what it measured: every client must end with an ACK of the
address it was offered, else it exits 1.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from cnrd.config import loads
from cnrd.dhcp.packet import BOOTREQUEST, DhcpPacket, MessageType, parse
from cnrd.dhcp.protocol import RequestPath
from cnrd.dhcp.server import DhcpServer, Interface
from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.store import LeaseStore, MemoryLeaseStore, PackedBatch
from cnrd.leases.table import LeaseTable
from cnrd.text import ip_to_int

CONFIG = """
[server]
name = inproc
interfaces = eth1
data-dir = /nonexistent
{extra}

[policy default]
lease-time = 3600
option.routers = 10.1.0.1
option.domain-name-servers = 10.1.0.1

[scope bench]
subnet = 10.8.0.0/16
ranges = 10.8.0.10-10.8.255.250
"""
SERVER_IP = ip_to_int("10.1.0.1")
GIADDR = ip_to_int("10.8.0.1")
IFACE = Interface("eth1", 2, ((SERVER_IP, 24),))


@dataclass(frozen=True)
class Rx:
    """A received datagram as the socket adapter hands it over."""

    data: bytes
    ifindex: int = 2
    local_ip: str = "10.1.0.1"
    dst_ip: str = "10.1.0.1"
    src_ip: str = "10.8.0.1"
    src_port: int = 67


class ListPort:
    """A ReplyPort that keeps what it is given."""

    max_batch = 1 << 30
    kernel_drops = 0

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def send(self, data: bytes, dst_ip: str, dst_port: int, *, ifindex: int | None = None,
             src_ip: str | None = None) -> None:
        self.out.append(data)

    def send_to_hw(self, data: bytes, yiaddr: str, chaddr: bytes, ifindex: int, dst_port: int,
                   src_ip: str | None = None) -> None:
        self.out.append(data)


class Clock:
    """IReactorTime enough for RequestPath: a fixed second, callLater never fires."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, f: Callable[..., object], *a: object, **kw: object) -> Clock:
        return self

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass


def _packet(mtype: MessageType, i: int, xid: int, extra: dict[int, bytes]) -> bytes:
    hw = b"\x02\xbf" + i.to_bytes(4, "big")
    options = {53: bytes([mtype]), 61: b"\x01" + hw, 55: bytes([1, 3, 6, 15, 51, 54]), **extra}
    return DhcpPacket(op=BOOTREQUEST, htype=1, hlen=6, hops=1, xid=xid, secs=0, flags=0, ciaddr=0, yiaddr=0,
                      siaddr=0, giaddr=GIADDR, chaddr=hw, sname=b"", file=b"", options=options,
                      has_cookie=True).serialize()


def make_store(kind: str, path: str) -> LeaseStore:
    if kind == "journal":
        return JournaledStore(path)
    if kind == "lmdb":
        return LmdbLeaseStore(path)
    return MemoryLeaseStore()


class LeaseLines:
    """The lease lines of a running server, to one file, through twistd's observer as ``twistd cnrd`` sets it up."""

    def __init__(self, path: str) -> None:
        from twisted.logger import globalLogBeginner

        from cnrd.ops import logs

        # log-settings of the server running (--server-extra can set them).
        self.settings: Callable[[], frozenset[str]] = frozenset
        self.out = open(path, "a", encoding="utf-8")  # noqa: SIM115  (open for the process's life, as twistd's)
        self.observer = logs.observer(self.out, lambda: self.settings())
        globalLogBeginner.beginLoggingTo([self.observer], redirectStandardIO=False)
        self.turn_end: list[Callable[[], object]] = []

    def attach(self, path: RequestPath, table: LeaseTable) -> None:
        """A LeaseLogger on ``path``'s replies and ``table``'s releases and expiries."""
        from cnrd.ops import logs

        def known(address: int) -> tuple[str, bytes | None]:
            lease = table.get(address)
            return ("", None) if lease is None else (lease.host_name, lease.client_id)

        server = path.server
        self.settings = lambda: server.config.server.log_settings
        lease_log = logs.LeaseLogger(self.settings, via=path.via, known=known)
        path.on_sent = lease_log.sent
        table.listeners.append(lease_log.lease_changed)
        direct = getattr(logs, "direct_lease_lines", None)
        if direct is not None:  # the lease lines' own path to the observer, flushed once per turn
            direct(lease_log, self.observer, self.turn_end.append)

    def end_turn(self) -> None:
        """What the reactor runs before it next polls: the calls scheduled during the turn."""
        calls, self.turn_end[:] = self.turn_end[:], []
        for f in calls:
            f()


def run(clients: int, batch: int, store_kind: str, extra: str = "",
        profile: str | None = None, lines: LeaseLines | None = None) -> dict[str, float]:
    """``clients`` DORAs in batches of ``batch`` datagrams; returns the figures."""
    server = DhcpServer(loads(CONFIG.format(extra=extra)), LeaseTable())
    server.set_interfaces([IFACE])
    tmp = tempfile.mkdtemp(prefix="cnrd-inproc-")
    store = make_store(store_kind, tmp)
    commits = 0

    def commit(then: Callable[[bool], None]) -> None:
        nonlocal commits
        leases, events = server.table.take_dirty()
        store.commit_packed(PackedBatch.of(leases, events))
        commits += 1
        then(True)

    clock = Clock()
    path = RequestPath(server, clock, commit, has_dirty=lambda: server.table.has_dirty,  # type: ignore[arg-type]
                       max_awaiting=lambda: 1 << 30)
    port = ListPort()
    path.port = port
    if lines is not None:
        lines.attach(path, server.table)
    end_turn = lines.end_turn if lines is not None else (lambda: None)
    sid = struct.pack("!I", SERVER_IP)
    discovers = [Rx(_packet(MessageType.DISCOVER, i, i, {})) for i in range(clients)]
    prof = cProfile.Profile() if profile else None
    acked = 0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    if prof:
        prof.enable()
    for start in range(0, clients, batch):
        # The DISCOVERs of one batch, then the REQUESTs answering their OFFERs
        # in the next: the order perfdhcp's steady state gives a server.
        port.out.clear()
        path.on_batch(discovers[start:start + batch], 0)
        end_turn()
        requests = []
        for data in port.out:
            offer = parse(data)
            i = int.from_bytes(offer.chaddr[2:6], "big")
            requests.append(Rx(_packet(MessageType.REQUEST, i, offer.xid,
                                       {50: struct.pack("!I", offer.yiaddr), 54: sid})))
        port.out.clear()
        path.on_batch(requests, 0)
        end_turn()
        for data in port.out:
            if parse(data).message_type == MessageType.ACK:
                acked += 1
    if prof:
        prof.disable()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    if prof and profile:
        prof.dump_stats(profile)
    store.close()
    if acked != clients:
        raise SystemExit(f"inproc: {acked} ACKs for {clients} clients: the run did not measure what it says")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The harness's own work (building requests, parsing replies) is in the
    # figures too; it is the same for every version of the server.
    return {"clients": clients, "commits": commits, "wall_s": wall, "cpu_s": cpu,
            "dora_per_s": clients / wall, "cpu_us_per_dora": cpu / clients * 1e6, "maxrss_mib": rss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=40000, help="DORA exchanges (at most 65,000; default 40,000)")
    ap.add_argument("--batch", type=int, default=64, help="datagrams per batch (default 64)")
    ap.add_argument("--store", choices=("journal", "lmdb", "memory"), default="journal")
    ap.add_argument("--server-extra", default="", help="[server] lines, \\n-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs (a fresh server each); the best is reported")
    ap.add_argument("--profile", metavar="FILE", help="cProfile stats of the last run to FILE")
    ap.add_argument("--lease-lines", metavar="FILE",
                    help="log each reply's lease line to FILE, as twistd -n cnrd logs to stdout")
    args = ap.parse_args(argv)
    lines = LeaseLines(args.lease_lines) if args.lease_lines else None
    if not 0 < args.clients <= 65000:
        ap.error("--clients must be 1..65000 (one /16 pool)")
    results = []
    for n in range(args.repeat):
        last = n == args.repeat - 1
        r = run(args.clients, args.batch, args.store, args.server_extra.replace("\\n", "\n"),
                args.profile if last else None, lines)
        results.append(r)
        print(f"run {n + 1}: {r['dora_per_s']:.0f} DORA/s, {r['cpu_us_per_dora']:.1f} µs CPU per DORA, "
              f"{r['commits']} commits", file=sys.stderr)
    best = max(results, key=lambda r: r["dora_per_s"])
    print(f"best of {args.repeat}: {best['dora_per_s']:.0f} DORA/s, {best['cpu_us_per_dora']:.1f} µs CPU per DORA "
          f"({args.clients} clients, batch {args.batch}, store {args.store}, python {sys.version.split()[0]}, "
          f"pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
