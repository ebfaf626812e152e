"""The DHCPv4 server's decisions (RFC 2131 §4.3), apart from any socket.

:class:`DhcpServer` takes one parsed request, where it came from and the
time, and returns the reply to send (with where to send it) or ``None`` when
the server stays silent.  Lease changes go into the :class:`LeaseTable`,
which remembers what must be committed before the reply leaves.

The pipeline: validate → client and class lookup → scope selection (relay
giaddr, subnet-selection option, or the receiving interface) → the message
handler → reply options.  Drops are counted by reason in ``self.drops``.

Pure module: time is the ``now`` argument.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from cnrd.config import ClientClassConfig, ClientConfig, Config, PolicyConfig, ScopeConfig
from cnrd.dhcp.packet import BOOTREQUEST, DhcpPacket, MalformedPacket, MessageType
from cnrd.leases.model import FREE_STATES, Lease, LeaseFlag, LeaseState, client_key
from cnrd.leases.table import LeaseTable, Pool
from cnrd.text import int_to_ip

BROADCAST = 0xFFFFFFFF
_U32 = struct.Struct("!I")

# Options the server itself sets in every DHCP reply, never from a policy.
_SERVER_SET = frozenset({1, 51, 52, 53, 54, 58, 59, 82})


@dataclass(frozen=True, slots=True)
class RxInfo:
    """Where a request came from, as the socket layer saw it."""

    ifindex: int  # receiving interface (0 when unknown)
    local_ip: int  # our address the datagram reached (IP_PKTINFO spec_dst)
    dst_ip: int  # the datagram's destination address
    src_ip: int
    src_port: int = 68


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply and where it goes."""

    packet: DhcpPacket
    dst_ip: int
    dst_port: int
    ifindex: int | None = None  # send out of this interface (broadcasts, hw unicast)
    src_ip: int | None = None
    hw_unicast: bool = False  # yiaddr has no ARP entry yet: deliver to chaddr
    durable: bool = False  # send only after the table's changes are committed
    max_size: int = 576


@dataclass(frozen=True, slots=True)
class Interface:
    """A configured interface and its IPv4 addresses (address, prefix length)."""

    name: str
    index: int
    addresses: tuple[tuple[int, int], ...]


@dataclass
class ScopeRuntime:
    """A scope as the server uses it: config, policy and pool together."""

    config: ScopeConfig
    policy: PolicyConfig
    pool: Pool

    @property
    def name(self) -> str:
        return self.config.name


class Gate(Protocol):
    """What failover says about serving one scope (implemented by cnrd.failover.gate).

    ``admit`` answers for a request: may we answer it, and from whose free
    addresses (``"main"``, ``"backup"``, ``"any"``); ``kind`` is ``"new"``
    for a client looking for an address and ``"renew"`` for one extending
    its binding.  The lease-time methods apply the MCLT rules.
    """

    def admit(self, kind: str, lb_key: bytes, now: int) -> tuple[bool, str | None, str]: ...

    def lease_time(self, lease: Lease | None, desired: int, now: int) -> int: ...

    def potential_expiration(self, desired: int, granted: int, now: int) -> int: ...


class LeaseTimeRules:
    """How long a lease may run; the standalone rule grants what the policy allows.

    The failover issues replace this with MCLT-bounded times; the server asks
    it and nothing else.
    """

    def lease_time(self, lease: Lease | None, desired: int, now: int) -> int:
        """Seconds to grant a client that the policy would give ``desired``."""
        return desired


@dataclass
class Counters:
    """What the server did, for metrics and the status API."""

    received: collections.Counter = field(default_factory=collections.Counter)
    sent: collections.Counter = field(default_factory=collections.Counter)
    drops: collections.Counter = field(default_factory=collections.Counter)



class DhcpServer:
    """RFC 2131 server behaviour over a :class:`LeaseTable`."""

    def __init__(
        self,
        config: Config,
        table: LeaseTable,
        *,
        rules: LeaseTimeRules | None = None,
        log: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.table = table
        self.rules = rules or LeaseTimeRules()
        self.counters = Counters()
        self.enabled = config.server.start_on_reboot
        self._log = log or (lambda event, fields: None)
        self.interfaces: dict[int, Interface] = {}
        self._our_ips: set[int] = set()
        self._scope_cache: dict[int, list[ScopeRuntime]] = {}
        # scope name -> failover gate, set by the failover service for the
        # scopes a failover pair covers; scopes without one are standalone.
        self.gates: dict[str, Gate] = {}
        self.configure(config)

    # -- configuration -----------------------------------------------------
    def configure(self, config: Config) -> None:
        """(Re)build scopes, pools and client lookups from ``config``."""
        self.config = config
        self.scopes: dict[str, ScopeRuntime] = {}
        for sc in config.scopes.values():
            policy = config.policies[sc.policy]
            pool = self.table.pools.get(sc.name)
            if pool is None or pool.ranges != tuple(sorted(sc.ranges, key=lambda r: r.first)) or pool.first_available != sc.allocate_first_available:
                pool = Pool(sc.name, sc.ranges, sc.allocate_first_available)
                # On a reload, a failover scope's new pool keeps the failover
                # rule for expired/released addresses (set before add_pool
                # sorts the existing records into it).
                pool.failover = sc.name in self.gates
                self.table.add_pool(pool)
            self.scopes[sc.name] = ScopeRuntime(sc, policy, pool)
        for name in [n for n in self.table.pools if n not in self.scopes]:
            del self.table.pools[name]
        for address in [a for a in self.table.reserved if a not in config.reservations]:
            self.table.unreserve(address)
        self.reservations_by_key: dict[bytes, int] = {}
        for res in config.reservations.values():
            key = self._reservation_key(res.hardware_address, res.client_id)
            self.reservations_by_key[key] = res.address
            self.table.reserve(res.address, key)
        self.clients: dict[bytes, ClientConfig] = dict(config.clients)
        self.classes: dict[str, ClientClassConfig] = dict(config.client_classes)
        self.server_identifier = config.server.server_identifier
        self._scope_cache.clear()

    @staticmethod
    def _reservation_key(hw: bytes | None, client_id: bytes | None) -> bytes:
        # Reservations name Ethernet addresses; requests carry htype 1 for them.
        if client_id:
            return client_key(client_id, b"")
        return client_key(None, b"\x01" + (hw or b""))

    def set_interfaces(self, interfaces: Iterable[Interface]) -> None:
        """Tell the server which interfaces it serves and their addresses."""
        self.interfaces = {i.index: i for i in interfaces}
        self._our_ips = {a for i in self.interfaces.values() for a, _ in i.addresses}
        if self.server_identifier:
            self._our_ips.add(self.server_identifier)
        self._scope_cache.clear()

    def load(self, leases: Iterable[Lease], now: int) -> int:
        """Take the stored leases at start-up."""
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
            self._drop("malformed-option", {"reason": e.reason})
            return None

    def _drop(self, reason: str, fields: dict | None = None) -> None:
        self.counters.drops[reason] += 1
        self._log("dhcp-drop", {"reason": reason, **(fields or {})})

    def _handle(self, p: DhcpPacket, rx: RxInfo, now: int) -> Reply | None:
        if p.op != BOOTREQUEST:
            self._drop("not-a-request")
            return None
        if p.hlen == 0 or p.hlen > 16:
            self._drop("bad-hlen")
            return None
        mtype = p.message_type
        self.counters.received[MessageType(mtype).name if mtype in _KNOWN_TYPES else ("BOOTP" if mtype is None else "OTHER")] += 1
        if not self.enabled:
            self._drop("dhcp-disabled")
            return None
        if p.giaddr == 0 and rx.ifindex not in self.interfaces and self.interfaces:
            self._drop("interface-not-served")
            return None
        hw = bytes([p.htype]) + p.chaddr
        cid = p.client_id
        key = client_key(cid, hw)
        client = self.clients.get(p.chaddr) if p.htype == 1 else None
        if client is not None and client.action == "exclude":
            self._drop("client-excluded")
            return None
        cls = self.classes.get(client.client_class) if client and client.client_class else None
        if cls is not None and cls.action == "exclude":
            self._drop("client-class-excluded")
            return None
        ctx = _Ctx(p, rx, now, hw, cid, key, client, cls)
        if mtype is None:
            return self._bootp(ctx)
        if mtype == MessageType.DISCOVER:
            return self._discover(ctx)
        if mtype == MessageType.REQUEST:
            return self._request(ctx)
        if mtype == MessageType.RELEASE:
            return self._release(ctx)
        if mtype == MessageType.DECLINE:
            return self._decline(ctx)
        if mtype == MessageType.INFORM:
            return self._inform(ctx)
        self._drop("unsupported-message-type", {"type": mtype})
        return None

    # -- scope selection ---------------------------------------------------
    def _link_address(self, ctx: "_Ctx") -> int | None:
        """The address that names the client's subnet (RFC 2131 §4.3.1, RFC 3011)."""
        sel = ctx.p.subnet_selection
        if sel is not None:
            return sel
        if ctx.p.giaddr:
            return ctx.p.giaddr
        return None

    def _scopes_for(self, ctx: "_Ctx", *, bootp: bool = False) -> list[ScopeRuntime]:
        """Candidate scopes for the client's network, filtered by class and scope flags."""
        link = self._link_address(ctx)
        if link is not None:
            found = self._scopes_containing(link)
        else:
            iface = self.interfaces.get(ctx.rx.ifindex)
            found = []
            if iface is not None:
                for address, _ in iface.addresses:
                    for s in self._scopes_containing(address):
                        if s not in found:
                            found.append(s)
        out = []
        tags = ctx.cls.selection_tags if ctx.cls is not None else frozenset()
        for s in found:
            c = s.config
            if not c.enabled:
                continue
            if bootp and not c.bootp:
                continue
            if not bootp and not c.dhcp:
                continue
            if tags and not (tags & c.selection_tags):
                continue
            out.append(s)
        return out

    def _scopes_containing(self, address: int) -> list[ScopeRuntime]:
        found = self._scope_cache.get(address)
        if found is None:
            found = [s for s in self.scopes.values() if s.config.contains(address)]
            if len(self._scope_cache) > 4096:
                self._scope_cache.clear()
            self._scope_cache[address] = found
        return found

    def _scope_of_address(self, address: int, candidates: list[ScopeRuntime]) -> ScopeRuntime | None:
        for s in candidates:
            if s.config.contains(address):
                return s
        return None

    # -- policy helpers ----------------------------------------------------
    def _policy(self, ctx: "_Ctx", scope: ScopeRuntime) -> PolicyConfig:
        # Most specific wins: client, then its class, then the scope (CNR's policy hierarchy).
        if ctx.client is not None and ctx.client.policy:
            return self.config.policies[ctx.client.policy]
        if ctx.cls is not None and ctx.cls.policy:
            return self.config.policies[ctx.cls.policy]
        return scope.policy

    def _desired_time(self, ctx: "_Ctx", scope: ScopeRuntime) -> int:
        policy = self._policy(ctx, scope)
        desired = policy.lease_time
        asked = ctx.p.lease_time
        if asked and policy.allow_client_lease_time:
            desired = min(desired, max(asked, 60))
        return desired

    def _granted_time(self, ctx: "_Ctx", scope: ScopeRuntime, lease: Lease | None) -> int:
        desired = self._desired_time(ctx, scope)
        gate = self.gates.get(scope.name)
        if gate is not None:
            return gate.lease_time(lease, desired, ctx.now)
        return self.rules.lease_time(lease, desired, ctx.now)

    def _admit(self, ctx: "_Ctx", scope: ScopeRuntime, kind: str) -> tuple[bool, str | None]:
        """Failover's word on answering this client from ``scope``; drops are counted."""
        gate = self.gates.get(scope.name)
        if gate is None:
            return True, None
        ok, owner, reason = gate.admit(kind, ctx.lb_key, ctx.now)
        if not ok:
            self._drop(reason)
        return ok, owner

    def _server_id(self, ctx: "_Ctx") -> int:
        if self.server_identifier:
            return self.server_identifier
        if ctx.rx.local_ip and ctx.rx.local_ip != BROADCAST:
            return ctx.rx.local_ip
        iface = self.interfaces.get(ctx.rx.ifindex)
        if iface is not None and iface.addresses:
            return iface.addresses[0][0]
        return 0

    # -- replies -----------------------------------------------------------
    def _reply(
        self,
        ctx: "_Ctx",
        mtype: int | None,
        scope: ScopeRuntime | None,
        yiaddr: int,
        lease_time: int | None,
        *,
        durable: bool,
    ) -> Reply:
        p = ctx.p
        r = p.reply_to(mtype)
        r.yiaddr = yiaddr
        opts = r.options
        if mtype is not None:
            sid = self._server_id(ctx)
            opts[54] = _U32.pack(sid)
        if lease_time is not None and mtype is not None:
            opts[51] = _U32.pack(lease_time)
            if lease_time != Lease.INFINITE:
                opts[58] = _U32.pack(lease_time // 2)
                opts[59] = _U32.pack(lease_time * 7 // 8)
        if mtype == MessageType.ACK and lease_time is None:
            r.ciaddr = p.ciaddr  # INFORM: RFC 2131 table 3
        if mtype != MessageType.NAK and scope is not None:
            opts[1] = _U32.pack(scope.config.netmask)
            policy = self._policy(ctx, scope)
            prl = p.parameter_request_list
            if prl is None or mtype is None:
                for code, value in policy.options.items():
                    if code not in _SERVER_SET:
                        opts[code] = value
            else:
                for code in prl:
                    if code not in _SERVER_SET and code in policy.options:
                        opts[code] = policy.options[code]
                # Options the operator set but the client did not ask for are
                # still worth sending when small and basic (routers, DNS).
                for code in (3, 6, 15):
                    if code in policy.options and code not in opts:
                        opts[code] = policy.options[code]
            if ctx.host_name and 12 not in opts and (prl is None or 12 in prl):
                opts[12] = ctx.host_name.encode()
        if p.giaddr and 82 in p.options:
            opts[82] = p.options[82]  # RFC 3046 §2.2: echo relay agent information
        return self._route(ctx, r, mtype, durable)

    def _route(self, ctx: "_Ctx", r: DhcpPacket, mtype: int | None, durable: bool) -> Reply:
        """Where a reply goes (RFC 2131 §4.1)."""
        p = ctx.p
        max_size = 576
        mms = p.max_message_size
        if mms is not None and mms > 576:
            max_size = min(mms, 1500)
        max_size -= 28  # IP and UDP headers
        sport = self.config.server.server_port
        cport = self.config.server.client_port
        src = self._server_id(ctx) or None
        if p.giaddr:
            if mtype == MessageType.NAK:
                r.flags |= 0x8000
            return Reply(r, p.giaddr, sport, None, src, False, durable, max_size)
        if mtype == MessageType.NAK:
            return Reply(r, BROADCAST, cport, ctx.rx.ifindex, src, False, durable, max_size)
        if p.ciaddr:
            return Reply(r, p.ciaddr, cport, None, src, False, durable, max_size)
        if p.broadcast or not r.yiaddr:
            return Reply(r, BROADCAST, cport, ctx.rx.ifindex, src, False, durable, max_size)
        if p.htype != 1 or p.hlen != 6:
            # Only Ethernet hardware addresses can be unicast to without ARP here.
            return Reply(r, BROADCAST, cport, ctx.rx.ifindex, src, False, durable, max_size)
        return Reply(r, r.yiaddr, cport, ctx.rx.ifindex, src, True, durable, max_size)

    # -- DISCOVER ----------------------------------------------------------
    def _discover(self, ctx: "_Ctx") -> Reply | None:
        scopes = self._scopes_for(ctx)
        if not scopes:
            self._drop("no-scope")
            return None
        owners: dict[str, str | None] = {}
        admitted = []
        for scope in scopes:
            ok, owner = self._admit(ctx, scope, "new")
            if ok:
                admitted.append(scope)
                owners[scope.name] = owner
        if not admitted:
            return None
        picked = self._pick_address(ctx, admitted, owners)
        if picked is None:
            self._drop("no-address-available")
            return None
        address, scope = picked
        lease = self.table.get(address)
        lease_time = self._granted_time(ctx, scope, lease)
        hold = min(self._policy(ctx, scope).offer_timeout, max(lease_time, 1))
        state = LeaseState.OFFERED
        expiration = ctx.now + hold
        if lease is not None and lease.state is LeaseState.LEASED and lease.key == ctx.key:
            # A bound client re-discovering keeps its binding; only the reply is an offer.
            state = LeaseState.LEASED
            expiration = lease.expiration
        self.table.update(
            address,
            durable=False,
            state=state,
            scope=scope.name,
            hw=ctx.hw,
            client_id=ctx.cid,
            expiration=expiration,
            host_name=ctx.host_name or (lease.host_name if lease else ""),
        )
        self.counters.sent["OFFER"] += 1
        return self._reply(ctx, MessageType.OFFER, scope, address, lease_time, durable=False)

    def _pick_address(
        self, ctx: "_Ctx", scopes: list[ScopeRuntime], owners: dict[str, str | None] | None = None
    ) -> tuple[int, ScopeRuntime] | None:
        owners = owners or {}
        # 1. a reservation
        res = self._reservation(ctx, scopes)
        if res is not None:
            return res
        # 2. the client's current or previous binding on this network
        best: tuple[int, ScopeRuntime] | None = None
        for lease in self.table.of_client(ctx.key):
            scope = self.scopes.get(lease.scope)
            if scope is None or scope not in scopes or lease.address in self.table.reserved:
                continue
            if lease.address not in scope.pool:
                continue
            if lease.state in (LeaseState.LEASED, LeaseState.OFFERED):
                return lease.address, scope
            if lease.state in FREE_STATES and best is None:
                best = (lease.address, scope)
        if best is not None:
            return best
        # 3. the requested address, when free
        want = ctx.p.requested_address
        if want:
            for scope in scopes:
                if want in scope.pool and self.table.is_available(want, ctx.key, ctx.hw_key, owners.get(scope.name)):
                    return want, scope
        # 4. a free address
        for scope in scopes:
            address = self.table.allocate(scope.name, ctx.key, owner=owners.get(scope.name))
            if address is not None:
                return address, scope
        return None

    def _reservation(self, ctx: "_Ctx", scopes: list[ScopeRuntime]) -> tuple[int, ScopeRuntime] | None:
        address = self.reservations_by_key.get(ctx.key)
        if address is None and ctx.cid:
            address = self.reservations_by_key.get(client_key(None, ctx.hw))
        if address is None:
            return None
        scope = self._scope_of_address(address, scopes)
        if scope is None:
            return None
        return address, scope

    # -- REQUEST -----------------------------------------------------------
    def _request(self, ctx: "_Ctx") -> Reply | None:
        p = ctx.p
        sid = p.server_identifier
        want = p.requested_address
        if sid is not None:
            return self._request_selecting(ctx, sid, want)
        if want is not None and not p.ciaddr:
            return self._request_init_reboot(ctx, want)
        if p.ciaddr:
            return self._request_renew(ctx)
        self._drop("request-without-address")
        return None

    def _request_selecting(self, ctx: "_Ctx", sid: int, want: int | None) -> Reply | None:
        if sid not in self._our_ips and sid != self._server_id(ctx):
            # The client chose another server: our offer is free again (RFC 2131 §4.3.2).
            for lease in self.table.of_client(ctx.key):
                if lease.state is LeaseState.OFFERED:
                    self.table.update(lease.address, durable=False, state=LeaseState.AVAILABLE, expiration=0)
            self._drop("request-for-other-server")
            return None
        address = want or ctx.p.ciaddr
        if not address:
            self._drop("request-without-address")
            return None
        lease = self.table.get(address)
        if lease is None or lease.key != ctx.key or lease.state not in (LeaseState.OFFERED, LeaseState.LEASED, *FREE_STATES):
            return self._nak(ctx, "address not offered to this client")
        scope = self.scopes.get(lease.scope)
        if scope is None or not self.table.is_available(address, ctx.key, ctx.hw_key):
            return self._nak(ctx, "address no longer available")
        if not self._admit(ctx, scope, "renew" if lease.state is LeaseState.LEASED else "new")[0]:
            return None
        return self._ack(ctx, scope, address, "ack")

    def _request_init_reboot(self, ctx: "_Ctx", want: int) -> Reply | None:
        scopes = self._scopes_for(ctx)
        scope = self._scope_of_address(want, scopes)
        if scope is None:
            if self._link_address(ctx) is not None or self.interfaces.get(ctx.rx.ifindex) is not None:
                # RFC 2131 §4.3.2: the client is on the wrong network.
                return self._nak(ctx, "requested address is not on this network")
            self._drop("no-scope")
            return None
        lease = self.table.get(want)
        if lease is None or lease.key is None:
            reserved = self._reservation(ctx, scopes)
            if reserved is not None and reserved[0] == want:
                return self._ack(ctx, scope, want, "ack")
            self._drop("init-reboot-unknown-client")  # RFC 2131 §4.3.2: no record, stay silent
            return None
        if lease.key != ctx.key:
            if lease.state in FREE_STATES:
                self._drop("init-reboot-unknown-client")
                return None
            return self._nak(ctx, "address belongs to another client")
        if not self.table.is_available(want, ctx.key, ctx.hw_key) or lease.address not in scope.pool and want not in self.table.reserved:
            return self._nak(ctx, "address no longer available")
        if not self._admit(ctx, scope, "renew")[0]:
            return None
        return self._ack(ctx, scope, want, "ack")

    def _request_renew(self, ctx: "_Ctx") -> Reply | None:
        address = ctx.p.ciaddr
        lease = self.table.get(address)
        scope = self.scopes.get(lease.scope) if lease is not None else None
        if lease is None or scope is None or lease.key is None:
            self._drop("renew-unknown-lease")
            return None
        if lease.key != ctx.key:
            if lease.state in FREE_STATES:
                self._drop("renew-unknown-lease")
                return None
            return self._nak(ctx, "address belongs to another client")
        if not self.table.is_available(address, ctx.key, ctx.hw_key):
            return self._nak(ctx, "address no longer available")
        if not self._admit(ctx, scope, "renew")[0]:
            return None
        return self._ack(ctx, scope, address, "renew" if lease.state is LeaseState.LEASED else "ack")

    def _ack(self, ctx: "_Ctx", scope: ScopeRuntime, address: int, what: str) -> Reply:
        lease = self.table.get(address)
        lease_time = self._granted_time(ctx, scope, lease)
        gate = self.gates.get(scope.name)
        pet = 0
        if gate is not None:
            pet = gate.potential_expiration(self._desired_time(ctx, scope), lease_time, ctx.now)
        elif lease is not None:
            pet = lease.potential_expiration
        flags = LeaseFlag.RESERVED if address in self.table.reserved else LeaseFlag.NONE
        start = lease.start if (lease is not None and lease.state is LeaseState.LEASED and lease.key == ctx.key) else ctx.now
        self.table.update(
            address,
            durable=True,
            event=what,
            now=ctx.now,
            state=LeaseState.LEASED,
            scope=scope.name,
            hw=ctx.hw,
            client_id=ctx.cid,
            start=start,
            expiration=ctx.now + lease_time,
            potential_expiration=pet,
            cltt=ctx.now,
            host_name=ctx.host_name or (lease.host_name if lease else ""),
            flags=flags,
            relay_info=ctx.p.options.get(82, b"") if ctx.p.giaddr else b"",
        )
        self.counters.sent["ACK"] += 1
        return self._reply(ctx, MessageType.ACK, scope, address, lease_time, durable=True)

    def _nak(self, ctx: "_Ctx", why: str) -> Reply:
        self.counters.sent["NAK"] += 1
        self._log("dhcp-nak", {"reason": why, "client": ctx.hw.hex()})
        r = ctx.p.reply_to(MessageType.NAK)
        r.options[54] = _U32.pack(self._server_id(ctx))
        r.options[56] = why.encode()
        if ctx.p.giaddr and 82 in ctx.p.options:
            r.options[82] = ctx.p.options[82]
        return self._route(ctx, r, MessageType.NAK, False)

    # -- RELEASE, DECLINE, INFORM ------------------------------------------
    def _release(self, ctx: "_Ctx") -> None:
        address = ctx.p.ciaddr
        lease = self.table.get(address)
        if lease is None or lease.key != ctx.key or lease.state is not LeaseState.LEASED:
            self._drop("release-unknown-lease")
            return None
        self.table.update(
            address, durable=True, event="release", now=ctx.now,
            state=LeaseState.RELEASED, expiration=ctx.now, cltt=ctx.now,
        )
        return None

    def _decline(self, ctx: "_Ctx") -> None:
        address = ctx.p.requested_address
        lease = self.table.get(address) if address else None
        if lease is None or lease.key != ctx.key or lease.state not in (LeaseState.LEASED, LeaseState.OFFERED):
            self._drop("decline-unknown-lease")
            return None
        scope = self.scopes.get(lease.scope)
        hold = scope.policy.unavailable_timeout if scope is not None else 86400
        self.table.update(
            address, durable=True, event="decline", now=ctx.now,
            state=LeaseState.UNAVAILABLE, expiration=ctx.now + hold, cltt=ctx.now,
            hw=b"", client_id=None,
        )
        self._log("dhcp-decline", {"address": int_to_ip(address), "client": ctx.hw.hex()})
        return None

    def _inform(self, ctx: "_Ctx") -> Reply | None:
        scopes = self._scopes_for(ctx)
        address = ctx.p.ciaddr or ctx.rx.src_ip
        scope = self._scope_of_address(address, scopes) if address else None
        if scope is None:
            scope = scopes[0] if scopes else None
        if scope is None:
            self._drop("no-scope")
            return None
        if not self._admit(ctx, scope, "new")[0]:
            return None
        self.counters.sent["ACK"] += 1
        return self._reply(ctx, MessageType.ACK, scope, 0, None, durable=False)

    # -- BOOTP -------------------------------------------------------------
    def _bootp(self, ctx: "_Ctx") -> Reply | None:
        scopes = [s for s in self._scopes_for(ctx, bootp=True) if self._admit(ctx, s, "new")[0]]
        if not scopes:
            self._drop("bootp-not-enabled")
            return None
        res = self._reservation(ctx, scopes)
        flags = LeaseFlag.BOOTP
        if res is not None:
            address, scope = res
            flags |= LeaseFlag.RESERVED
        else:
            dyn = [s for s in scopes if s.config.dynamic_bootp]
            if not dyn:
                self._drop("bootp-no-reservation")
                return None
            picked = None
            for lease in self.table.of_client(ctx.key):
                s = self.scopes.get(lease.scope)
                if s in dyn and lease.state is LeaseState.LEASED:
                    picked = (lease.address, s)
                    break
            if picked is None:
                for s in dyn:
                    a = self.table.allocate(s.name, ctx.key)
                    if a is not None:
                        picked = (a, s)
                        break
            if picked is None:
                self._drop("no-address-available")
                return None
            address, scope = picked
            flags |= LeaseFlag.DYNAMIC_BOOTP
        self.table.update(
            address, durable=True, event="bootp", now=ctx.now,
            state=LeaseState.LEASED, scope=scope.name, hw=ctx.hw, client_id=None,
            start=ctx.now, expiration=Lease.INFINITE, cltt=ctx.now, flags=flags,
        )
        self.counters.sent["BOOTREPLY"] += 1
        return self._reply(ctx, None, scope, address, None, durable=True)

    # -- time --------------------------------------------------------------
    def expire(self, now: int) -> int:
        """Reclaim leases, offers and unavailable holds that ran out; returns how many."""
        return len(self.table.expire(now))


_KNOWN_TYPES = frozenset(int(t) for t in MessageType)


@dataclass(slots=True)
class _Ctx:
    """One request in flight: the packet and what the server worked out about its client."""

    p: DhcpPacket
    rx: RxInfo
    now: int
    hw: bytes
    cid: bytes | None
    key: bytes
    client: ClientConfig | None
    cls: ClientClassConfig | None

    @property
    def lb_key(self) -> bytes:
        """The RFC 3074 load-balancing key: client-id value, else chaddr."""
        return self.cid if self.cid else self.p.chaddr

    @property
    def hw_key(self) -> bytes:
        """The key this client would have without a client-id (reservations name MACs)."""
        return client_key(None, self.hw)

    @property
    def host_name(self) -> str:
        if self.client is not None and self.client.host_name:
            return self.client.host_name
        try:
            return self.p.host_name or ""
        except MalformedPacket:
            return ""
