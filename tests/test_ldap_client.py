"""LdapClient on a fake reactor: fail-over between servers, backoff, timeouts, max-requests, connection loss."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder, encoder
from pyasn1_modules import rfc2251
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from cnrd.config.model import LdapConfig
from cnrd.ldap import messages as M
from cnrd.ldap.client import LdapClient, LdapError, LdapTimeout, LdapUnavailable


def server(name: str, preference: int, **kw: object) -> LdapConfig:
    return LdapConfig(name=name, hostname=f"10.0.0.{preference}", port=389, preference=preference,
                      search_path="ou=c", query_dictionary=(("cn", "host-name"),), **kw)  # type: ignore[arg-type]


class Harness:
    def __init__(self, servers: list[LdapConfig]) -> None:
        self.reactor = MemoryReactorClock()
        self.states: list[tuple[bool, str]] = []
        self.client = LdapClient(self.reactor, servers, on_state=lambda up, why: self.states.append((up, why)),
                                 backoff=(1.0, 8.0))
        self.done = 0

    def attempt(self) -> tuple[str, object]:
        host, port, factory, *_ = self.reactor.tcpClients[self.done]
        self.done += 1
        return host, factory

    def refuse(self) -> str:
        host, factory = self.attempt()
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))  # type: ignore[attr-defined]
        return host

    def accept(self) -> tuple[str, object, StringTransport]:
        host, factory = self.attempt()
        proto = factory.buildProtocol(None)  # type: ignore[attr-defined]
        transport = StringTransport()
        proto.makeConnection(transport)
        return host, proto, transport

    def bind(self) -> tuple[str, object, StringTransport]:
        host, proto, transport = self.accept()
        request = sent(transport)[-1]
        assert request["protocolOp"].getName() == "bindRequest"
        proto.dataReceived(reply(int(request["messageID"]), "bindResponse", 0))  # type: ignore[attr-defined]
        return host, proto, transport


def sent(transport: StringTransport) -> list[rfc2251.LDAPMessage]:
    pdus, rest = M.split_pdus(transport.value())
    assert rest == b""
    out = []
    for pdu in pdus:
        if pdu[5:6] in (b"\x42", b"\x50"):  # unbind, abandon: pyasn1-modules misdeclares them
            continue
        out.append(decoder.decode(pdu, asn1Spec=rfc2251.LDAPMessage())[0])
    return out


def reply(message_id: int, name: str, code: int) -> bytes:
    msg = rfc2251.LDAPMessage()
    msg["messageID"] = message_id
    op = msg["protocolOp"].getComponentByName(name)
    op["resultCode"] = code
    op["matchedDN"] = b""
    op["errorMessage"] = b""
    return encoder.encode(msg)


def entry(message_id: int, dn: bytes) -> bytes:
    msg = rfc2251.LDAPMessage()
    msg["messageID"] = message_id
    op = msg["protocolOp"].getComponentByName("searchResEntry")
    op["objectName"] = dn
    op["attributes"].getComponentByPosition(0)["type"] = b"cn"
    op["attributes"][0]["vals"][0] = b"pc"
    return encoder.encode(msg)


def searches(transport: StringTransport) -> list[int]:
    return [int(m["messageID"]) for m in sent(transport) if m["protocolOp"].getName() == "searchRequest"]


def test_fail_over_in_preference_order_backoff_and_return_to_preferred():
    h = Harness([server("second", 2), server("first", 1)])
    h.client.start()
    assert h.refuse() == "10.0.0.1"  # the lower preference first
    assert h.refuse() == "10.0.0.2"
    assert h.states == [(False, h.states[0][1])] and "first" in h.states[0][1] and "second" in h.states[0][1]
    delays = []
    for _ in range(5):  # every round fails: the wait doubles up to the bound
        before = len(h.reactor.tcpClients)
        waited = 0.0
        while len(h.reactor.tcpClients) == before and waited < 100:
            h.reactor.advance(0.5)
            waited += 0.5
        delays.append(waited)
        h.refuse()
        h.refuse()
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(h.states) == 1  # on changes only
    h.reactor.advance(8.0)
    h.refuse()
    host, _, _ = h.bind()
    assert host == "10.0.0.2" and h.states[-1] == (True, "second") and h.client.server.name == "second"
    h.reactor.advance(8.0)  # while on the fallback, the preferred server is tried again
    host, _, _ = h.bind()
    assert host == "10.0.0.1" and h.states[-1] == (True, "first")


def test_lookup_timeout_abandons_and_counts_from_the_call():
    h = Harness([server("one", 1, timeout=2.0, max_requests=1)])
    h.client.start()
    _, proto, transport = h.bind()
    results: list[object] = []
    first = h.client.lookup("aa:bb")
    first.addBoth(results.append)
    h.reactor.advance(1.5)
    second = h.client.lookup("cc:dd")  # queued behind the first
    second.addBoth(results.append)
    assert len(searches(transport)) == 1 and h.client.queued == 1
    h.reactor.advance(0.5)  # the first times out; the second is sent
    assert isinstance(results[0], Failure) and results[0].check(LdapTimeout)
    assert h.client.outstanding == 1 and h.client.queued == 0  # the slot went to the second lookup
    assert b"\x50" in transport.value()  # AbandonRequest sent
    ids = searches(transport)
    assert len(ids) == 2
    h.reactor.advance(1.5)  # 2 s after its own call, not after it was sent
    assert len(results) == 2 and results[1].check(LdapTimeout)  # type: ignore[union-attr]


def test_max_requests_queues_in_order_and_answers():
    h = Harness([server("one", 1, max_requests=2)])
    h.client.start()
    _, proto, transport = h.bind()
    results: dict[str, object] = {}
    for name in ("a", "b", "c", "d"):
        h.client.lookup(name).addBoth(lambda r, n=name: results.__setitem__(n, r))
    assert h.client.outstanding == 2 and h.client.queued == 2
    ids = searches(transport)
    filters = [bytes(m["protocolOp"]["searchRequest"]["filter"]["equalityMatch"]["assertionValue"])
               for m in sent(transport) if m["protocolOp"].getName() == "searchRequest"]
    assert filters == [b"a", b"b"]
    proto.dataReceived(entry(ids[0], b"cn=a") + reply(ids[0], "searchResDone", 0))  # type: ignore[attr-defined]
    assert results["a"].dn == "cn=a"  # type: ignore[attr-defined]
    filters = [bytes(m["protocolOp"]["searchRequest"]["filter"]["equalityMatch"]["assertionValue"])
               for m in sent(transport) if m["protocolOp"].getName() == "searchRequest"]
    assert filters == [b"a", b"b", b"c"]
    proto.dataReceived(reply(ids[1], "searchResDone", 0))  # type: ignore[attr-defined]
    assert results["b"] is None
    proto.dataReceived(reply(searches(transport)[2], "searchResDone", 50))  # type: ignore[attr-defined]
    assert results["c"].check(LdapError) and results["c"].value.code == 50  # type: ignore[attr-defined]


def test_connection_loss_fails_pending_and_queued_lookups_and_reconnects():
    h = Harness([server("one", 1, max_requests=1)])
    h.client.start()
    _, proto, transport = h.bind()
    results: list[object] = []
    h.client.lookup("a").addBoth(results.append)
    h.client.lookup("b").addBoth(results.append)
    proto.connectionLost(Failure(ConnectionRefusedError("gone")))  # type: ignore[attr-defined]
    assert len(results) == 2 and all(isinstance(r, Failure) and r.check(LdapUnavailable) for r in results)
    assert not h.client.connected and h.states[-1][0] is False
    failed: list[object] = []
    h.client.lookup("c").addErrback(failed.append)
    assert failed and failed[0].check(LdapUnavailable)  # type: ignore[attr-defined]
    h.reactor.advance(1.0)
    h.bind()
    assert h.client.connected and h.states[-1] == (True, "one")


def test_bind_refused_tries_the_next_server_and_stop_cancels_everything():
    h = Harness([server("first", 1), server("second", 2)])
    h.client.start()
    _, proto, transport = h.accept()
    request = sent(transport)[-1]
    proto.dataReceived(reply(int(request["messageID"]), "bindResponse", 49))  # type: ignore[attr-defined]
    assert transport.disconnecting
    _, _, second = h.bind()
    assert h.states == [(True, "second")]
    h.client.stop()
    assert M.split_pdus(second.value())[0][-1][5:7] == b"\x42\x00"  # UnbindRequest last
    assert second.disconnecting and not h.client.connected
    assert all(not c.active() for c in h.reactor.getDelayedCalls())  # the preferred-server probe too


@pytest.mark.parametrize("code", [0, 4])
def test_several_entries_first_wins(code):
    h = Harness([server("one", 1)])
    h.client.start()
    _, proto, transport = h.bind()
    got: list[object] = []
    h.client.lookup("x").addBoth(got.append)
    (mid,) = searches(transport)
    request = sent(transport)[-1]["protocolOp"]["searchRequest"]
    assert int(request["sizeLimit"]) == 2 and [bytes(a) for a in request["attributes"]] == [b"cn"]
    proto.dataReceived(entry(mid, b"cn=1") + entry(mid, b"cn=2") + reply(mid, "searchResDone", code))  # type: ignore
    assert got[0].dn == "cn=1"  # type: ignore[attr-defined]


def test_notice_of_disconnection_fails_pending_and_closes():
    h = Harness([server("one", 1)])
    h.client.start()
    _, proto, transport = h.bind()
    got: list[object] = []
    h.client.lookup("a").addBoth(got.append)
    msg = rfc2251.LDAPMessage()
    msg["messageID"] = 0  # unsolicited (RFC 4511 §4.4.1)
    op = msg["protocolOp"].getComponentByName("extendedResp")
    op["resultCode"] = 52
    op["matchedDN"] = b""
    op["errorMessage"] = b"shutting down"
    op["responseName"] = M.NOTICE_OF_DISCONNECTION_OID.encode()
    proto.dataReceived(encoder.encode(msg))  # type: ignore[attr-defined]
    assert got and got[0].check(LdapUnavailable)  # type: ignore[attr-defined]
    assert "unavailable (52): shutting down" in got[0].value.reason  # type: ignore[attr-defined]
    assert transport.disconnecting


def test_garbage_from_the_server_drops_the_connection():
    h = Harness([server("one", 1)])
    h.client.start()
    _, proto, transport = h.bind()
    got: list[object] = []
    h.client.lookup("a").addBoth(got.append)
    proto.dataReceived(b"\x16\x03\x01\x00\x05hello")  # type: ignore[attr-defined]  # not an LDAPMessage
    assert got[0].check(LdapUnavailable) and transport.disconnecting  # type: ignore[attr-defined]
