"""Which build of cnrd is under test: mypyc-compiled modules or plain Python.

setup.py compiles the modules listed in pyproject.toml's ``[tool.cnrd.mypyc]``
where a C compiler exists and installs plain Python elsewhere.  scripts/test
runs the suite on both and says which one it expects in ``CNRD_EXPECT_BUILD``
(``compiled`` or ``pure``): a build that silently fell back to Python, or a
"pure" run that still loads extension modules, fails here.  Without the
variable, a compiled build must still be whole and built from the current
sources (a module edited after the build would otherwise be shadowed by its
stale extension module).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECT = os.environ.get("CNRD_EXPECT_BUILD", "")
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _listed() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cnrd"]["mypyc"]["modules"])


def _is_compiled(module: str) -> bool:
    path = importlib.import_module(module).__file__
    assert path is not None, module
    if path.endswith(EXTENSION_SUFFIXES):
        return True
    assert path.endswith(".py"), f"{module} loaded from {path}"
    return False


def test_the_listed_modules_exist_as_python_sources():
    listed = _listed()
    assert listed and len(set(listed)) == len(listed)
    for module in listed:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_build_is_the_one_expected():
    assert EXPECT in ("", "compiled", "pure"), f"CNRD_EXPECT_BUILD={EXPECT!r}: compiled or pure"
    compiled = {m: _is_compiled(m) for m in _listed()}
    if EXPECT == "compiled":
        assert all(compiled.values()), f"expected compiled, plain Python: {[m for m, c in compiled.items() if not c]}"
    elif EXPECT == "pure":
        assert not any(compiled.values()), f"expected plain Python, compiled: {[m for m, c in compiled.items() if c]}"
    else:
        # One build or the other, never a mixture of two builds.
        assert len(set(compiled.values())) == 1, compiled


def test_a_compiled_build_is_built_from_the_current_sources():
    listed = _listed()
    if not any(_is_compiled(m) for m in listed):
        pytest.skip("plain Python: nothing compiled to be stale")
    package = Path(importlib.import_module("cnrd").__file__ or "").parent
    manifest = json.loads((package / "_compiled.json").read_text())
    assert manifest["compiler"] == "mypyc"
    assert sorted(manifest["modules"]) == sorted(listed), "pyproject.toml's list changed since the build"
    stale = [m for m in listed
             if hashlib.sha256((package.parent / (m.replace(".", "/") + ".py")).read_bytes()).hexdigest()
             != manifest["modules"][m]]
    assert not stale, f"edited since the build (re-run scripts/setup or pip install -e .): {stale}"


@pytest.mark.parametrize("why,env", [
    ("CNRD_PURE=1", {"CNRD_PURE": "1"}),
    ("no C compiler", {"CC": "/bin/false", "LDSHARED": "/bin/false"}),
])
def test_the_wheel_falls_back_to_plain_python(tmp_path, why, env):
    """Without a compiler, or when asked, the build succeeds and the wheel holds the .py files and no extension."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "results", "__pycache__", "*.egg-info", ".hypothesis", ".mypy_cache",
        "bench", "tests", "*.so", "_compiled.json"))
    cp = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(src)],
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt"), **env})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "installing plain Python" in cp.stderr, why
    (wheel,) = tmp_path.glob("cnrd-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert not [n for n in names if n.endswith(".so")]
    assert {m.replace(".", "/") + ".py" for m in _listed()} <= names
    assert "cnrd/_compiled.json" not in names
