"""The LDAP client the DHCP server looks clients up with: servers by preference, reconnect, bounded waits.

One bound connection at a time, to the most preferred server that
answers.  Lookups never wait for a connection: without one they fail at
once with :class:`LdapUnavailable`, so the request path can fall back to
its cache or the configured failure action.  Every wait is bounded by the
server's ``timeout`` and every reconnect by the backoff.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.config.model import LdapConfig
from cnrd.ldap.errors import LdapError, LdapTimeout, LdapUnavailable
from cnrd.ldap.filter import parse, render
from cnrd.ldap.messages import Entry
from cnrd.ldap.protocol import LdapProtocol, SearchPage

__all__ = ["LdapClient", "LdapError", "LdapTimeout", "LdapUnavailable", "check_bind", "open_session"]

_log = Logger(namespace="cnrd.ldap")

#: At most this many lookup ids are remembered for "several entries" warnings.
_WARNED_LIMIT = 10_000


def _tls_options(server: LdapConfig) -> Any:
    # Imported here: a server whose LDAP servers do not use STARTTLS may run
    # without TLS at all (cnrd.app.tls).
    from twisted.internet import ssl

    trust: Any = None  # None: the platform's trust store
    if server.ca_file:
        with open(server.ca_file, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    return ssl.optionsForClientTLS(server.hostname, trustRoot=trust)


def _as_ldap_error(failure: Failure, server: LdapConfig, what: str) -> LdapError:
    where = f"{server.name} ({server.hostname}:{server.port})"
    if failure.check(LdapError):
        error = failure.value
        assert isinstance(error, LdapError)
        return _prefixed(error, where)
    if failure.check(net_error.TimeoutError, net_error.ConnectingCancelledError):
        return LdapTimeout(-1, f"{where}: no answer to {what} within {server.timeout:g} s")
    if failure.check(CancelledError):
        return LdapUnavailable(-1, f"{where}: {what} cancelled")
    if failure.check(OSError, net_error.ConnectError):
        return LdapUnavailable(-1, f"{where}: cannot connect: {failure.getErrorMessage()}")
    return LdapUnavailable(-1, f"{where}: {what} failed: {failure.getErrorMessage()}")


def _prefixed(error: LdapError, where: str) -> LdapError:
    if isinstance(error, LdapTimeout):
        return LdapTimeout(-1, f"{where}: {error.reason}")
    if isinstance(error, LdapUnavailable):
        return LdapUnavailable(-1, f"{where}: {error.reason}")
    return LdapError(error.code, f"{where}: {error.reason}")


class _OneConnection(Factory):
    """Builds the one protocol of a connection attempt, without Twisted's per-attempt log lines."""

    noisy = False  # a reconnecting client would log two lines a second while LDAP is down

    def __init__(self, proto: LdapProtocol) -> None:
        self.proto = proto

    def buildProtocol(self, addr: Any) -> LdapProtocol:
        return self.proto


def open_session(reactor: Any, server: LdapConfig, timeout: float) -> Deferred[LdapProtocol]:
    """A connection to ``server``, through StartTLS if configured, bound; all within ``timeout``.

    Fails with :class:`LdapError` (one-line reason naming the server); the
    connection is closed on any failure.
    """
    endpoint = TCP4ClientEndpoint(reactor, server.hostname, server.port, timeout=max(1, math.ceil(timeout)))
    proto = LdapProtocol()

    def connected(p: LdapProtocol) -> Deferred[LdapProtocol]:
        step: Deferred[None] = succeed(None)
        if server.use_ssl == "starttls":
            step = p.start_tls(_tls_options(server))
        name = server.username or ""
        password = server.password if server.username else b""
        return step.addCallback(lambda _: p.bind(name, password)).addCallback(lambda _: p)

    def failed(failure: Failure) -> Failure:
        if proto.connected_ok and proto.transport is not None:
            proto.lost_reason = "session setup failed"
            proto.transport.abortConnection()  # type: ignore[attr-defined]
        return Failure(_as_ldap_error(failure, server, "connect and bind"))

    d: Deferred[LdapProtocol] = endpoint.connect(_OneConnection(proto)).addCallback(lambda _: proto)
    d.addCallback(connected)
    d.addTimeout(timeout, reactor)
    d.addErrback(failed)
    return d


def check_bind(reactor: Any, server: LdapConfig, timeout: float) -> Deferred[None]:
    """Connect, StartTLS if configured, bind and unbind: whether ``server``'s settings work.

    Fails with :class:`LdapError` whose ``reason`` is one line, e.g.
    ``ldap1 (10.0.0.5:389): bind: invalidCredentials (49)``.
    """
    return open_session(reactor, server, timeout).addCallback(lambda p: p.unbind())


@dataclass(eq=False)
class _Lookup:
    lookup_id: str
    deferred: Deferred[Entry | None]
    timer: IDelayedCall | None = None
    op: Deferred[SearchPage] | None = None
    done: bool = False
    error: LdapError | None = None  # set when the lookup timed out while its search was out


class LdapClient:
    """Lookups of client entries on the most preferred reachable LDAP server."""

    def __init__(self, reactor: Any, servers: Sequence[LdapConfig], *,
                 on_state: Callable[[bool, str], None] = lambda up, why: None,
                 backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        if not servers:
            raise ValueError("an LdapClient needs at least one server")
        self._reactor = reactor
        self._servers = sorted(servers, key=lambda s: (s.preference, s.name))
        self._on_state = on_state
        self._backoff = backoff
        self._delay = backoff[0]
        self._running = False
        self._proto: LdapProtocol | None = None
        self._server: LdapConfig | None = None
        self._retry: IDelayedCall | None = None
        self._probe: IDelayedCall | None = None
        self._attempts: list[Deferred[LdapProtocol]] = []
        self._reported: tuple[bool, str] | None = None
        self._queue: deque[_Lookup] = deque()
        self._outstanding = 0
        self._warned: set[str] = set()

    # -- state ------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._proto is not None

    @property
    def server(self) -> LdapConfig | None:
        return self._server

    @property
    def outstanding(self) -> int:
        """Searches sent and not yet answered (at most the server's max-requests)."""
        return self._outstanding

    @property
    def queued(self) -> int:
        """Lookups waiting for a free slot."""
        return sum(1 for item in self._queue if not item.done)

    def start(self) -> None:
        """Connect to the most preferred server that binds, and keep a connection from then on."""
        if self._running:
            return
        self._running = True
        self._connect_round()

    def stop(self) -> Deferred[None]:
        """Unbind and close; queued and outstanding lookups fail with LdapUnavailable."""
        self._running = False
        for timer in (self._retry, self._probe):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry = self._probe = None
        for attempt in list(self._attempts):
            attempt.cancel()
        self._fail_queue("the LDAP client stopped")
        proto, self._proto, self._server = self._proto, None, None
        if proto is None:
            return succeed(None)
        return proto.unbind()

    def _report(self, up: bool, why: str) -> None:
        key = (up, why if up else "")
        if key != self._reported:
            self._reported = key
            self._on_state(up, why)

    # -- connecting -------------------------------------------------------

    def _connect_round(self) -> None:
        self._retry = None
        self._try(0, [])

    def _try(self, index: int, failures: list[str]) -> None:
        server = self._servers[index]
        d = open_session(self._reactor, server, server.timeout)
        self._attempts.append(d)

        def bound(proto: LdapProtocol) -> None:
            self._attempts.remove(d)
            self._bound(index, proto)

        def failed(failure: Failure) -> None:
            self._attempts.remove(d)
            if not self._running:
                return
            error = failure.value
            failures.append(error.reason if isinstance(error, LdapError) else failure.getErrorMessage())
            if index + 1 < len(self._servers):
                self._try(index + 1, failures)
                return
            self._report(False, "; ".join(failures))
            self._schedule()

        d.addCallbacks(bound, failed)

    def _schedule(self) -> None:
        self._retry = self._reactor.callLater(self._delay, self._connect_round)
        self._delay = min(self._delay * 2, self._backoff[1])

    def _bound(self, index: int, proto: LdapProtocol) -> None:
        if not self._running:
            proto.unbind()
            return
        old = self._proto
        self._proto, self._server = proto, self._servers[index]
        self._delay = self._backoff[0]
        proto.on_lost = lambda reason: self._lost(proto, reason)
        if old is not None:
            old.on_lost = lambda reason: None
            old.close_when_idle()
        self._report(True, self._servers[index].name)
        if index > 0:
            # A fallback server: keep trying the preferred ones while bound to it.
            self._probe = self._reactor.callLater(self._backoff[1], self._try_preferred, index)
        self._pump()

    def _try_preferred(self, current: int) -> None:
        self._probe = None
        if not self._running or self._proto is None:
            return
        server = self._servers[0]
        d = open_session(self._reactor, server, server.timeout)
        self._attempts.append(d)

        def bound(proto: LdapProtocol) -> None:
            self._attempts.remove(d)
            self._bound(0, proto)

        def failed(failure: Failure) -> None:
            self._attempts.remove(d)
            if self._running and self._proto is not None and self._probe is None:
                self._probe = self._reactor.callLater(self._backoff[1], self._try_preferred, current)

        d.addCallbacks(bound, failed)

    def _lost(self, proto: LdapProtocol, reason: str) -> None:
        if proto is not self._proto:
            return
        self._proto = self._server = None
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        self._probe = None
        self._fail_queue(reason)
        if self._running:
            self._report(False, reason)
            self._schedule()

    # -- lookups ----------------------------------------------------------

    def lookup(self, lookup_id: str) -> Deferred[Entry | None]:
        """The entry the bound server's search-filter finds for ``lookup_id``, None when there is none.

        Fails with LdapUnavailable when not connected, LdapTimeout after the
        server's timeout counted from this call (queueing included), and
        LdapError for an error result.
        """
        server = self._server
        if self._proto is None or server is None:
            return fail(LdapUnavailable(-1, "no LDAP server connected"))
        item = _Lookup(lookup_id, Deferred())
        item.timer = self._reactor.callLater(server.timeout, self._expire, item, server)
        if self._outstanding < server.max_requests:
            self._issue(item, server)
        else:
            self._queue.append(item)
        return item.deferred

    def _issue(self, item: _Lookup, server: LdapConfig) -> None:
        proto = self._proto
        assert proto is not None
        try:
            filter_ = render(server.search_filter, item.lookup_id)
        except ValueError as e:
            self._finish(item, LdapError(-1, f"{server.name}: search-filter: {e}"))
            return
        attributes = [attribute for attribute, _ in server.query_dictionary]
        self._outstanding += 1
        op = proto.search(server.search_path, server.search_scope, filter_, attributes,
                          size_limit=2, time_limit=max(1, math.ceil(server.timeout)))
        item.op = op
        op.addBoth(self._answered, item, server)

    def _answered(self, outcome: SearchPage | Failure, item: _Lookup, server: LdapConfig) -> None:
        self._outstanding -= 1
        item.op = None
        if item.error is not None:
            self._finish(item, item.error)
        elif isinstance(outcome, Failure):
            error = outcome.value
            self._finish(item, error if isinstance(error, LdapError)
                         else LdapError(-1, f"{server.name}: {outcome.getErrorMessage()}"))
        elif outcome.result.code not in (0, 4) or (outcome.result.code == 4 and not outcome.entries):
            self._finish(item, LdapError(outcome.result.code,
                                         f"{server.name}: search for {item.lookup_id}: {outcome.result.describe()}"))
        else:
            if len(outcome.entries) > 1 and item.lookup_id not in self._warned:
                if len(self._warned) >= _WARNED_LIMIT:
                    self._warned.clear()
                self._warned.add(item.lookup_id)
                _log.warn("LDAP {server}: several entries for {id}; using {dn}", server=server.name,
                          id=item.lookup_id, dn=outcome.entries[0].dn)
            self._finish(item, outcome.entries[0] if outcome.entries else None)
        self._pump()

    def _finish(self, item: _Lookup, outcome: Entry | None | LdapError) -> None:
        if item.done:
            return
        item.done = True
        if item.timer is not None and item.timer.active():
            item.timer.cancel()
        item.timer = None
        if isinstance(outcome, LdapError):
            item.deferred.errback(outcome)
        else:
            item.deferred.callback(outcome)

    def _expire(self, item: _Lookup, server: LdapConfig) -> None:
        item.timer = None
        error = LdapTimeout(-1, f"{server.name}: no answer for {item.lookup_id} within {server.timeout:g} s")
        if item.op is None:  # still queued
            self._finish(item, error)
            return
        # Cancelling abandons the search on the server; _answered then frees
        # its slot before the caller hears of the timeout.
        item.error = error
        item.op.cancel()

    def _pump(self) -> None:
        server = self._server
        while self._queue and self._proto is not None and server is not None \
                and self._outstanding < server.max_requests:
            item = self._queue.popleft()
            if not item.done:
                self._issue(item, server)

    def _fail_queue(self, reason: str) -> None:
        queue, self._queue = self._queue, deque()
        for item in queue:
            self._finish(item, LdapUnavailable(-1, reason))

    # -- full searches ----------------------------------------------------

    def search(self, base: str, scope: str, filter_text: str, attributes: Sequence[str], *,
               page_size: int | None = None, timeout: float) -> Deferred[list[Entry]]:
        """Every entry ``filter_text`` finds under ``base``; with ``page_size``, RFC 2696 pages
        until the server's cookie is empty.  The whole search is bounded by ``timeout``."""
        proto, server = self._proto, self._server
        if proto is None or server is None:
            return fail(LdapUnavailable(-1, "no LDAP server connected"))
        try:
            filter_ = parse(filter_text)
        except ValueError as e:
            return fail(LdapError(-1, str(e)))

        async def pages() -> list[Entry]:
            entries: list[Entry] = []
            cookie = b""
            while True:
                page = await proto.search(base, scope, filter_, attributes, page_size=page_size, cookie=cookie)
                if page.result.code != 0:
                    raise LdapError(page.result.code, f"{server.name}: search {filter_text}: "
                                                      f"{page.result.describe()}")
                entries.extend(page.entries)
                if page_size is None or not page.cookie:
                    return entries
                cookie = page.cookie

        def timed_out(failure: Failure) -> Failure:
            failure.trap(net_error.TimeoutError)
            return Failure(LdapTimeout(-1, f"{server.name}: search {filter_text} took over {timeout:g} s"))

        d = Deferred.fromCoroutine(pages())
        d.addTimeout(timeout, self._reactor)
        d.addErrback(timed_out)
        return d
