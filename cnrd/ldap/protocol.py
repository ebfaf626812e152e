"""One LDAP connection on Twisted: framing, message IDs and one Deferred per operation.

Thin: the bytes are built and read by :mod:`cnrd.ldap.messages`; policy
(which server, timeouts, queueing) is :mod:`cnrd.ldap.client`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyasn1_modules import rfc2251
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.ldap import messages
from cnrd.ldap.errors import LdapError, LdapUnavailable
from cnrd.ldap.messages import Entry, Message, Result

_log = Logger(namespace="cnrd.ldap")

#: Message IDs run 1..2^31-1 (RFC 4511 §4.1.1.1); 0 is the server's unsolicited notice.
_MAX_ID = 2**31 - 1


@dataclass
class SearchPage:
    """What one SearchRequest returned: its entries, the final result, the paged cookie."""

    entries: list[Entry]
    result: Result
    cookie: bytes | None


@dataclass
class _Pending:
    deferred: Deferred[Any]
    op: str
    entries: list[Entry] = field(default_factory=list)


class LdapProtocol(Protocol):
    """An LDAP client connection; every operation returns a Deferred that fails on connection loss."""

    def __init__(self) -> None:
        self._buffer = b""
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._closed: list[Deferred[None]] = []
        self.connected_ok = False
        self._idle_close = False
        self.lost_reason: str | None = None
        #: Called once when the connection is gone, with a one-line reason.
        self.on_lost: Callable[[str], None] = lambda reason: None

    # -- Protocol ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected_ok = True

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        try:
            pdus, self._buffer = messages.split_pdus(self._buffer)
            for pdu in pdus:
                self._dispatch(messages.decode(pdu))
        except messages.ProtocolError as e:
            self._drop(f"malformed data from the server: {e}")

    def connectionLost(self, reason: Failure = Failure(Exception("connection lost"))) -> None:
        why = self.lost_reason or f"connection lost: {reason.getErrorMessage()}"
        self.lost_reason = why
        self.connected_ok = False
        self._fail_all(why)
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)
        self.on_lost(why)

    # -- operations -------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def bind(self, name: str, password: bytes) -> Deferred[None]:
        """A simple bind; fails with LdapError carrying the server's result code."""
        d = self._start("bindResponse", lambda mid: messages.bind_request(mid, name, password))
        return d.addCallback(_check_result, "bind")

    def start_tls(self, context_factory: Any) -> Deferred[None]:
        """The StartTLS operation; on success the transport switches to TLS before the Deferred fires."""
        d = self._start("extendedResp", messages.start_tls_request)

        def switch(result: Result) -> None:
            _check_result(result, "StartTLS")
            assert self.transport is not None
            self.transport.startTLS(context_factory)  # type: ignore[attr-defined]

        return d.addCallback(switch)

    def search(self, base: str, scope: str, filter_: rfc2251.Filter, attributes: Sequence[str], *,
               size_limit: int = 0, time_limit: int = 0, page_size: int | None = None,
               cookie: bytes = b"") -> Deferred[SearchPage]:
        """One SearchRequest; its Deferred fires with every entry at SearchResultDone.

        Cancelling the Deferred abandons the operation on the server.
        """
        return self._start("searchResDone", lambda mid: messages.search_request(
            mid, base, scope, filter_, attributes, size_limit=size_limit, time_limit=time_limit,
            page_size=page_size, cookie=cookie))

    def unbind(self) -> Deferred[None]:
        """Send UnbindRequest and close; fires when the connection is closed."""
        d = self.when_closed()
        if self.transport is not None and self.connected_ok:
            self.lost_reason = self.lost_reason or "unbound"
            self.transport.write(messages.unbind_request(self._allocate()))
            self.transport.loseConnection()
        return d

    def close_when_idle(self) -> None:
        """Unbind once every outstanding operation has been answered (a replaced connection)."""
        self._idle_close = True
        if not self._pending:
            self.unbind()

    def when_closed(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if not self.connected_ok:
            d.callback(None)
        else:
            self._closed.append(d)
        return d

    # -- internals --------------------------------------------------------

    def _allocate(self) -> int:
        mid = self._next_id
        self._next_id = 1 if mid >= _MAX_ID else mid + 1
        return mid

    def _start(self, op: str, build: Callable[[int], bytes]) -> Deferred[Any]:
        if not self.connected_ok or self.transport is None:
            return fail(LdapUnavailable(-1, self.lost_reason or "not connected"))
        mid = self._allocate()

        def abandon(d: Deferred[Any]) -> None:
            if self._pending.pop(mid, None) is not None and self.connected_ok and self.transport is not None:
                self.transport.write(messages.abandon_request(self._allocate(), mid))

        d: Deferred[Any] = Deferred(abandon)
        self._pending[mid] = _Pending(d, op)
        self.transport.write(build(mid))
        return d

    def _dispatch(self, message: Message) -> None:
        if message.is_notice_of_disconnection:
            reason = message.result.describe() if message.result else "no reason"
            self._drop(f"the server is disconnecting: {reason}")
            return
        pending = self._pending.get(message.message_id)
        if pending is None:
            return  # an abandoned operation's late answer
        if message.op == "searchResEntry" and pending.op == "searchResDone":
            assert message.entry is not None
            pending.entries.append(message.entry)
        elif message.op == "searchResRef":
            pass  # continuation references are not followed: client entries live on this server
        elif message.op == pending.op:
            del self._pending[message.message_id]
            assert message.result is not None
            if pending.op == "searchResDone":
                pending.deferred.callback(SearchPage(pending.entries, message.result, message.cookie))
            else:
                pending.deferred.callback(message.result)
        else:
            del self._pending[message.message_id]
            pending.deferred.errback(LdapError(-1, f"unexpected {message.op} to a request awaiting {pending.op}"))
        if self._idle_close and not self._pending:
            self.unbind()

    def _drop(self, reason: str) -> None:
        _log.warn("LDAP connection dropped: {reason}", reason=reason)
        self.lost_reason = reason
        self._fail_all(reason)
        if self.transport is not None:
            self.transport.loseConnection()

    def _fail_all(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for op in pending.values():
            op.deferred.errback(LdapUnavailable(-1, reason))


def _check_result(result: Result, what: str) -> None:
    if result.code != 0:
        raise LdapError(result.code, f"{what}: {result.describe()}")
