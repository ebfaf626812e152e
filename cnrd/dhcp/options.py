"""DHCPv4 option table and conversions between text, typed values and wire
bytes.

Used off the hot path: by the config loader (``option.routers = 10.1.0.1``
lines become ``(code, bytes)`` once, at load time) and by the admin API to
show option values.  The packet codec itself keeps options as raw bytes.

Names follow Cisco Network Registrar / ISC dhcpd; the other spelling is an
alias.  Types and lengths are RFC 2132 unless the table says otherwise.

Text syntax, per kind (lists are comma and/or space separated):

=================  ===================================================
IP / IPS           ``10.1.0.1`` / ``10.1.0.1, 10.1.0.2``
IP_PAIRS           ``10.0.0.0 10.1.0.1, 10.2.0.0 10.1.0.1``
U8 .. I32, lists   decimal or ``0x`` hex: ``1500`` / ``1, 3, 6``
BOOL               true/false, yes/no, on/off, 1/0
STRING             the text itself, optionally in double quotes
BYTES, CLIENT_ID   hex: ``01:02:0a``, ``01-02-0a``, ``0x01020a``, ``01020a``
RELAY_AGENT_INFO   ``1=00:04:00:01, 2=0a:0b`` (sub-option code=hex)
DOMAIN_LIST        ``example.com, corp.example.com``
CLASSLESS_ROUTES   ``10.0.0.0/8 10.1.0.1, 0.0.0.0/0 10.1.0.1``
=================  ===================================================

Pure module: stdlib only.
"""

from __future__ import annotations

import enum
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from cnrd.dhcp.errors import MalformedPacket
from cnrd.text import netmask

__all__ = [
    "OptionKind",
    "OptionSpec",
    "OptionValueError",
    "OPTIONS_BY_CODE",
    "OPTIONS_BY_NAME",
    "option_from_text",
    "encode_option",
    "decode_option",
    "option_to_text",
]


class OptionKind(enum.Enum):
    """How an option's value is laid out on the wire."""

    IP = "ip"                      # one IPv4 address, 4 bytes
    IPS = "ips"                    # list of IPv4 addresses, 4n bytes
    IP_PAIRS = "ip-pairs"          # list of (address, address), 8n bytes
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    I32 = "i32"                    # time-offset (RFC 2132 §3.4) is signed
    U8S = "u8s"
    U16S = "u16s"
    BOOL = "bool"                  # one byte, 0 or 1
    STRING = "string"              # NVT ASCII in the RFCs; we use UTF-8
    BYTES = "bytes"                # opaque
    CLIENT_ID = "client-id"        # RFC 2132 §9.14: type byte + id, >= 2 bytes
    RELAY_AGENT_INFO = "relay-agent-info"  # RFC 3046 sub-option TLVs
    DOMAIN_LIST = "domain-list"    # RFC 3397 (RFC 1035 names)
    CLASSLESS_ROUTES = "classless-routes"  # RFC 3442


@dataclass(frozen=True)
class OptionSpec:
    """One known option: its code, canonical name, value kind and aliases."""

    code: int
    name: str
    kind: OptionKind
    aliases: tuple[str, ...] = ()


class OptionValueError(ValueError):
    """A text or typed value that does not fit the option's type; the
    message says why, for the config loader to show verbatim."""


K = OptionKind
_TABLE: tuple[OptionSpec, ...] = (
    # RFC 2132 §3: vendor extensions
    OptionSpec(1, "subnet-mask", K.IP),
    OptionSpec(2, "time-offset", K.I32),
    OptionSpec(3, "routers", K.IPS, ("router",)),
    OptionSpec(4, "time-servers", K.IPS, ("time-server",)),
    OptionSpec(5, "name-servers", K.IPS, ("name-server", "ien116-name-servers")),
    OptionSpec(6, "domain-name-servers", K.IPS, ("domain-name-server", "dns-servers")),
    OptionSpec(7, "log-servers", K.IPS, ("log-server",)),
    OptionSpec(8, "cookie-servers", K.IPS, ("cookie-server", "quotes-servers")),
    OptionSpec(9, "lpr-servers", K.IPS, ("lpr-server",)),
    OptionSpec(10, "impress-servers", K.IPS, ("impress-server",)),
    OptionSpec(11, "resource-location-servers", K.IPS, ("resource-location-server",)),
    OptionSpec(12, "host-name", K.STRING, ("hostname",)),
    OptionSpec(13, "boot-size", K.U16, ("boot-file-size",)),
    OptionSpec(14, "merit-dump", K.STRING, ("merit-dump-file",)),
    OptionSpec(15, "domain-name", K.STRING),
    OptionSpec(16, "swap-server", K.IP),
    OptionSpec(17, "root-path", K.STRING),
    OptionSpec(18, "extensions-path", K.STRING),
    # RFC 2132 §4: IP layer parameters per host
    OptionSpec(19, "ip-forwarding", K.BOOL),
    OptionSpec(20, "non-local-source-routing", K.BOOL),
    OptionSpec(21, "policy-filter", K.IP_PAIRS),
    OptionSpec(22, "max-dgram-reassembly", K.U16, ("max-datagram-reassembly",)),
    OptionSpec(23, "default-ip-ttl", K.U8),
    OptionSpec(24, "path-mtu-aging-timeout", K.U32),
    OptionSpec(25, "path-mtu-plateau-table", K.U16S),
    # RFC 2132 §5: IP layer parameters per interface
    OptionSpec(26, "interface-mtu", K.U16),
    OptionSpec(27, "all-subnets-local", K.BOOL),
    OptionSpec(28, "broadcast-address", K.IP),
    OptionSpec(29, "perform-mask-discovery", K.BOOL),
    OptionSpec(30, "mask-supplier", K.BOOL),
    OptionSpec(31, "router-discovery", K.BOOL),
    OptionSpec(32, "router-solicitation-address", K.IP),
    OptionSpec(33, "static-routes", K.IP_PAIRS, ("static-route",)),
    # RFC 2132 §6, §7: link and TCP parameters
    OptionSpec(34, "trailer-encapsulation", K.BOOL),
    OptionSpec(35, "arp-cache-timeout", K.U32),
    OptionSpec(36, "ieee802-3-encapsulation", K.BOOL),
    OptionSpec(37, "default-tcp-ttl", K.U8),
    OptionSpec(38, "tcp-keepalive-interval", K.U32),
    OptionSpec(39, "tcp-keepalive-garbage", K.BOOL),
    # RFC 2132 §8: application and service parameters
    OptionSpec(40, "nis-domain", K.STRING),
    OptionSpec(41, "nis-servers", K.IPS),
    OptionSpec(42, "ntp-servers", K.IPS, ("ntp-server",)),
    OptionSpec(43, "vendor-encapsulated-options", K.BYTES),
    OptionSpec(44, "netbios-name-servers", K.IPS, ("netbios-name-server",)),
    OptionSpec(45, "netbios-dd-server", K.IPS, ("netbios-dd-servers",)),
    OptionSpec(46, "netbios-node-type", K.U8),
    OptionSpec(47, "netbios-scope", K.STRING),
    OptionSpec(48, "font-servers", K.IPS),
    OptionSpec(49, "x-display-manager", K.IPS),
    # RFC 2132 §9: DHCP extensions
    OptionSpec(50, "requested-address", K.IP, ("dhcp-requested-address",)),
    OptionSpec(51, "dhcp-lease-time", K.U32, ("lease-time",)),
    OptionSpec(52, "option-overload", K.U8, ("dhcp-option-overload",)),
    OptionSpec(53, "dhcp-message-type", K.U8, ("message-type",)),
    OptionSpec(54, "dhcp-server-identifier", K.IP, ("server-identifier",)),
    OptionSpec(55, "dhcp-parameter-request-list", K.U8S, ("parameter-request-list",)),
    OptionSpec(56, "dhcp-message", K.STRING, ("message",)),
    OptionSpec(57, "dhcp-max-message-size", K.U16, ("max-message-size",)),
    OptionSpec(58, "dhcp-renewal-time", K.U32, ("renewal-time",)),
    OptionSpec(59, "dhcp-rebinding-time", K.U32, ("rebinding-time",)),
    OptionSpec(60, "vendor-class-identifier", K.STRING, ("vendor-class",)),
    OptionSpec(61, "dhcp-client-identifier", K.CLIENT_ID, ("client-identifier", "client-id")),
    OptionSpec(62, "nwip-domain", K.STRING, ("netware-ip-domain",)),        # RFC 2242
    OptionSpec(63, "nwip-suboptions", K.BYTES, ("netware-ip-option",)),     # RFC 2242
    # RFC 2132 §8.11 ff.
    OptionSpec(64, "nisplus-domain", K.STRING, ("nis+-domain",)),
    OptionSpec(65, "nisplus-servers", K.IPS, ("nis+-servers",)),
    OptionSpec(66, "tftp-server-name", K.STRING, ("tftp-server",)),
    OptionSpec(67, "bootfile-name", K.STRING, ("bootfile",)),
    OptionSpec(68, "mobile-ip-home-agent", K.IPS),  # may be empty (RFC 2132 §8.14)
    OptionSpec(69, "smtp-server", K.IPS, ("smtp-servers",)),
    OptionSpec(70, "pop-server", K.IPS, ("pop-servers", "pop3-server")),
    OptionSpec(71, "nntp-server", K.IPS, ("nntp-servers",)),
    OptionSpec(72, "www-server", K.IPS, ("www-servers",)),
    OptionSpec(73, "finger-server", K.IPS, ("finger-servers",)),
    OptionSpec(74, "irc-server", K.IPS, ("irc-servers",)),
    OptionSpec(75, "streettalk-server", K.IPS, ("streettalk-servers",)),
    OptionSpec(76, "streettalk-directory-assistance-server", K.IPS, ("stda-server",)),
    # later RFCs
    OptionSpec(77, "user-class", K.BYTES),                                   # RFC 3004
    OptionSpec(80, "rapid-commit", K.BYTES),                                 # RFC 4039
    OptionSpec(81, "client-fqdn", K.BYTES, ("fqdn",)),                       # RFC 4702
    OptionSpec(82, "relay-agent-info", K.RELAY_AGENT_INFO,
               ("relay-agent-information", "dhcp-agent-options")),          # RFC 3046
    OptionSpec(90, "authentication", K.BYTES),                               # RFC 3118
    OptionSpec(91, "client-last-transaction-time", K.U32),                   # RFC 4388
    OptionSpec(92, "associated-ip", K.IPS),                                  # RFC 4388
    OptionSpec(93, "client-system-architecture", K.U16S, ("pxe-system-type",)),  # RFC 4578
    OptionSpec(94, "client-network-interface", K.BYTES, ("client-ndi",)),   # RFC 4578
    OptionSpec(97, "client-machine-identifier", K.BYTES, ("uuid-guid",)),   # RFC 4578
    OptionSpec(100, "pcode", K.STRING, ("posix-timezone",)),                 # RFC 4833
    OptionSpec(101, "tcode", K.STRING, ("tzdb-timezone",)),                  # RFC 4833
    OptionSpec(108, "ipv6-only-preferred", K.U32),                           # RFC 8925
    OptionSpec(114, "captive-portal", K.STRING),                             # RFC 8910
    OptionSpec(116, "auto-configure", K.U8),                                 # RFC 2563
    OptionSpec(118, "subnet-selection", K.IP),                               # RFC 3011
    OptionSpec(119, "domain-search", K.DOMAIN_LIST, ("domain-search-list",)),  # RFC 3397
    OptionSpec(121, "classless-static-route", K.CLASSLESS_ROUTES,
               ("classless-static-routes",)),                                # RFC 3442
    OptionSpec(124, "vivco", K.BYTES, ("vendor-identifying-vendor-class",)),   # RFC 3925
    OptionSpec(125, "vivso", K.BYTES, ("vendor-identifying-vendor-options",)),  # RFC 3925
    OptionSpec(150, "tftp-server-address", K.IPS, ("tftp-server-addresses",)),  # RFC 5859
    OptionSpec(252, "wpad", K.STRING, ("wpad-url",)),  # WPAD draft, de facto
)
del K

OPTIONS_BY_CODE: dict[int, OptionSpec] = {spec.code: spec for spec in _TABLE}
OPTIONS_BY_NAME: dict[str, OptionSpec] = {}
for _spec in _TABLE:
    for _name in (_spec.name, *_spec.aliases):
        # A clash would silently send a config line to the wrong option.
        assert _name not in OPTIONS_BY_NAME, f"duplicate option name {_name}"
        OPTIONS_BY_NAME[_name] = _spec
del _spec, _name
assert len(OPTIONS_BY_CODE) == len(_TABLE), "duplicate option code"

# RFC 3046 §2.0 and later RFCs' sub-option names, accepted in text.
RELAY_SUBOPTION_NAMES: dict[str, int] = {
    "circuit-id": 1,          # RFC 3046
    "remote-id": 2,           # RFC 3046
    "link-selection": 5,      # RFC 3527
    "subscriber-id": 6,       # RFC 3993
    "server-id-override": 11,  # RFC 5107
}

_INT_RANGES = {
    OptionKind.U8: (0, 0xFF, "!B"),
    OptionKind.U16: (0, 0xFFFF, "!H"),
    OptionKind.U32: (0, 0xFFFFFFFF, "!I"),
    OptionKind.I32: (-0x80000000, 0x7FFFFFFF, "!i"),
}
_TRUE = frozenset(("true", "yes", "on", "1", "enabled", "enable"))
_FALSE = frozenset(("false", "no", "off", "0", "disabled", "disable"))
_SPLIT = re.compile(r"[\s,]+")
_NUMERIC_NAME = re.compile(r"^(?:option-)?(\d{1,3})$")
_HEX_SEP = re.compile(r"^[0-9a-fA-F]{1,2}([:-])[0-9a-fA-F]{1,2}(?:\1[0-9a-fA-F]{1,2})*$")
_HEX_PLAIN = re.compile(r"^(?:0[xX])?((?:[0-9a-fA-F]{2})*)$")
_LABEL_OK = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$")


def spec_for(code: int) -> OptionSpec:
    """The spec for ``code``; unknown codes are opaque BYTES ('option-NNN')."""
    spec = OPTIONS_BY_CODE.get(code)
    if spec is None:
        spec = OptionSpec(code, f"option-{code}", OptionKind.BYTES)
    return spec


# --- text -> typed value ------------------------------------------------------

def _items(text: str) -> list[str]:
    return [t for t in _SPLIT.split(text.strip()) if t]


def _ip_bytes(text: object) -> bytes:
    """4 wire bytes of an address given as dotted text or host-order int."""
    if isinstance(text, int) and not isinstance(text, bool):
        if 0 <= text <= 0xFFFFFFFF:
            return text.to_bytes(4, "big")
        raise OptionValueError(f"{text!r} is not an IPv4 address")
    if isinstance(text, str):
        try:
            return socket.inet_pton(socket.AF_INET, text)
        except (OSError, ValueError):
            pass
    raise OptionValueError(f"{text!r} is not an IPv4 address")


def _int_value(text: object, kind: OptionKind) -> int:
    lo, hi, _ = _INT_RANGES[kind]
    if isinstance(text, bool):
        value = int(text)
    elif isinstance(text, int):
        value = text
    elif isinstance(text, str):
        t = text.strip()
        try:
            value = int(t, 16) if t[:2].lower() in ("0x", "-0x") else int(t, 10)
        except ValueError:
            raise OptionValueError(f"{text!r} is not an integer") from None
    else:
        raise OptionValueError(f"{text!r} is not an integer")
    if not lo <= value <= hi:
        raise OptionValueError(f"{value} is out of range {lo}..{hi}")
    return value


def _hex_bytes(text: str) -> bytes:
    """'01:02:0a', '01-02-0a', '0x01020a', '01020a' or '' -> bytes; a
    double-quoted string is taken literally (UTF-8), for vendor strings."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return t[1:-1].encode("utf-8")
    if _HEX_SEP.match(t):
        return bytes(int(p, 16) for p in re.split(r"[:-]", t))
    m = _HEX_PLAIN.match(t)
    if m:
        return bytes.fromhex(m.group(1))
    raise OptionValueError(f"{text!r} is not hex bytes (like 01:02:0a or 0x01020a)")


def _unquote(text: str) -> str:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        return t[1:-1]
    return t


def _text_to_value(spec: OptionSpec, text: str) -> object:
    """Parse config/admin text into the typed value encode_option takes."""
    kind = spec.kind
    if kind is OptionKind.STRING:
        value = _unquote(text)
        if not value:
            raise OptionValueError("an empty string is not allowed")
        return value
    if kind is OptionKind.BYTES or kind is OptionKind.CLIENT_ID:
        return _hex_bytes(text)
    if kind is OptionKind.IP:
        items = _items(text)
        if len(items) != 1:
            raise OptionValueError(f"{text.strip()!r} is not one IPv4 address")
        return items[0]
    if kind in _INT_RANGES:
        return _int_value(text, kind)
    if kind is OptionKind.BOOL:
        t = text.strip().lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise OptionValueError(f"{text.strip()!r} is not a boolean (true/false)")
    items = _items(text)
    if not items:
        raise OptionValueError("an empty list is not allowed")
    if kind is OptionKind.IPS or kind is OptionKind.DOMAIN_LIST:
        return items
    if kind is OptionKind.U8S:
        return [_int_value(t, OptionKind.U8) for t in items]
    if kind is OptionKind.U16S:
        return [_int_value(t, OptionKind.U16) for t in items]
    if kind is OptionKind.IP_PAIRS:
        if len(items) % 2:
            raise OptionValueError(f"{text.strip()!r} is not a list of address pairs")
        return list(zip(items[::2], items[1::2]))
    if kind is OptionKind.CLASSLESS_ROUTES:
        if len(items) % 2 or any("/" not in d or "/" in r for d, r in zip(items[::2], items[1::2])):
            raise OptionValueError(
                f"{text.strip()!r} is not a list of routes like '10.0.0.0/8 10.1.0.1'")
        return list(zip(items[::2], items[1::2]))
    if kind is OptionKind.RELAY_AGENT_INFO:
        result = []
        for item in items:
            sub, sep, hexval = item.partition("=")
            if not sep:
                raise OptionValueError(f"{item!r} is not a sub-option like '1=01:02'")
            sub = sub.strip().lower()
            code = RELAY_SUBOPTION_NAMES.get(sub)
            if code is None:
                code = _int_value(sub, OptionKind.U8)
            result.append((code, _hex_bytes(hexval)))
        return result
    raise AssertionError(kind)  # pragma: no cover - every kind handled above


def option_from_text(name: str, text: str) -> tuple[int, bytes]:
    """Encode a config/admin value: ``option_from_text('routers',
    '10.1.0.1')`` -> ``(3, b'\\x0a\\x01\\x00\\x01')``.

    ``name`` is a table name or alias (case-insensitive), or ``option-NNN``
    / ``NNN``; a number for a known code uses that option's type, an unknown
    code takes hex BYTES.  Raises OptionValueError.
    """
    key = name.strip().lower()
    spec = OPTIONS_BY_NAME.get(key)
    if spec is None:
        m = _NUMERIC_NAME.match(key)
        if not m:
            raise OptionValueError(f"unknown option {name!r}")
        code = int(m.group(1))
        if not 1 <= code <= 254:
            raise OptionValueError(f"option code {code} is not in 1..254")
        spec = spec_for(code)
    if not isinstance(text, str):
        raise OptionValueError(f"{text!r} is not text")
    return spec.code, _encode(spec, _text_to_value(spec, text))


# --- typed value -> wire ------------------------------------------------------

def _encode_domain(name: str) -> bytes:
    """One RFC 1035 §3.1 name, uncompressed (RFC 3397 §2 lets us skip
    compression; clients must accept either)."""
    if name == ".":
        return b"\0"
    if name.endswith("."):
        name = name[:-1]
    out = bytearray()
    for label in name.split("."):
        if not _LABEL_OK.match(label) or len(label) > 63:
            raise OptionValueError(f"{name!r} is not a domain name")
        out.append(len(label))
        out += label.encode("ascii")
    out.append(0)
    if len(out) > 255:  # RFC 1035 §3.1: 255 octets on the wire
        raise OptionValueError(f"{name!r} is longer than 255 bytes")
    return bytes(out)


def _encode_route(dest: object, router: object) -> bytes:
    """RFC 3442 §3: width, the significant destination octets, router."""
    if not isinstance(dest, str):
        raise OptionValueError(f"{dest!r} is not a destination like 10.0.0.0/8")
    net, sep, width_text = dest.partition("/")
    if not sep or not width_text.isdigit() or int(width_text) > 32:
        raise OptionValueError(f"{dest!r} is not a destination like 10.0.0.0/8")
    width = int(width_text)
    addr = int.from_bytes(_ip_bytes(net), "big")
    mask = netmask(width)
    if addr & ~mask & 0xFFFFFFFF:
        raise OptionValueError(f"{dest!r} has host bits set")
    significant = (width + 7) // 8
    return bytes((width,)) + addr.to_bytes(4, "big")[:significant] + _ip_bytes(router)


def _as_list(value: object) -> list[object]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise OptionValueError(f"{value!r} is not a list")


def _encode(spec: OptionSpec, value: object) -> bytes:
    """Typed value -> wire bytes for ``spec`` (OptionValueError if unfit)."""
    kind = spec.kind
    if kind is not OptionKind.STRING and isinstance(value, str) and kind not in (
            OptionKind.IP, OptionKind.U8, OptionKind.U16, OptionKind.U32, OptionKind.I32):
        # Convenience: text for a structured kind means "parse it".
        value = _text_to_value(spec, value)
    if kind is OptionKind.IP:
        return _ip_bytes(value)
    if kind in _INT_RANGES:
        return struct.pack(_INT_RANGES[kind][2], _int_value(value, kind))
    if kind is OptionKind.STRING:
        if isinstance(value, bytes):
            return value
        if not isinstance(value, str):
            raise OptionValueError(f"{value!r} is not a string")
        return value.encode("utf-8")
    if kind is OptionKind.BYTES or kind is OptionKind.CLIENT_ID:
        if not isinstance(value, (bytes, bytearray)):
            raise OptionValueError(f"{value!r} is not bytes")
        if kind is OptionKind.CLIENT_ID and len(value) < 2:
            raise OptionValueError("a client identifier needs a type byte and at least one more")
        return bytes(value)
    if kind is OptionKind.BOOL:
        if value in (True, False):  # also 0/1
            return b"\x01" if value else b"\x00"
        raise OptionValueError(f"{value!r} is not a boolean")
    items = _as_list(value)
    if kind is OptionKind.DOMAIN_LIST:
        return _encode_domains(items)
    if kind is OptionKind.IPS:
        return b"".join(_ip_bytes(v) for v in items)
    if kind is OptionKind.U8S:
        return bytes(_int_value(v, OptionKind.U8) for v in items)
    if kind is OptionKind.U16S:
        return b"".join(struct.pack("!H", _int_value(v, OptionKind.U16)) for v in items)
    pairs = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise OptionValueError(f"{item!r} is not a pair")
        pairs.append(item)
    if kind is OptionKind.IP_PAIRS:
        return b"".join(_ip_bytes(a) + _ip_bytes(b) for a, b in pairs)
    if kind is OptionKind.CLASSLESS_ROUTES:
        return b"".join(_encode_route(d, r) for d, r in pairs)
    if kind is OptionKind.RELAY_AGENT_INFO:
        out = bytearray()
        for sub, data in pairs:
            code = _int_value(sub, OptionKind.U8)
            if not isinstance(data, (bytes, bytearray)) or len(data) > 255:
                raise OptionValueError(f"sub-option {code} value must be at most 255 bytes")
            out += bytes((code, len(data))) + data
        return bytes(out)
    raise AssertionError(kind)  # pragma: no cover


def _encode_domains(items: list[object]) -> bytes:
    names: list[str] = []
    for n in items:
        if not isinstance(n, str):
            raise OptionValueError(f"{n!r} is not a domain name")
        names.append(n)
    return b"".join(_encode_domain(n) for n in names)


def encode_option(code: int, value: object) -> bytes:
    """Typed value -> wire bytes for option ``code`` (the inverse of
    decode_option).  Strings are accepted for any kind and parsed as text.
    Unknown codes take bytes.  Raises OptionValueError."""
    return _encode(spec_for(code), value)


# --- wire -> typed value ------------------------------------------------------

def _need(raw: bytes, code: int, size: int | None = None, multiple: int | None = None,
          minimum: int = 0) -> None:
    n = len(raw)
    if size is not None and n != size:
        raise MalformedPacket(f"option {code} must be {size} bytes, not {n}")
    if multiple is not None and n % multiple:
        raise MalformedPacket(f"option {code} length {n} is not a multiple of {multiple}")
    if n < minimum:
        raise MalformedPacket(f"option {code} must be at least {minimum} bytes, not {n}")


def _decode_domains(raw: bytes, code: int) -> list[str]:
    """RFC 3397 §2 / RFC 1035 §4.1.4: a list of names, possibly compressed;
    pointers are offsets into the (concatenated) option value.

    Every pointer must go strictly below where the current stretch of
    labels began, so each name is read in finitely many steps whatever the
    input; a name over 255 bytes is refused as RFC 1035 requires.
    """
    names = []
    pos, end = 0, len(raw)
    while pos < end:
        labels: list[str] = []
        wire_len = 0
        cur = pos
        floor = pos  # start of the current stretch; pointers must go below it
        next_name = None  # where the next name starts once we have jumped
        while True:
            if cur >= end:
                raise MalformedPacket(f"option {code}: domain name runs past the end")
            length = raw[cur]
            if length == 0:
                cur += 1
                wire_len += 1
                break
            if length & 0xC0 == 0xC0:
                if cur + 1 >= end:
                    raise MalformedPacket(f"option {code}: truncated compression pointer")
                target = ((length & 0x3F) << 8) | raw[cur + 1]
                if target >= floor:
                    raise MalformedPacket(f"option {code}: compression pointer does not point back")
                if next_name is None:
                    next_name = cur + 2
                cur = floor = target
                continue
            if length & 0xC0:
                raise MalformedPacket(f"option {code}: bad label type")
            if cur + 1 + length > end:
                raise MalformedPacket(f"option {code}: label runs past the end")
            labels.append(raw[cur + 1:cur + 1 + length].decode("ascii", "replace"))
            wire_len += 1 + length
            if wire_len > 255:
                raise MalformedPacket(f"option {code}: domain name longer than 255 bytes")
            cur += 1 + length
        names.append(".".join(labels) if labels else ".")
        pos = cur if next_name is None else next_name
    return names


def _decode_routes(raw: bytes, code: int) -> list[tuple[str, str]]:
    """RFC 3442 §3; bits beyond the width are masked off (the RFC says they
    must be zero; masking makes the display re-encodable)."""
    routes = []
    pos, end = 0, len(raw)
    while pos < end:
        width = raw[pos]
        if width > 32:
            raise MalformedPacket(f"option {code}: route prefix /{width} is longer than 32")
        significant = (width + 7) // 8
        stop = pos + 1 + significant + 4
        if stop > end:
            raise MalformedPacket(f"option {code}: route runs past the end")
        dest = int.from_bytes(raw[pos + 1:pos + 1 + significant].ljust(4, b"\0"), "big")
        dest &= netmask(width)
        routes.append((f"{socket.inet_ntoa(dest.to_bytes(4, 'big'))}/{width}",
                       socket.inet_ntoa(raw[stop - 4:stop])))
        pos = stop
    return routes


def decode_option(code: int, raw: bytes) -> object:
    """Wire bytes -> typed value: IP -> '10.1.0.1', IPS -> list of those,
    integers -> int, BOOL -> bool, STRING -> str (UTF-8, undecodable bytes
    replaced), BYTES/CLIENT_ID/unknown -> bytes, RELAY_AGENT_INFO -> [(sub,
    bytes)], DOMAIN_LIST -> [name], CLASSLESS_ROUTES -> [('10.0.0.0/8',
    '10.1.0.1')], IP_PAIRS -> [(ip, ip)].  Raises MalformedPacket."""
    raw = bytes(raw)
    spec = OPTIONS_BY_CODE.get(code)
    if spec is None:
        return raw
    kind = spec.kind
    if kind is OptionKind.IP:
        _need(raw, code, size=4)
        return socket.inet_ntoa(raw)
    if kind in _INT_RANGES:
        fmt = _INT_RANGES[kind][2]
        _need(raw, code, size=struct.calcsize(fmt))
        return struct.unpack(fmt, raw)[0]
    if kind is OptionKind.IPS:
        _need(raw, code, multiple=4)
        return [socket.inet_ntoa(raw[i:i + 4]) for i in range(0, len(raw), 4)]
    if kind is OptionKind.IP_PAIRS:
        _need(raw, code, multiple=8)
        return [(socket.inet_ntoa(raw[i:i + 4]), socket.inet_ntoa(raw[i + 4:i + 8]))
                for i in range(0, len(raw), 8)]
    if kind is OptionKind.U8S:
        return list(raw)
    if kind is OptionKind.U16S:
        _need(raw, code, multiple=2)
        return [v for (v,) in struct.iter_unpack("!H", raw)]
    if kind is OptionKind.BOOL:
        _need(raw, code, size=1)
        if raw[0] > 1:
            raise MalformedPacket(f"option {code}: boolean value {raw[0]} is not 0 or 1")
        return bool(raw[0])
    if kind is OptionKind.STRING:
        # RFC 2132 says no trailing NUL, some clients send one anyway.
        return raw.rstrip(b"\0").decode("utf-8", "replace")
    if kind is OptionKind.BYTES:
        return raw
    if kind is OptionKind.CLIENT_ID:
        _need(raw, code, minimum=2)
        return raw
    if kind is OptionKind.RELAY_AGENT_INFO:
        # Imported here so packet.py stays free to import this module.
        from cnrd.dhcp.packet import parse_suboptions
        return parse_suboptions(raw, code)
    if kind is OptionKind.DOMAIN_LIST:
        return _decode_domains(raw, code)
    if kind is OptionKind.CLASSLESS_ROUTES:
        return _decode_routes(raw, code)
    raise AssertionError(kind)  # pragma: no cover


# --- wire -> display text -----------------------------------------------------

def _hex_text(raw: bytes) -> str:
    return raw.hex(":")


def _value_to_text(spec: OptionSpec, value: object) -> str:
    kind = spec.kind
    if kind is OptionKind.STRING:
        s = str(value)
        # Quote when the bare text would not read back the same.
        if not s or s != s.strip() or (s[0] == '"' and s[-1] == '"'):
            return f'"{s}"'
        return s
    if kind is OptionKind.BYTES or kind is OptionKind.CLIENT_ID:
        return _hex_text(value)  # type: ignore[arg-type]
    if kind is OptionKind.BOOL:
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if kind is OptionKind.RELAY_AGENT_INFO:
        return ", ".join(f"{c}={_hex_text(v)}" for c, v in cast("Iterable[tuple[int, bytes]]", value))
    if kind in (OptionKind.IP_PAIRS, OptionKind.CLASSLESS_ROUTES):
        return ", ".join(f"{a} {b}" for a, b in cast("Iterable[tuple[object, object]]", value))
    return ", ".join(str(v) for v in cast("Iterable[object]", value))


def option_to_text(code: int, raw: bytes) -> str:
    """Display text for a wire value, in option_from_text syntax where the
    value is well-formed.  Never raises on bad client data: a value its
    type cannot decode is shown as hex (admin pages must still render)."""
    spec = spec_for(code)
    try:
        value = decode_option(code, raw)
    except MalformedPacket:
        return _hex_text(bytes(raw))
    return _value_to_text(spec, value)
