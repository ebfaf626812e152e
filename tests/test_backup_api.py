"""The backup route (GET /api/v1/backup) through the real API: in-process runtime, real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib

import pytest

from cnrd.leases import backup
from cnrd.leases.journal import JournaledStore
from cnrd.leases.lmdb_store import LmdbLeaseStore
from cnrd.leases.model import LeaseState
from tests import adminkit
from tests.test_api import V1, serve  # noqa: F401 -- the fixture

pytestmark = pytest.mark.filterwarnings("ignore:Using readBody with a transport:DeprecationWarning")


async def test_backup_route_streams_a_copy_with_every_acked_lease(tmp_path, serve, monkeypatch):  # noqa: F811
    store = JournaledStore(str(tmp_path / "store"), map_size=1 << 24, apply_interval=3600)
    monkeypatch.setattr(adminkit, "RecordingStore", lambda: store)
    try:
        server = adminkit.Server(tmp_path, adminkit.STANDALONE)
        api = serve(server)
        acked = {server.lease(n) for n in range(12)}
        assert store.unapplied > 0  # the ACKed leases are in the journal only
        status, headers, body = await api.call("GET", V1 + "/backup")
        assert status == 200
        assert headers.getRawHeaders("content-type") == ["application/octet-stream"]
        assert headers.getRawHeaders("x-cnrd-backup-sha256") == [hashlib.sha256(body).hexdigest()]
        assert headers.getRawHeaders("x-cnrd-backup-taken-at") == [str(adminkit.T0)]
        path = tmp_path / "got.mdb"
        path.write_bytes(body)
        info = backup.read_copy(str(path))
        assert (info.leases, info.leased, info.taken_at) == (12, 12, adminkit.T0)
        data = tmp_path / "restored"
        backup.restore(str(path), str(data))
        restored = LmdbLeaseStore(str(data), map_size=1 << 24)
        try:
            assert {l.address for l in restored.load() if l.state is LeaseState.LEASED} == acked
        finally:
            restored.close()
    finally:
        store.close()


async def test_backup_route_of_a_store_without_a_file(tmp_path, serve):  # noqa: F811
    api = serve(adminkit.Server(tmp_path, adminkit.STANDALONE))
    status, _, got = await api.call("GET", V1 + "/backup")
    assert status == 501 and "cannot be copied" in got["error"]
    status, _, _ = await api.call("GET", V1 + "/backup", token=None)
    assert status == 401
