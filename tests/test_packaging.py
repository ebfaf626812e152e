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


# -- PEP 621 metadata, license, changelog, pinned versions, the wheel's files, the alert rules -----
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
import zipfile  # noqa: E402

import pytest  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

from cnrd import __version__  # noqa: E402


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_pep621_metadata_and_the_license_file_agree():
    project = _project()
    assert project["name"] == "cnrd" and "version" in project["dynamic"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    # setup.cfg no longer declares what [project] does (setuptools would ignore it, with a warning).
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "metadata" not in cfg and "install_requires" not in cfg["options"]
    assert "options.entry_points" not in cfg


def test_console_scripts_point_at_functions_that_exist():
    import importlib

    scripts = _project()["scripts"]
    assert {"cnrd-check", "cnrctl", "cnrd-import"} <= set(scripts)
    for name, target in scripts.items():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_the_changelog_has_this_version():
    assert f"## [{__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_constraints_pin_every_dependency_and_ci_and_the_image_use_them():
    pins = _pins()
    project = _project()
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} excludes the pinned {pins[name]}"
    # twisted[tls]'s extras are pinned too.
    assert {"pyopenssl", "service-identity", "idna"} <= set(pins)
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "-c constraints.txt -e '.[test]'" in setup and "PIP_CONSTRAINT=" in setup
    docker = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml constraints.txt" in docker
    assert docker.count("-c constraints.txt") >= 2  # the build tools and the dependencies' wheels


def test_the_wheel_carries_the_example_configs_unit_and_alert_rules(tmp_path):
    # Built from a copy: setuptools builds in the source tree (build/), which
    # another build running at the same time would share.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "results", "__pycache__",
                                                            "*.egg-info", ".hypothesis", "bench", "tests", "*.so",
                                                            "_compiled.json"))
    # The files beside the code do not depend on compiling (tests/test_compiled.py covers that).
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "CNRD_PURE": "1"}
    cp = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
                        capture_output=True, text=True, timeout=300, env=env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    (wheel,) = tmp_path.glob("cnrd-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(f"cnrd-{__version__}.dist-info/entry_points.txt").decode()
        metadata = z.read(f"cnrd-{__version__}.dist-info/METADATA").decode()
    data = f"cnrd-{__version__}.data/data/share/"
    for ini in (ROOT / "etc").glob("*.ini"):
        assert f"{data}cnrd/etc/{ini.name}" in names
    assert f"{data}cnrd/systemd/cnrd.service" in names
    assert f"{data}cnrd/prometheus/alerts.yaml" in names
    assert "twisted/plugins/cnrd_plugin.py" in names and "cnrd/app/notify.py" in names
    assert "cnrd-import = cnrd.migrate.cli:main" in entry_points
    assert re.search(r"^License-Expression: MIT$", metadata, re.M)


def test_the_build_compiles_with_mypyc_and_the_image_is_the_compiled_build():
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    mypy = [Requirement(r) for r in build["requires"] if canonicalize_name(Requirement(r).name) == "mypy"]
    assert mypy and mypy[0].specifier.contains(_pins()["mypy"]), "setup.py compiles with mypyc, from mypy"
    docker = (ROOT / "Dockerfile").read_text()
    assert "COPY setup.py " in docker
    build_stage = docker.split("AS build", 1)[1].split("\nFROM ", 1)[0]
    assert "gcc" in build_stage and "python3-dev" in build_stage and "setuptools wheel mypy" in build_stage
    assert "not compiled" in build_stage  # the build fails if setup.py fell back to plain Python


ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"


@pytest.mark.skipif(shutil.which("promtool") is None and os.environ.get("CI") != "true",
                    reason="promtool (Debian package prometheus, scripts/setup) is not installed")
def test_promtool_accepts_the_alert_rules():
    cp = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "SUCCESS: 8 rules found" in cp.stdout


def test_the_alert_rules_use_metrics_cnrd_exports():
    from tests.test_metrics import pair, scrape

    main, _, link = pair()
    link.advance(5)
    exported = set(scrape(main.dhcp))
    import yaml

    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    used = {m for r in rules for m in re.findall(r"\bcnrd_[a-z_]+", r["expr"])}
    assert {"cnrd_failover_communication_ok", "cnrd_lease_commit_seconds_bucket"} <= used
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    # The state and scope labels the rules match on exist.
    text = ALERTS.read_text()
    assert 'side="local", state="NORMAL"' in text
    assert any("side" in dict(k) and dict(k).get("side") == "local" for k in scrape(main.dhcp)["cnrd_failover_state"])
