"""Building a reply's options and deciding where it goes (RFC 2131 §4.1, §4.3).

A reply's options are layered, the later over the earlier for each option
code: the scope's policy, the client's or its class's policy (when
:func:`~cnrd.dhcp.selection.policy_for` picks another), the scope's own
``option.*`` keys, then those of the reservation whose address the reply
gives.  The boot fields (``packet-siaddr``, ``packet-file-name``,
``packet-server-name``) come from the client's or class's policy, else the
scope's policy.

Pure module.
"""

from __future__ import annotations

import struct

from cnrd.config import PolicyConfig, ReservationConfig
from cnrd.dhcp.model import BROADCAST, Reply, ScopeRuntime
from cnrd.dhcp.packet import BROADCAST_FLAG, DhcpPacket, MessageType
from cnrd.dhcp.selection import own_address, policy_for, server_id
from cnrd.dhcp.state import Request, ServerState
from cnrd.leases.model import Lease

__all__ = ["build_reply", "nak", "route"]

_U32 = struct.Struct("!I")
_VENDOR_CLASS = 60
_PXE_CLIENT_ID = 97  # client machine identifier (RFC 4578 §2.2)

# Options the server itself sets in every DHCP reply, never from a policy.
_SERVER_SET = frozenset({1, 51, 52, 53, 54, 58, 59, 82})

# Options the operator set but the client did not ask for that are still
# worth sending when small and basic: routers, DNS servers, domain name.
_ALWAYS_SENT = (3, 6, 15)

# RFC 2131 §2: every DHCP implementation accepts a 576-byte message; a
# larger one only up to the client's maximum message size (option 57) and
# an Ethernet MTU.
_MIN_MESSAGE = 576
_MAX_MESSAGE = 1500
_IP_UDP_HEADERS = 28


def build_reply(
    state: ServerState,
    req: Request,
    mtype: int | None,
    scope: ScopeRuntime | None,
    yiaddr: int,
    lease_time: int | None,
    *,
    durable: bool,
) -> Reply:
    """The OFFER, ACK or BOOTREPLY (``mtype`` None) to ``req``, with its options, routed.

    ``lease_time`` None is an INFORM's ACK (no lease options, ciaddr
    echoed) or a BOOTREPLY; ``durable`` says the reply waits for the lease
    table's changes to be committed.
    """
    p = req.p
    r = p.reply_to(mtype)
    r.yiaddr = yiaddr
    opts = r.options
    if mtype is not None:
        opts[54] = _U32.pack(server_id(state, req))
    if lease_time is not None and mtype is not None:
        opts[51] = _U32.pack(lease_time)
        if lease_time != Lease.INFINITE:
            opts[58] = _U32.pack(lease_time // 2)
            opts[59] = _U32.pack(lease_time * 7 // 8)
    if mtype == MessageType.ACK and lease_time is None:
        r.ciaddr = p.ciaddr  # INFORM: RFC 2131 table 3
    if mtype != MessageType.NAK and scope is not None:
        opts[1] = _U32.pack(scope.config.netmask)
        policy = policy_for(state, req, scope)
        configured = _options(state, req, scope, policy, yiaddr)
        prl = p.parameter_request_list
        if prl is None or mtype is None:
            for code, value in configured.items():
                if code not in _SERVER_SET:
                    opts[code] = value
        else:
            for code in prl:
                if code not in _SERVER_SET and code in configured:
                    opts[code] = configured[code]
            for code in _ALWAYS_SENT:
                if code in configured and code not in opts:
                    opts[code] = configured[code]
        _boot_fields(r, policy, scope.policy)
        if _PXE_CLIENT_ID in p.options and _is_pxe(p):
            # RFC 4578 §2.2: PXE firmware matches the reply on its machine identifier.
            opts[_PXE_CLIENT_ID] = p.options[_PXE_CLIENT_ID]
        if req.host_name and 12 not in opts and (prl is None or 12 in prl):
            opts[12] = req.host_name.encode()
    if p.giaddr and 82 in p.options:
        opts[82] = p.options[82]  # RFC 3046 §2.2: echo relay agent information
    _echo_client_id(state, p, opts)
    return route(state, req, r, mtype, durable)


def _options(state: ServerState, req: Request, scope: ScopeRuntime, policy: PolicyConfig,
             yiaddr: int) -> dict[int, bytes]:
    """The options configured for this client: reservation over scope over the chosen policy over the scope's."""
    layers = []
    if policy is not scope.policy:
        layers.append(policy.options)
    if scope.config.options:
        layers.append(scope.config.options)
    held = state.config.reservations.get(yiaddr) if yiaddr else None
    if held is not None and held.options and _holds(held, req):
        layers.append(held.options)
    if not layers:
        return scope.policy.options
    merged = dict(scope.policy.options)
    for layer in layers:
        merged.update(layer)
    return merged


def _holds(reservation: ReservationConfig, req: Request) -> bool:
    """True when ``reservation`` is this client's (its hardware address or client-id)."""
    if reservation.client_id is not None:
        return reservation.client_id == req.cid
    return reservation.hardware_address == req.p.chaddr


def _boot_fields(r: DhcpPacket, policy: PolicyConfig, scope_policy: PolicyConfig) -> None:
    """siaddr, file and sname (RFC 2131 §2, Table 3): each from the chosen policy, else the scope's."""
    siaddr = policy.packet_siaddr if policy.packet_siaddr is not None else scope_policy.packet_siaddr
    file = policy.packet_file_name if policy.packet_file_name is not None else scope_policy.packet_file_name
    sname = policy.packet_server_name if policy.packet_server_name is not None else scope_policy.packet_server_name
    if siaddr is not None:
        r.siaddr = siaddr
    if file is not None:
        r.file = file.encode("ascii")
    if sname is not None:
        r.sname = sname.encode("ascii")


def _is_pxe(p: DhcpPacket) -> bool:
    """True for PXE firmware: a vendor class identifier beginning "PXEClient" (RFC 4578 §2)."""
    vendor = p.options.get(_VENDOR_CLASS)
    return vendor is not None and vendor.startswith(b"PXEClient")


def _echo_client_id(state: ServerState, p: DhcpPacket, opts: dict[int, bytes]) -> None:
    """RFC 6842 §3: OFFER, ACK and NAK carry the client's identifier exactly as it sent it."""
    if state.config.server.echo_client_id and 61 in p.options:
        opts[61] = p.options[61]


def nak(state: ServerState, req: Request, why: str) -> Reply:
    """A DHCPNAK saying ``why`` (option 56), counted and logged."""
    state.counters.sent["NAK"] += 1
    state.log_event("dhcp-nak", {"reason": why, "client": req.hw.hex()})
    r = req.p.reply_to(MessageType.NAK)
    r.options[54] = _U32.pack(server_id(state, req))
    r.options[56] = why.encode()
    if req.p.giaddr and 82 in req.p.options:
        r.options[82] = req.p.options[82]
    _echo_client_id(state, req.p, r.options)
    return route(state, req, r, MessageType.NAK, False)


def route(state: ServerState, req: Request, r: DhcpPacket, mtype: int | None, durable: bool) -> Reply:
    """Where a reply goes (RFC 2131 §4.1)."""
    p = req.p
    max_size = _MIN_MESSAGE
    mms = p.max_message_size
    if mms is not None and mms > _MIN_MESSAGE:
        max_size = min(mms, _MAX_MESSAGE)
    max_size -= _IP_UDP_HEADERS
    sport = state.config.server.server_port
    cport = state.config.server.client_port
    # The server identifier may be a relay's override (RFC 5107): the
    # datagram still leaves from our own address.
    src = own_address(state, req) or None
    if p.giaddr:
        if mtype == MessageType.NAK:
            r.flags |= BROADCAST_FLAG
        return Reply(r, p.giaddr, sport, None, src, False, durable, max_size)
    if mtype == MessageType.NAK:
        return Reply(r, BROADCAST, cport, req.rx.ifindex, src, False, durable, max_size)
    if p.ciaddr:
        return Reply(r, p.ciaddr, cport, None, src, False, durable, max_size)
    if p.broadcast or not r.yiaddr:
        return Reply(r, BROADCAST, cport, req.rx.ifindex, src, False, durable, max_size)
    if p.htype != 1 or p.hlen != 6:
        # Only Ethernet hardware addresses can be unicast to without ARP here.
        return Reply(r, BROADCAST, cport, req.rx.ifindex, src, False, durable, max_size)
    return Reply(r, r.yiaddr, cport, req.rx.ifindex, src, True, durable, max_size)
