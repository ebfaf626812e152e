"""Configuration mismatch detection: each server of a pair compares its configuration with its partner's.

CNR 7.2 asks the partners of a failover pair to keep their scopes, policies,
client-classes and clients the same, and to direct both to the same LDAP
server when clients are registered there, and raises the "dhcp failover
configuration mismatch" trap when they are not.  The comparison covers what
pair sync copies: the ``[ldap NAME]`` sections (an LDAP server only one
partner names differs too) and the ``[server]`` client-class keys with the
other shared server properties, so two partners that would class a client
differently show as a mismatch.  Each server here finds out
for itself, all the time: every :data:`CHECK_INTERVAL` seconds (and as soon
as a pair's link reaches NORMAL, or the running configuration changes) it
fetches the partner's sync view over the partner's admin API
(``GET /api/v1/failover-pairs/NAME/sync-view``) and compares it with its own
INI file, using the sync planner's Exact operation from the main's values
to the backup's.  Both servers therefore compute the same list of differing
objects, whichever of them shows it.

The comparison travels over the admin API, not over the failover link: the
API already carries the sync view that Report and Run use, it has a token,
and a whole configuration would not fit the link's messages (ISC dhcpd
would have to skip an unknown vendor option on every CONNECT).

:class:`ConfigChecks` is the pure part (it takes ``now``; the results of
fetches are handed to it); :class:`MismatchPoller` the thin adapter that
runs it on a reactor.  What a pair's comparison shows (``config`` in
getRelatedServers and ``GET /failover-pairs/NAME``) is
:meth:`ConfigChecks.status`:

``not-configured``
    the pair's section sets no ``main-api``/``backup-api``: nothing is compared;
``unknown``
    not compared yet, or the last fetch failed (``failed-since`` and
    ``reason`` say when and why; ``objects`` are the last comparison's);
``not-comparable``
    the partner's CONNECT/CONNECTACK vendor class is not cnrd's (ISC dhcpd):
    its configuration has no counterpart to compare, and this is never a mismatch;
``match`` / ``mismatch``
    the last comparison, with the differing objects (``policy default``, ...).

A mismatch raises the ``failover-configuration-mismatch`` trap once per
episode; the next match ends it (:meth:`cnrd.ops.traps.TrapDetector.compared`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.admin.partner import PartnerApi, read_token, view_values
from cnrd.admin.view import RunningServer
from cnrd.config import FailoverPairConfig
from cnrd.config.inifile import read_values
from cnrd.config.timespec import format_iso
from cnrd.failover.session import VENDOR
from cnrd.failover.states import Role, S
from cnrd.ops.traps import Trap, TrapDetector
from cnrd.sync.planner import Values, differing_objects, plan, shareable

__all__ = ["STATUSES", "CHECK_INTERVAL", "ConfigChecks", "MismatchPoller", "configured", "unchecked_status"]

log = Logger(namespace="cnrd.admin")

#: What a pair's comparison can show.
STATUSES = ("match", "mismatch", "not-comparable", "not-configured", "unknown")
CHECK_INTERVAL = 60.0  # seconds between two comparisons of a pair
TICK = 1.0  # seconds between two looks at the links and the configuration (cheap: no I/O)
FETCH_TIMEOUT = 30.0  # seconds a fetch may take at most, whatever the HTTP client's own timeout
# Seconds to the next try after a failed fetch: a partner whose API was not
# up yet (both servers starting) is compared soon, not a minute later.
RETRY_INTERVAL = 15.0


def configured(pair: FailoverPairConfig) -> bool:
    """True when ``pair`` names both servers' admin APIs, so its configurations can be compared."""
    return bool(pair.main_api and pair.backup_api)


@dataclass
class PairCheck:
    """The latest comparison of one pair, as :meth:`ConfigChecks.status` shows it."""

    status: str = "unknown"
    objects: list[str] = field(default_factory=list)
    checked: int | None = None  # when the partners were last compared (or found not comparable)
    failed_since: int | None = None  # start of the current run of failed fetches
    reason: str | None = None  # why it is unknown, not comparable or not configured


class ConfigChecks:
    """The comparisons of every pair and the traps they raise; pure (``now`` is given).

    The methods record what a check found and return the trap to raise, if
    any; ``traps`` keeps the once-per-episode rule and the trap counts.
    """

    def __init__(self, traps: TrapDetector) -> None:
        self.traps = traps
        self.checks: dict[str, PairCheck] = {}

    def _check(self, pair: str) -> PairCheck:
        return self.checks.setdefault(pair, PairCheck())

    def compared(self, pair: str, role: Role, own: Values, partner: Values, now: int) -> Trap | None:
        """Compare our values with the partner's; the trap to raise when they start to differ.

        Always main's against backup's with Exact, whichever side we are,
        so both servers list the same objects.
        """
        main, backup = (own, partner) if role is Role.MAIN else (partner, own)
        changes = plan(shareable(main), shareable(backup), pair=pair, operation="exact")
        objects = differing_objects(changes)
        check = self._check(pair)
        check.status = "mismatch" if objects else "match"
        check.objects = list(objects)
        check.checked = now
        check.failed_since = check.reason = None
        return self.traps.compared(pair, objects)

    def fetch_failed(self, pair: str, reason: str, now: int) -> None:
        """The partner's values could not be had: unknown, the last objects kept; no trap, no end of an episode."""
        check = self._check(pair)
        if check.status != "unknown" or check.failed_since is None:
            check.failed_since = now
        check.status = "unknown"
        check.reason = reason

    def not_comparable(self, pair: str, vendor: str, now: int) -> None:
        """The partner is not cnrd (its failover vendor class is ``vendor``): never a mismatch."""
        check = self._check(pair)
        check.status = "not-comparable"
        check.objects = []
        check.checked = now
        check.failed_since = None
        check.reason = f"the partner is not cnrd (failover vendor class {vendor or 'none'!r})"
        self.traps.not_compared(pair)

    def not_configured(self, pair: str) -> None:
        """The pair sets no main-api/backup-api: nothing compared, no episode."""
        self.checks[pair] = PairCheck("not-configured", reason="main-api and backup-api are not set")
        self.traps.not_compared(pair)

    def forget(self, pair: str) -> None:
        """The pair is gone from the configuration."""
        self.checks.pop(pair, None)
        self.traps.not_compared(pair)

    def status(self, pair: FailoverPairConfig) -> dict[str, Any]:
        """The ``config`` field of getRelatedServers and ``GET /failover-pairs/NAME`` for ``pair``."""
        check = self.checks.get(pair.name)
        if not configured(pair):
            check = PairCheck("not-configured", reason="main-api and backup-api are not set")
        elif check is None or check.status == "not-configured":
            check = PairCheck(reason="not compared yet")
        return {
            "status": check.status,
            "objects": list(check.objects),
            "checked": format_iso(check.checked),
            "failed-since": format_iso(check.failed_since),
            "reason": check.reason,
        }


def unchecked_status(pair: FailoverPairConfig) -> dict[str, Any]:
    """The ``config`` field where no poller runs (the pair's comparison has not started)."""
    return ConfigChecks(TrapDetector()).status(pair)


Fetch = Callable[[str, str | None, str], defer.Deferred[dict[str, Any]]]
"""(partner's API base URL, token, pair name) -> the partner's sync view."""


def partner_fetch(reactor: Any) -> Fetch:
    """Fetches sync views with :class:`cnrd.admin.partner.PartnerApi` on ``reactor``."""
    def fetch(url: str, token: str | None, pair: str) -> defer.Deferred[dict[str, Any]]:
        return PartnerApi(reactor, url, token).sync_view(pair)
    return fetch


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8-sig") as f:
        return f.read()


class MismatchPoller(service.Service):
    """Runs the comparisons of every configured pair on ``reactor`` and raises their traps.

    Looks at the pairs every :data:`TICK` seconds (no I/O) and compares a
    pair when its :data:`CHECK_INTERVAL` is up (:data:`RETRY_INTERVAL`
    after a failed fetch), when its link has just reached NORMAL, or when
    the running configuration was replaced (a reload or a sync).  At most
    one fetch per pair is outstanding.
    ``partner_vendor(pair)`` is the vendor class of the partner's last
    handshake (None before any); ``fetch`` gets the partner's sync view;
    ``notify`` sends a trap out.
    """

    name = "config-mismatch"

    def __init__(self, reactor: IReactorTime, runtime: RunningServer, traps: TrapDetector, *,
                 notify: Callable[[Trap], object], partner_vendor: Callable[[str], str | None],
                 fetch: Fetch | None = None, interval: float = CHECK_INTERVAL) -> None:
        self.reactor = reactor
        self.runtime = runtime
        self.checks = ConfigChecks(traps)
        self.notify = notify
        self.partner_vendor = partner_vendor
        self.fetch = fetch if fetch is not None else partner_fetch(reactor)
        self.interval = interval
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor
        self._config: object = None
        self._next: dict[str, float] = {}  # pair -> when its next periodic comparison is due
        self._normal: dict[str, bool] = {}  # pair -> in NORMAL at the last tick
        self._in_flight: dict[str, defer.Deferred[None]] = {}
        self._again: set[str] = set()  # pairs due again as soon as their fetch ends
        self._stopping = False

    def status(self, pair: FailoverPairConfig) -> dict[str, Any]:
        """The ``config`` field for ``pair``."""
        return self.checks.status(pair)

    def recheck(self, pair: str) -> None:
        """Compare ``pair`` at the next tick (after a sync changed the partner's file, say)."""
        if pair in self._in_flight:
            self._again.add(pair)
        else:
            self._next[pair] = 0.0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        self._config = self.runtime.config
        start = self.reactor.seconds()
        for name in self.runtime.config.failover_pairs:
            self._next[name] = start + self.interval
        self._loop.start(TICK, now=False)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        if self._loop.running:
            self._loop.stop()
        for d in list(self._in_flight.values()):
            d.cancel()
        return None

    def tick(self) -> None:
        """Start the comparisons that are due."""
        now = self.reactor.seconds()
        config = self.runtime.config
        replaced = config is not self._config
        self._config = config
        for name in [n for n in self.checks.checks if n not in config.failover_pairs]:
            self.checks.forget(name)
        sessions = {s.name: s for s in self.runtime.sessions}
        for name, pair in config.failover_pairs.items():
            session = sessions.get(name)
            if not configured(pair):
                self.checks.not_configured(name)
                continue
            if session is None:
                self.checks.checks[name] = PairCheck(reason="failover = false: no partner to compare with")
                continue
            normal = session.state is S.NORMAL
            reached = normal and not self._normal.get(name, False)
            self._normal[name] = normal
            if not (replaced or reached or now >= self._next.setdefault(name, now + self.interval)):
                continue
            if name in self._in_flight:
                self._again.add(name)
                continue
            self._next[name] = now + self.interval
            self.check(pair, session.role)

    def check(self, pair: FailoverPairConfig, role: Role) -> defer.Deferred[None]:
        """Compare ``pair`` now; fires when the comparison is recorded (never fails)."""
        name = pair.name
        now = int(self.reactor.seconds())
        vendor = self.partner_vendor(name)
        if vendor is not None and vendor != VENDOR:
            if self.checks.checks.get(name, PairCheck()).status != "not-comparable":
                log.info("failover pair {pair}: the partner is not cnrd (vendor class {vendor!r}); "
                         "configurations are not compared", pair=name, vendor=vendor)
            self.checks.not_comparable(name, vendor, now)
            return defer.succeed(None)
        url = pair.backup_api if role is Role.MAIN else pair.main_api
        assert url is not None  # configured(pair)
        try:
            d = self.fetch(url, read_token(self.runtime.config, pair), name)
        except Exception as e:
            self._failed(name, _reason(e))
            return defer.succeed(None)
        d.addTimeout(FETCH_TIMEOUT, self.reactor)

        def got(view: dict[str, Any]) -> None:
            partner = view_values(view)
            partner_role = view.get("role")
            if partner_role == role.value:
                raise ValueError(f"the partner's API at {url} says it is {partner_role} too")
            own = read_values(_read_text(self.runtime.config.path))
            self._compared(name, role, own, partner)

        def failed(f: Failure) -> None:
            if not self._stopping:  # a fetch cancelled by stopService is no failure of the partner
                self._failed(name, _reason(f.value or Exception("fetch failed")))

        def done(_: object) -> None:
            self._in_flight.pop(name, None)
            if name in self._again:
                self._again.discard(name)
                self._next[name] = 0.0  # at the next tick

        out: defer.Deferred[None] = d.addCallback(got)
        out.addErrback(failed).addBoth(done)
        if not out.called:
            self._in_flight[name] = out
        return out

    def _compared(self, name: str, role: Role, own: Values, partner: Values) -> None:
        before = self.checks.checks.get(name, PairCheck()).status
        trap = self.checks.compared(name, role, own, partner, int(self.reactor.seconds()))
        if trap is not None:
            self.notify(trap)  # its log line names the first objects and counts them
        elif before == "mismatch" and self.checks.checks[name].status == "match":
            log.info("failover pair {pair}: the configuration matches the partner's again", pair=name)

    def _failed(self, name: str, reason: str) -> None:
        retry = self.reactor.seconds() + min(self.interval, RETRY_INTERVAL)
        self._next[name] = min(self._next.get(name, retry), retry)
        first = self.checks.checks.get(name, PairCheck()).failed_since is None
        self.checks.fetch_failed(name, reason, int(self.reactor.seconds()))
        if first:
            log.info("failover pair {pair}: cannot compare the configuration with the partner's: {reason}",
                     pair=name, reason=reason)


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(e, defer.TimeoutError | defer.CancelledError):
        return "the partner's admin API did not answer in time"
    return str(e) or type(e).__name__

