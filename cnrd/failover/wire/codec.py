"""Bytes to :class:`Message` and back: framing, validation and encoding.

A message on the wire ([D] §6.1, §6.2)::

    length (2) | type (1) | payload offset (1) | time (4) | xid (4) | [extra header] | options

with options as ``code (2) | length (2) | value`` TLVs.  [D] is
draft-ietf-dhc-failover-12; "ISC" means ISC DHCP 4.4's ``server/failover.c``.

Pure module: stdlib only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from cnrd.failover.wire.codes import (
    ALLOWED,
    FIXED_SIZE,
    HBA_SIZE,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    MIN_SIZE,
    REQUIRED_CONNECT,
    REQUIRED_CONNECTACK_ACCEPT,
    REQUIRED_STATE,
    MessageType,
    Option,
    RejectReason,
    as_enum,
)
from cnrd.failover.wire.message import FailoverWireError, Message, fatal

__all__ = ["decode", "encode", "validate"]

_HEADER = struct.Struct("!HBBII")
_TLV = struct.Struct("!HH")
# as_enum, seen as returning Any rather than int: this module is compiled by
# mypyc, which would turn an IntEnum member held as an ``int`` into a plain
# int (an unknown type stays the peer's plain int).
_as_member: Callable[[Any, int], Any] = as_enum
_NEED_BNDACK = ((Option.ASSIGNED_IP_ADDRESS, RejectReason.MISSING_BINDING_INFO),)
_NEED_BNDUPD = _NEED_BNDACK + ((Option.BINDING_STATUS, RejectReason.MISSING_BINDING_INFO),)


def _parse(frame: bytes) -> Message:
    """Framing only ([D] §6.1, §6.2): header, payload offset, TLV boundaries."""
    size = len(frame)
    if size < HEADER_SIZE:
        raise fatal(f"message shorter than the {HEADER_SIZE}-byte header")
    length, mtype, payoff, mtime, xid = _HEADER.unpack_from(frame)
    if length < MIN_MESSAGE_SIZE or length > MAX_MESSAGE_SIZE:
        raise fatal(f"message length {length} outside {MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}")
    if length != size:
        raise fatal(f"message length field {length} but {size} bytes")
    # [D] says 8 (a slip: the header is 12); ISC sends 12 and skips payoff-12 bytes.
    if payoff < HEADER_SIZE or payoff > length:
        raise fatal(f"payload offset {payoff} outside {HEADER_SIZE}..{length}")
    options: list[tuple[int, bytes]] = []
    pos = payoff
    while pos < length:
        if pos + 4 > length:
            raise fatal("option header runs past the end of the message")
        code, olen = _TLV.unpack_from(frame, pos)
        pos += 4
        if pos + olen > length:
            raise fatal(f"option {code} runs past the end of the message")
        options.append((code, bytes(frame[pos:pos + olen])))
        pos += olen
    type_: Any = _as_member(MessageType, mtype)
    return Message(type_, xid, mtime, options, bytes(frame[HEADER_SIZE:payoff]))


def _missing(msg: Message, mtype: MessageType, rules: Iterable[tuple[Option, RejectReason]],
             part: Message | None = None, what: str = "") -> None:
    """Raise the non-fatal error for the first option of ``rules`` absent from
    ``part`` (default: the message); the error carries the whole message."""
    present = {c for c, _ in (part or msg).options}
    for code, why in rules:
        if code not in present:
            raise FailoverWireError(f"{mtype.name}{what} without {code.name}", why,
                                    fatal=False, message=msg)


def validate(msg: Message) -> None:
    """Check a message the way a careful receiver must; raise FailoverWireError.

    Fatal (protocol errors; ISC drops the link, failover.c ``do_a_failover_option``):

    * type 0 or 13..127 ([D] §6.1: unknown mandatory type, MUST close);
      128..255 pass unchecked ([D]: SHOULD ignore; ISC would drop the link if it
      carried options);
    * an option the type uses with the wrong size (u8 1, u16 2, u32/address 4;
      DDNS >= 2);
    * an option the type uses appearing twice ([D] §6.2: "treated as an error")
      -- except across the bindings of a batched
      BNDUPD/BNDACK, where each binding must start with assigned-IP-address
      ([D] §6.3).

    Non-fatal (``message`` attached, the stream is fine):

    * CONNECT: relationship-name (8), hash-bucket-assignment present and 32 bytes
      (18), MCLT (5), max-unacked-bndupd (6), receive-timer (6);
    * CONNECTACK: a reject needs only its reject-reason (ISC itself sends a
      name-less reject); an accept needs relationship-name (8),
      max-unacked-bndupd (6) and receive-timer (6);
    * BNDUPD: assigned-IP-address and binding-status in every binding (3, ISC
      ``dhcp_failover_process_bind_update``); BNDACK: assigned-IP-address (3);
    * STATE: server-state, server-flags, start-time-of-state (6, [D] §7.10).

    Options a type does not use are skipped, unchecked, as in ISC.
    """
    mtype: Any = msg.type  # Any: see _as_member
    if not isinstance(mtype, MessageType):
        if 128 <= mtype <= 255:
            return
        raise fatal(f"unknown message type {mtype}", msg)
    allowed = ALLOWED[mtype]
    batched = mtype in (MessageType.BNDUPD, MessageType.BNDACK)
    seen: dict[int, bytes] = {}  # the current binding's (or the message's) values
    present: set[int] = set()  # every code the type uses that is in the message
    before: dict[int, bytes] = {}  # unbatched: the values before the assigned-IP-address
    addresses = 0
    lead = False  # a binding option came before the first assigned-IP-address
    for code, value in msg.options:
        if code not in allowed:
            continue
        present.add(code)
        size = FIXED_SIZE.get(code)
        if size is not None and len(value) != size:
            raise fatal(f"{Option(code).name} has length {len(value)}, not {size}", msg)
        if len(value) < MIN_SIZE.get(code, 0):
            raise fatal(f"{Option(code).name} too short", msg)
        if batched and code == Option.ASSIGNED_IP_ADDRESS:
            addresses += 1
            if addresses == 1:
                lead = bool(seen)
                before = seen
            elif lead:
                # In a batch the address opens each binding ([D] §6.3): options
                # before the first one would belong to no binding.  (Unbatched,
                # order is free; ISC itself always sends the address first.)
                raise fatal("batched binding option before the first assigned-IP-address", msg)
            seen = {code: value}
            continue
        if code in seen:
            raise fatal(f"duplicate option {Option(code).name}", msg)
        seen[code] = value
    if addresses <= 1:
        # Every value the typed attributes would read, first occurrence first.
        msg._values = seen | before if before else seen

    if mtype == MessageType.CONNECT:
        _missing(msg, mtype, REQUIRED_CONNECT[:1])
        hba = msg.get(Option.HASH_BUCKET_ASSIGNMENT)
        if hba is None or len(hba) != HBA_SIZE:
            # ISC answers a missing or short HBA with reject 18 ("invalid HBA").
            raise FailoverWireError("CONNECT without a 32-byte HASH_BUCKET_ASSIGNMENT",
                                    RejectReason.HBA_CONFLICT, fatal=False, message=msg)
        _missing(msg, mtype, REQUIRED_CONNECT[2:])
    elif mtype == MessageType.CONNECTACK:
        if msg.get(Option.REJECT_REASON) is None:
            _missing(msg, mtype, REQUIRED_CONNECTACK_ACCEPT)
    elif mtype == MessageType.STATE:
        _missing(msg, mtype, REQUIRED_STATE)
    elif batched:
        need = _NEED_BNDUPD if mtype == MessageType.BNDUPD else _NEED_BNDACK
        if addresses <= 1 and all(code in present for code, _ in need):
            return  # one binding with all it needs (what nearly every update is)
        parts = msg.bindings()
        for i, binding in enumerate(parts):
            _missing(msg, mtype, need, binding, f" binding {i + 1}" if len(parts) > 1 else "")


def decode(frame: bytes, *, strict: bool = True) -> Message:
    """Decode exactly one message.  ``strict=False`` checks the framing only
    (useful for looking at broken peers' traffic); see :func:`validate`."""
    msg = _parse(frame)
    if strict:
        validate(msg)
    return msg


def encode(msg: Message) -> bytes:
    """The wire form of ``msg``: payload offset 12 (+ any extra header), options in
    the order given.  Raises ValueError for values that do not fit the format or a
    message longer than 2048 bytes (ISC would drop the link)."""
    payoff = HEADER_SIZE + len(msg.extra_header)
    if payoff > 255:
        raise ValueError("extra header too long")
    parts = [b"", msg.extra_header]
    length = payoff
    tlv = _TLV.pack
    for code, value in msg.options:
        size = len(value)
        if not 0 <= code <= 0xFFFF or size > 0xFFFF:
            raise ValueError(f"option {code} does not fit a TLV")
        parts.append(tlv(code, size))
        parts.append(value if type(value) is bytes else bytes(value))
        length += 4 + size
    if length > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE_SIZE}")
    try:
        parts[0] = _HEADER.pack(length, int(msg.type), payoff, msg.time, msg.xid)
    except struct.error as exc:
        raise ValueError(f"header field out of range: {exc}") from None
    return b"".join(parts)
