"""mypy over cnrd/, strict, as configured in pyproject.toml ([tool.mypy]).

Part of the suite so that CI, ``scripts/test`` and a developer's run all
type-check the same code the same way; a type error fails like any test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_over_cnrd():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--config-file", "pyproject.toml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "mypy found problems:\n" + proc.stdout + proc.stderr
    # It checked something: the configured files are cnrd/, and that has modules.
    assert "files = [\"cnrd\"]" in (ROOT / "pyproject.toml").read_text()
