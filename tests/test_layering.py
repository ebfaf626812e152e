"""The shape of the code, checked: pure cores, packages that import downward, no cycles.

Deny by default: every module under ``cnrd/`` is found by walking the tree,
and each must satisfy the rules below unless this file names it.  Imports
are read from the AST, so imports inside functions and under
``TYPE_CHECKING`` count like any other.

1. **Pure unless listed.**  A module not in :data:`ADAPTERS` imports no
   networking framework, no threads or processes and no wall clock, and
   calls no ``now()``/``today()``/``time()``: it takes ``now`` as an argument.
2. **Layers import downward.**  Each module belongs to the layer of its
   longest matching prefix in :data:`LAYERS` and may import only the layers
   :data:`MAY_IMPORT` gives it.  The lease layer knows nothing of
   configuration, DHCP or failover; the DHCP core and failover do not import
   each other (failover serves the DHCP core through a structural ``Gate``);
   ``cnrctl`` is a client and never imports the server.
3. **No import cycles** between cnrd modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cnrd"

#: Modules (or whole packages, by a trailing ".") that may do I/O, use
#: Twisted's networking or the clock: the adapters and the composition root.
ADAPTERS = (
    "cnrd.app.",  # composition root, the runtime, twistd glue
    "cnrd.admin.",  # the HTTP API, metrics, and the commands returning Deferreds
    "cnrd.ctl.",  # cnrctl: an HTTP client program
    "cnrd.dhcp.net",  # the UDP/AF_PACKET socket adapter
    "cnrd.dhcp.protocol",  # the request path on the reactor
    "cnrd.dhcp.bulk",  # bulk leasequery (RFC 6926): its TCP listener and connections
    "cnrd.failover.protocol",  # the TCP link
    "cnrd.failover.listen",  # the TCP listener shared by relationships
    "cnrd.leases.committer",  # group commits run by an injected runner, Deferred results
    "cnrd.leases.journal",  # the write-ahead journal: files, fsync, the applier process
    "cnrd.leases.applier",  # the applier process itself
    "cnrd.ops.logs",  # twisted.logger observers and files
    "cnrd.ops.webhook",  # HTTP POSTs of traps
    "cnrd.ops.gcpolicy",  # garbage-collector timers
    "cnrd.ldap.protocol",  # one LDAP connection on the reactor
    "cnrd.ldap.client",  # LDAP servers by preference: connecting, timers, TLS
    "cnrd.migrate.cli",  # cnrd-import: files, the clock (what has expired), the lease store
)

FORBIDDEN_IMPORTS = (
    "twisted.internet", "twisted.application", "twisted.web", "twisted.python.threadpool", "klein",
    "time", "threading", "subprocess", "asyncio", "urllib.request",
)
FORBIDDEN_CALLS = ("now", "utcnow", "today", "time", "monotonic")

#: Layer name -> module prefixes (longest match wins; "cnrd" alone means the package's __init__).
LAYERS = {
    "base": ("cnrd", "cnrd.text"),
    "leases": ("cnrd.leases",),
    "codec": ("cnrd.dhcp.options", "cnrd.dhcp.packet", "cnrd.dhcp.errors", "cnrd.failover.wire"),
    "config": ("cnrd.config",),
    "dhcp": ("cnrd.dhcp",),
    "failover": ("cnrd.failover",),
    "ops": ("cnrd.ops",),
    "sync": ("cnrd.sync",),
    "admin": ("cnrd.admin",),
    "ctl": ("cnrd.ctl",),
    "ldap": ("cnrd.ldap",),
    "migrate": ("cnrd.migrate",),
    "app": ("cnrd.app",),
}
# Log lines, traps and the GC policy serve every layer above the codecs.
_BELOW_CORE = {"base", "leases", "codec", "config", "ops"}
MAY_IMPORT = {
    "base": {"base"},
    "leases": {"base", "leases"},
    "codec": {"base", "codec"},
    "config": {"base", "leases", "codec", "config"},
    "dhcp": _BELOW_CORE | {"dhcp"},
    "failover": _BELOW_CORE | {"failover"},
    "ops": {"base", "codec", "ops"},
    # Synchronization plans from configuration values; the API and the
    # runtime use it.
    "sync": {"base", "codec", "config", "sync"},
    "admin": _BELOW_CORE | {"dhcp", "failover", "sync", "admin"},
    "ctl": {"base", "config", "ctl"},
    # An LDAP client: entries become config.ClientConfig; the DHCP core never sees LDAP.
    "ldap": {"base", "codec", "config", "ldap"},
    # The importer: dhcpd/Kea text -> leases and INI, checked by the config loader; an offline program.
    "migrate": {"base", "leases", "codec", "config", "migrate"},
    "app": set(LAYERS),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The cnrd module ``name`` refers to (a module, or a package's __init__), None outside cnrd."""
    if name != "cnrd" and not name.startswith("cnrd."):
        return None
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, source: str | None = None) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in module ``name`` (or ``source``), at any depth."""
    path = MODULES.get(name, PKG / "new.py")
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            yield base, node.lineno
            for alias in node.names:
                # "from cnrd.failover import wire" imports the module cnrd.failover.wire.
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}", node.lineno


def cnrd_imports(name: str) -> set[str]:
    out = set()
    for target, _ in imports(name):
        resolved = _resolve(target)
        if resolved is not None and resolved != name:
            out.add(resolved)
    return out


def layer_of(name: str) -> str:
    best, best_len = None, -1
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                if prefix == "cnrd" and name != "cnrd":
                    continue
                best, best_len = layer, len(prefix)
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best


def is_adapter(name: str) -> bool:
    return any((name == a[:-1] or name.startswith(a)) if a.endswith(".") else name == a for a in ADAPTERS)


def test_every_module_is_found():
    # The walk is the list: a new module is checked without anyone adding it.
    assert len(MODULES) > 40
    assert "cnrd.failover.session" in MODULES and "cnrd.app.runtime" in MODULES


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not is_adapter(n)))
def test_pure_module_imports_no_framework_thread_or_clock(name):
    bad = sorted({f"{m} (line {line})" for m, line in imports(name)
                  for f in FORBIDDEN_IMPORTS if m == f or m.startswith(f + ".")})
    assert not bad, f"{name} is pure but imports {bad}"
    tree = ast.parse(MODULES[name].read_text())
    calls = sorted(f"{ast.unparse(n.func)}() (line {n.lineno})" for n in ast.walk(tree)
                   if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                   and n.func.attr in FORBIDDEN_CALLS and not n.args
                   and isinstance(n.func.value, ast.Name) and n.func.value.id in ("datetime", "date", "time"))
    assert not calls, f"{name} is pure but reads the clock: {calls}"


def test_adapter_list_names_only_existing_modules():
    for a in ADAPTERS:
        if a.endswith("."):
            assert any(n.startswith(a) for n in MODULES), a
        else:
            assert a in MODULES, a


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_only_to_allowed_layers(name):
    mine = layer_of(name)
    bad = sorted(f"{m} ({layer_of(m)})" for m in cnrd_imports(name) if layer_of(m) not in MAY_IMPORT[mine])
    assert not bad, f"{name} ({mine}) may import only {sorted(MAY_IMPORT[mine])}, imports {bad}"


def test_no_import_cycles():
    graph = {name: cnrd_imports(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_rules_catch_what_they_claim():
    # The checker itself: imports inside a function, under TYPE_CHECKING and
    # relative ones are all seen, and resolved to cnrd modules.
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cnrd.app.runtime\n"
           "def f():\n    from twisted.internet import reactor\n    from . import table\n"
           "from cnrd.failover import wire\n")
    seen = {m for m, _ in imports("cnrd.leases.new", src)}
    assert {"cnrd.app.runtime", "twisted.internet", "cnrd.leases.table", "cnrd.failover.wire"} <= seen
    assert layer_of("cnrd.leases.table") == "leases" and layer_of("cnrd.dhcp.packet") == "codec"
    assert layer_of("cnrd") == "base" and layer_of("cnrd.failover.wire.codes") == "codec"
    assert "app" not in MAY_IMPORT["admin"] and "failover" not in MAY_IMPORT["dhcp"]
