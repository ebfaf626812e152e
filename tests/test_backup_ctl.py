"""cnrctl backup, restore and leases export: parsing, the offline restore on real files, the download paths."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any, BinaryIO

import pytest

from cnrd.ctl.cli import Runner, parse_args
from cnrd.ctl.errors import ApiError, UsageError
from cnrd.leases import backup
from cnrd.leases.lmdb_store import LmdbLeaseStore
from tests.leases.test_store_contract import lease

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeClient:
    """Answers download() with fixed bytes and records what was asked."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.asked: list[tuple[str, dict[str, str] | None]] = []

    def download(self, path: str, out: BinaryIO, query: dict[str, str] | None = None) -> int:
        self.asked.append((path, query))
        out.write(self.body)
        return len(self.body)


def _run(client: Any, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    status = Runner(client, False, out).run(parse_args(argv))
    return status, out.getvalue()


def _store_copy(tmp_path, n: int = 3) -> str:
    s = LmdbLeaseStore(str(tmp_path / "src"), map_size=1 << 24)
    s.commit([lease(i) for i in range(1, n + 1)])
    path = str(tmp_path / "copy.mdb")
    with open(path, "wb") as f:
        backup.copy_store(s, f.fileno(), 1_800_000_000)
    s.close()
    return path


def test_parsing():
    a = parse_args(["backup", "/tmp/x.mdb", "--force"])
    assert (a.object, a.file, a.force) == ("backup", "/tmp/x.mdb", True)
    a = parse_args(["restore", "x.mdb", "--data-dir", "/var/lib/cnrd"])
    assert (a.object, a.file, a.data_dir) == ("restore", "x.mdb", "/var/lib/cnrd")
    a = parse_args(["leases", "export", "--format", "json", "--state", "leased"])
    assert (a.object, a.verb, a.format, a.state, a.output) == ("leases", "export", "json", "leased", None)
    assert parse_args(["leases", "export"]).format == "csv"
    with pytest.raises(UsageError):
        parse_args(["leases", "export", "--format", "xml"])
    with pytest.raises(UsageError):
        parse_args(["backup"])


def test_backup_writes_the_checked_copy_and_refuses_to_overwrite(tmp_path):
    with open(_store_copy(tmp_path), "rb") as f:
        body = f.read()
    dest = tmp_path / "b.mdb"
    status, out = _run(FakeClient(body), ["backup", str(dest)])
    assert status == 0 and dest.read_bytes() == body
    assert out == (f"backup: 3 lease records (3 leased), {len(body)} bytes, taken at 2027-01-15T08:00:00Z, "
                   f"in {dest}\n")
    with pytest.raises(UsageError, match="exists"):
        _run(FakeClient(body), ["backup", str(dest)])
    assert _run(FakeClient(body), ["backup", str(dest), "--force"])[0] == 0


def test_backup_that_is_not_a_store_copy_is_not_kept(tmp_path):
    dest = tmp_path / "b.mdb"
    with pytest.raises(ApiError, match="not an LMDB lease store copy"):
        _run(FakeClient(b"<html>proxy error</html>" * 100), ["backup", str(dest)])
    assert not dest.exists() and not (tmp_path / "b.mdb.part").exists()


def test_export_to_a_file_and_to_standard_output(tmp_path):
    client = FakeClient(b"address,hwaddr\n")
    status, out = _run(client, ["leases", "export", "--output", str(tmp_path / "l.csv")])
    assert status == 0 and out == "" and (tmp_path / "l.csv").read_bytes() == b"address,hwaddr\n"
    status, out = _run(client, ["leases", "export", "--format", "json", "--state", "leased"])
    assert status == 0 and out == "address,hwaddr\n"
    assert client.asked == [("/export/leases", {"format": "csv"}),
                            ("/export/leases", {"format": "json", "state": "leased"})]


def test_restore_offline_prints_the_failover_recover_guidance(tmp_path):
    copy = _store_copy(tmp_path, 4)
    data = tmp_path / "data"
    status, out = _run(None, ["restore", copy, "--data-dir", str(data)])
    assert status == 0
    assert out.startswith(f"restored 4 lease records (4 leased) from {copy} into {data}; ")
    assert "the copy was taken at 2027-01-15T08:00:00Z" in out
    assert "failover-recover = <that time, e.g. 2027-01-15T08:00:00Z>" in out
    assert "UPDREQALL" in out and "cnrctl dhcp unset failover-recover" in out
    restored = LmdbLeaseStore(str(data), map_size=1 << 24)
    try:
        assert restored.lease_count() == 4
    finally:
        restored.close()


def test_restore_refused_while_the_store_is_open(tmp_path):
    copy = _store_copy(tmp_path)
    data = str(tmp_path / "src")  # the store the copy came from, now opened by another process
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys; from cnrd.leases.lmdb_store import LmdbLeaseStore as S; s = S(sys.argv[1], map_size=1<<24);"
          " print('open', flush=True); sys.stdin.read()"), data],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(ApiError, match=f"restore refused: .*open in process {holder.pid}: stop cnrd"):
            _run(None, ["restore", copy, "--data-dir", data])
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert json.loads(subprocess.run([sys.executable, "-m", "cnrd.leases.backup", "info", copy], cwd=REPO,
                                     capture_output=True, text=True, check=True).stdout)["leases"] == 3
