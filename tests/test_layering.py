"""Pure modules stay pure: no reactor, no Twisted networking, no web framework.

The codec, the server core, the lease model, table and stores take time as
an argument; only adapters (cnrd/dhcp/net.py, cnrd/service.py, cnrd/tap.py)
may import twisted.internet and friends.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cnrd"
PURE = [
    "__init__.py",
    "config.py",
    "dhcp/errors.py",
    "dhcp/options.py",
    "dhcp/packet.py",
    "dhcp/server.py",
    "failover/wire.py",
    "failover/states.py",
    "failover/leasetime.py",
    "failover/peer.py",
    "leases/model.py",
    "leases/table.py",
    "leases/store.py",
    "leases/lmdb_store.py",
    "timespec.py",
]
# ``socket`` itself is allowed: the codec uses inet_aton/inet_ntoa, which touch no network.
FORBIDDEN = ("twisted.internet", "twisted.application", "twisted.web", "klein", "time", "datetime.now")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("name", PURE)
def test_pure_module_has_no_forbidden_import(name):
    bad = {m for m in imports(ROOT / name) for f in FORBIDDEN if m == f or m.startswith(f + ".")}
    assert not bad, f"cnrd/{name} imports {sorted(bad)}"
