"""The free addresses of one scope's ranges (:class:`Pool`), as the lease table keeps them.

The :class:`~cnrd.leases.table.LeaseTable` decides which addresses are free
(by their records' states) and tells the pool; the pool hands out candidates
in allocation order without walking the ranges: least recently used by
default, lowest first with ``allocate-first-available``.

Pure module.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections import Counter, OrderedDict
from collections.abc import Generator, Iterable, Iterator

from cnrd.leases.model import FREE_STATES, LeaseState, Range


class AddressBits:
    """A set of addresses within some ranges, one bit per address of the ranges.

    What the pool keeps of "this address has a record": a million-address
    range costs 128 KiB instead of a 32 MiB set of ints.  Addresses outside
    the ranges are never members.
    """

    __slots__ = ("_bits", "_count", "_firsts", "_lasts", "_offsets")

    def __init__(self, ranges: tuple[Range, ...]) -> None:
        self._firsts = [r.first for r in ranges]
        self._lasts = [r.last for r in ranges]
        self._offsets: list[int] = []
        total = 0
        for r in ranges:
            self._offsets.append(total)
            total += len(r)
        self._bits = bytearray((total + 7) >> 3)
        self._count = 0

    def _index(self, address: int) -> int:
        """The bit of ``address``, or -1 outside the ranges."""
        firsts = self._firsts
        if len(firsts) == 1:
            if firsts[0] <= address <= self._lasts[0]:
                return address - firsts[0]
            return -1
        i = bisect.bisect_right(firsts, address) - 1
        if i < 0 or address > self._lasts[i]:
            return -1
        return self._offsets[i] + address - firsts[i]

    def add(self, address: int) -> bool:
        """Make ``address`` a member; False (and nothing done) when it is outside the ranges."""
        i = self._index(address)
        if i < 0:
            return False
        mask = 1 << (i & 7)
        byte = self._bits[i >> 3]
        if not byte & mask:
            self._bits[i >> 3] = byte | mask
            self._count += 1
        return True

    def add_bit(self, i: int) -> int:
        """Set bit ``i`` (an index from :meth:`_index`); 1 when it was not set, else 0."""
        mask = 1 << (i & 7)
        byte = self._bits[i >> 3]
        if byte & mask:
            return 0
        self._bits[i >> 3] = byte | mask
        self._count += 1
        return 1

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, int):
            return False
        i = self._index(address)
        return i >= 0 and bool(self._bits[i >> 3] & (1 << (i & 7)))

    def next_clear(self, address: int, last: int) -> int | None:
        """The first non-member in ``address``..``last`` (both in one range), or None.

        Full bytes are skipped by a search in C: after a restart on a
        million leases the pool's cursor starts over at the range's first
        address, and testing them one by one held the first DISCOVER for a
        third of a second.
        """
        i, end = self._index(address), self._index(last)
        if i < 0 or end < i:
            return None
        bits = self._bits
        byte = bits[i >> 3] | ((1 << (i & 7)) - 1)  # bits below i count as members
        pos = i >> 3
        if byte == 0xFF:
            m = _NOT_FULL.search(bits, pos + 1, (end >> 3) + 1)
            if m is None:
                return None
            pos = m.start()
            byte = bits[pos]
        j = (pos << 3) + ((~byte & (byte + 1)).bit_length() - 1)  # the lowest clear bit
        return address + (j - i) if j <= end else None

    def __len__(self) -> int:
        return self._count


# A byte of AddressBits with a clear bit.
_NOT_FULL = re.compile(b"[^\xff]")


class Pool:
    """The free addresses of one scope's ranges.

    In the default (least recently used) mode, never-used addresses are
    walked by a cursor and only freed ones are tracked, so a /8 pool costs
    nothing until it is used.  In first-available mode every free address is
    kept in a heap, lowest first.
    """

    def __init__(self, scope: str, ranges: Iterable[Range], first_available: bool) -> None:
        self.scope = scope
        self.ranges = tuple(sorted(ranges, key=lambda r: r.first))
        self.first_available = first_available
        self.size = sum(len(r) for r in self.ranges)
        # Seconds a lease that ran out stays its client's before the address
        # may go to another (the scope policy's grace-period).
        self.grace = 0
        self._firsts = [r.first for r in self.ranges]
        self._lasts = [r.last for r in self.ranges]
        self._range_index = 0
        self._cursor = self.ranges[0].first if self.ranges else 0
        self._skip = AddressBits(self.ranges)  # LRU mode: addresses that have a record
        self._lru: OrderedDict[int, None] = OrderedDict()
        self._free: set[int] = set()
        self._heap: list[int] = []
        # Failover: addresses in state BACKUP, the backup server's to allocate.
        self._backup: OrderedDict[int, None] = OrderedDict()
        # In a failover pool an expired or released address only becomes free
        # for other clients once the partner has acknowledged the change.
        self.failover = False
        # First-available mode: the main gives the backup addresses from just
        # below this one downward, so they stay clear of the clients' upward
        # allocation as long as possible (CNR 7.2, "Setting Backup Allocation
        # Boundaries"); None is halfway through the ranges.
        self.backup_boundary: int | None = None
        # Kept by the LeaseTable so metrics and the API can count a /8 pool
        # without walking it: records in the ranges by state, and reserved
        # addresses in the ranges that have no record.
        self.state_counts: Counter[LeaseState] = Counter()
        self.reserved_unused: set[int] = set()
        if first_available:
            for r in self.ranges:
                self._heap.extend(range(r.first, r.last + 1))
            self._free = set(self._heap)

    def __contains__(self, address: int) -> bool:
        i = bisect.bisect_right(self._firsts, address) - 1
        return i >= 0 and address <= self._lasts[i]

    def exclude(self, address: int) -> None:
        """``address`` now has a record: it is free only once :meth:`add_free` says so."""
        if self.first_available:
            self._free.discard(address)
        else:
            self._skip.add(address)

    def take_all(self, addresses: list[int], state: LeaseState) -> list[int]:
        """:meth:`take` for many addresses in one ``state``; returns those not in the ranges
        (nothing was done for them)."""
        if self.first_available or len(self.ranges) != 1 or self._free or self._backup:
            return [a for a in addresses if not self.take(a, state)]
        first, last = self.ranges[0].first, self.ranges[0].last
        bits = self._skip
        outside: list[int] = []
        for address in addresses:
            if first <= address <= last:
                bits.add_bit(address - first)
            else:
                outside.append(address)
        self.state_counts[state] += len(addresses) - len(outside)
        return outside

    def take(self, address: int, state: LeaseState) -> bool:
        """A new record for ``address`` in ``state``, held by a client: not free,
        not the backup's, and counted (the start-up load's fast path).

        False, and nothing done, when ``address`` is not in the ranges.
        """
        if self.first_available:
            if address not in self:
                return False
            self._free.discard(address)
        else:
            if not self._skip.add(address):
                return False
            if self._free and address in self._free:
                self._free.discard(address)
                self._lru.pop(address, None)
        if self._backup and address in self._backup:
            del self._backup[address]
        self.state_counts[state] += 1
        return True

    def add_free(self, address: int) -> None:
        """``address`` (which has a record) became free."""
        if address in self._free:
            return
        self._free.add(address)
        if self.first_available:
            heapq.heappush(self._heap, address)
        else:
            self._lru[address] = None

    def remove_free(self, address: int) -> None:
        """``address`` is no longer free (taken by a client, reserved...)."""
        if address in self._free:
            self._free.discard(address)
            if not self.first_available:
                self._lru.pop(address, None)
            # first-available: the stale heap entry is dropped when popped

    def add_backup(self, address: int) -> None:
        """``address`` is available to the backup server (state BACKUP)."""
        self._backup[address] = None

    def remove_backup(self, address: int) -> None:
        """``address`` left state BACKUP."""
        self._backup.pop(address, None)

    def backup_candidates(self) -> Iterator[int]:
        """The backup server's free addresses, longest free first.

        A view, not a copy (a backup allocates from it on every DISCOVER):
        the pool must not change while it is being read.
        """
        return iter(self._backup)

    def backup_count(self) -> int:
        """Addresses in state BACKUP."""
        return len(self._backup)

    def boundary(self) -> int:
        """The backup allocation boundary in force: the configured one, else halfway
        between the first and last addresses of the ranges (rounded up, so an
        even number of addresses leaves exactly the lower half below it)."""
        if self.backup_boundary:
            return self.backup_boundary
        if not self.ranges:
            return 0
        return (self.ranges[0].first + self.ranges[-1].last + 1) // 2

    def split_order(self) -> list[int]:
        """First-available mode: the free addresses in the order the main gives them to the backup.

        Downward from just below :meth:`boundary`; when none is left below
        it, upward from the lowest free address above it (CNR 7.2, "Setting
        Backup Allocation Boundaries").
        """
        edge = self.boundary()
        below = sorted((a for a in self._free if a < edge), reverse=True)
        above = sorted(a for a in self._free if a >= edge)
        return below + above

    def is_free(self, address: int) -> bool:
        """True when ``address`` is in the free set (first-available mode, or freed in LRU mode)."""
        return address in self._free

    def reusable(self, state: LeaseState) -> bool:
        """True when an address in ``state`` may go to any client of this pool's owner."""
        if self.failover:
            return state is LeaseState.AVAILABLE
        return state in FREE_STATES

    def candidates(self) -> Generator[int, None, None]:
        """Free addresses, best first; the caller takes one and closes the generator."""
        if self.first_available:
            yield from self._heap_candidates()
            return
        while self._range_index < len(self.ranges):
            r = self.ranges[self._range_index]
            while self._cursor <= r.last:
                found = self._skip.next_clear(self._cursor, r.last)
                if found is None:
                    self._cursor = r.last + 1
                    break
                self._cursor = found + 1
                # Offered now, so it will have a record: never fresh again.
                self._skip.add(found)
                yield found
            self._range_index += 1
            if self._range_index < len(self.ranges):
                self._cursor = self.ranges[self._range_index].first
        # Pop from the front and put back what was not taken: copying the LRU
        # list instead would cost time in proportion to the freed addresses
        # on every allocation.
        popped: list[int] = []
        try:
            while self._lru:
                address, _ = self._lru.popitem(last=False)
                popped.append(address)
                yield address
        finally:
            for address in reversed(popped):
                if address in self._free:
                    self._lru[address] = None
                    self._lru.move_to_end(address, last=False)

    def _heap_candidates(self) -> Iterator[int]:
        heap = self._heap
        popped: list[int] = []
        seen: set[int] = set()
        try:
            while heap:
                address = heapq.heappop(heap)
                if address not in self._free or address in seen:
                    continue  # stale or duplicate entry
                seen.add(address)
                popped.append(address)
                yield address
        finally:
            for address in popped:
                if address in self._free:
                    heapq.heappush(heap, address)

    def free_count(self) -> int:
        """Free addresses: never-used ones plus freed ones."""
        if self.first_available:
            return len(self._free)
        return self.size - len(self._skip) + len(self._free)

    def address_counts(self) -> dict[LeaseState, int]:
        """Every address of the ranges counted once, without walking them.

        By the state of its record; RESERVED for a reserved address without
        one; AVAILABLE for the never used (and for AVAILABLE records).
        """
        out = {state: n for state, n in self.state_counts.items() if n}
        never_used = self.size - sum(self.state_counts.values()) - len(self.reserved_unused)
        out[LeaseState.AVAILABLE] = out.get(LeaseState.AVAILABLE, 0) + never_used
        if self.reserved_unused:
            out[LeaseState.RESERVED] = out.get(LeaseState.RESERVED, 0) + len(self.reserved_unused)
        return out
