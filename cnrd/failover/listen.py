"""One failover listener per local address and port, shared by the relationships on it.

CNR 7.2's back-office scenario (several mains sharing one backup) and its
symmetrical one (two servers, each main of one pair and backup of the
other) put several relationships on one address and TCP port.  A
:class:`FailoverListener` accepts for all of them and routes each
connection to its relationship:

* by the partner's address, when only one relationship on this listener
  has that partner and it has no link yet (the common case, and the only
  one ISC dhcpd knows);
* otherwise by the relationship-name of the first message, which must be
  the partner main's CONNECT (draft §8.2); a name none of them carries is
  answered with CONNECTACK reject 8 before any duplicate-connection check,
  as ISC orders its checks.

A connection from an address that is no relationship's partner is closed
at once.  A connection that leaves the choice open (for instance one the
partner backup opened, waiting for our CONNECT: our own dial reaches it
too) is closed after the link start-up time.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.interfaces import IAddress, IDelayedCall, IListeningPort, IReactorTCP, IReactorTime, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.failover import wire
from cnrd.failover.protocol import FailoverProtocol, FailoverService
from cnrd.failover.session import VENDOR
from cnrd.failover.wire import FailoverWireError, MessageType, RejectReason

log = Logger(namespace="cnrd.failover")

#: Seconds an accepted connection may take to name its relationship
#: (ISC's link start-up timeout).
CHOOSE_TIMEOUT = 15


class FailoverListener(service.Service):
    """TCP ``port`` on ``local_ip`` for every relationship that uses it."""

    def __init__(self, reactor: IReactorTCP, local_ip: str, port: int) -> None:
        self.reactor = reactor
        self.clock = IReactorTime(reactor)
        self.local_ip = local_ip
        self.port = port
        self.links: list[FailoverService] = []
        self._listening: IListeningPort | None = None
        self.setName(f"failover-listener-{local_ip}:{port}")  # type: ignore[no-untyped-call]

    def add(self, link: FailoverService) -> None:
        """Accept connections for ``link``'s relationship here too."""
        self.links.append(link)

    def for_partner(self, host: str | None) -> list[FailoverService]:
        """The relationships whose partner is ``host``."""
        return [link for link in self.links if link.partner_ip == host]

    def names(self) -> str:
        return ", ".join(link.session.name for link in self.links)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        listen = endpoints.TCP4ServerEndpoint(self.reactor, self.port, interface=self.local_ip)
        d = listen.listen(_Factory(self))
        d.addCallbacks(self._listening_on, self._listen_failed)

    def _listening_on(self, port: IListeningPort) -> None:
        self._listening = port
        log.info("failover {pairs}: listening on {ip}:{port}", pairs=self.names(), ip=self.local_ip, port=self.port)

    def _listen_failed(self, failure: Failure) -> None:
        log.error("failover {pairs}: cannot listen on {ip}:{port}: {error}", pairs=self.names(),
                  ip=self.local_ip, port=self.port, error=failure.getErrorMessage())

    def stopService(self) -> Any:
        if self._listening is not None:
            self._listening.stopListening()
            self._listening = None
        return super().stopService()  # type: ignore[no-untyped-call]


class _Router(Protocol):
    """An accepted connection until it belongs to a relationship, then a pass-through to its link."""

    def __init__(self, listener: FailoverListener) -> None:
        self.listener = listener
        self.inner: FailoverProtocol | None = None
        self._candidates: list[FailoverService] = []
        self._framer = wire.Framer()
        self._seen = bytearray()
        self._timeout: IDelayedCall | None = None

    @property
    def tcp(self) -> ITCPTransport:
        assert self.transport is not None
        return self.transport  # type: ignore[return-value]

    def connectionMade(self) -> None:
        host = getattr(self.tcp.getPeer(), "host", None)
        self._candidates = self.listener.for_partner(host)
        if not self._candidates:
            log.warn("failover {pairs}: connection from {host} refused: not a partner", pairs=self.listener.names(),
                     host=host)
            self.tcp.abortConnection()
        elif len(self._candidates) == 1 and self._candidates[0].link is None:
            self._attach(self._candidates[0])
        else:
            self._timeout = self.listener.clock.callLater(CHOOSE_TIMEOUT, self._give_up)

    def _attach(self, link: FailoverService) -> None:
        self.inner = FailoverProtocol(link)
        self.inner.makeConnection(self.tcp)  # type: ignore[no-untyped-call]

    def _give_up(self) -> None:
        self._timeout = None
        if self.inner is None:
            self.tcp.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        self._seen += data
        try:
            messages = self._framer.feed(data)
        except FailoverWireError:
            # Not failover traffic: closed unanswered, as a relationship's own
            # link closes a second connection.
            self.tcp.loseConnection()
            return
        if messages:
            self._route(messages[0])

    def _route(self, first: wire.Message) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        name = first.relationship_name if first.type == MessageType.CONNECT else None
        chosen = next((link for link in self._candidates if link.session.name == name), None)
        if chosen is not None:
            self._attach(chosen)
            assert self.inner is not None
            self.inner.dataReceived(bytes(self._seen))
            return
        host = getattr(self.tcp.getPeer(), "host", None)
        if first.type != MessageType.CONNECT:
            text = f"{MessageType(first.type).name} before CONNECT"
            log.warn("failover {pairs}: {text} from {host}; closed", pairs=self.listener.names(), text=text, host=host)
            self.tcp.write(wire.encode(wire.disconnect(0, int(self.listener.clock.seconds()),
                                                      reject_reason=int(RejectReason.UNKNOWN), message=text)))
        else:
            text = f"unknown failover relationship name {name!r}"
            log.warn("failover {pairs}: CONNECT from {host} refused: {text}", pairs=self.listener.names(),
                     host=host, text=text)
            self.tcp.write(wire.encode(wire.connectack(
                first.xid, int(self.listener.clock.seconds()), relationship_name=name,
                vendor_class=VENDOR, reject_reason=int(RejectReason.INVALID_PARTNER), message=text)))
        self.tcp.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        if self.inner is not None:
            self.inner.connectionLost(reason)


class _Factory(Factory):
    def __init__(self, listener: FailoverListener) -> None:
        self.listener = listener

    def buildProtocol(self, addr: IAddress | None) -> _Router:
        return _Router(self.listener)
