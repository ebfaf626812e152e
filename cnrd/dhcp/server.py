"""The DHCPv4 server's decisions (RFC 2131 §4.3), apart from any socket.

:class:`DhcpServer` takes one parsed request, where it came from and the
time, and returns the reply to send (with where to send it) or ``None`` when
the server stays silent.  Lease changes go into the :class:`LeaseTable`,
which remembers what must be committed before the reply leaves.

The pipeline: validate → client and class lookup (here) → scope selection
(relay giaddr, subnet-selection option, or the receiving interface;
:mod:`cnrd.dhcp.selection`) → the message handler
(:mod:`cnrd.dhcp.handlers`) → reply options and routing
(:mod:`cnrd.dhcp.replies`).  Drops are counted by reason in
``counters.drops``.

Pure module: time is the ``now`` argument.
"""

from __future__ import annotations

from collections.abc import Iterable

from cnrd.config import Config
from cnrd.dhcp.clients import identify
from cnrd.dhcp.handlers import bootp, decline, discover, inform, release, request
from cnrd.dhcp.leasequery import handle_leasequery
from cnrd.dhcp.model import (
    BROADCAST,
    Counters,
    Gate,
    Interface,
    Reply,
    RxInfo,
    ScopeRuntime,
)
from cnrd.dhcp.packet import (
    BOOTREQUEST,
    OPT_CLIENT_ID,
    OPT_MESSAGE_TYPE,
    DhcpPacket,
    MalformedPacket,
    MessageType,
)
from cnrd.dhcp.registry import ClientRegistry
from cnrd.dhcp.state import LogEvent, Request, ServerState
from cnrd.leases.model import Lease, client_key
from cnrd.leases.table import LeaseTable, Pool
from cnrd.text import netmask

__all__ = ["DhcpServer", "BROADCAST", "Counters", "Gate", "Interface", "Reply", "RxInfo", "ScopeRuntime"]

# RFC 1542 §4.1.1: the most relay agents a request may have passed through.
_MAX_HOPS = 16

# The name each known message type is counted under in counters.received.
_RECEIVED_NAMES = {int(t): t.name for t in MessageType}
# The htype byte that begins a client's hardware key, one bytes object per value.
_HTYPE = tuple(bytes((n,)) for n in range(256))


class DhcpServer(ServerState):
    """RFC 2131 server behaviour over a :class:`LeaseTable`."""

    def __init__(self, config: Config, table: LeaseTable, *, log: LogEvent | None = None) -> None:
        super().__init__(config, table, log)
        self.configure(config)

    # -- configuration -----------------------------------------------------
    def configure(self, config: Config) -> None:
        """(Re)build scopes, pools and client lookups from ``config``."""
        self.config = config
        table = self.table
        self.scopes = {}
        for sc in config.scopes.values():
            policy = config.policies[sc.policy]
            pool = table.pools.get(sc.name)
            if pool is None or pool.ranges != tuple(sorted(sc.ranges, key=lambda r: r.first)) \
                    or pool.first_available != sc.allocate_first_available:
                pool = Pool(sc.name, sc.ranges, sc.allocate_first_available)
                # On a reload, a failover scope's new pool keeps the failover
                # rule for expired/released addresses (set before add_pool
                # sorts the existing records into it).
                pool.failover = sc.name in self.gates
                table.add_pool(pool)
            pool.backup_boundary = sc.failover_backup_allocation_boundary
            pool.grace = policy.grace_period
            self.scopes[sc.name] = ScopeRuntime(sc, policy, pool)
        for name in [n for n in table.pools if n not in self.scopes]:
            del table.pools[name]
        for address in [a for a in table.reserved if a not in config.reservations]:
            table.unreserve(address)
        self.reservations_by_key = {}
        for res in config.reservations.values():
            key = _reservation_key(res.hardware_address, res.client_id)
            self.reservations_by_key[key] = res.address
            table.reserve(res.address, key)
        self.clients = dict(config.clients)
        self.classes = dict(config.client_classes)
        # match-vendor-class prefixes, longest first: the first that begins
        # a request's option 60 is its class (cnrd.dhcp.clients).
        self.vendor_classes = sorted(((c.match_vendor_class.encode(), c) for c in self.classes.values()
                                      if c.match_vendor_class), key=lambda pc: -len(pc[0]))
        self._configure_registry(config)
        self.server_identifier = config.server.server_identifier
        self.scope_cache.clear()

    def _configure_registry(self, config: Config) -> None:
        s = config.server
        if not config.ldap or not s.client_class:
            self.registry = None
        elif self.registry is None:
            self.registry = ClientRegistry(ttl=s.client_cache_ttl, count=s.client_cache_count)
        else:
            self.registry.configure(ttl=s.client_cache_ttl, count=s.client_cache_count)
        # The reservations above were rebuilt from the file alone: registry
        # entries make theirs again when their clients are next seen.
        self.ldap_reserved = {}

    def set_interfaces(self, interfaces: Iterable[Interface]) -> None:
        """Tell the server which interfaces it serves and their addresses."""
        self.interfaces = {i.index: i for i in interfaces}
        self.our_ips = {a for i in self.interfaces.values() for a, _ in i.addresses}
        if self.server_identifier:
            self.our_ips.add(self.server_identifier)
        self.scope_cache.clear()

    def load(self, leases: Iterable[Lease], now: int) -> int:
        """Take the stored leases at start-up; returns how many."""
        n = self.table.load(leases, now)
        for res_addr, key in self.table.reserved.items():
            self.table.reserve(res_addr, key)
        return n

    # -- entry point -------------------------------------------------------
    def handle(self, packet: DhcpPacket, rx: RxInfo, now: int) -> Reply | None:
        """Decide what to answer to ``packet``; None means stay silent."""
        try:
            return self._handle(packet, rx, now)
        except MalformedPacket as e:
            self.drop("malformed-option", {"reason": e.reason})
            return None

    def _handle(self, p: DhcpPacket, rx: RxInfo, now: int) -> Reply | None:
        """Validate, look the client up, and hand the request to its message handler."""
        if p.op != BOOTREQUEST:
            self.drop("not-a-request")
            return None
        raw_type = p.options.get(OPT_MESSAGE_TYPE)
        # The accessor's answer, read in place when it is one byte (the accessor raises otherwise).
        mtype = raw_type[0] if raw_type is not None and len(raw_type) == 1 else p.message_type
        # A leasequery by IP address or client-id may leave chaddr empty (RFC 4388 §6.1).
        if p.hlen > 16 or p.hlen == 0 and mtype != MessageType.LEASEQUERY:
            self.drop("bad-hlen")
            return None
        # RFC 1542 §4.1.1: relay agents discard a request whose hops exceeds
        # 16, so one that arrives with more has looped or was forged.
        if p.hops > _MAX_HOPS:
            self.drop("too-many-hops")
            return None
        # RFC 2132 §9.14: option 61 is at least 2 bytes; a shorter one would
        # make unrelated clients share one lease key.
        cid_raw = p.options.get(OPT_CLIENT_ID)
        if cid_raw is not None and len(cid_raw) < 2:
            self.drop("bad-client-id")
            return None
        self.counters.received[_RECEIVED_NAMES.get(mtype, "OTHER") if mtype is not None else "BOOTP"] += 1
        if not self.enabled:
            self.drop("dhcp-disabled")
            return None
        # A leasequery's giaddr is its requestor's address (RFC 4388 §6.1), not a relay's.
        if p.giaddr and mtype != MessageType.LEASEQUERY and self._spoofed_giaddr(p.giaddr, rx):
            self.drop("giaddr-spoofed")
            return None
        if self.table.due(now):
            # Leases, offers and holds that ran out go back to their pools
            # now, not at the next sweep (the changes commit with this batch).
            self.table.expire(now)
        if mtype == MessageType.LEASEQUERY:
            return handle_leasequery(self, p, rx, now)
        if p.giaddr == 0 and rx.ifindex not in self.interfaces and self.interfaces:
            self.drop("interface-not-served")
            return None
        hw = _HTYPE[p.htype] + p.chaddr
        cid = cid_raw  # option 61, its length checked above
        key = client_key(cid, hw)
        who = identify(self, p, rx, key, cid, now)
        if who is None:
            return None  # parked for a registry lookup, or dropped
        client, cls = who
        if client is not None and client.action == "exclude":
            self.drop("client-excluded")
            return None
        if cls is not None and cls.action == "exclude":
            self.drop("client-class-excluded")
            return None
        req = Request(p, rx, now, hw, cid, key, client, cls)
        if mtype is None:
            return bootp(self, req)
        if mtype == MessageType.DISCOVER:
            return discover(self, req)
        if mtype == MessageType.REQUEST:
            return request(self, req)
        if mtype == MessageType.RELEASE:
            release(self, req)
            return None
        if mtype == MessageType.DECLINE:
            decline(self, req)
            return None
        if mtype == MessageType.INFORM:
            return inform(self, req)
        self.drop("unsupported-message-type", {"type": mtype})
        return None

    def _spoofed_giaddr(self, giaddr: int, rx: RxInfo) -> bool:
        """Whether a request's giaddr names a relay agent that cannot have sent it.

        A relay agent puts one of its own addresses in giaddr (RFC 1542
        §4.1.1) and sends from an address of its own, and replies go back to
        giaddr (RFC 2131 §4.1).  So giaddr must not be one of this server's
        addresses (the reply would loop back to us), nor come with source
        0.0.0.0.  A request broadcast on one of our links is from a host on
        that link: a relay there may broadcast (RFC 1542 §4.1.1 lets it, and
        a relay that reaches both failover partners that way is common), but
        its giaddr is then an address of that link; a giaddr inside the
        subnet of another link we serve is a host asking for that link's
        addresses, which it is not on.
        """
        if giaddr in self.our_ips:
            return True
        if rx.src_ip == 0:
            return True
        if rx.dst_ip == BROADCAST and rx.ifindex in self.interfaces:
            here = self.interfaces[rx.ifindex].addresses
            if any(_in_subnet(giaddr, a, n) for a, n in here):
                return False
            return any(_in_subnet(giaddr, a, n) for i in self.interfaces.values() if i.index != rx.ifindex
                       for a, n in i.addresses)
        return False

    # -- time --------------------------------------------------------------
    def expire(self, now: int) -> int:
        """Reclaim leases, offers and unavailable holds that ran out; returns how many."""
        return len(self.table.expire(now))


def _in_subnet(address: int, network: int, prefix: int) -> bool:
    mask = netmask(prefix)
    return address & mask == network & mask


def _reservation_key(hw: bytes | None, client_id: bytes | None) -> bytes:
    """The lease table key a reservation's client will have."""
    # Reservations name Ethernet addresses; requests carry htype 1 for them.
    if client_id:
        return client_key(client_id, b"")
    return client_key(None, b"\x01" + (hw or b""))
