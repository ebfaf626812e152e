"""JSON over HTTP for the admin API: bodies in, answers and errors out, the token checked.

:class:`JsonCalls` runs a command for a route (token first, then the
command, its result or Deferred written as JSON with its status);
:func:`error_answer` turns any failure into the JSON error answer the API
documents.  The routes themselves are in :mod:`cnrd.admin.api`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from cnrd.admin.listen import AuthError, Tokens
from cnrd.admin.values import AdminError, body_object

__all__ = ["MAX_BODY", "JsonCalls", "error_answer", "json_bytes", "query_of", "read_json"]

log = Logger(namespace="cnrd.api")

T = TypeVar("T")

MAX_BODY = 64 * 1024  # no command needs more; a bigger body is refused unread


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_ABSENT = object()  # no request body at all (as opposed to a JSON null)


def read_json(request: Any, limit: int = MAX_BODY) -> Any:
    """The request body as JSON, _ABSENT when empty; AdminError 400 for anything else."""
    content = request.content
    raw = content.read(limit + 1) if content is not None else b""
    if len(raw) > limit:
        raise AdminError(400, f"request body larger than {limit} bytes")
    if not raw:
        return _ABSENT  # (only whitespace is malformed JSON, like any other text)
    ctype = request.getHeader("content-type")
    if ctype is not None:
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise AdminError(400, f"Content-Type must be application/json, not {media or 'empty'}")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise AdminError(400, f"malformed JSON body: {e}") from None


def query_of(request: Any) -> dict[str, list[str]]:
    try:
        return {k.decode("utf-8"): [v.decode("utf-8") for v in vs] for k, vs in (request.args or {}).items()}
    except UnicodeDecodeError:
        raise AdminError(400, "query string is not UTF-8") from None


class JsonCalls:
    """A route's command run behind the API's tokens, with JSON in and out."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    def call(self, request: Any, fn: Callable[..., Any], *args: Any, auth: bool = True,
              status: Callable[[Any], int] = lambda result: 200) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if auth:
            self.tokens.authorize(request)
        result = fn(*args)

        def send(obj: Any) -> bytes:
            request.setResponseCode(status(obj))
            return json_bytes(obj)

        if isinstance(result, defer.Deferred):
            return result.addCallback(send)
        return send(result)

    def body(self, request: Any, *, required: bool = False, limit: int = MAX_BODY) -> dict[str, Any] | None:
        """The JSON object in the body; None when there is none and none is required."""
        value = read_json(request, limit)
        if value is _ABSENT:
            if required:
                raise AdminError(400, "a JSON object body is required")
            return None
        if not isinstance(value, dict):
            raise AdminError(400, "the body must be a JSON object")
        return value

    def without_body(self, request: Any, command: Callable[[], T]) -> Callable[[], T]:
        """``command``, run only if the request has no body or ``{}``.

        Commands without arguments refuse anything else: it is probably a
        mistake worth telling about.
        """
        def run() -> T:
            body_object(self.body(request), ())
            return command()
        return run


def error_answer(request: Any, failure: Failure) -> bytes:
    """Any failure of a route as its JSON answer: the status, and {"error": "<one line>"}."""
    e = failure.value
    extra: dict[str, str] = {}
    if isinstance(e, AuthError):
        status, reason = e.status, e.reason
        request.setHeader(b"www-authenticate", e.challenge)
    elif isinstance(e, AdminError):
        status, reason = e.status, e.reason
        if status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="cnrd"')
    elif isinstance(e, MethodNotAllowed):
        status = 405
        allowed = sorted(e.valid_methods or ())
        reason = f"method {request.method.decode('ascii', 'replace')} not allowed; use {', '.join(allowed)}"
        extra["allow"] = ", ".join(allowed)
    elif isinstance(e, HTTPException):
        # NotFound, and the redirect a trailing slash would get: no such route.
        status = e.code if e.code and 400 <= e.code < 500 else 404
        reason = "no such route" if status == 404 else (e.description or e.name)
    else:
        log.failure("admin API: unhandled error for {method} {path}", failure,
                    method=request.method.decode("ascii", "replace"),
                    path=request.path.decode("utf-8", "replace"))
        status, reason = 500, "internal error (a bug in cnrd; see the server log)"
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    for k, v in extra.items():
        request.setHeader(k.encode(), v.encode())
    return json_bytes({"error": reason})
