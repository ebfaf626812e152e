"""In-process servers for the admin tests: a Runtime on a Clock, and a failover pair of them.

A :class:`Server` is the real Runtime (memory store, fake DHCP port,
commits run at once) built from an INI file in a temporary directory, so
``reload`` and ``save`` have a file to read and write.  :func:`pair` builds
two of them with real Peers and FailoverServices from
:func:`cnrd.app.build.add_failover`, joined by an in-memory TCP stand-in that
carries the failover bytes both ways, so the states seen through the API are
the protocol's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from cnrd.app.ldap import LdapRegistry
from cnrd.config import load
from cnrd.dhcp.packet import MessageType as M
from cnrd.dhcp.packet import ip_to_int
from cnrd.failover.protocol import FailoverProtocol
from cnrd.app.build import add_failover
from cnrd.app.runtime import Runtime
from tests.dhcp.helpers import IFACE, SERVER_IP, mac, request, u32
from tests.test_service import FakePort, RecordingStore, Rx, run_now

T0 = 1_800_000_000
TOKEN = "test-token-0123456789"

STANDALONE = """\
# a test server
[server]
name = {name}
interfaces = eth1
data-dir = {data}
# keep this comment
max-dhcp-requests = 500

[api]
listen = 127.0.0.1:0
token-file = {data}/token

[policy default]
lease-time = 3600

[scope lan]
subnet = 10.1.0.0/24
ranges = 10.1.0.100-10.1.0.149

[reservation 10.1.0.50]
hardware-address = 02:00:00:00:00:50
"""

PAIR = STANDALONE + """
[failover-pair examplepair]
main = 10.1.0.1
backup = 10.1.0.2
mclt = 60
backup-pct = 10
failover-poll-interval = 2
failover-poll-timeout = 6
"""


class Server:
    """One cnrd server process, minus the sockets."""

    def __init__(self, tmp: Path, text: str, *, name: str = "test", clock: Clock | None = None,
                 host: str | None = None, ldap: LdapRegistry | None = None) -> None:
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "token").write_text(TOKEN + "\n")
        self.path = self.dir / "cnrd.ini"
        self.write(text.format(name=name, data=self.dir))
        if clock is None:
            clock = Clock()
            clock.advance(T0)
        self.clock = clock
        self.store = RecordingStore()
        self.ports: list[FakePort] = []

        def factory(*a: Any, **kw: Any) -> FakePort:
            p = FakePort(*a, **kw)
            self.ports.append(p)
            return p

        self.top = service.MultiService()
        self.dhcp = Runtime(load(str(self.path)), clock, store=self.store, port_factory=factory,
                                interfaces=lambda c: [IFACE], commit_runner=run_now, ldap=ldap)
        self.dhcp.setServiceParent(self.top)
        self.links = []
        if host is not None:
            self.links = add_failover(self.top, self.dhcp, self.dhcp.config, clock, {host})
        # Only the DHCP service starts: the failover links are driven by Wire.
        self.dhcp.startService()

    @property
    def port(self) -> FakePort:
        return self.ports[0]

    def write(self, text: str) -> None:
        self.path.write_text(text)

    def text(self) -> str:
        return self.path.read_text()

    def discover(self, n: int, giaddr: str | None = None) -> Any:
        """A DISCOVER from client ``n`` (through a relay at ``giaddr``); the reply packet or None."""
        self.port.sent.clear()
        extra = {"giaddr": ip_to_int(giaddr)} if giaddr else {}
        src = {"src_ip": giaddr, "src_port": 67, "dst_ip": "10.1.0.1"} if giaddr else {}
        self.port.on_batch([Rx(request(M.DISCOVER, mac(n), **extra).serialize(), **src)], 0)
        return self.port.sent[0][1] if self.port.sent else None

    def lease(self, n: int, giaddr: str | None = None) -> int:
        """Client ``n`` gets a lease (DISCOVER, REQUEST); returns the address."""
        offer = self.discover(n, giaddr)
        assert offer is not None, self.dhcp.server.counters.drops
        extra = {"giaddr": ip_to_int(giaddr)} if giaddr else {}
        src = {"src_ip": giaddr, "src_port": 67, "dst_ip": "10.1.0.1"} if giaddr else {}
        self.port.sent.clear()
        self.port.on_batch([Rx(request(M.REQUEST, mac(n), o50=u32(offer.yiaddr), o54=u32(SERVER_IP),
                                       **extra).serialize(), **src)], 0)
        assert self.port.sent and self.port.sent[0][1].message_type == M.ACK
        return offer.yiaddr


class _Transport:
    """One end of the in-memory TCP link: writes queue up for the other end."""

    def __init__(self, wire: "Wire", peer_host: str, local_host: str) -> None:
        self.wire = wire
        self.peer_host = peer_host
        self.local_host = local_host
        self.queue: list[bytes] = []
        self.other: _Transport | None = None
        self.proto: FailoverProtocol | None = None
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        if not self.disconnecting:
            self.queue.append(data)

    def writeSequence(self, seq: list[bytes]) -> None:
        for d in seq:
            self.write(d)

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", self.peer_host, 647)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", self.local_host, 647)

    def loseConnection(self) -> None:
        self.wire.close()

    abortConnection = loseConnection


class Wire:
    """Joins two servers' FailoverServices like a TCP connection would."""

    def __init__(self, a: Server, b: Server) -> None:
        self.a, self.b = a, b
        self.ends: list[_Transport] = []

    def connect(self) -> None:
        fa, fb = self.a.links[0], self.b.links[0]
        ta = _Transport(self, fa.partner_ip, fa.local_ip)
        tb = _Transport(self, fb.partner_ip, fb.local_ip)
        ta.other, tb.other = tb, ta
        self.ends = [ta, tb]
        ta.proto = FailoverProtocol(fa, outgoing=True)
        tb.proto = FailoverProtocol(fb)
        tb.proto.makeConnection(tb)
        ta.proto.makeConnection(ta)
        self.settle()

    def close(self) -> None:
        ends, self.ends = self.ends, []
        for t in ends:
            t.disconnecting = True
        for t in ends:
            t.proto.connectionLost(None)

    def settle(self, rounds: int = 5000) -> None:
        for _ in range(rounds):
            moved = False
            for t in list(self.ends):
                if t.queue and t.other is not None and self.ends:
                    data, t.queue = b"".join(t.queue), []
                    t.other.proto.dataReceived(data)
                    moved = True
            if not moved:
                return
        raise AssertionError("failover link never settled")

    def advance(self, seconds: int) -> None:
        """Let time pass second by second, ticking both failover services as their LoopingCall would."""
        for _ in range(seconds):
            self.a.clock.advance(1)
            for s in (self.a, self.b):
                s.links[0]._on_tick()
            self.settle()


def pair(tmp: Path, text: str = PAIR) -> tuple[Server, Server, Wire]:
    """A main and a backup on one clock, connected and in NORMAL."""
    clock = Clock()
    clock.advance(T0)
    main = Server(tmp, text, name="main", clock=clock, host="10.1.0.1")
    backup = Server(tmp, text, name="backup", clock=clock, host="10.1.0.2")
    wire = Wire(main, backup)
    wire.connect()
    return main, backup, wire
