"""Traps: which events are traps (once per episode), their log line, metrics, and the webhook."""

from __future__ import annotations

import json
import re
import socket
from contextlib import contextmanager
from dataclasses import replace

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.web import resource, server

from cnrd.config import ConfigError, ServerConfig, loads
from cnrd.failover import wire
from cnrd.failover.protocol import FailoverProtocol
from cnrd.failover.states import Role, S
from cnrd.failover.wire import RejectReason
from cnrd.leases.store import MemoryLeaseStore
from cnrd.app.build import add_failover
from cnrd.app.runtime import Runtime
from cnrd.ops.traps import (
    CONFIG_MISMATCH,
    NOT_RESPONDING,
    Trap,
    TrapDetector,
    classify,
    payload,
)
from cnrd.ops.webhook import TrapNotifier
from tests.dhcp.helpers import IFACE
from tests.failover.test_peer import CONFIG as PAIR_CONFIG
from tests.failover.test_peer import T0
from tests.test_metrics import Node, PairLink, lease_on, scrape, value
from tests.test_service import FakePort, run_now

PAIR = "examplepair"


@contextmanager
def captured():
    """Log events emitted inside the block."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def trap_lines(events):
    return [e for e in events if e.get("event") == "trap"]


# -- the pure decision ---------------------------------------------------------------
def test_not_responding_once_per_episode():
    d = TrapDetector()
    comm_int = {"pair": PAIR, "from": "NORMAL", "to": "COMMUNICATIONS-INTERRUPTED", "reason": "communication lost"}
    assert d.observe("failover-comm-lost", {"pair": PAIR}).name == NOT_RESPONDING
    assert d.observe("failover-state", comm_int) is None  # same episode
    assert d.observe("failover-handshake-timeout", {"pair": PAIR}) is None
    assert d.observe("failover-comm-lost", {"pair": "other"}).pair == "other"  # per pair
    d.observe("failover-comm-ok", {"pair": PAIR, "partner_state": "NORMAL"})
    trap = d.observe("failover-state", comm_int)
    assert trap is not None and trap.fields["state"] == "COMMUNICATIONS-INTERRUPTED"
    assert d.counts[(NOT_RESPONDING, PAIR)] == 2 and d.counts[(NOT_RESPONDING, "other")] == 1


def test_which_events_are_traps():
    assert classify("failover-partner-not-heard", {"pair": PAIR, "seconds": 6}).name == NOT_RESPONDING
    # state changes other than into COMMUNICATIONS-INTERRUPTED are not
    assert classify("failover-state", {"pair": PAIR, "from": "RECOVER", "to": "NORMAL", "reason": "x"}) is None
    for event, reason, by in [("failover-reject", RejectReason.INVALID_MCLT, "local"),
                              ("failover-reject", RejectReason.INVALID_PARTNER, "local"),
                              ("failover-reject", RejectReason.HBA_CONFLICT, "local"),
                              ("failover-rejected", RejectReason.INVALID_PARTNER, "partner"),
                              ("failover-disconnect", RejectReason.VERSION_MISMATCH, "partner")]:
        trap = classify(event, {"pair": PAIR, "reason": int(reason), "message": "m"})
        assert trap.name == CONFIG_MISMATCH and trap.fields["rejected_by"] == by
        assert trap.fields["reject_reason"] == int(reason) and trap.fields["reject_reason_name"] == reason.name
    # not configuration: clocks, duplicates, silence, plain conflicts
    for reason in (RejectReason.TIME_MISMATCH, RejectReason.DUPLICATE_CONNECTION, RejectReason.NO_TRAFFIC,
                   RejectReason.UNKNOWN):
        assert classify("failover-reject", {"pair": PAIR, "reason": int(reason), "message": "m"}) is None
    assert classify("failover-bndack-reject", {"pair": PAIR, "reason": int(RejectReason.OUTDATED_BINDING_INFO),
                                               "address": 1, "message": "m"}) is None
    scope = classify("failover-bndupd-reject", {"pair": PAIR, "reason": int(RejectReason.ILLEGAL_IP_ADDRESS),
                                                "address": 0x0A010064, "message": "not ours"})
    assert scope.name == CONFIG_MISMATCH and scope.fields["address"] == "10.1.0.100"
    assert classify("dhcp-drop", {"reason": "overload"}) is None


def test_mismatch_flag_until_the_partner_is_heard():
    d = TrapDetector()
    reject = {"pair": PAIR, "reason": int(RejectReason.INVALID_MCLT), "message": "MCLT 99 differs"}
    assert d.observe("failover-reject", reject).name == CONFIG_MISMATCH
    for _ in range(5):  # the main redials every few seconds: one trap
        assert d.observe("failover-reject", reject) is None
    assert d.config_mismatch(PAIR)
    d.observe("failover-comm-ok", {"pair": PAIR})
    assert not d.config_mismatch(PAIR)
    assert d.counts[(CONFIG_MISMATCH, PAIR)] == 1


def test_payload_has_event_pair_server_time():
    trap = Trap(NOT_RESPONDING, PAIR, {"reason": "communication lost"})
    assert payload(trap, "main", 1_800_000_000.7) == {
        "event": "other-server-not-responding", "pair": PAIR, "server": "main",
        "time": "2027-01-15T08:00:00Z", "reason": "communication lost"}


# -- configuration -------------------------------------------------------------------
BASE = "[server]\nname = s\ndata-dir = /tmp/x\n"


def test_trap_webhook_config():
    assert loads(BASE).server.trap_webhook is None
    url = "https://hooks.example.net:8443/cnrd?token=abc"
    assert loads(BASE + f"trap-webhook = {url}\n").server.trap_webhook == url


@pytest.mark.parametrize("bad", ["ftp://example.net/x", "http://", "example.net/hook", "http://h:99999/",
                                 "http://exa mple.net/"])
def test_bad_trap_webhook_is_a_config_error(bad):
    with pytest.raises(ConfigError) as e:
        loads(BASE + f"trap-webhook = {bad}\n")
    assert "[server] trap-webhook" in str(e.value) and "\n" not in str(e.value)


# -- real peers ----------------------------------------------------------------------------
def _connect(mclt=60, name=PAIR, **kw):
    return wire.connect(0, T0, relationship_name=name, max_unacked=10, receive_timer=6, vendor_class="x",
                        mclt=mclt, hba=kw.get("hba", wire.hba_from_split(256)))


def test_connect_rejected_for_mclt_is_one_trap_and_a_mismatch_flag():
    backup = Node(Role.BACKUP)
    peer = backup.session
    with captured() as events:
        for _ in range(3):  # the main keeps redialling with its wrong MCLT
            peer.connection_made(T0)
            peer.receive(_connect(mclt=99), T0)
            out = peer.take()
            assert out.send[0].reject_reason == RejectReason.INVALID_MCLT and out.close
            peer.connection_lost(T0)
    traps = trap_lines(events)
    assert [(t["trap"], t["pair"], t["reject_reason_name"], t["rejected_by"]) for t in traps] == [
        (CONFIG_MISMATCH, PAIR, "INVALID_MCLT", "local")]
    m = scrape(backup.dhcp)
    assert value(m, "cnrd_failover_config_mismatch", pair=PAIR) == 1
    assert value(m, "cnrd_traps_total", trap=CONFIG_MISMATCH, pair=PAIR) == 1

    # fixed: a good handshake and the partner's STATE end the episode
    main = Node(Role.MAIN)
    PairLink(main, backup, T0).connect()
    assert backup.session.state is S.NORMAL
    assert value(scrape(backup.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 0


def test_both_mains_is_a_mismatch_on_the_side_that_sees_it():
    main, other_main = Node(Role.MAIN), Node(Role.MAIN)
    with captured() as events:
        PairLink(main, other_main, T0).connect()
    traps = trap_lines(events)
    assert traps and {t["trap"] for t in traps} == {CONFIG_MISMATCH}
    assert {t["reject_reason_name"] for t in traps} == {"INVALID_PARTNER"}
    flags = [value(scrape(n.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) for n in (main, other_main)]
    assert sum(flags) == len(traps)  # flagged on the side(s) that rejected


def test_connect_without_hash_bucket_map_through_the_adapter():
    backup = Node(Role.BACKUP)
    fs = backup.links[0]
    proto = FailoverProtocol(fs)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.1.0.1", 40000))
    proto.makeConnection(transport)
    with captured() as events:
        proto.dataReceived(wire.encode(_connect(hba=b"\xff" * 31)))
    assert wire.Framer().feed(transport.value())[0].reject_reason == RejectReason.HBA_CONFLICT
    [trap] = trap_lines(events)
    assert trap["trap"] == CONFIG_MISMATCH and trap["reject_reason"] == RejectReason.HBA_CONFLICT
    assert value(scrape(backup.dhcp), "cnrd_failover_config_mismatch", pair=PAIR) == 1


def test_mismatched_scopes_are_one_trap_per_side_not_one_per_update():
    main = Node(Role.MAIN)
    # the backup's scope covers other addresses than the main's
    backup = Node(Role.BACKUP, config_text=PAIR_CONFIG.replace("10.1.0.100-10.1.0.149", "10.1.0.130-10.1.0.149"))
    link = PairLink(main, backup, T0)
    with captured() as events:
        link.connect()
        for n in range(3):
            lease_on(main, n)
        link.settle()
    assert main.session.status().rejected_updates >= 3
    by_side = sorted(t["rejected_by"] for t in trap_lines(events) if t["trap"] == CONFIG_MISMATCH)
    assert by_side == ["local", "partner"]  # the backup rejected, the main was rejected: one each
    for node in (main, backup):
        assert value(scrape(node.dhcp), "cnrd_traps_total", trap=CONFIG_MISMATCH, pair=PAIR) == 1


def test_trap_line_is_logged_once_with_stable_fields():
    main, backup, = Node(Role.MAIN), Node(Role.BACKUP)
    link = PairLink(main, backup, T0)
    link.connect()
    with captured() as events:
        link.drop()
        link.advance(20)
    traps = [t for t in trap_lines(events) if t["log_namespace"] == "cnrd.traps"]
    assert len(traps) == 2  # one per server
    t = traps[0]
    assert t["trap"] == NOT_RESPONDING and t["pair"] == PAIR and t["server"] in ("main", "backup")
    assert t["log_level"].name == "warn" and t["reason"]


# -- the webhook -----------------------------------------------------------------------------
class Hook(resource.Resource):
    """A webhook receiver: remembers each POST and fires ``waiting`` with its JSON."""

    isLeaf = True

    def __init__(self, code: int = 200) -> None:
        super().__init__()
        self.code = code
        self.posts: list[tuple[dict, bytes | None]] = []
        self.waiting: list[defer.Deferred] = []

    def render_POST(self, request):
        body = json.loads(request.content.read())
        self.posts.append((body, request.getHeader(b"content-type")))
        while self.waiting:
            self.waiting.pop(0).callback(body)
        request.setResponseCode(self.code)
        return b"ok"

    def next_post(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.waiting.append(d)
        return d


@pytest.fixture
def hook():
    from twisted.internet import reactor

    receiver = Hook()
    port = reactor.listenTCP(0, server.Site(receiver), interface="127.0.0.1")
    receiver.url = f"http://127.0.0.1:{port.getHost().port}/hooks/cnrd"
    yield receiver
    port.stopListening()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def live_main(webhook: str | None):
    """A main Runtime on the real reactor, with its Peer (not started: no sockets)."""
    from twisted.internet import reactor

    text = PAIR_CONFIG.format(name="main").replace("data-dir = /nonexistent",
                                                   "data-dir = /nonexistent" + (f"\ntrap-webhook = {webhook}"
                                                                                if webhook else ""))
    config = loads(text)
    dhcp = Runtime(config, reactor, store=MemoryLeaseStore(), port_factory=FakePort,
                       interfaces=lambda c: [IFACE], commit_runner=run_now)
    add_failover(MultiService(), dhcp, config, reactor, {"10.1.0.1"})
    return dhcp


@pytest_twisted.inlineCallbacks
def test_webhook_receives_the_trap(hook):
    dhcp = live_main(hook.url)
    peer = dhcp.sessions[0]
    arrived = hook.next_post()
    with captured() as events:
        # the partner is never heard after start-up (failover-poll-timeout 6)
        peer.tick(peer.started + 7)
        body = yield arrived
    assert body["event"] == NOT_RESPONDING and body["pair"] == PAIR and body["server"] == "main"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["time"])
    assert "not heard" in body["reason"]
    assert hook.posts[0][1] == b"application/json"
    yield _until(lambda: dhcp.notifier.delivered == 1)
    m = scrape(dhcp)
    assert value(m, "cnrd_trap_webhook_deliveries_total") == 1
    assert value(m, "cnrd_trap_webhook_failures_total") == 0
    assert len(trap_lines(events)) == 1


@pytest_twisted.inlineCallbacks
def test_webhook_follows_the_running_configuration(hook):
    dhcp = live_main(None)
    peer = dhcp.sessions[0]
    peer.tick(peer.started + 7)  # a trap, no webhook configured: nothing sent
    assert hook.posts == [] and dhcp.notifier.failed == 0
    # the API sets trap-webhook at run time: the next trap goes there
    dhcp.reconfigure(replace(dhcp.config, server=replace(dhcp.config.server, trap_webhook=hook.url, name="renamed")))
    arrived = hook.next_post()
    dhcp.traps.observe("failover-comm-ok", {"pair": PAIR})
    dhcp.log_event("failover-comm-lost", {"pair": PAIR})
    body = yield arrived
    assert body["server"] == "renamed" and body["reason"] == "communication lost"


@pytest_twisted.inlineCallbacks
def test_refused_webhook_is_logged_and_counted_and_harmless():
    dhcp = live_main(f"http://127.0.0.1:{closed_port()}/hook")
    peer = dhcp.sessions[0]
    with captured() as events:
        peer.tick(peer.started + 7)  # must not raise
        assert peer.state is not S.STARTUP
        yield _until(lambda: dhcp.notifier.failed == 1)
    failures = [e for e in events if e.get("event") == "trap-webhook-failed"]
    assert len(failures) == 1 and failures[0]["url"].startswith("http://127.0.0.1:")
    assert value(scrape(dhcp), "cnrd_trap_webhook_failures_total") == 1
    assert dhcp.notifier.in_flight == 0


class Silent(protocol.Protocol):
    """Accepts the connection and never answers."""


class StalledBody(protocol.Protocol):
    """Answers 200 and then never sends the body it announced."""

    def dataReceived(self, data):
        if b"\r\n\r\n" in data:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")


@pytest.mark.parametrize("server_protocol", [Silent, StalledBody])
@pytest_twisted.inlineCallbacks
def test_silent_webhook_times_out(server_protocol):
    from twisted.internet import reactor

    listening = reactor.listenTCP(0, protocol.Factory.forProtocol(server_protocol), interface="127.0.0.1")
    try:
        notifier = TrapNotifier(reactor, lambda: ServerConfig(name="m", interfaces=(), data_dir="/x",
                                                              trap_webhook=None), timeout=0.5)
        ok = yield notifier.post(f"http://127.0.0.1:{listening.getHost().port}/", {"event": "x"})
        assert ok is False and notifier.failed == 1 and notifier.in_flight == 0
    finally:
        yield listening.stopListening()


@pytest_twisted.inlineCallbacks
def test_webhook_error_status_and_https_failures_are_counted(hook):
    from twisted.internet import reactor

    hook.code = 500
    notifier = TrapNotifier(reactor, lambda: None, timeout=5)
    ok = yield notifier.post(hook.url, {"event": "x"})
    assert ok is False and notifier.failed == 1
    # https: without a TLS library or with nobody listening, a failure, never an exception
    ok = yield notifier.post(f"https://127.0.0.1:{closed_port()}/", {"event": "x"})
    assert ok is False and notifier.failed == 2 and notifier.delivered == 0


def _until(predicate, timeout: float = 10.0) -> defer.Deferred:
    """Fires once ``predicate()`` is true (polling on the reactor), or fails after ``timeout``."""
    from twisted.internet import reactor, task

    async def wait():
        waited = 0.0
        while not predicate():
            if waited > timeout:
                raise AssertionError("condition not reached in time")
            await task.deferLater(reactor, 0.02, lambda: None)
            waited += 0.02

    return defer.ensureDeferred(wait())


def test_the_decision_is_pure():
    """What is a trap is plain code; only cnrd.ops.webhook talks to the network."""
    from tests.test_layering import FORBIDDEN_IMPORTS, imports

    bad = {m for m, _ in imports("cnrd.ops.traps") for f in FORBIDDEN_IMPORTS if m == f or m.startswith(f + ".")}
    assert not bad
