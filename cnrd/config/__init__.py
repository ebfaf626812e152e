"""The cnrd configuration: an INI file turned into frozen dataclasses.

Section and attribute names follow Cisco Network Registrar 7.2 (policy, scope,
reservation, client, client-class, failover-pair; lease-time, backup-pct,
mclt ...).  Loading validates everything up front; any problem raises
:class:`ConfigError`, whose ``str()`` is one line naming file, section and key,
so ``twistd`` can refuse to start with that line and no traceback.

Pure module: no reactor, no sockets.
"""

from __future__ import annotations

import configparser
import datetime
import difflib
import ipaddress
import re
import urllib.parse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Iterable

from cnrd.dhcp.options import option_from_text
from cnrd.dhcp.packet import parse_hw
from cnrd.leases.model import Range
from cnrd.text import hw_text, int_to_ip, suggest


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
    dynamic_bootp_backup_pct: float | None = None
    failover_backup_allocation_boundary: int | None = None
    selection_tags: frozenset[str] = frozenset()
    enabled: bool = True

    @property
    def netmask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF if self.prefix_len else 0

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


@dataclass(frozen=True)
class ClientConfig:
    """Per-client settings (CNR client object), keyed by MAC."""

    hardware_address: bytes
    client_class: str | None = None
    policy: str | None = None
    host_name: str | None = None
    action: str | None = None  # "exclude": never answer this client


@dataclass(frozen=True)
class ClientClassConfig:
    """A client-class: a policy and scope selection for its member clients."""

    name: str
    policy: str | None = None
    selection_tags: frozenset[str] = frozenset()
    action: str | None = None


@dataclass(frozen=True)
class FailoverPairConfig:
    """A failover relationship (CNR failover-pair); its name is the wire relationship name."""

    name: str
    main: int
    backup: int
    failover: bool = True
    mclt: int = 3600
    backup_pct: float = 10.0
    dynamic_bootp_backup_pct: float | None = None
    load_balancing: bool = False
    failover_poll_interval: int = 10
    failover_poll_timeout: int = 60
    use_safe_period: bool = False
    safe_period: int = 86400
    scopes: tuple[str, ...] = ()  # empty: every scope (server-wide failover)
    failover_main_server: int | None = None
    failover_backup_server: int | None = None
    max_unacked_updates: int = 100  # ISC's default (max-unacked-updates)
    port: int = 647


@dataclass(frozen=True)
class ApiConfig:
    """The admin HTTP API."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8067
    token_file: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ServerConfig:
    """The [server] section: this DHCP server process."""

    name: str
    interfaces: tuple[str, ...]
    data_dir: str
    max_dhcp_requests: int = 500
    server_port: int = 67
    client_port: int = 68
    server_identifier: int | None = None  # default: the receiving interface's address
    log_settings: frozenset[str] = frozenset()
    start_on_reboot: bool = True
    failover_recover: int | None = None
    safe_period: int = 86400
    expiry_interval: int = 10  # seconds between expiry sweeps
    lease_db_size: int = 4 << 30  # LMDB map size in bytes
    event_history: int = 100000  # lease events kept in the store
    stats_interval: int = 60  # seconds between counter summaries in the log (0: never)
    commit_thread: bool = False  # fsync the lease store on a worker thread
    lease_journal: bool = True  # group commits go to a write-ahead journal, LMDB behind it
    gc_freeze_interval: int = 10  # seconds between freezes of what survived young GC (0: CPython's own GC)
    gc_full_interval: int = 86400  # seconds between full garbage collections (0: never)
    trap_webhook: str | None = None  # http(s) URL that receives traps as JSON POSTs


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


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

_DEFAULT_POLICY = "default"

# Section types in the order they are processed: later types refer to earlier
# ones (scopes name policies, reservations need scopes, clients name
# client-classes, failover pairs name scopes).
_SECTION_TYPES = ("server", "api", "policy", "scope", "reservation", "client",
                  "client-class", "failover-pair")
_UNNAMED = frozenset({"server", "api"})

_TRUE = frozenset({"true", "yes", "on", "enabled", "1"})
_FALSE = frozenset({"false", "no", "off", "disabled", "0"})

LOG_SETTINGS = frozenset({
    "default", "failover-detail", "no-failover-conflict", "no-failover-activity",
    "json", "incoming-packet-detail", "outgoing-packet-detail",
})

_ACTIONS = frozenset({"exclude"})

# Options the server computes per packet; letting a policy set them would
# produce duplicates or lies on the wire.  51 has its own policy attribute.
_SERVER_OPTIONS = {
    0: "pad is not an option",
    255: "end is not an option",
    50: "requested-address is sent by clients only",
    51: "set lease-time instead",
    52: "option-overload is managed by the server",
    53: "dhcp-message-type is set by the server",
    54: "dhcp-server-identifier is set by the server (see [server] server-identifier)",
    55: "parameter-request-list is sent by clients only",
    57: "max-message-size is sent by clients only",
    61: "client-identifier is sent by clients only",
    82: "relay-agent-info is added by relays only",
}

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(?:[0-9]+[smhdw])+", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"([0-9]+)([smhdw])", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"([0-9]+)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_LIST_SPLIT_RE = re.compile(r"[\s,]+")


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
    parser = _parse_ini(text, path)
    return _Builder(path, parser).build()


def _parse_ini(text: str, path: str) -> configparser.ConfigParser:
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
        lineno = e.errors[0][0]
        lines = text.splitlines()
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        raise ConfigError(path, None, None,
                          f"line {lineno}: cannot parse {line!r} (expected key = value)") from None
    except configparser.Error as e:
        lineno = getattr(e, "lineno", None)
        where = f"line {lineno}: " if lineno else ""
        raise ConfigError(path, None, None, where + e.message.splitlines()[0]) from None
    return parser


def suggest(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""



def _fmt_range(r: Range) -> str:
    if r.first == r.last:
        return int_to_ip(r.first)
    return f"{int_to_ip(r.first)}-{int_to_ip(r.last)}"



class InvalidValue(Exception):
    """A bad value; the caller knows the file, section and key."""


# -- value parsers: each takes the raw text and returns the typed value or
# -- raises InvalidValue with the reason.

def parse_bool(text: str) -> bool:
    """A CNR boolean: true/false, yes/no, on/off, enabled/disabled, 1/0."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidValue(f"bad boolean {text!r} (use true or false)")


def _int_of(digits: str, what: str) -> int:
    """int() of an ASCII decimal string the caller has matched.  Python refuses
    more than sys.int_max_str_digits (4300) digits with a ValueError; here that
    is a bad value, not a crash."""
    try:
        return int(digits)
    except ValueError:
        raise InvalidValue(f"{what} has too many digits ({len(digits)})") from None


def parse_int(text: str, low: int | None = None, high: int | None = None) -> int:
    """A decimal integer, optionally bounded (inclusive)."""
    t = text.strip()
    if not _INT_RE.fullmatch(t):
        raise InvalidValue(f"bad integer {text!r}")
    value = _int_of(t, "integer")
    _check_bounds(value, low, high, t)
    return value


def _check_bounds(value: float, low: float | None, high: float | None, text: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise InvalidValue(f"{text} is out of range (at least {low})")
        if low is None:
            raise InvalidValue(f"{text} is out of range (at most {high})")
        raise InvalidValue(f"{text} is out of range ({low}..{high})")


def parse_duration(text: str, low: int | None = 0, high: int | None = None) -> int:
    """A duration in seconds: ``3600``, ``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or ``1h30m``."""
    t = "".join(text.split())
    # isascii: str.isdigit() is also true for digits int() refuses, like '²'.
    if t.isascii() and t.isdigit():
        seconds = _int_of(t, "duration")
    elif _DURATION_RE.fullmatch(t):
        seconds = sum(_int_of(n, "duration") * _DURATION_UNITS[u.lower()]
                      for n, u in _DURATION_PART_RE.findall(t))
    else:
        raise InvalidValue(f"bad duration {text.strip()!r}")
    if low is not None and seconds < low:
        raise InvalidValue(f"duration {text.strip()!r} is too short (at least {low} s)")
    if high is not None and seconds > high:
        raise InvalidValue(f"duration {text.strip()!r} is too long (at most {high} s)")
    return seconds


def parse_size(text: str, low: int = 1, high: int = (1 << 63) - 1) -> int:
    """A byte count, with an optional binary suffix: ``4G``, ``512M``, ``64K``."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise InvalidValue(f"bad size {text.strip()!r} (use bytes or a K/M/G/T suffix)")
    value = _int_of(m.group(1), "size") * _SIZE_UNITS[m.group(2).upper()]
    if value < low:
        raise InvalidValue(f"size {text.strip()!r} is too small (at least {low} bytes)")
    if value > high:
        raise InvalidValue(f"size {text.strip()!r} is too large (at most {high} bytes)")
    return value


def parse_percent(text: str) -> float:
    """A percentage 0..100, with or without a trailing ``%``."""
    t = text.strip().removesuffix("%").strip()
    try:
        value = float(t)
    except ValueError:
        raise InvalidValue(f"bad percentage {text.strip()!r}") from None
    if not 0 <= value <= 100:  # also rejects nan
        raise InvalidValue(f"percentage {text.strip()} is out of range (0..100)")
    return value


def parse_ipv4(text: str) -> int:
    """A dotted-quad IPv4 address, as an integer in host byte order."""
    t = text.strip()
    try:
        return int(ipaddress.IPv4Address(t))
    except ValueError:
        raise InvalidValue(f"bad IPv4 address {t!r}") from None


def parse_list(text: str) -> tuple[str, ...]:
    """Words separated by commas and/or whitespace."""
    return tuple(w for w in _LIST_SPLIT_RE.split(text.strip()) if w)


def parse_time(text: str) -> int | None:
    """A point in time: epoch seconds or ISO-8601; ``0`` means unset (None).

    An ISO date-time without a UTC offset is taken as UTC, so the meaning of
    the file does not depend on the server's time zone.
    """
    t = text.strip()
    if t.isascii() and t.isdigit():  # not '²', which isdigit() accepts and int() refuses
        value = _int_of(t, "time")
        return value or None
    try:
        when = datetime.datetime.fromisoformat(t)
    except ValueError:
        raise InvalidValue(f"bad time {t!r} (use epoch seconds or ISO-8601, e.g. 2024-05-01T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp())


def parse_hex(text: str) -> bytes:
    """Hex bytes, optionally separated by ``:``, ``-``, ``.`` or spaces."""
    t = re.sub(r"[\s:.\-]", "", text)
    if t.lower().startswith("0x"):
        t = t[2:]
    try:
        value = bytes.fromhex(t)
    except ValueError:
        raise InvalidValue(f"bad hex {text.strip()!r}") from None
    if not value:
        raise InvalidValue("must not be empty")
    return value


def parse_hw_address(text: str) -> bytes:
    """A hardware address (via cnrd.dhcp.packet.parse_hw)."""
    try:
        return parse_hw(text.strip())
    except ValueError as e:
        # parse_hw's message already quotes the text.
        raise InvalidValue(str(e) or f"bad hardware address {text.strip()!r}") from None


def parse_action(text: str) -> str:
    """A client or client-class action; CNR's ``exclude`` is the only one cnrd has."""
    t = text.strip().lower()
    if t not in _ACTIONS:
        raise InvalidValue(f"unknown action {text.strip()!r}{suggest(t, _ACTIONS)}; "
                       f"allowed: {', '.join(sorted(_ACTIONS))}")
    return t


def parse_name(text: str) -> str:
    """A non-empty name."""
    t = text.strip()
    if not t:
        raise InvalidValue("must not be empty")
    return t


def parse_log_settings(text: str) -> frozenset[str]:
    """CNR log-settings flags, checked against the ones cnrd knows."""
    words = [w.lower() for w in parse_list(text)]
    for w in words:
        if w not in LOG_SETTINGS:
            raise InvalidValue(f"unknown log setting {w!r}{suggest(w, LOG_SETTINGS)}")
    return frozenset(words)


def parse_http_url(text: str) -> str:
    """An absolute ``http://`` or ``https://`` URL with a host (a webhook)."""
    t = text.strip()
    if not t or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in t):
        raise InvalidValue(f"bad URL {t!r} (no blanks or control characters)")
    try:
        parts = urllib.parse.urlsplit(t)
        parts.port  # raises ValueError for a bad port
    except ValueError as e:
        raise InvalidValue(f"bad URL {t!r}: {e}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidValue(f"bad URL {t!r}: use http:// or https://")
    if not parts.hostname:
        raise InvalidValue(f"bad URL {t!r}: no host")
    if not t.isascii():
        raise InvalidValue(f"bad URL {t!r}: write non-ASCII characters %-encoded")
    return t


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port``."""
    t = text.strip()
    host, sep, port = t.rpartition(":")
    if not sep or not host:
        raise InvalidValue(f"bad listen address {t!r} (use host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InvalidValue(f"bad listen address {t!r} (write an IPv6 host as [addr]:port)")
    if not host or any(c.isspace() for c in host):
        raise InvalidValue(f"bad listen address {t!r}")
    return host, parse_int(port, 0, 65535)


def _split_ranges(text: str) -> tuple[str, ...]:
    # "a - b" with blanks round the dash is one range, not three words.
    return parse_list(re.sub(r"\s*-\s*", "-", text))


class _Section:
    """One INI section being converted: tracks which keys were consumed."""

    def __init__(self, builder: "_Builder", header: str, kind: str, name: str | None,
                 values: dict[str, str], allowed: Iterable[str]) -> None:
        self.builder = builder
        self.header = header
        self.kind = kind
        self.name = name
        self.values = values
        self.allowed = tuple(allowed)

    def error(self, key: str | None, reason: str) -> ConfigError:
        return ConfigError(self.builder.path, self.header, key, reason)

    def check_keys(self, extra: Callable[[str], bool] = lambda key: False) -> None:
        """Refuse keys that are not attributes of this section type."""
        for key in self.values:
            if key not in self.allowed and not extra(key):
                raise self.error(key, "unknown key" + suggest(key, self.allowed))

    def get(self, key: str, parse: Callable[..., Any], *args: Any,
            default: Any = None, required: bool = False) -> Any:
        """The parsed value of ``key``, or ``default`` when absent."""
        if key not in self.values:
            if required:
                raise self.error(key, "required key is missing")
            return default
        text = self.values[key]
        # An indented line continues the previous value; that is only
        # meaningful for lists, elsewhere it is an indentation mistake.
        if "\n" in text and parse not in _MULTILINE_PARSERS:
            raise self.error(key, f"value continues on the next line ({text.split(chr(10))[1]!r}); "
                                  "is that line indented by mistake?")
        try:
            return parse(text, *args)
        except InvalidValue as e:
            raise self.error(key, str(e)) from None


# Parsers whose values may span indented continuation lines.
_MULTILINE_PARSERS: frozenset[Callable[..., Any]] = frozenset({parse_list, _split_ranges, parse_log_settings})


def _field_keys(cls: type, *, skip: Iterable[str] = ()) -> tuple[str, ...]:
    """INI keys for a dataclass: its field names with '_' written as '-'."""
    skipped = set(skip)
    return tuple(f.name.replace("_", "-") for f in fields(cls) if f.name not in skipped)


class _Builder:
    """Turns a parsed INI file into a validated :class:`Config`."""

    def __init__(self, path: str, parser: configparser.ConfigParser) -> None:
        self.path = path
        self.parser = parser
        self.sections: dict[str, list[_Section]] = {kind: [] for kind in _SECTION_TYPES}
        self.policies: dict[str, PolicyConfig] = {}
        self.scopes: dict[str, ScopeConfig] = {}
        self.reservations: dict[int, ReservationConfig] = {}
        self.clients: dict[bytes, ClientConfig] = {}
        self.client_classes: dict[str, ClientClassConfig] = {}
        self.failover_pairs: dict[str, FailoverPairConfig] = {}

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
            self._failover_pair(s)
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
        )

    # -- sections ----------------------------------------------------------

    def _split_sections(self) -> None:
        """Sort sections by type, checking headers and names."""
        allowed = {
            "server": _field_keys(ServerConfig),
            "api": ("listen", "token-file", "enabled"),
            "policy": _field_keys(PolicyConfig, skip=("name", "options")),
            "scope": ("subnet",) + _field_keys(ScopeConfig, skip=("name", "network", "prefix_len")),
            "reservation": _field_keys(ReservationConfig, skip=("address",)),
            "client": _field_keys(ClientConfig, skip=("hardware_address",)),
            "client-class": _field_keys(ClientClassConfig, skip=("name",)),
            "failover-pair": _field_keys(FailoverPairConfig, skip=("name",)),
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
            self.sections[kind].append(_Section(self, header, kind, name, values, allowed[kind]))

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
            # 0 binds an ephemeral port (tests).
            server_port=s.get("server-port", parse_int, 0, 65535, default=field_default(d, "server_port")),
            client_port=s.get("client-port", parse_int, 1, 65535, default=field_default(d, "client_port")),
            server_identifier=s.get("server-identifier", parse_ipv4),
            log_settings=s.get("log-settings", parse_log_settings, default=frozenset()),
            start_on_reboot=s.get("start-on-reboot", parse_bool, default=field_default(d, "start_on_reboot")),
            failover_recover=s.get("failover-recover", parse_time),
            safe_period=s.get("safe-period", parse_duration, 0, default=field_default(d, "safe_period")),
            expiry_interval=s.get("expiry-interval", parse_duration, 1,
                                  default=field_default(d, "expiry_interval")),
            # LMDB cannot work below a few pages; 1 MiB is a sane floor.
            lease_db_size=s.get("lease-db-size", parse_size, 1 << 20, default=field_default(d, "lease_db_size")),
            event_history=s.get("event-history", parse_int, 0, None, default=field_default(d, "event_history")),
            stats_interval=s.get("stats-interval", parse_duration, 0,
                                 default=field_default(d, "stats_interval")),
            commit_thread=s.get("commit-thread", parse_bool, default=field_default(d, "commit_thread")),
            lease_journal=s.get("lease-journal", parse_bool, default=field_default(d, "lease_journal")),
            gc_freeze_interval=s.get("gc-freeze-interval", parse_duration, 0,
                                     default=field_default(d, "gc_freeze_interval")),
            gc_full_interval=s.get("gc-full-interval", parse_duration, 0,
                                   default=field_default(d, "gc_full_interval")),
            trap_webhook=s.get("trap-webhook", parse_http_url),
        )

    def _api(self) -> ApiConfig:
        if not self.sections["api"]:
            return ApiConfig()
        s = self.sections["api"][0]
        s.check_keys()
        d = ApiConfig
        host, port = s.get("listen", parse_listen,
                           default=(field_default(d, "listen_host"), field_default(d, "listen_port")))
        return ApiConfig(
            listen_host=host,
            listen_port=port,
            token_file=s.get("token-file", parse_name),
            enabled=s.get("enabled", parse_bool, default=field_default(d, "enabled")),
        )

    def _policy(self, s: _Section) -> None:
        s.check_keys(lambda key: key.startswith("option."))
        d = PolicyConfig
        options: dict[int, bytes] = {}
        option_keys: dict[int, str] = {}
        for key, text in s.values.items():
            if not key.startswith("option."):
                continue
            name = key[len("option."):].strip()
            try:
                # Continuation lines extend a list value: join them.
                code, value = option_from_text(name, " ".join(text.split("\n")).strip())
            # OptionValueError is a ValueError; KeyError guards an unknown-name lookup.
            except (ValueError, KeyError) as e:
                raise s.error(key, str(e) or f"bad value {text.strip()!r}") from None
            if code in _SERVER_OPTIONS:
                raise s.error(key, f"option {code} cannot be set in a policy: {_SERVER_OPTIONS[code]}")
            if code in options:
                raise s.error(key, f"option {code} is already set by {option_keys[code]}")
            options[code] = value
            option_keys[code] = key
        self.policies[s.name] = PolicyConfig(
            name=s.name,
            lease_time=s.get("lease-time", parse_duration, 1, default=field_default(d, "lease_time")),
            offer_timeout=s.get("offer-timeout", parse_duration, 1, default=field_default(d, "offer_timeout")),
            unavailable_timeout=s.get("unavailable-timeout", parse_duration, 1,
                                      default=field_default(d, "unavailable_timeout")),
            grace_period=s.get("grace-period", parse_duration, 0, default=field_default(d, "grace_period")),
            allow_client_lease_time=s.get("allow-client-lease-time", parse_bool,
                                          default=field_default(d, "allow_client_lease_time")),
            options=options,
        )

    def _policy_ref(self, s: _Section, key: str) -> str | None:
        """A reference to an existing policy, or None when the key is absent."""
        name = s.get(key, parse_name)
        if name is not None and name not in self.policies:
            raise s.error(key, f"unknown policy {name!r}" + suggest(name, self.policies))
        return name

    def _scope(self, s: _Section) -> None:
        s.check_keys()
        d = ScopeConfig
        network, prefix_len = s.get("subnet", self._subnet, required=True)
        netmask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF if prefix_len else 0
        broadcast = network | (~netmask & 0xFFFFFFFF)
        subnet_text = f"{int_to_ip(network)}/{prefix_len}"

        ranges: list[Range] = []
        for item in s.get("ranges", _split_ranges, default=()):
            r = self._range(s, item)
            if (r.first & netmask) != network or (r.last & netmask) != network:
                raise s.error("ranges", f"{_fmt_range(r)} is outside subnet {subnet_text}")
            for edge, what in ((network, "network"), (broadcast, "broadcast")):
                if edge in r:
                    raise s.error("ranges", f"{_fmt_range(r)} includes the {what} address "
                                            f"{int_to_ip(edge)} of {subnet_text}")
            for other in ranges:
                if r.first <= other.last and other.first <= r.last:
                    raise s.error("ranges", f"{_fmt_range(r)} overlaps {_fmt_range(other)}")
            ranges.append(r)
        ranges.sort(key=lambda r: r.first)

        bootp = s.get("bootp", parse_bool, default=field_default(d, "bootp"))
        dynamic_bootp = s.get("dynamic-bootp", parse_bool, default=field_default(d, "dynamic_bootp"))
        if dynamic_bootp and not bootp:
            raise s.error("dynamic-bootp", "dynamic-bootp requires bootp = true")

        boundary = s.get("failover-backup-allocation-boundary", parse_ipv4)
        if boundary is not None and (boundary & netmask) != network:
            raise s.error("failover-backup-allocation-boundary",
                          f"{int_to_ip(boundary)} is outside subnet {subnet_text}")

        self.scopes[s.name] = ScopeConfig(
            name=s.name,
            network=network,
            prefix_len=prefix_len,
            ranges=tuple(ranges),
            policy=self._policy_ref(s, "policy") or _DEFAULT_POLICY,
            allocate_first_available=s.get("allocate-first-available", parse_bool,
                                           default=field_default(d, "allocate_first_available")),
            bootp=bootp,
            dynamic_bootp=dynamic_bootp,
            dhcp=s.get("dhcp", parse_bool, default=field_default(d, "dhcp")),
            backup_pct=s.get("backup-pct", parse_percent),
            dynamic_bootp_backup_pct=s.get("dynamic-bootp-backup-pct", parse_percent),
            failover_backup_allocation_boundary=boundary,
            selection_tags=frozenset(s.get("selection-tags", parse_list, default=())),
            enabled=s.get("enabled", parse_bool, default=field_default(d, "enabled")),
        )

    @staticmethod
    def _subnet(text: str) -> tuple[int, int]:
        t = text.strip()
        if "/" not in t:
            raise InvalidValue(f"bad subnet {t!r} (use address/prefix-length, e.g. 10.1.0.0/24)")
        try:
            net = ipaddress.IPv4Network(t, strict=False)
        except ValueError:
            raise InvalidValue(f"bad subnet {t!r} (use address/prefix-length, e.g. 10.1.0.0/24)") from None
        if int(ipaddress.IPv4Address(t.partition("/")[0])) != int(net.network_address):
            raise InvalidValue(f"{t} has host bits set (the subnet is {net})")
        return int(net.network_address), net.prefixlen

    @staticmethod
    def _range(s: _Section, item: str) -> Range:
        first_text, dash, last_text = item.partition("-")
        try:
            first = parse_ipv4(first_text)
            last = parse_ipv4(last_text) if dash else first
        except InvalidValue as e:
            raise s.error("ranges", f"{e} in range {item!r}") from None
        if first > last:
            raise s.error("ranges", f"{item} is backwards (first address after last)")
        return Range(first, last)

    def _check_range_overlaps(self) -> None:
        """No address may be dynamically offered by two scopes."""
        owned: list[tuple[Range, str]] = []
        for s in self.sections["scope"]:
            scope = self.scopes[s.name]
            for r in scope.ranges:
                for other, owner in owned:
                    if r.first <= other.last and other.first <= r.last:
                        raise s.error("ranges", f"{_fmt_range(r)} overlaps "
                                                f"{_fmt_range(other)} of scope {owner}")
            owned.extend((r, s.name) for r in scope.ranges)

    def _reservation(self, s: _Section) -> None:
        s.check_keys()
        try:
            address = parse_ipv4(s.name or "")
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
        )

    def _client_class(self, s: _Section) -> None:
        s.check_keys()
        self.client_classes[s.name] = ClientClassConfig(
            name=s.name,
            policy=self._policy_ref(s, "policy"),
            selection_tags=frozenset(s.get("selection-tags", parse_list, default=())),
            action=s.get("action", parse_action),
        )

    def _client(self, s: _Section) -> None:
        s.check_keys()
        try:
            hw = parse_hw_address(s.name or "")
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

    def _failover_pair(self, s: _Section) -> None:
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
            failover_poll_interval=poll_interval,
            failover_poll_timeout=poll_timeout,
            use_safe_period=s.get("use-safe-period", parse_bool, default=field_default(d, "use_safe_period")),
            safe_period=s.get("safe-period", parse_duration, 0, default=field_default(d, "safe_period")),
            scopes=scopes,
            failover_main_server=s.get("failover-main-server", parse_ipv4),
            failover_backup_server=s.get("failover-backup-server", parse_ipv4),
            max_unacked_updates=s.get("max-unacked-updates", parse_int, 1, 1000,
                                      default=field_default(d, "max_unacked_updates")),
            port=s.get("port", parse_int, 1, 65535, default=field_default(d, "port")),
        )


def field_default(cls: type, name: str) -> Any:
    """The dataclass default of ``cls.name``, so defaults live in one place."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise AssertionError(f"{cls.__name__}.{name} has no default")
