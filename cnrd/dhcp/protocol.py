"""The DHCP request path on Twisted: a batch of datagrams in, replies out once durable.

:class:`RequestPath` is the adapter between the socket (:class:`cnrd.dhcp.net.DhcpPort`,
which hands over every datagram of one read event as a batch) and the pure
core (:class:`cnrd.dhcp.server.DhcpServer`).  Read top to bottom:

1. parse each datagram; a malformed one is counted and dropped;
2. decide each request with ``DhcpServer.handle`` (``now`` from the clock);
3. send at once what promises nothing durable (OFFER, NAK, INFORM replies);
4. commit the batch's lease changes once (one journal record, one fsync),
   and only then send the ACKs.

Each reply put on the wire is told to ``on_sent`` (the lease line of the log,
:class:`cnrd.ops.logs.LeaseLogger`).

Requests that complete an exchange (REQUEST, and DECLINE, RELEASE, BOOTP,
which change leases) are handled and committed before the batch's DISCOVERs,
INFORMs and DHCPLEASEQUERYs are worked on: a burst of new clients (or of
queries) does not hold up the ones about to be bound, and an ACK waits for
its commit, not for the rest of the batch.  ``max-dhcp-responses`` bounds the replies waiting for the disk; past
it whole batches are dropped as overload (clients retry).

A request whose client entry must first come from the client registry
(LDAP) is parked by the core (:mod:`cnrd.dhcp.registry`); the path starts
one lookup per client through ``lookup`` and decides the parked requests
when it answers or fails (its timeout bounds the wait).  Other clients are
not held up: their batches go through meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.config import ClientConfig

from cnrd.dhcp.packet import DhcpPacket, MalformedPacket, MessageType, parse
from cnrd.dhcp.server import DhcpServer, Reply, RxInfo
from cnrd.ops.latency import REPLY_BUCKETS, Histogram
from cnrd.text import int_to_ip, ip_to_int, netmask

__all__ = ["RequestPath", "ReplyPort", "Datagram", "Commit", "Lookup", "Sent", "LAZY_COMMIT"]

log = Logger(namespace="cnrd")

#: Seconds an OFFER's lease change may wait for a commit: offers promise
#: nothing, so their changes ride with the next batch's commit.
LAZY_COMMIT = 1.0
# Reply message types by option 53's value, for the latency histograms.
_TYPE_NAMES = {int(t): t.name for t in MessageType}
# Handled after the exchange-completing requests of a batch.
_NOT_FIRST = frozenset({MessageType.DISCOVER, MessageType.INFORM, MessageType.LEASEQUERY})
# Entries in each of the address conversion caches before they start over.
_CACHE_MAX = 4096

#: Make the lease changes durable, then call the callback with success.
Commit = Callable[[Callable[[bool], None]], None]
#: The client registry's entry for a lookup id (None: no entry); fails on error or timeout.
Lookup = Callable[[str], "Deferred[ClientConfig | None]"]
#: Told of each reply sent, with the request it answered when that is still at hand.
Sent = Callable[[Reply, "DhcpPacket | None"], None]


class Datagram(Protocol):
    """One received datagram as the socket adapter describes it (:class:`cnrd.dhcp.net.Received`)."""

    @property
    def data(self) -> bytes: ...
    @property
    def ifindex(self) -> int: ...
    @property
    def local_ip(self) -> str: ...
    @property
    def dst_ip(self) -> str: ...
    @property
    def src_ip(self) -> str: ...
    @property
    def src_port(self) -> int: ...


class ReplyPort(Protocol):
    """What the request path needs of the socket adapter (:class:`cnrd.dhcp.net.DhcpPort`)."""

    max_batch: int
    kernel_drops: int

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def send(self, data: bytes, dst_ip: str, dst_port: int, *, ifindex: int | None = None,
             src_ip: str | None = None) -> None: ...

    def send_to_hw(self, data: bytes, yiaddr: str, chaddr: bytes, ifindex: int, dst_port: int,
                   src_ip: str | None = None) -> None: ...


class RequestPath:
    """Batches of datagrams through the DHCP core, with replies sent only once durable."""

    def __init__(
        self,
        server: DhcpServer,
        clock: IReactorTime,
        commit: Commit,
        *,
        has_dirty: Callable[[], bool],
        max_awaiting: Callable[[], int],
        after_send: Callable[[], None] = lambda: None,
    ) -> None:
        self.server = server
        self.clock = clock
        self.commit = commit
        self._has_dirty = has_dirty
        # Read at each batch: max-dhcp-responses (the response buffers in
        # force, see cnrd.app.runtime) can change while running.
        self._max_awaiting = max_awaiting
        # Runs after a commit's ACKs have left (the failover links send
        # their binding updates then, so clients are answered first).
        self.after_send = after_send
        self.port: ReplyPort | None = None
        # Asks the client registry (LDAP) for one lookup id; set while one runs.
        self.lookup: Lookup | None = None
        # Told of each reply sent (the lease lines of the log); None: nobody.
        self.on_sent: Sent | None = None
        self.malformed = 0
        self.awaiting = 0  # durable replies waiting for their commit
        self._lazy_commit: IDelayedCall | None = None
        # request -> reply latency by the reply's message type (OFFER, ACK ...):
        # from the batch's arrival to the reply leaving, one clock read each.
        self.latency: dict[str, Histogram] = {}
        # Where datagrams come from and where replies go, converted between
        # text and int once: a relay's and our own addresses repeat in
        # every batch.  Bounded, as a source address is the sender's to pick.
        self._rx_infos: dict[tuple[int, str, str, str, int], RxInfo] = {}
        self._ip_texts: dict[int, str] = {}

    def stop(self) -> None:
        """Cancel the pending lazy commit (the caller's final commit takes its changes)."""
        if self._lazy_commit is not None and self._lazy_commit.active():
            self._lazy_commit.cancel()
        self._lazy_commit = None

    def on_batch(self, batch: Sequence[Datagram], dropped: int) -> None:
        """Answer one batch of datagrams: decide, commit once, then send."""
        drops = self.server.counters.drops
        if dropped:
            drops["overload"] += dropped
        if self.awaiting >= self._max_awaiting():
            # This many answers already wait for the disk.
            drops["overload"] += len(batch)
            return
        t0 = perf_counter()
        now = int(self.clock.seconds())
        first, later = self._parse(batch)
        acks = self._decide(first, now, t0)
        self.awaiting += len(acks)
        self.commit(lambda ok: self._committed(ok, acks, t0))
        if later:
            self._decide_and_commit(later, now, t0)
        self._start_lookups()

    def _decide_and_commit(self, packets: list[tuple[DhcpPacket, RxInfo]], now: int,
                           t0: float | None = None) -> None:
        """Decide ``packets``; commit if they need it, else leave a lazy commit for what they changed.

        ``t0``: when they arrived (perf_counter), for the latency histograms;
        None for requests that waited for the client registry.
        """
        # A list of its own: an earlier commit's callback may run after this
        # (a commit thread) and must still see its own list.
        more = self._decide(packets, now, t0)
        if more:
            self.awaiting += len(more)
            self.commit(lambda ok: self._committed(ok, more, t0))
        elif self._has_dirty() and (self._lazy_commit is None or not self._lazy_commit.active()):
            self._lazy_commit = self.clock.callLater(LAZY_COMMIT, self._commit_if_dirty)

    # -- the client registry ---------------------------------------------------------
    def _start_lookups(self) -> None:
        """Ask the registry for every lookup id a request was parked for."""
        registry = self.server.registry
        if registry is None:
            return
        for lookup_id in registry.take_wanted():
            if self.lookup is None:
                self._looked_up(None, lookup_id, ok=False)
                continue
            d = self.lookup(lookup_id)
            d.addCallbacks(self._looked_up, self._lookup_failed, callbackArgs=(lookup_id,),
                           errbackArgs=(lookup_id,))

    def _lookup_failed(self, failure: Failure, lookup_id: str) -> None:
        self._looked_up(None, lookup_id, ok=False)

    def _looked_up(self, client: ClientConfig | None, lookup_id: str, *, ok: bool = True) -> None:
        """The registry answered (or failed): decide the requests that waited for it."""
        registry = self.server.registry
        if registry is None:
            return  # the registry was configured away meanwhile: the clients retry
        now = int(self.clock.seconds())
        parked = registry.answered(lookup_id, client, now) if ok else registry.failed(lookup_id, now)
        if parked and self.port is not None:
            self._decide_and_commit(parked, now)
        self._start_lookups()

    def _parse(self, batch: Sequence[Datagram]) -> tuple[list[tuple[DhcpPacket, RxInfo]],
                                                         list[tuple[DhcpPacket, RxInfo]]]:
        """The batch's packets: (exchange-completing requests, DISCOVERs and INFORMs)."""
        first: list[tuple[DhcpPacket, RxInfo]] = []
        later: list[tuple[DhcpPacket, RxInfo]] = []
        infos = self._rx_infos
        for rx in batch:
            try:
                packet = parse(rx.data)
            except MalformedPacket as e:
                self.malformed += 1
                self.server.counters.drops[e.drop] += 1  # by class: truncated-option, bad-hlen ...
                log.debug("malformed packet from {src}: {reason}", src=rx.src_ip, reason=e.reason)
                continue
            where = (rx.ifindex, rx.local_ip, rx.dst_ip, rx.src_ip, rx.src_port)
            info = infos.get(where)
            if info is None:
                if len(infos) >= _CACHE_MAX:
                    infos.clear()
                info = infos[where] = RxInfo(rx.ifindex, ip_to_int(rx.local_ip), ip_to_int(rx.dst_ip),
                                             ip_to_int(rx.src_ip), rx.src_port)
            raw_type = packet.options.get(53)
            # Option 53 read in place; one of another length is handle()'s to count and drop.
            kind = raw_type[0] if raw_type is not None and len(raw_type) == 1 else None
            (later if kind in _NOT_FIRST else first).append((packet, info))
        return first, later

    def _decide(self, packets: list[tuple[DhcpPacket, RxInfo]], now: int, t0: float | None = None) -> list[Reply]:
        """Decide each packet; send what needs no commit, return what does."""
        durable: list[Reply] = []
        sent: list[Reply] = []
        handle = self.server.handle
        for packet, info in packets:
            reply = handle(packet, info, now)
            if reply is None:
                continue
            if reply.durable:
                durable.append(reply)
            else:
                self.send(reply, packet)
                sent.append(reply)
        if t0 is not None and sent:
            self._observe(sent, t0)
        return durable

    def _observe(self, replies: list[Reply], t0: float) -> None:
        """Count ``replies``, all sent by now, in the latency histograms of their message types."""
        elapsed = perf_counter() - t0
        latency = self.latency
        for reply in replies:
            raw_type = reply.packet.options.get(53)  # one byte: the server wrote it
            name = _TYPE_NAMES.get(raw_type[0], "BOOTREPLY") if raw_type else "BOOTREPLY"
            h = latency.get(name)
            if h is None:
                h = latency[name] = Histogram(REPLY_BUCKETS)
            h.observe(elapsed)

    def _commit_if_dirty(self) -> None:
        self._lazy_commit = None
        if self.port is not None and self._has_dirty():
            self.commit(lambda ok: None)

    def _committed(self, ok: bool, durable: list[Reply], t0: float | None = None) -> None:
        self.awaiting -= len(durable)
        if not ok:
            # The ACKs are withheld: clients retry, and nothing was promised
            # that the disk does not hold (the changes stay queued for the
            # next commit).
            self.server.counters.drops["store-failure"] += len(durable)
            return
        for reply in durable:
            self.send(reply)
        if t0 is not None and durable:
            self._observe(durable, t0)
        self.after_send()

    def send(self, reply: Reply, request: DhcpPacket | None = None) -> None:
        """Serialize ``reply``, put it on the wire the way its routing says, and tell ``on_sent``."""
        port = self.port
        if port is None:
            return
        try:
            data = reply.packet.serialize(reply.max_size, reply.wire_prefix)
        except MalformedPacket as e:
            self.server.counters.drops["reply-too-large"] += 1
            log.warn("reply not sent: {reason}", reason=e.reason)
            return
        src = self._ip_text(reply.src_ip) if reply.src_ip else None
        if reply.hw_unicast and reply.ifindex:
            port.send_to_hw(data, self._ip_text(reply.dst_ip), reply.packet.chaddr, reply.ifindex, reply.dst_port,
                            src_ip=src)
        else:
            port.send(data, self._ip_text(reply.dst_ip), reply.dst_port, ifindex=reply.ifindex, src_ip=src)
        if self.on_sent is not None:
            self.on_sent(reply, request)

    def _ip_text(self, address: int) -> str:
        """``address`` as the socket adapter takes it, converted once per address (bounded)."""
        texts = self._ip_texts
        text = texts.get(address)
        if text is None:
            if len(texts) >= _CACHE_MAX:
                texts.clear()
            text = texts[address] = int_to_ip(address)
        return text

    def via(self, reply: Reply) -> str:
        """Where ``reply`` goes as dhcpd's log lines say it: the relay (giaddr), else our interface.

        A reply unicast to ciaddr names no interface: the one whose subnet
        holds the client's address is its link.
        """
        giaddr = reply.packet.giaddr
        if giaddr:
            return int_to_ip(giaddr)
        interfaces = self.server.interfaces
        iface = interfaces.get(reply.ifindex) if reply.ifindex is not None else None
        if iface is None:
            for candidate in interfaces.values():
                if any((reply.dst_ip ^ a) & netmask(plen) == 0 for a, plen in candidate.addresses):
                    iface = candidate
                    break
        return iface.name if iface is not None else int_to_ip(reply.dst_ip)
