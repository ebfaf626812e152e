"""A NORMAL failover pair's main in one process, without sockets: what the pair costs per DORA.

``python -m bench.inproc_pair`` runs :mod:`bench.inproc`'s relayed DORAs
through the main of a failover pair: :class:`cnrd.dhcp.protocol.RequestPath`
and the DHCP core over a real store, the real
:class:`cnrd.failover.protocol.FailoverService` adapter and
:class:`cnrd.failover.session.FailoverSession` (the link's transport is a
list of bytes), and commits made as :meth:`cnrd.app.runtime.Runtime.commit`
makes them (the lease changes with the sessions' persisted values).  The
backup is a second session over its own table and store in the same
process; what it receives crosses as bytes through the wire codec and the
framer, and its BNDACKs come back the same way once its commit is done.

Each round is one batch of DISCOVERs, the REQUESTs answering their OFFERs
(the BNDUPDs leave after the ACKs), the backup's turn, and the BNDACKs
read by the main.  CPU time is counted per side; the main's figure
compared with ``--standalone`` (the same harness without a pair) is the
cost of failover on the main.  Every client must end with an ACK and every
binding must reach the backup and be acknowledged, else it exits 1.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import task

from cnrd.config import loads
from cnrd.dhcp.packet import MessageType, parse
from cnrd.dhcp.protocol import RequestPath
from cnrd.dhcp.server import DhcpServer
from cnrd.failover.protocol import FailoverProtocol, FailoverService
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import Role, S
from cnrd.leases.model import LeaseState
from cnrd.leases.store import LeaseStore, PackedBatch
from cnrd.leases.table import LeaseTable

from bench.inproc import CONFIG, IFACE, SERVER_IP, Clock, ListPort, Rx, _packet, make_store

PAIR = """
[failover-pair benchpair]
main = 10.97.0.1
backup = 10.97.0.2
mclt = 30
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""


class Transport:
    """The failover link's transport: what is written, kept as bytes."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def loseConnection(self) -> None:
        raise SystemExit("inproc_pair: the link was closed")

    abortConnection = loseConnection


class Side:
    """One server: table, core, store, session, the adapter, and Runtime's commit."""

    def __init__(self, role: Role, store_kind: str, now: int, clock: Clock) -> None:
        self.config = loads(CONFIG.format(extra="") + PAIR)
        self.table = LeaseTable()
        self.server = DhcpServer(self.config, self.table)
        self.server.set_interfaces([IFACE])
        for pool in self.table.pools.values():
            pool.failover = True
        self.dir = tempfile.mkdtemp(prefix=f"cnrd-inproc-{role.value}-")
        self.store: LeaseStore = make_store(store_kind, self.dir)
        self.session = FailoverSession(self.config.failover_pairs["benchpair"], role, self.table, ["bench"],
                                       now=now)
        self.table.listeners.append(self.session.lease_changed)
        self.server.gates["bench"] = self.session.gate
        partner = "10.97.0.2" if role is Role.MAIN else "10.97.0.1"
        reactor = task.Clock()  # the adapter's clock (IReactorTime); never advanced past ``clock``
        reactor.advance(clock.seconds())
        self.link = FailoverService(self.session, reactor, local_ip="", partner_ip=partner,  # type: ignore[arg-type]
                                    port=647, commit=self.commit)
        self.proto = FailoverProtocol(self.link)
        self.transport = Transport()
        self.proto.transport = self.transport  # type: ignore[assignment]
        self.proto.active = True
        self.commits = 0
        self.cpu = 0.0
        self.wall = 0.0

    def commit(self, then: Callable[[bool], None]) -> None:
        """As Runtime.commit does it, with the store committed at once."""
        if self.table.has_dirty:
            self.session.exchange.mark_acked_times()
        leases, events = self.table.take_dirty()
        state = self.session.take_persist()
        if not leases and not events and all(v is None for v in state.values()):
            self.session.restore_persist(state)
            state = {}
        batch = PackedBatch.of(leases, events, state)
        if not batch.empty():
            self.store.commit_packed(batch)
            self.commits += 1
        then(True)

    def connect(self) -> None:
        self.link.link = self.proto
        self.session.connection_made(self.link.now())
        self.link.flush()

    def read(self, data: bytes) -> None:
        """The partner's bytes arrive (one read event)."""
        if data:
            t, w = time.process_time(), time.perf_counter()
            self.proto.dataReceived(data)
            self.cpu += time.process_time() - t
            self.wall += time.perf_counter() - w


def settle(main: Side, backup: Side, rounds: int = 10_000) -> None:
    """Carry bytes both ways until neither side has anything to say."""
    for _ in range(rounds):
        a, b = main.transport.take(), backup.transport.take()
        if not a and not b:
            return
        backup.read(a)
        main.read(b)
    raise SystemExit("inproc_pair: the link never settled")


def run(clients: int, batch: int, store_kind: str, standalone: bool,
        profile: str | None = None) -> dict[str, Any]:
    """``clients`` DORAs on the main of a NORMAL pair (or a standalone server); the figures."""
    clock = Clock()
    now = int(clock.seconds())
    main = Side(Role.MAIN, store_kind, now, clock)
    backup = Side(Role.BACKUP, store_kind, now, clock)
    if standalone:
        main.server.gates.clear()
        main.table.listeners.clear()
        for pool in main.table.pools.values():
            pool.failover = False
    else:
        main.connect()
        backup.connect()
        settle(main, backup)
        if (main.session.state, backup.session.state) != (S.NORMAL, S.NORMAL):
            raise SystemExit(f"inproc_pair: the pair is {main.session.state.name}/{backup.session.state.name}")
    after_send = (lambda: None) if standalone else main.link.flush
    path = RequestPath(main.server, clock, main.commit,  # type: ignore[arg-type]
                       has_dirty=lambda: main.table.has_dirty, max_awaiting=lambda: 1 << 30,
                       after_send=after_send)
    port = ListPort()
    path.port = port
    sid = struct.pack("!I", SERVER_IP)
    discovers = [Rx(_packet(MessageType.DISCOVER, i, i, {})) for i in range(clients)]
    prof = cProfile.Profile() if profile else None
    acked = 0
    main.commits = backup.commits = 0
    main.cpu = backup.cpu = main.wall = backup.wall = 0.0
    harness = 0.0
    wall0 = time.perf_counter()
    if prof:
        prof.enable()
    for start in range(0, clients, batch):
        port.out.clear()
        t, w = time.process_time(), time.perf_counter()
        path.on_batch(discovers[start:start + batch], 0)
        main.cpu += time.process_time() - t
        main.wall += time.perf_counter() - w
        t = time.process_time()
        requests = []
        for data in port.out:
            offer = parse(data)
            i = int.from_bytes(offer.chaddr[2:6], "big")
            requests.append(Rx(_packet(MessageType.REQUEST, i, offer.xid,
                                       {50: struct.pack("!I", offer.yiaddr), 54: sid})))
        port.out.clear()
        harness += time.process_time() - t
        t, w = time.process_time(), time.perf_counter()
        path.on_batch(requests, 0)
        main.cpu += time.process_time() - t
        main.wall += time.perf_counter() - w
        t = time.process_time()
        for data in port.out:
            if parse(data).message_type == MessageType.ACK:
                acked += 1
        harness += time.process_time() - t
        if not standalone:
            # The backup reads what the main sent; the main reads the BNDACKs.
            backup.read(main.transport.take())
            main.read(backup.transport.take())
    if not standalone:
        settle(main, backup)
    if prof:
        prof.disable()
        if profile:
            prof.dump_stats(profile)
    wall = time.perf_counter() - wall0
    for side in (main, backup):
        side.store.close()
        shutil.rmtree(side.dir, ignore_errors=True)
    if acked != clients:
        raise SystemExit(f"inproc_pair: {acked} ACKs for {clients} clients")
    if not standalone:
        leased = sum(1 for lease in backup.table.leases.values() if lease.state is LeaseState.LEASED)
        upd = main.session.updates
        if leased != clients or upd.pending or upd.unacked:
            raise SystemExit(f"inproc_pair: the backup holds {leased} of {clients} leases, "
                             f"{len(upd.pending)} queued, {len(upd.unacked)} unacked")
    return {"clients": clients, "wall_s": wall, "main_cpu_s": main.cpu, "backup_cpu_s": backup.cpu,
            "harness_cpu_s": harness, "main_commits": main.commits, "backup_commits": backup.commits,
            "main_us_per_dora": main.cpu / clients * 1e6, "backup_us_per_dora": backup.cpu / clients * 1e6,
            "main_wall_us_per_dora": main.wall / clients * 1e6, "backup_wall_us_per_dora": backup.wall / clients * 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inproc_pair", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20000, help="DORA exchanges (at most 58,000; default 20,000)")
    ap.add_argument("--batch", type=int, default=64, help="datagrams per batch (default 64)")
    ap.add_argument("--store", choices=("journal", "lmdb", "memory"), default="journal")
    ap.add_argument("--standalone", action="store_true", help="no pair: the same harness, the main alone")
    ap.add_argument("--repeat", type=int, default=3, help="runs (a fresh pair each); the best is reported")
    ap.add_argument("--profile", metavar="FILE", help="cProfile stats of the last run to FILE")
    args = ap.parse_args(argv)
    if not 0 < args.clients <= 58000:
        ap.error("--clients must be 1..58000 (the main's 90 % of one /16 pool)")
    results = []
    for n in range(args.repeat):
        r = run(args.clients, args.batch, args.store, args.standalone,
                args.profile if n == args.repeat - 1 else None)
        results.append(r)
        print(f"run {n + 1}: main {r['main_us_per_dora']:.1f} µs CPU, {r['main_wall_us_per_dora']:.1f} µs wall "
              f"per DORA ({r['main_commits']} commits); backup {r['backup_us_per_dora']:.1f} µs CPU, "
              f"{r['backup_wall_us_per_dora']:.1f} µs wall ({r['backup_commits']} commits)", file=sys.stderr)
    best = min(results, key=lambda r: r["main_us_per_dora"])
    what = "standalone" if args.standalone else "pair main"
    print(f"best of {args.repeat}: {what} {best['main_us_per_dora']:.1f} µs CPU per DORA "
          f"({best['main_wall_us_per_dora']:.1f} µs wall), backup {best['backup_us_per_dora']:.1f} µs CPU "
          f"({best['backup_wall_us_per_dora']:.1f} µs wall) ({args.clients} clients, batch {args.batch}, "
          f"store {args.store}, python {sys.version.split()[0]}, pid {os.getpid()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
