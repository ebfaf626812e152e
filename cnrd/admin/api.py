"""The admin HTTP API: JSON over Klein, in front of :class:`cnrd.admin.Admin`.

This module is only the HTTP adapter: the routes and the twisted service
that listens on ``[api] listen`` (JSON bodies, answers, errors and the token
check are in :mod:`cnrd.admin.jsonhttp`; the listeners and the tokens'
rules in :mod:`cnrd.admin.listen`).  What
each command does is in :mod:`cnrd.admin.commands`; the routes and JSON shapes are
described in docs/api.md and docs/openapi.yaml.

Every answer is JSON, errors included (``{"error": "<one line>"}``): 400
for bad input, 401 without a bearer token or with a wrong one (RFC 6750
§3.1), 403 for the read-only token on a write, 404 for an
unknown route, pair or lease, 405 for a wrong method, 409 for a command the
server's state refuses, 422 for a sync whose result would not load, 502
when a failover partner's API cannot be reached, 503 from ``/ready`` only.
A 500 means a bug in cnrd, never bad input; it is logged with its traceback.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from cnrd.admin.commands import Admin, AdminError
from cnrd.admin.export import (
    ChunkStreamer,
    export_args,
    export_chunks,
    scope_ids,
    send_backup,
)
from cnrd.admin.jsonhttp import JsonCalls, error_answer, json_bytes, query_of
from cnrd.admin.listen import (
    Tokens,
    build_endpoint,
    load_read_token,
    metrics_site,
    ready_answer,
    url_of,
)
from cnrd.admin.partner import MAX_ANSWER, read_token
from cnrd.admin.sync import PairSync
from cnrd.config import Config, ConfigError

log = Logger(namespace="cnrd.api")

PREFIX = "/api/v1"
MAX_SYNC_BODY = MAX_ANSWER  # a sync-apply carries up to a whole sync-view's worth of changes


class ApiApp:
    """The Klein routes, bound to one Admin and its tokens."""

    app = Klein()

    def __init__(self, admin: Admin, token: str, metrics: Callable[[], IResource] | None = None,
                 sync: PairSync | None = None, *, read_token: str | None = None,
                 metrics_elsewhere: str | None = None) -> None:
        self.admin = admin
        # The failover pairs' sync routes; without it they are 404.
        self._sync = sync
        self._tokens = Tokens(token, read_token)
        self.calls = JsonCalls(self._tokens)
        # Where /metrics is served instead, when not here (for the 404's reason).
        self._metrics_elsewhere = metrics_elsewhere
        # Builds the /metrics resource on first use; without one /metrics is 404.
        self._metrics_factory = metrics
        self._metrics: IResource | None = None

    @app.handle_errors(Exception)
    def _error(self, request: Any, failure: Failure) -> bytes:
        return error_answer(request, failure)

    # -- routes ---------------------------------------------------------------
    @app.route(PREFIX + "/health", methods=["GET"])
    def health(self, request: Any) -> Any:
        return self.calls.call(request, self.admin.health, auth=False)

    @app.route(PREFIX + "/ready", methods=["GET"])
    def ready(self, request: Any) -> Any:
        # No token needed (probes carry none); with one, the details too.
        return self.calls.call(request, lambda: ready_answer(self.admin, self._tokens.role(request)), auth=False,
                          status=lambda r: 200 if r["ready"] else 503)

    @app.route(PREFIX + "/dhcp", methods=["GET"])
    def dhcp(self, request: Any) -> Any:
        return self.calls.call(request, self.admin.status)

    @app.route(PREFIX + "/dhcp/reload", methods=["POST"])
    def reload(self, request: Any) -> Any:
        return self.calls.call(request, lambda: self.admin.reload_checked(self.calls.body(request)))

    @app.route(PREFIX + "/dhcp/stop", methods=["POST"])
    def stop(self, request: Any) -> Any:
        return self.calls.call(request, self.calls.without_body(request, lambda: self.admin.set_enabled(False)))

    @app.route(PREFIX + "/dhcp/start", methods=["POST"])
    def start(self, request: Any) -> Any:
        return self.calls.call(request, self.calls.without_body(request, lambda: self.admin.set_enabled(True)))

    @app.route(PREFIX + "/dhcp/related-servers", methods=["GET"])
    def related_servers(self, request: Any) -> Any:
        return self.calls.call(request, self.admin.related_servers)

    @app.route(PREFIX + "/dhcp/partner-down", methods=["POST"])
    def partner_down(self, request: Any) -> Any:
        return self.calls.call(request, lambda: self.admin.partner_down(self.calls.body(request, required=True)))

    @app.route(PREFIX + "/dhcp/attributes", methods=["GET"])
    def attributes(self, request: Any) -> Any:
        return self.calls.call(request, self.admin.attributes)

    @app.route(PREFIX + "/dhcp/attributes", methods=["PATCH"])
    def patch_attributes(self, request: Any) -> Any:
        return self.calls.call(request, lambda: self.admin.patch_attributes(self.calls.body(request, required=True)))

    @app.route(PREFIX + "/failover-pairs", methods=["GET"])
    def pairs(self, request: Any) -> Any:
        return self.calls.call(request, self.admin.pairs)

    @app.route(PREFIX + "/failover-pairs/<name>", methods=["GET"])
    def pair(self, request: Any, name: str) -> Any:
        return self.calls.call(request, self.admin.pair, name)

    @app.route(PREFIX + "/failover-pairs/<name>", methods=["PATCH"])
    def patch_pair(self, request: Any, name: str) -> Any:
        return self.calls.call(request, lambda: self.admin.patch_pair(name, self.calls.body(request, required=True)))

    def _pair_sync(self) -> PairSync:
        if self._sync is None:
            raise AdminError(404, "failover pair sync is not served by this API")
        return self._sync

    @app.route(PREFIX + "/failover-pairs/<name>/sync-view", methods=["GET"])
    def sync_view(self, request: Any, name: str) -> Any:
        return self.calls.call(request, lambda: self._pair_sync().view(name))

    @app.route(PREFIX + "/failover-pairs/<name>/sync", methods=["POST"])
    def sync(self, request: Any, name: str) -> Any:
        return self.calls.call(request, lambda: self._pair_sync().sync(name, self.calls.body(request)))

    @app.route(PREFIX + "/failover-pairs/<name>/sync-apply", methods=["POST"])
    def sync_apply(self, request: Any, name: str) -> Any:
        # A whole configuration's changes can exceed the commands' 64 KiB.
        return self.calls.call(request, lambda: self._pair_sync().apply(
            name, self.calls.body(request, required=True, limit=MAX_SYNC_BODY)))

    @app.route(PREFIX + "/leases", methods=["GET"])
    def leases(self, request: Any) -> Any:
        return self.calls.call(request, lambda: self.admin.leases(query_of(request)))

    @app.route(PREFIX + "/leases/<address>", methods=["GET"])
    def lease(self, request: Any, address: str) -> Any:
        return self.calls.call(request, self.admin.lease, address)

    # -- lease history and lease commands (cnrd.admin.history) ---------------------
    @app.route(PREFIX + "/leases/<address>/history", methods=["GET"])
    def lease_history(self, request: Any, address: str) -> Any:
        return self.calls.call(request, lambda: self.admin.lease_commands.address_history(address, query_of(request)))

    @app.route(PREFIX + "/history", methods=["GET"])
    def history(self, request: Any) -> Any:
        return self.calls.call(request, lambda: self.admin.lease_commands.history(query_of(request)))

    @app.route(PREFIX + "/leases/<address>/force-available", methods=["POST"])
    def force_available(self, request: Any, address: str) -> Any:
        return self.calls.call(request, self.calls.without_body(
            request, lambda: self.admin.lease_commands.force_available(address)))

    @app.route(PREFIX + "/leases/<address>/delete", methods=["POST"])
    def delete_lease(self, request: Any, address: str) -> Any:
        return self.calls.call(request, self.calls.without_body(request, lambda: self.admin.lease_commands.delete(address)))

    @app.route(PREFIX + "/scopes", methods=["GET"])
    def scopes(self, request: Any) -> Any:
        return self.calls.call(request, self.admin.scopes)

    @app.route(PREFIX + "/save", methods=["POST"])
    def save(self, request: Any) -> Any:
        return self.calls.call(request, self.calls.without_body(request, self.admin.save))

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: Any) -> Any:
        if self._metrics is None:
            if self._metrics_elsewhere is not None:
                raise AdminError(404, f"metrics are served on {self._metrics_elsewhere}, not on the API")
            if self._metrics_factory is None:
                raise AdminError(404, "metrics are not served by this API")
            self._metrics = self._metrics_factory()
        return self._metrics

    # -- lease export and the store's backup (cnrd/admin/export.py, docs/backup.md) --
    @app.route(PREFIX + "/export/leases", methods=["GET"])
    def export_leases(self, request: Any) -> Any:
        self._tokens.authorize(request)
        fmt, state = export_args(query_of(request))
        request.setHeader(b"content-type", b"text/csv; charset=utf-8" if fmt == "csv" else b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        chunks = export_chunks(self.admin.runtime.table.leases, fmt, scope_ids(self.admin.config.scopes), state)
        return ChunkStreamer(request, chunks).start().addCallback(lambda _: b"")

    @app.route(PREFIX + "/backup", methods=["GET"])
    def backup(self, request: Any) -> Any:
        self._tokens.authorize(request)
        request.setHeader(b"cache-control", b"no-store")
        runtime = self.admin.runtime
        return send_backup(request, runtime.persist, runtime.store, self.admin.config.server.data_dir, runtime.now())


class _Root(Resource):
    """Site root: hands every request to Klein, after refusing a path that is not UTF-8 as JSON."""

    isLeaf = True

    def __init__(self, klein_resource: Any) -> None:
        Resource.__init__(self)
        self._klein = klein_resource

    def render(self, request: Any) -> Any:
        try:
            # What Klein decodes (the unquoted path segments and the host):
            # it would answer a plain-text 400 for bytes that are not UTF-8.
            b"/".join(request.prepath + request.postpath).decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return json_bytes({"error": "the request path or host is not UTF-8"})
        return self._klein.render(request)


def make_site(admin: Admin, token: str, metrics: Callable[[], IResource] | None = None,
              sync: PairSync | None = None, *, read_token: str | None = None,
              metrics_elsewhere: str | None = None) -> Site:
    """The twisted.web Site serving the admin API."""
    api = ApiApp(admin, token, metrics, sync, read_token=read_token, metrics_elsewhere=metrics_elsewhere)
    site = Site(_Root(api.app.resource()))
    site.noisy = False
    site.displayTracebacks = False
    return site


def load_token(config: Any) -> str:
    """The API bearer token: ``[api] token-file``, or ``<data-dir>/api-token`` made on first start.

    Raises ConfigError naming the key when the file cannot be read or made.
    """
    path = config.api.token_file
    if path is None:
        path = os.path.join(config.server.data_dir, "api-token")
        try:
            os.makedirs(config.server.data_dir, exist_ok=True)
            # O_EXCL with mode 0600: the secret is never readable by others,
            # not even for a moment, and an existing one is never replaced.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as e:
            raise ConfigError(config.path, "server", "data-dir",
                              f"cannot create the API token file {path}: {e.strerror or e}") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
            log.info("admin API: generated a token in {path}", path=path)
        section, key = "server", "data-dir"
    else:
        section, key = "api", "token-file"
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(config.path, section, key,
                          f"cannot read the API token file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not token:
        raise ConfigError(config.path, section, key, f"the API token file {path} is empty")
    if mode & 0o077:
        log.warn("admin API: token file {path} is readable by other users (chmod 600 it)", path=path)
    return token


class ApiService(service.Service):
    """Listens on ``[api] listen`` and serves the admin API: ``admin``'s commands and ``metrics``.

    ``config`` is the configuration the process started with: the listen
    addresses, the token files and the data directory change only at a
    restart.  ``metrics`` builds the ``/metrics`` resource when it is first
    asked for; with ``[api] metrics-listen`` it is served there and not on
    the API's listener.
    """

    name = "api"

    def __init__(self, config: Config, reactor: IReactorTCP, admin: Admin, *,
                 metrics: Callable[[], IResource] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.admin = admin
        self.metrics = metrics
        self.sync = PairSync(admin, reactor)
        self.token: str | None = None
        self.read_token: str | None = None
        self.port: Any = None  # the listening port, once listening
        self.metrics_port: Any = None  # the metrics-listen port, once listening
        self._endpoints: dict[str, Any] = {}
        self._listening: list[defer.Deferred[Any]] = []

    def prepare(self) -> None:
        """Read (or make) the tokens and build the endpoints now, so a problem stops the start with one line.

        The failover pairs' ``api-token-file`` (the partner API's token) is
        read now too, for the same reason; sync reads it again at each use.
        """
        if self.token is None:
            self.token = load_token(self.config)
            self.read_token = load_read_token(self.config, self.token)
        for pair in self.config.failover_pairs.values():
            read_token(self.config, pair)
        api = self.config.api
        if not self._endpoints:
            self._endpoints["listen"] = build_endpoint(self.reactor, self.config, "listen", api.listen)
            if api.metrics_listen is not None and self.metrics is not None:
                self._endpoints["metrics-listen"] = build_endpoint(self.reactor, self.config, "metrics-listen",
                                                                   api.metrics_listen)

    def listening(self) -> defer.Deferred[Any]:
        """Fires with the listening port (``.getHost().port``) once the API accepts connections."""
        if self.port is not None:
            return defer.succeed(self.port)
        d: defer.Deferred[Any] = defer.Deferred()
        self._listening.append(d)
        return d

    def startService(self) -> None:
        service.Service.startService(self)
        self.prepare()
        assert self.token is not None
        api = self.config.api
        elsewhere = None
        if "metrics-listen" in self._endpoints:
            assert api.metrics_listen is not None and self.metrics is not None
            elsewhere = "[api] metrics-listen"
            d = self._endpoints["metrics-listen"].listen(metrics_site(self.metrics))
            d.addCallbacks(self._metrics_listened, self._metrics_listen_failed)
        site = make_site(self.admin, self.token, None if elsewhere else self.metrics, self.sync,
                         read_token=self.read_token, metrics_elsewhere=elsewhere)
        self._endpoints["listen"].listen(site).addCallbacks(self._listened, self._listen_failed)

    def _listened(self, port: Any) -> None:
        self.port = port
        log.info("admin API listening on {where}", where=url_of(self.config.api.listen, port, PREFIX))
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.callback(port)

    def _listen_failed(self, failure: Failure) -> None:
        # DHCP goes on without its admin API rather than not at all.
        log.critical("admin API: cannot listen on {where}: {error}", where=self.config.api.listen.description,
                     error=failure.getErrorMessage())
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.errback(failure)

    def _metrics_listened(self, port: Any) -> None:
        self.metrics_port = port
        assert self.config.api.metrics_listen is not None
        log.info("metrics listening on {where}", where=url_of(self.config.api.metrics_listen, port, "/metrics"))

    def _metrics_listen_failed(self, failure: Failure) -> None:
        assert self.config.api.metrics_listen is not None
        log.critical("metrics: cannot listen on {where}: {error}", where=self.config.api.metrics_listen.description,
                     error=failure.getErrorMessage())

    def stopService(self) -> Any:
        service.Service.stopService(self)
        ports = [p for p in (self.port, self.metrics_port) if p is not None]
        self.port = self.metrics_port = None
        self._endpoints = {}
        if ports:
            return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
        return None
