"""What the DHCP core knows between requests, and about the request in hand.

:class:`ServerState` is the data every step of the request pipeline reads
(scope selection, the message handlers, reply building); the steps are
functions over it in :mod:`cnrd.dhcp.selection`, :mod:`cnrd.dhcp.handlers`
and :mod:`cnrd.dhcp.replies`, and :class:`~cnrd.dhcp.server.DhcpServer`
is a ServerState with the entry points.  Plain functions over one object
keep the hot path as cheap as the methods of a single class would be.

:class:`Request` is one request in flight with what was worked out about
its client before the message handler runs.

Pure module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnrd.config import ClientClassConfig, ClientConfig, Config
from cnrd.dhcp.model import Counters, Gate, Interface, RxInfo, ScopeRuntime
from cnrd.dhcp.packet import DhcpPacket, MalformedPacket
from cnrd.dhcp.registry import ClientRegistry
from cnrd.leases.model import client_key
from cnrd.leases.table import LeaseTable

__all__ = ["LogEvent", "ServerState", "Request"]

#: Receives the core's events: (event name, fields).
LogEvent = Callable[[str, dict[str, Any]], None]


def _no_log(event: str, fields: dict[str, Any]) -> None:
    """The event sink of a server built without one."""


class ServerState:
    """The DHCP server's data: configuration, scopes, interfaces, gates, counters and leases.

    ``scopes``, ``clients``, ``classes``, ``reservations_by_key`` and
    ``server_identifier`` are rebuilt from the configuration on every
    (re)load; ``gates`` maps a scope name to its failover gate, set by the
    failover service for the scopes a failover pair covers (scopes without
    one are standalone).  ``our_ips`` and ``scope_cache`` are derived
    lookups: our addresses (for server-identifier checks) and the scopes
    containing an address.
    """

    def __init__(self, config: Config, table: LeaseTable, log: LogEvent | None) -> None:
        self.config = config
        self.table = table
        self.counters = Counters()
        self.enabled = config.server.start_on_reboot
        self.log_event: LogEvent = log or _no_log
        self.interfaces: dict[int, Interface] = {}
        self.our_ips: set[int] = set()
        self.scope_cache: dict[int, list[ScopeRuntime]] = {}
        self.gates: dict[str, Gate] = {}
        self.scopes: dict[str, ScopeRuntime] = {}
        self.reservations_by_key: dict[bytes, int] = {}
        self.clients: dict[bytes, ClientConfig] = {}
        self.classes: dict[str, ClientClassConfig] = {}
        self.vendor_classes: list[tuple[bytes, ClientClassConfig]] = []
        self.server_identifier = config.server.server_identifier
        # The client registry (LDAP) while [ldap] sections are configured;
        # parked items are the requests waiting for a lookup.
        self.registry: ClientRegistry[tuple[DhcpPacket, RxInfo]] | None = None
        # Reservations made from registry entries, by client key.
        self.ldap_reserved: dict[bytes, int] = {}

    def drop(self, reason: str, fields: dict[str, Any] | None = None) -> None:
        """Leave a request unanswered: count it by ``reason`` and log it."""
        self.counters.drops[reason] += 1
        self.log_event("dhcp-drop", {"reason": reason, **(fields or {})})


@dataclass(slots=True, init=False)
class Request:
    """One request in flight: the packet and what the server worked out about its client."""

    p: DhcpPacket
    rx: RxInfo
    now: int
    hw: bytes  # htype + chaddr
    cid: bytes | None  # client-identifier (option 61)
    key: bytes  # the lease table's key for this client
    client: ClientConfig | None
    cls: ClientClassConfig | None
    # Option 82's sub-options once a step has read them (() for none):
    # scope selection and the server identifier each look at them.
    relay_subs: tuple[tuple[int, bytes], ...] | None

    # Written out so that it is compiled (see DhcpPacket.__init__).
    def __init__(self, p: DhcpPacket, rx: RxInfo, now: int, hw: bytes, cid: bytes | None, key: bytes,
                 client: ClientConfig | None, cls: ClientClassConfig | None,
                 relay_subs: tuple[tuple[int, bytes], ...] | None = None) -> None:
        self.p = p
        self.rx = rx
        self.now = now
        self.hw = hw
        self.cid = cid
        self.key = key
        self.client = client
        self.cls = cls
        self.relay_subs = relay_subs

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
        """The configured client's host name, else the one it sent (option 12), else ''."""
        if self.client is not None and self.client.host_name:
            return self.client.host_name
        try:
            return self.p.host_name or ""
        except MalformedPacket:
            return ""
