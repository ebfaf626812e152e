"""Integration tests: real processes in network namespaces (see lab.py).

They need root and the packages scripts/setup installs. Where those are
missing they are skipped with the reason, except under CI (CI=true), where a
missing requirement fails every integration test loudly instead.
All tests under this directory get the ``integration`` marker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.lab import Lab, missing_requirements

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI") == "true"
MISSING = missing_requirements()
MISSING_REASON = (
    "integration tests need root and the packages scripts/setup installs; missing: "
    + ", ".join(MISSING)
)


def _is_ours(item: pytest.Item) -> bool:
    try:
        Path(item.path).resolve().relative_to(HERE)
    except ValueError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # this hook sees the whole session's items: touch only ours
    skip = pytest.mark.skip(reason=MISSING_REASON) if MISSING and not IN_CI else None
    for item in items:
        if _is_ours(item):
            item.add_marker(pytest.mark.integration)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _integration_requirements() -> None:
    if MISSING:  # only reached under CI: there we never skip
        pytest.fail(MISSING_REASON + " (CI=true: not skipping)", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_lab_rep_{rep.when}", rep)


@pytest.fixture
def lab(request: pytest.FixtureRequest):
    """A fresh :class:`Lab`, always closed after the test; on failure its
    process logs and addresses are printed (in the teardown section)."""
    lab = Lab()
    try:
        yield lab
    finally:
        rep = getattr(request.node, "_lab_rep_call", None)
        if rep is not None and rep.failed:
            try:
                print(lab.describe())
            except Exception as e:  # never let diagnostics break cleanup
                print(f"lab.describe() failed: {e!r}")
        lab.close()
