"""Who the client is: its client entry and client-class (CNR's client-class processing).

A request's client entry comes from, in order: a ``[client]`` section for
its MAC, else the client registry (LDAP, :mod:`cnrd.dhcp.registry`) by
``[server] client-lookup-id``.  Its class is the one the entry names, else
the one ``client-class-lookup-id`` reads from the request (an option's
text, or a relay-agent sub-option), else the class whose
``match-vendor-class`` begins the request's vendor class identifier
(option 60: "PXEClient:Arch:00000:UNDI:002001" cannot be a class name).  ``client-class = false`` turns all of
this off: every client is a client without entry.

An entry from the registry may hold an address for its client
(``reserved-address``): it becomes a reservation like a ``[reservation]``
section's, made when the client is seen and moved or dropped when its
entry changes.

Pure module.
"""

from __future__ import annotations

from cnrd.config import ClientClassConfig, ClientConfig
from cnrd.dhcp.model import RxInfo
from cnrd.dhcp.packet import OPT_RELAY_AGENT_INFO, DhcpPacket
from cnrd.dhcp.registry import Outcome
from cnrd.dhcp.state import ServerState
from cnrd.leases.model import LeaseState

__all__ = ["identify", "lookup_id", "class_name", "vendor_class"]

def lookup_id(state: ServerState, p: DhcpPacket, cid: bytes | None) -> str:
    """The registry key of this request's client: its MAC, or its client-id, in colon hex."""
    if state.config.server.client_lookup_id == "client-id" and cid:
        return cid.hex(":")
    return p.chaddr.hex(":")


def class_name(state: ServerState, p: DhcpPacket) -> str | None:
    """The class name ``client-class-lookup-id`` reads from the request, if it is there and text."""
    spec = state.config.server.client_class_lookup_id
    if spec is None:
        return None
    kind, code = spec
    if kind == "option":
        raw = p.options.get(code)
    else:
        subs = p.relay_agent_info if OPT_RELAY_AGENT_INFO in p.options else None
        raw = next((v for c, v in subs or () if c == code), None)
    if not raw:
        return None
    try:
        return raw.decode("ascii").strip("\0") or None
    except UnicodeDecodeError:
        return None


def identify(state: ServerState, p: DhcpPacket, rx: RxInfo, key: bytes, cid: bytes | None,
             now: int) -> tuple[ClientConfig | None, ClientClassConfig | None] | None:
    """The request's client entry and class; None when the request is parked or dropped (counted)."""
    if not state.config.server.client_class:
        return None, None
    client = state.clients.get(p.chaddr) if p.htype == 1 else None
    registry = state.registry
    if client is None and registry is not None:
        lid = lookup_id(state, p, cid)
        outcome, client = registry.get(lid, now)
        if outcome is Outcome.WAIT:
            registry.park(lid, (p, rx))
            return None
        if outcome is Outcome.FAILED and state.config.server.client_lookup_failure == "drop":
            state.drop("client-lookup-failed", {"lookup-id": lid})
            return None
        if outcome is not Outcome.FAILED:
            _reserve(state, key, client)
    cls = None
    if client is not None and client.client_class:
        cls = state.classes.get(client.client_class)
        if cls is None:
            state.log_event("client-class-unknown", {"client-class": client.client_class,
                                                     "chaddr": p.chaddr.hex(":")})
    if cls is None and state.config.server.client_class_lookup_id is not None:
        name = class_name(state, p)
        if name is not None:
            cls = state.classes.get(name)
    if cls is None and state.vendor_classes:
        cls = vendor_class(state, p)
    return client, cls


def vendor_class(state: ServerState, p: DhcpPacket) -> ClientClassConfig | None:
    """The class whose ``match-vendor-class`` begins the request's option 60 (the longest such)."""
    if not state.vendor_classes:
        return None
    vendor = p.vendor_class
    if not vendor:
        return None
    return next((cls for prefix, cls in state.vendor_classes if vendor.startswith(prefix)), None)


def _reserve(state: ServerState, key: bytes, client: ClientConfig | None) -> None:
    """Make the registry entry's reserved address this client's reservation (or drop a stale one)."""
    want = client.reserved_address if client is not None else None
    have = state.ldap_reserved.get(key)
    if want == have:
        return
    table = state.table
    if have is not None:
        del state.ldap_reserved[key]
        if state.reservations_by_key.get(key) == have:
            del state.reservations_by_key[key]
        table.unreserve(have)
    if want is None:
        return
    holder = table.reserved.get(want)
    lease = table.leases.get(want)
    if holder not in (None, key) or (lease is not None and lease.key != key
                                      and lease.state is LeaseState.LEASED):
        # Held for someone else (a [reservation] or another entry, or a
        # lease): the entry is wrong or stale; the client gets a pool address.
        state.log_event("client-reservation-conflict", {"address": want, "client": key.hex(":")})
        return
    # As a [reservation] section: inside a scope's subnet, not its network or broadcast address.
    if not any(sc.contains(want) and want not in (sc.network, sc.broadcast) for sc in state.config.scopes.values()):
        state.log_event("client-reservation-outside", {"address": want, "client": key.hex(":")})
        return
    state.ldap_reserved[key] = want
    state.reservations_by_key[key] = want
    table.reserve(want, key)
