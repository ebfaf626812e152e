"""The server's working set of leases, and the address allocator.

:class:`LeaseTable` holds every lease record in memory (the LMDB store is
where they become durable), indexes them by client, picks free addresses
per scope (:class:`~cnrd.leases.pool.Pool`, re-exported here), and tracks which records changed since the last
commit so the DHCP adapter can write them in one transaction.

Allocation follows CNR: by default the address free the longest is handed
out first (least recently used), so a returning client often finds its old
address still unused; with ``allocate-first-available`` the lowest free
address is used.  Addresses that never had a record come before any that
did, without materialising a record for every address of a large pool.

Pure module: callers pass ``now`` (integer seconds).
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cnrd.leases.model import FREE_STATES, Lease, LeaseEvent, LeaseFlag, LeaseState
from cnrd.leases.pool import Pool

__all__ = ["Accept", "LeaseTable", "Pool"]


# States whose expiration moves the lease on by itself (see LeaseTable.expire).
_TIMED = frozenset({LeaseState.LEASED, LeaseState.OFFERED, LeaseState.UNAVAILABLE})

#: Vetoes an address the caller may not hand out (e.g. one a client-class excludes).
Accept = Callable[[int], bool]
#: A client index: client-id or hardware address -> address, or addresses.
Index = dict[bytes, "int | list[int]"]


class LeaseTable:
    """Every lease in memory, indexed by address and by client, with per-scope pools."""

    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        # The client index, by client-id and by hardware address (for clients
        # without one): keyed by the lease's own bytes objects, so an index
        # entry costs no key of its own.  The value is the address, or a list
        # of addresses for a client bound in several scopes: a list per client
        # would cost ~100 MB per million leases.
        self._by_cid: Index = {}
        self._by_hw: Index = {}
        self.pools: dict[str, Pool] = {}
        # When something runs out: a heap of times, and the addresses due at
        # each (one address, or an array of them: 4 bytes a lease where a
        # heap entry per lease cost 40).  Entries superseded by later
        # changes are skipped.
        self._expiry: list[int] = []
        self._due: dict[int, int | array[int]] = {}
        self._dirty: dict[int, Lease] = {}
        self._events: list[LeaseEvent] = []
        self.reserved: dict[int, bytes] = {}  # address -> client key
        # EXPIRED addresses still in their pool's grace period: their client's
        # alone until it ends (the expiry heap has an entry for that moment).
        self._in_grace: set[int] = set()
        # Called with (lease, what) for every durable change not made on the
        # partner's word: the failover peers turn them into binding updates.
        self.listeners: list[Callable[[Lease, str], None]] = []

    # -- setup -------------------------------------------------------------
    def add_pool(self, pool: Pool) -> None:
        """Serve ``pool``'s scope from it (replacing that scope's pool, if any)."""
        self.pools[pool.scope] = pool
        pool.state_counts.clear()
        pool.reserved_unused.clear()
        # A pool made after leases exist (a reload that adds a scope or
        # changes its ranges) must learn which of its addresses have records,
        # and in which state, or it would offer leased addresses again.
        for address in self.reserved:
            if address in pool:
                pool.exclude(address)
                pool.remove_free(address)
                if address not in self.leases:
                    pool.reserved_unused.add(address)
        for address, lease in self.leases.items():
            if address in pool:
                pool.exclude(address)
                self._classify(pool, lease)
                pool.state_counts[lease.state] += 1

    def reserve(self, address: int, key: bytes) -> None:
        """Hold ``address`` for one client (a reservation): never allocated to others."""
        self.reserved[address] = key
        for pool in self.pools.values():
            if address in pool:
                pool.exclude(address)
                pool.remove_free(address)
                if address not in self.leases:
                    pool.reserved_unused.add(address)

    def unreserve(self, address: int) -> None:
        """The reservation of ``address`` is gone: its pool may allocate it again when free."""
        if self.reserved.pop(address, None) is None:
            return
        pool = self.pool_of(address)
        if pool is None:
            return
        pool.reserved_unused.discard(address)
        lease = self.leases.get(address)
        if lease is None:
            pool.add_free(address)  # never used: free like any fresh address
        else:
            self._classify(pool, lease)

    def pool_of(self, address: int) -> Pool | None:
        """The pool whose ranges hold ``address``, if any."""
        for pool in self.pools.values():
            if address in pool:
                return pool
        return None

    def load(self, leases: Iterable[Lease], now: int) -> int:
        """Take records from the store at start-up; returns how many were loaded."""
        n = 0
        self._bulk = True
        # The common record at start-up (a new address of a served scope,
        # held by a client, not reserved) is inserted here without the calls
        # of the general path, and its pool learns of it in one call per
        # scope and state (a million of them at every start).
        table = self.leases
        by_cid, by_hw = self._by_cid, self._by_hw
        reserved, grace = self.reserved, self._in_grace
        pools, due = self.pools, self._due
        timed = _TIMED
        infinite = Lease.INFINITE
        pending: dict[tuple[str, LeaseState], list[int]] = {}
        last_scope, last_state, taken = "", LeaseState.AVAILABLE, []
        try:
            for lease in leases:
                n += 1
                state = lease.state
                if state is LeaseState.OFFERED:
                    # Offers are not durable promises: after a restart the address is free again.
                    lease.state, lease.flags = _withdrawn(lease)
                    state = lease.state
                elif state is LeaseState.EXPIRED:
                    self._hold_for_grace(lease, now)
                # Any, not int: compiled by mypyc an int would be unboxed here
                # and boxed anew for the dict key and the client index, three
                # int objects per lease where the record's own one does.
                address: Any = lease.address
                scope = lease.scope
                if not (state in timed and scope in pools and address not in table and address not in reserved
                        and address not in grace):
                    if address in table:
                        self._take_pending(pending)  # the record this one replaces must be counted first
                    self._insert(lease)
                    continue
                table[address] = lease
                cid = lease.client_id
                if cid:
                    if cid in by_cid:
                        _index_add(by_cid, cid, address)
                    else:
                        by_cid[cid] = address
                else:
                    hw = lease.hw
                    if hw:
                        if hw in by_hw:
                            _index_add(by_hw, hw, address)
                        else:
                            by_hw[hw] = address
                exp = lease.expiration
                if 0 < exp < infinite:
                    bucket = due.get(exp)
                    if bucket is None or isinstance(bucket, int):
                        self._push(exp, address)
                    else:
                        bucket.append(address)
                if scope is not last_scope or state is not last_state:
                    last_scope, last_state = scope, state
                    taken = pending.setdefault((scope, state), [])
                taken.append(address)
                if len(taken) >= 4096:
                    # In chunks: a list of every address would be freed at the
                    # end into a heap that keeps its size.
                    self._take_pending(pending)
            self._take_pending(pending)
        finally:
            self._bulk = False
            heapq.heapify(self._expiry)
        return n

    def _take_pending(self, pending: dict[tuple[str, LeaseState], list[int]]) -> None:
        """Tell the pools of the records :meth:`load` inserted (by scope and state), then forget them."""
        for (scope, state), addresses in pending.items():
            for address in self.pools[scope].take_all(addresses, state):
                # Not in its scope's ranges: the pool that holds it, if any (as _insert).
                pool = self.pool_of(address)
                if pool is not None:
                    pool.exclude(address)
                    self._classify(pool, self.leases[address])
                    pool.reserved_unused.discard(address)
                    pool.state_counts[state] += 1
            addresses.clear()

    _bulk = False

    def _insert(self, lease: Lease) -> None:
        old = self.leases.get(lease.address)
        self.leases[lease.address] = lease
        if old is not None:
            _unindex(self._by_cid, self._by_hw, old.client_id, old.hw, old.address)
        _reindex(self._by_cid, self._by_hw, lease.client_id, lease.hw, lease.address)
        pool = self.pools.get(lease.scope)
        if pool is None or lease.address not in pool:
            pool = self.pool_of(lease.address)
        if pool is not None:
            pool.exclude(lease.address)
            self._classify(pool, lease)
            if old is not None:
                pool.state_counts[old.state] -= 1
            pool.reserved_unused.discard(lease.address)
            pool.state_counts[lease.state] += 1
        self._schedule(lease)

    def _classify(self, pool: Pool, lease: Lease) -> None:
        """Put ``lease.address`` in the right free set of ``pool`` for its state."""
        address = lease.address
        if address in self.reserved or address in self._in_grace:
            pool.remove_free(address)
            pool.remove_backup(address)
        elif lease.state is LeaseState.BACKUP:
            pool.remove_free(address)
            pool.add_backup(address)
        elif pool.reusable(lease.state):
            pool.remove_backup(address)
            pool.add_free(address)
        else:
            pool.remove_free(address)
            pool.remove_backup(address)

    def addresses_of(self, key: bytes) -> list[int]:
        """The addresses whose records carry the client key ``key``."""
        kind = key[:1]
        if kind == b"\x01":
            cur = self._by_cid.get(key[1:])
        elif kind == b"\x00":
            cur = self._by_hw.get(key[1:])
        else:
            return []
        if cur is None:
            return []
        return [cur] if isinstance(cur, int) else list(cur)

    def _push(self, when: int, address: int) -> None:
        """``address`` is due to be looked at ``when``."""
        due = self._due
        cur = due.get(when)
        if cur is None:
            due[when] = address
            if self._bulk:
                self._expiry.append(when)  # heapified once at the end of load()
            else:
                heapq.heappush(self._expiry, when)
        elif isinstance(cur, int):
            due[when] = array("I", (cur, address))
        else:
            cur.append(address)

    def _schedule(self, lease: Lease) -> None:
        if lease.state in _TIMED and 0 < lease.expiration < Lease.INFINITE:
            self._push(lease.expiration, lease.address)

    # -- queries -----------------------------------------------------------
    def get(self, address: int) -> Lease | None:
        """The record of ``address``, or None when it never had one."""
        return self.leases.get(address)

    def of_client(self, key: bytes) -> list[Lease]:
        """The client's leases (any state) that still carry its key."""
        return [self.leases[a] for a in self.addresses_of(key)]

    def is_available(
        self, address: int, key: bytes, hw_key: bytes | None = None, owner: str | None = None
    ) -> bool:
        """True when ``address`` may be given to the client with ``key``.

        ``hw_key`` is the client's hardware-address key when it also sent a
        client-id: a reservation by MAC still matches it.  ``owner`` is
        ``"main"`` or ``"backup"`` for a failover server allowed only its own
        free addresses, ``None`` when any free address will do.
        """
        reserved_for = self.reserved.get(address)
        if reserved_for is not None:
            return reserved_for == key or (hw_key is not None and reserved_for == hw_key)
        lease = self.leases.get(address)
        if lease is None:
            return self.pool_of(address) is not None and owner != "backup"
        held_by = lease.key
        mine = held_by is not None and (held_by == key or held_by == hw_key)
        if lease.state in (LeaseState.OFFERED, LeaseState.LEASED):
            return mine
        if lease.state is LeaseState.BACKUP:
            return owner in (None, "backup", "any")
        if lease.state not in FREE_STATES:
            return False
        if address in self._in_grace:
            return mine
        pool = self.pool_of(address)
        if pool is not None and not pool.reusable(lease.state):
            return mine  # expired/released, partner not told yet: only its own client
        return owner != "backup" or lease.state is not LeaseState.AVAILABLE

    def allocate(self, scope: str, key: bytes, accept: Accept | None = None, owner: str | None = None) -> int | None:
        """A free address in ``scope`` for a new client, or None when the pool is empty.

        ``accept(address) -> bool`` lets the caller veto candidates (for
        example addresses another client-class may not use).  ``owner``
        ``"backup"`` takes only BACKUP addresses (a failover backup),
        ``"any"`` the main's and then the backup's (PARTNER-DOWN).
        """
        pool = self.pools.get(scope)
        if pool is None:
            return None
        if owner == "backup":
            for address in pool.backup_candidates():
                lease = self.leases.get(address)
                if lease is not None and lease.state is LeaseState.BACKUP and (accept is None or accept(address)):
                    return address
            return None
        found = self._allocate_free(pool, accept)
        if found is None and owner == "any":
            found = next(iter(pool.backup_candidates()), None)
        return found

    def for_backup(self, scope: str) -> Iterator[int]:
        """Free addresses of ``scope`` for the main to give the backup, in the order it gives them.

        Each address yielded is still free; the caller must take it (give it
        a record) before asking for the next.  A first-available pool gives
        them from its backup allocation boundary downward
        (:meth:`Pool.split_order`); an LRU pool in the order clients get them.
        """
        pool = self.pools.get(scope)
        if pool is None:
            return
        if not pool.first_available:
            while (address := self._allocate_free(pool, None)) is not None:
                yield address
            return
        for address in pool.split_order():
            if not pool.is_free(address) or address in self.reserved:
                continue
            lease = self.leases.get(address)
            if lease is not None and not pool.reusable(lease.state):
                pool.remove_free(address)
                continue
            yield address

    def _allocate_free(self, pool: Pool, accept: Accept | None) -> int | None:
        candidates = pool.candidates()
        try:
            for address in candidates:
                if address in self.reserved:
                    continue
                lease = self.leases.get(address)
                if lease is not None and not pool.reusable(lease.state):
                    pool.remove_free(address)
                    continue
                if accept is None or accept(address):
                    return address
                if lease is None:
                    pool.add_free(address)  # vetoed but unused: keep it allocatable
        finally:
            candidates.close()
        return None

    # -- changes -----------------------------------------------------------
    def update(
        self,
        address: int,
        *,
        durable: bool,
        event: str | None = None,
        now: int = 0,
        from_partner: bool = False,
        **fields: object,
    ) -> Lease:
        """Change (or create) the record for ``address`` and keep every index right.

        ``durable`` marks it for the next commit; ``event`` appends a lease
        event (the history, and with failover the binding update) whose
        source is the ``source`` keyword (``"operator"`` for admin commands),
        or ``"partner"`` for a change ``from_partner``.  ``source`` is read
        from ``fields`` rather than named: callers pass their decisions'
        field dicts straight through.
        """
        source = str(fields.pop("source", "")) if "source" in fields else ""
        lease = self.leases.get(address)
        if lease is None:
            old_state = None
            lease = self.leases[address] = Lease(address)
        else:
            old_state = lease.state
        old_cid, old_hw = lease.client_id, lease.hw
        for name, value in fields.items():
            setattr(lease, name, value)
        self._changed(lease, old_state, old_cid, old_hw, durable, event, now, from_partner, source)
        return lease

    def bind(
        self, address: int, durable: bool, event: str | None, now: int, state: LeaseState, scope: str, hw: bytes,
        client_id: bytes | None, expiration: int, flags: LeaseFlag, host_name: str,
        start: int | None = None, cltt: int | None = None, potential_expiration: int | None = None,
        relay_info: bytes | None = None, vendor_class: bytes | None = None,
    ) -> Lease:
        """:meth:`update` for what a DHCP exchange sets (an OFFER, an ACK), by position.

        The same change as ``update(address, durable=..., event=..., now=...,
        state=..., ...)`` with the fields given here (None: left as they are),
        without a keyword dict and a ``setattr`` per field: about 1 µs less
        per call on the request path.
        """
        lease = self.leases.get(address)
        if lease is None:
            old_state = None
            lease = self.leases[address] = Lease(address)
        else:
            old_state = lease.state
        old_cid, old_hw = lease.client_id, lease.hw
        lease.state = state
        lease.scope = scope
        lease.hw = hw
        lease.client_id = client_id
        lease.expiration = expiration
        lease.flags = flags
        lease.host_name = host_name
        if start is not None:
            lease.start = start
        if cltt is not None:
            lease.cltt = cltt
        if potential_expiration is not None:
            lease.potential_expiration = potential_expiration
        if relay_info is not None:
            lease.relay_info = relay_info
        if vendor_class is not None:
            lease.vendor_class = vendor_class
        self._changed(lease, old_state, old_cid, old_hw, durable, event, now, False, "")
        return lease

    def _changed(self, lease: Lease, old_state: LeaseState | None, old_cid: bytes | None, old_hw: bytes,
                 durable: bool, event: str | None, now: int, from_partner: bool, source: str) -> None:
        """Bring every index in line with ``lease``'s new fields (it was in
        ``old_state``, None when new, with that client-id and hw)."""
        address = lease.address
        state = lease.state
        if state is not LeaseState.EXPIRED and self._in_grace:
            self._in_grace.discard(address)
        cid, hw = lease.client_id, lease.hw
        # The client key is the client-id when there is one, else the
        # hardware address: re-index only when that changed.
        if (cid or None) != (old_cid or None) or (not cid and hw != old_hw):
            _unindex(self._by_cid, self._by_hw, old_cid, old_hw, address)
            _reindex(self._by_cid, self._by_hw, cid, hw, address)
        pool = self.pool_of(address)
        if pool is not None:
            if old_state is None:
                pool.exclude(address)
            self._classify(pool, lease)
            if old_state is not state:
                if old_state is None:
                    pool.reserved_unused.discard(address)
                else:
                    pool.state_counts[old_state] -= 1
                pool.state_counts[state] += 1
        if state in _TIMED and 0 < lease.expiration < Lease.INFINITE:
            self._push(lease.expiration, address)
        if durable:
            self._dirty[address] = lease
            if not from_partner:
                for listener in self.listeners:
                    listener(lease, event or "")
        if event is not None:
            self._events.append(
                LeaseEvent(now, address, lease.state, lease.key or b"", lease.expiration, event,
                           "partner" if from_partner else source, lease.hw)
            )

    def withdraw_offer(self, address: int) -> None:
        """An OFFERED address the client did not take is free again, in the
        failover backup's share when it came from there (not persisted)."""
        lease = self.leases.get(address)
        if lease is None or lease.state is not LeaseState.OFFERED:
            return
        state, flags = _withdrawn(lease)
        self.update(address, durable=False, state=state, flags=flags, expiration=0)

    def due(self, now: int) -> bool:
        """Whether something in the expiry heap may have run out by ``now`` (O(1)).

        The request path asks this before each request so an address comes
        back the moment its lease, offer or unavailable hold ends, without a
        walk of the pool on every allocation.
        """
        heap = self._expiry
        return bool(heap) and heap[0] <= now

    def _grace(self, lease: Lease) -> int:
        pool = self.pools.get(lease.scope)
        if pool is None or lease.address not in pool:
            pool = self.pool_of(lease.address)
        return pool.grace if pool is not None else 0

    def _hold_for_grace(self, lease: Lease, now: int) -> bool:
        """Keep an EXPIRED ``lease`` its client's until its grace period ends; False when it has."""
        if not 0 < lease.expiration < Lease.INFINITE:
            return False
        end = lease.expiration + self._grace(lease)
        if end <= now:
            return False
        self._in_grace.add(lease.address)
        self._push(end, lease.address)
        return True

    def expire(self, now: int) -> list[Lease]:
        """Move every lease, offer and unavailable hold that ran out by ``now`` on; returns them.

        A lease that ran out becomes EXPIRED (durable, told to a failover
        partner) and stays its client's for the pool's grace period; then
        the address may go to others (under failover, once the partner has
        acknowledged the expiry: :meth:`Pool.reusable`).
        """
        changed: list[Lease] = []
        heap = self._expiry
        while heap and heap[0] <= now:
            when = heapq.heappop(heap)
            due = self._due.pop(when, None)
            if due is not None:
                self._expire_at(when, (due,) if isinstance(due, int) else due, now, changed)
        return changed

    def _expire_at(self, when: int, addresses: Iterable[int], now: int, changed: list[Lease]) -> None:
        """Move on what of ``addresses`` ran out at ``when`` (see :meth:`expire`)."""
        for address in addresses:
            lease = self.leases.get(address)
            if lease is None:
                continue
            if address in self._in_grace:
                # The grace period's end, or an entry from before a reload
                # changed it: look again by the lease's own fields.
                self._in_grace.discard(address)
                if not self._hold_for_grace(lease, now):
                    pool = self.pool_of(address)
                    if pool is not None:
                        self._classify(pool, lease)
                continue
            if lease.state not in _TIMED or lease.expiration != when:
                continue  # superseded by a later change
            if lease.state is LeaseState.LEASED:
                self.update(address, durable=True, event="expire", now=now, state=LeaseState.EXPIRED)
                if self._hold_for_grace(lease, now):
                    pool = self.pool_of(address)
                    if pool is not None:
                        self._classify(pool, lease)
            elif lease.state is LeaseState.OFFERED:
                # The client never asked for it: free again, nothing to persist.
                self.withdraw_offer(address)
            else:  # UNAVAILABLE
                self.update(
                    address, durable=True, event="available", now=now,
                    state=LeaseState.AVAILABLE, expiration=0, hw=b"", client_id=None,
                )
            changed.append(lease)

    def mark_durable(self, address: int) -> bool:
        """Write ``address``'s record as it is with the next commit; False if there is none.

        For a field changed in place that no index, pool count, expiry or
        listener depends on (the partner time a BNDACK raises): the record
        is only queued, not re-classified.
        """
        lease = self.leases.get(address)
        if lease is None:
            return False
        self._dirty[address] = lease
        return True

    @property
    def has_dirty(self) -> bool:
        """Whether changes wait for a commit."""
        return bool(self._dirty or self._events)

    def take_dirty(self) -> tuple[list[Lease], list[LeaseEvent]]:
        """The records and events changed since the last call, for one commit."""
        leases = list(self._dirty.values())
        events = self._events
        self._dirty = {}
        self._events = []
        return leases, events


def _withdrawn(lease: Lease) -> tuple[LeaseState, LeaseFlag]:
    """The state and flags of an offered address once its offer is withdrawn."""
    if lease.flags & LeaseFlag.OFFERED_FROM_BACKUP:
        return LeaseState.BACKUP, lease.flags & ~LeaseFlag.OFFERED_FROM_BACKUP
    return LeaseState.AVAILABLE, lease.flags



def _index_add(index: Index, key: bytes, address: int) -> None:
    cur = index.get(key)
    if cur is None:
        index[key] = address
    elif isinstance(cur, int):
        if cur != address:
            index[key] = [cur, address]
    elif address not in cur:
        cur.append(address)


def _index_remove(index: Index, key: bytes, address: int) -> None:
    cur = index.get(key)
    if cur is None:
        return
    if isinstance(cur, int):
        if cur == address:
            del index[key]
        return
    if address in cur:
        cur.remove(address)
    if len(cur) == 1:
        index[key] = cur[0]
    elif not cur:
        del index[key]


def _reindex(by_cid: Index, by_hw: Index, client_id: bytes | None, hw: bytes, address: int) -> None:
    """Index ``address`` under the client key made of these fields (see :func:`client_key`)."""
    if client_id:
        _index_add(by_cid, client_id, address)
    elif hw:
        _index_add(by_hw, hw, address)


def _unindex(by_cid: Index, by_hw: Index, client_id: bytes | None, hw: bytes, address: int) -> None:
    """Drop ``address`` from under the client key made of these fields."""
    if client_id:
        _index_remove(by_cid, client_id, address)
    elif hw:
        _index_remove(by_hw, hw, address)
