"""Failover pair synchronization (CNR 7.2 "Synchronizing Failover Pairs"), the pure part.

* :mod:`cnrd.sync.table` -- Table 27-1 as cnrd applies it, and which keys
  belong to one node only;
* :mod:`cnrd.sync.planner` -- :func:`plan` (the change entries of an Update,
  Complete or Exact from one server's values to the other's), :func:`apply`
  (those changes written into the target's INI text) and :func:`shareable`.

Pure package: values in, changes and text out.
"""

from __future__ import annotations

from cnrd.sync.planner import (
    OPERATIONS,
    Change,
    Values,
    apply,
    apply_values,
    differing_objects,
    plan,
    shareable,
)
from cnrd.sync.table import NOT_APPLICABLE, PER_NODE, TABLE_27_1

__all__ = [
    "NOT_APPLICABLE",
    "OPERATIONS",
    "PER_NODE",
    "TABLE_27_1",
    "Change",
    "Values",
    "apply",
    "apply_values",
    "differing_objects",
    "plan",
    "shareable",
]
