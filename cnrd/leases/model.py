"""Leases: what the server knows about each address.

A :class:`Lease` is the record kept per address.  Its ``state`` uses Cisco
Network Registrar's lease-state names; where a state exists on the failover
wire the enum value is that binding-state code (draft-ietf-dhc-failover-12
§5.11: FREE=1, ACTIVE=2, EXPIRED=3, RELEASED=4, ABANDONED=5, RESET=6,
BACKUP=7), so the failover codec maps without a table.  States the failover
protocol never carries (offered, reserved) get values above 100.

Every lease keeps the client-last-transaction-time and the potential
expiration told to a failover partner, so failover builds on the same
record.  Times are integer seconds since the epoch, passed
in by callers; nothing here reads a clock.

Pure module.
"""

from __future__ import annotations

import enum
import struct
import sys
from dataclasses import dataclass
from typing import NamedTuple


class LeaseState(enum.IntEnum):
    """CNR lease states; values are failover binding-state codes where one exists."""

    AVAILABLE = 1  # FTS_FREE
    LEASED = 2  # FTS_ACTIVE
    EXPIRED = 3
    RELEASED = 4
    UNAVAILABLE = 5  # FTS_ABANDONED: declined, or otherwise not to be used
    RESET = 6
    BACKUP = 7  # available, but for the failover backup server to allocate
    OFFERED = 101  # an OFFER is outstanding; never persisted as such
    RESERVED = 102  # held by a reservation

    @property
    def label(self) -> str:
        """The CNR spelling, e.g. ``leased``."""
        return self.name.lower()


#: States in which no client holds the address and it may be handed out.
FREE_STATES = frozenset({LeaseState.AVAILABLE, LeaseState.EXPIRED, LeaseState.RELEASED})


class LeaseFlag(enum.IntFlag):
    """Per-lease flags."""

    NONE = 0
    BOOTP = 1  # granted to a BOOTP client (no expiry)
    RESERVED = 2  # the address belongs to a reservation
    DYNAMIC_BOOTP = 4
    # An outstanding offer of an address from the failover backup's share:
    # withdrawn, the address goes back to that share (LeaseTable.withdraw_offer).
    OFFERED_FROM_BACKUP = 8
    # Failover: a binding update for this lease is queued or not yet
    # acknowledged by the partner.  Written with the lease, it is the
    # durable update queue: a restart sends the updates of the leases that
    # carry it (cnrd.failover.exchange keeps it in line with the queue).
    UPDATE_PENDING = 16


def client_key(client_id: bytes | None, hw: bytes) -> bytes:
    """The key a client is known by: its client-id, else its hardware address.

    ``hw`` is the htype byte followed by chaddr.  The first byte of the key
    tells the two kinds apart so a client-id can never collide with a MAC.
    """
    if client_id:
        return b"\x01" + client_id
    return b"\x00" + hw


@dataclass(slots=True)
class Lease:
    """One address and what the server knows of it."""

    address: int
    state: LeaseState = LeaseState.AVAILABLE
    scope: str = ""
    hw: bytes = b""  # htype byte + chaddr; empty when no client
    client_id: bytes | None = None
    start: int = 0  # start of the current lease (failover STOS)
    expiration: int = 0  # when the client's lease ends (0 = none, -1 = never)
    cltt: int = 0  # client-last-transaction-time
    potential_expiration: int = 0  # latest expiration told to the failover partner (sent PET)
    host_name: str = ""
    flags: LeaseFlag = LeaseFlag.NONE
    relay_info: bytes = b""  # option 82 as received, for lease queries
    # Failover: the later of the PET the partner acknowledged and the PET it
    # sent us (ISC's "tsfp"); leases never run past it + MCLT.
    partner_time: int = 0
    vendor_class: bytes = b""  # option 60 as the client sent it, for the failover partner

    INFINITE = 0xFFFFFFFF

    @property
    def key(self) -> bytes | None:
        """The client key (see :func:`client_key`), or None when no client is bound."""
        if not self.hw and not self.client_id:
            return None
        return client_key(self.client_id, self.hw)

    def expired_at(self, now: int) -> bool:
        """True when a leased or offered address has run out by ``now``."""
        return 0 < self.expiration <= now and self.expiration != self.INFINITE

    # -- persistence -------------------------------------------------------
    # A fixed header and length-prefixed variable fields; version byte first
    # so the layout can change without a migration of old stores.
    # ver, addr, state, flags, start, exp, cltt, pet, partner-time, scope-len, hw-len, cid-len (255 = None)
    # Version 2 appends the vendor class (u16 length + bytes).  A lease
    # without one is still written as version 1, so a store that never saw
    # a vendor class stays readable by a server that knows only version 1.
    _HEAD = struct.Struct("!BIBIqqqqqIBB")
    _VERSION = 1
    _VERSION_VENDOR = 2

    def pack(self) -> bytes:
        """Serialise for the lease store."""
        scope = self.scope.encode()
        host = self.host_name.encode()
        cid = self.client_id
        cid_len = 255 if cid is None else len(cid)
        head = self._HEAD.pack(
            self._VERSION_VENDOR if self.vendor_class else self._VERSION,
            self.address,
            int(self.state),
            int(self.flags),
            self.start,
            self.expiration,
            self.cltt,
            self.potential_expiration,
            self.partner_time,
            len(scope),
            len(self.hw),
            cid_len,
        )
        return b"".join(
            (
                head,
                scope,
                self.hw,
                cid or b"",
                struct.pack("!HH", len(host), len(self.relay_info)),
                host,
                self.relay_info,
                struct.pack("!H", len(self.vendor_class)) + self.vendor_class if self.vendor_class else b"",
            )
        )

    @classmethod
    def key_of_record(cls, data: bytes | memoryview) -> bytes | None:
        """The client key of a packed record, without unpacking the rest."""
        head = cls._HEAD.unpack_from(data)
        slen, hlen, clen = head[9], head[10], head[11]
        off = cls._HEAD.size + slen
        hw = bytes(data[off : off + hlen])
        cid = bytes(data[off + hlen : off + hlen + clen]) if clen != 255 else None
        if not hw and not cid:
            return None
        return client_key(cid, hw)

    @classmethod
    def unpack(cls, data: bytes | memoryview, times: dict[int, int] | None = None) -> "Lease":
        """Inverse of :meth:`pack`; ``data`` may be a buffer into the store (copied out).

        ``times``, when given, makes equal time values one int object across
        the records unpacked with it (a start-up load passes one dict for all:
        leases granted in the same second share their times, and an int is
        32 bytes, four per lease).
        """
        if not isinstance(data, bytes):
            data = bytes(data)  # one copy; the fields below are then slices of it
        # One unpack for the head and the fields of the lengths it gives:
        # records of a store mostly share one shape (scope, hw, client-id lengths).
        shape = _SHAPES.get(data[_SHAPE_AT:_HEAD_SIZE])
        if shape is None:
            shape = _shape(data)
        (ver, addr, state, flags, start, exp, cltt, pet, ptime, _slen, _hlen, clen, raw, hw, cid,
         host_len, relay_len) = shape.unpack_from(data)
        if ver != 1 and ver != 2:  # _VERSION, _VERSION_VENDOR
            raise ValueError(f"unknown lease record version {ver}")
        if times is not None:
            share = times.setdefault
            start = share(start, start)
            exp = share(exp, exp)
            # Usually the same values again: a comparison is cheaper than a lookup.
            cltt = start if cltt == start else share(cltt, cltt)
            pet = exp if pet == exp else share(pet, pet)
        scope = _SCOPES.get(raw)
        if scope is None:
            scope = _scope(raw)
        if clen == 255:
            cid = None
        off = shape.size
        host = str(data[off : off + host_len], "utf-8", "replace") if host_len else ""
        off += host_len
        relay = data[off : off + relay_len] if relay_len else b""
        vendor = b""
        if ver == 2:
            off += relay_len
            (vendor_len,) = _unpack_h(data, off)
            vendor = data[off + 2 : off + 2 + vendor_len]
        flag = _FLAGS.get(flags)
        if flag is None:
            flag = _flag(flags)
        # Positional, with enum members from lookup tables: this runs once per
        # lease at start-up, a million times for a big server.
        return cls(addr, _STATES[state], scope, hw, cid, start, exp, cltt, pet, host, flag, relay, ptime, vendor)


_STATES = {s.value: s for s in LeaseState}
_FLAGS: dict[int, LeaseFlag] = {}


def _flag(value: int) -> LeaseFlag:
    flag = _FLAGS.get(value)
    if flag is None:
        flag = _FLAGS[value] = LeaseFlag(value)
    return flag


_intern = sys.intern
_unpack_head = Lease._HEAD.unpack_from
_HEAD_SIZE = Lease._HEAD.size
_SHAPE_AT = _HEAD_SIZE - 6  # scope, hw and client-id lengths end the head
_SHAPES: dict[bytes, struct.Struct] = {}


def _shape(data: bytes) -> struct.Struct:
    """The struct that reads a record's head, scope, hw, client-id and host/relay lengths."""
    _, _, _, _, _, _, _, _, _, slen, hlen, clen = _unpack_head(data)
    shape = struct.Struct(f"!BIBIqqqqqIBB{slen}s{hlen}s{0 if clen == 255 else clen}sHH")
    if len(_SHAPES) < 4096:
        _SHAPES[data[_SHAPE_AT:_HEAD_SIZE]] = shape
    return shape


_unpack_h = struct.Struct("!H").unpack_from
# Scope names as stored -> the interned name: every lease of a scope shares it.
_SCOPES: dict[bytes, str] = {}


def _scope(raw: bytes) -> str:
    name = _intern(str(raw, "utf-8"))
    if len(_SCOPES) < 4096:
        _SCOPES[raw] = name
    return name


# A lease event's record.  Version 1 (stores written before the source
# field): time, address, state, expiration, what-length, then what and the
# key.  Its first byte is the top byte of a big-endian epoch time, always 0
# for any time before the year 2^56 s, so a record starting with 2 is
# version 2: version, the same fields, source and hw lengths, then what,
# source, hw, key.  (Module constants: a NamedTuple's body holds its fields.)
_EVENT_HEAD = struct.Struct("!qIBqB")
_EVENT_HEAD2 = struct.Struct("!BqIBqBBB")
_EVENT_VERSION2 = 2


class LeaseEvent(NamedTuple):
    """One change to a lease, kept in the event history (and, with failover, sent as BNDUPD).

    ``source`` says who made the change: ``""`` this server (a client's
    request, an expiry), ``"partner"`` the failover partner (a binding
    update received from it), ``"operator"`` an admin command.  ``hw`` is
    the client's htype byte + chaddr, so the history can be asked by
    hardware address even for a client known by its client-id.

    A named tuple rather than a frozen dataclass: as immutable, and built
    in a third of the time (one per ACK).
    """

    time: int
    address: int
    state: LeaseState
    key: bytes  # client key, b"" when none
    expiration: int
    what: str  # "ack", "renew", "release", "decline", "expire", "bootp", ...
    source: str = ""
    hw: bytes = b""

    def pack(self) -> bytes:
        """Serialise for the store's event history (version 2)."""
        what = self.what.encode()
        source = self.source.encode()
        return b"".join((
            _EVENT_HEAD2.pack(_EVENT_VERSION2, self.time, self.address, int(self.state), self.expiration,
                             len(what), len(source), len(self.hw)),
            what, source, self.hw, self.key,
        ))

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> "LeaseEvent":
        """Inverse of :meth:`pack`; reads version 1 records too."""
        if data[0] == _EVENT_VERSION2:
            _, time, addr, state, exp, wlen, slen, hlen = _EVENT_HEAD2.unpack_from(data)
            off = _EVENT_HEAD2.size
            what = str(data[off : off + wlen], "utf-8")
            off += wlen
            source = str(data[off : off + slen], "utf-8")
            off += slen
            hw = bytes(data[off : off + hlen])
            key = bytes(data[off + hlen :])
            return cls(time, addr, _STATES[state], key, exp, what, source, hw)
        time, addr, state, exp, wlen = _EVENT_HEAD.unpack_from(data)
        off = _EVENT_HEAD.size
        what = str(data[off : off + wlen], "utf-8")
        key = bytes(data[off + wlen :])
        # Version 1 kept no hardware address; a client known by it has it in its key.
        hw = key[1:] if key[:1] == b"\x00" else b""
        return cls(time, addr, _STATES[state], key, exp, what, "", hw)

    @classmethod
    def index_fields(cls, data: bytes | memoryview) -> tuple[int, int, bytes]:
        """(time, address, hw) of a packed event, for the store's history indexes."""
        if data[0] == _EVENT_VERSION2:
            _, time, addr, _, _, wlen, slen, hlen = _EVENT_HEAD2.unpack_from(data)
            off = _EVENT_HEAD2.size + wlen + slen
            return time, addr, bytes(data[off : off + hlen])
        time, addr, _, _, wlen = _EVENT_HEAD.unpack_from(data)
        key = bytes(data[_EVENT_HEAD.size + wlen :])
        return time, addr, key[1:] if key[:1] == b"\x00" else b""


@dataclass(frozen=True)
class Range:
    """An inclusive address range, as integers (host byte order)."""

    first: int
    last: int

    def __contains__(self, address: object) -> bool:
        return isinstance(address, int) and self.first <= address <= self.last

    def __len__(self) -> int:
        return self.last - self.first + 1
