"""``twistd cnrd`` refuses a bad configuration with one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TWISTD = str(Path(sys.executable).with_name("twistd"))

GOOD = (REPO / "etc" / "standalone.ini").read_text()


def run_twistd(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "bad.ini"
    cfg.write_text(text)
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "cnrd", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    "change, section, key",
    [
        (("ranges = 10.1.0.100-10.1.0.199", "ranges = 10.1.0.100-10.1.1.199"), "[scope lan]", "ranges"),
        (("lease-time = 3600", "lease-time = 1x"), "[policy default]", "lease-time"),
        (("subnet = 10.1.0.0/24", "subnet = 10.1.0.0/33"), "[scope lan]", "subnet"),
        (("max-dhcp-requests = 500", "max-dhcp-requests = 500\nbogus-key = 1"), "[server]", "bogus-key"),
    ],
)
def test_bad_config_exits_with_one_line(tmp_path, change, section, key):
    p = run_twistd(tmp_path, GOOD.replace(*change))
    assert p.returncode != 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert "bad.ini" in lines[0] and section in lines[0] and key in lines[0]
    assert "Traceback" not in p.stderr + p.stdout


def test_missing_interface_is_a_config_error(tmp_path):
    text = GOOD.replace("interfaces = eth1", "interfaces = nosuchif0").replace(
        "/var/lib/cnrd/standalone", str(tmp_path / "db"))
    p = run_twistd(tmp_path, text)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0
    assert "[server] interfaces" in p.stderr and "nosuchif0" in p.stderr


def test_cnrd_check_accepts_shipped_configs():
    for name in ("standalone.ini", "main.ini", "backup.ini"):
        p = subprocess.run([str(Path(sys.executable).with_name("cnrd-check")), str(REPO / "etc" / name)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
