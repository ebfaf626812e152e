"""Bulk leasequery (RFC 6926) on TCP: the listener and one protocol per requestor.

:class:`BulkLeasequeryService` listens on the DHCP server port over TCP
(``[server] server-port``, 67) and accepts connections only from addresses
in ``[server] leasequery-allow``; any other is closed at once and counted
as the drop ``bulk-leasequery-not-allowed``.  Each connection reads
length-prefixed DHCPBULKLEASEQUERY messages and answers them one after the
other with what :mod:`cnrd.dhcp.bulklq` yields.

Bounds, so that a requestor cannot make the server hold more than a little
for it:

* at most ``max_connections`` connections at once (more are closed and
  counted as ``bulk-leasequery-busy``);
* at most :data:`MAX_QUEUED` queries waiting behind the one being answered
  (a requestor that pipelines more is disconnected);
* answers are written :data:`BATCH` messages (or steps of
  :data:`cnrd.dhcp.bulklq.TICK` addresses that matched nothing) per
  reactor turn, and only
  while the connection's send buffer is not full: the connection is the
  transport's streaming producer, paused when the buffer fills and resumed
  when it drains, so the server queues at most one buffer's worth for a
  slow reader however many bindings the query covers;
* a connection that makes no progress (nothing received, nothing sent) for
  ``idle_timeout`` seconds of the injected clock is closed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.interfaces import (IAddress, IDelayedCall, IListeningPort, IPushProducer, IReactorTCP,
                                         IReactorTime)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cnrd.config import Config
from cnrd.dhcp import bulklq
from cnrd.dhcp.leasequery import allowed
from cnrd.dhcp.packet import DhcpPacket
from cnrd.dhcp.state import ServerState
from cnrd.text import ip_to_int

__all__ = ["BulkLeasequeryService", "BulkProtocol", "MAX_CONNECTIONS", "MAX_QUEUED", "BATCH", "IDLE_TIMEOUT"]

log = Logger(namespace="cnrd")

#: Connections served at once.
MAX_CONNECTIONS = 16
#: Queries a connection may have waiting behind the one being answered.
MAX_QUEUED = 16
#: Messages written per reactor turn, so other work runs between batches.
BATCH = 64
#: Seconds without progress after which a connection is closed.
IDLE_TIMEOUT = 120.0

_END = object()  # the answers' iterator is exhausted

_SENT_NAMES = {
    13: "LEASEACTIVE",
    11: "LEASEUNASSIGNED",
    bulklq.LEASEQUERYDONE: "LEASEQUERYDONE",
}


class BulkLeasequeryService(service.Service):
    """TCP ``port`` for bulk leasequery requestors, answering from ``server``'s lease table."""

    def __init__(self, reactor: IReactorTCP, server: ServerState, config: Callable[[], Config], *,
                 port: int, interface: str = "", max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.reactor = reactor
        self.clock = IReactorTime(reactor)
        self.server = server
        self.config = config
        self.port = port
        self.interface = interface
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections: set[BulkProtocol] = set()
        self._listening: IListeningPort | None = None
        self.setName("bulk-leasequery")  # type: ignore[no-untyped-call]

    def factory(self) -> Factory:
        """The factory that makes a :class:`BulkProtocol` per accepted connection."""
        return _Factory(self)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        listen = endpoints.TCP4ServerEndpoint(self.reactor, self.port, interface=self.interface)
        d = listen.listen(self.factory())
        d.addCallbacks(self._listening_on, self._listen_failed)

    def _listening_on(self, port: IListeningPort) -> None:
        self._listening = port
        log.info("bulk leasequery: listening on TCP {ip}:{port}", ip=self.interface or "*", port=self.port)

    def _listen_failed(self, failure: Failure) -> None:
        log.error("bulk leasequery: cannot listen on TCP {ip}:{port}: {error}", ip=self.interface or "*",
                  port=self.port, error=failure.getErrorMessage())

    def stopService(self) -> Any:
        if self._listening is not None:
            self._listening.stopListening()
            self._listening = None
        for conn in list(self.connections):
            conn.close(abort=True)
        return super().stopService()  # type: ignore[no-untyped-call]


@implementer(IPushProducer)
class BulkProtocol(Protocol):
    """One requestor's connection: framing, its query queue, paced answers, its idle timer."""

    def __init__(self, service: BulkLeasequeryService) -> None:
        self.service = service
        self.peer = ""
        self.local = 0
        self._deframer = bulklq.Deframer()
        self._queue: deque[bulklq.BulkQuery | bulklq.Refusal] = deque()
        self._current: Iterator[DhcpPacket | None] | None = None
        self._paused = False
        self._scheduled: IDelayedCall | None = None
        self._idle: IDelayedCall | None = None
        self._open = False

    # -- connection ------------------------------------------------------------
    def connectionMade(self) -> None:
        assert self.transport is not None
        svc = self.service
        self.peer = getattr(self.transport.getPeer(), "host", "") or ""
        local = getattr(self.transport.getHost(), "host", "") or "0.0.0.0"
        self.local = ip_to_int(local) if local != "0.0.0.0" else 0
        if not self._allowed():
            svc.server.drop("bulk-leasequery-not-allowed", {"peer": self.peer})
            log.warn("bulk leasequery: connection from {peer} refused: not in [server] leasequery-allow",
                     peer=self.peer)
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        if len(svc.connections) >= svc.max_connections:
            svc.server.drop("bulk-leasequery-busy", {"peer": self.peer})
            log.warn("bulk leasequery: connection from {peer} refused: {n} connections already",
                     peer=self.peer, n=len(svc.connections))
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self._open = True
        svc.connections.add(self)
        consumer: Any = self.transport  # a TCP transport is also the IConsumer of its producer
        consumer.registerProducer(self, True)
        self._touch()

    def _allowed(self) -> bool:
        try:
            address = ip_to_int(self.peer)
        except (ValueError, OSError):
            return False
        return allowed(address, self.service.config().server.leasequery_allow)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._open = False
        self.service.connections.discard(self)
        self._current = None
        self._queue.clear()
        for call in (self._scheduled, self._idle):
            if call is not None and call.active():
                call.cancel()
        self._scheduled = self._idle = None

    def close(self, abort: bool = False) -> None:
        """End the connection (at once with ``abort``, else once what was written has gone)."""
        if self.transport is None or not self._open:
            return
        self._open = False
        if abort:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            self.transport.loseConnection()

    def _touch(self) -> None:
        """Progress: the idle timer starts again."""
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.service.idle_timeout)
        else:
            self._idle = self.service.clock.callLater(self.service.idle_timeout, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        log.info("bulk leasequery: connection from {peer} closed after {secs:g} s without progress",
                 peer=self.peer, secs=self.service.idle_timeout)
        self.close(abort=self._current is not None)

    # -- input -------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        if not self._open:
            return
        self._touch()
        try:
            messages = self._deframer.feed(data)
        except bulklq.FramingError as e:
            log.warn("bulk leasequery: {peer}: {error}; connection closed", peer=self.peer, error=str(e))
            self.close(abort=True)
            return
        counters = self.service.server.counters
        for message in messages:
            counters.received["BULKLEASEQUERY"] += 1
            self._queue.append(bulklq.query_of(message))
        if len(self._queue) > MAX_QUEUED + (1 if self._current is None else 0):
            self.service.server.drop("bulk-leasequery-too-many-queries", {"peer": self.peer})
            log.warn("bulk leasequery: {peer} sent more than {n} queries ahead; connection closed",
                     peer=self.peer, n=MAX_QUEUED)
            self.close(abort=True)
            return
        self._schedule()

    # -- output --------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._scheduled is None and not self._paused and self._open:
            self._scheduled = self.service.clock.callLater(0, self._pump)

    def _next(self) -> bool:
        """Start answering the next queued query; False when there is none."""
        while self._queue:
            item = self._queue.popleft()
            server_id = self.service.server.server_identifier or self.local
            if isinstance(item, bulklq.Refusal):
                log.info("bulk leasequery from {peer}: {status}: {text}", peer=self.peer,
                         status=item.status.name, text=item.text)
                self._write(bulklq.refusal_message(item, server_id))
                continue
            if not self._allowed():
                self.service.server.drop("bulk-leasequery-not-allowed", {"peer": self.peer})
                self.close(abort=True)
                return False
            log.info("bulk leasequery from {peer}: by {by}", peer=self.peer, by=item.by)
            now = int(self.service.clock.seconds())
            self._current = bulklq.answers(self.service.server.table, item, now, server_id)
            return True
        return False

    def _pump(self) -> None:
        self._scheduled = None
        if self._halted():
            return
        if self._current is None and not self._next():
            return
        assert self._current is not None
        for _ in range(BATCH):
            message = next(self._current, _END)
            if message is _END:
                self._current = None
                break
            if not isinstance(message, DhcpPacket):
                continue  # addresses visited without an answer: work done all the same
            self._write(message)
            if self._halted():
                break
        if self._open:
            self._touch()
            if self._current is not None or self._queue:
                self._schedule()

    def _halted(self) -> bool:
        """Writing must stop: the connection closed, or its send buffer is full."""
        return not self._open or self._paused

    def _write(self, message: DhcpPacket) -> None:
        assert self.transport is not None
        mtype = message.options[53][0]
        self.service.server.counters.sent[_SENT_NAMES.get(mtype, "OTHER")] += 1
        self.transport.write(bulklq.frame(message.serialize(bulklq.MAX_MESSAGE)))

    # -- IPushProducer: the transport's send buffer paces the answers ----------------
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._paused = True
        self._current = None


class _Factory(Factory):
    noisy = False  # the service logs its own listening line

    def __init__(self, service: BulkLeasequeryService) -> None:
        self.service = service

    def buildProtocol(self, addr: IAddress | None) -> BulkProtocol:
        return BulkProtocol(self.service)
