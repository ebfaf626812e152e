"""Prometheus metrics for one cnrd process, read from live state at scrape time.

:func:`registry_for` gives the registry the admin API serves at ``/metrics``.
Its collector keeps nothing of its own: at each scrape it reads the
counters the server keeps anyway (``DhcpServer.counters``, the peers'
update counts, the pools' address counts, the trap detector), so metrics
cost nothing on the packet path.  Per-scope address counts come from counts
the lease table keeps up to date (``Pool.address_counts``), never from
walking a pool's addresses.

The scrape runs on a web server thread (prometheus_client's Twisted
resource is a WSGI app); the collector reads the state on the reactor thread
and formats it on the calling one.  Times come from the service's reactor
clock.  docs/metrics.md lists every metric.
"""

from __future__ import annotations

import gc
import queue
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.internet.interfaces import IReactorTime
from twisted.python import threadable

from cnrd import __version__
from cnrd.config import Config
from cnrd.dhcp.protocol import ReplyPort
from cnrd.dhcp.registry import LOOKUP_BUCKETS, RegistryHealth
from cnrd.dhcp.server import DhcpServer
from cnrd.failover.session import FailoverSession
from cnrd.leases.store import LeaseStore
from cnrd.leases.table import LeaseTable
from cnrd.ops.gcpolicy import GcPolicy
from cnrd.ops.latency import REPLY_BUCKETS, Histogram
from cnrd.ops.webhook import TrapNotifier
from cnrd.failover.states import LABELS
from cnrd.leases.model import LeaseState
from cnrd.ops.traps import TRAPS, TrapDetector


SNAPSHOT_TIMEOUT = 10.0  # seconds a scrape waits for the reactor thread

#: Message types always exported (at 0 until seen), so the series exist from the start.
RECEIVED_TYPES = ("DISCOVER", "REQUEST", "DECLINE", "RELEASE", "INFORM", "BOOTP")
SENT_TYPES = ("OFFER", "ACK", "NAK", "BOOTREPLY")
#: DHCPLEASEQUERY (RFC 4388): the keys a query asks by, its answers, and why one is dropped.
LEASEQUERY_KEYS = ("ip", "client-id", "mac")
LEASEQUERY_ANSWERS = ("LEASEACTIVE", "LEASEUNASSIGNED", "LEASEUNKNOWN")
LEASEQUERY_DROPS = ("leasequery-not-allowed", "leasequery-without-giaddr", "leasequery-without-key")
#: LDAP lookup results and registry outcomes, exported at 0 until seen.
LDAP_RESULTS = ("found", "not-found", "bad-entry", "timeout", "unavailable", "error")
REGISTRY_OUTCOMES = ("found", "absent", "stale", "wait", "failed")
#: Every address state a scope reports, with its owner label (see _owner).
SCOPE_STATES = tuple(LeaseState)
#: Failover states exported per side; the partner side also has "unknown" (never heard).
FAILOVER_STATES = tuple(LABELS.values())

T = TypeVar("T")

_EMPTY_REPLY = Histogram(REPLY_BUCKETS)


class MetricsSource(Protocol):
    """What the collector reads of a running server (:class:`cnrd.app.runtime.Runtime`)."""

    gc: GcPolicy | None
    traps: TrapDetector
    notifier: TrapNotifier

    @property
    def reactor(self) -> IReactorTime: ...
    @property
    def config(self) -> Config: ...
    @property
    def server(self) -> DhcpServer: ...
    @property
    def table(self) -> LeaseTable: ...
    @property
    def running(self) -> bool | int: ...
    @property
    def port(self) -> ReplyPort | None: ...
    @property
    def malformed(self) -> int: ...
    @property
    def commits(self) -> int: ...
    @property
    def commit_failures(self) -> int: ...
    @property
    def store(self) -> LeaseStore: ...
    @property
    def sessions(self) -> list[FailoverSession]: ...
    @property
    def registry_health(self) -> RegistryHealth | None: ...
    @property
    def reply_latency(self) -> dict[str, Histogram]: ...
    @property
    def commit_seconds(self) -> Histogram: ...
    @property
    def bndack_latency(self) -> dict[str, Histogram]: ...


def registry_for(dhcp: MetricsSource) -> CollectorRegistry:
    """A registry with cnrd's metrics for ``dhcp`` (a running server) and the process's own.

    Mount it with ``prometheus_client.twisted.MetricsResource(registry=registry_for(dhcp))``.
    """
    registry = CollectorRegistry()
    registry.register(CnrdCollector(dhcp))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def on_reactor(reactor: object, f: Callable[[], T], timeout: float = SNAPSHOT_TIMEOUT) -> T:
    """``f()``, run on the reactor thread when called from another one while the reactor runs.

    The server's state is only ever changed on the reactor thread; reading
    it there gives a consistent snapshot and no "dict changed size during
    iteration".  Without a running reactor (tests on a Clock), ``f`` runs here.
    """
    call = getattr(reactor, "callFromThread", None)
    # ioThread is set once a reactor has run (typeshed has it as None only).
    io_thread = getattr(threadable, "ioThread", None)
    in_io_thread = io_thread is None or threadable.isInIOThread()
    if call is None or in_io_thread or not getattr(reactor, "running", False):
        return f()
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            box.put((True, f()))
        except BaseException as e:  # handed to the scraping thread, which raises it
            box.put((False, e))

    call(run)
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"the reactor did not answer the metrics scrape within {timeout} s") from None
    if not ok:
        raise value
    result: T = value
    return result


class CnrdCollector(Collector):
    """cnrd's metrics for one running server, built at each scrape from its live state."""

    def __init__(self, dhcp: MetricsSource, *, timeout: float = SNAPSHOT_TIMEOUT) -> None:
        self.dhcp = dhcp
        self.timeout = timeout

    def describe(self) -> list[Metric]:
        """The metric names (so a registry can filter by name), without samples."""
        return self._families(with_samples=False)

    def collect(self) -> list[Metric]:
        """Every metric, read from the service on the reactor thread."""
        return on_reactor(self.dhcp.reactor, self._families, self.timeout)

    # -- building ------------------------------------------------------------
    def _families(self, with_samples: bool = True) -> list[Metric]:
        fams = _Families()
        self._dhcp(fams, with_samples)
        self._leasequery(fams, with_samples)
        self._ldap(fams, with_samples)
        self._scopes(fams, with_samples)
        self._failover(fams, with_samples)
        self._traps(fams, with_samples)
        self._latency(fams, with_samples)
        return fams.out

    def _latency(self, f: _Families, samples: bool) -> None:
        reply = HistogramMetricFamily(
            "cnrd_dhcp_reply_seconds", "Time from a request's arrival (its read batch) to its reply leaving, "
            "by the reply's message type; an ACK's includes its commit", labels=["type"])
        commit = HistogramMetricFamily("cnrd_lease_commit_seconds",
                                       "Duration of one group commit of the lease store (write and fsync)")
        bndack = HistogramMetricFamily("cnrd_failover_bndack_seconds",
                                       "Time from a BNDUPD sent to the partner to its BNDACK, by failover pair",
                                       labels=["pair"])
        f.out.extend((reply, commit, bndack))
        if not samples:
            return
        dhcp = self.dhcp
        latencies = dict(dhcp.reply_latency)
        for kind in SENT_TYPES:  # the usual reply types exist from the start (at 0)
            latencies.setdefault(kind, _EMPTY_REPLY)
        for kind, h in sorted(latencies.items()):
            reply.add_metric([kind], h.buckets(), h.total)
        commit.add_metric([], dhcp.commit_seconds.buckets(), dhcp.commit_seconds.total)
        pairs = dhcp.bndack_latency
        for name in sorted(pairs):
            h = pairs[name]
            bndack.add_metric([name], h.buckets(), h.total)

    def _dhcp(self, f: _Families, samples: bool) -> None:
        dhcp = self.dhcp
        info = f.gauge("cnrd_info", "cnrd version and server name; always 1", ["version", "server"])
        enabled = f.gauge("cnrd_dhcp_enabled", "1 while the server answers DHCP clients (dhcp start/stop)")
        received = f.counter("cnrd_dhcp_packets_received_total", "DHCP and BOOTP requests received, by message type",
                             ["type"])
        sent = f.counter("cnrd_dhcp_packets_sent_total", "DHCP and BOOTP replies sent, by message type", ["type"])
        drops = f.counter("cnrd_dhcp_drops_total", "Requests not answered, by reason", ["reason"])
        malformed = f.counter("cnrd_dhcp_malformed_packets_total", "Datagrams that were not valid DHCP/BOOTP")
        kernel = f.counter("cnrd_dhcp_kernel_drops_total",
                           "Datagrams the kernel dropped because the socket's receive queue was full")
        commits = f.counter("cnrd_lease_commits_total", "Lease store commits (one fsync each)")
        failures = f.counter("cnrd_lease_commit_failures_total", "Lease store commits that failed")
        records = f.gauge("cnrd_lease_records", "Lease records held in memory, in every state")
        applies = f.counter("cnrd_lease_journal_applies_total",
                            "Background applies of the lease journal to LMDB (0 with lease-journal off)")
        unapplied = f.gauge("cnrd_lease_journal_unapplied_commits",
                            "Commits durable in the lease journal that LMDB does not hold yet")
        direct = f.counter("cnrd_lease_journal_direct_writes_total",
                           "Group commits written straight to LMDB: too big for the journal, or the ring was full")
        restarts = f.counter("cnrd_lease_journal_applier_restarts_total",
                             "Times the journal's applier process died and another was started")
        gc_pauses = f.counter("cnrd_gc_pauses_total", "Cyclic garbage collections, by generation", ["generation"])
        gc_seconds = f.counter("cnrd_gc_pause_seconds_total",
                               "Seconds the server stood still for garbage collection, by generation", ["generation"])
        gc_max = f.gauge("cnrd_gc_pause_max_seconds", "Longest garbage collection pause since start, by generation",
                         ["generation"])
        gc_frozen = f.gauge("cnrd_gc_frozen_objects", "Objects the collector no longer walks (gc-freeze-interval)")
        if not samples:
            return
        policy = dhcp.gc
        if policy is not None:
            for gen, (n, secs, longest) in sorted(policy.pauses.items()):
                gc_pauses.add_metric([str(gen)], n)
                gc_seconds.add_metric([str(gen)], secs)
                gc_max.add_metric([str(gen)], longest)
        gc_frozen.add_metric([], gc.get_freeze_count())
        c = dhcp.server.counters
        info.add_metric([__version__, dhcp.config.server.name], 1)
        enabled.add_metric([], 1 if dhcp.server.enabled else 0)
        for name, values, base in ((received, c.received, RECEIVED_TYPES), (sent, c.sent, SENT_TYPES),
                                   (drops, c.drops, ())):
            counts = dict(values)
            for key in base:
                counts.setdefault(key, 0)
            for key, n in sorted(counts.items()):
                name.add_metric([key], n)
        malformed.add_metric([], dhcp.malformed)
        port = dhcp.port
        kernel.add_metric([], port.kernel_drops if port is not None else 0)
        # The committer (and the store) exist once the service runs; reading
        # them earlier would open the store from a scrape.
        commits.add_metric([], dhcp.commits if dhcp.running else 0)
        failures.add_metric([], dhcp.commit_failures if dhcp.running else 0)
        records.add_metric([], len(dhcp.table.leases))
        store = dhcp.store if dhcp.running else None
        applies.add_metric([], getattr(store, "applies", 0))
        unapplied.add_metric([], getattr(store, "unapplied", 0))
        direct.add_metric([], getattr(store, "direct_writes", 0))
        restarts.add_metric([], getattr(store, "applier_restarts", 0))

    def _leasequery(self, f: _Families, samples: bool) -> None:
        queries = f.counter("cnrd_leasequery_queries_total",
                            "DHCPLEASEQUERYs answered, by what they asked by (ip, client-id, mac)", ["by"])
        answers = f.counter("cnrd_leasequery_answers_total", "DHCPLEASEQUERY answers sent, by message type",
                            ["type"])
        drops = f.counter("cnrd_leasequery_drops_total",
                          "DHCPLEASEQUERYs not answered, by reason (a relay not in leasequery-allow, ...)",
                          ["reason"])
        if not samples:
            return
        c = self.dhcp.server.counters
        for by in LEASEQUERY_KEYS:
            queries.add_metric([by], c.leasequery[by])
        for kind in LEASEQUERY_ANSWERS:
            answers.add_metric([kind], c.sent[kind])
        for reason in LEASEQUERY_DROPS:
            drops.add_metric([reason], c.drops[reason])

    def _ldap(self, f: _Families, samples: bool) -> None:
        up = f.gauge("cnrd_ldap_up", "1 while bound to an LDAP server of the client registry "
                     "(absent without [ldap] sections)")
        lookups = f.counter("cnrd_ldap_lookups_total", "Client registry lookups sent to LDAP, by result "
                            "(found, not-found, bad-entry, timeout, unavailable, error)", ["result"])
        seconds = HistogramMetricFamily("cnrd_ldap_lookup_seconds",
                                        "Time from a lookup's start to the LDAP server's answer")
        requests = f.counter("cnrd_client_registry_requests_total",
                             "Requests that needed a registry entry, by outcome (found, absent: cached; stale: "
                             "cached past its TTL while LDAP failed; wait: parked for a lookup; failed: none usable)",
                             ["outcome"])
        entries = f.gauge("cnrd_client_registry_entries", "Registry answers cached (client-cache-count bounds it)")
        waiting = f.gauge("cnrd_client_registry_waiting", "Requests parked for an LDAP lookup now")
        f.out.append(seconds)
        health = self.dhcp.registry_health
        registry = self.dhcp.server.registry
        if not samples or health is None or registry is None:
            return
        up.add_metric([], 1 if health.up else 0)
        for result in LDAP_RESULTS:
            lookups.add_metric([result], health.results[result])
        cumulative, buckets = 0, []
        for bound, n in zip(LOOKUP_BUCKETS, health.buckets):
            cumulative += n
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", health.count))
        seconds.add_metric([], buckets, health.total)
        for outcome in REGISTRY_OUTCOMES:
            requests.add_metric([outcome], registry.stats[outcome])
        entries.add_metric([], len(registry))
        waiting.add_metric([], registry.waiting)

    def _scopes(self, f: _Families, samples: bool) -> None:
        addresses = f.gauge(
            "cnrd_scope_addresses",
            "Addresses in each scope's ranges by state; owner is main or backup for free addresses of a "
            "failover scope (available: the main's, backup: the backup's), empty otherwise",
            ["scope", "state", "owner"])
        if not samples:
            return
        for name, pool in sorted(self.dhcp.table.pools.items()):
            counts = pool.address_counts()
            for state in SCOPE_STATES:
                addresses.add_metric([name, state.label, _owner(state, pool.failover)], counts.get(state, 0))

    def _failover(self, f: _Families, samples: bool) -> None:
        pair_info = f.gauge("cnrd_failover_pair_info", "This server's role in each failover pair; always 1",
                            ["pair", "role"])
        state = f.gauge("cnrd_failover_state",
                        "1 for the failover state each side of the pair is in (partner: as last heard; "
                        "unknown if never), 0 for the others", ["pair", "side", "state"])
        age = f.gauge("cnrd_failover_state_age_seconds", "Seconds since this server entered its failover state",
                      ["pair"])
        contact = f.gauge("cnrd_failover_partner_contact_age_seconds",
                          "Seconds since the last message from the partner (since start-up if none in this run)",
                          ["pair"])
        comm = f.gauge("cnrd_failover_communication_ok",
                       "1 while connected to the partner with the handshake done and its state heard", ["pair"])
        upd_sent = f.counter("cnrd_failover_bndupd_sent_total", "Binding updates (BNDUPD) sent to the partner",
                             ["pair"])
        upd_acked = f.counter("cnrd_failover_bndupd_acked_total", "Binding updates the partner acknowledged",
                              ["pair"])
        upd_rejected = f.counter("cnrd_failover_bndupd_rejected_total", "Binding updates the partner rejected",
                                 ["pair"])
        upd_received = f.counter("cnrd_failover_bndupd_received_total",
                                 "Binding updates received from the partner", ["pair"])
        unacked = f.gauge("cnrd_failover_bndupd_unacked",
                          "Binding updates the partner has not acknowledged yet (queued or in flight)", ["pair"])
        in_flight = f.gauge("cnrd_failover_bndupd_in_flight", "Binding updates sent and awaiting their BNDACK",
                            ["pair"])
        transitions = f.counter("cnrd_failover_state_transitions_total",
                                "Failover state changes of this server since start-up", ["pair"])
        skew = f.gauge("cnrd_failover_clock_skew_seconds",
                       "The partner's clock minus ours, measured at the last handshake", ["pair"])
        mismatch = f.gauge("cnrd_failover_config_mismatch",
                           "1 while a failover-configuration-mismatch episode lasts: from a refused handshake or "
                           "update until the partner is next heard, or from a comparison of the partners' "
                           "configurations that found differences until one finds none", ["pair"])
        if not samples:
            return
        dhcp = self.dhcp
        now = dhcp.reactor.seconds()
        for session in dhcp.sessions:
            st = session.status()
            pair = st.name
            pair_info.add_metric([pair, st.role.value], 1)
            for label in FAILOVER_STATES:
                state.add_metric([pair, "local", label], 1 if label == st.label else 0)
            for label in FAILOVER_STATES + ("unknown",):
                state.add_metric([pair, "partner", label], 1 if label == st.partner_label else 0)
            age.add_metric([pair], max(now - st.stos, 0))
            heard = st.last_contact if st.last_contact is not None else st.started
            contact.add_metric([pair], max(now - heard, 0))
            comm.add_metric([pair], 1 if st.in_touch else 0)
            upd_sent.add_metric([pair], st.sent_updates)
            upd_acked.add_metric([pair], st.acked_updates)
            upd_rejected.add_metric([pair], st.rejected_updates)
            upd_received.add_metric([pair], st.received_updates)
            unacked.add_metric([pair], st.queued)
            in_flight.add_metric([pair], st.in_flight)
            transitions.add_metric([pair], st.transitions)
            skew.add_metric([pair], st.clock_skew)
            mismatch.add_metric([pair], 1 if dhcp.traps.config_mismatch(pair) else 0)

    def _traps(self, f: _Families, samples: bool) -> None:
        traps = f.counter("cnrd_traps_total", "Traps raised, by trap and failover pair", ["trap", "pair"])
        delivered = f.counter("cnrd_trap_webhook_deliveries_total",
                              "Traps POSTed to [server] trap-webhook and answered with a 2xx status")
        failed = f.counter("cnrd_trap_webhook_failures_total",
                           "Trap webhook POSTs that failed (refused, timed out, non-2xx, too many outstanding)")
        if not samples:
            return
        dhcp = self.dhcp
        counts = dict(dhcp.traps.counts)
        for session in dhcp.sessions:
            for name in TRAPS:
                counts.setdefault((name, session.name), 0)
        for (name, pair), n in sorted(counts.items()):
            traps.add_metric([name, pair], n)
        delivered.add_metric([], dhcp.notifier.delivered)
        failed.add_metric([], dhcp.notifier.failed)


def _owner(state: LeaseState, failover: bool) -> str:
    # draft-ietf-dhc-failover-12: FREE addresses are the primary's (CNR's
    # main), BACKUP ones the secondary's; a client's address, or any address
    # of a scope without failover, has no owner.
    if failover and state is LeaseState.AVAILABLE:
        return "main"
    if state is LeaseState.BACKUP:
        return "backup"
    return ""


class _Families:
    """The families of one scrape, in the order they were made."""

    def __init__(self) -> None:
        self.out: list[Metric] = []

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        fam = CounterMetricFamily(name, doc, labels=list(labels))
        self.out.append(fam)
        return fam

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        fam = GaugeMetricFamily(name, doc, labels=list(labels))
        self.out.append(fam)
        return fam
