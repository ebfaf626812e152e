"""setup.cfg lists every package of cnrd: an unlisted one is missing from the wheel and the container image."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_cnrd_package_is_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cnrd").rglob("__init__.py")
               if "__pycache__" not in p.parts}
    assert on_disk, "found no package under cnrd/"
    assert on_disk <= listed, f"not in setup.cfg [options] packages: {sorted(on_disk - listed)}"
