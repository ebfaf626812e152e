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
from cnrd.dhcp.model import BROADCAST, Reply, ReplyTemplate, ScopeRuntime
from cnrd.dhcp.packet import BOOTREPLY, BROADCAST_FLAG, DhcpPacket, MessageType, encode_options
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
# Reply templates kept per scope; parameter request lists are the client's
# to choose, so the set is bounded and starts over when full.
_TEMPLATES_MAX = 256


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

    The options every client of a scope gets alike (server identifier,
    lease times, mask, the policy's options in parameter-request-list
    order) come from the scope's :class:`ReplyTemplate` for that message
    type, policy and list; only the client's own options are added per reply.
    """
    p = req.p
    sid = server_id(state, req) if mtype is not None else 0
    template: ReplyTemplate | None = None
    prefix: tuple[int, bytes] | None = None
    if mtype != MessageType.NAK and scope is not None:
        policy = policy_for(state, req, scope)
        prl = p.parameter_request_list
        held = state.config.reservations.get(yiaddr) if yiaddr else None
        if held is not None and held.options and _holds(held, req):
            # The reservation's options are this address's alone: not templated.
            template = _template(mtype, scope, policy, sid, lease_time, prl, held)
            opts = template.options
        else:
            key = (mtype, sid, lease_time, policy.name, prl)
            templates = scope.reply_templates
            template = templates.get(key)
            if template is None:
                if len(templates) >= _TEMPLATES_MAX:
                    templates.clear()  # option 55 is the client's to vary: bounded
                template = templates[key] = _template(mtype, scope, policy, sid, lease_time, prl, None)
            opts = template.options.copy()
            prefix = (len(opts), template.wire)
    else:
        opts = _layout(mtype, sid, lease_time)
    r = DhcpPacket(BOOTREPLY, p.htype, p.hlen, 0, p.xid, 0, p.flags, 0, yiaddr, 0, p.giaddr, p.chaddr, b"", b"",
                   opts, p.has_cookie or mtype is not None)
    if mtype == MessageType.ACK and lease_time is None:
        r.ciaddr = p.ciaddr  # INFORM: RFC 2131 table 3
    if template is not None:
        if template.siaddr is not None:
            r.siaddr = template.siaddr
        if template.file is not None:
            r.file = template.file
        if template.sname is not None:
            r.sname = template.sname
        popts = p.options
        if _PXE_CLIENT_ID in popts and _is_pxe(p):
            # RFC 4578 §2.2: PXE firmware matches the reply on its machine identifier.
            if _PXE_CLIENT_ID in opts:
                prefix = None  # a template option changes: encoded afresh
            opts[_PXE_CLIENT_ID] = popts[_PXE_CLIENT_ID]
        if 12 not in opts and (template.prl is None or 12 in template.prl):
            # As the client's list says, for a BOOTREPLY too (which sends every configured option).
            host_name = req.host_name
            if host_name:
                opts[12] = host_name.encode()
    if p.giaddr and 82 in p.options:
        opts[82] = p.options[82]  # RFC 3046 §2.2: echo relay agent information
    if prefix is not None and 61 in opts:
        prefix = None  # the policy sets option 61 and the echo below may change it
    _echo_client_id(state, p, opts)
    return route(state, req, r, mtype, durable, prefix)


def _layout(mtype: int | None, sid: int, lease_time: int | None) -> dict[int, bytes]:
    """The options the server itself puts first: 53, the server identifier and the lease times."""
    opts: dict[int, bytes] = {}
    if mtype is not None:
        opts[53] = bytes((mtype,))
        opts[54] = _U32.pack(sid)
        if lease_time is not None:
            opts[51] = _U32.pack(lease_time)
            if lease_time != Lease.INFINITE:
                opts[58] = _U32.pack(lease_time // 2)
                opts[59] = _U32.pack(lease_time * 7 // 8)
    return opts


def _template(mtype: int | None, scope: ScopeRuntime, policy: PolicyConfig, sid: int, lease_time: int | None,
              prl: bytes | None, held: ReservationConfig | None) -> ReplyTemplate:
    """The client-independent part of a reply from ``scope`` under ``policy`` (``held``: a reservation's layer)."""
    opts = _layout(mtype, sid, lease_time)
    opts[1] = _U32.pack(scope.config.netmask)
    configured = _options(scope, policy, held)
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
    siaddr, file, sname = _boot_fields(policy, scope.policy)
    return ReplyTemplate(opts, encode_options(opts), prl, siaddr, file, sname)


def _options(scope: ScopeRuntime, policy: PolicyConfig, held: ReservationConfig | None) -> dict[int, bytes]:
    """The options configured for this client: reservation over scope over the chosen policy over the scope's."""
    layers = []
    if policy is not scope.policy:
        layers.append(policy.options)
    if scope.config.options:
        layers.append(scope.config.options)
    if held is not None:
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


def _boot_fields(policy: PolicyConfig, scope_policy: PolicyConfig) -> tuple[int | None, bytes | None, bytes | None]:
    """siaddr, file and sname (RFC 2131 §2, Table 3): each from the chosen policy, else the scope's."""
    siaddr = policy.packet_siaddr if policy.packet_siaddr is not None else scope_policy.packet_siaddr
    file = policy.packet_file_name if policy.packet_file_name is not None else scope_policy.packet_file_name
    sname = policy.packet_server_name if policy.packet_server_name is not None else scope_policy.packet_server_name
    return (siaddr, file.encode("ascii") if file is not None else None,
            sname.encode("ascii") if sname is not None else None)


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


def route(state: ServerState, req: Request, r: DhcpPacket, mtype: int | None, durable: bool,
          prefix: tuple[int, bytes] | None = None) -> Reply:
    """Where a reply goes (RFC 2131 §4.1); ``prefix``: its first options as encoded (:class:`Reply`)."""
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
        return Reply(r, p.giaddr, sport, None, src, False, durable, max_size, prefix)
    if mtype == MessageType.NAK:
        return Reply(r, BROADCAST, cport, req.rx.ifindex, src, False, durable, max_size, prefix)
    if p.ciaddr:
        return Reply(r, p.ciaddr, cport, None, src, False, durable, max_size, prefix)
    if p.broadcast or not r.yiaddr:
        return Reply(r, BROADCAST, cport, req.rx.ifindex, src, False, durable, max_size, prefix)
    if p.htype != 1 or p.hlen != 6:
        # Only Ethernet hardware addresses can be unicast to without ARP here.
        return Reply(r, BROADCAST, cport, req.rx.ifindex, src, False, durable, max_size, prefix)
    return Reply(r, r.yiaddr, cport, req.rx.ifindex, src, True, durable, max_size, prefix)
