"""The failover wire codec: draft-ietf-dhc-failover-12 ([D]) as ISC dhcpd 4.4 speaks it.

One failover relationship is one TCP connection (port 647, [D] §8.1) carrying
back-to-back messages ([D] §6.1)::

    length (2) | type (1) | payload offset (1) | time (4) | xid (4) | [extra header] | options

Options are ``code (2) | length (2) | value`` TLVs ([D] §6.2).  This module turns
bytes into :class:`Message` objects and back, and knows which options each
message type carries and how big they are.  It knows nothing of connections,
timers or failover states: the peer logic decides what to answer.

Design, and where it follows ISC rather than the letter of [D] (the digest
``shared/docs/failover-protocol.md`` has the details; "ISC" below means ISC
DHCP 4.4's ``server/failover.c`` and ``server/stables.c``):

* :class:`Message` keeps its options raw and in wire order, so ``encode(decode(b))
  == b`` for every well-formed frame; typed properties decode on access.
* Decoding has two layers.  *Framing* (length 12..2048, payload offset, TLVs
  inside the message) is always checked.  *Validation* (``strict=True``, the
  default) adds what ISC's parser and message handlers enforce: the message type,
  the size of fixed-size options, no repeated option, and the options without
  which a message cannot be acted on (see ``REQUIRED``).
* Options a message type does not use (``ALLOWED``, ISC's ``fto_allowed`` table)
  are kept for re-encoding but otherwise ignored, as ISC does: they are neither
  size- nor duplicate-checked and the typed properties do not see them.  Unknown
  codes (> 29) are ignored the same way ([D] §6.1: MUST be ignored).
* Errors are :class:`FailoverWireError`.  ``fatal`` errors mean the byte stream
  or the message format is broken: drop the link (ISC closes without a word;
  a DISCONNECT carrying ``reject_reason`` is the polite [D] way).  Non-fatal
  errors are well-framed messages that lack what their type needs; they carry
  the decoded message so the peer can answer with the right reject (CONNECTACK
  for a CONNECT, BNDACK for a BNDUPD) and the stream stays usable.
* Batched BNDUPD/BNDACK ([D] §6.3) decode, and :meth:`Message.bindings` splits
  them; ISC can neither send nor parse them, so the builders never batch.

Pure module: stdlib only, no reactor, no clock (callers pass ``time``).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

__all__ = [
    "PORT",
    "HEADER_SIZE",
    "MIN_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "HBA_SIZE",
    "MessageType",
    "Option",
    "ServerState",
    "BindingStatus",
    "RejectReason",
    "ServerFlags",
    "IPFlags",
    "DDNSFlags",
    "TLSRequest",
    "TLSReply",
    "ALLOWED",
    "FailoverWireError",
    "Message",
    "decode",
    "validate",
    "encode",
    "Framer",
    "connect",
    "connectack",
    "state",
    "bndupd",
    "bndack",
    "contact",
    "disconnect",
    "updreqall",
    "updreq",
    "upddone",
    "poolreq",
    "poolresp",
    "hba_from_split",
    "hba_from_buckets",
    "hba_buckets",
    "hba_has_bucket",
    "load_balance_hash",
]

PORT = 647  # IANA "dhcp-failover"; [D] §8.2
HEADER_SIZE = 12  # length, type, payload offset, time, xid ([D] §6.1)
MIN_MESSAGE_SIZE = 12  # [D] §6.1
MAX_MESSAGE_SIZE = 2048  # [D] §6.1; ISC drops the link on anything bigger
PROTOCOL_VERSION = 1  # [D] §12.20
HBA_SIZE = 32  # 256 buckets, one bit each ([D] §12.11, RFC 3074)

_HEADER = struct.Struct("!HBBII")
_TLV = struct.Struct("!HH")


# --- code tables -------------------------------------------------------------------


class MessageType(enum.IntEnum):
    """Message types ([D] §6.1).  Codes 0 and 13..127 are unknown-but-mandatory
    (receiving one MUST close the connection); 128..255 are optional extensions
    a receiver SHOULD ignore."""

    POOLREQ = 1
    POOLRESP = 2
    BNDUPD = 3
    BNDACK = 4
    CONNECT = 5
    CONNECTACK = 6
    UPDREQALL = 7
    UPDDONE = 8
    UPDREQ = 9
    STATE = 10
    CONTACT = 11
    DISCONNECT = 12


class Option(enum.IntEnum):
    """Option codes ([D] §12, alphabetical as the draft numbers them).

    ISC 4.4 uses exactly these 29 codes; its pre-3.1 private codes (grace
    expiry, sending-server address, ...) are gone, so there is no ISC extra.
    """

    ADDRESSES_TRANSFERRED = 1  # u32, POOLRESP (§12.1)
    ASSIGNED_IP_ADDRESS = 2  # IPv4, BNDUPD/BNDACK, opens each binding (§12.2)
    BINDING_STATUS = 3  # u8, BindingStatus (§12.3)
    CLIENT_IDENTIFIER = 4  # DHCP option 61 value, type byte included (§12.4)
    CLIENT_HARDWARE_ADDRESS = 5  # htype (1) + chaddr[0:hlen] (§12.5)
    CLIENT_LAST_TRANSACTION_TIME = 6  # time (§12.6)
    CLIENT_REPLY_OPTIONS = 7  # cookie + DHCP options (§12.7)
    CLIENT_REQUEST_OPTIONS = 8  # cookie + DHCP options (§12.8)
    DDNS = 9  # u16 flags + FQDN in DNS wire format (§12.9)
    DELAYED_SERVICE_PARAMETER = 10  # u8 seconds, RFC 3074 (§12.10)
    HASH_BUCKET_ASSIGNMENT = 11  # 32 bytes (§12.11)
    IP_FLAGS = 12  # u16 (the figure in §12.12 says length 1; the field is 16 bits)
    LEASE_EXPIRATION_TIME = 13  # time (§12.13)
    MAX_UNACKED_BNDUPD = 14  # u32 (§12.14)
    MCLT = 15  # u32 seconds (§12.15)
    MESSAGE = 16  # text (§12.16)
    MESSAGE_DIGEST = 17  # type u8 + digest (§12.17)
    POTENTIAL_EXPIRATION_TIME = 18  # time (§12.18)
    RECEIVE_TIMER = 19  # u32 seconds (§12.19)
    PROTOCOL_VERSION = 20  # u8 (§12.20)
    REJECT_REASON = 21  # u8, RejectReason (§12.21)
    RELATIONSHIP_NAME = 22  # text (§12.22)
    SERVER_FLAGS = 23  # u8, ServerFlags (§12.23)
    SERVER_STATE = 24  # u8, ServerState (§12.24)
    START_TIME_OF_STATE = 25  # time (§12.25)
    TLS_REPLY = 26  # u8, TLSReply (§12.26)
    TLS_REQUEST = 27  # u8, TLSRequest (§12.27)
    VENDOR_CLASS_IDENTIFIER = 28  # text or bytes (§12.28)
    VENDOR_SPECIFIC_OPTIONS = 29  # nested 2+2 TLVs (§12.29)


class ServerState(enum.IntEnum):
    """server-state values ([D] §12.24).  0 is reserved; STARTUP is never sent
    (the STARTUP server flag is, with the previous state).  RECOVER-WAIT has no
    code in [D]; ISC sends 254 and so must we."""

    STARTUP = 1
    NORMAL = 2
    COMMUNICATIONS_INTERRUPTED = 3
    PARTNER_DOWN = 4
    POTENTIAL_CONFLICT = 5
    RECOVER = 6
    PAUSED = 7
    SHUTDOWN = 8
    RECOVER_DONE = 9
    RESOLUTION_INTERRUPTED = 10
    CONFLICT_DONE = 11
    RECOVER_WAIT = 254  # ISC's code (includes/failover.h)


class BindingStatus(enum.IntEnum):
    """binding-status values ([D] §12.3); FREE is the primary's, BACKUP the
    secondary's available pool."""

    FREE = 1
    ACTIVE = 2
    EXPIRED = 3
    RELEASED = 4
    ABANDONED = 5
    RESET = 6
    BACKUP = 7


class RejectReason(enum.IntEnum):
    """reject-reason values ([D] §12.21); 0, 22..253 and 255 are reserved."""

    ILLEGAL_IP_ADDRESS = 1
    FATAL_CONFLICT = 2
    MISSING_BINDING_INFO = 3
    TIME_MISMATCH = 4
    INVALID_MCLT = 5
    MISC_REJECT = 6  # "connection rejected, unknown reason"
    DUPLICATE_CONNECTION = 7
    INVALID_PARTNER = 8
    TLS_NOT_SUPPORTED = 9
    TLS_NOT_CONFIGURED = 10
    TLS_REQUIRED = 11
    DIGEST_NOT_SUPPORTED = 12
    DIGEST_NOT_CONFIGURED = 13
    VERSION_MISMATCH = 14
    OUTDATED_BINDING_INFO = 15
    LESS_CRITICAL_BINDING_INFO = 16
    NO_TRAFFIC = 17
    HBA_CONFLICT = 18  # [D] §7.8.2 step 8 says 19 by mistake; table and ISC say 18
    IP_NOT_RESERVED = 19
    DIGEST_FAILED = 20
    MISSING_DIGEST = 21
    UNKNOWN = 254  # "error occurred but does not match any reason code"


class ServerFlags(enum.IntFlag):
    """server-flags bits ([D] §12.23); bits 1-7 must be zero."""

    STARTUP = 0x01


class IPFlags(enum.IntFlag):
    """IP-flags bits ([D] §12.12), numbered from the least-significant bit."""

    RESERVED = 0x0001
    BOOTP = 0x0002


class DDNSFlags(enum.IntFlag):
    """DDNS option flag bits ([D] §12.9), numbered from the least-significant bit."""

    C = 0x0001  # the A RR has been added
    A = 0x0002  # the server is responsible for the A RR
    D = 0x0004  # the PTR RR has been added
    P = 0x0008  # the server is responsible for the PTR RR


class TLSRequest(enum.IntEnum):
    """TLS-request values ([D] §12.27).  ISC always sends NONE."""

    NONE = 0
    DESIRED = 1
    REQUIRED = 2


class TLSReply(enum.IntEnum):
    """TLS-reply values ([D] §12.26).  ISC always sends NONE."""

    NONE = 0
    USE_TLS = 1


# Fixed-size options and their sizes ([D] §12).  ISC's parser drops the link
# when an option it stores has another length (failover.c, "option size").
_FIXED_SIZE: dict[int, int] = {
    Option.ADDRESSES_TRANSFERRED: 4,
    Option.ASSIGNED_IP_ADDRESS: 4,
    Option.BINDING_STATUS: 1,
    Option.CLIENT_LAST_TRANSACTION_TIME: 4,
    Option.DELAYED_SERVICE_PARAMETER: 1,
    Option.IP_FLAGS: 2,
    Option.LEASE_EXPIRATION_TIME: 4,
    Option.MAX_UNACKED_BNDUPD: 4,
    Option.MCLT: 4,
    Option.POTENTIAL_EXPIRATION_TIME: 4,
    Option.RECEIVE_TIMER: 4,
    Option.PROTOCOL_VERSION: 1,
    Option.REJECT_REASON: 1,
    Option.SERVER_FLAGS: 1,
    Option.SERVER_STATE: 1,
    Option.START_TIME_OF_STATE: 4,
    Option.TLS_REPLY: 1,
    Option.TLS_REQUEST: 1,
}
# Variable-size options with a fixed-size prefix ([D] §12.9, §12.17).
_MIN_SIZE: dict[int, int] = {Option.DDNS: 2, Option.MESSAGE_DIGEST: 1}

_O = Option
_BINDING_OPTIONS = frozenset({
    _O.ASSIGNED_IP_ADDRESS, _O.BINDING_STATUS, _O.CLIENT_IDENTIFIER,
    _O.CLIENT_HARDWARE_ADDRESS, _O.DDNS, _O.IP_FLAGS, _O.LEASE_EXPIRATION_TIME,
    _O.POTENTIAL_EXPIRATION_TIME, _O.START_TIME_OF_STATE,
    _O.CLIENT_LAST_TRANSACTION_TIME, _O.CLIENT_REQUEST_OPTIONS, _O.CLIENT_REPLY_OPTIONS,
})

#: Options each message type uses; everything else is skipped on receipt.  This is
#: ISC's ``fto_allowed`` (server/stables.c), which is [D] §7's tables plus, for
#: BNDACK, the BNDUPD options (ISC reads an echoed PET).  Never used by ISC, hence
#: ignored everywhere: delayed-service-parameter (10, RFC 3074 delayed service is not
#: implemented), message-digest (17, no HMAC-MD5 support), vendor-specific (29).
ALLOWED: dict[MessageType, frozenset[int]] = {
    MessageType.POOLREQ: frozenset(),
    MessageType.POOLRESP: frozenset({_O.ADDRESSES_TRANSFERRED}),
    MessageType.BNDUPD: _BINDING_OPTIONS,
    MessageType.BNDACK: _BINDING_OPTIONS | {_O.REJECT_REASON, _O.MESSAGE},
    MessageType.CONNECT: frozenset({
        _O.RELATIONSHIP_NAME, _O.MAX_UNACKED_BNDUPD, _O.RECEIVE_TIMER,
        _O.VENDOR_CLASS_IDENTIFIER, _O.PROTOCOL_VERSION, _O.TLS_REQUEST, _O.MCLT,
        _O.HASH_BUCKET_ASSIGNMENT}),
    MessageType.CONNECTACK: frozenset({
        _O.RELATIONSHIP_NAME, _O.MAX_UNACKED_BNDUPD, _O.RECEIVE_TIMER,
        _O.VENDOR_CLASS_IDENTIFIER, _O.PROTOCOL_VERSION, _O.TLS_REPLY,
        _O.REJECT_REASON, _O.MESSAGE}),
    MessageType.UPDREQALL: frozenset(),
    MessageType.UPDDONE: frozenset(),
    MessageType.UPDREQ: frozenset(),
    MessageType.STATE: frozenset({_O.SERVER_STATE, _O.SERVER_FLAGS, _O.START_TIME_OF_STATE}),
    MessageType.CONTACT: frozenset(),
    MessageType.DISCONNECT: frozenset({_O.REJECT_REASON, _O.MESSAGE}),
}
_NOTHING: frozenset[int] = frozenset()

# Options a message cannot be acted on without, in the order they are checked, with
# the reject reason the receiver answers with.  CONNECT follows ISC's checks (name
# -> 8, HBA -> 18, MCLT -> 5, failover.c) plus [D] §7.8's max-unacked-bndupd and
# receive-timer, whose absence makes ISC misbehave (window 0; CONTACT in a tight
# loop).  ISC does not insist on vendor-class, protocol-version or TLS-request
# (capture 08 "good-minimal"), so neither do we.  See validate() for the others.
_REQUIRED_CONNECT = (
    (_O.RELATIONSHIP_NAME, RejectReason.INVALID_PARTNER),
    (_O.HASH_BUCKET_ASSIGNMENT, RejectReason.HBA_CONFLICT),
    (_O.MCLT, RejectReason.INVALID_MCLT),
    (_O.MAX_UNACKED_BNDUPD, RejectReason.MISC_REJECT),
    (_O.RECEIVE_TIMER, RejectReason.MISC_REJECT),
)
_REQUIRED_CONNECTACK_ACCEPT = (
    (_O.RELATIONSHIP_NAME, RejectReason.INVALID_PARTNER),
    (_O.MAX_UNACKED_BNDUPD, RejectReason.MISC_REJECT),
    (_O.RECEIVE_TIMER, RejectReason.MISC_REJECT),
)
_REQUIRED_STATE = (
    (_O.SERVER_STATE, RejectReason.MISC_REJECT),
    (_O.SERVER_FLAGS, RejectReason.MISC_REJECT),
    (_O.START_TIME_OF_STATE, RejectReason.MISC_REJECT),
)


# --- errors ------------------------------------------------------------------------


class FailoverWireError(ValueError):
    """Input that is not a valid failover message, or a message its receiver
    cannot act on.

    ``reason`` is a short log-friendly phrase (no peer bytes in it).
    ``reject_reason`` is what to tell the peer: in a DISCONNECT for a fatal error
    (``RejectReason.UNKNOWN`` for plain protocol errors, where ISC just closes),
    or in the CONNECTACK/BNDACK answering a non-fatal one.
    ``fatal``: the stream or the message format is broken and the link must go;
    otherwise the message was well framed and ``message`` holds it (its xid, name
    or address is needed for the reply).  ``preceding`` lists the messages a
    :meth:`Framer.feed` call decoded before the bad one, so none is lost.
    """

    def __init__(
        self,
        reason: str,
        reject_reason: RejectReason | None = RejectReason.UNKNOWN,
        *,
        fatal: bool = True,
        message: Message | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reject_reason = reject_reason
        self.fatal = fatal
        self.message = message
        self.preceding: list[Message] = []


def _fatal(reason: str, message: Message | None = None) -> FailoverWireError:
    return FailoverWireError(reason, RejectReason.UNKNOWN, fatal=True, message=message)


# --- the message -------------------------------------------------------------------


def _as_enum(cls: type[enum.IntEnum], value: int) -> int:
    """The enum member for ``value`` if there is one, else the plain int: a peer
    may send codes we do not know, and the caller decides what that means."""
    try:
        return cls(value)
    except ValueError:
        return value


def _text(value: bytes) -> str:
    # surrogateescape keeps arbitrary bytes round-trippable: names are compared
    # byte for byte by ISC, so nothing may be lost in the str form.
    return value.decode("utf-8", "surrogateescape")


@dataclass
class Message:
    """One failover message ([D] §6.1).

    ``options`` are ``(code, value)`` pairs in wire order, unknown and ignored ones
    included, so that :func:`encode` reproduces the received bytes.  ``type`` is a
    :class:`MessageType`, or a plain int for an optional (128..255) type we do not
    know.  ``extra_header`` is whatever lay between byte 12 and the payload offset
    (nothing, in version 1).

    The typed properties read only options :data:`ALLOWED` for the type (what ISC
    would read) and return ``None`` when the option is absent.  In a batched
    BNDUPD/BNDACK they see the first binding; use :meth:`bindings`.
    """

    type: MessageType | int
    xid: int
    time: int
    options: list[tuple[int, bytes]] = field(default_factory=list)
    extra_header: bytes = b""

    # -- raw access --

    def get(self, code: int) -> bytes | None:
        """The value of the first option ``code``, whatever the message type."""
        for c, value in self.options:
            if c == code:
                return value
        return None

    def get_all(self, code: int) -> list[bytes]:
        """Every value of option ``code``, in wire order."""
        return [value for c, value in self.options if c == code]

    @property
    def allowed(self) -> frozenset[int]:
        """The option codes this message type uses (``ALLOWED``)."""
        return ALLOWED.get(self.type, _NOTHING)  # type: ignore[call-overload]

    @property
    def ignored(self) -> list[int]:
        """Codes present but skipped: unknown codes and known ones this type does
        not use, in wire order (for logging; [D] §6.1, ISC ``fto_allowed``)."""
        allowed = self.allowed
        return [c for c, _ in self.options if c not in allowed]

    def bindings(self) -> list[Message]:
        """A BNDUPD/BNDACK split into one message per binding ([D] §6.3): each
        starts at an assigned-IP-address.  An unbatched message is returned whole
        (its options may come in any order); other types give ``[self]``."""
        if self.type not in (MessageType.BNDUPD, MessageType.BNDACK):
            return [self]
        if len(self.get_all(Option.ASSIGNED_IP_ADDRESS)) <= 1:
            return [self]
        groups: list[list[tuple[int, bytes]]] = []
        lead: list[tuple[int, bytes]] = []  # non-binding options before the first address
        for code, value in self.options:
            if code == Option.ASSIGNED_IP_ADDRESS:
                groups.append([(code, value)])
            elif groups:
                groups[-1].append((code, value))
            else:
                lead.append((code, value))
        return [Message(self.type, self.xid, self.time, lead + g, self.extra_header)
                for g in groups]

    # -- typed access --

    def _value(self, code: Option) -> bytes | None:
        if code not in self.allowed:
            return None
        value = self.get(code)
        if value is None:
            return None
        size = _FIXED_SIZE.get(code)
        if size is not None and len(value) != size:
            raise _fatal(f"{code.name} has length {len(value)}, not {size}", self)
        if len(value) < _MIN_SIZE.get(code, 0):
            raise _fatal(f"{code.name} too short", self)
        return value

    def _int(self, code: Option) -> int | None:
        value = self._value(code)
        return None if value is None else int.from_bytes(value, "big")

    def _str(self, code: Option) -> str | None:
        value = self._value(code)
        return None if value is None else _text(value)

    @property
    def addresses_transferred(self) -> int | None:
        """POOLRESP: addresses moved by this POOLREQ ([D] §12.1)."""
        return self._int(Option.ADDRESSES_TRANSFERRED)

    @property
    def assigned_address(self) -> int | None:
        """The binding's IPv4 address as a host-order int ([D] §12.2)."""
        return self._int(Option.ASSIGNED_IP_ADDRESS)

    @property
    def binding_status(self) -> BindingStatus | int | None:
        """[D] §12.3; a plain int for a code outside 1..7."""
        value = self._int(Option.BINDING_STATUS)
        return None if value is None else _as_enum(BindingStatus, value)

    @property
    def client_id(self) -> bytes | None:
        """DHCP option 61 value as the client sent it ([D] §12.4)."""
        return self._value(Option.CLIENT_IDENTIFIER)

    @property
    def client_hw(self) -> bytes | None:
        """htype byte followed by chaddr[0:hlen] ([D] §12.5).  ISC rejects (6)
        a binding whose option is longer than 21 bytes; that is the peer's call."""
        return self._value(Option.CLIENT_HARDWARE_ADDRESS)

    @property
    def cltt(self) -> int | None:
        """client-last-transaction-time ([D] §12.6)."""
        return self._int(Option.CLIENT_LAST_TRANSACTION_TIME)

    @property
    def reply_options(self) -> bytes | None:
        """client-reply-options: cookie + DHCP options ([D] §12.7); ISC never sends it."""
        return self._value(Option.CLIENT_REPLY_OPTIONS)

    @property
    def request_options(self) -> bytes | None:
        """client-request-options: cookie + DHCP options ([D] §12.8); ISC never sends it."""
        return self._value(Option.CLIENT_REQUEST_OPTIONS)

    @property
    def ddns(self) -> tuple[int, bytes] | None:
        """(flags, FQDN in DNS wire format) ([D] §12.9)."""
        value = self._value(Option.DDNS)
        return None if value is None else (int.from_bytes(value[:2], "big"), value[2:])

    @property
    def hba(self) -> bytes | None:
        """hash-bucket-assignment, raw ([D] §12.11); 32 bytes in a valid CONNECT."""
        return self._value(Option.HASH_BUCKET_ASSIGNMENT)

    @property
    def ip_flags(self) -> int | None:
        """IP-flags, see :class:`IPFlags` ([D] §12.12)."""
        return self._int(Option.IP_FLAGS)

    @property
    def lease_expiration(self) -> int | None:
        """lease-expiration-time ([D] §12.13)."""
        return self._int(Option.LEASE_EXPIRATION_TIME)

    @property
    def max_unacked(self) -> int | None:
        """How many BNDUPDs the *sender* takes un-acked ([D] §12.14)."""
        return self._int(Option.MAX_UNACKED_BNDUPD)

    @property
    def mclt(self) -> int | None:
        """Maximum client lead time in seconds ([D] §12.15)."""
        return self._int(Option.MCLT)

    @property
    def message_text(self) -> str | None:
        """The human-readable message option ([D] §12.16)."""
        return self._str(Option.MESSAGE)

    @property
    def potential_expiration(self) -> int | None:
        """potential-expiration-time ([D] §12.18)."""
        return self._int(Option.POTENTIAL_EXPIRATION_TIME)

    @property
    def receive_timer(self) -> int | None:
        """The sender's tReceive in seconds ([D] §12.19, §8.3)."""
        return self._int(Option.RECEIVE_TIMER)

    @property
    def protocol_version(self) -> int | None:
        """[D] §12.20; 1."""
        return self._int(Option.PROTOCOL_VERSION)

    @property
    def reject_reason(self) -> RejectReason | int | None:
        """[D] §12.21; a plain int for a reserved code."""
        value = self._int(Option.REJECT_REASON)
        return None if value is None else _as_enum(RejectReason, value)

    @property
    def relationship_name(self) -> str | None:
        """[D] §12.22.  Compare :meth:`get` bytes when exactness matters; the
        str form is lossless (surrogateescape) but decoded as UTF-8."""
        return self._str(Option.RELATIONSHIP_NAME)

    @property
    def server_flags(self) -> int | None:
        """[D] §12.23, see :class:`ServerFlags`."""
        return self._int(Option.SERVER_FLAGS)

    @property
    def server_state(self) -> tuple[ServerState | int, int] | None:
        """(server-state, server-flags) of a STATE ([D] §12.24, §12.23); flags
        default to 0 when absent.  An unknown state comes back as a plain int
        (ISC goes to SHUTDOWN on one; the peer logic decides)."""
        value = self._int(Option.SERVER_STATE)
        if value is None:
            return None
        return _as_enum(ServerState, value), self.server_flags or 0

    @property
    def start_time_of_state(self) -> int | None:
        """STATE: when the sender entered its state; BNDUPD: when the binding took
        its status (ISC: the lease start) ([D] §12.25)."""
        return self._int(Option.START_TIME_OF_STATE)

    @property
    def tls_reply(self) -> int | None:
        """[D] §12.26, see :class:`TLSReply`."""
        return self._int(Option.TLS_REPLY)

    @property
    def tls_request(self) -> int | None:
        """[D] §12.27, see :class:`TLSRequest`."""
        return self._int(Option.TLS_REQUEST)

    @property
    def vendor_class(self) -> str | None:
        """vendor-class-identifier, e.g. ``isc-4.4.3-P1`` ([D] §12.28)."""
        return self._str(Option.VENDOR_CLASS_IDENTIFIER)


# --- decoding ----------------------------------------------------------------------


def _parse(frame: bytes) -> Message:
    """Framing only ([D] §6.1, §6.2): header, payload offset, TLV boundaries."""
    size = len(frame)
    if size < HEADER_SIZE:
        raise _fatal(f"message shorter than the {HEADER_SIZE}-byte header")
    length, mtype, payoff, mtime, xid = _HEADER.unpack_from(frame)
    if length < MIN_MESSAGE_SIZE or length > MAX_MESSAGE_SIZE:
        raise _fatal(f"message length {length} outside {MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}")
    if length != size:
        raise _fatal(f"message length field {length} but {size} bytes")
    # [D] says 8 (a slip: the header is 12); ISC sends 12 and skips payoff-12 bytes.
    if payoff < HEADER_SIZE or payoff > length:
        raise _fatal(f"payload offset {payoff} outside {HEADER_SIZE}..{length}")
    options: list[tuple[int, bytes]] = []
    pos = payoff
    while pos < length:
        if pos + 4 > length:
            raise _fatal("option header runs past the end of the message")
        code, olen = _TLV.unpack_from(frame, pos)
        pos += 4
        if pos + olen > length:
            raise _fatal(f"option {code} runs past the end of the message")
        options.append((code, bytes(frame[pos:pos + olen])))
        pos += olen
    type_: MessageType | int = _as_enum(MessageType, mtype)
    return Message(type_, xid, mtime, options, bytes(frame[HEADER_SIZE:payoff]))


def _missing(msg: Message, rules: Iterable[tuple[Option, RejectReason]],
             part: Message | None = None, what: str = "") -> None:
    """Raise the non-fatal error for the first option of ``rules`` absent from
    ``part`` (default: the message); the error carries the whole message."""
    present = {c for c, _ in (part or msg).options}
    for code, why in rules:
        if code not in present:
            raise FailoverWireError(f"{msg.type.name}{what} without {code.name}", why,
                                    fatal=False, message=msg)


def validate(msg: Message) -> None:
    """Check a message the way a careful receiver must; raise FailoverWireError.

    Fatal (protocol errors; ISC drops the link, failover.c ``do_a_failover_option``):

    * type 0 or 13..127 ([D] §6.1: unknown mandatory type, MUST close);
      128..255 pass unchecked ([D]: SHOULD ignore; ISC would drop the link if it
      carried options);
    * an option the type uses with the wrong size (u8 1, u16 2, u32/address 4;
      DDNS >= 2);
    * an option the type uses appearing twice ([D] §6.2: "treated as an error";
      capture 08 "dup-option") -- except across the bindings of a batched
      BNDUPD/BNDACK, where each binding must start with assigned-IP-address
      ([D] §6.3).

    Non-fatal (``message`` attached, the stream is fine):

    * CONNECT: relationship-name (8), hash-bucket-assignment present and 32 bytes
      (18), MCLT (5), max-unacked-bndupd (6), receive-timer (6);
    * CONNECTACK: a reject needs only its reject-reason (ISC itself sends a
      name-less reject, capture 08); an accept needs relationship-name (8),
      max-unacked-bndupd (6) and receive-timer (6);
    * BNDUPD: assigned-IP-address and binding-status in every binding (3, ISC
      ``dhcp_failover_process_bind_update``); BNDACK: assigned-IP-address (3);
    * STATE: server-state, server-flags, start-time-of-state (6, [D] §7.10).

    Options a type does not use are skipped, unchecked, as in ISC.
    """
    mtype = msg.type
    if not isinstance(mtype, MessageType):
        if 128 <= mtype <= 255:
            return
        raise _fatal(f"unknown message type {mtype}", msg)
    allowed = ALLOWED[mtype]
    batched = mtype in (MessageType.BNDUPD, MessageType.BNDACK)
    seen: set[int] = set()
    addresses = 0
    lead = False  # a binding option came before the first assigned-IP-address
    for code, value in msg.options:
        if code not in allowed:
            continue
        size = _FIXED_SIZE.get(code)
        if size is not None and len(value) != size:
            raise _fatal(f"{Option(code).name} has length {len(value)}, not {size}", msg)
        if len(value) < _MIN_SIZE.get(code, 0):
            raise _fatal(f"{Option(code).name} too short", msg)
        if batched and code == Option.ASSIGNED_IP_ADDRESS:
            addresses += 1
            if addresses == 1:
                lead = bool(seen)
            elif lead:
                # In a batch the address opens each binding ([D] §6.3): options
                # before the first one would belong to no binding.  (Unbatched,
                # order is free; ISC itself always sends the address first.)
                raise _fatal("batched binding option before the first assigned-IP-address", msg)
            seen = {code}
            continue
        if code in seen:
            raise _fatal(f"duplicate option {Option(code).name}", msg)
        seen.add(code)

    if mtype == MessageType.CONNECT:
        _missing(msg, _REQUIRED_CONNECT[:1])
        hba = msg.get(Option.HASH_BUCKET_ASSIGNMENT)
        if hba is None or len(hba) != HBA_SIZE:
            # ISC: "invalid HBA", reject 18 (capture 08 no-hba, short-hba).
            raise FailoverWireError("CONNECT without a 32-byte HASH_BUCKET_ASSIGNMENT",
                                    RejectReason.HBA_CONFLICT, fatal=False, message=msg)
        _missing(msg, _REQUIRED_CONNECT[2:])
    elif mtype == MessageType.CONNECTACK:
        if msg.get(Option.REJECT_REASON) is None:
            _missing(msg, _REQUIRED_CONNECTACK_ACCEPT)
    elif mtype == MessageType.STATE:
        _missing(msg, _REQUIRED_STATE)
    elif batched:
        need = [(Option.ASSIGNED_IP_ADDRESS, RejectReason.MISSING_BINDING_INFO)]
        if mtype == MessageType.BNDUPD:
            need.append((Option.BINDING_STATUS, RejectReason.MISSING_BINDING_INFO))
        parts = msg.bindings()
        for i, binding in enumerate(parts):
            _missing(msg, need, binding, f" binding {i + 1}" if len(parts) > 1 else "")


def decode(frame: bytes, *, strict: bool = True) -> Message:
    """Decode exactly one message.  ``strict=False`` checks the framing only
    (useful for looking at broken peers' traffic); see :func:`validate`."""
    msg = _parse(frame)
    if strict:
        validate(msg)
    return msg


# --- encoding ----------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """The wire form of ``msg``: payload offset 12 (+ any extra header), options in
    the order given.  Raises ValueError for values that do not fit the format or a
    message longer than 2048 bytes (ISC would drop the link)."""
    payoff = HEADER_SIZE + len(msg.extra_header)
    if payoff > 255:
        raise ValueError("extra header too long")
    parts = [b"", msg.extra_header]
    length = payoff
    for code, value in msg.options:
        if not 0 <= code <= 0xFFFF or len(value) > 0xFFFF:
            raise ValueError(f"option {code} does not fit a TLV")
        parts.append(_TLV.pack(code, len(value)))
        parts.append(bytes(value))
        length += 4 + len(value)
    if length > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE_SIZE}")
    try:
        parts[0] = _HEADER.pack(length, int(msg.type), payoff, msg.time, msg.xid)
    except struct.error as exc:
        raise ValueError(f"header field out of range: {exc}") from None
    return b"".join(parts)


# --- stream framing ----------------------------------------------------------------


class Framer:
    """Cuts a TCP byte stream into messages by their length field ([D] §6.1).

    ``feed`` takes data in any chunking and returns the messages completed so far;
    an incomplete message just waits for more.  A length outside 12..2048 is
    fatal as soon as its two bytes arrive (ISC's "message length wait" check), so a
    garbage stream never makes us buffer much.  Errors are raised with
    ``preceding`` set to the messages decoded earlier in the same call.  After a
    non-fatal error the bad message has been consumed: ``feed(b"")`` carries on
    with what is buffered.  After a fatal one the framer stays broken.
    """

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        self._buffer = bytearray()
        self._broken: FailoverWireError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        if self._broken is not None:
            raise _fatal(f"stream already failed: {self._broken.reason}")
        buf = self._buffer
        buf += data
        out: list[Message] = []
        while len(buf) >= 2:
            length = int.from_bytes(buf[:2], "big")
            if length < MIN_MESSAGE_SIZE or length > MAX_MESSAGE_SIZE:
                err = _fatal(f"message length {length} outside "
                             f"{MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}")
                self._fail(err, out)
            if len(buf) < length:
                break
            frame = bytes(buf[:length])
            del buf[:length]
            try:
                out.append(decode(frame, strict=self.strict))
            except FailoverWireError as err:
                self._fail(err, out)
        return out

    def _fail(self, err: FailoverWireError, out: list[Message]) -> NoReturn:
        err.preceding = out
        if err.fatal:
            self._broken = err
            self._buffer.clear()
        raise err


# --- builders ----------------------------------------------------------------------
# One per message type, emitting options in the order ISC 4.4 does (captures 01-10,
# failover.c dhcp_failover_send_*), so a cnrd peer looks like ISC on the wire.
# ``None`` leaves an option out.


def _u8(value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{value} does not fit in 8 bits")
    return bytes((value,))


def _u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{value} does not fit in 16 bits")
    return value.to_bytes(2, "big")


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit in 32 bits")
    return value.to_bytes(4, "big")


def _ip(value: int | str) -> bytes:
    if isinstance(value, str):
        return ipaddress.IPv4Address(value).packed
    return _u32(value)


def _bytes_of(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


class _Options:
    """Collects options in call order, skipping ``None`` values."""

    def __init__(self) -> None:
        self.items: list[tuple[int, bytes]] = []

    def add(self, code: Option, value: object, conv: object) -> None:
        if value is not None:
            self.items.append((int(code), conv(value)))  # type: ignore[operator]


def _simple(mtype: MessageType, xid: int, time: int) -> Message:
    return Message(mtype, xid, time, [])


def connect(xid: int, time: int, *, relationship_name: str | bytes, max_unacked: int,
            receive_timer: int, vendor_class: str | bytes | None, mclt: int, hba: bytes,
            protocol_version: int | None = PROTOCOL_VERSION,
            tls_request: int | None = TLSRequest.NONE) -> Message:
    """CONNECT ([D] §7.8), primary only; ISC order 22, 14, 19, 28, 20, 27, 15, 11.
    ``hba``: use ISC's meaning (set bit = the primary serves the bucket, §10.4 of
    the digest) with an ISC secondary."""
    o = _Options()
    o.add(Option.RELATIONSHIP_NAME, relationship_name, _bytes_of)
    o.add(Option.MAX_UNACKED_BNDUPD, max_unacked, _u32)
    o.add(Option.RECEIVE_TIMER, receive_timer, _u32)
    o.add(Option.VENDOR_CLASS_IDENTIFIER, vendor_class, _bytes_of)
    o.add(Option.PROTOCOL_VERSION, protocol_version, _u8)
    o.add(Option.TLS_REQUEST, tls_request, _u8)
    o.add(Option.MCLT, mclt, _u32)
    o.add(Option.HASH_BUCKET_ASSIGNMENT, hba, bytes)
    return Message(MessageType.CONNECT, xid, time, o.items)


def connectack(xid: int, time: int, *, relationship_name: str | bytes | None,
               vendor_class: str | bytes | None, max_unacked: int | None = None,
               receive_timer: int | None = None,
               protocol_version: int | None = PROTOCOL_VERSION,
               tls_reply: int | None = None, reject_reason: int | None = None,
               message: str | bytes | None = None) -> Message:
    """CONNECTACK ([D] §7.9) with the CONNECT's xid; ISC order 22, 14, 19, 28, 20,
    26, 21, 16.  Accept: give max_unacked and receive_timer, and ``tls_reply=0``
    iff the CONNECT had a TLS-request.  Reject: reject_reason (+ message); [D]
    wants max_unacked/receive_timer/vendor_class left out then (ISC keeps them
    when it knew the relationship)."""
    o = _Options()
    o.add(Option.RELATIONSHIP_NAME, relationship_name, _bytes_of)
    o.add(Option.MAX_UNACKED_BNDUPD, max_unacked, _u32)
    o.add(Option.RECEIVE_TIMER, receive_timer, _u32)
    o.add(Option.VENDOR_CLASS_IDENTIFIER, vendor_class, _bytes_of)
    o.add(Option.PROTOCOL_VERSION, protocol_version, _u8)
    o.add(Option.TLS_REPLY, tls_reply, _u8)
    o.add(Option.REJECT_REASON, reject_reason, _u8)
    o.add(Option.MESSAGE, message, _bytes_of)
    return Message(MessageType.CONNECTACK, xid, time, o.items)


def state(xid: int, time: int, *, server_state: int, start_time_of_state: int,
          flags: int = 0) -> Message:
    """STATE ([D] §7.10); ISC order 24, 23, 25.  ISC never sends STARTUP: it sends
    its previous state with ``flags=ServerFlags.STARTUP``."""
    o = _Options()
    o.add(Option.SERVER_STATE, server_state, _u8)
    o.add(Option.SERVER_FLAGS, flags, _u8)
    o.add(Option.START_TIME_OF_STATE, start_time_of_state, _u32)
    return Message(MessageType.STATE, xid, time, o.items)


def bndupd(xid: int, time: int, *, assigned_address: int | str, binding_status: int,
           lease_expiration: int | None, potential_expiration: int | None,
           start_time_of_state: int | None, client_id: bytes | None = None,
           client_hw: bytes | None = None, cltt: int | None = None,
           ip_flags: int | None = None, ddns: tuple[int, bytes] | None = None,
           request_options: bytes | None = None,
           reply_options: bytes | None = None) -> Message:
    """BNDUPD for one binding ([D] §7.1); ISC order 2, 3, 4, 5, 13, 18, 25, 6, 12
    (then DDNS 9, request 8, reply 7, which ISC never sends).

    ISC sends expiry, PET and STOS for every status (0 for never-used addresses),
    CLTT and IP-flags only when non-zero.  Never send ``ddns`` to ISC: its parser
    cannot take the option and drops the link."""
    o = _Options()
    o.add(Option.ASSIGNED_IP_ADDRESS, assigned_address, _ip)
    o.add(Option.BINDING_STATUS, binding_status, _u8)
    o.add(Option.CLIENT_IDENTIFIER, client_id, bytes)
    o.add(Option.CLIENT_HARDWARE_ADDRESS, client_hw, bytes)
    o.add(Option.LEASE_EXPIRATION_TIME, lease_expiration, _u32)
    o.add(Option.POTENTIAL_EXPIRATION_TIME, potential_expiration, _u32)
    o.add(Option.START_TIME_OF_STATE, start_time_of_state, _u32)
    o.add(Option.CLIENT_LAST_TRANSACTION_TIME, cltt, _u32)
    o.add(Option.IP_FLAGS, ip_flags, _u16)
    o.add(Option.DDNS, ddns, lambda d: _u16(d[0]) + bytes(d[1]))
    o.add(Option.CLIENT_REQUEST_OPTIONS, request_options, bytes)
    o.add(Option.CLIENT_REPLY_OPTIONS, reply_options, bytes)
    return Message(MessageType.BNDUPD, xid, time, o.items)


def bndack(xid: int, time: int, *, assigned_address: int | str,
           reject_reason: int | None = None, message: str | bytes | None = None) -> Message:
    """BNDACK with the BNDUPD's xid ([D] §7.2): 2 [, 21, 16] as ISC sends it."""
    o = _Options()
    o.add(Option.ASSIGNED_IP_ADDRESS, assigned_address, _ip)
    o.add(Option.REJECT_REASON, reject_reason, _u8)
    o.add(Option.MESSAGE, message, _bytes_of)
    return Message(MessageType.BNDACK, xid, time, o.items)


def disconnect(xid: int, time: int, *, reject_reason: int,
               message: str | bytes | None = None) -> Message:
    """DISCONNECT ([D] §7.12), the last message on a connection: 21, 16."""
    o = _Options()
    o.add(Option.REJECT_REASON, reject_reason, _u8)
    o.add(Option.MESSAGE, message, _bytes_of)
    return Message(MessageType.DISCONNECT, xid, time, o.items)


def poolresp(xid: int, time: int, *, addresses_transferred: int) -> Message:
    """POOLRESP with the POOLREQ's xid ([D] §7.7)."""
    return Message(MessageType.POOLRESP, xid, time,
                   [(Option.ADDRESSES_TRANSFERRED, _u32(addresses_transferred))])


def poolreq(xid: int, time: int) -> Message:
    """POOLREQ ([D] §7.6); ISC sends it from either side when short of addresses."""
    return _simple(MessageType.POOLREQ, xid, time)


def updreqall(xid: int, time: int) -> Message:
    """UPDREQALL ([D] §7.4)."""
    return _simple(MessageType.UPDREQALL, xid, time)


def updreq(xid: int, time: int) -> Message:
    """UPDREQ ([D] §7.3)."""
    return _simple(MessageType.UPDREQ, xid, time)


def upddone(xid: int, time: int) -> Message:
    """UPDDONE with the UPDREQ/UPDREQALL's xid ([D] §7.5)."""
    return _simple(MessageType.UPDDONE, xid, time)


def contact(xid: int, time: int) -> Message:
    """CONTACT, the keep-alive ([D] §7.11, §8.3)."""
    return _simple(MessageType.CONTACT, xid, time)


# --- load balancing (RFC 3074) -----------------------------------------------------

# RFC 3074 §6: the Pearson permutation table (RFC data, identical in every
# implementation; a copy is in shared/docs/rfc3074-pearson.txt).
_PEARSON = (
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
    31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
    59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
    180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
    40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
    207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
    20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
    230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
    39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
    82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
    195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
    137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
    56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
    33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
    96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
    216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
)


def load_balance_hash(client_key: bytes) -> int:
    """The RFC 3074 §6 bucket (0..255) of a client.

    Pearson hash seeded with the key length, walking the key from its last byte.
    The key is the client-identifier option value (type byte included) if the
    client sent one, else chaddr[0:hlen] without the htype.
    """
    h = len(client_key) & 0xFF
    for byte in reversed(client_key):
        h = _PEARSON[h ^ byte]
    return h


def hba_from_buckets(buckets: Iterable[int]) -> bytes:
    """A 32-byte hash-bucket-assignment with the given buckets set.  Bucket b is
    bit b % 8 (least-significant first) of byte b // 8, as ISC encodes it
    (capture 06: split 100 gives ff x12, 0f, 00 x19)."""
    out = bytearray(HBA_SIZE)
    for b in buckets:
        if not 0 <= b < 8 * HBA_SIZE:
            raise ValueError(f"bucket {b} outside 0..255")
        out[b // 8] |= 1 << (b % 8)
    return bytes(out)


def hba_from_split(split: int) -> bytes:
    """ISC's ``split N`` (0..256): buckets 0..N-1 set.  With ISC a set bit means
    the *primary* serves the bucket (the opposite of [D] §12.11's wording)."""
    if not 0 <= split <= 8 * HBA_SIZE:
        raise ValueError(f"split {split} outside 0..256")
    return hba_from_buckets(range(split))


def hba_has_bucket(hba: bytes, bucket: int) -> bool:
    """Whether ``bucket``'s bit is set in a 32-byte HBA."""
    if len(hba) != HBA_SIZE:
        raise ValueError(f"HBA must be {HBA_SIZE} bytes")
    if not 0 <= bucket < 8 * HBA_SIZE:
        raise ValueError(f"bucket {bucket} outside 0..255")
    return bool(hba[bucket // 8] >> (bucket % 8) & 1)


def hba_buckets(hba: bytes) -> frozenset[int]:
    """The set buckets of a 32-byte HBA."""
    return frozenset(b for b in range(8 * HBA_SIZE) if hba_has_bucket(hba, b))
