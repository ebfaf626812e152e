"""The values the DHCP core exchanges with its adapters and with failover.

:class:`RxInfo` and :class:`Interface` come in from the socket layer,
:class:`Reply` goes back to it, :class:`Gate` is what failover plugs in per
scope, :class:`Counters` is read by the status API and the metrics.

Pure module.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from cnrd.config import PolicyConfig, ScopeConfig
from cnrd.dhcp.packet import DhcpPacket
from cnrd.leases.model import Lease
from cnrd.leases.table import Pool

__all__ = ["BROADCAST", "RxInfo", "Reply", "Interface", "ReplyTemplate", "ScopeRuntime", "Gate", "Counters"]

BROADCAST = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class RxInfo:
    """Where a request came from, as the socket layer saw it."""

    ifindex: int  # receiving interface (0 when unknown)
    local_ip: int  # our address the datagram reached (IP_PKTINFO spec_dst)
    dst_ip: int  # the datagram's destination address
    src_ip: int
    src_port: int = 68


class Reply(NamedTuple):
    """A reply and where it goes.

    A named tuple rather than a frozen dataclass: as immutable, and built in
    a third of the time (a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``; every OFFER and ACK is one).
    """

    packet: DhcpPacket
    dst_ip: int
    dst_port: int
    ifindex: int | None = None  # send out of this interface (broadcasts, hw unicast)
    src_ip: int | None = None
    hw_unicast: bool = False  # yiaddr has no ARP entry yet: deliver to chaddr
    durable: bool = False  # send only after the table's changes are committed
    max_size: int = 576
    # The packet's first options as already encoded (DhcpPacket.serialize's prefix).
    wire_prefix: tuple[int, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Interface:
    """A configured interface and its IPv4 addresses (address, prefix length)."""

    name: str
    index: int
    addresses: tuple[tuple[int, int], ...]


class ReplyTemplate(NamedTuple):
    """What a reply of one message type, server identifier, lease time, policy and parameter request
    list carries whoever the client is: the options in wire order and the boot fields."""

    options: dict[int, bytes]
    wire: bytes  # the options encoded (cnrd.dhcp.packet.encode_options)
    prl: bytes | None  # the client's parameter request list (option 55), None without one
    siaddr: int | None
    file: bytes | None
    sname: bytes | None


@dataclass
class ScopeRuntime:
    """A scope as the server uses it: config, policy and pool together.

    ``reply_templates`` holds the client-independent part of its replies
    (:func:`cnrd.dhcp.replies.build_reply`); a reload makes new ScopeRuntimes,
    so the templates never outlive the configuration they were made from.
    """

    config: ScopeConfig
    policy: PolicyConfig
    pool: Pool
    reply_templates: dict[tuple[int | None, int, int | None, str, bytes | None], ReplyTemplate] = field(
        default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The scope's name, as in the configuration."""
        return self.config.name


class Gate(Protocol):
    """What failover says about serving one scope (implemented by cnrd.failover.gate.Gate).

    ``admit`` answers for a request: may we answer it, and from whose free
    addresses (``"main"``, ``"backup"``, ``"any"``); ``kind`` is ``"new"``
    for a client looking for an address, ``"dynamic-bootp"`` for one looking
    in a dynamic-BOOTP scope (never "any"), ``"rebind"`` for a broadcast
    REQUEST of a client holding an address (INIT-REBOOT, REBINDING) and
    ``"renew"`` for one addressing this server (SELECTING us, unicast
    RENEWING); ``secs`` is the request's secs field (load balancing answers
    a client that has waited long enough whatever its hash).  The lease-time
    methods apply the MCLT rules.
    """

    def admit(self, kind: str, lb_key: bytes, secs: int, now: int) -> tuple[bool, str | None, str]: ...

    def lease_time(self, lease: Lease | None, desired: int, now: int) -> int: ...

    def potential_expiration(self, desired: int, granted: int, now: int) -> int: ...


@dataclass
class Counters:
    """What the server did, for metrics and the status API.

    ``received`` counts requests by message type (``BOOTP`` for one without
    a type, ``OTHER`` for an unknown type), ``sent`` replies by type, and
    ``drops`` requests left unanswered by reason, and ``leasequery``
    the DHCPLEASEQUERYs answered by what they asked by (``ip``,
    ``client-id``, ``mac``).
    """

    received: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    drops: collections.Counter[str] = field(default_factory=collections.Counter)
    leasequery: collections.Counter[str] = field(default_factory=collections.Counter)
