"""One constructor per failover message type.

Each emits its options in the order ISC DHCP 4.4 does (``server/failover.c``,
``dhcp_failover_send_*``), so a cnrd peer looks like ISC on the wire.  ``None``
leaves an option out.  [D] is draft-ietf-dhc-failover-12.  ISC can neither send
nor parse batched BNDUPD/BNDACK ([D] §6.3), so these never batch.

Pure module: stdlib only; callers pass ``time``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from cnrd.failover.wire.codes import PROTOCOL_VERSION, MessageType, Option, TLSRequest
from cnrd.failover.wire.message import Message

__all__ = [
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
]


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

    # ``Any``: the converters take unions (str | bytes, int | str), which mypy
    # cannot infer a type variable from once ``| None`` is added.
    def add(self, code: Option, value: object, conv: Callable[[Any], bytes]) -> None:
        if value is not None:
            self.items.append((int(code), conv(value)))


def _simple(mtype: MessageType, xid: int, time: int) -> Message:
    return Message(mtype, xid, time, [])


def connect(xid: int, time: int, *, relationship_name: str | bytes, max_unacked: int,
            receive_timer: int, vendor_class: str | bytes | None, mclt: int, hba: bytes,
            protocol_version: int | None = PROTOCOL_VERSION,
            tls_request: int | None = TLSRequest.NONE) -> Message:
    """CONNECT ([D] §7.8), primary only; ISC order 22, 14, 19, 28, 20, 27, 15, 11.
    ``hba``: with an ISC secondary, use ISC's meaning, where a set bit means the
    primary serves the bucket (see :func:`hba_from_split`)."""
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
    # Built straight into the option list (the main sends one per lease
    # change): the same values and order as _Options would give.
    items: list[tuple[int, bytes]] = [(_ADDRESS, _ip(assigned_address)), (_STATUS, _u8(binding_status))]
    if client_id is not None:
        items.append((_CLIENT_ID, bytes(client_id)))
    if client_hw is not None:
        items.append((_CLIENT_HW, bytes(client_hw)))
    for code, value in ((_EXPIRATION, lease_expiration), (_PET, potential_expiration),
                        (_STOS, start_time_of_state), (_CLTT, cltt)):
        if value is not None:
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{value} does not fit in 32 bits")
            items.append((code, value.to_bytes(4, "big")))
    if ip_flags is not None:
        items.append((_IP_FLAGS, _u16(ip_flags)))
    if ddns is not None:
        items.append((_DDNS, _u16(ddns[0]) + bytes(ddns[1])))
    if request_options is not None:
        items.append((_REQUEST_OPTIONS, bytes(request_options)))
    if reply_options is not None:
        items.append((_REPLY_OPTIONS, bytes(reply_options)))
    return Message(MessageType.BNDUPD, xid, time, items)


_ADDRESS, _STATUS = int(Option.ASSIGNED_IP_ADDRESS), int(Option.BINDING_STATUS)
_CLIENT_ID, _CLIENT_HW = int(Option.CLIENT_IDENTIFIER), int(Option.CLIENT_HARDWARE_ADDRESS)
_EXPIRATION, _PET = int(Option.LEASE_EXPIRATION_TIME), int(Option.POTENTIAL_EXPIRATION_TIME)
_STOS, _CLTT = int(Option.START_TIME_OF_STATE), int(Option.CLIENT_LAST_TRANSACTION_TIME)
_IP_FLAGS, _DDNS = int(Option.IP_FLAGS), int(Option.DDNS)
_REQUEST_OPTIONS, _REPLY_OPTIONS = int(Option.CLIENT_REQUEST_OPTIONS), int(Option.CLIENT_REPLY_OPTIONS)
_REJECT_REASON, _MESSAGE = int(Option.REJECT_REASON), int(Option.MESSAGE)


def bndack(xid: int, time: int, *, assigned_address: int | str,
           reject_reason: int | None = None, message: str | bytes | None = None) -> Message:
    """BNDACK with the BNDUPD's xid ([D] §7.2): 2 [, 21, 16] as ISC sends it."""
    items: list[tuple[int, bytes]] = [(_ADDRESS, _ip(assigned_address))]
    if reject_reason is not None:
        items.append((_REJECT_REASON, _u8(reject_reason)))
    if message is not None:
        items.append((_MESSAGE, _bytes_of(message)))
    return Message(MessageType.BNDACK, xid, time, items)


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
