"""The pool split between main and backup, and the PARTNER-DOWN reclaim sweep.

The main hands the backup its share (backup-pct, dynamic-bootp-backup-pct
for a dynamic-BOOTP scope, or half with load balancing) of each scope's
free addresses on reaching NORMAL, on POOLREQ and hourly
(:func:`rebalance`), from the scope's backup allocation boundary downward
when it allocates first-available.  With load balancing the shares are
checked every minute and kept near half in both directions: addresses the
backup holds beyond its share and a slack are taken back (:func:`excess`;
CNR 7.2, "Setting Load Balancing").  In PARTNER-DOWN, :class:`Reclaim` frees
expired and released leases once the partner can no longer hold them.

Pure module.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from itertools import islice

from cnrd.config import FailoverPairConfig, ScopeConfig
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.table import LeaseTable

REBALANCE_INTERVAL = 3600  # the main tops the backup's share up hourly (CNR)
# While balancing both servers allocate all the time, so the shares drift
# within minutes; the main checks them every minute (ISC's min-balance).
BALANCED_REBALANCE_INTERVAL = 60
# How far above its share (in % of the scope's available addresses) the
# backup's part may grow before the main takes addresses back.
RECLAIM_SLACK_PCT = 10.0
RECLAIM_BATCH = 20000  # leases examined per tick by the PARTNER-DOWN reclaim sweep
RECLAIM_PASS_INTERVAL = 60  # seconds between the starts of two sweeps


def scope_pct(scope: ScopeConfig, pair: FailoverPairConfig) -> float | None:
    """The backup's percentage of ``scope`` set by the scope or for its kind, None for the pair's backup-pct.

    A dynamic-BOOTP scope takes dynamic-bootp-backup-pct (the scope's, else
    the pair's), since neither server, even in PARTNER-DOWN, ever hands out
    the other's free addresses there (CNR 7.2, "BOOTP Backup Percentage");
    unset, or any other scope, takes the scope's backup-pct.  Only the main
    splits the pool, so on the backup these values change nothing.
    """
    if scope.dynamic_bootp:
        for pct in (scope.dynamic_bootp_backup_pct, pair.dynamic_bootp_backup_pct):
            if pct is not None:
                return pct
    return scope.backup_pct


def shares(scopes: Collection[str], *, backup_pct: float, load_balancing: bool,
           scope_pct: Mapping[str, float]) -> dict[str, float]:
    """The backup's percentage of each scope: half with load balancing, else the
    scope's own (:func:`scope_pct`) where it has one, else the pair's backup-pct."""
    if load_balancing:
        return {name: 50.0 for name in scopes}
    return {name: scope_pct.get(name, backup_pct) for name in scopes}


def rebalance(table: LeaseTable, share: Mapping[str, float], now: int) -> int:
    """Move FREE addresses to BACKUP until each scope's share is met; how many moved.

    The addresses come in :meth:`LeaseTable.for_backup` order: from the
    backup allocation boundary downward in a first-available scope.
    """
    moved = 0
    for name, pct in share.items():
        pool = table.pools.get(name)
        if pool is None:
            continue
        available = pool.free_count() + pool.backup_count()
        need = int(available * pct / 100) - pool.backup_count()
        if need <= 0:
            continue
        for address in islice(table.for_backup(name), need):
            table.update(address, durable=True, event="backup", now=now, state=LeaseState.BACKUP,
                         scope=name, hw=b"", client_id=None, expiration=0, start=now)
            moved += 1
    return moved


def rebalance_interval(load_balancing: bool) -> int:
    """Seconds between two checks of the shares by the main."""
    return BALANCED_REBALANCE_INTERVAL if load_balancing else REBALANCE_INTERVAL


def excess(table: LeaseTable, share: Mapping[str, float]) -> list[int]:
    """BACKUP addresses the main should take back: each scope's backup part
    down to its share, once it exceeds the share by more than RECLAIM_SLACK_PCT.

    The most recently given come first back (the backup allocates its
    longest-free addresses first, so these are the last it would use).
    """
    out: list[int] = []
    for name, pct in share.items():
        pool = table.pools.get(name)
        if pool is None:
            continue
        held = pool.backup_count()
        available = pool.free_count() + held
        over = held - int(available * pct / 100)
        if over <= max(1, int(available * RECLAIM_SLACK_PCT / 100)):
            continue
        newest = list(pool.backup_candidates())[-over:]
        out.extend(a for a in reversed(newest) if (lease := table.get(a)) is not None
                   and lease.state is LeaseState.BACKUP)
    return out


def holds_leases(table: LeaseTable, scopes: Collection[str]) -> bool:
    """True when any address of ``scopes`` has a record other than the backup's share."""
    return any(lease.scope in scopes and lease.state is not LeaseState.BACKUP for lease in table.leases.values())


class Reclaim:
    """PARTNER-DOWN: free expired and released leases the partner can no longer hold.

    Such an address may be in use by a client of the partner until MCLT past
    the later of the partner-down time and the latest expiration the partner
    may know of (the potential expiration we sent or it acknowledged); after
    that it is free for any client.  The table is examined RECLAIM_BATCH
    leases per call so a large one never stalls the caller.
    """

    def __init__(self) -> None:
        self._todo: list[int] = []  # addresses left to examine in this pass
        self._next = 0  # earliest start of the next pass

    def step(self, table: LeaseTable, scopes: Collection[str], *, since: int, mclt: int, now: int) -> None:
        """Examine the next batch; ``since`` is the start of PARTNER-DOWN."""
        if now < since + mclt:
            return
        if not self._todo:
            if now < self._next:
                return
            self._todo = list(table.leases)
            self._next = now + RECLAIM_PASS_INTERVAL
        batch, self._todo = self._todo[-RECLAIM_BATCH:], self._todo[:-RECLAIM_BATCH]
        for address in batch:
            lease = table.get(address)
            if lease is None or lease.scope not in scopes \
                    or lease.state not in (LeaseState.EXPIRED, LeaseState.RELEASED):
                continue
            told = max(since, lease.expiration if 0 < lease.expiration < Lease.INFINITE else 0,
                       lease.potential_expiration, lease.partner_time)
            if now >= told + mclt:
                table.update(address, durable=True, event="reclaim", now=now, state=LeaseState.AVAILABLE)
