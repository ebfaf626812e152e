"""cnrd.ldap against bytes recorded between OpenLDAP's ldapsearch and a real slapd (tests/data/ldap/captures)."""

from __future__ import annotations

from pathlib import Path

from pyasn1.codec.ber import decoder
from pyasn1_modules import rfc2251
from twisted.internet.testing import MemoryReactorClock, StringTransport

from cnrd.config.model import LdapConfig
from cnrd.ldap import filter as F
from cnrd.ldap import messages as M
from cnrd.ldap.client import LdapClient

CAPTURES = Path(__file__).resolve().parent / "data" / "ldap" / "captures"
CLIENTS = "ou=clients,dc=cnrd,dc=test"
DHCP_DN = "cn=dhcp,dc=cnrd,dc=test"


def pdus(name: str) -> list[bytes]:
    found, rest = M.split_pdus((CAPTURES / name).read_bytes())
    assert found and rest == b""
    return found


def fields(pdu: bytes) -> str:
    msg, rest = decoder.decode(pdu, asn1Spec=rfc2251.LDAPMessage())
    assert rest == b""
    return msg.prettyPrint()


def test_our_bind_and_search_requests_match_ldapsearch():
    bind, search, unbind = pdus("search.client.bin")
    ours_bind = M.bind_request(1, DHCP_DN, b"dhcp-secret")
    ours_search = M.search_request(2, CLIENTS, "subtree", F.parse("(macAddress=02:00:00:00:00:07)"), ["cn"])
    assert fields(ours_bind) == fields(bind) and "dhcp-secret" in fields(bind)
    assert fields(ours_search) == fields(search) and "wholeSubtree" in fields(search)
    # BER allows several encodings of one value; these are byte for byte the same.
    assert (ours_bind, ours_search, M.unbind_request(3)) == (bind, search, unbind)


def test_our_starttls_request_matches_ldapsearch():
    (request,) = pdus("starttls.client.bin")
    assert M.start_tls_request(1) == request
    (answer,) = pdus("starttls.server.bin")
    m = M.decode(answer)
    assert (m.message_id, m.op, m.result) == (1, "extendedResp", M.Result(0, "", ""))
    assert not m.is_notice_of_disconnection


def test_slapd_answers_decode():
    bound, found, done = (M.decode(p) for p in pdus("search.server.bin"))
    assert (bound.op, bound.result) == ("bindResponse", M.Result(0, "", ""))
    assert found.op == "searchResEntry" and found.entry is not None
    assert found.entry.dn == f"macAddress=02:00:00:00:00:07,{CLIENTS}"
    assert found.entry.attributes == {"cn": [b"pc-7"]}
    assert (done.message_id, done.op, done.result, done.cookie) == (2, "searchResDone", M.Result(0, "", ""), None)
    (refused,) = (M.decode(p) for p in pdus("badpass.server.bin"))
    assert refused.result is not None and refused.result.code == 49
    assert refused.result.describe().startswith("invalidCredentials (49)")


def test_paged_search_replayed_through_the_client():
    """The client, driven by slapd's recorded answers, sends what ldapsearch sent and gets all five entries."""
    requests = pdus("paged.client.bin")
    answers: dict[int, list[bytes]] = {}
    for pdu in pdus("paged.server.bin"):
        answers.setdefault(M.decode(pdu).message_id, []).append(pdu)
    assert len(answers) >= 4  # the bind and at least three pages of two
    server = LdapConfig(name="slapd", hostname="127.0.0.1", port=389, search_path=CLIENTS,
                        query_dictionary=(), username=DHCP_DN, password=b"dhcp-secret")
    reactor = MemoryReactorClock()
    client = LdapClient(reactor, [server])
    client.start()
    factory = reactor.tcpClients[0][2]
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    got: list[object] = []
    replied = 0
    for _ in range(10):  # one round per request; bounded
        sent, _ = M.split_pdus(transport.value())
        if replied >= len(sent):
            break
        request = sent[replied]
        message_id = replied + 1  # ldapsearch and the client both number from 1
        assert request == requests[replied], f"request {replied + 1} differs from ldapsearch's"
        for pdu in answers[message_id]:
            proto.dataReceived(pdu[:3])  # split across reads: framing must hold
            proto.dataReceived(pdu[3:])
        replied += 1
        if replied == 1:
            assert client.connected
            client.search(CLIENTS, "subtree", "(description=lab)", ["macAddress"], page_size=2,
                          timeout=5).addBoth(got.append)
    (entries,) = got
    assert isinstance(entries, list)
    assert sorted(e.attributes["macaddress"][0] for e in entries) == [f"02:00:00:00:01:{i:02x}".encode()
                                                                     for i in range(5)]
    assert replied == len(answers)
