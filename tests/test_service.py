"""The DHCP service composed with a fake socket, a memory store and a Clock."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import Clock

from cnrd.app.build import add_failover
from cnrd.app.runtime import Runtime, response_buffers
from cnrd.config import loads
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int, parse
from cnrd.failover import record
from cnrd.failover.states import S
from cnrd.leases.model import Lease, LeaseFlag, LeaseState
from cnrd.leases.store import MemoryLeaseStore, StoreError

from tests.dhcp.helpers import BASE_CONFIG, IFACE, SERVER_IP, mac, request, u32
from tests.leases.test_committer import ManualRunner


@dataclass
class Rx:
    data: bytes
    src_ip: str = "0.0.0.0"
    src_port: int = 68
    ifindex: int = 2
    local_ip: str = "10.1.0.1"
    dst_ip: str = "255.255.255.255"


class FakePort:
    """Stands in for DhcpPort: records what would go on the wire, and when."""

    def __init__(self, reactor, port, on_batch, max_batch=500):
        self.on_batch = on_batch
        self.max_batch = max_batch
        self.sent = []
        self.started = False
        self.log = None
        self.kernel_drops = 0

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def send(self, data, dst_ip, dst_port, *, ifindex=None, src_ip=None):
        self.sent.append(("ip", parse(data), dst_ip, dst_port, ifindex, self.log.commits if self.log else None))

    def send_to_hw(self, data, yiaddr, chaddr, ifindex, dst_port, src_ip=None):
        self.sent.append(("hw", parse(data), yiaddr, dst_port, ifindex, self.log.commits if self.log else None))


def run_now(f):
    """Run a commit at once on the caller's thread (the service's thread pool, minus the thread)."""
    return defer.maybeDeferred(f)


class RecordingStore(MemoryLeaseStore):
    def __init__(self):
        super().__init__()
        self.fail = False

    def commit_packed(self, batch):
        if self.fail:
            raise StoreError("disk full")
        super().commit_packed(batch)


def make(store=None, clock=None, runner=run_now):
    clock = clock or Clock()
    clock.advance(1_000_000)
    store = store or RecordingStore()
    ports = []

    def factory(*a, **kw):
        p = FakePort(*a, **kw)
        p.log = store
        ports.append(p)
        return p

    svc = Runtime(loads(BASE_CONFIG), clock, store=store, port_factory=factory, interfaces=lambda c: [IFACE],
                      commit_runner=runner)
    svc.startService()
    return svc, ports[0], store, clock


def test_batch_is_committed_once_before_acks_leave():
    svc, port, store, clock = make()
    port.on_batch([Rx(request(M.DISCOVER, mac(i)).serialize()) for i in range(5)], 0)
    assert [s[1].message_type for s in port.sent] == [M.OFFER] * 5
    assert store.commits == 0  # offers promise nothing durable
    reqs = [Rx(request(M.REQUEST, mac(i), o50=u32(s[1].yiaddr), o54=u32(SERVER_IP)).serialize())
            for i, s in enumerate(port.sent)]
    port.sent.clear()
    port.on_batch(reqs, 0)
    assert store.commits == 1  # one transaction for the whole batch
    assert [s[1].message_type for s in port.sent] == [M.ACK] * 5
    assert all(s[5] == 1 for s in port.sent)  # every ACK left after that commit
    assert store.lease_count() == 5


def test_requests_of_a_batch_are_committed_and_acked_before_its_discovers_are_worked_on():
    svc, port, store, clock = make()
    port.on_batch([Rx(request(M.DISCOVER, mac(i)).serialize()) for i in range(2)], 0)
    offers = [s[1] for s in port.sent]
    port.sent.clear()
    # new clients first on the wire, then the two completing their exchange
    batch = [Rx(request(M.DISCOVER, mac(i)).serialize()) for i in range(10, 14)]
    batch += [Rx(request(M.REQUEST, mac(i), o50=u32(o.yiaddr), o54=u32(SERVER_IP)).serialize())
              for i, o in enumerate(offers)]
    port.on_batch(batch, 0)
    assert [s[1].message_type for s in port.sent] == [M.ACK] * 2 + [M.OFFER] * 4
    assert store.commits == 1 and all(s[5] == 1 for s in port.sent[:2])
    assert store.lease_count() == 2


def test_acks_of_a_mixed_batch_leave_when_a_later_commit_completes():
    # With commits off the reactor thread the callback runs after on_batch
    # returns, by then the batch's DISCOVERs have been handled too; the ACKs
    # must still be the REQUESTs' and be sent (a lost list once left every
    # later request dropped as overload).
    runner = ManualRunner()
    svc, port, store, clock = make(runner=runner)
    port.on_batch([Rx(request(M.DISCOVER, mac(i)).serialize()) for i in range(3)], 0)
    offers = [s[1] for s in port.sent]
    port.sent.clear()
    batch = [Rx(request(M.REQUEST, mac(i), o50=u32(o.yiaddr), o54=u32(SERVER_IP)).serialize())
             for i, o in enumerate(offers)]
    batch += [Rx(request(M.DISCOVER, mac(i)).serialize()) for i in range(10, 12)]
    port.on_batch(batch, 0)
    assert [s[1].message_type for s in port.sent] == [M.OFFER] * 2  # the ACKs wait for the disk
    assert svc.path.awaiting == 3
    while runner.waiting:
        runner.finish()
    assert sorted(s[1].message_type for s in port.sent) == [M.OFFER] * 2 + [M.ACK] * 3
    assert {s[1].yiaddr for s in port.sent if s[1].message_type == M.ACK} == {o.yiaddr for o in offers}
    assert svc.path.awaiting == 0
    assert store.lease_count() == 3


def test_a_durable_change_made_by_a_discover_is_committed_within_a_second():
    svc, port, store, clock = make()
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    yi = port.sent[0][1].yiaddr
    real = svc.server

    class Handling:
        """The server, its handle() also doing what a DISCOVER may do to another lease (failover, reclaiming)."""

        def __getattr__(self, name):
            return getattr(real, name)

        def handle(self, packet, rx, now):
            svc.table.update(yi + 1, durable=True, event="available", now=now)
            return real.handle(packet, rx, now)

    svc.path.server = Handling()  # a compiled DhcpServer's methods cannot be replaced on the instance
    port.on_batch([Rx(request(M.DISCOVER, mac(2)).serialize())], 0)
    assert store.commits == 0
    clock.advance(1)
    assert store.commits == 1 and not svc.table.has_dirty


def test_store_failure_withholds_acks_and_keeps_changes():
    svc, port, store, clock = make()
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    yi = port.sent[0][1].yiaddr
    port.sent.clear()
    store.fail = True
    port.on_batch([Rx(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(SERVER_IP)).serialize())], 0)
    assert port.sent == []
    assert svc.server.counters.drops["store-failure"] == 1
    store.fail = False
    port.on_batch([Rx(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(SERVER_IP)).serialize())], 0)
    assert port.sent[0][1].message_type == M.ACK
    assert store.lease_count() == 1


def test_malformed_and_overload_are_counted():
    svc, port, store, clock = make()
    port.on_batch([Rx(b"\x01\x02garbage")], 7)
    assert svc.server.counters.drops["malformed"] == 1
    assert svc.server.counters.drops["overload"] == 7
    assert port.sent == []


def test_restart_keeps_leases_and_expiry_timer_runs():
    store = RecordingStore()
    svc, port, _, clock = make(store)
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    yi = port.sent[0][1].yiaddr
    port.on_batch([Rx(request(M.REQUEST, mac(1), o50=u32(yi), o54=u32(SERVER_IP)).serialize())], 0)
    svc.stopService()
    assert not clock.getDelayedCalls()
    store.closed = False
    svc2 = Runtime(loads(BASE_CONFIG), clock, store=store, port_factory=lambda *a, **k: FakePort(*a, **k),
                       interfaces=lambda c: [IFACE], commit_runner=run_now)
    svc2.startService()
    lease = svc2.table.get(yi)
    assert lease.state is LeaseState.LEASED
    clock.advance(3600 + 10)
    assert svc2.table.get(yi).state is LeaseState.EXPIRED
    assert any(e.what == "expire" for _, e in store.events())
    svc2.stopService()
    assert not clock.getDelayedCalls()
    assert ip_to_int("10.1.0.100") == yi


# -- max-dhcp-responses: the replies waiting for their commit ---------------------------

def _server_config(extra: str, pair: str = "") -> str:
    return BASE_CONFIG.replace("data-dir = /nonexistent", "data-dir = /nonexistent\n" + extra) + pair


def test_response_buffers_default_to_the_request_buffers_without_failover():
    s = loads(_server_config("max-dhcp-requests = 300")).server
    assert response_buffers(s, failover=False) == (300, None)
    s = loads(_server_config("max-dhcp-requests = 300\nmax-dhcp-responses = 50")).server
    assert response_buffers(s, failover=False) == (50, None)


def test_failover_raises_the_response_buffers_to_four_times_the_requests():
    # CNR 7.2, "Setting DHCP Request and Response Packet Buffers": with failover
    # on, the server adjusts the response buffers to at least 4 x the request buffers.
    s = loads(_server_config("")).server
    assert response_buffers(s, failover=True) == (2000, None)  # unset: raised without a word
    s = loads(_server_config("max-dhcp-requests = 100\nmax-dhcp-responses = 150")).server
    value, warning = response_buffers(s, failover=True)
    assert value == 400
    assert warning is not None and "max-dhcp-responses 150 is raised to 400" in warning and "\n" not in warning
    s = loads(_server_config("max-dhcp-requests = 100\nmax-dhcp-responses = 5000")).server
    assert response_buffers(s, failover=True) == (5000, None)


def test_batches_past_max_dhcp_responses_are_dropped_as_overload():
    runner = ManualRunner()
    clock = Clock()
    clock.advance(1_000_000)
    store = RecordingStore()
    ports = []
    svc = Runtime(loads(_server_config("max-dhcp-requests = 500\nmax-dhcp-responses = 2")), clock, store=store,
                  port_factory=lambda *a, **k: ports.append(FakePort(*a, **k)) or ports[-1],
                  interfaces=lambda c: [IFACE], commit_runner=runner)
    svc.startService()
    port = ports[0]
    port.on_batch([Rx(request(M.DISCOVER, mac(i)).serialize()) for i in range(3)], 0)
    offers = [s[1] for s in port.sent]
    reqs = [Rx(request(M.REQUEST, mac(i), o50=u32(o.yiaddr), o54=u32(SERVER_IP)).serialize())
            for i, o in enumerate(offers)]
    port.on_batch(reqs[:2], 0)
    assert svc.path.awaiting == 2
    port.on_batch(reqs[2:], 0)  # two replies already wait for the disk: this batch is dropped
    assert svc.server.counters.drops["overload"] == 1 and svc.path.awaiting == 2
    while runner.waiting:
        runner.finish()
    port.on_batch(reqs[2:], 0)
    assert svc.path.awaiting == 1


PAIR_SECTION = """
[failover-pair {name}]
main = 10.1.0.1
backup = 10.1.0.2
mclt = 60
failover-poll-interval = 2
failover-poll-timeout = 6
"""


def _with_pair(text: str, store: MemoryLeaseStore, host: str = "10.1.0.2") -> Runtime:
    clock = Clock()
    clock.advance(1_000_000)
    rt = Runtime(loads(text), clock, store=store, port_factory=lambda *a, **k: FakePort(*a, **k),
                 interfaces=lambda c: [IFACE], commit_runner=run_now)
    add_failover(service.MultiService(), rt, rt.config, clock, {host})
    return rt


def test_a_running_pair_raises_the_response_buffers_and_warns():
    rt = _with_pair(_server_config("max-dhcp-requests = 100\nmax-dhcp-responses = 150",
                                   PAIR_SECTION.format(name="p")), MemoryLeaseStore())
    assert rt.path._max_awaiting() == 400
    assert any("max-dhcp-responses 150 is raised to 400" in w for w in rt.reconfigure(rt.config))


# -- a renamed pair keeps its failover state ---------------------------------------------

def _old_store(name: str, role_code: int, state=None) -> MemoryLeaseStore:
    store = MemoryLeaseStore()
    rec = record.StateRecord(state or S.NORMAL, 999_000, S.NORMAL, 999_000, 60, S.NORMAL, True, role_code)
    store.commit([], state={record.key(name): record.pack(rec),
                            record.peers_key(name): b"10.1.0.1,10.1.0.2",
                            f"failover/{name}/q/0a010064": b""})
    return store


def test_renamed_pair_takes_over_the_old_names_state_and_queue_in_one_commit():
    store = _old_store("oldname", 2)
    rt = _with_pair(_server_config("", PAIR_SECTION.format(name="newname")), store)
    session = rt.sessions[0]
    assert (session.name, session.previous, session.talked) == ("newname", S.NORMAL, True)
    assert list(session.updates.pending) == [ip_to_int("10.1.0.100")]
    before = store.commits
    rt.commit(lambda ok: None)
    assert store.commits == before + 1
    assert store.state_items("failover/oldname/") == []
    assert record.unpack(store.get_state(record.key("newname"))).previous is S.NORMAL
    assert store.get_state(record.peers_key("newname")) == b"10.1.0.1,10.1.0.2"
    assert store.state_items("failover/newname/q/") == []  # the queue lives in the lease records


def test_a_queue_stored_as_keys_moves_into_the_lease_records_and_survives_a_restart():
    # A store written before the queue moved into the lease records: a key per queued address.
    store = _old_store("p", 2)
    address = ip_to_int("10.1.0.100")
    store.commit([Lease(address, LeaseState.LEASED, scope="lan", hw=b"\x01" + bytes(range(6)),
                        expiration=2_000_000)])
    rt = _with_pair(_server_config("", PAIR_SECTION.format(name="p")), store)
    rt.startService()
    assert list(rt.sessions[0].updates.pending) == [address]
    rt.commit(lambda ok: None)
    assert store.state_items("failover/p/q/") == []  # deleted in the commit that wrote the flag
    stored = {lease.address: lease for lease in store.load()}
    assert stored[address].flags & LeaseFlag.UPDATE_PENDING
    rt.stopService()
    # The next start finds the queue in the lease record alone.
    again = _with_pair(_server_config("", PAIR_SECTION.format(name="p")), store)
    again.startService()
    assert list(again.sessions[0].updates.pending) == [address]
    again.stopService()


def test_renamed_pair_whose_role_changed_starts_afresh():
    store = _old_store("oldname", 1)  # written as the main; this server is now the backup
    rt = _with_pair(_server_config("", PAIR_SECTION.format(name="newname")), store)
    session = rt.sessions[0]
    assert (session.previous, session.talked) == (S.RECOVER, False)
    assert list(session.updates.pending) == []
    rt.commit(lambda ok: None)
    assert store.get_state("failover/oldname/state") is not None  # not ours: left alone
