"""A TCP proxy in front of an LDAP server that answers late: every PDU the
server sends is held for a fixed delay before it goes on to the client.

    .venv/bin/python -m bench.ldapdelay --listen 127.0.0.1:0 --upstream 127.0.0.1:3890 --delay 0.05

This machine's kernel has no netem (shared/docs/lab-notes.md), so a slow
LDAP server is made here, at the LDAP layer: the proxy frames the server's
byte stream into LDAPv3 messages (RFC 4511 §5.1: each a BER SEQUENCE with a
definite length) and releases each one ``delay`` seconds after its last byte
arrived, in order.  The client's bytes go to the server at once: the delay is
the server's answer time, as a busy or distant directory would add it.
After StartTLS the stream is TLS records, not BER: from the first byte that
cannot start an LDAPMessage on, each read is delayed as it came.

Framing is cnrd.ldap.messages.split_pdus.  Bounded: at most
``max_connections`` clients at once (more are closed on arrival), at most
``max_buffer`` bytes held per connection in either direction (a connection
over it is closed).
Prints ``listening on HOST:PORT`` once it listens and, when stopped
(SIGTERM or SIGINT), one line of totals.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure

from cnrd.ldap.messages import ProtocolError, split_pdus

__all__ = ["DelayProxyFactory", "Totals", "main"]

MAX_BUFFER = 16 << 20  # bytes held per connection and direction, at most
MAX_CONNECTIONS = 64
CONNECT_TIMEOUT = 10.0  # seconds to reach the upstream server


@dataclass
class Totals:
    """What the proxy has moved, over all connections."""

    connections: int = 0
    refused: int = 0  # closed on arrival: max_connections reached
    overflows: int = 0  # closed: a direction held more than max_buffer
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client, once released
    pdus_down: int = 0  # LDAPMessages released to clients after the delay
    raw_reads_down: int = 0  # reads passed on unframed (after StartTLS)

    def line(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.__dict__.items())


class _Upstream(protocol.Protocol):
    """The proxy's connection to the LDAP server, for one client."""

    def __init__(self, client: "_Client") -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.upstream_up(self)

    def dataReceived(self, data: bytes) -> None:
        self.client.from_upstream(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.client.upstream_gone()


class _UpstreamFactory(protocol.ClientFactory):
    def __init__(self, client: "_Client") -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress) -> _Upstream:
        return _Upstream(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client.upstream_gone()


class _Client(protocol.Protocol):
    """One client's connection: its bytes go up at once, the server's come
    back one PDU at a time, each ``delay`` s after it was complete."""

    def __init__(self, factory: "DelayProxyFactory") -> None:
        self.f = factory
        self.upstream: _Upstream | None = None
        self.up_pending = bytearray()  # client bytes before the upstream connection is up
        self.down_buf = bytearray()  # server bytes not yet a whole PDU
        self.raw = False  # after a byte that cannot start an LDAPMessage (TLS)
        self.queue: deque[tuple[float, bytes, bool]] = deque()  # (due, bytes, is a PDU)
        self.held = 0  # bytes in queue
        self.timer: Any = None
        self.upstream_closed = False
        self.closed = False

    # -- client side -----------------------------------------------------------
    def connectionMade(self) -> None:
        self.f.live.add(self)
        self.f.totals.connections += 1
        self.f.reactor.connectTCP(self.f.host, self.f.port, _UpstreamFactory(self), timeout=CONNECT_TIMEOUT)

    def dataReceived(self, data: bytes) -> None:
        self.f.totals.bytes_up += len(data)
        if self.upstream is not None:
            self.upstream.transport.write(data)
            return
        self.up_pending += data
        if len(self.up_pending) > self.f.max_buffer:
            self._overflow()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self.f.live.discard(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.queue.clear()
        if self.upstream is not None:
            self.upstream.transport.loseConnection()

    # -- upstream side ------------------------------------------------------------
    def upstream_up(self, up: _Upstream) -> None:
        if self.closed:
            up.transport.loseConnection()
            return
        self.upstream = up
        if self.up_pending:
            up.transport.write(bytes(self.up_pending))
            self.up_pending.clear()

    def upstream_gone(self) -> None:
        """The server closed (or could not be reached): the client gets what
        is already on its way, then the connection closes."""
        self.upstream_closed = True
        if not self.queue and not self.closed:
            self.transport.loseConnection()

    def from_upstream(self, data: bytes) -> None:
        if self.closed:
            return
        due = self.f.reactor.seconds() + self.f.delay
        if not self.raw:
            self.down_buf += data
            try:
                pdus, rest = split_pdus(bytes(self.down_buf))
            except ProtocolError:
                # not LDAPMessages (TLS records after StartTLS): on unframed,
                # due when the whole PDUs in the same read would have been
                self.raw = True
                self._hold(due, bytes(self.down_buf), False)
                self.down_buf.clear()
            else:
                for p in pdus:
                    self._hold(due, p, True)
                self.down_buf = bytearray(rest)
        else:
            self._hold(due, data, False)
        if len(self.down_buf) + self.held > self.f.max_buffer:
            self._overflow()
            return
        self._arm()

    # -- the delay line ------------------------------------------------------------
    def _hold(self, due: float, data: bytes, pdu: bool) -> None:
        self.queue.append((due, data, pdu))
        self.held += len(data)

    def _arm(self) -> None:
        if self.timer is None and self.queue:
            wait = max(0.0, self.queue[0][0] - self.f.reactor.seconds())
            self.timer = self.f.reactor.callLater(wait, self._release)

    def _release(self) -> None:
        """Send, in order, everything whose time has come; one timer per
        connection keeps the order whatever the reactor does with equal times."""
        self.timer = None
        now = self.f.reactor.seconds()
        out: list[bytes] = []
        while self.queue and self.queue[0][0] <= now:
            _, data, pdu = self.queue.popleft()
            self.held -= len(data)
            out.append(data)
            if pdu:
                self.f.totals.pdus_down += 1
            else:
                self.f.totals.raw_reads_down += 1
        if out:
            blob = b"".join(out)
            self.f.totals.bytes_down += len(blob)
            self.transport.write(blob)
        if self.queue:
            self._arm()
        elif self.upstream_closed:
            self.transport.loseConnection()

    def _overflow(self) -> None:
        self.f.totals.overflows += 1
        self.transport.abortConnection()


class DelayProxyFactory(protocol.ServerFactory):
    """Accepts clients and proxies each to ``host:port`` with the delay."""

    def __init__(self, reactor: Any, host: str, port: int, delay: float, *,
                 max_connections: int = MAX_CONNECTIONS, max_buffer: int = MAX_BUFFER) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.reactor: Any = reactor  # IReactorTCP and IReactorTime: connectTCP, callLater, seconds
        self.host, self.port, self.delay = host, port, delay
        self.max_connections, self.max_buffer = max_connections, max_buffer
        self.live: set[_Client] = set()
        self.totals = Totals()

    def buildProtocol(self, addr: IAddress) -> protocol.Protocol | None:
        if len(self.live) >= self.max_connections:
            self.totals.refused += 1
            return None  # Twisted closes the connection
        return _Client(self)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ldapdelay", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to accept clients on (port 0: any)")
    ap.add_argument("--upstream", required=True, help="the LDAP server, HOST:PORT")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds each server PDU is held (default 0.05)")
    ap.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    a = ap.parse_args(argv)
    from twisted.internet import reactor

    r: Any = reactor
    host, port = _hostport(a.upstream)
    factory = DelayProxyFactory(r, host, port, a.delay, max_connections=a.max_connections)
    lhost, lport = _hostport(a.listen)
    port_obj = r.listenTCP(lport, factory, interface=lhost)
    addr = port_obj.getHost()
    print(f"listening on {addr.host}:{addr.port} delay {a.delay:g} upstream {host}:{port}", flush=True)
    r.run()  # SIGTERM/SIGINT stop it
    print(f"totals {factory.totals.line()}", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
