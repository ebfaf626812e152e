"""Which foreign leases become cnrd leases, and why the others do not.

:func:`plan_import` takes the records a reader returned (file order), the
target server's configuration, what its store already holds and the time,
and returns the leases to commit with a report.  The last record for an
address is the current one (both dhcpd's file and Kea's CSV are appended
to); the earlier ones are counted as superseded, not skipped.  A current
record is then:

* ``malformed`` -- it could not be read;
* ``outside-scope`` -- its address is in no ``[scope]`` subnet;
* ``not-leased`` -- no client holds it (free, backup, released, expired,
  reset, deleted): cnrd's pool has it free already;
* ``expired`` -- it was leased but its end has passed;
* ``duplicate`` -- the store already has a client on that address, or
  another record of the file gives the same client a later lease in the
  same scope (cnrd gives a client one lease per scope);
* ``reserved`` -- a ``[reservation]`` holds the address for another client;
* otherwise imported: ``active``/``bootp`` as leased, ``abandoned`` and
  ``declined`` as unavailable (for the policy's unavailable-timeout), as
  both other servers keep such addresses from clients.

Pure module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cnrd.config.model import Config, ScopeConfig
from cnrd.leases.model import Lease, LeaseEvent, LeaseFlag, LeaseState, client_key
from cnrd.migrate.records import NEVER, ForeignLease, Malformed
from cnrd.text import int_to_ip

__all__ = ["REASONS", "ImportReport", "Skipped", "plan_import", "scope_for"]

#: Skip reasons, in the order the report lists them.
REASONS = ("malformed", "outside-scope", "not-leased", "expired", "duplicate", "reserved")
_LEASED = frozenset({"active", "bootp"})
_UNAVAILABLE = frozenset({"abandoned", "declined"})
#: The ``what`` and ``source`` of the lease events an import records: an operator's doing.
EVENT = "import"
SOURCE = "operator"


@dataclass(frozen=True)
class Skipped:
    """A record left out, where it is in its file, and why."""

    line: int
    address: str
    reason: str  # one of REASONS
    detail: str


@dataclass
class ImportReport:
    """What an import did: counts by outcome and each skipped record."""

    imported: int = 0
    leased: int = 0
    unavailable: int = 0
    superseded: int = 0  # earlier records of an address a later one replaced
    skipped: list[Skipped] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Skipped records by reason (every reason present, zero or not)."""
        c = Counter(s.reason for s in self.skipped)
        return {r: c.get(r, 0) for r in REASONS}

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {"imported": self.imported, "leased": self.leased, "unavailable": self.unavailable,
                "superseded": self.superseded, "skipped": self.counts(),
                "records": [{"line": s.line, "address": s.address, "reason": s.reason, "detail": s.detail}
                            for s in self.skipped]}

    def text(self) -> str:
        """The report as lines for an operator."""
        lines = [(f"imported {self.imported} ({self.leased} leased, {self.unavailable} unavailable); "
                  f"{self.superseded} earlier records replaced by later ones in the file")]
        lines.append("skipped " + ", ".join(f"{r} {n}" for r, n in self.counts().items()))
        lines += [f"  line {s.line}: {s.address or '?'}: {s.reason}: {s.detail}" for s in self.skipped]
        return "\n".join(lines)


def scope_for(config: Config, address: int) -> ScopeConfig | None:
    """The scope an address belongs to: the one whose ranges hold it, else the first whose subnet does."""
    in_subnet = [s for s in config.scopes.values() if s.contains(address)]
    for scope in in_subnet:
        if any(address in r for r in scope.ranges):
            return scope
    return in_subnet[0] if in_subnet else None


def _reserved_for(config: Config, address: int, rec: ForeignLease) -> bool | None:
    """None: no reservation; True: for this record's client; False: for another."""
    res = config.reservations.get(address)
    if res is None:
        return None
    if res.client_id is not None:
        return rec.client_id == res.client_id
    return rec.hw == res.hardware_address


def plan_import(records: Iterable[ForeignLease | Malformed], config: Config, existing: Mapping[int, Lease],
                now: int) -> tuple[list[Lease], list[LeaseEvent], ImportReport]:
    """The leases (and their ``import`` events) to commit, and the report."""
    report = ImportReport()
    current: dict[int, ForeignLease] = {}
    for rec in records:
        if isinstance(rec, Malformed):
            report.skipped.append(Skipped(rec.line, rec.text, "malformed", rec.reason))
        elif rec.address in current:
            report.superseded += 1
            current[rec.address] = rec
        else:
            current[rec.address] = rec
    chosen: dict[tuple[str, bytes], ForeignLease] = {}  # (scope, client key) -> its latest lease
    candidates: list[tuple[ForeignLease, ScopeConfig]] = []
    for address, rec in sorted(current.items(), key=lambda kv: kv[1].line):
        ip = int_to_ip(address)

        def skip(reason: str, detail: str, rec: ForeignLease = rec, ip: str = ip) -> None:
            report.skipped.append(Skipped(rec.line, ip, reason, detail))

        scope = scope_for(config, address)
        if scope is None:
            skip("outside-scope", "no [scope] subnet holds it")
            continue
        if rec.state not in _LEASED and rec.state not in _UNAVAILABLE:
            skip("not-leased", f"state {rec.state}")
            continue
        if rec.state in _LEASED and rec.end != NEVER and rec.end <= now:
            skip("expired", f"ended {now - rec.end} s ago" if rec.end else "no end time")
            continue
        if rec.state in _LEASED and not rec.hw and rec.client_id is None:
            skip("malformed", "a lease without hardware address or client identifier")
            continue
        old = existing.get(address)
        if old is not None and old.key is not None and old.state not in (LeaseState.AVAILABLE, LeaseState.BACKUP):
            skip("duplicate", f"the store already holds it ({old.state.label})")
            continue
        mine = _reserved_for(config, address, rec)
        if mine is False:
            skip("reserved", "a [reservation] holds it for another client")
            continue
        if rec.state in _LEASED:
            key = client_key(rec.client_id, bytes([rec.htype]) + rec.hw)
            prev = chosen.get((scope.name, key))
            if prev is not None:
                older, newer = (prev, rec) if (prev.start, prev.line) <= (rec.start, rec.line) else (rec, prev)
                report.skipped.append(Skipped(older.line, int_to_ip(older.address), "duplicate",
                                              f"the same client holds {int_to_ip(newer.address)} "
                                              f"(line {newer.line}) in scope {scope.name}"))
                if older is rec:
                    continue
                candidates = [(c, s) for c, s in candidates if c is not prev]
            chosen[(scope.name, key)] = rec
        candidates.append((rec, scope))
    leases: list[Lease] = []
    events: list[LeaseEvent] = []
    for rec, scope in candidates:
        lease = _lease(rec, scope, config, now, _reserved_for(config, rec.address, rec) is True)
        leases.append(lease)
        events.append(LeaseEvent(now, lease.address, lease.state, lease.key or b"", lease.expiration, EVENT,
                                 source=SOURCE, hw=lease.hw))
        report.imported += 1
        if lease.state is LeaseState.LEASED:
            report.leased += 1
        else:
            report.unavailable += 1
    report.skipped.sort(key=lambda s: s.line)
    return leases, events, report


def _lease(rec: ForeignLease, scope: ScopeConfig, config: Config, now: int, reserved: bool) -> Lease:
    hw = bytes([rec.htype]) + rec.hw if rec.hw else b""
    flags = LeaseFlag.RESERVED if reserved else LeaseFlag.NONE
    if rec.state in _UNAVAILABLE:
        policy = config.policies.get(scope.policy)
        hold = policy.unavailable_timeout if policy is not None else 86400
        return Lease(rec.address, LeaseState.UNAVAILABLE, scope.name, b"", None, now, now + hold, now,
                     now + hold, "", flags)
    if rec.state == "bootp":
        flags |= LeaseFlag.BOOTP
    end = Lease.INFINITE if rec.end == NEVER else rec.end
    start = rec.start or now
    return Lease(rec.address, LeaseState.LEASED, scope.name, hw, rec.client_id, start, end,
                 rec.cltt or start, end, rec.host_name, flags)
