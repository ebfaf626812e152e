"""The link to the partner: handshake checks, liveness and the timers on them.

:class:`Link` knows whether the TCP connection is up, whether the
CONNECT/CONNECTACK handshake completed and the partner's STATE was heard,
when anything was last sent and received, what the partner announced in
its handshake, and the transaction ids of our messages.  It decides what
the clock asks of the link (:meth:`Link.due`); the session sends the
messages.

Pure module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cnrd.failover.states import Role
from cnrd.failover.wire import Message, MessageType, RejectReason

MAX_SKEW = 60  # seconds of clock difference accepted in CONNECT/CONNECTACK (ISC's limit)
HANDSHAKE_TIMEOUT = 15  # seconds a link may stay up without a completed handshake


@dataclass(frozen=True)
class Refusal:
    """Why a handshake message is not accepted.

    ``by_partner`` is a CONNECTACK carrying the partner's own reject: there
    is nothing to answer, only the link to close.
    """

    reason: RejectReason | int
    text: str
    by_partner: bool = False


class Due(enum.Enum):
    """What the clock asks of a connected link."""

    HANDSHAKE_TIMEOUT = "handshake-timeout"  # close: no handshake in HANDSHAKE_TIMEOUT
    SILENT = "silent"  # disconnect: nothing heard for failover-poll-timeout
    CONTACT = "contact"  # send a CONTACT so the partner's receive timer does not run out


class Link:
    """Liveness and handshake state of the link to the partner, on one side."""

    def __init__(self, now: int, receive_timer: int) -> None:
        self.connected = False
        self.handshaken = False  # CONNECT/CONNECTACK exchanged on this link
        self.partner_heard = False  # the partner's STATE received on this link
        self.link_since = 0
        self.last_sent = now
        self.last_received = now
        self.last_contact: int | None = None  # last message from the partner, in this run
        self.partner_max_unacked = 0
        self.partner_receive_timer = receive_timer
        self.clock_skew = 0
        self.partner_hba = b""  # the main's bucket map, from its CONNECT
        self._partner_vendor: str | None = None
        self._xid = 0

    @property
    def partner_vendor(self) -> str | None:
        """The vendor-class-identifier of the partner's last accepted CONNECT/CONNECTACK.

        ``""`` when that message carried none, None before any handshake
        (tells a cnrd partner from ISC dhcpd, whose configuration cannot be compared).
        """
        return self._partner_vendor

    @property
    def in_touch(self) -> bool:
        """Link up, handshake done and the partner's STATE heard (draft §8.3)."""
        return self.connected and self.handshaken and self.partner_heard

    def up(self, now: int) -> None:
        """A TCP connection to the partner came up: a new handshake, xids from 1."""
        self.connected = True
        self.handshaken = self.partner_heard = False
        self.link_since = self.last_received = self.last_sent = now
        self._xid = 0

    def down(self) -> bool:
        """The connection went away; True when we were in touch until now."""
        was = self.in_touch
        self.connected = self.handshaken = self.partner_heard = False
        return was

    def next_xid(self) -> int:
        """A transaction id for a message of ours (32 bits, never 0)."""
        self._xid = (self._xid + 1) & 0xFFFFFFFF or 1
        return self._xid

    def sent(self, now: int) -> None:
        """Something left for the partner."""
        self.last_sent = now

    def received(self, now: int) -> None:
        """Something arrived from the partner."""
        self.last_received = self.last_contact = now

    def accept(self, msg: Message, *, role: Role, name: str, mclt: int, receive_timer: int,
               now: int) -> Refusal | None:
        """Check a CONNECT (backup) or CONNECTACK (main) and, if it passes, take its settings.

        ``mclt`` is the relationship's configured MCLT, which a CONNECT must
        carry; ``receive_timer`` stands in for a partner that announces none.
        The reasons are the draft's (§7.8.2), in ISC's order.
        """
        refusal = (self._check_connect(msg, role, name, mclt, now) if msg.type == MessageType.CONNECT
                   else self._check_connectack(msg, role, name, now))
        if refusal is not None:
            return refusal
        self.clock_skew = msg.time - now
        self.partner_max_unacked = msg.max_unacked or 0
        self.partner_receive_timer = msg.receive_timer or receive_timer
        if msg.type == MessageType.CONNECT:
            self.partner_hba = msg.hba or b""
        self._partner_vendor = msg.vendor_class or ""
        self.handshaken = True
        return None

    def _check_connect(self, msg: Message, role: Role, name: str, mclt: int, now: int) -> Refusal | None:
        if role is Role.MAIN:
            return Refusal(RejectReason.INVALID_PARTNER, "both servers are main")
        if msg.relationship_name != name:
            return Refusal(RejectReason.INVALID_PARTNER,
                           f"unknown failover relationship name {msg.relationship_name!r}")
        skew = msg.time - now
        if abs(skew) > MAX_SKEW:
            return Refusal(RejectReason.TIME_MISMATCH, f"time offset too large ({skew} s)")
        if msg.mclt != mclt:
            return Refusal(RejectReason.INVALID_MCLT, f"MCLT {msg.mclt} differs from ours ({mclt})")
        if self.handshaken:
            return Refusal(RejectReason.DUPLICATE_CONNECTION, "duplicate connection")
        return None

    @staticmethod
    def _check_connectack(msg: Message, role: Role, name: str, now: int) -> Refusal | None:
        if role is Role.BACKUP:
            return Refusal(RejectReason.INVALID_PARTNER, "both servers are backup")
        if msg.reject_reason is not None:
            return Refusal(msg.reject_reason, msg.message_text or "", by_partner=True)
        if msg.relationship_name != name:
            return Refusal(RejectReason.INVALID_PARTNER,
                           f"remote failover relationship name {msg.relationship_name} does not match")
        skew = msg.time - now
        if abs(skew) > MAX_SKEW:
            return Refusal(RejectReason.TIME_MISMATCH, f"time offset too large ({skew} s)")
        return None

    def due(self, now: int, *, poll_interval: int, poll_timeout: int) -> Due | None:
        """What the clock asks of the link at ``now``, if anything."""
        if not self.connected:
            return None
        if not self.handshaken and now - self.link_since > HANDSHAKE_TIMEOUT:
            return Due.HANDSHAKE_TIMEOUT
        if now - self.last_received > poll_timeout:
            return Due.SILENT
        if self.handshaken and now - self.last_sent >= self._contact_interval(poll_interval):
            return Due.CONTACT
        return None

    def _contact_interval(self, poll_interval: int) -> float:
        # Never let the partner's receive timer run out: ISC uses a third of it.
        return min(poll_interval, max(self.partner_receive_timer / 3, 1))
