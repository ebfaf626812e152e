"""The running server: the pieces one cnrd process owns, and the one way to reconfigure them.

:class:`Runtime` holds the configuration in force, the lease table and its
store, the DHCP core and its request path, the failover sessions with their
links, the timers (expiry, interface refresh, stats), and the log/trap
plumbing.  :meth:`Runtime.reconfigure` is the only way a configuration
reaches the running pieces: the composition root calls it once at start-up,
and the admin commands (``dhcp reload``, attribute and pair changes) call it
with each new configuration.

Every dependency is a parameter (the reactor, the store, the socket factory,
the interface lookup, the commit runner), so tests pass a ``task.Clock``, a
memory store and a fake port instead of patching.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorFDSet, IReactorFromThreads, IReactorTCP, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from cnrd import __version__
from cnrd.config import Config, ConfigError, ServerConfig
from cnrd.dhcp import net
from cnrd.app.ldap import LdapRegistry
from cnrd.dhcp.protocol import Datagram, ReplyPort, RequestPath
from cnrd.dhcp.registry import RegistryHealth
from cnrd.dhcp.server import DhcpServer, Interface
from cnrd.failover.pool import scope_pct
from cnrd.failover.protocol import FailoverService
from cnrd.failover.session import FailoverSession
from cnrd.leases.committer import GroupCommitter, Runner
from cnrd.leases.journal import open_store
from cnrd.leases.store import LeaseStore, PackedBatch
from cnrd.leases.table import LeaseTable
from cnrd.ops import logs
from cnrd.ops.gcpolicy import GcPolicy
from cnrd.ops.latency import COMMIT_BUCKETS, Histogram
from cnrd.ops.traps import TrapDetector
from cnrd.ops.webhook import TrapNotifier
from cnrd.text import ip_to_int

__all__ = ["Runtime", "PairRuntime", "Reactor", "PortFactory", "resolve_interfaces", "response_buffers",
           "FAILOVER_RESPONSE_FACTOR"]

log = Logger(namespace="cnrd")

#: With failover on, the response buffers are at least this many times the
#: request buffers (CNR 7.2, "Setting DHCP Request and Response Packet Buffers").
FAILOVER_RESPONSE_FACTOR = 4


def response_buffers(server: ServerConfig, failover: bool) -> tuple[int, str | None]:
    """max-dhcp-responses in force, and the operator's warning when a configured value was raised.

    The bound on replies that wait for their commit (and then the wire).
    Unset, it is max-dhcp-requests.  With failover on, CNR raises it to at
    least four times max-dhcp-requests, since the same buffers carry the
    failover work; a smaller configured value is raised, with a warning,
    rather than refused, because CNR 7.2 says the server adjusts it.
    """
    configured = server.max_dhcp_responses
    value = configured if configured is not None else server.max_dhcp_requests
    floor = FAILOVER_RESPONSE_FACTOR * server.max_dhcp_requests
    if not failover or value >= floor:
        return value, None
    if configured is None:
        return floor, None
    return floor, (f"[server] max-dhcp-responses {configured} is raised to {floor} "
                   f"({FAILOVER_RESPONSE_FACTOR} x max-dhcp-requests {server.max_dhcp_requests}) "
                   "because failover is on")


class Reactor(IReactorTime, IReactorFDSet, IReactorTCP, IReactorFromThreads):
    """The reactor interfaces a running server uses: timers, the DHCP socket, TCP for the
    failover links, the admin API and the trap webhook, and the commit thread's results."""


class PortFactory(Protocol):
    """Makes the DHCP socket adapter (:class:`cnrd.dhcp.net.DhcpPort`, or a fake in tests)."""

    def __call__(self, reactor: IReactorFDSet, port: int, on_batch: Callable[[Sequence[Datagram], int], None], *,
                 max_batch: int) -> ReplyPort: ...


@dataclass(frozen=True)
class PairRuntime:
    """One failover relationship as it runs: the protocol session and its TCP link."""

    session: FailoverSession
    link: FailoverService


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


def _run_now(f: Callable[[], None]) -> defer.Deferred[None]:
    # Commit on the reactor thread: measured faster at the median and p99 than
    # a commit thread on 2 cores, where the GIL hand-over costs more than the
    # fsync it overlaps (docs/performance.md).
    return defer.maybeDeferred(f)


class Runtime(service.Service):
    """The DHCP server process: configuration, store, core, request path, failover sessions, timers."""

    name = "dhcp"

    def __init__(
        self,
        config: Config,
        reactor: Reactor,
        *,
        store: LeaseStore | None = None,
        port_factory: PortFactory | None = None,
        interfaces: Callable[[Config], list[Interface]] = resolve_interfaces,
        commit_runner: Runner | None = None,
        ldap: LdapRegistry | None = None,
    ) -> None:
        self._config = config
        self.reactor = reactor
        self._store = store
        self._port_factory: PortFactory = port_factory or net.DhcpPort
        self._interfaces = interfaces
        self.table = LeaseTable()
        self.server = DhcpServer(config, self.table, log=self.log_event)
        self.path = RequestPath(self.server, reactor, self.commit, has_dirty=lambda: self.table.has_dirty,
                                max_awaiting=lambda: self._responses,
                                after_send=self._flush_links)
        # The LDAP client registry: parked requests ask it through the path.
        self.ldap = ldap or LdapRegistry(reactor)
        self.ldap.configure(config)
        self.path.lookup = self.ldap.lookup
        self.pairs: dict[str, PairRuntime] = {}
        # max-dhcp-responses in force (set again by reconfigure once pairs run).
        self._responses, _ = response_buffers(config.server, failover=False)
        self._responses_warning: str | None = None
        self._expiry = self._loop(self._expire)
        self._refresh = self._loop(self._refresh_interfaces)
        self._stats = self._loop(self._log_stats)
        self.gc: GcPolicy | None = None
        self._last_stats: tuple[Any, ...] = ()
        self.started_at = 0.0
        # Log lines and traps read the running configuration at each event.
        self.events = logs.EventLogger(lambda: self._config.server.log_settings, reactor)
        # One lease line per exchange: replies as they leave, releases and
        # expiries as the table records them.
        self.lease_log = logs.LeaseLogger(lambda: self._config.server.log_settings, via=self.path.via,
                                          known=self._known)
        self.path.on_sent = self.lease_log.sent
        self.table.listeners.append(self.lease_log.lease_changed)
        self.traps = TrapDetector()
        self.notifier = TrapNotifier(reactor, lambda: self._config.server)
        self._pool: ThreadPool | None = None
        self._commit_runner = commit_runner
        self._committer: GroupCommitter | None = None
        #: Durations of the group commits that succeeded (/metrics).
        self.commit_seconds = Histogram(COMMIT_BUCKETS)

    def _loop(self, f: Callable[[], None]) -> LoopingCall:
        loop = LoopingCall(f)
        loop.clock = self.reactor
        return loop

    # -- what the admin commands and metrics read ------------------------------
    @property
    def config(self) -> Config:
        """The configuration in force (replaced by :meth:`reconfigure`, never changed in place)."""
        return self._config

    @property
    def sessions(self) -> list[FailoverSession]:
        """The failover sessions, in configuration order."""
        return [p.session for p in self.pairs.values()]

    @property
    def port(self) -> ReplyPort | None:
        """The DHCP socket adapter while serving."""
        return self.path.port

    @property
    def malformed(self) -> int:
        """Datagrams that were not DHCP/BOOTP."""
        return self.path.malformed

    @property
    def committer(self) -> GroupCommitter:
        """The group committer (made, and the store opened, on first use)."""
        if self._committer is None:
            run = self._commit_runner
            if run is None and not self._config.server.commit_thread:
                run = _run_now
            if run is None:
                # The commit thread needs the GIL only briefly around each
                # fsync; a short switch interval keeps it from waiting up to
                # 5 ms (CPython's default) behind the reactor for it.
                sys.setswitchinterval(0.0005)
                pool = self._pool = ThreadPool(1, 1, name="cnrd-commit")
                pool.start()
                run = lambda f: threads.deferToThreadPool(self.reactor, pool, f)  # noqa: E731
            self._committer = GroupCommitter(self.store, self._timed(run))
        return self._committer

    def _timed(self, run: Runner) -> Runner:
        """``run``, with each commit's duration counted in :attr:`commit_seconds` once it succeeded."""
        def timed(f: Callable[[], None]) -> defer.Deferred[None]:
            took = [0.0]

            def measured() -> None:
                # Timed where it runs (maybe the commit thread); counted on the reactor.
                t0 = time.perf_counter()
                f()
                took[0] = time.perf_counter() - t0

            def count(result: None) -> None:
                self.commit_seconds.observe(took[0])
                return result

            return run(measured).addCallback(count)
        return timed

    @property
    def reply_latency(self) -> dict[str, Histogram]:
        """Request -> reply latency by the reply's message type (the request path's)."""
        return self.path.latency

    @property
    def bndack_latency(self) -> dict[str, Histogram]:
        """BNDUPD -> BNDACK round trips, by failover pair."""
        return {name: pair.link.bndack_seconds for name, pair in self.pairs.items()}

    @property
    def commits(self) -> int:
        return self.committer.commits

    @property
    def commit_failures(self) -> int:
        return self.committer.failures

    @property
    def store(self) -> LeaseStore:
        """The lease store (opened from ``[server] data-dir`` on first use unless one was given)."""
        if self._store is None:
            self._store = open_store(self._config.server)
        return self._store

    def now(self) -> int:
        """The server's clock in whole seconds (the failover sessions' time)."""
        return int(self.reactor.seconds())

    def _known(self, address: int) -> tuple[str, bytes | None]:
        """The host name and client identifier the table holds for ``address``."""
        lease = self.table.get(address)
        return ("", None) if lease is None else (lease.host_name, lease.client_id)

    def log_event(self, event: str, fields: dict[str, Any]) -> None:
        """An event of the core (DHCP server, failover sessions): a log line per log-settings, and maybe a trap."""
        self.events(event, fields)
        trap = self.traps.observe(event, fields)
        if trap is not None:
            self.notifier.notify(trap)

    @property
    def registry_health(self) -> RegistryHealth | None:
        """The LDAP client registry's connection and lookups; None without one."""
        return self.ldap.health if self.ldap.configured else None

    def check_registry(self, config: Config) -> defer.Deferred[list[str]]:
        """Bind with the LDAP settings ``config`` changes; warnings, or fails with a ConfigError."""
        return self.ldap.check(self._config, config)

    def pair_addresses(self, name: str) -> tuple[str, str] | None:
        """Our address and the partner's in failover pair ``name``, None if it does not run."""
        pair = self.pairs.get(name)
        return None if pair is None else (pair.link.local_ip, pair.link.partner_ip)

    # -- failover --------------------------------------------------------------
    def add_pair(self, session: FailoverSession, link: FailoverService) -> None:
        """Run ``session`` over ``link``; its lease changes become binding updates."""
        self.pairs[session.name] = PairRuntime(session, link)
        self.table.listeners.append(session.lease_changed)

    def _flush_links(self) -> None:
        # Binding updates go once the clients' ACKs have left.
        for pair in self.pairs.values():
            pair.link.flush()

    def persist(self) -> defer.Deferred[bool]:
        """Send what the sessions decided and commit; fires with True once everything before it is durable."""
        self._flush_links()
        d: defer.Deferred[bool] = defer.Deferred()
        self.commit(d.callback)
        return d

    # -- configuration -----------------------------------------------------------
    def reconfigure(self, config: Config) -> list[str]:
        """Run with ``config`` from now on; returns warnings for the operator.

        The DHCP core takes scopes, pools, policies, reservations, clients
        and the [server] settings read while running at once; each failover
        session takes its pair's settings, scopes and per-scope backup
        percentages.  A setting told to the partner at the handshake that
        changes while connected drops the link, so both sides renegotiate.
        ``config`` must carry the running values of everything that needs a
        restart (data-dir, ports, interfaces, a pair's addresses ...).
        """
        old = self._config
        self._config = config
        warnings: list[str] = []
        scopes_of: dict[str, list[str]] = {}
        for name, pair in self.pairs.items():
            pc = config.failover_pairs.get(name, pair.session.pair)
            # A pair without a scope list covers every scope, new ones too.
            scopes = scopes_of[name] = list(pc.scopes) or list(config.scopes)
            for scope in scopes:
                self.server.gates[scope] = pair.session.gate
        self.server.configure(config)
        if self.ldap.configure(config) and self.server.registry is not None:
            self.server.registry.forget()  # another directory: its answers may differ
        # server-identifier counts as one of our addresses (REQUEST selecting).
        self.server.set_interfaces(list(self.server.interfaces.values()))
        now = self.now()
        for name, pair in self.pairs.items():
            for scope in scopes_of[name]:
                pool = self.table.pools.get(scope)
                if pool is not None:
                    pool.failover = True
            pc = config.failover_pairs.get(name, pair.session.pair)
            pct: dict[str, float] = {}
            for scope in scopes_of[name]:
                share = scope_pct(config.scopes[scope], pc) if scope in config.scopes else None
                if share is not None:
                    pct[scope] = share
            before = pair.session.pair
            changed = pair.session.reconfigure(pc, scopes_of[name], pct, config.server.failover_recover, now)
            if changed and pair.link.drop_link():
                keys = ", ".join(k.replace("_", "-") for k in changed)
                warnings.append(f"[failover-pair {name}] {keys} changed: the link to the partner is "
                                "re-established to negotiate it (the partner's file must agree)")
                log.warn("failover pair {pair}: {keys} changed; reconnecting to renegotiate", pair=name, keys=keys)
            if pc != before:
                pair.link.flush()
        self._responses, raised = response_buffers(config.server, failover=bool(self.pairs))
        if raised is not None:
            warnings.append(raised)
            if raised != self._responses_warning:
                log.warn("{warning}", warning=raised)
        self._responses_warning = raised
        self._apply_server_settings(old, config)
        return warnings

    def _apply_server_settings(self, old: Config, new: Config) -> None:
        s = new.server
        if self.path.port is not None:
            self.path.port.max_batch = s.max_dhcp_requests
        if not self.running:
            return
        for loop, before, after in ((self._expiry, old.server.expiry_interval, s.expiry_interval),
                                    (self._stats, old.server.stats_interval, s.stats_interval)):
            if before != after:
                if loop.running:
                    loop.stop()
                if after:
                    loop.start(after, now=False)

    # -- lifecycle -----------------------------------------------------------------
    def startService(self) -> None:
        service.Service.startService(self)
        self.started_at = self.reactor.seconds()
        now = int(self.started_at)
        t0 = time.monotonic()
        s = self._config.server
        self.gc = GcPolicy(self.reactor, s.gc_freeze_interval, s.gc_full_interval)
        with self.gc.loading():
            n = self.server.load(self.store.load(), now)
        for session in self.sessions:
            session.exchange.restore_queue()  # the binding updates the lease records keep queued
        log.info(
            "cnrd {version} server {name}: loaded {count} leases in {secs:.2f} s",
            version=__version__, name=s.name, count=n, secs=time.monotonic() - t0,
        )
        self.server.set_interfaces(self._interfaces(self._config))
        self._expire()  # leases that ran out while we were down
        # After the load: the leases just read are frozen with everything else.
        self.gc.start()
        port = self._port_factory(self.reactor, s.server_port, self.path.on_batch, max_batch=s.max_dhcp_requests)
        self.path.port = port
        port.start()
        self.ldap.start()
        self._expiry.start(s.expiry_interval, now=False)
        self._refresh.start(30, now=False)
        if s.stats_interval:
            self._stats.start(s.stats_interval, now=False)
        log.info(
            "serving DHCP on port {port}, interfaces {ifaces}, {scopes} scopes",
            port=s.server_port, ifaces=",".join(s.interfaces) or "(relays only)", scopes=len(self._config.scopes),
        )

    def stopService(self) -> defer.Deferred[None]:
        for loop in (self._expiry, self._refresh, self._stats):
            if loop.running:
                loop.stop()
        if self.gc is not None:
            self.gc.stop()
        self.path.stop()
        self.ldap.stop()
        port, self.path.port = self.path.port, None
        if port is not None:
            port.stop()
        service.Service.stopService(self)
        for session in self.sessions:
            session.exchange.mark_acked_times()
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

    # -- commits -------------------------------------------------------------------
    def commit(self, then: Callable[[bool], None]) -> None:
        """Make lease changes and failover state durable, then call ``then(ok)`` on the reactor."""
        sessions = self.sessions
        if sessions and self.table.has_dirty:
            # Partner times the BNDACKs raised ride along with lease changes
            # written anyway (and with the sessions' tick otherwise).
            for session in sessions:
                session.exchange.mark_acked_times()
        leases, events = self.table.take_dirty()
        state: dict[str, bytes | None] = {}
        for session in sessions:
            state.update(session.take_persist())
        if not leases and not events and all(v is None for v in state.values()):
            # Only keys to forget (an older store's queue keys): no sync needed
            # for that, they ride along with the next commit.
            for session in sessions:
                session.restore_persist(state)
            state = {}
        self.committer.submit(PackedBatch.of(leases, events, state), then)

    # -- timers --------------------------------------------------------------------
    def _expire(self) -> None:
        if self.server.expire(self.now()):
            self.commit(lambda ok: None)

    def _refresh_interfaces(self) -> None:
        try:
            self.server.set_interfaces(self._interfaces(self._config))
        except ConfigError as e:
            log.warn("interface refresh failed: {error}", error=str(e))

    def _log_stats(self) -> None:
        """One log line with what changed since the last one; silent when idle."""
        c = self.server.counters
        port = self.path.port
        kernel = port.kernel_drops if port is not None else 0
        snapshot = (dict(c.received), dict(c.sent), dict(c.drops), kernel, self.commits)
        if snapshot == self._last_stats:
            return
        self._last_stats = snapshot

        def fmt(d: dict[str, int]) -> str:
            return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"

        log.info(
            "stats: received {received}; sent {sent}; dropped {drops}; kernel drops {kernel}; "
            "commits {commits}; leases {leases}",
            received=fmt(c.received), sent=fmt(c.sent), drops=fmt(c.drops), kernel=kernel,
            commits=self.commits, leases=len(self.table.leases),
        )

