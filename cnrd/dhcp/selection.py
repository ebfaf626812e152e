"""Which scope serves a request, under which policy, for how long, and as which server.

Scope selection (RFC 2131 §4.3.1): the link is named by the relay's
link-selection sub-option (RFC 3527), else the subnet-selection option
(RFC 3011), else the relay's giaddr, else the receiving interface's
addresses; candidates are then filtered by the scope's flags and the client
class's selection tags.  Policy lookup follows CNR's hierarchy (client, then
client class, then scope), and failover's gate has the last word on whether
to answer and how long a lease may run.

Pure module: time is the request's ``now``.
"""

from __future__ import annotations

from cnrd.config import PolicyConfig
from cnrd.dhcp.model import BROADCAST, ScopeRuntime
from cnrd.dhcp.packet import MalformedPacket
from cnrd.dhcp.state import Request, ServerState
from cnrd.leases.model import Lease, client_key

__all__ = [
    "link_address",
    "scopes_for",
    "scopes_containing",
    "scope_of_address",
    "reservation",
    "policy_for",
    "desired_time",
    "granted_time",
    "admit",
    "broadcast",
    "server_id",
    "own_address",
    "relay_suboption",
    "relay_unicast",
]

# Bound on the address -> scopes cache: a relay network sends few distinct
# link addresses, a flood of forged ones must not grow it without end.
_SCOPE_CACHE_MAX = 4096

# Relay agent information sub-options (option 82) the server acts on.
SUBOPT_LINK_SELECTION = 5  # RFC 3527
SUBOPT_FLAGS = 10  # RFC 5010
SUBOPT_SERVER_ID_OVERRIDE = 11  # RFC 5107
_FLAG_UNICAST = 0x80  # RFC 5010 §3: the high-order bit of the flags octet


def relay_suboption(req: Request, code: int) -> bytes | None:
    """The value of option 82 sub-option ``code`` in a relayed request, else None.

    Only a relayed request (giaddr set) is believed: the sub-options this
    server acts on steer scope selection and the server identifier, so a
    client must not be able to supply them by sending option 82 itself.
    """
    if not req.p.giaddr:
        return None
    subs = req.relay_subs
    if subs is None:
        found = req.p.relay_agent_info
        subs = req.relay_subs = tuple(found) if found else ()
    for sub, value in subs:
        if sub == code:
            return value
    return None


def _relay_address(req: Request, code: int) -> int | None:
    """A sub-option holding one IPv4 address (RFC 3527 §3, RFC 5107 §4), as an int."""
    value = relay_suboption(req, code)
    if value is None:
        return None
    if len(value) != 4:
        raise MalformedPacket(f"option 82 sub-option {code} must be 4 bytes, not {len(value)}")
    return int.from_bytes(value, "big")


def relay_unicast(req: Request) -> bool:
    """True when the relay says the client sent its request unicast (RFC 5010 §3, the U flag)."""
    value = relay_suboption(req, SUBOPT_FLAGS)
    if value is None:
        return False
    if len(value) < 1:
        raise MalformedPacket("option 82 sub-option 10 is empty")
    return bool(value[0] & _FLAG_UNICAST)


def link_address(req: Request) -> int | None:
    """The address that names the client's subnet (RFC 2131 §4.3.1, RFC 3527, RFC 3011), None for a local client."""
    # The relay's link selection comes first: the relay knows the client's
    # link, and RFC 3527 exists for the case where giaddr cannot name it.
    link = _relay_address(req, SUBOPT_LINK_SELECTION)
    if link is not None:
        return link
    sel = req.p.subnet_selection
    if sel is not None:
        return sel
    if req.p.giaddr:
        return req.p.giaddr
    return None


def scopes_for(state: ServerState, req: Request, *, bootp: bool = False) -> list[ScopeRuntime]:
    """Candidate scopes for the client's network, filtered by class and scope flags."""
    link = link_address(req)
    if link is not None:
        found = scopes_containing(state, link)
    else:
        iface = state.interfaces.get(req.rx.ifindex)
        found = []
        if iface is not None:
            for address, _ in iface.addresses:
                for s in scopes_containing(state, address):
                    if s not in found:
                        found.append(s)
    out = []
    tags = req.cls.selection_tags if req.cls is not None else frozenset()
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


def scopes_containing(state: ServerState, address: int) -> list[ScopeRuntime]:
    """Every configured scope whose subnet holds ``address`` (cached)."""
    found = state.scope_cache.get(address)
    if found is None:
        found = [s for s in state.scopes.values() if s.config.contains(address)]
        if len(state.scope_cache) > _SCOPE_CACHE_MAX:
            state.scope_cache.clear()
        state.scope_cache[address] = found
    return found


def scope_of_address(address: int, candidates: list[ScopeRuntime]) -> ScopeRuntime | None:
    """The first of ``candidates`` whose subnet holds ``address``."""
    for s in candidates:
        if s.config.contains(address):
            return s
    return None


def reservation(state: ServerState, req: Request, scopes: list[ScopeRuntime]) -> tuple[int, ScopeRuntime] | None:
    """The client's reserved address and its scope, when one of ``scopes`` holds it."""
    address = state.reservations_by_key.get(req.key)
    if address is None and req.cid:
        address = state.reservations_by_key.get(client_key(None, req.hw))
    if address is None:
        return None
    scope = scope_of_address(address, scopes)
    if scope is None:
        return None
    return address, scope


def policy_for(state: ServerState, req: Request, scope: ScopeRuntime) -> PolicyConfig:
    """The policy for this client in ``scope``."""
    # Most specific wins: client, then its class, then the scope (CNR's policy hierarchy).
    if req.client is not None and req.client.policy:
        return state.config.policies[req.client.policy]
    if req.cls is not None and req.cls.policy:
        return state.config.policies[req.cls.policy]
    return scope.policy


def desired_time(state: ServerState, req: Request, scope: ScopeRuntime) -> int:
    """The lease time the policy gives, shortened to what the client asked for when allowed."""
    policy = policy_for(state, req, scope)
    desired = policy.lease_time
    asked = req.p.lease_time
    if asked and policy.allow_client_lease_time:
        desired = min(desired, max(asked, 60))
    return desired


def granted_time(state: ServerState, req: Request, scope: ScopeRuntime, lease: Lease | None) -> int:
    """The lease time to grant: the desired time, bounded by failover's MCLT rules for a failover scope."""
    desired = desired_time(state, req, scope)
    gate = state.gates.get(scope.name)
    if gate is not None:
        return gate.lease_time(lease, desired, req.now)
    return desired


def admit(state: ServerState, req: Request, scope: ScopeRuntime, kind: str) -> tuple[bool, str | None]:
    """Failover's word on answering this client from ``scope``, and whose free addresses to use; drops are counted.

    ``kind`` is "new", "rebind" or "renew" (see :class:`~cnrd.dhcp.model.Gate`); a new client of a dynamic-BOOTP scope is
    asked about as "dynamic-bootp", so it only ever gets this server's own
    free addresses (CNR 7.2, "Dynamic BOOTP").
    """
    gate = state.gates.get(scope.name)
    if gate is None:
        return True, None
    if kind == "new" and scope.config.dynamic_bootp:
        kind = "dynamic-bootp"
    ok, owner, reason = gate.admit(kind, req.lb_key, req.p.secs, req.now)
    if not ok:
        state.drop(reason)
    return ok, owner


def broadcast(req: Request) -> bool:
    """True for a request the client broadcast: relayed (giaddr set) unless the relay flags it
    unicast (RFC 5010), or sent to 255.255.255.255."""
    if req.p.giaddr:
        return not relay_unicast(req)
    return req.rx.dst_ip == BROADCAST


def server_id(state: ServerState, req: Request) -> int:
    """The server-identifier option for replies to ``req`` (0 when we have none on that link).

    A relay's server identifier override (RFC 5107 §4) wins: the client
    then talks to the relay, which forwards to us; a REQUEST naming the
    override names us.
    """
    override = _relay_address(req, SUBOPT_SERVER_ID_OVERRIDE)
    if override:
        return override
    return own_address(state, req)


def own_address(state: ServerState, req: Request) -> int:
    """This server's own address for ``req``'s link: the source of replies (0 when none)."""
    if state.server_identifier:
        return state.server_identifier
    if req.rx.local_ip and req.rx.local_ip != BROADCAST:
        return req.rx.local_ip
    iface = state.interfaces.get(req.rx.ifindex)
    if iface is not None and iface.addresses:
        return iface.addresses[0][0]
    return 0
