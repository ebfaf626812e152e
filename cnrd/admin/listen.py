"""The admin API's listeners and bearer tokens.

Where the API listens (``[api] listen``, a Twisted endpoint description:
TCP, TLS or a Unix socket), where ``/metrics`` listens on its own (``[api]
metrics-listen``), the two tokens (``token-file``: everything;
``read-token-file``: GET and HEAD only) and the answers RFC 6750 §3 asks for
when a token is missing, wrong or not enough.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from cnrd.admin.commands import NOT_READY_STATES, Admin
from cnrd.admin.values import AdminError
from cnrd.config import Config, ConfigError
from cnrd.config.listen import Listen

__all__ = ["READ_METHODS", "AuthError", "Tokens", "build_endpoint", "load_read_token", "metrics_site",
           "ready_answer", "url_of"]

READ_METHODS = frozenset({b"GET", b"HEAD"})  # what the read-only token may do
REALM = b'Bearer realm="cnrd"'


class AuthError(AdminError):
    """A request refused for its credentials; ``challenge`` is its ``WWW-Authenticate`` value."""

    def __init__(self, status: int, reason: str, error: str | None = None) -> None:
        super().__init__(status, reason)
        self.challenge = REALM + (f', error="{error}"'.encode() if error else b"")


class Tokens:
    """The admin token and the optional read-only one, compared in constant time."""

    def __init__(self, admin: str, read: str | None = None) -> None:
        self._admin = admin.encode()
        self._read = read.encode() if read is not None else None

    def role(self, request: Any) -> str | None:
        """"admin", "read", or None when the request carries no credentials.

        AuthError 401 for a malformed header or a token that is neither
        (``error="invalid_token"``, RFC 6750 §3.1).
        """
        header = request.getHeader("authorization")
        if header is None:
            return None
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            # RFC 6750 §3.1: no Bearer credentials at all gets the bare challenge.
            raise AuthError(401, "malformed Authorization header (use: Bearer <token>)")
        given = credential.encode("utf-8", "surrogateescape")
        # Both comparisons always run: which token matched must not show in the timing.
        is_admin = hmac.compare_digest(given, self._admin)
        is_read = self._read is not None and hmac.compare_digest(given, self._read)
        if is_admin:
            return "admin"
        if is_read:
            return "read"
        raise AuthError(401, "wrong API token", "invalid_token")

    def authorize(self, request: Any) -> str:
        """The role of a request that must carry a token; AuthError 401 or 403 otherwise."""
        role = self.role(request)
        if role is None:
            raise AuthError(401, "missing Authorization: Bearer <token> header")
        if role == "read" and request.method not in READ_METHODS:
            raise AuthError(403, "the read-only API token may only GET", "insufficient_scope")
        return role


def ready_state(admin: Admin) -> str:
    """The one state name /ready gives: the first failover pair that is not ready, else the first not NORMAL.

    "DISABLED" while DHCP is stopped, "STANDALONE" without failover pairs.
    """
    rt = admin.runtime
    if not rt.server.enabled:
        return "DISABLED"
    statuses = sorted((s.status() for s in rt.sessions), key=lambda st: st.name)
    for st in statuses:
        if st.state in NOT_READY_STATES:
            return st.label
    for st in statuses:
        if st.label != "NORMAL":
            return st.label
    return "NORMAL" if statuses else "STANDALONE"


def ready_answer(admin: Admin, role: str | None) -> dict[str, Any]:
    """/ready's body: ready and the state's name without a token, every detail with one."""
    full = admin.ready()
    state = ready_state(admin)
    if role is None:
        # Probes carry no secrets, so this answer tells no more than a probe needs.
        return {"ready": bool(full["ready"]), "state": state}
    return {**full, "state": state}


def load_read_token(config: Config, admin_token: str) -> str | None:
    """The read-only token from ``[api] read-token-file``; None when unset.

    ConfigError naming the key when it cannot be read, is empty, or is the admin token.
    """
    path = config.api.read_token_file
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(config.path, "api", "read-token-file",
                          f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not token:
        raise ConfigError(config.path, "api", "read-token-file", f"{path} is empty")
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        raise ConfigError(config.path, "api", "read-token-file",
                          f"{path} holds the admin token (a read-only token must differ)")
    return token


def build_endpoint(reactor: Any, config: Config, key: str, listen: Listen) -> IStreamServerEndpoint:
    """The server endpoint for ``[api] key``; ConfigError naming it when Twisted refuses the description.

    An ``ssl:`` description reads its key and certificate here, so a missing
    or bad file stops the start with one line.
    """
    try:
        endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, listen.description)
    except Exception as e:  # noqa: BLE001 (Twisted raises ValueError, KeyError, OSError, OpenSSL's errors)
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        filename = getattr(e, "filename", None)
        if filename and str(filename) not in reason:
            reason = f"{filename}: {reason}"
        raise ConfigError(config.path, "api", key, f"{listen.description}: {reason}") from None
    if listen.kind == "unix" and listen.path:
        directory = os.path.dirname(listen.path)
        if directory and not os.path.isdir(directory):
            raise ConfigError(config.path, "api", key, f"the socket's directory {directory} does not exist")
    return endpoint


def url_of(listen: Listen, port: Any, prefix: str = "") -> str:
    """Where a client reaches a listening ``port`` made from ``listen``, for the log."""
    if listen.kind == "unix":
        return f"unix:{listen.path}"
    host = port.getHost()
    address = getattr(host, "host", None)
    if address is None:
        return listen.description
    shown = f"[{address}]" if ":" in address else address
    scheme = listen.scheme or "http"
    return f"{scheme}://{shown}:{host.port}{prefix}"


class _NotFound(Resource):
    """Every path but /metrics on the metrics listener."""

    isLeaf = True

    def __init__(self) -> None:
        Resource.__init__(self)

    def render(self, request: Any) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": "no such route (this listener serves /metrics only)"}).encode() + b"\n"


class _MetricsOnly(Resource):
    """A site root with ``/metrics`` as its only page."""

    def __init__(self, metrics: Callable[[], IResource]) -> None:
        Resource.__init__(self)
        self._factory = metrics
        self._metrics: IResource | None = None

    def getChild(self, path: bytes, request: Any) -> IResource:
        if path == b"metrics" and not request.postpath:
            if self._metrics is None:
                self._metrics = self._factory()
            return self._metrics
        return _NotFound()

    def render(self, request: Any) -> bytes:
        return _NotFound().render(request)


def metrics_site(metrics: Callable[[], IResource]) -> Site:
    """The Site of ``[api] metrics-listen``: ``/metrics`` and nothing else, without a token."""
    site = Site(_MetricsOnly(metrics))
    site.noisy = False
    site.displayTracebacks = False
    return site
