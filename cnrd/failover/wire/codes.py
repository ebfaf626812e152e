"""The failover protocol's numbers: message types, option codes, state and
reason codes, flag bits, and which options each message type uses or needs.

[D] is draft-ietf-dhc-failover-12; "ISC" means ISC DHCP 4.4 (``server/failover.c``,
``server/stables.c``, ``includes/failover.h``), whose reading of [D] cnrd follows.

Pure module: stdlib only.
"""

from __future__ import annotations

import enum

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
    "FIXED_SIZE",
    "MIN_SIZE",
    "ALLOWED",
    "NO_OPTIONS",
    "REQUIRED_CONNECT",
    "REQUIRED_CONNECTACK_ACCEPT",
    "REQUIRED_STATE",
    "as_enum",
]

PORT = 647  # IANA "dhcp-failover"; [D] §8.2
HEADER_SIZE = 12  # length, type, payload offset, time, xid ([D] §6.1)
MIN_MESSAGE_SIZE = 12  # [D] §6.1
MAX_MESSAGE_SIZE = 2048  # [D] §6.1; ISC drops the link on anything bigger
PROTOCOL_VERSION = 1  # [D] §12.20
HBA_SIZE = 32  # 256 buckets, one bit each ([D] §12.11, RFC 3074)


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
FIXED_SIZE: dict[int, int] = {
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
MIN_SIZE: dict[int, int] = {Option.DDNS: 2, Option.MESSAGE_DIGEST: 1}

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
ALLOWED: dict[int, frozenset[int]] = {
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
#: The ALLOWED entry of a message type the table lacks (an optional 128..255 type).
NO_OPTIONS: frozenset[int] = frozenset()

# Options a message cannot be acted on without, in the order they are checked, with
# the reject reason the receiver answers with.  CONNECT follows ISC's checks (name
# -> 8, HBA -> 18, MCLT -> 5, failover.c) plus [D] §7.8's max-unacked-bndupd and
# receive-timer, whose absence makes ISC misbehave (window 0; CONTACT in a tight
# loop).  ISC accepts a CONNECT without vendor-class, protocol-version or
# TLS-request, so we do too.  See validate() for the other message types.
REQUIRED_CONNECT = (
    (_O.RELATIONSHIP_NAME, RejectReason.INVALID_PARTNER),
    (_O.HASH_BUCKET_ASSIGNMENT, RejectReason.HBA_CONFLICT),
    (_O.MCLT, RejectReason.INVALID_MCLT),
    (_O.MAX_UNACKED_BNDUPD, RejectReason.MISC_REJECT),
    (_O.RECEIVE_TIMER, RejectReason.MISC_REJECT),
)
REQUIRED_CONNECTACK_ACCEPT = (
    (_O.RELATIONSHIP_NAME, RejectReason.INVALID_PARTNER),
    (_O.MAX_UNACKED_BNDUPD, RejectReason.MISC_REJECT),
    (_O.RECEIVE_TIMER, RejectReason.MISC_REJECT),
)
REQUIRED_STATE = (
    (_O.SERVER_STATE, RejectReason.MISC_REJECT),
    (_O.SERVER_FLAGS, RejectReason.MISC_REJECT),
    (_O.START_TIME_OF_STATE, RejectReason.MISC_REJECT),
)


def as_enum(cls: type[enum.IntEnum], value: int) -> int:
    """The enum member for ``value`` if there is one, else the plain int: a peer
    may send codes we do not know, and the caller decides what that means."""
    # The members by value, without the call machinery of ``cls(value)``:
    # binding status and reject reason are converted for every binding.
    member: int = cls._value2member_map_.get(value, value)  # type: ignore[assignment]
    return member
