"""A failover message ([D] §6.1) with typed access to its options, and the codec's error.

[D] is draft-ietf-dhc-failover-12; "ISC" means ISC DHCP 4.4.

Pure module: stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Never, Protocol, TypeVar, cast, overload

from cnrd.failover.wire.codes import (
    ALLOWED,
    FIXED_SIZE,
    MIN_SIZE,
    NO_OPTIONS,
    BindingStatus,
    MessageType,
    Option,
    RejectReason,
    ServerState,
    as_enum,
)

__all__ = ["FailoverWireError", "Message", "fatal"]

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


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


def fatal(reason: str, message: Message | None = None) -> FailoverWireError:
    """A fatal protocol error: the link must be dropped."""
    return FailoverWireError(reason, RejectReason.UNKNOWN, fatal=True, message=message)


class _OptionView(Protocol[_T_co]):
    """How mypy sees a :func:`_field`: a read-only attribute of type ``_T_co | None``."""

    @overload
    def __get__(self, msg: None, owner: type[Message]) -> _OptionView[_T_co]: ...

    @overload
    def __get__(self, msg: Message, owner: type[Message]) -> _T_co | None: ...

    def __set__(self, msg: Message, value: Never) -> None: ...


def _field(code: Option, convert: Callable[[bytes], _T], doc: str) -> _OptionView[_T]:
    """A read-only typed attribute of :class:`Message` for option ``code``.

    It reads the first occurrence of ``code`` if the message type uses it (what
    ISC would read), checks its size (a wrong size is fatal, as in ISC's
    parser) and converts it; ``None`` when absent or unused by the type.  A
    plain property whose getter does all of that in one call, because the
    binding-update path reads these for every message.
    """
    size = FIXED_SIZE.get(code)
    min_size = MIN_SIZE.get(code, 0)

    def read(msg: Message) -> _T | None:
        if code not in ALLOWED.get(msg.type, NO_OPTIONS):
            return None
        for c, value in msg.options:
            if c == code:
                break
        else:
            return None
        if size is not None and len(value) != size:
            raise fatal(f"{code.name} has length {len(value)}, not {size}", msg)
        if len(value) < min_size:
            raise fatal(f"{code.name} too short", msg)
        return convert(value)

    return cast("_OptionView[_T]", property(read, doc=doc))


def _uint(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _bytes(value: bytes) -> bytes:
    return value


def _text(value: bytes) -> str:
    # surrogateescape keeps arbitrary bytes round-trippable: names are compared
    # byte for byte by ISC, so nothing may be lost in the str form.
    return value.decode("utf-8", "surrogateescape")


def _binding_status(value: bytes) -> BindingStatus | int:
    return as_enum(BindingStatus, int.from_bytes(value, "big"))


def _reject_reason(value: bytes) -> RejectReason | int:
    return as_enum(RejectReason, int.from_bytes(value, "big"))


def _ddns(value: bytes) -> tuple[int, bytes]:
    return int.from_bytes(value[:2], "big"), value[2:]


@dataclass
class Message:
    """One failover message ([D] §6.1).

    ``options`` are ``(code, value)`` pairs in wire order, unknown and ignored ones
    included, so that :func:`encode` reproduces the received bytes.  ``type`` is a
    :class:`MessageType`, or a plain int for an optional (128..255) type we do not
    know.  ``extra_header`` is whatever lay between byte 12 and the payload offset
    (nothing, in version 1).

    The typed attributes read only options :data:`ALLOWED` for the type (what ISC
    would read) and are ``None`` when the option is absent.  In a batched
    BNDUPD/BNDACK they see the first binding; use :meth:`bindings`.
    """

    type: MessageType | int
    xid: int
    time: int
    options: list[tuple[int, bytes]] = field(default_factory=list)
    extra_header: bytes = b""
    # The first value of each option the type uses, as :func:`validate` found
    # them: the receive path reads a binding's fields from it, not option by option.
    _values: dict[int, bytes] | None = field(default=None, repr=False, compare=False)

    # -- typed access, one attribute per option ([D] §12) --

    addresses_transferred = _field(
        Option.ADDRESSES_TRANSFERRED, _uint,
        "POOLRESP: addresses moved by this POOLREQ (§12.1).")
    assigned_address = _field(
        Option.ASSIGNED_IP_ADDRESS, _uint,
        "The binding's IPv4 address as a host-order int (§12.2).")
    binding_status = _field(
        Option.BINDING_STATUS, _binding_status,
        "§12.3; a plain int for a code outside 1..7.")
    client_id = _field(
        Option.CLIENT_IDENTIFIER, _bytes,
        "DHCP option 61 value as the client sent it (§12.4).")
    client_hw = _field(
        Option.CLIENT_HARDWARE_ADDRESS, _bytes,
        "htype byte followed by chaddr[0:hlen] (§12.5).  ISC rejects (6) a binding whose "
        "option is longer than 21 bytes; that is the peer's call.")
    cltt = _field(
        Option.CLIENT_LAST_TRANSACTION_TIME, _uint,
        "client-last-transaction-time (§12.6).")
    reply_options = _field(
        Option.CLIENT_REPLY_OPTIONS, _bytes,
        "client-reply-options: cookie + DHCP options (§12.7); ISC never sends it.")
    request_options = _field(
        Option.CLIENT_REQUEST_OPTIONS, _bytes,
        "client-request-options: cookie + DHCP options (§12.8); ISC never sends it.")
    ddns = _field(
        Option.DDNS, _ddns,
        "(flags, FQDN in DNS wire format) (§12.9).")
    hba = _field(
        Option.HASH_BUCKET_ASSIGNMENT, _bytes,
        "hash-bucket-assignment, raw (§12.11); 32 bytes in a valid CONNECT.")
    ip_flags = _field(
        Option.IP_FLAGS, _uint,
        "IP-flags, see :class:`IPFlags` (§12.12).")
    lease_expiration = _field(
        Option.LEASE_EXPIRATION_TIME, _uint,
        "lease-expiration-time (§12.13).")
    max_unacked = _field(
        Option.MAX_UNACKED_BNDUPD, _uint,
        "How many BNDUPDs the *sender* takes un-acked (§12.14).")
    mclt = _field(
        Option.MCLT, _uint,
        "Maximum client lead time in seconds (§12.15).")
    message_text = _field(
        Option.MESSAGE, _text,
        "The human-readable message option (§12.16).")
    potential_expiration = _field(
        Option.POTENTIAL_EXPIRATION_TIME, _uint,
        "potential-expiration-time (§12.18).")
    receive_timer = _field(
        Option.RECEIVE_TIMER, _uint,
        "The sender's tReceive in seconds (§12.19, §8.3).")
    protocol_version = _field(
        Option.PROTOCOL_VERSION, _uint,
        "§12.20; 1.")
    reject_reason = _field(
        Option.REJECT_REASON, _reject_reason,
        "§12.21; a plain int for a reserved code.")
    relationship_name = _field(
        Option.RELATIONSHIP_NAME, _text,
        "§12.22.  Compare :meth:`get` bytes when exactness matters; the str form is "
        "lossless (surrogateescape) but decoded as UTF-8.")
    server_flags = _field(
        Option.SERVER_FLAGS, _uint,
        "§12.23, see :class:`ServerFlags`.")
    start_time_of_state = _field(
        Option.START_TIME_OF_STATE, _uint,
        "STATE: when the sender entered its state; BNDUPD: when the binding took its "
        "status (ISC: the lease start) (§12.25).")
    tls_reply = _field(
        Option.TLS_REPLY, _uint,
        "§12.26, see :class:`TLSReply`.")
    tls_request = _field(
        Option.TLS_REQUEST, _uint,
        "§12.27, see :class:`TLSRequest`.")
    vendor_class = _field(
        Option.VENDOR_CLASS_IDENTIFIER, _text,
        "vendor-class-identifier, e.g. ``isc-4.4.3-P1`` (§12.28).")
    _server_state = _field(
        Option.SERVER_STATE, _uint,
        "server-state (§12.24); read through :attr:`server_state`.")

    @property
    def server_state(self) -> tuple[ServerState | int, int] | None:
        """(server-state, server-flags) of a STATE ([D] §12.24, §12.23); flags
        default to 0 when absent.  An unknown state comes back as a plain int
        (ISC goes to SHUTDOWN on one; the peer logic decides)."""
        value = self._server_state
        if value is None:
            return None
        return as_enum(ServerState, value), self.server_flags or 0

    # -- raw access --

    def values(self) -> dict[int, bytes]:
        """The first value of every option the type uses, by code, read in one pass.

        A validated unbatched message hands over what validation collected;
        otherwise the options are read now, each size checked as the typed
        attributes check it (a wrong size is fatal).  In a batched BNDUPD/BNDACK
        these are the first binding's values, as for the typed attributes.
        The dict is the message's own: read it, do not change it.
        """
        values = self._values
        if values is not None:
            return values
        allowed = ALLOWED.get(self.type, NO_OPTIONS)
        values = {}
        for code, value in self.options:
            if code in allowed and code not in values:
                size = FIXED_SIZE.get(code)
                if size is not None and len(value) != size:
                    raise fatal(f"{Option(code).name} has length {len(value)}, not {size}", self)
                if len(value) < MIN_SIZE.get(code, 0):
                    raise fatal(f"{Option(code).name} too short", self)
                values[code] = value
        self._values = values
        return values

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
        return ALLOWED.get(self.type, NO_OPTIONS)

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
