"""Composition: the DHCP service on one reactor.

:func:`build` wires the pure server (:class:`~cnrd.dhcp.server.DhcpServer`)
to the socket adapter (:class:`~cnrd.dhcp.net.DhcpPort`), the LMDB store and
the timers.  Every dependency is a parameter, so tests pass fakes (a
``task.Clock``, a memory store, a fake port) instead of patching.

Group commit: the port hands over every datagram that arrived in one read
event as a batch.  The service answers each from memory, writes all of the
batch's lease changes in one transaction with one fsync, and only then sends
the ACKs.  OFFERs, NAKs and INFORM replies promise nothing durable and leave
before the commit.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from cnrd import __version__
from cnrd.ops import logs
from cnrd.config import Config, ConfigError
from cnrd.dhcp import net
from cnrd.dhcp.packet import MalformedPacket, MessageType, parse
from cnrd.dhcp.server import DhcpServer, Interface, Reply, RxInfo
from cnrd.failover.peer import Peer
from cnrd.failover.protocol import FailoverService
from cnrd.failover.states import Role
from cnrd.ops.gcpolicy import GcPolicy
from cnrd.leases.committer import GroupCommitter, Runner
from cnrd.leases.journal import open_store
from cnrd.leases.store import LeaseStore, PackedBatch
from cnrd.leases.table import LeaseTable
from cnrd.ops.traps import TrapDetector
from cnrd.ops.webhook import TrapNotifier
from cnrd.text import int_to_ip, ip_to_int

log = Logger(namespace="cnrd")

_U32 = struct.Struct("!I")
# Handled after the exchange-completing requests of a batch (see on_batch).
_NOT_FIRST = frozenset({MessageType.DISCOVER, MessageType.INFORM})
LAZY_COMMIT = 1.0  # seconds an offer's lease change may wait for a commit



def _run_now(f: Callable[[], None]) -> defer.Deferred:
    # Commit on the reactor thread: measured faster at the median and p99 than
    # a commit thread on 2 cores, where the GIL hand-over costs more than the
    # fsync it overlaps (docs/performance.md).
    return defer.maybeDeferred(f)


def resolve_interfaces(
    config: Config,
    addresses: Callable[[], dict[str, list[tuple[str, int]]]] = net.interface_addresses,
    index: Callable[[str], int] = net.interface_index,
) -> list[Interface]:
    """The configured interfaces with their indexes and IPv4 addresses.

    Raises :class:`ConfigError` naming ``[server] interfaces`` for one that
    does not exist, so the server refuses to start with one clear line.
    """
    found = addresses()
    out = []
    for name in config.server.interfaces:
        try:
            idx = index(name)
        except (ValueError, OSError):
            raise ConfigError(config.path, "server", "interfaces", f"no interface named {name!r} on this host")
        out.append(Interface(name, idx, tuple((ip_to_int(a), plen) for a, plen in found.get(name, ()))))
    return out


class DhcpService(service.Service):
    """The DHCP server process: store, server core, socket and timers."""

    name = "dhcp"

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        store: LeaseStore | None = None,
        port_factory: Callable[..., Any] | None = None,
        interfaces: Callable[[Config], list[Interface]] = resolve_interfaces,
        commit_runner: Runner | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self._store = store
        self._port_factory = port_factory or net.DhcpPort
        self._interfaces = interfaces
        self.table = LeaseTable()
        self.server = DhcpServer(config, self.table, log=self._log_event)
        self.port: Any = None
        self._expiry = LoopingCall(self._expire)
        self._expiry.clock = reactor
        self._refresh = LoopingCall(self._refresh_interfaces)
        self._refresh.clock = reactor
        self._stats = LoopingCall(self._log_stats)
        self._stats.clock = reactor
        self.gc: GcPolicy | None = None
        self._last_stats: tuple = ()
        self.started_at = 0.0
        self.peers: list[Any] = []  # failover Peers sharing this table and store
        # pair name -> its FailoverService: the admin API sends and persists a
        # peer's output through it after an operator command.
        self.failover_links: dict[str, Any] = {}
        # Log lines and traps read self.config at each event: the admin API
        # replaces it while the server runs.
        self.events = logs.EventLogger(lambda: self.config.server.log_settings, reactor)
        self.traps = TrapDetector()
        self.notifier = TrapNotifier(reactor, lambda: self.config.server)
        self.after_commit: list[Callable[[], None]] = []
        self.malformed = 0
        # Commits run on one worker thread unless a runner is injected (tests
        # pass one that runs them at once).
        self._pool: ThreadPool | None = None
        self._commit_runner = commit_runner
        self._committer: GroupCommitter | None = None
        self._awaiting = 0  # durable replies waiting for their commit
        self._lazy_commit: Any = None

    @property
    def committer(self) -> GroupCommitter:
        if self._committer is None:
            run = self._commit_runner
            if run is None and not self.config.server.commit_thread:
                run = _run_now
            if run is None:
                # The commit thread needs the GIL only briefly around each
                # fsync; a short switch interval keeps it from waiting up to
                # 5 ms (CPython's default) behind the reactor for it.
                sys.setswitchinterval(0.0005)
                self._pool = ThreadPool(1, 1, name="cnrd-commit")
                self._pool.start()
                pool = self._pool
                run = lambda f: threads.deferToThreadPool(self.reactor, pool, f)  # noqa: E731
            self._committer = GroupCommitter(self.store, run)
        return self._committer

    @property
    def commits(self) -> int:
        return self.committer.commits

    @property
    def commit_failures(self) -> int:
        return self.committer.failures

    @property
    def store(self) -> LeaseStore:
        if self._store is None:
            self._store = open_store(self.config.server)
        return self._store

    def _log_event(self, event: str, fields: dict) -> None:
        """An event of the core (DhcpServer, Peers): a log line per log-settings, and maybe a trap."""
        self.events(event, fields)
        trap = self.traps.observe(event, fields)
        if trap is not None:
            self.notifier.notify(trap)

    # -- lifecycle ---------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self.started_at = self.clock.seconds()
        now = int(self.started_at)
        t0 = time.monotonic()
        s = self.config.server
        self.gc = GcPolicy(self.reactor, s.gc_freeze_interval, s.gc_full_interval)
        with self.gc.loading():
            n = self.server.load(self.store.load(), now)
        log.info(
            "cnrd {version} server {name}: loaded {count} leases in {secs:.2f} s",
            version=__version__, name=self.config.server.name, count=n, secs=time.monotonic() - t0,
        )
        self.server.set_interfaces(self._interfaces(self.config))
        self._expire()  # leases that ran out while we were down
        # After the load: the leases just read are frozen with everything else.
        self.gc.start()
        self.port = self._port_factory(self.reactor, s.server_port, self.on_batch, max_batch=s.max_dhcp_requests)
        self.port.start()
        self._expiry.start(s.expiry_interval, now=False)
        self._refresh.start(30, now=False)
        if s.stats_interval:
            self._stats.start(s.stats_interval, now=False)
        log.info(
            "serving DHCP on port {port}, interfaces {ifaces}, {scopes} scopes",
            port=s.server_port, ifaces=",".join(s.interfaces) or "(relays only)", scopes=len(self.config.scopes),
        )

    def stopService(self) -> defer.Deferred:
        for loop in (self._expiry, self._refresh, self._stats):
            if loop.running:
                loop.stop()
        if self.gc is not None:
            self.gc.stop()
        if self._lazy_commit is not None and self._lazy_commit.active():
            self._lazy_commit.cancel()  # the commit below takes what it would have
        self._lazy_commit = None
        if self.port is not None:
            self.port.stop()
            self.port = None
        super().stopService()
        self.commit(lambda ok: None)
        d = self.committer.drain()

        def closed(_: object) -> None:
            self.store.close()
            if self._pool is not None:
                self._pool.stop()
                self._pool = None
            self._log_stats()

        d.addBoth(closed)
        return d

    # -- the request path --------------------------------------------------
    def on_batch(self, batch: list[Any], dropped: int) -> None:
        """Answer one batch of datagrams: decide, commit once, then send.

        Requests that complete an exchange (REQUEST, and DECLINE, RELEASE,
        BOOTP, which change leases) are handled first and committed, so
        their ACKs leave before the batch's DISCOVERs and INFORMs are worked
        on: a burst of new clients does not hold up the ones about to be
        bound, and the ACK's wait is the commit, not the rest of the batch.
        """
        if dropped:
            self.server.counters.drops["overload"] += dropped
        server = self.server
        if self._awaiting >= self.config.server.max_dhcp_requests:
            # max-dhcp-requests: this many answers already wait for the disk.
            server.counters.drops["overload"] += len(batch)
            return
        now = int(self.clock.seconds())
        first: list[tuple[Any, RxInfo]] = []
        later: list[tuple[Any, RxInfo]] = []
        for rx in batch:
            try:
                packet = parse(rx.data)
            except MalformedPacket as e:
                self.malformed += 1
                server.counters.drops["malformed"] += 1
                log.debug("malformed packet from {src}: {reason}", src=rx.src_ip, reason=e.reason)
                continue
            info = RxInfo(rx.ifindex, ip_to_int(rx.local_ip), ip_to_int(rx.dst_ip), ip_to_int(rx.src_ip), rx.src_port)
            try:
                kind = packet.message_type
            except MalformedPacket:
                kind = None  # handle() counts and drops it
            (later if kind in _NOT_FIRST else first).append((packet, info))
        acks = self._handle(first, now)
        self._awaiting += len(acks)
        self.commit(lambda ok: self._committed(ok, acks))
        if later:
            # A name of its own: the callback above may run after this line
            # (commit thread), and must still see the first list.
            more = self._handle(later, now)
            if more:
                self._awaiting += len(more)
                self.commit(lambda ok: self._committed(ok, more))
            elif self.table.has_dirty and (self._lazy_commit is None or not self._lazy_commit.active()):
                # Offers promise nothing: their lease changes ride with the
                # next batch's commit, or this one if no batch comes.
                self._lazy_commit = self.reactor.callLater(LAZY_COMMIT, self._commit_if_dirty)

    def _handle(self, packets: list[tuple[Any, RxInfo]], now: int) -> list[Reply]:
        """Decide each packet; send what needs no commit, return what does."""
        durable: list[Reply] = []
        handle = self.server.handle
        for packet, info in packets:
            reply = handle(packet, info, now)
            if reply is None:
                continue
            if reply.durable:
                durable.append(reply)
            else:
                self._send(reply)
        return durable

    def _commit_if_dirty(self) -> None:
        self._lazy_commit = None
        if self.running and self.table.has_dirty:
            self.commit(lambda ok: None)

    def _committed(self, ok: bool, durable: list[Reply]) -> None:
        self._awaiting -= len(durable)
        if not ok:
            # The ACKs are withheld: clients retry, and nothing was promised
            # that the disk does not hold (the changes stay queued for the
            # next commit).
            self.server.counters.drops["store-failure"] += len(durable)
            return
        for reply in durable:
            self._send(reply)
        # Lazy binding updates: the clients are answered first.
        for hook in self.after_commit:
            hook()

    def commit(self, then: Callable[[bool], None]) -> None:
        """Make lease changes and failover state durable, then call ``then(ok)`` on the reactor."""
        leases, events = self.table.take_dirty()
        state: dict[str, bytes | None] = {}
        for peer in self.peers:
            state.update(peer.take_persist())
        if not leases and not events and all(v is None for v in state.values()):
            # Only queue entries to forget: no sync needed for that, they ride
            # along with the next commit (a resend after a crash is harmless).
            for peer in self.peers:
                peer.restore_persist(state)
            state = {}
        self.committer.submit(PackedBatch.of(leases, events, state), then)

    def _send(self, reply: Reply) -> None:
        try:
            data = reply.packet.serialize(reply.max_size)
        except MalformedPacket as e:
            self.server.counters.drops["reply-too-large"] += 1
            log.warn("reply not sent: {reason}", reason=e.reason)
            return
        src = int_to_ip(reply.src_ip) if reply.src_ip else None
        if reply.hw_unicast and reply.ifindex:
            self.port.send_to_hw(data, int_to_ip(reply.dst_ip), reply.packet.chaddr, reply.ifindex, reply.dst_port, src_ip=src)
        else:
            self.port.send(data, int_to_ip(reply.dst_ip), reply.dst_port, ifindex=reply.ifindex, src_ip=src)

    # -- timers ------------------------------------------------------------
    def _expire(self) -> None:
        n = self.server.expire(int(self.clock.seconds()))
        if n:
            self.commit(lambda ok: None)

    def _log_stats(self) -> None:
        """One log line with what changed since the last one; silent when idle."""
        c = self.server.counters
        kernel = getattr(self.port, "kernel_drops", 0) if self.port is not None else 0
        snapshot = (dict(c.received), dict(c.sent), dict(c.drops), kernel, self.commits)
        if snapshot == self._last_stats:
            return
        self._last_stats = snapshot
        fmt = lambda d: ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"  # noqa: E731
        log.info(
            "stats: received {received}; sent {sent}; dropped {drops}; kernel drops {kernel}; "
            "commits {commits}; leases {leases}",
            received=fmt(c.received), sent=fmt(c.sent), drops=fmt(c.drops), kernel=kernel,
            commits=self.commits, leases=len(self.table.leases),
        )

    def apply_config(self, config: Config) -> None:
        """Run with ``config`` from now on (``dhcp reload``, API attribute changes).

        Scopes, pools, policies, reservations, clients and the [server]
        settings read while running take effect at once.  The caller keeps
        what needs a restart (data-dir, ports, interfaces ...) at the values
        the process started with: see cnrd.admin.
        """
        old = self.config.server
        self.config = config
        self.server.configure(config)
        # server-identifier counts as one of our addresses (REQUEST selecting).
        self.server.set_interfaces(list(self.server.interfaces.values()))
        s = config.server
        if self.port is not None and hasattr(self.port, "max_batch"):
            self.port.max_batch = s.max_dhcp_requests
        if self.running:
            for loop, before, after in ((self._expiry, old.expiry_interval, s.expiry_interval),
                                        (self._stats, old.stats_interval, s.stats_interval)):
                if before != after:
                    if loop.running:
                        loop.stop()
                    if after:
                        loop.start(after, now=False)

    def _refresh_interfaces(self) -> None:
        try:
            self.server.set_interfaces(self._interfaces(self.config))
        except ConfigError as e:
            log.warn("interface refresh failed: {error}", error=str(e))


def pair_role(config: Config, pair: Any, host_addresses: set[str]) -> tuple[Role, str, str]:
    """Our role in ``pair`` (by our own addresses), our address and the partner's.

    ``failover-main-server`` / ``failover-backup-server`` name the address
    to use on a host with several interfaces (the seed's multi-interface
    case); otherwise the pair's main/backup address that is ours decides.
    """
    main = int_to_ip(pair.failover_main_server or pair.main)
    backup = int_to_ip(pair.failover_backup_server or pair.backup)
    if main in host_addresses:
        return Role.MAIN, main, int_to_ip(pair.backup)
    if backup in host_addresses:
        return Role.BACKUP, backup, int_to_ip(pair.main)
    raise ConfigError(config.path, f"failover-pair {pair.name}", "main",
                      f"neither the main ({main}) nor the backup ({backup}) is an address of this host")


def _host_addresses() -> set[str]:
    return {a for addrs in net.interface_addresses().values() for a, _ in addrs}


def add_failover(top: service.MultiService, dhcp: DhcpService, config: Config, reactor: Any,
                 host_addresses: set[str]) -> list[FailoverService]:
    """A Peer and its link for every enabled failover pair, wired to the DHCP service."""
    out = []
    now = int(reactor.seconds())
    for pair in config.failover_pairs.values():
        if not pair.failover:
            continue
        role, local, partner = pair_role(config, pair, host_addresses)
        scopes = list(pair.scopes) or list(config.scopes)
        store = dhcp.store
        prefix = f"failover/{pair.name}/q/"
        queue = [int(k[len(prefix):], 16) for k, _ in store.state_items(prefix)]
        peer = Peer(pair, role, dhcp.table, scopes, now=now,
                    stored_state=store.get_state(f"failover/{pair.name}/state"), stored_queue=queue,
                    log=dhcp._log_event, failover_recover=config.server.failover_recover)
        if peer.discarded_queue:
            # The role changed: the old relationship's unsent updates mean nothing now.
            for key, _ in store.state_items(prefix):
                peer.restore_persist({key: None})
        peer.scope_pct = {n: config.scopes[n].backup_pct for n in scopes
                          if config.scopes[n].backup_pct is not None}
        for name in scopes:
            dhcp.server.gates[name] = peer
            pool = dhcp.table.pools.get(name)
            if pool is not None:
                pool.failover = True
        dhcp.peers.append(peer)
        fs = FailoverService(peer, reactor, local_ip=local, partner_ip=partner, port=pair.port,
                             commit=dhcp.commit, log_settings=lambda: dhcp.config.server.log_settings)
        dhcp.after_commit.append(fs.flush)
        dhcp.failover_links[pair.name] = fs
        fs.setServiceParent(top)
        out.append(fs)
        me = f"{config.server.name} ({local})"
        main_name, backup_name = (me, partner) if role is Role.MAIN else (partner, me)
        scope_word = "server-wide" if not pair.scopes else f"for scopes {', '.join(scopes)}"
        log.info(
            "Failover is enabled {where}. Main server name: {main}, backup server name: {backup}, "
            "mclt = {mclt}, backup-pct = {pct}, dynamic-bootp-backup-pct = {dpct}, "
            "use-safe-period: {usp}, safe-period = {sp}",
            where=scope_word, main=main_name, backup=backup_name,
            mclt=pair.mclt, pct=pair.backup_pct,
            dpct=pair.dynamic_bootp_backup_pct if pair.dynamic_bootp_backup_pct is not None else 0,
            usp="enabled" if pair.use_safe_period else "disabled", sp=pair.safe_period,
        )
    return out


def build(
    config: Config,
    reactor: Any,
    *,
    host_addresses: Callable[[], set[str]] = _host_addresses,
    **kw: Any,
) -> service.MultiService:
    """The whole cnrd service tree for ``config``."""
    top = service.MultiService()
    dhcp = DhcpService(config, reactor, **kw)
    dhcp.setServiceParent(top)
    if any(p.failover for p in config.failover_pairs.values()):
        add_failover(top, dhcp, config, reactor, host_addresses())
    if config.api.enabled:
        # Last, so it starts after (and stops before) what it reports on.
        from cnrd.admin.api import ApiService
        ApiService(dhcp, reactor).setServiceParent(top)
    return top
