"""The LDAP client registry as it runs: one LDAP client, the lookups the request path asks for, its health.

:class:`LdapRegistry` joins three pieces: :class:`cnrd.ldap.client.LdapClient`
(the connection to the ``[ldap]`` servers, by preference), the request
path's lookups (``RequestPath.lookup``: an entry becomes a
:class:`~cnrd.config.ClientConfig` through the server's query-dictionary),
and :class:`~cnrd.dhcp.registry.RegistryHealth` (up or degraded, lookup
results and times) for readiness and metrics.  An outage is logged once
when it starts and once when it ends.  Lookups asked while the first
connection is still being made wait for it (up to the server's timeout)
instead of failing at once: a server just started would otherwise give its
first clients the default class for a whole lease.

A reload that changes an ``[ldap]`` section first binds with the new
settings (:meth:`LdapRegistry.check`): credentials the server rejects
refuse the reload, naming the section; a server that cannot be reached
only warns, since it may come back and the cache serves meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.config import ClientConfig, Config, ConfigError, LdapConfig
from cnrd.dhcp.registry import RegistryHealth
from cnrd.ldap.errors import LdapError, LdapTimeout, LdapUnavailable

if TYPE_CHECKING:
    from cnrd.ldap.messages import Entry

# The LDAP client, its BER codec and pyasn1 are imported when a server is
# first configured with [ldap] sections, not at start: a server without
# them saves their 2.2 MiB of memory.

__all__ = ["LdapRegistry", "ClientFactory", "BindCheck"]

log = Logger(namespace="cnrd")


class _Client(Protocol):
    """What the registry uses of :class:`cnrd.ldap.client.LdapClient`."""

    @property
    def server(self) -> LdapConfig | None: ...
    def start(self) -> None: ...
    def stop(self) -> Deferred[None]: ...
    def lookup(self, lookup_id: str) -> Deferred[Entry | None]: ...


#: Makes the LDAP client: (reactor, servers by preference, on_state).
ClientFactory = Callable[[Any, Sequence[LdapConfig], Callable[[bool, str], None]], _Client]
#: Binds once with one server's settings: (reactor, server, timeout).
BindCheck = Callable[[Any, LdapConfig, float], "Deferred[None]"]


@dataclass
class _Waiting:
    """A lookup asked before the first bind settled."""

    lookup_id: str
    deferred: Deferred[Entry | None]
    timer: IDelayedCall | None = None


def _make_client(reactor: Any, servers: Sequence[LdapConfig], on_state: Callable[[bool, str], None]) -> _Client:
    from cnrd.ldap.client import LdapClient

    return LdapClient(reactor, servers, on_state=on_state)


def _check_bind(reactor: Any, server: LdapConfig, timeout: float) -> Deferred[None]:
    from cnrd.ldap.client import check_bind

    return check_bind(reactor, server, timeout)


def _servers(config: Config) -> tuple[LdapConfig, ...]:
    return tuple(sorted(config.ldap.values(), key=lambda s: (s.preference, s.name)))


def _same(a: Sequence[LdapConfig], b: Sequence[LdapConfig]) -> bool:
    # The password is not part of a section's equality (it stays out of reprs
    # and comparisons of configurations); a new one needs a new bind.
    return list(a) == list(b) and [s.password for s in a] == [s.password for s in b]


class LdapRegistry:
    """The running LDAP client registry of one server (nothing runs without ``[ldap]`` sections)."""

    def __init__(self, reactor: Any, *, client_factory: ClientFactory = _make_client,
                 bind_check: BindCheck = _check_bind) -> None:
        self.reactor = reactor
        self._factory = client_factory
        self._bind_check = bind_check
        self._servers: tuple[LdapConfig, ...] = ()
        self._client: _Client | None = None
        self._running = False
        self.health = RegistryHealth()
        self._bad_entries: set[str] = set()  # DNs already logged as unusable
        # Lookups asked before the client first bound or failed to: they
        # wait for that (up to the timeout) rather than fail at once, so the
        # clients of a server just started are not given the default class.
        self._first: list[_Waiting] = []
        self._settled = False

    @property
    def configured(self) -> bool:
        """True while ``[ldap]`` sections are configured and client-class is on."""
        return bool(self._servers)

    # -- lifecycle and configuration -------------------------------------------------
    def configure(self, config: Config) -> bool:
        """Use ``config``'s ``[ldap]`` sections from now on; True when the client was replaced."""
        servers = _servers(config) if config.server.client_class else ()
        if _same(servers, self._servers):
            return False
        old, self._client = self._client, None
        if old is not None:
            old.stop()
        self._servers = servers
        self.health = RegistryHealth()
        self._release_first(LdapUnavailable(-1, "the LDAP settings changed"))
        self._settled = False
        if servers:
            self._client = self._factory(self.reactor, servers, self._on_state)
            if self._running:
                self._client.start()
        return True

    def start(self) -> None:
        """Connect (the client keeps reconnecting by itself)."""
        self._running = True
        if self._client is not None:
            self._client.start()

    def stop(self) -> Deferred[None]:
        """Unbind and close."""
        self._running = False
        if self._client is None:
            return defer.succeed(None)
        return self._client.stop()

    def _on_state(self, up: bool, detail: str) -> None:
        self._settled = True
        self._release_first(None if up else LdapUnavailable(-1, detail))
        if not self.health.changed(up, detail, self.reactor.seconds()):
            return
        if up:
            log.info("LDAP client registry: bound to [ldap {server}]", server=detail)
        else:
            log.warn("LDAP client registry unavailable: {reason}; clients are served from the cache "
                     "(entries past client-cache-ttl included) until it is back", reason=detail)

    # -- lookups ------------------------------------------------------------------------
    def lookup(self, lookup_id: str) -> Deferred[ClientConfig | None]:
        """The client entry for ``lookup_id`` (None: the directory has none, or it is unusable)."""
        client = self._client
        if client is None:
            self.health.results["unavailable"] += 1
            return defer.fail(LdapUnavailable(-1, "no LDAP server is configured"))
        server = client.server or self._servers[0]
        started = self.reactor.seconds()
        if not self._settled and self._running:
            d = self._after_first_bind(lookup_id, server.timeout)
        else:
            d = client.lookup(lookup_id)

        def answered(entry: Entry | None) -> ClientConfig | None:
            self.health.observe(self.reactor.seconds() - started)
            if entry is None:
                self.health.results["not-found"] += 1
                return None
            from cnrd.ldap.entry import client_from_entry

            try:
                hw = bytes.fromhex(lookup_id.replace(":", ""))
                found = client_from_entry(entry, server.query_dictionary, hw)
            except ValueError as e:
                self.health.results["bad-entry"] += 1
                if entry.dn not in self._bad_entries and len(self._bad_entries) < 10000:
                    self._bad_entries.add(entry.dn)
                    log.warn("LDAP entry {dn} is not usable as a client: {reason}", dn=entry.dn, reason=str(e))
                return None
            self.health.results["found"] += 1
            return found

        def failed(f: Failure) -> Failure:
            kind = ("timeout" if f.check(LdapTimeout) else "unavailable" if f.check(LdapUnavailable)
                    else "error")
            self.health.results[kind] += 1
            return f

        return d.addCallbacks(answered, failed)

    def _after_first_bind(self, lookup_id: str, timeout: float) -> Deferred[Entry | None]:
        waiting = _Waiting(lookup_id, Deferred())

        def expire() -> None:
            self._first.remove(waiting)
            waiting.deferred.errback(LdapTimeout(-1, f"no LDAP server bound within {timeout:g} s of the start"))

        waiting.timer = self.reactor.callLater(timeout, expire)
        self._first.append(waiting)
        return waiting.deferred

    def _release_first(self, error: LdapError | None) -> None:
        """The first bind settled: send the lookups that waited for it, or fail them."""
        first, self._first = self._first, []
        for waiting in first:
            if waiting.timer is not None and waiting.timer.active():
                waiting.timer.cancel()
            if error is not None or self._client is None:
                waiting.deferred.errback(error or LdapUnavailable(-1, "no LDAP server is configured"))
            else:
                self._client.lookup(waiting.lookup_id).chainDeferred(waiting.deferred)

    # -- reload ---------------------------------------------------------------------------
    def check(self, old: Config, new: Config) -> Deferred[list[str]]:
        """Bind with every ``[ldap]`` section ``new`` changes; warnings, or a ConfigError for rejected credentials."""
        before = {s.name: s for s in old.ldap.values()}
        changed = [s for s in _servers(new)
                   if s.name not in before or not _same((before[s.name],), (s,))]
        if not changed or not new.server.client_class:
            return defer.succeed([])
        warnings: list[str] = []

        def one(server: LdapConfig) -> Deferred[None]:
            d = self._bind_check(self.reactor, server, server.timeout)

            def failed(f: Failure) -> None:
                f.trap(LdapError)
                e = f.value
                assert isinstance(e, LdapError)
                if isinstance(e, (LdapUnavailable, LdapTimeout)):
                    warnings.append(f"[ldap {server.name}] not reachable now ({e.reason}); "
                                    "the new settings are used when it answers")
                    return
                key = "password-file" if server.username else "username"
                who = server.username or "anonymous"
                log.warn("reload refused: [ldap {name}] bind as {who} failed: {reason}",
                         name=server.name, who=who, reason=e.reason)
                raise ConfigError(new.path, f"ldap {server.name}", key, f"bind as {who} failed: {e.reason}")

            return d.addErrback(failed)

        done = defer.gatherResults([one(s) for s in changed], consumeErrors=True)

        def unwrap(f: Failure) -> Failure:
            e = f.value
            if isinstance(e, defer.FirstError):
                sub: Failure = e.subFailure
                return sub
            return f

        return done.addCallbacks(lambda _: warnings, unwrap)
