"""Group commit on a worker thread: the reactor keeps answering while the disk syncs.

Every ACK must wait until its lease is on stable storage, but nothing else
has to: OFFERs, NAKs, failover CONTACTs and the next batch of requests can go
on while an fsync is under way.  :class:`GroupCommitter` runs one store
commit at a time on a single worker thread (py-lmdb releases the GIL while it
syncs) and gathers everything submitted meanwhile into the next commit, so
the number of fsyncs per second stays bounded whatever the request rate.
Callbacks run on the reactor thread, in submission order, once their
changes are durable (or the commit failed).

Records are packed on the reactor thread before they are handed over: the
worker never touches a Lease object the reactor may be changing.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.leases.store import LeaseStore, PackedBatch

log = Logger(namespace="cnrd.store")

#: Runs one commit away from the reactor thread (typically ``deferToThreadPool``
#: on a single worker); the Deferred fires on the reactor thread when it is done.
Runner = Callable[[Callable[[], None]], defer.Deferred[None]]


class GroupCommitter:
    """Serialises commits to one store; at most one runs, the next one gathers."""

    def __init__(self, store: LeaseStore, run: Runner) -> None:
        self.store = store
        self._run = run
        self._next = PackedBatch()
        self._next_callbacks: list[Callable[[bool], None]] = []
        self._busy = False
        self._idle: list[defer.Deferred[None]] = []
        self.commits = 0
        self.failures = 0

    @property
    def waiting(self) -> int:
        """Callbacks (typically batches of ACKs) waiting for a commit."""
        return len(self._next_callbacks)

    def submit(self, batch: PackedBatch, on_done: Callable[[bool], None] | None = None) -> None:
        """Make ``batch`` durable; ``on_done(ok)`` runs on the reactor afterwards."""
        self._next.extend(batch)
        if on_done is not None:
            self._next_callbacks.append(on_done)
        if not self._busy:
            self._start()

    def _start(self) -> None:
        batch, callbacks = self._next, self._next_callbacks
        self._next, self._next_callbacks = PackedBatch(), []
        if batch.empty():
            for cb in callbacks:
                cb(True)
            self._settled()
            return
        self._busy = True
        d = self._run(lambda: self.store.commit_packed(batch))
        d.addCallbacks(lambda _: self._done(callbacks, True),
                       lambda f: self._failed(f, batch, callbacks))

    def _failed(self, failure: Failure, batch: PackedBatch, callbacks: list[Callable[[bool], None]]) -> None:
        self.failures += 1
        log.critical("lease store write failed: {error}", error=failure.getErrorMessage())
        # Keep what was not written for the next commit: nothing promised is dropped.
        batch.extend(self._next)
        self._next = batch
        self._done(callbacks, False)

    def _done(self, callbacks: list[Callable[[bool], None]], ok: bool) -> None:
        self._busy = False
        if ok:
            self.commits += 1
        for cb in callbacks:
            try:
                cb(ok)
            except Exception:
                log.failure("commit callback failed")
        if ok and (not self._next.empty() or self._next_callbacks):
            self._start()
        else:
            self._settled()

    def _settled(self) -> None:
        if not self._busy:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def drain(self) -> defer.Deferred[None]:
        """Fires once no commit runs and nothing waits (used at shutdown)."""
        if not self._busy and self._next.empty() and not self._next_callbacks:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        if not self._busy:
            self._start()
        return d
