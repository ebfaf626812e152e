"""Build hook: compiles cnrd's pure cores with mypyc where it can, and installs plain Python where it cannot.

The modules compiled are ``[tool.cnrd.mypyc] modules`` of pyproject.toml
(those whose compiled form measured faster; docs/performance.md).  The ``.py``
files stay the one source of truth and are installed beside the extension
modules.  Nothing here may fail an install: with ``CNRD_PURE=1``, without
mypyc, without a working C compiler or Python headers, or when compiling
fails, the result is the same package in plain Python (with a warning).
A successful build writes ``cnrd/_compiled.json`` beside the modules: the
SHA-256 of each compiled source, so tests can tell a stale build from a
current one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
MANIFEST = "cnrd/_compiled.json"


def _warn(message: str) -> None:
    print(f"cnrd setup.py: {message}; installing plain Python", file=sys.stderr)


def _modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["cnrd"]["mypyc"]["modules"])


def _compiler_works() -> bool:
    """True when this interpreter's C compiler builds and links something that includes Python.h."""
    from setuptools._distutils import ccompiler
    from setuptools._distutils import sysconfig as dsysconfig

    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        return False
    compiler: Any = ccompiler.new_compiler()
    dsysconfig.customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "probe.c")
        source.write_text("#include <Python.h>\nint cnrd_probe(void) { return Py_IsInitialized(); }\n")
        try:
            objects = compiler.compile([str(source)], output_dir=tmp, include_dirs=[include])
            compiler.link_shared_object(objects, str(Path(tmp, "probe.so")))
        except Exception:  # CompileError, LinkError, a missing executable
            return False
    return True


def _extensions() -> list[Extension]:
    if os.environ.get("CNRD_PURE", "") not in ("", "0"):
        print("cnrd setup.py: CNRD_PURE is set; installing plain Python", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc (package mypy) is not importable")
        return []
    if not _compiler_works():
        _warn("no working C compiler with this Python's headers")
        return []
    # The type check runs without pyproject.toml's [tool.mypy] (its plugin is
    # not a build requirement); tests/test_typing.py runs the strict check.
    options = ["--config-file", os.devnull, "--python-version", "3.11"]
    try:
        return list(mypycify(options + [m.replace(".", "/") + ".py" for m in _modules()], opt_level="3",
                             target_dir="build/mypyc"))
    except (Exception, SystemExit) as e:  # mypyc reports type errors by exiting
        _warn(f"mypyc failed ({e!r})")
        return []


class BuildExt(build_ext):
    """build_ext that falls back to plain Python when compiling fails, and records what it compiled."""

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except (Exception, SystemExit) as e:  # distutils' CompileError, LinkError, PlatformError
            _warn(f"compiling failed ({e!r})")
            self._remove_outputs()
            return
        self._write_manifest()

    def _remove_outputs(self) -> None:
        # Half a build would be worse than none: a module's shim without the
        # shared library it calls fails on import.
        for ext in self.extensions:
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        sources = {m: hashlib.sha256((ROOT / (m.replace(".", "/") + ".py")).read_bytes()).hexdigest()
                   for m in _modules()}
        text = json.dumps({"compiler": "mypyc", "modules": sources}, indent=1, sort_keys=True) + "\n"
        targets = {ROOT / MANIFEST} if self.inplace else {Path(self.build_lib) / MANIFEST}
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
