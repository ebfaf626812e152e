"""/metrics: the Prometheus exposition of a live Runtime, parsed back.

A standalone service on a fake port, and a failover pair of two in-process
DhcpServices whose real Peers are linked in memory (the same Link as
tests/failover/test_peer.py), in NORMAL and COMMUNICATIONS-INTERRUPTED.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet import threads
from twisted.internet.task import Clock

from cnrd.config import Range, loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.failover import wire
from cnrd.failover.states import Role, S
from cnrd.leases.journal import JournaledStore
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.store import MemoryLeaseStore
from cnrd.leases.table import LeaseTable, Pool
from cnrd.admin.metrics import on_reactor, registry_for
from cnrd.app.build import add_failover
from cnrd.app.runtime import Runtime
from tests.dhcp.helpers import IFACE, SERVER_IP, mac, request, u32
from tests.failover.test_peer import CONFIG as PAIR_CONFIG
from tests.failover.test_peer import T0, Link
from tests.test_service import FakePort, Rx, make, run_now

PAIR = "examplepair"


# -- scraping ------------------------------------------------------------------
def scrape(dhcp) -> dict[str, dict[frozenset, float]]:
    """Every sample of /metrics, as name -> {labels: value}, through the text format."""
    text = generate_latest(registry_for(dhcp)).decode()
    out: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(metrics, name: str, **labels) -> float:
    return metrics[name][frozenset(labels.items())]


def series(metrics, name: str, **match) -> dict[frozenset, float]:
    want = set(match.items())
    return {k: v for k, v in metrics.get(name, {}).items() if want <= set(k)}


# -- an in-process failover pair ---------------------------------------------------
class Node:
    """A Runtime with its failover Peer as add_failover wires it, on its own Clock and fake port."""

    def __init__(self, role: Role, extra: str = "", config_text: str = PAIR_CONFIG) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.config = loads(config_text.format(name=role.value) + extra)
        self.store = MemoryLeaseStore()
        self.ports: list[FakePort] = []

        def port(*a, **kw):
            p = FakePort(*a, **kw)
            self.ports.append(p)
            return p

        self.dhcp = Runtime(self.config, self.clock, store=self.store, port_factory=port,
                                interfaces=lambda c: [IFACE], commit_runner=run_now)
        self.top = MultiService()
        self.dhcp.setServiceParent(self.top)
        me = "10.1.0.1" if role is Role.MAIN else "10.1.0.2"
        self.links = add_failover(self.top, self.dhcp, self.config, self.clock, {me})
        # The in-memory Link moves the session's messages, not the FailoverService.
        self.dhcp.path.after_send = lambda: None
        self.dhcp.startService()
        self.session = self.dhcp.sessions[0]
        # what tests.failover.test_peer.Link expects of a side
        self.table = self.dhcp.table
        self.framer = wire.Framer()
        self.persisted: dict = {}
        self.wire_log: list = []

    @property
    def port(self) -> FakePort:
        return self.ports[0]


class PairLink(Link):
    """Link that also moves both services' clocks, so metrics see the peers' time."""

    def advance(self, seconds: int, step: int = 1):
        for _ in range(0, seconds, step):
            self.a.clock.advance(step)
            self.b.clock.advance(step)
            self.now += step
            self.a.session.tick(self.now)
            self.b.session.tick(self.now)
            self.settle()


def pair(extra: str = "") -> tuple[Node, Node, PairLink]:
    main, backup = Node(Role.MAIN, extra), Node(Role.BACKUP, extra)
    return main, backup, PairLink(main, backup, T0)


def lease_on(node: Node, n: int) -> int:
    """A client gets an address from ``node`` through DISCOVER/REQUEST on its port."""
    node.port.on_batch([Rx(request(M.DISCOVER, mac(n)).serialize())], 0)
    offer = node.port.sent[-1][1]
    assert offer.message_type == M.OFFER
    node.port.on_batch([Rx(request(M.REQUEST, mac(n), o50=u32(offer.yiaddr), o54=u32(SERVER_IP)).serialize())], 0)
    assert node.port.sent[-1][1].message_type == M.ACK
    return offer.yiaddr


# -- standalone ------------------------------------------------------------------------
def test_journal_series_follow_the_journaled_store(tmp_path):
    store = JournaledStore(str(tmp_path / "db"), map_size=1 << 24, journal_size=1 << 16, apply_interval=3600)
    svc, port, _, _ = make(store=store)
    try:
        port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
        yi = port.sent[0][1].yiaddr
        port.on_batch([Rx(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(SERVER_IP)).serialize())], 0)
        store.flush()  # what the background thread does within 50 ms
        m = scrape(svc)
        assert value(m, "cnrd_lease_journal_applies_total") == store.applies >= 1
        assert value(m, "cnrd_lease_journal_unapplied_commits") == 0
        assert value(m, "cnrd_lease_journal_direct_writes_total") == 0
        assert value(m, "cnrd_lease_journal_applier_restarts_total") == 0
    finally:
        store.close()


def test_dhcp_counters_commits_and_scope_addresses():
    svc, port, store, _ = make()
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize()), Rx(b"\x01\x02junk")], 3)
    yi = port.sent[0][1].yiaddr
    port.on_batch([Rx(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(SERVER_IP)).serialize())], 0)
    m = scrape(svc)
    assert value(m, "cnrd_dhcp_packets_received_total", type="DISCOVER") == 1
    assert value(m, "cnrd_dhcp_packets_received_total", type="REQUEST") == 1
    assert value(m, "cnrd_dhcp_packets_received_total", type="INFORM") == 0  # exported before it is seen
    assert value(m, "cnrd_dhcp_packets_sent_total", type="OFFER") == 1
    assert value(m, "cnrd_dhcp_packets_sent_total", type="ACK") == 1
    assert value(m, "cnrd_dhcp_drops_total", reason="malformed") == 1
    assert value(m, "cnrd_dhcp_drops_total", reason="overload") == 3
    assert value(m, "cnrd_dhcp_malformed_packets_total") == 1
    assert value(m, "cnrd_lease_commits_total") == store.commits >= 1
    assert value(m, "cnrd_lease_commit_failures_total") == 0
    assert value(m, "cnrd_dhcp_enabled") == 1
    assert value(m, "cnrd_info", version=__import__("cnrd").__version__, server="test") == 1
    # 10 addresses in lan's range: one leased, the rest never used; not a failover scope: no owner
    assert value(m, "cnrd_scope_addresses", scope="lan", state="leased", owner="") == 1
    assert value(m, "cnrd_scope_addresses", scope="lan", state="available", owner="") == 9
    assert sum(series(m, "cnrd_scope_addresses", scope="lan").values()) == 10
    # no failover: no pair series
    assert not m.get("cnrd_failover_state")
    # the process collector rides along
    assert "process_start_time_seconds" in m
    # the garbage collector's pauses (cnrd/gcpolicy.py): frozen after the load
    assert value(m, "cnrd_gc_frozen_objects") > 0
    assert {dict(k)["generation"] for k in series(m, "cnrd_gc_pauses_total")} == {"0", "1", "2"}
    assert value(m, "cnrd_gc_pause_max_seconds", generation="2") >= 0


def test_names_follow_prometheus_conventions():
    svc, *_ = make()
    for family in text_string_to_metric_families(generate_latest(registry_for(svc)).decode()):
        if not family.name.startswith("cnrd_"):
            continue
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        else:
            assert not family.name.endswith("_total"), family.name
        assert family.documentation, family.name


# -- a failover pair ------------------------------------------------------------------
def test_pair_in_normal():
    main, backup, link = pair()
    link.connect()
    assert (main.session.state, backup.session.state) == (S.NORMAL, S.NORMAL)
    addr = lease_on(main, 1)
    link.settle()
    link.advance(5)
    m, b = scrape(main.dhcp), scrape(backup.dhcp)

    # one series per state and side, exactly one of them 1
    local = series(m, "cnrd_failover_state", pair=PAIR, side="local")
    assert value(m, "cnrd_failover_state", pair=PAIR, side="local", state="NORMAL") == 1
    assert sum(local.values()) == 1 and len(local) == 12
    assert value(m, "cnrd_failover_state", pair=PAIR, side="partner", state="NORMAL") == 1
    assert sum(series(m, "cnrd_failover_state", pair=PAIR, side="partner").values()) == 1
    assert value(m, "cnrd_failover_pair_info", pair=PAIR, role="main") == 1
    assert value(b, "cnrd_failover_pair_info", pair=PAIR, role="backup") == 1
    assert value(m, "cnrd_failover_communication_ok", pair=PAIR) == 1
    assert value(m, "cnrd_failover_state_age_seconds", pair=PAIR) == 5
    assert value(m, "cnrd_failover_partner_contact_age_seconds", pair=PAIR) <= 2  # CONTACTs keep it fresh

    # 5 addresses to the backup (backup-pct 10 of 50) and the client's lease
    sent = value(m, "cnrd_failover_bndupd_sent_total", pair=PAIR)
    assert sent == main.session.status().sent_updates >= 6
    assert value(m, "cnrd_failover_bndupd_acked_total", pair=PAIR) == sent
    assert value(m, "cnrd_failover_bndupd_rejected_total", pair=PAIR) == 0
    assert value(b, "cnrd_failover_bndupd_received_total", pair=PAIR) == backup.session.status().received_updates >= 6
    assert value(m, "cnrd_failover_bndupd_unacked", pair=PAIR) == 0
    assert value(m, "cnrd_failover_bndupd_in_flight", pair=PAIR) == 0
    assert value(m, "cnrd_failover_state_transitions_total", pair=PAIR) == main.session.status().transitions >= 2
    assert value(m, "cnrd_failover_clock_skew_seconds", pair=PAIR) == 0
    assert value(m, "cnrd_failover_config_mismatch", pair=PAIR) == 0

    # both sides count the same addresses: owners from the failover split
    for scraped in (m, b):
        assert value(scraped, "cnrd_scope_addresses", scope="lan", state="backup", owner="backup") == 5
        assert value(scraped, "cnrd_scope_addresses", scope="lan", state="leased", owner="") == 1
        assert value(scraped, "cnrd_scope_addresses", scope="lan", state="available", owner="main") == 44
        assert sum(series(scraped, "cnrd_scope_addresses", scope="lan").values()) == 50
    assert backup.table.get(addr).state is LeaseState.LEASED

    # no trap in a healthy pair, but the series exist
    assert value(m, "cnrd_traps_total", trap="other-server-not-responding", pair=PAIR) == 0
    assert value(m, "cnrd_traps_total", trap="failover-configuration-mismatch", pair=PAIR) == 0


def test_pair_in_communications_interrupted_and_back():
    main, backup, link = pair()
    link.connect()
    link.advance(3)
    link.drop()
    assert (main.session.state, backup.session.state) == (S.COMMUNICATIONS_INTERRUPTED,) * 2
    lease_on(main, 2)  # served from the main's own pool; the update waits in the queue
    link.advance(30)
    m = scrape(main.dhcp)
    assert value(m, "cnrd_failover_state", pair=PAIR, side="local", state="COMMUNICATIONS-INTERRUPTED") == 1
    assert value(m, "cnrd_failover_state", pair=PAIR, side="local", state="NORMAL") == 0
    # the partner's state as last heard
    assert value(m, "cnrd_failover_state", pair=PAIR, side="partner", state="NORMAL") == 1
    assert value(m, "cnrd_failover_communication_ok", pair=PAIR) == 0
    assert value(m, "cnrd_failover_state_age_seconds", pair=PAIR) == 30
    assert value(m, "cnrd_failover_partner_contact_age_seconds", pair=PAIR) >= 30
    assert value(m, "cnrd_failover_bndupd_unacked", pair=PAIR) == 1
    # one trap for the whole episode, however many ticks passed
    for scraped in (m, scrape(backup.dhcp)):
        assert value(scraped, "cnrd_traps_total", trap="other-server-not-responding", pair=PAIR) == 1

    link.connect()
    assert main.session.state is S.NORMAL
    m = scrape(main.dhcp)
    assert value(m, "cnrd_failover_bndupd_unacked", pair=PAIR) == 0
    assert value(m, "cnrd_failover_communication_ok", pair=PAIR) == 1
    link.drop()  # a new episode: a new trap
    assert value(scrape(main.dhcp), "cnrd_traps_total", trap="other-server-not-responding", pair=PAIR) == 2


def test_partner_never_heard_reports_unknown_and_time_since_start():
    main = Node(Role.MAIN)
    for _ in range(10):
        main.clock.advance(1)
        main.session.tick(int(main.clock.seconds()))
    m = scrape(main.dhcp)
    assert value(m, "cnrd_failover_state", pair=PAIR, side="partner", state="unknown") == 1
    assert value(m, "cnrd_failover_partner_contact_age_seconds", pair=PAIR) == 10
    assert value(m, "cnrd_traps_total", trap="other-server-not-responding", pair=PAIR) == 1


# -- pool counts ---------------------------------------------------------------------------
def _brute(table: LeaseTable, pool: Pool) -> dict[LeaseState, int]:
    counts: Counter = Counter()
    for r in pool.ranges:
        for a in range(r.first, r.last + 1):
            lease = table.leases.get(a)
            if lease is not None:
                counts[lease.state] += 1
            elif a in table.reserved:
                counts[LeaseState.RESERVED] += 1
            else:
                counts[LeaseState.AVAILABLE] += 1
    return {s: n for s, n in counts.items() if n}


_OPS = st.lists(st.tuples(
    st.sampled_from(["update", "allocate", "reserve", "unreserve", "repool", "expire"]),
    st.integers(0, 23), st.sampled_from(list(LeaseState)), st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_OPS, st.booleans(), st.lists(st.integers(0, 23), max_size=6))
def test_pool_counts_stay_right(ops, first_available, stored):
    """address_counts() equals a walk over the ranges after any sequence of table changes."""
    base = 0x0A000000
    ranges = [Range(base + 2, base + 9), Range(base + 12, base + 19)]
    table = LeaseTable()
    table.add_pool(Pool("s", ranges, first_available))
    table.load([Lease(base + i, state=LeaseState.LEASED, scope="s", hw=b"\x01" + bytes([i]) * 6, expiration=100)
                for i in set(stored)], now=0)
    for op, i, state, flag in ops:
        address = base + i  # 0..23 covers addresses in, between and outside the ranges
        if op == "update":
            table.update(address, durable=flag, now=1, state=state, scope="s", expiration=50 if flag else 0)
        elif op == "allocate":
            got = table.allocate("s", b"k")
            if got is not None:
                table.update(got, durable=False, state=LeaseState.OFFERED, scope="s", hw=b"\x01k", expiration=60)
        elif op == "reserve":
            table.reserve(address, b"r" + bytes([i]))
        elif op == "unreserve":
            table.unreserve(address)
        elif op == "repool":
            table.add_pool(Pool("s", ranges, flag))  # a reload's new pool learns the records
        else:
            table.expire(200)
        pool = table.pools["s"]
        assert pool.address_counts() == _brute(table, pool)
        assert sum(pool.address_counts().values()) == pool.size


def test_scope_counts_do_not_walk_a_large_pool():
    table = LeaseTable()
    table.add_pool(Pool("big", [Range(0x0A000001, 0x0A00FFFE)], False))  # a /16
    table.update(0x0A000005, durable=True, state=LeaseState.LEASED, scope="big", hw=b"\x01aaaaaa")
    counts = table.pools["big"].address_counts()
    assert counts == {LeaseState.LEASED: 1, LeaseState.AVAILABLE: 65533}
    assert len(table.pools["big"]._skip) == 1  # nothing materialised per address


# -- the scrape thread -----------------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_scrape_from_a_thread_reads_on_the_reactor_thread():
    from twisted.internet import reactor

    svc = Runtime(loads(PAIR_CONFIG.format(name="main")), reactor, store=MemoryLeaseStore(),
                      port_factory=FakePort, interfaces=lambda c: [IFACE], commit_runner=run_now)
    seen = []

    def snapshot():
        seen.append(threading.current_thread() is threading.main_thread())
        return generate_latest(registry_for(svc)).decode()

    text = yield threads.deferToThread(snapshot)
    assert "cnrd_dhcp_packets_received_total" in text
    assert seen == [False]  # the scrape ran on a worker thread ...
    ran_on: list[bool] = []
    yield threads.deferToThread(on_reactor, reactor, lambda: ran_on.append(
        threading.current_thread() is threading.main_thread()))
    assert ran_on == [True]  # ... and reads state on the reactor's


def test_on_reactor_runs_inline_without_a_running_reactor():
    assert on_reactor(Clock(), lambda: 42) == 42


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
