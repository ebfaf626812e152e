"""The README's demo command works (its lab part; scripts/setup is run by scripts/test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_once_serves_a_client():
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--once"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "got 10.1.0." in p.stdout
    assert "lease store: 10.1.0." in p.stdout
