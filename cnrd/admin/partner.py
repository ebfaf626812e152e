"""The partner's admin API, as a failover pair's sync and mismatch check call it.

:class:`PartnerApi` is a small JSON client for the two routes one server of a
pair asks of the other: ``GET .../failover-pairs/NAME/sync-view`` (the
partner's shareable configuration) and ``POST .../failover-pairs/NAME/sync-apply``
(apply changes a Report listed).  Every call is bounded by ``timeout``, from
the connection to the last byte of the answer.  Whatever goes wrong ends as
one :class:`PartnerError` with the HTTP status this server's API should give
and a one-line reason naming the partner: the partner's own 4xx status and
error when it refuses (a wrong token is 403 there, so 403 here), 502 when it
cannot be reached, times out, fails (5xx) or answers something that is not a
JSON object.

:func:`pair_api_urls` and :func:`read_token` read a pair's ``main-api``,
``backup-api`` and ``api-token-file`` settings.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed

from cnrd.config import Config, ConfigError, FailoverPairConfig

__all__ = ["PartnerApi", "PartnerError", "MAX_ANSWER", "Values", "pair_api_urls", "read_token",
           "values_json", "view_values"]

#: A configuration as :func:`cnrd.config.inifile.read_values` gives it: section id -> key -> value text.
Values = dict[tuple[str, str | None], dict[str, str]]

PREFIX = "/api/v1"
# A sync-view is the whole shareable configuration; a few MiB holds
# thousands of clients and reservations, and bounds what a partner can make
# this server buffer.
MAX_ANSWER = 16 * 1024 * 1024


class PartnerError(Exception):
    """The partner refused or could not be asked: the status to answer with and why, in one line."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(f"{status} {self.reason}")


def pair_api_urls(pair: FailoverPairConfig) -> tuple[str, str] | None:
    """(main's API base URL, backup's), or None when the pair does not configure them."""
    if pair.main_api is None or pair.backup_api is None:
        return None
    return pair.main_api, pair.backup_api


def read_token(config: Config, pair: FailoverPairConfig) -> str | None:
    """The bearer token for the partner's API from ``api-token-file``; None when the pair has none.

    Raises ConfigError naming the pair's ``api-token-file`` when the file
    cannot be read or is empty.  Read at each use, so a replaced token file
    takes effect without a restart.
    """
    path = pair.api_token_file
    if path is None:
        return None
    section, key = f"failover-pair {pair.name}", "api-token-file"
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(config.path, section, key,
                          f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not token:
        raise ConfigError(config.path, section, key, f"{path} is empty")
    return token


def values_json(values: Values) -> list[dict[str, Any]]:
    """``values`` as a sync-view carries them: ``[{"type", "name", "keys"}]`` in section order."""
    return [{"type": t, "name": n, "keys": dict(keys)} for (t, n), keys in values.items()]


def view_values(view: dict[str, Any], where: str = "partner") -> Values:
    """The values of a sync-view answer; PartnerError 502 when it is not one."""
    items = view.get("values")
    if not isinstance(items, list):
        raise PartnerError(502, f"{where}: sync-view without a values list")
    out: Values = {}
    for item in items:
        t = item.get("type") if isinstance(item, dict) else None
        n = item.get("name") if isinstance(item, dict) else None
        keys = item.get("keys") if isinstance(item, dict) else None
        if (not isinstance(t, str) or not (n is None or isinstance(n, str)) or not isinstance(keys, dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items())):
            raise PartnerError(502, f"{where}: sync-view has a malformed section {str(item)[:80]}")
        out[(t, n)] = keys
    return out


class PartnerApi:
    """JSON calls to the partner's admin API at ``base_url`` (scheme, host and port)."""

    def __init__(self, reactor: Any, base_url: str, token: str | None, timeout: float = 10) -> None:
        self.reactor = reactor
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # treq only once a partner API is configured: a server without
        # one does not carry it.
        from treq.client import HTTPClient

        # One connection per call: calls are rare (a minute apart at most)
        # and a kept-alive socket would outlive a partner's restart.
        self._http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    def _url(self, pair: str, what: str) -> str:
        return f"{self.base_url}{PREFIX}/failover-pairs/{quote(pair, safe='')}/{what}"

    def sync_view(self, pair: str) -> defer.Deferred[dict[str, Any]]:
        """The partner's ``sync-view`` of ``pair``: its role, server name and shareable values."""
        return self._call("GET", self._url(pair, "sync-view"), None)

    def sync_apply(self, pair: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """Have the partner apply the changes in ``body`` to its file and reload; its answer."""
        return self._call("POST", self._url(pair, "sync-apply"), body)

    def _call(self, method: str, url: str, body: dict[str, Any] | None) -> defer.Deferred[dict[str, Any]]:
        d = defer.ensureDeferred(self._request(method, url, body))
        # Bounds the whole exchange, the body included (treq's own timeout
        # stops at the headers); cancelling ends the connection.  Whatever
        # error the cancelled step raises (ConnectingCancelledError while
        # connecting), the reason is the timeout.
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self.reactor.callLater(self.timeout, expire)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if timed_out and isinstance(result, Failure) and not isinstance(result.value, PartnerError):
                raise PartnerError(502, f"partner {self.base_url} did not answer within {self.timeout:g} s")
            return result

        return d.addBoth(done).addErrback(self._failed, url)

    async def _request(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers: dict[bytes | str, bytes | str] = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        # No redirects: the token is for this URL only.
        response = await self._http.request(method, url, headers=headers, allow_redirects=False, **kwargs)
        length = response.length
        if isinstance(length, int) and length > MAX_ANSWER:
            response.deliverBody(_Discard())
            raise PartnerError(502, f"partner {self.base_url}: answer of {length} bytes is too large")
        raw = await response.content()
        if len(raw) > MAX_ANSWER:
            raise PartnerError(502, f"partner {self.base_url}: answer of {len(raw)} bytes is too large")
        try:
            answer = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            answer = None
        code = response.code
        if not isinstance(answer, dict):
            raise PartnerError(502, f"partner {self.base_url} answered {code} without a JSON object "
                                    f"(is {self.base_url} a cnrd admin API?)")
        if code == 200:
            return answer
        error = answer.get("error")
        reason = error if isinstance(error, str) else f"HTTP {code}"
        if 400 <= code < 500:
            raise PartnerError(code, f"partner {self.base_url} refused: {reason}")
        raise PartnerError(502, f"partner {self.base_url} failed: {reason}")

    def _failed(self, failure: Any, url: str) -> Any:
        e = failure.value
        if isinstance(e, PartnerError):
            return failure
        if isinstance(e, defer.TimeoutError | defer.CancelledError | TimeoutError):
            raise PartnerError(502, f"partner {self.base_url} did not answer within {self.timeout:g} s")
        if isinstance(e, ConnectError | DNSLookupError):
            raise PartnerError(502, f"cannot reach partner {self.base_url}: {str(e).strip().rstrip('.')}")
        if isinstance(e, ResponseFailed):
            raise PartnerError(502, f"partner {self.base_url} closed the connection before answering")
        raise PartnerError(502, f"partner {self.base_url}: {e.__class__.__name__}: {e}")


class _Discard(Protocol):
    """A body consumer that closes the connection of an answer too large to read."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.stopProducing()  # type: ignore[attr-defined]
