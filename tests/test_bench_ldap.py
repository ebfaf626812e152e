"""bench.ldapdelay, the proxy that makes an LDAP server answer late: the
bytes pass unchanged both ways, each server PDU (RFC 4511 §5.1 framing) is
held exactly the configured delay, in order, on a fake clock and a fake
upstream.  And bench.ldapburst's pure parts: the /metrics deltas it
reports and the checks that make it refuse to report nothing."""

from __future__ import annotations

from pyasn1.codec.ber import encoder
from pyasn1_modules import rfc2251
from twisted.internet.testing import MemoryReactorClock, StringTransport

from bench import ldapburst
from bench.ldapdelay import DelayProxyFactory

DELAY = 0.05

# RFC 4511 §4.2.2 BindResponse, success, messageID 1, in BER by hand:
# SEQUENCE(12) { INTEGER 1, [APPLICATION 1](7) { ENUMERATED 0, OCTET STRING "", OCTET STRING "" } }
BIND_OK = bytes.fromhex("300c020101610 70a010004000400".replace(" ", ""))


def entry(msg_id: int, mac: str, pad: int) -> bytes:
    """A SearchResultEntry (RFC 4511 §4.5.2) built by pyasn1-modules, ``pad``
    bytes of description so the lengths take the long forms."""
    attrs = rfc2251.PartialAttributeList()
    for i, (name, value) in enumerate((("macAddress", mac.encode()), ("description", b"x" * pad))):
        a = rfc2251.PartialAttributeList.componentType.clone()
        a["type"] = name
        a["vals"].append(value)
        attrs.append(a)
    e = rfc2251.SearchResultEntry()
    e["objectName"] = f"cn={mac},ou=clients,dc=cnrd,dc=test"
    e["attributes"] = attrs
    m = rfc2251.LDAPMessage()
    m["messageID"] = msg_id
    m["protocolOp"]["searchResEntry"] = e
    return encoder.encode(m)


def done(msg_id: int) -> bytes:
    r = rfc2251.SearchResultDone()
    r["resultCode"] = 0
    r["matchedDN"] = ""
    r["errorMessage"] = ""
    m = rfc2251.LDAPMessage()
    m["messageID"] = msg_id
    m["protocolOp"]["searchResDone"] = r
    return encoder.encode(m)


class Rig:
    """A proxy on a fake reactor: one client connection, its upstream faked."""

    def __init__(self, **kw: int) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = DelayProxyFactory(self.reactor, "127.0.0.1", 3890, DELAY, **kw)
        self.client_t = StringTransport()
        self.client = self.factory.buildProtocol(None)
        assert self.client is not None
        self.client.makeConnection(self.client_t)
        host, port, upf, _timeout, _bind = self.reactor.tcpClients[-1]
        assert (host, port) == ("127.0.0.1", 3890)
        self.up_factory = upf
        self.up_t = StringTransport()
        self.up = None

    def connect_upstream(self) -> None:
        self.up = self.up_factory.buildProtocol(None)
        self.up.makeConnection(self.up_t)

    def from_server(self, data: bytes) -> None:
        assert self.up is not None
        self.up.dataReceived(data)

    def got(self) -> bytes:
        return self.client_t.value()


def test_fixtures_are_the_lengths_they_claim() -> None:
    # the hand-written PDU agrees with pyasn1's own decoding of the same bytes
    from pyasn1.codec.ber import decoder

    msg, rest = decoder.decode(BIND_OK, asn1Spec=rfc2251.LDAPMessage())
    assert rest == b"" and int(msg["messageID"]) == 1
    assert msg["protocolOp"].getName() == "bindResponse"
    big = entry(2, "02:00:00:00:00:01", 300)
    assert big[1] == 0x82  # a two-octet long-form length
    assert len(entry(2, "02:00:00:00:00:01", 100)) > 127


def test_pdus_cut_anywhere_come_out_whole_and_unchanged() -> None:
    a, b, c = BIND_OK, entry(2, "02:00:00:00:00:01", 300), done(2)
    stream = a + b + c
    for cut in range(1, len(stream)):
        rig = Rig()
        rig.connect_upstream()
        rig.from_server(stream[:cut])
        rig.from_server(stream[cut:])
        rig.reactor.advance(DELAY)
        assert rig.got() == stream
        assert rig.factory.totals.pdus_down == 3


def test_each_server_pdu_is_held_the_delay_then_passed_unchanged_and_in_order() -> None:
    rig = Rig()
    # the client's bind arrives before the upstream connection is up: held, then sent at once
    rig.client.dataReceived(b"\x30\x0c bind request")
    assert rig.up_t.value() == b""
    rig.connect_upstream()
    assert rig.up_t.value() == b"\x30\x0c bind request"
    rig.client.dataReceived(b"search")
    assert rig.up_t.value().endswith(b"search")  # no delay upstream

    e, d = entry(2, "02:00:00:00:00:01", 300), done(2)
    # t=0: the bind response byte by byte over 10 ms; it is complete at t=0.010
    for i, byte in enumerate(BIND_OK):
        rig.reactor.advance(0.010 / len(BIND_OK))
        rig.from_server(bytes([byte]))
    complete_at = rig.reactor.seconds()
    # t=0.020: an entry and a done in one read
    rig.reactor.advance(0.010)
    rig.from_server(e + d)
    second_at = rig.reactor.seconds()

    rig.reactor.advance(complete_at + DELAY - rig.reactor.seconds() - 1e-6)
    assert rig.got() == b"", "released before its delay"
    rig.reactor.advance(2e-6)
    assert rig.got() == BIND_OK
    rig.reactor.advance(second_at + DELAY - rig.reactor.seconds() - 1e-6)
    assert rig.got() == BIND_OK
    rig.reactor.advance(2e-6)
    assert rig.got() == BIND_OK + e + d
    t = rig.factory.totals
    assert (t.pdus_down, t.bytes_down, t.bytes_up) == (3, len(BIND_OK + e + d), len(b"\x30\x0c bind request") + 6)
    assert rig.reactor.getDelayedCalls() == []  # nothing left armed


def test_a_pdu_split_across_reads_is_timed_from_its_last_byte() -> None:
    rig = Rig()
    rig.connect_upstream()
    e = entry(7, "02:00:00:00:00:02", 1000)
    rig.from_server(e[:500])
    rig.reactor.advance(DELAY * 3)  # the first half alone is never released
    assert rig.got() == b""
    rig.from_server(e[500:])
    rig.reactor.advance(DELAY - 1e-6)
    assert rig.got() == b""
    rig.reactor.advance(2e-6)
    assert rig.got() == e


def test_zero_delay_still_passes_everything() -> None:
    rig = Rig()
    rig.factory.delay = 0.0
    rig.connect_upstream()
    rig.from_server(BIND_OK + done(3))
    rig.reactor.advance(0)
    assert rig.got() == BIND_OK + done(3)


def test_after_a_non_ldap_byte_reads_are_delayed_as_they_came() -> None:
    rig = Rig()
    rig.connect_upstream()
    tls = b"\x16\x03\x03\x00\x05hello"
    rig.from_server(BIND_OK)  # the StartTLS answer, then the server's TLS records
    rig.from_server(tls)
    rig.from_server(b"\x17more")
    rig.reactor.advance(DELAY - 1e-6)
    assert rig.got() == b""
    rig.reactor.advance(2e-6)
    assert rig.got() == BIND_OK + tls + b"\x17more"
    assert rig.factory.totals.pdus_down == 1 and rig.factory.totals.raw_reads_down == 2


def test_server_close_delivers_what_is_on_its_way_then_closes() -> None:
    rig = Rig()
    rig.connect_upstream()
    rig.from_server(BIND_OK)
    rig.up.connectionLost(None)
    assert not rig.client_t.disconnecting
    rig.reactor.advance(DELAY)
    assert rig.got() == BIND_OK and rig.client_t.disconnecting


def test_client_close_cancels_the_held_pdus_and_the_upstream() -> None:
    rig = Rig()
    rig.connect_upstream()
    rig.from_server(BIND_OK)
    rig.client.connectionLost(None)
    assert rig.up_t.disconnecting
    assert rig.reactor.getDelayedCalls() == []
    assert rig.factory.live == set()


def test_bounds_connections_and_held_bytes() -> None:
    rig = Rig(max_connections=1, max_buffer=4096)
    assert rig.factory.buildProtocol(None) is None  # a second client is refused
    assert rig.factory.totals.refused == 1
    rig.connect_upstream()
    rig.from_server(entry(2, "02:00:00:00:00:01", 2000))
    rig.from_server(entry(3, "02:00:00:00:00:01", 2000))  # over 4096 held
    assert rig.client_t.disconnecting and rig.factory.totals.overflows == 1


def test_bounds_client_bytes_before_the_upstream_answers() -> None:
    rig = Rig(max_buffer=100)
    rig.client.dataReceived(b"x" * 101)
    assert rig.client_t.disconnecting and rig.factory.totals.overflows == 1


def test_unreachable_upstream_closes_the_client() -> None:
    rig = Rig()
    rig.up_factory.clientConnectionFailed(None, None)
    assert rig.client_t.disconnecting


# -- bench.ldapburst's pure parts: what it reads out of /metrics and when it refuses to report --------
METRICS_BEFORE = """\
# HELP cnrd_ldap_lookups_total Client registry lookups sent to LDAP, by result
# TYPE cnrd_ldap_lookups_total counter
cnrd_ldap_lookups_total{result="found"} 5.0
cnrd_ldap_lookups_total{result="timeout"} 1.0
cnrd_ldap_lookup_seconds_bucket{le="0.05"} 4.0
cnrd_ldap_lookup_seconds_bucket{le="0.1"} 5.0
cnrd_ldap_lookup_seconds_bucket{le="+Inf"} 5.0
cnrd_ldap_lookup_seconds_count 5.0
cnrd_ldap_lookup_seconds_sum 0.2
cnrd_ldap_up 1.0
"""
METRICS_AFTER = """\
cnrd_ldap_lookups_total{result="found"} 105.0
cnrd_ldap_lookups_total{result="timeout"} 1.0
cnrd_ldap_lookup_seconds_bucket{le="0.05"} 4.0
cnrd_ldap_lookup_seconds_bucket{le="0.1"} 95.0
cnrd_ldap_lookup_seconds_bucket{le="+Inf"} 105.0
cnrd_ldap_lookup_seconds_count 105.0
cnrd_ldap_lookup_seconds_sum 7.2
cnrd_ldap_up 1.0
"""


def test_metrics_deltas_by_result_and_histogram_bucket() -> None:
    before, after = ldapburst.parse_metrics(METRICS_BEFORE), ldapburst.parse_metrics(METRICS_AFTER)
    assert ldapburst.by_label(after, "cnrd_ldap_lookups_total", "result") == {"found": 105.0, "timeout": 1.0}
    assert ldapburst.total(after, "cnrd_ldap_up") == 1.0
    assert ldapburst.total(after, "cnrd_no_such_metric") is None
    h = ldapburst.histogram_delta(before, after, "cnrd_ldap_lookup_seconds")
    # 100 lookups in the interval: 90 in (0.05, 0.1], 10 above 0.1; 7.0 s in all
    assert h["count"] == 100 and abs(h["mean_ms"] - 70.0) < 1e-9
    assert h["buckets"] == {"0.05": 0.0, "0.1": 90.0, "+Inf": 10.0}
    assert (h["p50_le_s"], h["p99_le_s"]) == ("0.1", "+Inf")


def test_perfdhcp_macs_count_up_from_the_base() -> None:
    macs = ldapburst.expected_macs("02:12:34:56:00:00", 300)
    assert macs[0] == "02:12:34:56:00:00" and macs[255] == "02:12:34:56:00:ff" and macs[256] == "02:12:34:56:01:00"
    assert len(set(macs)) == 300


def _result(sent: int = 10, found: float = 10.0, pdus: int = 20, to_loaded: int = 10) -> dict:
    run = {"label": "burst", "discover_sent": sent, "ldap_lookups": {"found": found, "timeout": 0.0},
           "leases": {"to_loaded_macs": to_loaded}}
    return {"runs": {"burst": run, "cached": {**run, "label": "cached", "ldap_lookups": {}}},
            "proxy": {"pdus_down": pdus}}


def test_the_harness_refuses_figures_that_measured_nothing() -> None:
    assert ldapburst.check(_result()) == []
    assert any("sent no DISCOVER" in w for w in ldapburst.check(_result(sent=0)))
    assert any("did not move" in w for w in ldapburst.check(_result(found=0.0)))
    assert any("proxy" in w for w in ldapburst.check(_result(pdus=0)))
    assert any("MAC" in w for w in ldapburst.check(_result(to_loaded=0)))
