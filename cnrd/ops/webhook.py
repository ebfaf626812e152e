"""Sends traps out: a warning log line and, when ``[server] trap-webhook`` is set, a JSON POST.

The thin adapter under :mod:`cnrd.ops.traps` (which decides what is a trap).  A
POST (treq, over Twisted's Agent: http and, with twisted[tls], https with the
system's trusted CAs) runs in the background with a timeout and never blocks
or fails the server: whatever happens to it is logged and counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, cast

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from cnrd import __version__
from cnrd.ops.traps import Trap, payload, safe_url

log = Logger(namespace="cnrd.traps")

WEBHOOK_TIMEOUT = 10.0  # seconds for the whole POST, connect to last byte
MAX_IN_FLIGHT = 16  # webhook POSTs outstanding at once; beyond that a trap's POST is dropped (and counted)


class TrapSettings(Protocol):
    """The ``[server]`` settings a trap reads when it is raised."""

    @property
    def name(self) -> str: ...
    @property
    def trap_webhook(self) -> str | None: ...


class _Drain(protocol.Protocol):
    """Reads a response body away; ``done`` fires with the status code at its end."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.done: defer.Deferred[int] = defer.Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        # The end of the body, whole or cut short: the status is known either way.
        if not self.done.called:
            self.done.callback(self.code)

    def _cancel(self, d: defer.Deferred[int]) -> None:
        if self.transport is not None:
            # The timeout: drop the connection.  A response body's transport
            # is a producer (Response.deliverBody), typed as a plain ITransport.
            cast(IPushProducer, self.transport).stopProducing()


class TrapNotifier:
    """Sends traps out: a warning log line, and a POST to ``[server] trap-webhook`` when set.

    ``server`` returns the running ``[server]`` settings (read at each trap:
    the URL and the server name can change at run time).  A POST runs in
    the background with a timeout; whatever happens to it is logged and
    counted (``delivered``, ``failed``), never raised.  ``reactor`` dates
    the traps and times the POSTs out; unless an ``agent`` is given, the
    POSTs connect through it too (so it must provide IReactorTCP as well).
    """

    def __init__(self, reactor: IReactorTime, server: Callable[[], TrapSettings], *,
                 timeout: float = WEBHOOK_TIMEOUT, agent: IAgent | None = None) -> None:
        self.reactor = reactor
        self._server = server
        self.timeout = timeout
        self._agent = agent
        self.delivered = 0
        self.failed = 0
        self.in_flight = 0

    def notify(self, trap: Trap) -> defer.Deferred[bool] | None:
        """Raise ``trap``: log it, and POST it when a webhook is configured (the POST's Deferred, never failing)."""
        try:
            return self._notify(trap)
        except Exception:  # a trap must never break the event that raised it
            log.failure("trap {trap} not sent", trap=trap.name)
            return None

    def _notify(self, trap: Trap) -> defer.Deferred[bool] | None:
        server = self._server()
        now = self.reactor.seconds()
        body = payload(trap, server.name, now)
        extra = {k: v for k, v in trap.fields.items() if k not in ("event", "trap", "pair", "server")}
        log.warn("trap {trap}: failover pair {pair}: {reason}", event="trap", trap=trap.name, pair=trap.pair,
                 server=server.name, **{"reason": "", **extra})
        url = getattr(server, "trap_webhook", None)
        if not url:
            return None
        return self.post(url, body)

    def post(self, url: str, body: dict[str, Any]) -> defer.Deferred[bool]:
        """POST ``body`` as JSON to ``url``; fires with True when a 2xx answer came, else False."""
        if self.in_flight >= MAX_IN_FLIGHT:
            self._failed(url, f"{self.in_flight} webhook requests still outstanding")
            return defer.succeed(False)
        # treq is imported at the first trap sent, not at start: a server
        # without webhooks does not carry it.
        from treq.client import HTTPClient

        try:
            client = HTTPClient(self._agent or self._make_agent())
            # No redirects: a trap goes where the operator said, not where an answer points.
            # application/json has no charset parameter (RFC 8259 §11): the body is sent as is.
            headers = Headers({b"content-type": [b"application/json"],
                               b"user-agent": [f"cnrd/{__version__}".encode()]})
            d = defer.maybeDeferred(client.post, url, data=json.dumps(body).encode(), headers=headers,
                                    allow_redirects=False)
        except Exception as e:  # a bad URL or a missing TLS library: counted, never raised
            self._failed(url, str(e) or type(e).__name__)
            return defer.succeed(False)
        self.in_flight += 1
        status = d.addCallback(self._read)
        status.addTimeout(self.timeout, self.reactor)

        def done(result: int | Failure) -> bool:
            self.in_flight -= 1
            if isinstance(result, int) and 200 <= result < 300:
                self.delivered += 1
                return True
            if isinstance(result, int):
                self._failed(url, f"HTTP status {result}")
            else:
                self._failed(url, result.getErrorMessage() or type(result.value).__name__)
            return False

        return status.addBoth(done)

    def _make_agent(self) -> IAgent:
        # One connection per POST: traps are rare, and no idle socket outlives its trap.
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        return Agent(self.reactor, connectTimeout=self.timeout, pool=pool)

    @staticmethod
    def _read(response: IResponse) -> defer.Deferred[int]:
        # Read the answer to its end so the connection closes cleanly; the status decides.
        drain = _Drain(response.code)
        response.deliverBody(drain)
        return drain.done

    def _failed(self, url: str, reason: str) -> None:
        self.failed += 1
        log.warn("trap webhook {url}: not delivered: {error}", event="trap-webhook-failed", url=safe_url(url),
                 error=reason)
