"""Table 27-1 of CNR 7.2 ("Failover Pair Synchronization Functions") as cnrd applies it.

The seed's table gives, for each kind of DHCP data, the function each
synchronization operation (Update, Complete, Exact) performs on it: *no
change*, *ensure*, *replace* or *exact*.  cnrd keeps its whole configuration
in one INI file per server, so each seed row is mapped here to the INI
sections and keys it covers:

=========================================  =======  ========  =======  ==========================================
seed row                                   Update   Complete  Exact    cnrd
=========================================  =======  ========  =======  ==========================================
DHCP Server: Client-Class, Client          replace  replace   replace  ``[failover-pair PAIR]``
Hostname, DNS Update, Failover Tuning                                  ``failover-poll-interval``,
Properties (Table 27-2)                                                ``failover-poll-timeout``; the
                                                                       ``[server]`` client-class keys
                                                                       (:data:`SERVER_KEYS` "client-class")
DHCP Server: all other properties          no chg.  replace   replace  ``[server]`` keys neither per-node nor
                                                                       client-class (:data:`SERVER_KEYS`);
                                                                       ``[failover-pair PAIR]`` keys other than
                                                                       the tuning keys and ``scopes``
LDAP Remote Server                         ensure   replace   exact    ``[ldap NAME]``
Policy: Option List Properties             ensure   replace   exact    ``[policy NAME]`` ``option.*`` keys, one
                                                                       entry per option code
Policy: Packet Boot File Properties        ensure   replace   exact    ``[policy NAME]`` ``packet-siaddr``,
                                                                       ``packet-file-name``,
                                                                       ``packet-server-name``, one entry each
Policy: all other properties               replace  replace   exact    ``[policy NAME]`` other keys
Client                                     replace  replace   exact    ``[client MAC]``
Client-Class                               replace  replace   exact    ``[client-class NAME]``
Scopes (related to failover pair)          exact    exact     exact    the pair's scopes (its ``scopes`` list,
                                                                       every scope when empty), the
                                                                       ``[reservation ADDRESS]`` sections inside
                                                                       their subnets, and the pair's ``scopes``
=========================================  =======  ========  =======  ==========================================

Seed rows cnrd has nothing for (:data:`NOT_APPLICABLE` says why for each):
DHCP Listener Configuration (cnrd's listener is ``[server] interfaces``,
which names this host's network interfaces and so is per-node), Trap
Configuration (cnrd's only trap setting is ``[server] trap-webhook``, where
this node posts its own traps: per-node), DNS Update Configuration (cnrd has no such objects yet; it
joins this table when it lands), VPN, Key, Extensions, Extension Point,
and Option Information (custom and vendor option lists).  Of Table 27-2, ``failover-bulking`` has no cnrd key and
``recover`` is cnrd's ``[server] failover-recover``, the time *this* server
lost its lease data: the seed sets it on the restored server only, and a
copy would send the partner into RECOVER, so it is per-node.

Everything not named in the table is left alone by every operation:
``[api]`` and the per-node ``[server]`` keys, the sections of other
failover pairs (each relationship is synchronized through its own pair,
and in the back-office case they describe relationships with third
servers), and scopes outside the pair with their reservations (the
target's own scopes, or another relationship's).

Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NOT_APPLICABLE",
    "OPERATIONS",
    "PAIR_TUNING",
    "PER_NODE",
    "POLICY_BOOT_FILE",
    "SERVER_KEYS",
    "TABLE_27_1",
    "Row",
]

OPERATIONS = ("update", "complete", "exact")


@dataclass(frozen=True)
class Row:
    """One row of Table 27-1: the seed's description, its functions, what it covers in cnrd."""

    seed: str
    update: str
    complete: str
    exact: str
    cnrd: str

    def function(self, operation: str) -> str:
        """The function (``"no change"``, ``"ensure"``, ``"replace"``, ``"exact"``) for ``operation``."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}")
        fn: str = getattr(self, operation)
        return fn


TABLE_27_1: dict[str, Row] = {
    "server-tuning": Row(
        "DHCP Server: Client-Class, Client Hostname, DNS Update and Failover Tuning Properties",
        "replace", "replace", "replace",
        "[failover-pair PAIR] failover-poll-interval, failover-poll-timeout (Table 27-2); "
        "[server] client-class, client-class-lookup-id, client-lookup-id, client-cache-ttl, "
        "client-cache-count, client-lookup-failure"),
    "server-other": Row(
        "DHCP Server: All other properties",
        "no change", "replace", "replace",
        "[server] keys that are neither per-node nor client-class; [failover-pair PAIR] keys other than the tuning keys and scopes"),
    "ldap": Row("LDAP Remote Server", "ensure", "replace", "exact", "[ldap NAME]"),
    "policy-options": Row(
        "Policy: Option List Properties",
        "ensure", "replace", "exact",
        "[policy NAME] option.* keys, compared option by option"),
    "policy-bootfile": Row(
        "Policy: Packet Boot File Properties",
        "ensure", "replace", "exact",
        "[policy NAME] packet-siaddr, packet-file-name, packet-server-name, compared key by key"),
    "policy-other": Row(
        "Policy: All other properties",
        "replace", "replace", "exact",
        "[policy NAME] lease-time, offer-timeout, unavailable-timeout, grace-period, allow-client-lease-time"),
    "client": Row("Client", "replace", "replace", "exact", "[client MAC]"),
    "client-class": Row("Client-Class", "replace", "replace", "exact", "[client-class NAME]"),
    "scopes": Row(
        "Scopes (related to failover pair)",
        "exact", "exact", "exact",
        "[scope NAME] of the pair, [reservation ADDRESS] in their subnets, [failover-pair PAIR] scopes"),
}

#: Seed rows with no cnrd counterpart, and why.
NOT_APPLICABLE: dict[str, str] = {
    "DHCP Listener Configuration": "cnrd listens on [server] interfaces, this host's interface names: per-node",
    "DNS Update Configuration": "cnrd does no DNS updates yet; the row joins the table when it lands",
    "Trap Configuration": "cnrd's only trap setting is [server] trap-webhook, where this node posts "
                          "its own traps: per-node",
    "VPN": "cnrd has no VPNs",
    "Key": "cnrd has no TSIG/DHCP keys",
    "Extensions": "cnrd has no extensions",
    "Extension Point": "cnrd has no extension points",
    "Option Information: Custom options list, Vendor options list": "cnrd's option table is built in "
                                                                    "(cnrd.dhcp.options); no custom option "
                                                                    "definitions",
    "Table 27-2 failover-bulking": "cnrd has no such key",
    "Table 27-2 recover": "[server] failover-recover is the time this server lost its lease data: per-node",
}

#: A policy's packet boot file properties (the BOOTP header's siaddr, file and sname).
POLICY_BOOT_FILE = frozenset({"packet-siaddr", "packet-file-name", "packet-server-name"})

#: The pair's failover tuning keys (Table 27-2 that cnrd has): always replaced.
PAIR_TUNING = frozenset({"failover-poll-interval", "failover-poll-timeout"})

#: Every [server] key (ServerConfig field, '_' written '-'): "per-node" (never
#: copied, never compared), "client-class" (Table 27-1's server-level
#: "Client-Class Properties", replaced by every operation) or "other" (its
#: "All other properties").
SERVER_KEYS: dict[str, str] = {
    "name": "per-node",  # the node's identity
    "interfaces": "per-node",  # this host's network interfaces (the DHCP listener)
    "data-dir": "per-node",  # a local path holding this node's leases
    # The buffers are a property of the DHCP service, as in CNR; both partners
    # carry the same clients when the other is down.
    "max-dhcp-requests": "other",
    "max-dhcp-responses": "other",
    "server-port": "per-node",  # a local port (tests bind others)
    "client-port": "per-node",  # likewise
    "server-identifier": "per-node",  # this node's own address in option 54
    # Verbosity is a node's diagnostic choice; the seed's "Confirming Failover"
    # sets failover-detail on the main only.
    "log-settings": "per-node",
    "start-on-reboot": "per-node",  # whether this host starts its service
    # The time this node lost its lease data; on the partner it would force a
    # needless full recovery.
    "failover-recover": "per-node",
    # The pairs' defaults for the safe period: a service property like CNR's.
    "use-safe-period": "other",
    "safe-period": "other",
    "expiry-interval": "other",  # when leases expire is the service's behaviour
    "lease-db-size": "per-node",  # this node's storage
    "event-history": "per-node",  # this node's storage
    "event-history-age": "per-node",  # this node's storage
    "stats-interval": "per-node",  # this node's log
    "log-max-size": "per-node",  # this node's log file
    "log-max-files": "per-node",  # this node's log file
    "commit-thread": "per-node",  # this node's threads, chosen for its disks and CPUs
    "lease-journal": "per-node",  # this node's storage
    "gc-freeze-interval": "per-node",  # this process's memory, sized for its host
    "gc-full-interval": "per-node",
    "trap-webhook": "per-node",  # where this node posts its own traps
    # The relays allowed to ask about leases: the backup answers them for the
    # main's clients while the main is down (CNR 7.2, "DHCPLEASEQUERY and
    # Failover"), so both partners allow the same ones.
    "leasequery-allow": "other",
    # CNR's client-class properties of the DHCP server: both partners must
    # class a client alike (the seed's checklist: the same LDAP server).
    "client-class": "client-class",
    "client-class-lookup-id": "client-class",
    "client-lookup-id": "client-class",
    "client-cache-ttl": "client-class",
    "client-cache-count": "client-class",
    "client-lookup-failure": "client-class",
    # How the service answers clients: either partner answers the same client.
    "echo-client-id": "other",
    "authoritative": "other",
}

#: Per-node configuration: section type -> its per-node keys, or None when the
#: whole section is per-node.  A [server] key this table does not know is
#: treated as per-node too (never copied), see :func:`cnrd.sync.planner.shareable`.
PER_NODE: dict[str, frozenset[str] | None] = {
    "server": frozenset(k for k, kind in SERVER_KEYS.items() if kind == "per-node"),
    "api": None,  # listen address and token file of this node's API
}
