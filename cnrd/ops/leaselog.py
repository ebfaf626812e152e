"""The lease lines of the log: one per DHCP message that offers, grants, refuses or ends a lease.

Worded as ISC dhcpd writes them to syslog, so an operator's ``grep
"DHCPACK on 10.0.0.5"`` keeps working::

    DHCPOFFER on 10.0.0.5 to 02:00:00:00:00:10 (laptop) (client-id 01:02:00:00:00:00:10) via 10.98.1.1 lease 3600 s
    DHCPACK on 10.0.0.5 to 02:00:00:00:00:10 via eth1 lease 3600 s
    DHCPNAK on 10.0.0.5 to 02:00:00:00:00:10 via eth1: requested address not available
    DHCPACK to 10.0.0.7 (02:00:00:00:00:11) via eth1                 (the answer to a DHCPINFORM)
    BOOTREPLY for 10.0.0.9 to unknown (02:00:00:00:00:12) via eth1 lease infinite
    DHCPRELEASE of 10.0.0.5 from 02:00:00:00:00:10 (laptop)
    DHCPDECLINE of 10.0.0.5 from 02:00:00:00:00:10
    lease 10.0.0.5 expired (02:00:00:00:00:10) (laptop)

The host name is the one the server holds for the lease, in parentheses
after the hardware address as dhcpd puts it; the client identifier is
cnrd's addition (dhcpd leaves it out, but it is what identifies a client
that sends one); ``via`` is the relay's address (giaddr) or the interface.

Pure formatting: a :class:`LeaseLine` is a format with its fields; the
caller builds one only for a line the log-settings show, and the JSON line
carries the same fields (:func:`cnrd.ops.logs.json_line`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from socket import inet_ntoa
from typing import Any

from cnrd.dhcp.packet import DhcpPacket, MessageType
from cnrd.text import int_to_ip

__all__ = [
    "EVENT",
    "INFINITE",
    "LeaseLine",
    "client_text",
    "decline_line",
    "expiry_line",
    "release_line",
    "reply_line",
    "reply_text",
]

#: The ``event`` field of every lease line (in the JSON format).
EVENT = "dhcp-lease"
#: Option 51's value for a lease that never ends.
INFINITE = 0xFFFFFFFF

_NAMES: dict[int, str] = {MessageType.OFFER: "DHCPOFFER", MessageType.ACK: "DHCPACK", MessageType.NAK: "DHCPNAK"}
_NO_IDENTIFIER = "<no identifier>"  # dhcpd's words for a client with no hardware address


@dataclass(frozen=True, slots=True)
class LeaseLine:
    """One lease line: a Twisted log format, its fields, and whether it reports a success.

    ``success`` lines (offers, grants, releases, expiries) are the ones
    ``log-settings = no-success-messages`` hides; a NAK or a DECLINE tells
    of trouble and always shows.
    """

    format: str
    fields: dict[str, Any]
    success: bool = True

    @property
    def text(self) -> str:
        """The line as the text log shows it."""
        return self.format.format(**self.fields)


def client_text(hw: bytes) -> str:
    """A hardware address (chaddr, without the type byte) as the line shows it: ``02:00:00:00:00:10``."""
    return hw.hex(":") if hw else _NO_IDENTIFIER


def _printable(name: str) -> str:
    # A host name comes from the client: control characters would forge or
    # split log lines, so they are shown escaped.
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _fields(kind: str, address: int, hw: bytes, client_id: bytes | None, host_name: str, via: str | None,
            lease_time: int | None = None, reason: str | None = None) -> dict[str, Any]:
    return {
        "event": EVENT,
        "kind": kind,
        "address": int_to_ip(address),
        "hw": client_text(hw),
        "client_id": client_id.hex(":") if client_id else None,
        "host_name": _printable(host_name) if host_name else None,
        "via": via,
        "lease_time": lease_time,
        "reason": reason,
    }


def _who(fields: dict[str, Any]) -> str:
    """The host name and client identifier parts, each only when known."""
    out = ""
    if fields["host_name"] is not None:
        out += " ({host_name})"
    if fields["client_id"] is not None:
        out += " (client-id {client_id})"
    return out


def _lease(lease_time: int | None) -> str:
    if lease_time is None:
        return ""
    return " lease infinite" if lease_time == INFINITE else " lease {lease_time} s"


def _u32(value: bytes | None) -> int | None:
    return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None


def reply_line(reply: DhcpPacket, via: str, *, host_name: str = "", client_id: bytes | None = None,
               request: DhcpPacket | None = None) -> LeaseLine | None:
    """The line for a reply the server sends: OFFER, ACK (a lease's or an INFORM's), NAK, BOOTREPLY.

    Everything comes from the reply itself (message type, yiaddr, chaddr,
    option 61, option 51, option 56), except what only the server knows:
    ``host_name`` (the lease's), ``client_id`` (the lease's, used when the
    reply does not echo option 61) and ``request`` (a NAK names the address
    the client asked for, which the NAK itself does not carry).  None for
    replies that are not about a lease (lease query answers).
    """
    options = reply.options
    kind = options.get(53)
    cid = options.get(61) or client_id
    if kind is None:
        # BOOTP: dhcpd's "BOOTREPLY for <address> to <host> (<hw>) via <via>".
        f = _fields("BOOTREPLY", reply.yiaddr, reply.chaddr, None, host_name, via, _u32(options.get(51)) or INFINITE)
        return LeaseLine("BOOTREPLY for {address} to " + ("{host_name}" if host_name else "unknown")
                         + " ({hw}) via {via}" + _lease(f["lease_time"]), f)
    name = _NAMES.get(kind[0]) if len(kind) == 1 else None
    if name is None:
        return None
    if kind[0] == MessageType.NAK:
        asked = 0
        if request is not None:
            asked = _u32(request.options.get(50)) or request.ciaddr
        reason = options.get(56, b"").decode("utf-8", "replace") or None
        f = _fields(name, asked, reply.chaddr, cid, "", via, None, reason)
        if not asked:
            f["address"] = None
        fmt = ("DHCPNAK on {address} to {hw}" if asked else "DHCPNAK to {hw}") + _who(f) + " via {via}"
        if reason is not None:
            f["reason"] = _printable(reason)
            fmt += ": {reason}"
        return LeaseLine(fmt, f, success=False)
    if kind[0] == MessageType.ACK and not reply.yiaddr:
        # The answer to a DHCPINFORM (RFC 2131 §4.3.5: yiaddr 0, ciaddr the
        # client's): dhcpd's "DHCPACK to <ciaddr> (<hw>) via <via>".
        f = _fields(name, reply.ciaddr, reply.chaddr, cid, host_name, via)
        return LeaseLine("DHCPACK to {address} ({hw})" + _who(f) + " via {via}", f)
    f = _fields(name, reply.yiaddr, reply.chaddr, cid, host_name, via, _u32(options.get(51)))
    return LeaseLine("{kind} on {address} to {hw}" + _who(f) + " via {via}" + _lease(f["lease_time"]), f)


_FAST_NAMES = {bytes([MessageType.OFFER]): "DHCPOFFER on ", bytes([MessageType.ACK]): "DHCPACK on "}
_PACK_U32 = struct.Struct("!I").pack
# The lease time's words by option 51's value: a few values, the same for
# every reply of a policy.  Bounded, as a misconfigured value may vary.
_LEASE_WORDS: dict[bytes | None, str] = {}


def _lease_words(value: bytes | None) -> str:
    words = _LEASE_WORDS.get(value)
    if words is None:
        if len(_LEASE_WORDS) >= 64:
            _LEASE_WORDS.clear()
        lease_time = _u32(value)
        words = _LEASE_WORDS[value] = "" if lease_time is None else _lease(lease_time).format(lease_time=lease_time)
    return words


def reply_text(reply: DhcpPacket, via: str, *, host_name: str = "", client_id: bytes | None = None,
               request: DhcpPacket | None = None) -> str | None:
    """``reply_line(...).text``, built straight from the reply for the lines of every exchange.

    An OFFER or an ACK of a lease (nearly every line a busy server writes)
    is put together here without the fields a :class:`LeaseLine` carries;
    every other reply goes through :func:`reply_line`.
    """
    options = reply.options
    name = _FAST_NAMES.get(options.get(53))  # type: ignore[arg-type]  # None is simply not a key
    yiaddr = reply.yiaddr
    if name is None or not yiaddr:
        line = reply_line(reply, via, host_name=host_name, client_id=client_id, request=request)
        return None if line is None else line.text
    chaddr = reply.chaddr
    hw = chaddr.hex(":") if chaddr else _NO_IDENTIFIER
    host = f" ({_printable(host_name)})" if host_name else ""
    cid = options.get(61) or client_id
    ident = f" (client-id {cid.hex(':')})" if cid else ""
    return f"{name}{inet_ntoa(_PACK_U32(yiaddr))} to {hw}{host}{ident} via {via}{_lease_words(options.get(51))}"


def release_line(address: int, hw: bytes, client_id: bytes | None, host_name: str = "") -> LeaseLine:
    """A DHCPRELEASE that freed ``address``: dhcpd's "DHCPRELEASE of <address> from <hw> (<host>)"."""
    f = _fields("DHCPRELEASE", address, hw, client_id, host_name, None)
    return LeaseLine("DHCPRELEASE of {address} from {hw}" + _who(f), f)


def decline_line(address: int, hw: bytes, client_id: bytes | None = None) -> LeaseLine:
    """A DHCPDECLINE that took ``address`` out of use: "DHCPDECLINE of <address> from <hw>"."""
    f = _fields("DHCPDECLINE", address, hw, client_id, "", None)
    return LeaseLine("DHCPDECLINE of {address} from {hw}" + _who(f), f, success=False)


def expiry_line(address: int, hw: bytes, client_id: bytes | None, host_name: str = "") -> LeaseLine:
    """A lease that ran out: "lease <address> expired (<hw>)"."""
    f = _fields("expiry", address, hw, client_id, host_name, None)
    return LeaseLine("lease {address} expired ({hw})" + _who(f), f)
