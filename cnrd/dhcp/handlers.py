"""What the server does with each message type (RFC 2131 §4.3, RFC 1534 for BOOTP clients).

Each handler takes the server's state and one :class:`~cnrd.dhcp.state.Request`
whose client has already been looked up, changes the lease table, and
returns the reply or None (silence, with the drop counted).

Pure module: time is the request's ``now``.
"""

from __future__ import annotations

from cnrd.dhcp.model import Reply, ScopeRuntime
from cnrd.dhcp.packet import MessageType
from cnrd.dhcp.replies import build_reply, nak
from cnrd.dhcp.selection import (
    admit,
    broadcast,
    desired_time,
    granted_time,
    link_address,
    policy_for,
    reservation,
    scope_of_address,
    scopes_containing,
    scopes_for,
    server_id,
)
from cnrd.dhcp.state import Request, ServerState
from cnrd.leases.model import FREE_STATES, Lease, LeaseFlag, LeaseState
from cnrd.text import int_to_ip

__all__ = ["discover", "request", "release", "decline", "inform", "bootp", "pick_address", "same_client"]

# How long a declined address stays unavailable when its scope is gone.
_DECLINE_HOLD_WITHOUT_SCOPE = 86400
# The states a REQUEST may take an address from: our offer, its binding, or free.
_REQUESTABLE_STATES = frozenset({LeaseState.OFFERED, LeaseState.LEASED, *FREE_STATES})


# -- DISCOVER ------------------------------------------------------------------


def discover(state: ServerState, req: Request) -> Reply | None:
    """DHCPDISCOVER: offer an address (RFC 2131 §4.3.1), held for the policy's offer timeout."""
    scopes = scopes_for(state, req)
    if not scopes:
        state.drop("no-scope")
        return None
    owners: dict[str, str | None] = {}
    admitted = []
    for scope in scopes:
        ok, owner = admit(state, req, scope, "new")
        if ok:
            admitted.append(scope)
            owners[scope.name] = owner
    if not admitted:
        return None
    picked = pick_address(state, req, admitted, owners)
    if picked is None:
        state.drop("no-address-available")
        return None
    address, scope = picked
    lease = state.table.get(address)
    lease_time = granted_time(state, req, scope, lease)
    hold = min(policy_for(state, req, scope).offer_timeout, max(lease_time, 1))
    new_state = LeaseState.OFFERED
    expiration = req.now + hold
    flags = lease.flags & ~LeaseFlag.OFFERED_FROM_BACKUP if lease is not None else LeaseFlag.NONE
    if lease is not None and lease.state is LeaseState.BACKUP:
        flags |= LeaseFlag.OFFERED_FROM_BACKUP
    if lease is not None and lease.state is LeaseState.LEASED and lease.key == req.key:
        # A bound client re-discovering keeps its binding; only the reply is an offer.
        new_state = LeaseState.LEASED
        expiration = lease.expiration
    state.table.bind(
        address, False, None, 0, new_state, scope.name, req.hw, req.cid, expiration, flags,
        req.host_name or (lease.host_name if lease else ""),
    )
    state.counters.sent["OFFER"] += 1
    return build_reply(state, req, MessageType.OFFER, scope, address, lease_time, durable=False)


def pick_address(
    state: ServerState, req: Request, scopes: list[ScopeRuntime], owners: dict[str, str | None] | None = None
) -> tuple[int, ScopeRuntime] | None:
    """The address to offer from ``scopes`` (RFC 2131 §4.3.1's order), and its scope.

    ``owners`` names, per scope, whose free addresses failover lets us use.
    """
    owners = owners or {}
    # 1. a reservation
    res = reservation(state, req, scopes)
    if res is not None:
        return res
    # 2. the client's current or previous binding on this network
    table = state.table
    best: tuple[int, ScopeRuntime] | None = None
    for lease in table.of_client(req.key):
        scope = state.scopes.get(lease.scope)
        if scope is None or scope not in scopes or lease.address in table.reserved:
            continue
        if lease.address not in scope.pool:
            continue
        if lease.state in (LeaseState.LEASED, LeaseState.OFFERED):
            return lease.address, scope
        if lease.state in FREE_STATES and best is None \
                and table.is_available(lease.address, req.key, req.hw_key, owners.get(scope.name)):
            # Under failover a free record may be the partner's to give
            # (draft §5.4): the client's history does not make it ours.
            best = (lease.address, scope)
    if best is not None:
        return best
    # 3. the requested address, when free
    want = req.p.requested_address
    if want:
        for scope in scopes:
            if want in scope.pool and table.is_available(want, req.key, req.hw_key, owners.get(scope.name)):
                return want, scope
    # 4. a free address
    for scope in scopes:
        address = table.allocate(scope.name, req.key, owner=owners.get(scope.name))
        if address is not None:
            return address, scope
    return None


# -- REQUEST -------------------------------------------------------------------


def request(state: ServerState, req: Request) -> Reply | None:
    """DHCPREQUEST in its three forms (RFC 2131 §4.3.2): SELECTING, INIT-REBOOT, RENEWING/REBINDING."""
    p = req.p
    sid = p.server_identifier
    want = p.requested_address
    if sid is not None:
        return _request_selecting(state, req, sid, want)
    if want is not None and not p.ciaddr:
        return _request_init_reboot(state, req, want)
    if p.ciaddr:
        return _request_renew(state, req)
    state.drop("request-without-address")
    return None


def _request_selecting(state: ServerState, req: Request, sid: int, want: int | None) -> Reply | None:
    """A REQUEST naming a server: ours commits the binding or NAKs it (RFC 2131 §3.1 step 4, §4.3.2)."""
    table = state.table
    if sid not in state.our_ips and sid != server_id(state, req):
        # The client chose another server: our offer is free again (RFC 2131 §4.3.2).
        for offered in table.of_client(req.key):
            if offered.state is LeaseState.OFFERED:
                table.withdraw_offer(offered.address)
        state.drop("request-for-other-server")
        return None
    address = want or req.p.ciaddr
    if not address:
        state.drop("request-without-address")
        return None
    lease = table.get(address)
    scope = _scope_to_give(state, req, address, lease)
    if scope is None:
        if scopes_containing(state, address) and not scope_of_address(address, scopes_for(state, req)):
            return nak(state, req, "requested address is not on this network")
        # Neither ours to give nor to refuse: another server on the link may
        # hand out the rest of the subnet.
        state.drop("request-outside-pools")
        return None
    # The client chose us: answered whatever its hash (load balancing).
    ok, owner = admit(state, req, scope, "renew")
    if not ok:
        return None
    mine = lease is not None and lease.key == req.key
    if not mine and _bound_elsewhere(state, req, address, scope):
        # RFC 2131 §4.3.2: the requested address is the chosen offer's
        # yiaddr, and our offer to a client with a binding is that binding
        # (§4.3.1), so a request for another address is not one we made.
        return nak(state, req, "address not offered to this client")
    if lease is not None and lease.state not in _REQUESTABLE_STATES:
        return nak(state, req, "address not available")
    # With no offer on record (lost to a restart, or made by an earlier
    # process) a free address of the client's pool is still ours to give;
    # under failover only a free address of our own may be bound.
    if not table.is_available(address, req.key, req.hw_key, owner):
        return nak(state, req, "address not offered to this client" if not mine else "address no longer available")
    return _ack(state, req, scope, address, "ack")


def _scope_to_give(state: ServerState, req: Request, address: int, lease: Lease | None) -> ScopeRuntime | None:
    """The scope ``address`` would be bound in for this client: its record's, else one of the client's network
    whose pool (or reservations) holds it; None when it is in no pool of ours."""
    if lease is not None and lease.key == req.key:
        scope = state.scopes.get(lease.scope)
        if scope is not None:
            return scope
    for scope in scopes_for(state, req):
        if address in scope.pool or (address in state.table.reserved and scope.config.contains(address)):
            return scope
    return None


def _bound_elsewhere(state: ServerState, req: Request, address: int, scope: ScopeRuntime) -> bool:
    """True when the client holds or was offered another address of ``scope``'s network here."""
    for lease in state.table.of_client(req.key):
        if lease.address != address and lease.state in (LeaseState.OFFERED, LeaseState.LEASED) \
                and scope.config.contains(lease.address):
            return True
    return False


def _request_init_reboot(state: ServerState, req: Request, want: int) -> Reply | None:
    """INIT-REBOOT: confirm the client's notion of its address (RFC 2131 §4.3.2)."""
    scopes = scopes_for(state, req)
    scope = scope_of_address(want, scopes)
    if scope is None:
        if link_address(req) is not None or state.interfaces.get(req.rx.ifindex) is not None:
            # RFC 2131 §4.3.2: the client is on the wrong network.
            return nak(state, req, "requested address is not on this network")
        state.drop("no-scope")
        return None
    table = state.table
    lease = table.get(want)
    if lease is not None and lease.key == req.key:
        if not table.is_available(want, req.key, req.hw_key) \
                or lease.address not in scope.pool and want not in table.reserved:
            return _nak_if_admitted(state, req, scope, "address no longer available")
        if not admit(state, req, scope, "rebind")[0]:
            return None
        return _ack(state, req, scope, want, "ack")
    reserved = reservation(state, req, scopes)
    if reserved is not None and reserved[0] == want and table.is_available(want, req.key, req.hw_key):
        if not admit(state, req, scope, "rebind")[0]:
            return None
        return _ack(state, req, scope, want, "ack")
    if table.of_client(req.key) or reserved is not None:
        # We know this client, at another address: its notion is wrong.
        return _nak_if_admitted(state, req, scope, "client's address here is another")
    if state.config.server.authoritative:
        return _nak_if_admitted(state, req, scope, "no record of this client")
    # RFC 2131 §4.3.2: no record of this client, so stay silent (another
    # server on the wire may know it).
    state.drop("init-reboot-unknown-client")
    return None


def _nak_if_admitted(state: ServerState, req: Request, scope: ScopeRuntime, why: str) -> Reply | None:
    """A NAK, when failover lets this server answer the client at all (else silence, counted)."""
    if not admit(state, req, scope, "rebind")[0]:
        return None
    return nak(state, req, why)


def _request_renew(state: ServerState, req: Request) -> Reply | None:
    address = req.p.ciaddr
    lease = state.table.get(address)
    scope = state.scopes.get(lease.scope) if lease is not None else None
    if lease is None or scope is None or lease.key is None:
        state.drop("renew-unknown-lease")
        return None
    if lease.key != req.key:
        if lease.state in FREE_STATES:
            state.drop("renew-unknown-lease")
            return None
        return nak(state, req, "address belongs to another client")
    if not state.table.is_available(address, req.key, req.hw_key):
        return nak(state, req, "address no longer available")
    # RENEWING is unicast to the server that holds the lease; REBINDING is
    # broadcast (or relayed), and load balancing answers it by hash.
    if not admit(state, req, scope, "rebind" if broadcast(req) else "renew")[0]:
        return None
    return _ack(state, req, scope, address, "renew" if lease.state is LeaseState.LEASED else "ack")


def _ack(state: ServerState, req: Request, scope: ScopeRuntime, address: int, what: str) -> Reply:
    """Bind ``address`` to the client (a durable change, lease event ``what``) and ACK it."""
    table = state.table
    lease = table.get(address)
    lease_time = granted_time(state, req, scope, lease)
    gate = state.gates.get(scope.name)
    pet = 0
    if gate is not None:
        pet = gate.potential_expiration(desired_time(state, req, scope), lease_time, req.now)
    elif lease is not None:
        pet = lease.potential_expiration
    flags = LeaseFlag.RESERVED if address in table.reserved else LeaseFlag.NONE
    start = lease.start if (lease is not None and lease.state is LeaseState.LEASED and lease.key == req.key) else req.now
    table.bind(
        address, True, what, req.now, LeaseState.LEASED, scope.name, req.hw, req.cid, req.now + lease_time, flags,
        req.host_name or (lease.host_name if lease else ""),
        start=start,
        cltt=req.now,
        potential_expiration=pet,
        # A renewal comes straight from the client, past the relay (RFC 2131
        # §4.4.5), so without option 82: the relay's last one stays the
        # client's, for lease queries and the failover partner.
        relay_info=req.p.options.get(82, b"") if req.p.giaddr
        else (lease.relay_info if lease is not None and lease.key == req.key else b""),
        vendor_class=req.p.vendor_class or (lease.vendor_class if lease is not None and lease.key == req.key
                                            else b""),
    )
    state.counters.sent["ACK"] += 1
    return build_reply(state, req, MessageType.ACK, scope, address, lease_time, durable=True)


# -- RELEASE, DECLINE, INFORM ----------------------------------------------------


def same_client(lease: Lease, req: Request) -> bool:
    """True when ``req`` comes from the lease's client: its client-id when the lease has one, else chaddr.

    RFC 2131 §4.2: a client-id, when the client sent one, is the client's
    identity; the hardware address only stands in for a client without one.
    """
    if lease.client_id:
        return req.cid == lease.client_id
    return lease.hw == req.hw


def _identity_mismatch(state: ServerState, req: Request, lease: Lease, what: str) -> None:
    """Leave a RELEASE or DECLINE from another client unapplied: counted and logged with both identities."""
    state.drop(f"{what}-identity-mismatch", {
        "address": int_to_ip(lease.address),
        "client": req.hw.hex(),
        "client-id": req.cid.hex() if req.cid else "",
        "lease-client": lease.hw.hex(),
        "lease-client-id": lease.client_id.hex() if lease.client_id else "",
    })


def release(state: ServerState, req: Request) -> None:
    """DHCPRELEASE (RFC 2131 §4.3.4): the client's lease becomes RELEASED; never answered.

    Only the lease's own client may release it (:func:`same_client`): a
    release naming someone else's address leaves it with its client.
    """
    address = req.p.ciaddr
    lease = state.table.get(address)
    if lease is None or lease.key is None or lease.state is not LeaseState.LEASED:
        state.drop("release-unknown-lease")
        return
    if not same_client(lease, req):
        _identity_mismatch(state, req, lease, "release")
        return
    state.table.update(
        address, durable=True, event="release", now=req.now,
        state=LeaseState.RELEASED, expiration=req.now, cltt=req.now,
    )


def decline(state: ServerState, req: Request) -> None:
    """DHCPDECLINE (RFC 2131 §4.3.3): the address is in use elsewhere, hold it UNAVAILABLE; never answered.

    Only the client the address was offered or leased to may decline it
    (:func:`same_client`): anyone else could take addresses out of use.
    """
    address = req.p.requested_address
    lease = state.table.get(address) if address else None
    if address is None or lease is None or lease.key is None \
            or lease.state not in (LeaseState.LEASED, LeaseState.OFFERED):
        state.drop("decline-unknown-lease")
        return
    if not same_client(lease, req):
        _identity_mismatch(state, req, lease, "decline")
        return
    scope = state.scopes.get(lease.scope)
    hold = scope.policy.unavailable_timeout if scope is not None else _DECLINE_HOLD_WITHOUT_SCOPE
    state.table.update(
        address, durable=True, event="decline", now=req.now,
        state=LeaseState.UNAVAILABLE, expiration=req.now + hold, cltt=req.now,
        hw=b"", client_id=None,
    )
    state.log_event("dhcp-decline", {"address": int_to_ip(address), "client": req.hw.hex()})


def inform(state: ServerState, req: Request) -> Reply | None:
    """DHCPINFORM (RFC 2131 §4.3.5): the scope's options for a client configured by hand.

    The client names its address in ciaddr; the answer is an ACK without
    yiaddr or lease times, sent to ciaddr (or the relay), and the lease
    table is never consulted or changed.
    """
    address = req.p.ciaddr
    if not address:
        # The reply goes to ciaddr (§4.3.5, §4.1): without it there is no
        # address to answer and none to pick the scope by.
        state.drop("inform-without-ciaddr")
        return None
    scopes = scopes_for(state, req)
    scope = scope_of_address(address, scopes) or (scopes[0] if scopes else None)
    if scope is None:
        state.drop("no-scope")
        return None
    # Load balancing splits broadcast INFORMs by hash (CNR 7.2); one sent
    # to this server is answered by it.
    if not admit(state, req, scope, "new" if broadcast(req) else "renew")[0]:
        return None
    state.counters.sent["ACK"] += 1
    return build_reply(state, req, MessageType.ACK, scope, 0, None, durable=False)


# -- BOOTP ---------------------------------------------------------------------


def bootp(state: ServerState, req: Request) -> Reply | None:
    """A BOOTREQUEST without a message type: a reservation, or a dynamic BOOTP address, for ever.

    Under failover a dynamic address comes only from this server's own free
    addresses, in every state (:func:`~cnrd.dhcp.selection.admit`).
    """
    owners: dict[str, str | None] = {}
    scopes = []
    for candidate in scopes_for(state, req, bootp=True):
        ok, owner = admit(state, req, candidate, "new")
        if ok:
            scopes.append(candidate)
            owners[candidate.name] = owner
    if not scopes:
        state.drop("bootp-not-enabled")
        return None
    res = reservation(state, req, scopes)
    flags = LeaseFlag.BOOTP
    if res is not None:
        address, scope = res
        flags |= LeaseFlag.RESERVED
    else:
        dyn = [s for s in scopes if s.config.dynamic_bootp]
        if not dyn:
            state.drop("bootp-no-reservation")
            return None
        picked: tuple[int, ScopeRuntime] | None = None
        for lease in state.table.of_client(req.key):
            s = state.scopes.get(lease.scope)
            if s is not None and s in dyn and lease.state is LeaseState.LEASED:
                picked = (lease.address, s)
                break
        if picked is None:
            for s in dyn:
                a = state.table.allocate(s.name, req.key, owner=owners[s.name])
                if a is not None:
                    picked = (a, s)
                    break
        if picked is None:
            state.drop("no-address-available")
            return None
        address, scope = picked
        flags |= LeaseFlag.DYNAMIC_BOOTP
    state.table.update(
        address, durable=True, event="bootp", now=req.now,
        state=LeaseState.LEASED, scope=scope.name, hw=req.hw, client_id=None,
        start=req.now, expiration=Lease.INFINITE, cltt=req.now, flags=flags,
    )
    state.counters.sent["BOOTREPLY"] += 1
    return build_reply(state, req, None, scope, address, None, durable=True)
