"""DHCPLEASEQUERY (RFC 4388): what the server tells a relay agent about a lease.

A relay agent (or an access concentrator that lost its table) asks the
server who holds an address, or which address a client holds.  The query
names one key (RFC 4388 §6.1, checked in this order): ``ciaddr`` is a query
by IP address; otherwise option 61 is a query by client identifier;
otherwise ``htype``/``hlen``/``chaddr`` is a query by MAC address.

The answer is one of (RFC 4388 §6.4, message types of §6.1):

* DHCPLEASEACTIVE (13): a client holds the address.  ``ciaddr`` is the
  leased address and ``chaddr`` the client's; the options say how long the
  lease has left (51, with 58/59), how long ago the client last spoke (91),
  the client's other addresses (92, for a query by client), the option 82
  the relay inserted when the client was bound, the client's identifier
  (61), host name (12) and vendor class (60).
* DHCPLEASEUNASSIGNED (11): the address is one of ours (in a scope's
  ranges, or reserved) and no client holds it.
* DHCPLEASEUNKNOWN (12): the address is not ours, or the client holds
  none of our addresses.

The answer goes to ``giaddr`` on the server port; a query without one
cannot be answered and is dropped.  Only queries whose ``giaddr`` is in
``[server] leasequery-allow`` are answered (the answers say where clients
are); the others are dropped and counted as ``leasequery-not-allowed``.

:func:`query_of`, :func:`answer` and :func:`lease_options` are also what
bulk leasequery (RFC 6926) builds its answers with.

Pure module: time is the ``now`` argument.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from cnrd.dhcp.model import BROADCAST, Reply, RxInfo
from cnrd.dhcp.packet import DhcpPacket, MessageType
from cnrd.dhcp.state import ServerState
from cnrd.leases.model import Lease, LeaseState, client_key
from cnrd.leases.table import LeaseTable
from cnrd.text import int_to_ip, netmask

__all__ = [
    "BY_CLIENT_ID",
    "BY_IP",
    "BY_MAC",
    "Answer",
    "Query",
    "allowed",
    "answer",
    "handle_leasequery",
    "lease_options",
    "query_of",
    "reply_packet",
]

BY_IP = "ip"
BY_CLIENT_ID = "client-id"
BY_MAC = "mac"

OPT_CLIENT_LAST_TRANSACTION_TIME = 91  # RFC 4388 §6.1
OPT_ASSOCIATED_IP = 92  # RFC 4388 §6.1

_U32 = struct.Struct("!I")

#: The message type name each answer is counted under in ``counters.sent``.
_SENT_NAMES = {
    MessageType.LEASEACTIVE: "LEASEACTIVE",
    MessageType.LEASEUNASSIGNED: "LEASEUNASSIGNED",
    MessageType.LEASEUNKNOWN: "LEASEUNKNOWN",
}


@dataclass(frozen=True, slots=True)
class Query:
    """What a DHCPLEASEQUERY asks about: one key, ``by`` saying which.

    ``address`` is set for a query by IP address, ``client_id`` (option 61,
    type byte included) for a query by client identifier, ``hw`` (the htype
    byte followed by chaddr) for a query by MAC address.
    """

    by: str
    address: int = 0
    client_id: bytes | None = None
    hw: bytes = b""


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a :class:`Query`: its message type and the lease it is about.

    ``lease`` is set for DHCPLEASEACTIVE; ``associated`` holds the client's
    other active addresses (RFC 4388's associated-ip), only for a query by
    client.
    """

    mtype: MessageType
    lease: Lease | None = None
    associated: tuple[int, ...] = field(default_factory=tuple)


def query_of(p: DhcpPacket) -> Query | None:
    """The key ``p`` asks about (RFC 4388 §6.1's order), or None when it names none."""
    if p.ciaddr:
        return Query(BY_IP, address=p.ciaddr)
    cid = p.client_id
    if cid:
        return Query(BY_CLIENT_ID, client_id=cid)
    if p.htype and p.hlen and any(p.chaddr):
        return Query(BY_MAC, hw=bytes([p.htype]) + p.chaddr)
    return None


def _active(lease: Lease, now: int) -> bool:
    """A client holds ``lease``'s address at ``now``."""
    return lease.state is LeaseState.LEASED and lease.key is not None and not lease.expired_at(now)


def _clients_leases(table: LeaseTable, query: Query) -> list[Lease]:
    """The records that carry the queried client's identity (any state)."""
    if query.by == BY_CLIENT_ID:
        return table.of_client(client_key(query.client_id, b""))
    # A client that sends a client identifier is indexed by it, not by its
    # MAC; most clients use the RFC 2132 form (htype + chaddr), which is the
    # key below.  A client whose identifier is something else (an RFC 4361
    # DUID) is found by a query by client identifier only.
    found = table.of_client(client_key(None, query.hw)) + table.of_client(client_key(query.hw, b""))
    return [lease for lease in found if lease.hw == query.hw]


def answer(table: LeaseTable, query: Query, now: int) -> Answer:
    """What the lease table says about ``query`` at ``now`` (RFC 4388 §6.4).

    An address is ours when a scope's ranges hold it or it is reserved.
    For a query by client, the answer is about the client's most recently
    used active lease (latest client-last-transaction-time) and lists its
    other active addresses.
    """
    if query.by == BY_IP:
        lease = table.get(query.address)
        if lease is not None and _active(lease, now):
            return Answer(MessageType.LEASEACTIVE, lease)
        if table.pool_of(query.address) is not None or query.address in table.reserved:
            return Answer(MessageType.LEASEUNASSIGNED)
        return Answer(MessageType.LEASEUNKNOWN)
    active = [lease for lease in _clients_leases(table, query) if _active(lease, now)]
    if not active:
        return Answer(MessageType.LEASEUNKNOWN)
    newest = max(active, key=lambda lease: (lease.cltt, lease.address))
    others = tuple(sorted(lease.address for lease in active if lease is not newest))
    return Answer(MessageType.LEASEACTIVE, newest, others)


def lease_options(lease: Lease, now: int, associated: Iterable[int] = ()) -> dict[int, bytes]:
    """The options a DHCPLEASEACTIVE carries about ``lease`` at ``now`` (RFC 4388 §6.4.1)."""
    opts: dict[int, bytes] = {}
    if lease.expiration == Lease.INFINITE:
        opts[51] = _U32.pack(Lease.INFINITE)
    else:
        opts[51] = _U32.pack(max(lease.expiration - now, 0))
        # T1 and T2 as the client was told them (half and 7/8 of its lease),
        # counted from now; left out once passed.
        if lease.start and lease.expiration > lease.start:
            duration = lease.expiration - lease.start
            for code, at in ((58, lease.start + duration // 2), (59, lease.start + duration * 7 // 8)):
                if at > now:
                    opts[code] = _U32.pack(at - now)
    if lease.cltt:
        opts[OPT_CLIENT_LAST_TRANSACTION_TIME] = _U32.pack(max(now - lease.cltt, 0))
    addresses = b"".join(_U32.pack(a) for a in associated)
    if addresses:
        opts[OPT_ASSOCIATED_IP] = addresses
    if lease.client_id:
        opts[61] = lease.client_id
    if lease.host_name:
        opts[12] = lease.host_name.encode()
    if lease.vendor_class:
        opts[60] = lease.vendor_class
    if lease.relay_info:
        opts[82] = lease.relay_info
    return opts


def reply_packet(p: DhcpPacket, query: Query, ans: Answer, now: int, server_id: int) -> DhcpPacket:
    """The reply to the DHCPLEASEQUERY ``p`` that carries ``ans``.

    DHCPLEASEACTIVE describes the lease; the other two echo only the key
    asked about, as a requestor matches answers on it (and on xid).
    """
    r = p.reply_to(ans.mtype)
    if server_id:
        r.options[54] = _U32.pack(server_id)
    lease = ans.lease
    if lease is not None:
        r.ciaddr = lease.address
        if lease.hw:
            r.htype, r.hlen, r.chaddr = lease.hw[0], len(lease.hw) - 1, lease.hw[1:]
        r.options.update(lease_options(lease, now, ans.associated))
        return r
    if query.by == BY_IP:
        r.ciaddr = query.address
    elif query.by == BY_CLIENT_ID and query.client_id:
        r.options[61] = query.client_id
    return r


def allowed(giaddr: int, allow: Iterable[tuple[int, int]]) -> bool:
    """``giaddr`` is in one of the (network, prefix length) subnets of ``allow``."""
    for network, prefix in allow:
        if giaddr & netmask(prefix) == network:
            return True
    return False


def handle_leasequery(state: ServerState, p: DhcpPacket, rx: RxInfo, now: int) -> Reply | None:
    """Answer one DHCPLEASEQUERY, or drop it (counted) when it may not be answered."""
    if not p.giaddr:
        state.drop("leasequery-without-giaddr")
        return None
    server = state.config.server
    if not allowed(p.giaddr, server.leasequery_allow):
        state.drop("leasequery-not-allowed", {"giaddr": int_to_ip(p.giaddr)})
        return None
    query = query_of(p)
    if query is None:
        state.drop("leasequery-without-key")
        return None
    state.counters.leasequery[query.by] += 1
    ans = answer(state.table, query, now)
    sent = _SENT_NAMES[ans.mtype]
    state.counters.sent[sent] += 1
    state.log_event("dhcp-leasequery", {
        "giaddr": int_to_ip(p.giaddr), "by": query.by, "answer": sent,
        "address": int_to_ip(ans.lease.address if ans.lease else query.address),
    })
    server_id = state.server_identifier or (rx.local_ip if rx.local_ip != BROADCAST else 0)
    r = reply_packet(p, query, ans, now, server_id)
    # RFC 4388 §6.3: to the requestor's giaddr, on the server port.
    return Reply(r, p.giaddr, server.server_port, None, server_id or None, False, False, 1500 - 28)
