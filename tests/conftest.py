"""Session-wide test hygiene."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def _collector_as_it_was():
    """Give the interpreter's garbage collector back as each test found it.

    A Runtime started in-process freezes the heap and turns off
    automatic full collections (cnrd/gcpolicy.py); many tests never stop
    theirs, and the rest of the session must not run under that policy.
    """
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()
