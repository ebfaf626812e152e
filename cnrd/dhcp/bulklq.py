"""Bulk leasequery (RFC 6926): the queries a requestor sends over TCP and the answers.

A relay agent or access concentrator that lost its table rebuilds it in one
TCP connection to port 67: it sends a DHCPBULKLEASEQUERY (message type 14)
and receives one message per binding, then a DHCPLEASEQUERYDONE (15) with
the query's xid.  Every message on the connection is preceded by its length
in two octets, network byte order (RFC 6926 §6.1, :func:`frame`,
:class:`Deframer`).

A query names at most one key (RFC 6926 §6.2; more than one is a
MalformedQuery):

* relay-id: option 82 sub-option 12 (RFC 6925), the bindings whose stored
  option 82 carries that relay identifier;
* remote-id: option 82 sub-option 2 (RFC 3046), the bindings whose stored
  option 82 carries that remote identifier;
* MAC address (``htype``/``hlen``/``chaddr``) and client identifier (option
  61), the client's bindings;
* none of these: every configured IP address.  Leased addresses come as
  DHCPLEASEACTIVE, the others as DHCPLEASEUNASSIGNED with their
  dhcp-state.

The first four return only active bindings, as DHCPLEASEACTIVE with the
options a DHCPLEASEQUERY answer has (:func:`cnrd.dhcp.leasequery.lease_options`),
plus base-time (152, the server's clock) and dhcp-state (156).  A query may
narrow them with query-start-time (154) and query-end-time (155) on the
client's last transaction time.  A query that cannot be answered (a
non-zero ciaddr, yiaddr or siaddr, several keys, a VPN id, an unknown
message type) gets a DHCPLEASEQUERYDONE carrying a status-code option (151)
with the reason (RFC 6926 §6.2.2; DHCPLEASEQUERYSTATUS belongs to RFC
7724's active leasequery, which a bulk requestor need not know).

:func:`answers` yields the messages lazily, so an adapter can send a query
for a million addresses at the pace the connection drains, doing a bounded
amount of work per step.

Pure module: time is the ``now`` argument.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cnrd.dhcp.leasequery import lease_options
from cnrd.dhcp.packet import BOOTREPLY, DhcpPacket, MalformedPacket, MessageType, parse, parse_suboptions
from cnrd.leases.model import Lease, LeaseState, client_key
from cnrd.leases.table import LeaseTable

__all__ = [
    "BULKLEASEQUERY", "LEASEQUERYDONE", "MAX_MESSAGE", "TICK",
    "BulkQuery", "Deframer", "DhcpState", "FramingError", "Refusal", "Status",
    "answers", "done", "frame", "query_of", "refusal_message",
]

# Message types (option 53 values) of RFC 6926 §6.1 and RFC 7724.
BULKLEASEQUERY = 14
LEASEQUERYDONE = 15

# Options of RFC 6926 §6.2.
OPT_STATUS_CODE = 151
OPT_BASE_TIME = 152
OPT_START_TIME_OF_STATE = 153
OPT_QUERY_START_TIME = 154
OPT_QUERY_END_TIME = 155
OPT_DHCP_STATE = 156
OPT_VPN_ID = 221  # RFC 6607: cnrd has no VPNs, so a query naming one is NotAllowed

# Option 82 sub-options the queries match on.
SUB_REMOTE_ID = 2  # RFC 3046 §3.2
SUB_RELAY_ID = 12  # RFC 6925

#: The largest message a two-octet length can frame.
MAX_MESSAGE = 0xFFFF
#: Addresses :func:`answers` visits without a message before it yields None.
TICK = 256

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class Status(enum.IntEnum):
    """status-code option values (RFC 6926 §6.2.2)."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    QUERY_TERMINATED = 2
    MALFORMED_QUERY = 3
    NOT_ALLOWED = 4


class DhcpState(enum.IntEnum):
    """dhcp-state option values (RFC 6926 §6.2.7)."""

    AVAILABLE = 1
    ACTIVE = 2
    EXPIRED = 3
    RELEASED = 4
    ABANDONED = 5
    RESET = 6
    REMOTE = 7  # the failover partner's to allocate
    TRANSITIONING = 8


_STATE_OF = {
    LeaseState.AVAILABLE: DhcpState.AVAILABLE,
    LeaseState.LEASED: DhcpState.ACTIVE,
    LeaseState.EXPIRED: DhcpState.EXPIRED,
    LeaseState.RELEASED: DhcpState.RELEASED,
    LeaseState.UNAVAILABLE: DhcpState.ABANDONED,
    LeaseState.RESET: DhcpState.RESET,
    LeaseState.BACKUP: DhcpState.REMOTE,
    LeaseState.OFFERED: DhcpState.TRANSITIONING,
    LeaseState.RESERVED: DhcpState.AVAILABLE,
}


class FramingError(ValueError):
    """The byte stream is not a sequence of length-prefixed DHCP messages."""


def frame(message: bytes) -> bytes:
    """``message`` with its two-octet length in front (RFC 6926 §6.1)."""
    if len(message) > MAX_MESSAGE:
        raise FramingError(f"message of {len(message)} bytes cannot be framed")
    return _U16.pack(len(message)) + message


class Deframer:
    """Cuts a TCP byte stream into the messages it frames, whatever the reads' boundaries.

    Holds at most one incomplete message (at most :data:`MAX_MESSAGE`
    bytes); a zero length is a :class:`FramingError`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete messages ``data`` finishes, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 2:
            (size,) = _U16.unpack_from(buf, pos)
            if size == 0:
                raise FramingError("zero-length message")
            if len(buf) - pos - 2 < size:
                break
            out.append(bytes(buf[pos + 2: pos + 2 + size]))
            pos += 2 + size
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole message yet."""
        return len(self._buf)


@dataclass(frozen=True, slots=True)
class BulkQuery:
    """One DHCPBULKLEASEQUERY: which bindings it asks for.

    ``by`` is ``relay-id``, ``remote-id``, ``mac``, ``client-id`` or
    ``all``; ``key`` the value matched (the sub-option's value, htype +
    chaddr, or option 61); ``start``/``end`` the query-start-time and
    query-end-time (0: none).
    """

    xid: int
    by: str
    key: bytes = b""
    start: int = 0
    end: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A query that gets no bindings: why, as RFC 6926's status code and a text."""

    xid: int
    status: Status
    text: str


def _time_option(p: DhcpPacket, code: int) -> int:
    value = p.options.get(code)
    if value is None:
        return 0
    if len(value) != 4:
        raise ValueError(f"option {code} must be 4 bytes")
    return int(_U32.unpack(value)[0])


def query_of(data: bytes) -> BulkQuery | Refusal:
    """What the framed message ``data`` asks for, or why it gets no bindings."""
    try:
        p = parse(data)
    except MalformedPacket as e:
        xid = _U32.unpack_from(data, 4)[0] if len(data) >= 8 else 0
        return Refusal(xid, Status.MALFORMED_QUERY, f"not a DHCP message: {e.reason}")
    xid = p.xid
    try:
        mtype = p.message_type
    except MalformedPacket:
        mtype = None
    if mtype != BULKLEASEQUERY:
        return Refusal(xid, Status.MALFORMED_QUERY, f"message type {mtype} is not DHCPBULKLEASEQUERY (14)")
    if p.ciaddr or p.yiaddr or p.siaddr:
        return Refusal(xid, Status.MALFORMED_QUERY, "ciaddr, yiaddr and siaddr must be zero")
    if OPT_VPN_ID in p.options:
        return Refusal(xid, Status.NOT_ALLOWED, "VPNs are not supported")
    try:
        start = _time_option(p, OPT_QUERY_START_TIME)
        end = _time_option(p, OPT_QUERY_END_TIME)
        relay = dict(p.relay_agent_info or ())
        cid = p.client_id
    except (MalformedPacket, ValueError) as e:
        return Refusal(xid, Status.MALFORMED_QUERY, str(e))
    if start and end and start > end:
        return Refusal(xid, Status.MALFORMED_QUERY, "query-start-time is after query-end-time")
    keys: list[tuple[str, bytes]] = []
    if SUB_RELAY_ID in relay:
        keys.append(("relay-id", relay[SUB_RELAY_ID]))
    if SUB_REMOTE_ID in relay:
        keys.append(("remote-id", relay[SUB_REMOTE_ID]))
    if cid:
        keys.append(("client-id", cid))
    if p.htype and p.hlen and any(p.chaddr):
        keys.append(("mac", bytes([p.htype]) + p.chaddr))
    if len(keys) > 1:
        return Refusal(xid, Status.MALFORMED_QUERY, "more than one query type: " + ", ".join(k for k, _ in keys))
    if keys and not keys[0][1]:
        return Refusal(xid, Status.MALFORMED_QUERY, f"empty {keys[0][0]}")
    by, key = keys[0] if keys else ("all", b"")
    return BulkQuery(xid, by, key, start, end)


def _skeleton(xid: int, mtype: int, server_id: int) -> DhcpPacket:
    p = DhcpPacket(BOOTREPLY, 0, 0, 0, xid, 0, 0, 0, 0, 0, 0, b"", b"", b"", {53: bytes((mtype,))})
    if server_id:
        p.options[54] = _U32.pack(server_id)
    return p


def done(xid: int, server_id: int = 0) -> DhcpPacket:
    """The DHCPLEASEQUERYDONE that ends a query answered in full."""
    return _skeleton(xid, LEASEQUERYDONE, server_id)


def refusal_message(refusal: Refusal, server_id: int = 0) -> DhcpPacket:
    """The DHCPLEASEQUERYDONE, with its status code, that ends a query that gets no bindings."""
    p = _skeleton(refusal.xid, LEASEQUERYDONE, server_id)
    p.options[OPT_STATUS_CODE] = bytes((int(refusal.status),)) + refusal.text.encode()[:254]
    return p


def _active(lease: Lease, now: int) -> bool:
    return lease.state is LeaseState.LEASED and lease.key is not None and not lease.expired_at(now)


def _in_window(lease: Lease, query: BulkQuery) -> bool:
    return (not query.start or lease.cltt >= query.start) and (not query.end or lease.cltt <= query.end)


def _carries(lease: Lease, sub: int, value: bytes) -> bool:
    if not lease.relay_info:
        return False
    try:
        return any(code == sub and v == value for code, v in parse_suboptions(lease.relay_info, 82))
    except MalformedPacket:
        return False


def _base(xid: int, mtype: int, address: int, now: int, server_id: int) -> DhcpPacket:
    p = _skeleton(xid, mtype, server_id)
    p.ciaddr = address
    p.options[OPT_BASE_TIME] = _U32.pack(now & 0xFFFFFFFF)
    return p


def active_message(lease: Lease, xid: int, now: int, server_id: int = 0) -> DhcpPacket:
    """The DHCPLEASEACTIVE about ``lease``: RFC 4388's options, base-time and dhcp-state."""
    p = _base(xid, MessageType.LEASEACTIVE, lease.address, now, server_id)
    if lease.hw:
        p.htype, p.hlen, p.chaddr = lease.hw[0], len(lease.hw) - 1, lease.hw[1:]
    p.options.update(lease_options(lease, now))
    p.options[OPT_DHCP_STATE] = bytes((DhcpState.ACTIVE,))
    if lease.start and lease.start <= now:
        p.options[OPT_START_TIME_OF_STATE] = _U32.pack(now - lease.start)
    return p


def unassigned_message(address: int, lease: Lease | None, xid: int, now: int, server_id: int = 0) -> DhcpPacket:
    """The DHCPLEASEUNASSIGNED about a configured ``address`` no client holds."""
    p = _base(xid, MessageType.LEASEUNASSIGNED, address, now, server_id)
    state = DhcpState.AVAILABLE
    if lease is not None:
        # A lease that ran out but was not swept yet is expired, not active.
        state = DhcpState.EXPIRED if lease.state is LeaseState.LEASED else _STATE_OF[lease.state]
    p.options[OPT_DHCP_STATE] = bytes((state,))
    return p


def _all_addresses(table: LeaseTable) -> Iterator[int]:
    """Every address of every scope's ranges in order, then the other addresses with a record or a
    reservation, each once."""
    ranges = sorted((r.first, r.last) for pool in table.pools.values() for r in pool.ranges)
    last = -1
    for first, end in ranges:
        for address in range(max(first, last + 1), end + 1):
            yield address
        last = max(last, end)
    pools = list(table.pools.values())
    leases = table.leases
    for address in list(leases) + [a for a in table.reserved if a not in leases]:
        lease = leases.get(address)
        own = table.pools.get(lease.scope) if lease is not None else None
        if own is not None and address in own:
            continue
        if not any(address in pool for pool in pools):
            yield address


def answers(table: LeaseTable, query: BulkQuery, now: int, server_id: int = 0) -> Iterator[DhcpPacket | None]:
    """The messages that answer ``query`` at ``now``, ending with DHCPLEASEQUERYDONE.

    Lazy: each binding is read from ``table`` when its message is made, so
    a consumer that pauses between messages sends the binding as it is
    then.  The addresses to visit are fixed when the first message is
    asked for (bindings made later are not sent).  ``None`` comes after
    every :data:`TICK` addresses visited without a message, so a consumer
    that takes a bounded number of items per turn does bounded work even
    when few of a million leases match.
    """
    xid = query.xid
    idle = 0
    if query.by == "all":
        for address in _all_addresses(table):
            lease = table.leases.get(address)
            if lease is not None and _active(lease, now):
                if _in_window(lease, query):
                    idle = 0
                    yield active_message(lease, xid, now, server_id)
                    continue
            elif not query.start and not query.end:
                idle = 0
                yield unassigned_message(address, lease, xid, now, server_id)
                continue
            idle += 1
            if idle >= TICK:
                idle = 0
                yield None
        yield done(xid, server_id)
        return
    if query.by == "client-id":
        addresses = sorted(table.addresses_of(client_key(query.key, b"")))
    elif query.by == "mac":
        # A client that sends a client identifier is indexed by it; the usual
        # one (htype + chaddr, RFC 2132) is found that way too.
        addresses = sorted(set(table.addresses_of(client_key(None, query.key)))
                           | set(table.addresses_of(client_key(query.key, b""))))
    else:
        addresses = list(table.leases)
    sub = SUB_RELAY_ID if query.by == "relay-id" else SUB_REMOTE_ID
    for address in addresses:
        lease = table.leases.get(address)
        if (lease is None or not _active(lease, now) or not _in_window(lease, query)
                or (query.by == "mac" and lease.hw != query.key)
                or (query.by in ("relay-id", "remote-id") and not _carries(lease, sub, query.key))):
            idle += 1
            if idle >= TICK:
                idle = 0
                yield None
            continue
        idle = 0
        yield active_message(lease, xid, now, server_id)
    yield done(xid, server_id)
