"""The same contract for the LMDB store and the in-memory one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import Lease, LeaseEvent, LeaseFlag, LeaseState, client_key
from cnrd.leases.store import MemoryLeaseStore, StoreError


@pytest.fixture(params=["memory", "lmdb", "journal"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryLeaseStore(event_history=5)
    elif request.param == "journal":
        s = JournaledStore(str(tmp_path / "db"), map_size=1 << 24, event_history=5, journal_size=1 << 16)
    else:
        s = LmdbLeaseStore(str(tmp_path / "db"), map_size=1 << 24, event_history=5)
    yield s
    s.close()


def lease(n: int, **kw) -> Lease:
    base = dict(
        address=0x0A010000 + n, state=LeaseState.LEASED, scope="lan", hw=b"\x01" + bytes(5) + bytes([n]),
        client_id=None, start=100, expiration=3700, cltt=100, potential_expiration=5500,
        host_name=f"h{n}", flags=LeaseFlag.NONE, relay_info=b"",
    )
    base.update(kw)
    return Lease(**base)


def test_pack_roundtrip_every_field():
    l = lease(7, client_id=b"\xffduid", flags=LeaseFlag.BOOTP | LeaseFlag.RESERVED, relay_info=b"\x01\x02ab",
              expiration=Lease.INFINITE, host_name="ünï", partner_time=1234)
    assert Lease.unpack(l.pack()) == l
    e = LeaseEvent(5, l.address, LeaseState.RELEASED, client_key(None, l.hw), 9, "release")
    assert LeaseEvent.unpack(e.pack()) == e


def test_commit_then_load(store):
    store.commit([lease(2), lease(1)])
    store.commit([lease(1, state=LeaseState.RELEASED)])
    loaded = list(store.load())
    assert [l.address for l in loaded] == [0x0A010001, 0x0A010002]
    assert loaded[0].state is LeaseState.RELEASED
    assert store.lease_count() == 2


def test_events_are_ordered_and_bounded(store):
    for i in range(8):
        store.commit([], [LeaseEvent(i, 1, LeaseState.LEASED, b"k", 0, "ack")])
    evs = store.events()
    assert [e.time for _, e in evs] == [3, 4, 5, 6, 7]
    seqs = [s for s, _ in evs]
    assert store.events(after=seqs[1]) == evs[2:]


def test_state_values(store):
    assert store.get_state("x") is None
    store.commit([], [], {"x": b"1", "y": b"2"})
    assert store.get_state("x") == b"1" and store.get_state("y") == b"2"
    store.commit([], [], {"q/1": b"a", "q/2": b"b", "r/1": b"c", "x": None})
    assert store.get_state("x") is None
    assert store.state_items("q/") == [("q/1", b"a"), ("q/2", b"b")]


def test_lmdb_client_index(tmp_path):
    s = LmdbLeaseStore(str(tmp_path / "db"), map_size=1 << 24)
    a, b = lease(1), lease(2)
    s.commit([a, b])
    assert s.addresses_of(a.key) == [a.address]
    s.commit([lease(1, hw=b"\x01" + bytes(6))])  # re-bound to another client
    assert s.addresses_of(a.key) == []
    assert s.addresses_of(client_key(None, b"\x01" + bytes(6))) == [a.address]
    s.close()
    # Reopened, the index survives.
    s = LmdbLeaseStore(str(tmp_path / "db"), map_size=1 << 24)
    list(s.load())
    assert s.addresses_of(b.key) == [b.address]
    s.close()


def test_lmdb_survives_kill_9(tmp_path):
    """A commit that returned is on disk even when the process dies at once."""
    path = str(tmp_path / "db")
    code = (
        "import os, sys\n"
        "from cnrd.leases.lmdb_store import LmdbLeaseStore\n"
        "from tests.leases.test_store_contract import lease\n"
        f"s = LmdbLeaseStore({path!r}, map_size=1 << 24)\n"
        "for i in range(50): s.commit([lease(i)])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=os.getcwd())
    assert p.returncode == -9
    s = LmdbLeaseStore(path, map_size=1 << 24)
    assert len(list(s.load())) == 50
    s.close()


def test_lmdb_unwritable_dir_is_a_store_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError):
        LmdbLeaseStore(str(f / "db"))


def test_memory_store_refuses_after_close():
    s = MemoryLeaseStore()
    s.close()
    with pytest.raises(StoreError):
        s.commit([lease(1)])
