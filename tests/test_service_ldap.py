"""The LDAP client registry in the running service: parked requests, outages, readiness, metrics, reload.

The LDAP client is replaced by one whose answers the test gives (the real
one is tested against slapd in tests/test_ldap_*.py and the integration
tests); everything else is the real Runtime on a Clock.
"""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from twisted.internet import defer
from twisted.internet.task import Clock

from cnrd.admin.commands import Admin, AdminError
from cnrd.admin.metrics import registry_for
from cnrd.app.ldap import LdapRegistry
from cnrd.app.runtime import Runtime
from cnrd.config import load
from cnrd.dhcp.packet import MessageType as M
from cnrd.ldap.errors import LdapError, LdapTimeout, LdapUnavailable
from cnrd.ldap.messages import Entry

from tests.dhcp.helpers import BASE_CONFIG, IFACE, mac, request
from tests.dhcp.test_registry import LDAP
from tests.test_service import FakePort, RecordingStore, Rx, run_now


class FakeLdap:
    """An LDAP client whose lookups the test answers."""

    def __init__(self, reactor, servers, on_state):
        self.servers = list(servers)
        self.on_state = on_state
        self.pending: dict[str, defer.Deferred] = {}
        self.started = self.stopped = 0

    @property
    def server(self):
        return self.servers[0]

    def start(self):
        self.started += 1

    def stop(self):
        self.stopped += 1
        return defer.succeed(None)

    def lookup(self, lookup_id):
        d = self.pending[lookup_id] = defer.Deferred()
        return d


def desc(cls: str) -> Entry:
    return Entry(dn="cn=x,ou=clients,dc=cnrd,dc=test", attributes={"description": [cls.encode()]})


def make(tmp_path, extra="", bind=None, bound=True):
    path = tmp_path / "cnrd.ini"
    path.write_text(BASE_CONFIG + LDAP + extra)
    clock = Clock()
    clock.advance(1_000_000)
    clients: list[FakeLdap] = []
    checks: list[str] = []

    def factory(reactor, servers, on_state):
        c = FakeLdap(reactor, servers, on_state)
        clients.append(c)
        return c

    def check(reactor, server, timeout):
        checks.append(server.name)
        return bind(server) if bind else defer.succeed(None)

    ports: list[FakePort] = []

    def port_factory(*a, **kw):
        p = FakePort(*a, **kw)
        ports.append(p)
        return p

    ldap = LdapRegistry(clock, client_factory=factory, bind_check=check)
    rt = Runtime(load(str(path)), clock, store=RecordingStore(), port_factory=port_factory,
                 interfaces=lambda c: [IFACE], commit_runner=run_now, ldap=ldap)
    rt.startService()
    if bound:
        clients[0].on_state(True, "dir")
    return rt, ports[0], clients, checks, path


def offers(port):
    return [s[1] for s in port.sent if s[1].message_type == M.OFFER]


def test_a_waiting_client_does_not_hold_up_others_and_is_answered_when_ldap_answers(tmp_path):
    rt, port, (client,), _, _ = make(tmp_path, "\n[client 02:00:00:00:00:02]\nclient-class = gold\n")
    assert client.started == 1
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    assert offers(port) == [] and list(client.pending) == [mac(1).hex(":")]
    port.on_batch([Rx(request(M.DISCOVER, mac(2)).serialize())], 0)  # local [client]: no lookup
    assert [o.chaddr for o in offers(port)] == [mac(2)]
    port.on_batch([Rx(request(M.DISCOVER, mac(1), xid=7).serialize())], 0)  # a retransmission
    assert len(client.pending) == 1  # still one lookup
    client.pending[mac(1).hex(":")].callback(desc("gold"))
    answered = [o for o in offers(port) if o.chaddr == mac(1)]
    assert len(answered) == 2 and all(o.options[15] == b"gold.example" for o in answered)
    assert rt.registry_health is not None and rt.registry_health.results["found"] == 1


def test_requests_before_the_first_bind_wait_for_it(tmp_path):
    rt, port, (client,), _, _ = make(tmp_path, bound=False)
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    assert client.pending == {} and offers(port) == []
    client.on_state(True, "dir")
    client.pending[mac(1).hex(":")].callback(desc("gold"))
    (offer,) = offers(port)
    assert offer.options[15] == b"gold.example"


def test_requests_before_a_first_bind_that_fails_get_the_default_class(tmp_path):
    rt, port, (client,), _, _ = make(tmp_path, bound=False)
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    client.on_state(False, "connection refused")
    (offer,) = offers(port)
    assert 15 not in offer.options and client.pending == {}


def test_the_wait_for_the_first_bind_is_bounded_by_the_timeout(tmp_path):
    rt, port, (client,), _, _ = make(tmp_path, bound=False)
    port.on_batch([Rx(request(M.DISCOVER, mac(1)).serialize())], 0)
    rt.reactor.advance(1.9)
    assert offers(port) == []
    rt.reactor.advance(0.2)  # [ldap dir] timeout is 2 s by default
    assert len(offers(port)) == 1
    assert rt.registry_health.results["timeout"] == 1


def test_a_lookup_that_times_out_answers_with_the_default_class(tmp_path):
    rt, port, (client,), _, _ = make(tmp_path)
    port.on_batch([Rx(request(M.DISCOVER, mac(3)).serialize())], 0)
    client.pending[mac(3).hex(":")].errback(LdapTimeout(0, "no answer in 2.0 s"))
    (offer,) = offers(port)
    assert 15 not in offer.options
    assert rt.registry_health.results["timeout"] == 1


def test_ldap_down_is_degraded_not_unready_and_cached_clients_keep_their_class(tmp_path):
    rt, port, (client,), _, _ = make(tmp_path)
    admin = Admin(rt)
    client.on_state(True, "dir")
    assert admin.ready()["ldap"] == {"state": "up", "server": "dir"}
    port.on_batch([Rx(request(M.DISCOVER, mac(4)).serialize())], 0)
    client.pending.pop(mac(4).hex(":")).callback(desc("gold"))
    client.on_state(False, "connection refused")
    rt.reactor.advance(3600)  # far past client-cache-ttl
    port.sent.clear()
    port.on_batch([Rx(request(M.DISCOVER, mac(4)).serialize())], 0)
    client.pending.pop(mac(4).hex(":")).errback(LdapUnavailable(0, "not connected"))
    (offer,) = offers(port)
    assert offer.options[15] == b"gold.example"  # the stale entry serves
    ready = admin.ready()
    assert ready["ready"] is True
    assert ready["ldap"] == {"state": "degraded", "reason": "connection refused"}
    text = _scrape(rt)
    assert "cnrd_ldap_up 0.0" in text
    assert 'cnrd_ldap_lookups_total{result="unavailable"} 1.0' in text
    assert 'cnrd_client_registry_requests_total{outcome="stale"} 1.0' in text
    assert "cnrd_ldap_lookup_seconds_count 1.0" in text


def test_one_log_line_per_outage(tmp_path, caplog_events):
    rt, port, (client,), _, _ = make(tmp_path, bound=False)
    client.on_state(False, "connection refused")
    client.on_state(False, "connection refused")
    client.on_state(False, "timed out")
    client.on_state(True, "dir")
    lines = [e for e in caplog_events if "LDAP client registry" in e]
    assert len(lines) == 2 and "unavailable: connection refused" in lines[0] and "bound" in lines[1]


def test_reload_with_rejected_credentials_is_refused_and_changes_nothing(tmp_path):
    def reject(server):
        return defer.fail(LdapError(49, "invalidCredentials (49)"))

    rt, port, (client,), checks, path = make(tmp_path, bind=reject)
    before = rt.config
    path.write_text(path.read_text().replace("hostname = 127.0.0.1", "hostname = 127.0.0.2"))
    d = Admin(rt).reload_checked(None)
    failure = _failure(d)
    assert isinstance(failure, AdminError) and failure.status == 400
    assert "[ldap dir]" in failure.reason and "invalidCredentials" in failure.reason
    assert checks == ["dir"] and rt.config is before


def test_reload_with_an_unreachable_server_applies_with_a_warning(tmp_path):
    def unreachable(server):
        return defer.fail(LdapUnavailable(0, "connection refused"))

    rt, port, (old,), checks, path = make(tmp_path, bind=unreachable)
    path.write_text(path.read_text().replace("hostname = 127.0.0.1", "hostname = 127.0.0.2"))
    out = _result(Admin(rt).reload_checked(None))
    assert any("[ldap dir] not reachable" in w for w in out["warnings"])
    assert "[ldap dir] hostname" in out["applied"]
    assert rt.config.ldap["dir"].hostname == "127.0.0.2"
    assert old.stopped == 1  # the new settings got a new client


def test_a_new_password_in_the_same_file_is_bound_and_reported(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("old\n")
    extra = f"username = cn=dhcp,dc=cnrd,dc=test\npassword-file = {secret}\n"
    rt, port, _, checks, path = make(tmp_path, extra)
    secret.write_text("new\n")
    out = _result(Admin(rt).reload_checked(None))
    assert checks == ["dir"]
    assert out["applied"] == ["[ldap dir] password-file (the password)"]
    assert rt.config.ldap["dir"].password == b"new"


def test_reload_without_ldap_changes_binds_nothing(tmp_path):
    rt, port, _, checks, _ = make(tmp_path)
    _result(Admin(rt).reload_checked(None))
    assert checks == []


def _result(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def _failure(d):
    out = []
    d.addBoth(out.append)
    assert out and hasattr(out[0], "value"), out
    return out[0].value


def _scrape(rt) -> str:
    return generate_latest(registry_for(rt)).decode()


@pytest.fixture
def caplog_events():
    from twisted.logger import formatEvent, globalLogPublisher

    seen: list[str] = []

    def observer(event):
        seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)
