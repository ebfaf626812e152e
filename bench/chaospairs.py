"""The chaos run's failover relationships: one hot-standby pair (the
default), a load-balanced pair (``--load-balancing``), or two relationships
between the same two servers (``--relationships 2``).

Two relationships are the seed's symmetrical scenario: the server at
10.98.0.1 ("main" in the chaos lab) is the main of ``examplepair`` and the
backup of ``examplepair2``, the server at 10.98.0.2 ("backup") the other way
round; the pool is split in two scopes of the one client subnet, one per
relationship, so in NORMAL each server offers from the scope it is main of.
Both relationships share one failover listener on each server (one port,
CONNECT routed by relationship name).  With ``--load-balancing`` too, each
relationship is balanced.

Every rule of the auditor holds per relationship: the servers' state
(bench.chaos.StateWatcher) is the state of every relationship, and a side
counts as NORMAL, COMMUNICATIONS-INTERRUPTED or PARTNER-DOWN only when all
its relationships are (:func:`composite`); never both partners PARTNER-DOWN
is checked relationship by relationship; setPartnerDown is given for every
relationship.  Duplicate and lost leases are judged by address, whichever
relationship the address belongs to.

Pure: text and arithmetic only, no processes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Relationship", "composite", "is_in", "relationship_of", "relationships", "sections"]

SCOPE_PREFIX = "lan"


@dataclass(frozen=True)
class Relationship:
    """One failover pair of the chaos lab: its name, which lab side is its
    main, its scope and that scope's range."""

    name: str
    main_side: str  # "main" or "backup": the lab's server that is this pair's main
    scope: str
    first: str
    last: str

    def holds(self, address: str) -> bool:
        a = int(ipaddress.IPv4Address(address))
        return int(ipaddress.IPv4Address(self.first)) <= a <= int(ipaddress.IPv4Address(self.last))


def relationships(count: int, pair_name: str, pool: tuple[str, str]) -> tuple[Relationship, ...]:
    """``count`` (1 or 2) relationships over ``pool``: one takes it whole; two
    split it in halves, the first one's main at the lab's "main" side, the
    second one's at the "backup" side."""
    if count == 1:
        return (Relationship(pair_name, "main", SCOPE_PREFIX, *pool),)
    if count != 2:
        raise ValueError(f"{count} relationships: the chaos lab has two servers, so 1 or 2")
    lo, hi = (int(ipaddress.IPv4Address(a)) for a in pool)
    if hi <= lo:
        raise ValueError(f"pool {pool[0]}-{pool[1]} is too small to split")
    mid = lo + (hi - lo + 1) // 2
    ip = lambda n: str(ipaddress.IPv4Address(n))
    return (Relationship(pair_name, "main", f"{SCOPE_PREFIX}a", ip(lo), ip(mid - 1)),
            Relationship(f"{pair_name}2", "backup", f"{SCOPE_PREFIX}b", ip(mid), ip(hi)))


def sections(rels: Iterable[Relationship], *, ips: Mapping[str, str], subnet: str, mclt: int,
             poll_timeout: int, load_balancing: bool) -> str:
    """The ``[scope]`` and ``[failover-pair]`` sections both servers carry."""
    rels = tuple(rels)
    out = []
    for r in rels:
        out.append(f"[scope {r.scope}]\nsubnet = {subnet}\nranges = {r.first}-{r.last}\n")
    for r in rels:
        partner = "backup" if r.main_side == "main" else "main"
        lines = [f"[failover-pair {r.name}]", f"main = {ips[r.main_side]}", f"backup = {ips[partner]}",
                 "failover = true", f"mclt = {mclt}", "backup-pct = 10", "failover-poll-interval = 2",
                 f"failover-poll-timeout = {poll_timeout}"]
        if len(rels) > 1:
            lines.append(f"scopes = {r.scope}")
        if load_balancing:
            lines.append("load-balancing = true")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def composite(states: Iterable[str]) -> str:
    """A server's state over all its relationships: the common state, or the
    distinct states joined by ``|`` (sorted) while they differ."""
    distinct = sorted(set(states))
    if not distinct:
        return "DOWN"
    return distinct[0] if len(distinct) == 1 else "|".join(distinct)


def is_in(state: str, wanted: str) -> bool:
    """Is one of the relationships in a :func:`composite` state ``wanted``?"""
    return wanted in state.split("|")


def relationship_of(rels: Iterable[Relationship], address: str) -> str | None:
    """The name of the relationship whose scope holds ``address``."""
    for r in rels:
        if r.holds(address):
            return r.name
    return None
