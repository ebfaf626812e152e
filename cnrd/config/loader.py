"""Loading: an INI file turned into a validated :class:`~cnrd.config.model.Config`.

Loading validates everything up front; any problem raises
:class:`~cnrd.config.model.ConfigError`, whose ``str()`` is one line naming
file, section and key, so ``twistd`` can refuse to start with that line and no
traceback.

Pure module: no reactor, no sockets.
"""

from __future__ import annotations

import configparser
import urllib.parse
from collections.abc import Iterable
from dataclasses import fields

from cnrd.config.apisection import API_KEYS, build_api
from cnrd.config.ldapsection import build_ldap
from cnrd.config.model import (
    ApiConfig,
    ClientClassConfig,
    ClientConfig,
    Config,
    ConfigError,
    FailoverPairConfig,
    LdapConfig,
    PolicyConfig,
    ReservationConfig,
    ScopeConfig,
    ServerConfig,
    field_default,
)
from cnrd.config.section import Section, parse_word
from cnrd.config.values import (
    InvalidValue,
    format_range,
    parse_action,
    parse_bool,
    parse_boot_field,
    parse_class_lookup_id,
    parse_duration,
    parse_hex,
    parse_http_url,
    parse_hw_address,
    parse_int,
    parse_ipv4,
    parse_list,
    parse_log_settings,
    parse_name,
    parse_percent,
    parse_policy_option,
    parse_range,
    parse_size,
    parse_subnet,
    parse_time,
    split_ranges,
)
from cnrd.leases.model import Range
from cnrd.text import hw_text, int_to_ip, netmask, suggest

__all__ = ["load", "loads", "parse_ini"]

_DEFAULT_POLICY = "default"

# Section types in the order they are processed: later types refer to earlier
# ones (scopes name policies, reservations need scopes, clients name
# client-classes, failover pairs name scopes).
_SECTION_TYPES = ("server", "api", "policy", "scope", "reservation", "client",
                  "client-class", "failover-pair", "ldap")
_UNNAMED = frozenset({"server", "api"})


def load(path: str) -> Config:
    """Read and validate the configuration file at ``path``.

    Raises :class:`ConfigError` (and nothing else) for an unreadable file or
    any invalid content.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, None, None, f"cannot read file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(path, None, None, f"line {line}: not valid UTF-8") from None
    return loads(text, path)


def loads(text: str, path: str = "<string>") -> Config:
    """Parse and validate configuration ``text``; ``path`` is only used in errors.

    Raises :class:`ConfigError` (and nothing else) for any invalid content.
    """
    parser = parse_ini(text, path)
    return _Builder(path, parser).build()


def parse_ini(text: str, path: str) -> configparser.ConfigParser:
    """Run configparser with cnrd's dialect, turning its errors into ConfigError."""
    parser = configparser.ConfigParser(
        # Values are literal: '%' appears in option text and must not interpolate.
        interpolation=None,
        strict=True,
        # A blank line ends a value, so a forgotten key does not silently
        # swallow the next lines into the previous value.
        empty_lines_in_values=False,
        inline_comment_prefixes=("#",),
        # There is no [DEFAULT] magic in cnrd: make that name an ordinary
        # (and therefore unknown) section.
        default_section="\x00no-default-section",
    )
    try:
        parser.read_string(text, source=path)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(path, e.section, None, f"line {e.lineno}: duplicate section") from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(path, e.section, e.option, f"line {e.lineno}: duplicate key") from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(path, None, None,
                          f"line {e.lineno}: {e.line!r} is outside any [section]") from None
    except configparser.ParsingError as e:
        bad_lineno: int = e.errors[0][0]
        lines = text.splitlines()
        line = lines[bad_lineno - 1].strip() if 0 < bad_lineno <= len(lines) else ""
        raise ConfigError(path, None, None,
                          f"line {bad_lineno}: cannot parse {line!r} (expected key = value)") from None
    except configparser.Error as e:
        lineno = getattr(e, "lineno", None)
        where = f"line {lineno}: " if lineno else ""
        raise ConfigError(path, None, None, where + e.message.splitlines()[0]) from None
    return parser


def _parse_boundary(text: str) -> int:
    """failover-backup-allocation-boundary: an IPv4 address, or 0 for unset."""
    return 0 if text.strip() == "0" else parse_ipv4(text)


def _parse_leasequery_allow(text: str) -> tuple[tuple[int, int], ...]:
    """leasequery-allow: addresses and ``address/prefix-length`` subnets, as (network, prefix length)."""
    out = []
    for item in parse_list(text):
        out.append(parse_subnet(item) if "/" in item else (parse_ipv4(item), 32))
    return tuple(out)


def _parse_api_base(text: str) -> str:
    """An admin API base URL: ``http(s)://host:port``, nothing after the port but an optional '/'."""
    url = parse_http_url(text)
    parts = urllib.parse.urlsplit(url)
    if parts.port is None:
        raise InvalidValue(f"bad URL {url!r}: give the API's port (http://host:8067)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidValue(f"bad URL {url!r}: only scheme, host and port (the API's base, "
                           "without /api/v1)")
    return url.rstrip("/")


def _is_option_key(key: str) -> bool:
    return key.startswith("option.")


def _options(s: Section) -> dict[int, bytes]:
    """The ``option.NAME`` keys of a policy, scope or reservation: code -> wire value, in file order."""
    options: dict[int, bytes] = {}
    option_keys: dict[int, str] = {}
    for key, text in s.values.items():
        if not _is_option_key(key):
            continue
        try:
            code, value = parse_policy_option(key[len("option."):].strip(), text)
        except InvalidValue as e:
            raise s.error(key, str(e)) from None
        if code in options:
            raise s.error(key, f"option {code} is already set by {option_keys[code]}")
        options[code] = value
        option_keys[code] = key
    return options


def _field_keys(cls: type, *, skip: Iterable[str] = ()) -> tuple[str, ...]:
    """INI keys for a dataclass: its field names with '_' written as '-'."""
    skipped = set(skip)
    return tuple(f.name.replace("_", "-") for f in fields(cls) if f.name not in skipped)


class _Builder:
    """Turns a parsed INI file into a validated :class:`Config`."""

    def __init__(self, path: str, parser: configparser.ConfigParser) -> None:
        self.path = path
        self.parser = parser
        self.sections: dict[str, list[Section]] = {kind: [] for kind in _SECTION_TYPES}
        self.policies: dict[str, PolicyConfig] = {}
        self.scopes: dict[str, ScopeConfig] = {}
        self.reservations: dict[int, ReservationConfig] = {}
        self.clients: dict[bytes, ClientConfig] = {}
        self.client_classes: dict[str, ClientClassConfig] = {}
        self.failover_pairs: dict[str, FailoverPairConfig] = {}
        self.ldap: dict[str, LdapConfig] = {}

    def build(self) -> Config:
        self._split_sections()
        server = self._server()
        api = self._api()
        for s in self.sections["policy"]:
            self._policy(s)
        if _DEFAULT_POLICY not in self.policies:
            self.policies = {_DEFAULT_POLICY: PolicyConfig(name=_DEFAULT_POLICY), **self.policies}
        for s in self.sections["scope"]:
            self._scope(s)
        self._check_range_overlaps()
        for s in self.sections["reservation"]:
            self._reservation(s)
        for s in self.sections["client-class"]:
            self._client_class(s)
        for s in self.sections["client"]:
            self._client(s)
        for s in self.sections["failover-pair"]:
            self._failover_pair(s, server)
        for s in self.sections["ldap"]:
            build_ldap(s, self.ldap)
        if self.ldap and not server.client_class:
            # Clients are looked up only with client-class on: the LDAP
            # servers would never be asked.
            raise ConfigError(self.path, self.sections["server"][0].header, "client-class",
                              f"false, yet [{self.sections['ldap'][0].header}] is configured "
                              "(LDAP is asked only with client-class = true)")
        return Config(
            path=self.path,
            server=server,
            api=api,
            policies=self.policies,
            scopes=self.scopes,
            reservations=self.reservations,
            clients=self.clients,
            client_classes=self.client_classes,
            failover_pairs=self.failover_pairs,
            ldap=self.ldap,
        )

    # -- sections ----------------------------------------------------------

    def _split_sections(self) -> None:
        """Sort sections by type, checking headers and names."""
        allowed = {
            "server": _field_keys(ServerConfig),
            "api": API_KEYS,
            "policy": _field_keys(PolicyConfig, skip=("name", "options")),
            "scope": ("subnet",) + _field_keys(ScopeConfig, skip=("name", "network", "prefix_len", "options")),
            "reservation": _field_keys(ReservationConfig, skip=("address", "options")),
            "client": _field_keys(ClientConfig, skip=("hardware_address", "reserved_address")),
            "client-class": _field_keys(ClientClassConfig, skip=("name",)),
            "failover-pair": _field_keys(FailoverPairConfig, skip=("name",)),
            "ldap": _field_keys(LdapConfig, skip=("name", "password")),
        }
        seen: set[tuple[str, str | None]] = set()
        for header in self.parser.sections():
            parts = header.split(None, 1)
            kind = parts[0].lower() if parts else ""
            name = parts[1].strip() if len(parts) > 1 else None
            if not kind:
                raise ConfigError(self.path, header, None, "empty section header")
            if kind not in _SECTION_TYPES:
                raise ConfigError(self.path, header, None, f"unknown section type {kind!r}"
                                  + suggest(kind, _SECTION_TYPES))
            if kind in _UNNAMED and name is not None:
                raise ConfigError(self.path, header, None, f"[{kind}] takes no name")
            if kind not in _UNNAMED and name is None:
                raise ConfigError(self.path, header, None, f"a name is required: [{kind} NAME]")
            # configparser only catches byte-identical headers; "[scope  lan]"
            # would otherwise quietly redefine "[scope lan]".
            if (kind, name) in seen:
                raise ConfigError(self.path, header, None, "duplicate section")
            seen.add((kind, name))
            values = dict(self.parser.items(header))
            self.sections[kind].append(Section(self.path, header, kind, name or "", values, allowed[kind]))

    def _server(self) -> ServerConfig:
        if not self.sections["server"]:
            raise ConfigError(self.path, "server", None, "the [server] section is missing")
        s = self.sections["server"][0]
        s.check_keys()
        d = ServerConfig
        return ServerConfig(
            name=s.get("name", parse_name, required=True),
            # Empty is allowed: a server reached only through relays needs no
            # broadcast interface.
            interfaces=s.get("interfaces", parse_list, default=()),
            data_dir=s.get("data-dir", parse_name, required=True),
            max_dhcp_requests=s.get("max-dhcp-requests", parse_int, 1, 100000,
                                    default=field_default(d, "max_dhcp_requests")),
            max_dhcp_responses=s.get("max-dhcp-responses", parse_int, 1, 400000),
            # 0 binds an ephemeral port (tests).
            server_port=s.get("server-port", parse_int, 0, 65535, default=field_default(d, "server_port")),
            client_port=s.get("client-port", parse_int, 1, 65535, default=field_default(d, "client_port")),
            server_identifier=s.get("server-identifier", parse_ipv4),
            log_settings=s.get("log-settings", parse_log_settings, default=frozenset()),
            start_on_reboot=s.get("start-on-reboot", parse_bool, default=field_default(d, "start_on_reboot")),
            failover_recover=s.get("failover-recover", parse_time),
            use_safe_period=s.get("use-safe-period", parse_bool, default=field_default(d, "use_safe_period")),
            safe_period=s.get("safe-period", parse_duration, 0, default=field_default(d, "safe_period")),
            expiry_interval=s.get("expiry-interval", parse_duration, 1,
                                  default=field_default(d, "expiry_interval")),
            # LMDB cannot work below a few pages; 1 MiB is a sane floor.
            lease_db_size=s.get("lease-db-size", parse_size, 1 << 20, default=field_default(d, "lease_db_size")),
            event_history=s.get("event-history", parse_int, 0, None, default=field_default(d, "event_history")),
            event_history_age=s.get("event-history-age", parse_duration, 0,
                                    default=field_default(d, "event_history_age")),
            stats_interval=s.get("stats-interval", parse_duration, 0,
                                 default=field_default(d, "stats_interval")),
            log_max_size=s.get("log-max-size", parse_size, 1 << 10, default=field_default(d, "log_max_size")),
            log_max_files=s.get("log-max-files", parse_int, 0, None, default=field_default(d, "log_max_files")),
            commit_thread=s.get("commit-thread", parse_bool, default=field_default(d, "commit_thread")),
            lease_journal=s.get("lease-journal", parse_bool, default=field_default(d, "lease_journal")),
            gc_freeze_interval=s.get("gc-freeze-interval", parse_duration, 0,
                                     default=field_default(d, "gc_freeze_interval")),
            gc_full_interval=s.get("gc-full-interval", parse_duration, 0,
                                   default=field_default(d, "gc_full_interval")),
            trap_webhook=s.get("trap-webhook", parse_http_url),
            leasequery_allow=s.get("leasequery-allow", _parse_leasequery_allow, default=()),
            client_class=s.get("client-class", parse_bool, default=field_default(d, "client_class")),
            client_class_lookup_id=s.get("client-class-lookup-id", parse_class_lookup_id),
            client_lookup_id=s.get("client-lookup-id", parse_word, ("mac", "client-id"),
                                   default=field_default(d, "client_lookup_id")),
            client_cache_ttl=s.get("client-cache-ttl", parse_duration, 0,
                                   default=field_default(d, "client_cache_ttl")),
            client_cache_count=s.get("client-cache-count", parse_int, 1, None,
                                     default=field_default(d, "client_cache_count")),
            client_lookup_failure=s.get("client-lookup-failure", parse_word, ("default", "drop"),
                                        default=field_default(d, "client_lookup_failure")),
            echo_client_id=s.get("echo-client-id", parse_bool, default=field_default(d, "echo_client_id")),
            authoritative=s.get("authoritative", parse_bool, default=field_default(d, "authoritative")),
        )

    def _api(self) -> ApiConfig:
        return build_api(self.sections["api"][0]) if self.sections["api"] else ApiConfig()

    def _policy(self, s: Section) -> None:
        s.check_keys(_is_option_key)
        d = PolicyConfig
        self.policies[s.name] = PolicyConfig(
            name=s.name,
            lease_time=s.get("lease-time", parse_duration, 1, default=field_default(d, "lease_time")),
            offer_timeout=s.get("offer-timeout", parse_duration, 1, default=field_default(d, "offer_timeout")),
            unavailable_timeout=s.get("unavailable-timeout", parse_duration, 1,
                                      default=field_default(d, "unavailable_timeout")),
            grace_period=s.get("grace-period", parse_duration, 0, default=field_default(d, "grace_period")),
            allow_client_lease_time=s.get("allow-client-lease-time", parse_bool,
                                          default=field_default(d, "allow_client_lease_time")),
            options=_options(s),
            packet_siaddr=s.get("packet-siaddr", parse_ipv4),
            packet_file_name=s.get("packet-file-name", parse_boot_field, 128),
            packet_server_name=s.get("packet-server-name", parse_boot_field, 64),
        )

    def _policy_ref(self, s: Section, key: str) -> str | None:
        """A reference to an existing policy, or None when the key is absent."""
        name: str | None = s.get(key, parse_name)
        if name is not None and name not in self.policies:
            raise s.error(key, f"unknown policy {name!r}" + suggest(name, self.policies))
        return name

    def _scope(self, s: Section) -> None:
        s.check_keys(_is_option_key)
        d = ScopeConfig
        network, prefix_len = s.get("subnet", parse_subnet, required=True)
        mask = netmask(prefix_len)
        broadcast = network | (~mask & 0xFFFFFFFF)
        subnet_text = f"{int_to_ip(network)}/{prefix_len}"

        ranges: list[Range] = []
        for item in s.get("ranges", split_ranges, default=()):
            try:
                r = parse_range(item)
            except InvalidValue as e:
                raise s.error("ranges", str(e)) from None
            if (r.first & mask) != network or (r.last & mask) != network:
                raise s.error("ranges", f"{format_range(r)} is outside subnet {subnet_text}")
            for edge, what in ((network, "network"), (broadcast, "broadcast")):
                if edge in r:
                    raise s.error("ranges", f"{format_range(r)} includes the {what} address "
                                            f"{int_to_ip(edge)} of {subnet_text}")
            for other in ranges:
                if r.first <= other.last and other.first <= r.last:
                    raise s.error("ranges", f"{format_range(r)} overlaps {format_range(other)}")
            ranges.append(r)
        ranges.sort(key=lambda r: r.first)

        bootp = s.get("bootp", parse_bool, default=field_default(d, "bootp"))
        dynamic_bootp = s.get("dynamic-bootp", parse_bool, default=field_default(d, "dynamic_bootp"))
        if dynamic_bootp and not bootp:
            raise s.error("dynamic-bootp", "dynamic-bootp requires bootp = true")

        first_available = s.get("allocate-first-available", parse_bool,
                                default=field_default(d, "allocate_first_available"))
        # 0 (or 0.0.0.0) is CNR's "unset": halfway through the ranges.
        boundary = s.get("failover-backup-allocation-boundary", _parse_boundary) or None
        if boundary is not None and (boundary & mask) != network:
            raise s.error("failover-backup-allocation-boundary",
                          f"{int_to_ip(boundary)} is outside subnet {subnet_text}")
        if boundary is not None and not first_available:
            # CNR 7.2, "Setting Backup Allocation Boundaries": the boundary
            # orders addresses, which only the first-available allocator does.
            raise s.error("failover-backup-allocation-boundary",
                          "requires allocate-first-available = true")

        self.scopes[s.name] = ScopeConfig(
            name=s.name,
            network=network,
            prefix_len=prefix_len,
            ranges=tuple(ranges),
            policy=self._policy_ref(s, "policy") or _DEFAULT_POLICY,
            allocate_first_available=first_available,
            bootp=bootp,
            dynamic_bootp=dynamic_bootp,
            dhcp=s.get("dhcp", parse_bool, default=field_default(d, "dhcp")),
            backup_pct=s.get("backup-pct", parse_percent),
            dynamic_bootp_backup_pct=s.get("dynamic-bootp-backup-pct", parse_percent),
            failover_backup_allocation_boundary=boundary,
            selection_tags=frozenset(s.get("selection-tags", parse_list, default=())),
            enabled=s.get("enabled", parse_bool, default=field_default(d, "enabled")),
            options=_options(s),
        )

    def _check_range_overlaps(self) -> None:
        """No address may be dynamically offered by two scopes."""
        owned: list[tuple[Range, str]] = []
        for s in self.sections["scope"]:
            scope = self.scopes[s.name]
            for r in scope.ranges:
                for other, owner in owned:
                    if r.first <= other.last and other.first <= r.last:
                        raise s.error("ranges", f"{format_range(r)} overlaps "
                                                f"{format_range(other)} of scope {owner}")
            owned.extend((r, s.name) for r in scope.ranges)

    def _reservation(self, s: Section) -> None:
        s.check_keys(_is_option_key)
        try:
            address = parse_ipv4(s.name)
        except InvalidValue as e:
            raise s.error(None, str(e)) from None
        scope = next((sc for sc in self.scopes.values() if sc.contains(address)), None)
        if scope is None:
            raise s.error(None, f"{int_to_ip(address)} is not inside any scope's subnet")
        if address in (scope.network, scope.broadcast):
            raise s.error(None, f"{int_to_ip(address)} is the network or broadcast address "
                                f"of scope {scope.name}")
        if address in self.reservations:
            raise s.error(None, f"{int_to_ip(address)} is already reserved")
        hw = s.get("hardware-address", parse_hw_address)
        client_id = s.get("client-id", parse_hex)
        if hw is None and client_id is None:
            raise s.error("hardware-address", "required key is missing (or give client-id)")
        if hw is not None and client_id is not None:
            raise s.error("client-id", "give hardware-address or client-id, not both")
        for other in self.reservations.values():
            if hw is not None and other.hardware_address == hw:
                raise s.error("hardware-address", f"{hw_text(hw)} already has reservation "
                                                  f"{int_to_ip(other.address)}")
            if client_id is not None and other.client_id == client_id:
                raise s.error("client-id", f"{client_id.hex(':')} already has reservation "
                                           f"{int_to_ip(other.address)}")
        self.reservations[address] = ReservationConfig(
            address=address,
            hardware_address=hw,
            client_id=client_id,
            host_name=s.get("host-name", parse_name),
            options=_options(s),
        )

    def _client_class(self, s: Section) -> None:
        s.check_keys()
        match = s.get("match-vendor-class", parse_name)
        for other in self.client_classes.values():
            if match is not None and other.match_vendor_class == match:
                raise s.error("match-vendor-class", f"{match!r} is also [client-class {other.name}]'s")
        self.client_classes[s.name] = ClientClassConfig(
            name=s.name,
            policy=self._policy_ref(s, "policy"),
            selection_tags=frozenset(s.get("selection-tags", parse_list, default=())),
            action=s.get("action", parse_action),
            match_vendor_class=match,
        )

    def _client(self, s: Section) -> None:
        s.check_keys()
        try:
            hw = parse_hw_address(s.name)
        except InvalidValue as e:
            raise s.error(None, str(e)) from None
        if hw in self.clients:
            raise s.error(None, f"client {hw_text(hw)} is already defined")
        client_class = s.get("client-class", parse_name)
        if client_class is not None and client_class not in self.client_classes:
            raise s.error("client-class", f"unknown client-class {client_class!r}"
                                          + suggest(client_class, self.client_classes))
        self.clients[hw] = ClientConfig(
            hardware_address=hw,
            client_class=client_class,
            policy=self._policy_ref(s, "policy"),
            host_name=s.get("host-name", parse_name),
            action=s.get("action", parse_action),
        )

    def _failover_pair(self, s: Section, server: ServerConfig) -> None:
        s.check_keys()
        d = FailoverPairConfig
        main = s.get("main", parse_ipv4, required=True)
        backup = s.get("backup", parse_ipv4, required=True)
        if main == backup:
            raise s.error("backup", f"{int_to_ip(backup)} is also the main server")
        poll_interval = s.get("failover-poll-interval", parse_duration, 1,
                              default=field_default(d, "failover_poll_interval"))
        poll_timeout = s.get("failover-poll-timeout", parse_duration, 1,
                             default=field_default(d, "failover_poll_timeout"))
        if poll_timeout <= poll_interval:
            raise s.error("failover-poll-timeout", f"{poll_timeout} s must be longer than "
                                                   f"failover-poll-interval ({poll_interval} s)")
        split = s.get("split", parse_int, 0, 256, default=field_default(d, "split"))
        hba = s.get("hba", parse_hex)
        if hba is not None:
            if "split" in s.values:
                raise s.error("hba", "set split or hba, not both")
            if len(hba) != 32:
                raise s.error("hba", f"{len(hba)} bytes; a hash bucket map is 32 bytes (64 hex digits)")
        scopes = s.get("scopes", parse_list, default=())
        for i, name in enumerate(scopes):
            if name not in self.scopes:
                raise s.error("scopes", f"unknown scope {name!r}" + suggest(name, self.scopes))
            if name in scopes[:i]:
                raise s.error("scopes", f"scope {name!r} is listed twice")
        # Empty means "every scope", so it collides with any other pair.
        covered = set(scopes or self.scopes)
        for other in self.failover_pairs.values():
            other_covered = set(other.scopes or self.scopes)
            both = sorted(covered & other_covered)
            if both:
                raise s.error("scopes", f"scope {both[0]} is already in failover-pair {other.name}")
        main_api, backup_api, api_token_file = self._pair_apis(s)
        self.failover_pairs[s.name] = FailoverPairConfig(
            name=s.name,
            main=main,
            backup=backup,
            failover=s.get("failover", parse_bool, default=field_default(d, "failover")),
            # The protocol's MCLT; below 30 s the safety margin is meaningless.
            mclt=s.get("mclt", parse_duration, 30, default=field_default(d, "mclt")),
            backup_pct=s.get("backup-pct", parse_percent, default=field_default(d, "backup_pct")),
            dynamic_bootp_backup_pct=s.get("dynamic-bootp-backup-pct", parse_percent),
            load_balancing=s.get("load-balancing", parse_bool, default=field_default(d, "load_balancing")),
            split=split,
            hba=hba,
            load_balance_max_seconds=s.get("load-balance-max-seconds", parse_duration, 0, 65535,
                                           default=field_default(d, "load_balance_max_seconds")),
            failover_poll_interval=poll_interval,
            failover_poll_timeout=poll_timeout,
            # The pair's own value wins; without one, [server]'s (CNR 7.2 sets
            # safe-period as a DHCP server attribute).
            use_safe_period=s.get("use-safe-period", parse_bool, default=server.use_safe_period),
            safe_period=s.get("safe-period", parse_duration, 0, default=server.safe_period),
            scopes=scopes,
            failover_main_server=s.get("failover-main-server", parse_ipv4),
            failover_backup_server=s.get("failover-backup-server", parse_ipv4),
            max_unacked_updates=s.get("max-unacked-updates", parse_int, 1, 1000,
                                      default=field_default(d, "max_unacked_updates")),
            port=s.get("port", parse_int, 1, 65535, default=field_default(d, "port")),
            main_api=main_api,
            backup_api=backup_api,
            api_token_file=api_token_file,
        )

    def _pair_apis(self, s: Section) -> tuple[str | None, str | None, str | None]:
        """main-api, backup-api and api-token-file: all three or none (sync and the comparison).

        The token file is read when the server starts (the admin API's
        start), not here: loading stays free of other files.
        """
        main_api = s.get("main-api", _parse_api_base)
        backup_api = s.get("backup-api", _parse_api_base)
        token_file = s.get("api-token-file", parse_name)
        given = [key for key in ("main-api", "backup-api", "api-token-file") if key in s.values]
        if given and len(given) < 3:
            missing = next(key for key in ("main-api", "backup-api", "api-token-file") if key not in given)
            raise s.error(missing, f"required with {given[0]} (sync needs both APIs and the token file)")
        if main_api is not None and main_api == backup_api:
            raise s.error("backup-api", f"{backup_api} is also main-api")
        return main_api, backup_api, token_file
