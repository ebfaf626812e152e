"""Group commit: one commit at a time, the rest gathered, callbacks after durability."""

from twisted.internet import defer

from cnrd.leases.committer import GroupCommitter
from cnrd.leases.model import Lease, LeaseState
from cnrd.leases.store import MemoryLeaseStore, PackedBatch


class ManualRunner:
    """Holds each commit until the test lets it finish, like a slow fsync."""

    def __init__(self):
        self.waiting = []

    def __call__(self, f):
        d = defer.Deferred()
        self.waiting.append((f, d))
        return d

    def finish(self):
        f, d = self.waiting.pop(0)
        try:
            f()
        except Exception as e:
            d.errback(e)
        else:
            d.callback(None)


def batch(n):
    return PackedBatch.of([Lease(n, LeaseState.LEASED, "s", b"\x01" + bytes([n]))])


def test_submissions_during_a_commit_share_the_next_one():
    store, run = MemoryLeaseStore(), ManualRunner()
    c = GroupCommitter(store, run)
    done = []
    c.submit(batch(1), lambda ok: done.append((1, ok)))
    c.submit(batch(2), lambda ok: done.append((2, ok)))
    c.submit(batch(3), lambda ok: done.append((3, ok)))
    assert len(run.waiting) == 1 and done == []  # nothing acknowledged before the disk
    run.finish()
    assert done == [(1, True)] and len(run.waiting) == 1
    run.finish()  # 2 and 3 in one commit
    assert done == [(1, True), (2, True), (3, True)]
    assert store.commits == 2 and store.lease_count() == 3


def test_failure_withholds_and_keeps_changes_for_the_next_commit():
    store, run = MemoryLeaseStore(), ManualRunner()
    c = GroupCommitter(store, run)
    done = []
    store.close()
    c.submit(batch(1), lambda ok: done.append(ok))
    run.finish()
    assert done == [False] and c.failures == 1
    store.closed = False
    c.submit(batch(2), lambda ok: done.append(ok))
    run.finish()
    assert done == [False, True]
    assert store.lease_count() == 2  # the failed lease was written with the next commit


def test_drain_waits_for_the_running_commit():
    store, run = MemoryLeaseStore(), ManualRunner()
    c = GroupCommitter(store, run)
    c.submit(batch(1))
    d = c.drain()
    assert not d.called
    run.finish()
    assert d.called
