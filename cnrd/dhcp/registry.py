"""Client entries from a remote registry (LDAP), cached, and the requests that wait for them.

The DHCP core asks :meth:`ClientRegistry.get` for the client entry of a
lookup id (a MAC or client-id in text).  The answer is one of:

* ``FOUND`` with the entry, or ``ABSENT`` (the registry has no entry):
  fresh in the cache, or a stale one while the registry cannot be asked;
* ``WAIT``: nothing usable is cached, so the request is parked with
  :meth:`park` and a lookup starts (one per id however many requests wait);
* ``FAILED``: a lookup for this id just failed or timed out and nothing was
  cached; ``[server] client-lookup-failure`` decides what the core does.

The adapter runs the lookups and reports each with :meth:`answered` or
:meth:`failed`, which return the parked requests to decide again.  Nothing
here waits or reads a clock: ``now`` is an argument, and the bound on a
wait is the lookup's own timeout (the LDAP server's ``timeout``).

Why wait at all rather than answer with the default class and correct the
client at its renewal: the class decides the scope, the reserved address
and the options a client first binds with, and a wrong first answer lasts a
whole lease.  Why a short bound (2 s by default): DHCP clients retransmit
after about 4 s (RFC 2131 §4.1), so an answer within 2 s still reaches the
client before its first retry; a longer wait only delays a client the
registry cannot help.

Stale entries: an entry older than ``client-cache-ttl`` is asked again,
and used as it is while the registry is down (the cache outlives the TTL,
bounded by ``client-cache-count``, least recently used first out).  A
failed lookup is not asked again for ``ttl`` seconds (at least one), so an
outage does not make every retransmission wait again.

Pure module.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Hashable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Generic, TypeVar

from cnrd.config import ClientConfig

__all__ = ["Outcome", "ClientRegistry", "RegistryHealth", "LOOKUP_BUCKETS"]

T = TypeVar("T", bound=Hashable)


class Outcome(enum.Enum):
    """What the registry can say about a lookup id now."""

    FOUND = "found"
    ABSENT = "absent"
    WAIT = "wait"
    FAILED = "failed"


@dataclass
class _Cached:
    client: ClientConfig | None  # None: the registry has no entry for the id
    fresh_until: float
    at: float  # when it was answered: fresh at that instant even with a TTL of 0

    def fresh(self, now: float) -> bool:
        return now < self.fresh_until or now <= self.at


class ClientRegistry(Generic[T]):
    """Cached registry answers by lookup id, and the requests (``T``) parked until one arrives."""

    def __init__(self, *, ttl: float, count: int) -> None:
        self.ttl = ttl
        self.count = count
        self._cache: collections.OrderedDict[str, _Cached] = collections.OrderedDict()
        self._failed_until: dict[str, float] = {}
        self._waiting: dict[str, list[T]] = {}
        self._wanted: list[str] = []
        #: found / absent (cache hits), stale (used past its TTL), wait,
        #: failed (nothing usable), parked (requests), answered, errors.
        self.stats: collections.Counter[str] = collections.Counter()

    def configure(self, *, ttl: float, count: int) -> None:
        """Take new cache settings (a reload); what is cached stays."""
        self.ttl, self.count = ttl, count
        self._trim()

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def waiting(self) -> int:
        """Requests parked for a lookup."""
        return sum(len(v) for v in self._waiting.values())

    def get(self, lookup_id: str, now: float) -> tuple[Outcome, ClientConfig | None]:
        """What to do for a request of ``lookup_id`` now, with the entry when there is one."""
        cached = self._cache.get(lookup_id)
        if cached is not None and cached.fresh(now):
            self._cache.move_to_end(lookup_id)
            outcome = Outcome.FOUND if cached.client is not None else Outcome.ABSENT
            self.stats[outcome.value] += 1
            return outcome, cached.client
        if self._failed_until.get(lookup_id, 0.0) > now:
            if cached is not None:
                self.stats["stale"] += 1
                return (Outcome.FOUND if cached.client is not None else Outcome.ABSENT), cached.client
            self.stats["failed"] += 1
            return Outcome.FAILED, None
        self.stats["wait"] += 1
        return Outcome.WAIT, None

    def park(self, lookup_id: str, item: T) -> None:
        """Hold ``item`` until ``lookup_id`` is answered; the first one starts a lookup (:meth:`take_wanted`)."""
        waiting = self._waiting.get(lookup_id)
        if waiting is None:
            self._waiting[lookup_id] = [item]
            self._wanted.append(lookup_id)
        else:
            waiting.append(item)
        self.stats["parked"] += 1

    def take_wanted(self) -> list[str]:
        """The lookup ids to ask the registry for (each once), since the last call."""
        wanted, self._wanted = self._wanted, []
        return wanted

    def answered(self, lookup_id: str, client: ClientConfig | None, now: float) -> list[T]:
        """The registry answered (``None``: no entry); returns the requests to decide again."""
        self.stats["answered"] += 1
        self._failed_until.pop(lookup_id, None)
        self._cache[lookup_id] = _Cached(client, now + self.ttl, now)
        self._cache.move_to_end(lookup_id)
        self._trim()
        return self._waiting.pop(lookup_id, [])

    def failed(self, lookup_id: str, now: float) -> list[T]:
        """The lookup failed or timed out; returns the requests to decide again (with the stale entry, if any)."""
        self.stats["errors"] += 1
        self._failed_until[lookup_id] = now + max(1.0, self.ttl)
        if len(self._failed_until) > self.count:
            self._failed_until = {k: t for k, t in self._failed_until.items() if t > now}
        return self._waiting.pop(lookup_id, [])

    def forget(self) -> None:
        """Drop every cached answer (the registry's configuration changed)."""
        self._cache.clear()
        self._failed_until.clear()

    def _trim(self) -> None:
        while len(self._cache) > self.count:
            self._cache.popitem(last=False)


#: Upper bounds (seconds) of the lookup-time histogram's buckets.
LOOKUP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class RegistryHealth:
    """The registry connection as the operator sees it: readiness, metrics, the status API.

    ``up``: bound to a server (``server`` names its section); otherwise
    ``reason`` says why not and cached entries are all there is
    (degraded, not unready).  ``results`` counts lookups by result
    (found, not-found, bad-entry, timeout, unavailable, error), and
    ``buckets``/``total``/``count`` are the lookup-time histogram of the
    lookups the registry answered.
    """

    up: bool = False
    server: str | None = None
    reason: str = "not connected yet"
    since: float = 0.0
    episodes: int = 0  # times it went down
    results: collections.Counter[str] = dataclass_field(default_factory=collections.Counter)
    buckets: list[int] = dataclass_field(default_factory=lambda: [0] * len(LOOKUP_BUCKETS))
    total: float = 0.0
    count: int = 0
    _told_down: bool = False

    def observe(self, seconds: float) -> None:
        """One answered lookup took ``seconds``."""
        self.total += seconds
        self.count += 1
        for i, bound in enumerate(LOOKUP_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break

    def changed(self, up: bool, detail: str, now: float) -> bool:
        """The connection is up (``detail``: the server) or down (the reason); True once per change.

        A down episode is news once (the first reason given); later reasons
        within it only update ``reason``, so the log has one line per episode.
        """
        if up:
            news = not self.up
            self.up, self.server, self._told_down = True, detail, False
        else:
            news = self.up or not self._told_down
            if self.up:
                self.episodes += 1
            self.up, self.server, self.reason, self._told_down = False, None, detail, True
        if news:
            self.since = now
        return news
