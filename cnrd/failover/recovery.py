"""Update requests: answering the partner's UPDREQ/UPDREQALL, and asking our own.

The partner asks after a restart or a partition (draft §7.7, §9.3); the
answer is a BNDUPD for every address due, then UPDDONE once the last of
them is acknowledged.  :func:`everything` and :func:`missed` pick the
addresses; :class:`Recovery` tracks the answer in progress and whether we
asked on this link.

Pure module.
"""

from __future__ import annotations

from collections.abc import Collection

from cnrd.leases.model import LeaseState
from cnrd.leases.table import LeaseTable


def everything(table: LeaseTable, scopes: Collection[str]) -> list[int]:
    """The addresses an UPDREQALL asks for, in table order: every one with a record.

    Never-used addresses are FREE (the main's) on both sides by definition,
    so they are not sent (draft §7.3: those ever associated with a client
    suffice; ISC sends them too, which for a /15 pool is 10x the traffic).
    """
    due = []
    for address, lease in table.leases.items():
        if lease.scope in scopes:
            due.append(address)
        elif lease.scope == "":
            pool = table.pool_of(address)
            if pool is not None and pool.scope in scopes:
                due.append(address)
    return due


def missed(table: LeaseTable, scopes: Collection[str]) -> list[int]:
    """The leases an UPDREQ asks for, in table order, beyond what is queued or unacknowledged.

    ISC's answer: every lease whose potential expiration the partner never
    acknowledged, and every expired or released binding.
    """
    return [address for address, lease in table.leases.items()
            if lease.scope in scopes
            and ((lease.state is LeaseState.LEASED and lease.potential_expiration > lease.partner_time)
                 or lease.state in (LeaseState.EXPIRED, LeaseState.RELEASED))]


class Recovery:
    """The partner's update request we are answering, and whether we asked ours."""

    def __init__(self) -> None:
        self.requested = False  # our UPDREQ(ALL) sent on this link
        self._answering: tuple[int, set[int]] | None = None  # the request's xid, addresses due

    def answer(self, xid: int, due: set[int]) -> int | None:
        """Start answering request ``xid``; its xid when nothing is due (UPDDONE at once)."""
        self._answering = (xid, due)
        return self._finished()

    def settled(self, address: int) -> int | None:
        """The partner now knows ``address``; the request's xid when that was the last one."""
        if self._answering is None:
            return None
        self._answering[1].discard(address)
        return self._finished()

    def _finished(self) -> int | None:
        if self._answering is None or self._answering[1]:
            return None
        xid, _ = self._answering
        self._answering = None
        return xid

    def ask(self) -> bool:
        """True once per link: the first call since the link came up or NORMAL was reached."""
        if self.requested:
            return False
        self.requested = True
        return True

    def link_lost(self) -> None:
        """The answer in progress dies with the link (the partner asks again)."""
        self._answering = None
