"""The failover link on Twisted: TCP 647 in and out, bytes to and from a session.

Thin by design: :class:`FailoverProtocol` frames the stream with
:class:`~cnrd.failover.wire.Framer` and hands messages to the pure
:class:`~cnrd.failover.session.FailoverSession`; :class:`FailoverService` owns the
listener, the outgoing connection (a ClientService with backoff on the
injected reactor), a one-second tick, and the rule that binding
acknowledgements leave only after the lease store has committed what they
acknowledge.

Connection direction, as ISC dhcpd does it in practice: both servers listen
(:class:`~cnrd.failover.listen.FailoverListener`, one per address and
port, hands accepted connections over); the main dials the backup and
sends CONNECT on whatever link comes up first (an accepted one included).
The backup dials once, when it starts, so that a restarted backup begins
its recovery at once instead of at the main's next redial (up to 5 s
later); after that only the main redials, every few seconds, which keeps
two simultaneous dials (each side keeping a different link and closing the
other's) to that one moment.  A link that is up closes a second one.  Only
the configured partner address may connect; anything else is closed at
once and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, cast

from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IAddress, IReactorTCP, IReactorTime, ITCPTransport, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.ops import logs
from cnrd.ops.latency import BNDACK_BUCKETS, Histogram
from cnrd.failover import wire
from cnrd.failover.session import FailoverSession
from cnrd.failover.states import Role
from cnrd.failover.wire import FailoverWireError, MessageType
from cnrd.text import int_to_ip

#: Unacked BNDUPD send times kept at most (the update window is far smaller).
MAX_TIMED_UPDATES = 100_000

log = Logger(namespace="cnrd.failover")


class FailoverProtocol(Protocol):
    """One TCP connection to the partner."""

    def __init__(self, owner: "FailoverService", outgoing: bool = False) -> None:
        self.owner = owner
        self.outgoing = outgoing  # dialled by us (the ClientService) rather than accepted
        self.framer = wire.Framer()
        self.active = False

    @property
    def tcp(self) -> ITCPTransport:
        """The connection's transport (set from connectionMade on)."""
        assert self.transport is not None
        # Declared as ITransport; what the reactor (or a test) connects has the TCP methods too.
        return cast(ITCPTransport, self.transport)

    def connectionMade(self) -> None:
        peer_host = getattr(self.tcp.getPeer(), "host", None)
        if peer_host != self.owner.partner_ip:
            log.warn("failover {pair}: connection from {host} refused: not the partner ({partner})",
                     pair=self.owner.session.name, host=peer_host, partner=self.owner.partner_ip)
            self.tcp.abortConnection()
            return
        if self.owner.link is not None:
            # One link per relationship (ISC rejects a duplicate connection, 7).
            if self.owner.activity():
                log.info("failover {pair}: second connection from {host} closed", pair=self.owner.session.name,
                         host=peer_host)
            self.tcp.loseConnection()
            return
        self.active = True
        self.owner.link_up(self)

    def dataReceived(self, data: bytes) -> None:
        if not self.active:
            return
        owner = self.owner
        now = owner.now()
        try:
            messages = self.framer.feed(data)
        except FailoverWireError as e:
            for msg in e.preceding:
                owner.session.receive(msg, now)
            owner.session.refuse(e, now)
            owner.flush()
            return
        detail = owner.detail_on()
        acked_at: float | None = None
        for msg in messages:
            if msg.type == MessageType.BNDACK:
                sent = owner.bndupd_sent.pop(msg.xid, None)
                if sent is not None:
                    if acked_at is None:
                        acked_at = perf_counter()  # one clock read for the whole read
                    owner.bndack_seconds.observe(acked_at - sent)
            if detail and msg.type in (MessageType.BNDUPD, MessageType.BNDACK):
                log.info("failover {pair}: received DHCP{type} {msg}", pair=owner.session.name,
                         type=MessageType(msg.type).name, msg=_describe(msg))
            owner.session.receive(msg, now)
        owner.flush()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.active:
            self.active = False
            self.owner.link_down(self)


class _Factory(Factory):
    def __init__(self, owner: "FailoverService", outgoing: bool = False) -> None:
        self.owner = owner
        self.outgoing = outgoing

    def buildProtocol(self, addr: IAddress | None) -> FailoverProtocol:
        return FailoverProtocol(self.owner, self.outgoing)


def _describe(msg: wire.Message) -> str:
    parts = [f"xid={msg.xid}"]
    addr = msg.assigned_address
    if addr is not None:
        parts.append(f"address={int_to_ip(addr)}")
    if msg.binding_status is not None:
        parts.append(f"status={getattr(msg.binding_status, 'name', msg.binding_status)}")
    if msg.reject_reason is not None:
        parts.append(f"reject={int(msg.reject_reason)}")
    return " ".join(parts)


class FailoverService(service.MultiService):
    """The link, timers and commit ordering for one failover relationship."""

    def __init__(
        self,
        session: FailoverSession,
        reactor: IReactorTCP,
        *,
        local_ip: str,
        partner_ip: str,
        port: int,
        commit: Callable[[Callable[[bool], None]], None],
        detail: bool = False,
        log_settings: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.session = session
        self.reactor = reactor
        self.clock = IReactorTime(reactor)
        self._local_ip = local_ip
        self._partner_ip = partner_ip
        self.port = port
        self.commit = commit
        # Per-message BNDUPD/BNDACK lines: always with ``detail``, else while
        # log-settings (read at each message: it can change at run time) says
        # failover-detail.
        self.detail = detail
        self.log_settings = log_settings
        self.link: FailoverProtocol | None = None
        self._tick = LoopingCall(self._on_tick)
        self._tick.clock = self.clock
        self._client: ClientService | None = None
        self._first_dial: Deferred[Any] | None = None  # the backup's one dial at start
        # BNDUPD -> BNDACK round trips: when each unacked BNDUPD left, by xid.
        self.bndack_seconds = Histogram(BNDACK_BUCKETS)
        self.bndupd_sent: dict[int, float] = {}
        self.setName(f"failover-{session.name}")  # type: ignore[no-untyped-call]

    @property
    def local_ip(self) -> str:
        """Our address in the relationship (we listen on it and dial from it)."""
        return self._local_ip

    @property
    def partner_ip(self) -> str:
        """The partner's address: the only one allowed to connect."""
        return self._partner_ip

    def now(self) -> int:
        return int(self.clock.seconds())

    def detail_on(self) -> bool:
        """True when BNDUPD/BNDACK messages are logged one by one (log-settings failover-detail)."""
        return self.detail or logs.shown(logs.DETAIL, self.log_settings())

    def activity(self) -> bool:
        """True when normal failover activity is logged (not log-settings no-failover-activity)."""
        return logs.shown(logs.ACTIVITY, self.log_settings())

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        dial = endpoints.TCP4ClientEndpoint(self.reactor, self.partner_ip, self.port, timeout=5,
                                            bindAddress=(self.local_ip, 0))
        if self.session.role is Role.MAIN:
            # Redial within seconds, as ISC does: backing off from 1 s to at most 5 s.
            self._client = ClientService(dial, _Factory(self, outgoing=True), retryPolicy=_retry,
                                         clock=self.clock)
            self._client.startService()
        else:
            self._first_dial = dial.connect(_Factory(self, outgoing=True))
            self._first_dial.addErrback(self._first_dial_failed)
        self._tick.start(1, now=False)

    def _first_dial_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError) and self.activity():
            log.info("failover {pair}: {partner} did not answer our dial ({reason}); waiting for it to dial us",
                     pair=self.session.name, partner=self.partner_ip, reason=failure.getErrorMessage())

    def stopService(self) -> Any:
        if self._tick.running:
            self._tick.stop()
        if self._first_dial is not None:
            self._first_dial.cancel()  # no-op once it has connected or failed
            self._first_dial = None
        if self._client is not None:
            self._client.stopService()
        if self.link is not None:
            link = self.link
            link.tcp.abortConnection()
            # Record the lost link now: the transport reports it only on a
            # later reactor turn, after the DHCP service has closed the store.
            self.link_down(link)
        return super().stopService()  # type: ignore[no-untyped-call]

    # -- link events -----------------------------------------------------
    def link_up(self, proto: FailoverProtocol) -> None:
        self.link = proto
        if not proto.outgoing and self._client is not None and self._client.running:
            # The partner dialled first: stop dialling while this link lasts.
            self._client.stopService()
        if self.activity():
            log.info("failover {pair}: connected to {partner}", pair=self.session.name, partner=self.partner_ip)
        self.session.connection_made(self.now())
        self.flush()

    def link_down(self, proto: FailoverProtocol) -> None:
        if self.link is proto:
            self.link = None
            self.bndupd_sent.clear()  # a new link starts new round trips
            if self.activity():
                log.info("failover {pair}: link to {partner} closed", pair=self.session.name,
                         partner=self.partner_ip)
            self.session.connection_lost(self.now())
            self.flush()
            if self._client is not None and not self._client.running and self.running:
                self._client.startService()

    def drop_link(self) -> bool:
        """Close the current link (the partner redials or is redialled); False when there is none."""
        link = self.link
        if link is None:
            return False
        link.tcp.loseConnection()
        return True

    # -- output ----------------------------------------------------------
    def _on_tick(self) -> None:
        self.session.tick(self.now())
        self.flush()

    def flush(self) -> None:
        """Send the session's messages; BNDACKs (and a close) only once its changes are durable."""
        session = self.session
        session.pump(self.now())
        out = session.take()
        link = self.link
        if link is not None and out.send:
            sent_at = perf_counter()
            unacked = self.bndupd_sent
            if len(unacked) > MAX_TIMED_UPDATES:
                unacked.clear()  # BNDACKs that never came (a partner that resent on a new link)
            for msg in out.send:
                if msg.type == MessageType.BNDUPD:
                    unacked[msg.xid] = sent_at
            self._write(link.tcp, out.send)
        if not out.acks and not out.close:
            # The commit collects session.take_persist() with the lease changes.
            self.commit(lambda ok: None)
            return

        def durable(ok: bool) -> None:
            if link is None or self.link is not link:
                return  # that link is gone; the partner resends what it did not see acked
            if ok:
                self._write(link.tcp, out.acks)
            else:
                log.error("failover {pair}: store commit failed; {n} BNDACKs withheld", pair=session.name,
                          n=len(out.acks))
            if out.close:
                link.tcp.loseConnection()

        self.commit(durable)

    def _write(self, transport: ITransport, messages: list[wire.Message]) -> None:
        """Encode ``messages`` and hand them to ``transport`` in one write (one
        buffer append and one send for a whole window of updates)."""
        if not messages:
            return
        if self.detail_on():
            for msg in messages:
                if msg.type in (MessageType.BNDUPD, MessageType.BNDACK):
                    log.info("failover {pair}: sending DHCP{type} {msg}", pair=self.session.name,
                             type=MessageType(msg.type).name, msg=_describe(msg))
        encode = wire.encode
        transport.write(b"".join([encode(msg) for msg in messages]))


def _retry(attempt: int) -> float:
    return min(1.0 * 2.0 ** min(attempt, 4), 5.0)
