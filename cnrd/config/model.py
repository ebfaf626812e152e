"""What a cnrd configuration is: frozen dataclasses, and the error that locates a problem.

Section and attribute names follow Cisco Network Registrar 7.2 (policy, scope,
reservation, client, client-class, failover-pair; lease-time, backup-pct,
mclt ...).  Each dataclass's field defaults are the defaults of the INI keys
(:func:`field_default` reads them), so a default lives in one place.

Pure module.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from cnrd.config.listen import DEFAULT_API_LISTEN, Listen
from cnrd.leases.model import Range
from cnrd.text import netmask

__all__ = [
    "ApiConfig",
    "ClientClassConfig",
    "ClientConfig",
    "Config",
    "ConfigError",
    "FailoverPairConfig",
    "PolicyConfig",
    "Range",
    "ReservationConfig",
    "ScopeConfig",
    "ServerConfig",
    "field_default",
]


class ConfigError(Exception):
    """A configuration problem, located to a file, section and key."""

    def __init__(self, file: str, section: str | None, key: str | None, reason: str) -> None:
        self.file = file
        self.section = section
        self.key = key
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.section is not None:
            where += f": [{self.section}]"
        if self.key is not None:
            where += f" {self.key}"
        # One line, always: a value or a library message may carry a newline.
        return f"{where}: {self.reason}".replace("\r", "\\r").replace("\n", "\\n")


@dataclass(frozen=True)
class PolicyConfig:
    """A named set of lease parameters and options (CNR policy).

    ``options`` maps option code to its encoded value (ready for the wire),
    in the order the file gives them.
    """

    name: str
    lease_time: int = 604800  # CNR's default policy: 7 days
    offer_timeout: int = 120
    unavailable_timeout: int = 86400
    grace_period: int = 300
    allow_client_lease_time: bool = True
    options: dict[int, bytes] = field(default_factory=dict)
    # CNR's "packet boot file" attributes: the BOOTP header's siaddr (the
    # next server), file and sname of OFFER, ACK and BOOTREPLY (RFC 2131 §2).
    packet_siaddr: int | None = None
    packet_file_name: str | None = None
    packet_server_name: str | None = None


@dataclass(frozen=True)
class ScopeConfig:
    """A subnet with ranges of dynamically assigned addresses (CNR scope)."""

    name: str
    network: int  # network address, host byte order
    prefix_len: int
    ranges: tuple[Range, ...]
    policy: str  # name of a PolicyConfig; "default" when unset
    allocate_first_available: bool = False
    bootp: bool = False
    dynamic_bootp: bool = False
    dhcp: bool = True
    backup_pct: float | None = None  # overrides the failover pair's when set
    # With dynamic-bootp: the backup's share, over backup-pct and the pair's.
    dynamic_bootp_backup_pct: float | None = None
    # With allocate-first-available: the backup's share is taken from below
    # it downward; None is halfway through the ranges.
    failover_backup_allocation_boundary: int | None = None
    selection_tags: frozenset[str] = frozenset()
    enabled: bool = True
    # The scope's own ``option.*`` keys (CNR's embedded policy): over the
    # policies' options for every client of the scope, under a reservation's.
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def netmask(self) -> int:
        return netmask(self.prefix_len)

    @property
    def broadcast(self) -> int:
        return self.network | (~self.netmask & 0xFFFFFFFF)

    def contains(self, address: int) -> bool:
        """True when ``address`` is inside this scope's subnet."""
        return (address & self.netmask) == self.network


@dataclass(frozen=True)
class ReservationConfig:
    """A fixed address for one client (by hardware address or client-id)."""

    address: int
    hardware_address: bytes | None = None  # chaddr bytes (6 for Ethernet)
    client_id: bytes | None = None
    host_name: str | None = None
    # The reservation's own ``option.*`` keys: over its scope's and the policies'.
    options: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientConfig:
    """Per-client settings (CNR client object), keyed by MAC."""

    hardware_address: bytes
    client_class: str | None = None
    policy: str | None = None
    host_name: str | None = None
    action: str | None = None  # "exclude": never answer this client
    # Only from an LDAP entry (cnrd.ldap.entry): the address held for this client.
    reserved_address: int | None = None


@dataclass(frozen=True)
class ClientClassConfig:
    """A client-class: a policy and scope selection for its member clients."""

    name: str
    policy: str | None = None
    selection_tags: frozenset[str] = frozenset()
    action: str | None = None
    # A client that no client entry or lookup id puts in a class joins this
    # one when its vendor class identifier (option 60) begins with this text
    # ("PXEClient" for network-boot firmware, RFC 4578 §2).
    match_vendor_class: str | None = None


@dataclass(frozen=True)
class FailoverPairConfig:
    """A failover relationship (CNR failover-pair); its name is the wire relationship name."""

    name: str
    main: int
    backup: int
    failover: bool = True
    mclt: int = 3600
    backup_pct: float = 10.0
    dynamic_bootp_backup_pct: float | None = None  # dynamic-BOOTP scopes' share; None: backup-pct
    load_balancing: bool = False
    # The main's share of the RFC 3074 hash buckets while balancing: buckets
    # 0..split-1, or the explicit map ``hba`` (32 bytes, ISC's bit order).
    split: int = 128
    hba: bytes | None = None
    # A client whose secs field is above this is answered by either server
    # while balancing (ISC's "load balance max seconds"); 0 turns it off.
    load_balance_max_seconds: int = 3
    failover_poll_interval: int = 10
    failover_poll_timeout: int = 60
    # When the pair's section does not set them, the loader gives it the
    # [server] values (CNR 7.2 sets safe-period on the DHCP server).
    use_safe_period: bool = False
    safe_period: int = 86400
    scopes: tuple[str, ...] = ()  # empty: every scope (server-wide failover)
    failover_main_server: int | None = None
    failover_backup_server: int | None = None
    max_unacked_updates: int = 100  # ISC's default (max-unacked-updates)
    port: int = 647
    # The two servers' admin API base URLs and the file holding the token
    # both accept, for sync and the configuration comparison; unset: off.
    # Identical on both servers, so the section itself can be synchronized.
    main_api: str | None = None
    backup_api: str | None = None
    api_token_file: str | None = None


@dataclass(frozen=True)
class ApiConfig:
    """The admin HTTP API: where it listens and the tokens it accepts."""

    listen: Listen = DEFAULT_API_LISTEN
    token_file: str | None = None
    # A second token that may only read (GET and HEAD); None: no such token.
    read_token_file: str | None = None
    enabled: bool = True
    # Where /metrics is served on its own, without the API; None: on the API's listener.
    metrics_listen: Listen | None = None

    @property
    def listen_host(self) -> str | None:
        """The interface of a TCP or TLS listener ("" is every address); None for a Unix socket."""
        return self.listen.host

    @property
    def listen_port(self) -> int | None:
        """The port of a TCP or TLS listener; None for a Unix socket."""
        return self.listen.port


@dataclass(frozen=True)
class ServerConfig:
    """The [server] section: this DHCP server process."""

    name: str
    interfaces: tuple[str, ...]
    data_dir: str
    max_dhcp_requests: int = 500
    # Replies waiting for their commit; None: max-dhcp-requests.  With
    # failover on, raised to 4 x max-dhcp-requests (cnrd.app.runtime.response_buffers).
    max_dhcp_responses: int | None = None
    server_port: int = 67
    client_port: int = 68
    server_identifier: int | None = None  # default: the receiving interface's address
    log_settings: frozenset[str] = frozenset()
    start_on_reboot: bool = True
    failover_recover: int | None = None
    # Defaults of every failover pair that does not set its own.
    use_safe_period: bool = False
    safe_period: int = 86400
    expiry_interval: int = 10  # seconds between expiry sweeps
    lease_db_size: int = 4 << 30  # LMDB map size in bytes
    event_history: int = 100000  # lease events kept in the store
    event_history_age: int = 0  # seconds a lease event is kept (0: no age limit, event-history's count only)
    stats_interval: int = 60  # seconds between counter summaries in the log (0: never)
    log_max_size: int = 10 << 20  # bytes a log file grows to before it is rotated
    log_max_files: int = 10  # rotated log files kept (0: no limit)
    commit_thread: bool = False  # fsync the lease store on a worker thread
    lease_journal: bool = True  # group commits go to a write-ahead journal, LMDB behind it
    gc_freeze_interval: int = 10  # seconds between freezes of what survived young GC (0: CPython's own GC)
    gc_full_interval: int = 86400  # seconds between full garbage collections (0: never)
    trap_webhook: str | None = None  # http(s) URL that receives traps as JSON POSTs
    # Relay agents whose DHCPLEASEQUERYs are answered, as (network, prefix
    # length); empty: none (RFC 4388 §7: the answers say where clients are).
    leasequery_allow: tuple[tuple[int, int], ...] = ()
    # CNR's client-class switch: clients and client-classes (local sections and
    # LDAP entries) are consulted only when on.
    client_class: bool = True
    # Where a client without a client entry gets its class name from:
    # None, ("option", code) or ("relay-agent", sub-option code).
    client_class_lookup_id: tuple[str, int] | None = None
    client_lookup_id: str = "mac"  # the LDAP lookup key: "mac" or "client-id"
    client_cache_ttl: int = 10  # seconds an LDAP answer is used before it is asked again
    client_cache_count: int = 10000  # LDAP answers kept (least recently used go first)
    # A request whose LDAP lookup neither answered nor failed within the LDAP
    # server's timeout: "default" answers it as a client without entry, "drop" drops it.
    client_lookup_failure: str = "default"
    # RFC 6842: replies carry the client's option 61 as received.
    echo_client_id: bool = True
    # NAK an INIT-REBOOT REQUEST from a client this server has no record of
    # (RFC 2131 §4.3.2 has a server without a record stay silent).
    authoritative: bool = False


@dataclass(frozen=True)
class LdapConfig:
    """One LDAP remote server holding client entries (CNR's ``ldap`` object)."""

    name: str
    hostname: str
    search_path: str  # the base DN
    query_dictionary: tuple[tuple[str, str], ...]  # (LDAP attribute, client property)
    port: int = 389
    preference: int = 1  # lower is tried first; the others are its fail-over
    username: str | None = None  # bind DN; None: anonymous
    password_file: str | None = None
    password: bytes = field(default=b"", repr=False, compare=False)  # read from password_file
    use_ssl: str = "off"  # "off" or "starttls"
    ca_file: str | None = None  # the CA that signs the server's certificate (starttls)
    search_scope: str = "subtree"  # "base", "onelevel" or "subtree"
    search_filter: str = "(macAddress=%s)"  # %s: the RFC 4515-escaped lookup id
    timeout: float = 2.0  # seconds a request waits for an answer from this server
    max_requests: int = 100  # searches outstanding on the connection at once


@dataclass(frozen=True)
class Config:
    """The whole configuration, validated."""

    path: str
    server: ServerConfig
    api: ApiConfig
    policies: dict[str, PolicyConfig]
    scopes: dict[str, ScopeConfig]
    reservations: dict[int, ReservationConfig]
    clients: dict[bytes, ClientConfig]
    client_classes: dict[str, ClientClassConfig]
    failover_pairs: dict[str, FailoverPairConfig]
    ldap: dict[str, LdapConfig] = field(default_factory=dict)

    def tls_settings(self) -> list[str]:
        """The settings that need TLS in the server process, as "[section] key" labels.

        Empty: the process can run without loading TLS at all (cnrd.app.tls).
        """
        out: list[str] = []
        api = self.api
        if api.enabled:
            out += [f"[api] {key}" for key, listen in (("listen", api.listen), ("metrics-listen", api.metrics_listen))
                    if listen is not None and listen.scheme == "https"]
        if _https(self.server.trap_webhook):
            out.append("[server] trap-webhook")
        for name, pair in self.failover_pairs.items():
            out += [f"[failover-pair {name}] {key}" for key, url in (("main-api", pair.main_api),
                                                                      ("backup-api", pair.backup_api))
                    if _https(url)]
        out += [f"[ldap {name}] use-ssl" for name, server in self.ldap.items() if server.use_ssl != "off"]
        return out


def _https(url: str | None) -> bool:
    return url is not None and url[:8].lower() == "https://"


def field_default(cls: type, name: str) -> Any:
    """The dataclass default of ``cls.name``, so defaults live in one place."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise AssertionError(f"{cls.__name__}.{name} has no default")
