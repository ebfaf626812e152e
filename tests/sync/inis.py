"""Helpers: INI text from section values, and a valid pair of configurations to vary."""

from __future__ import annotations

from cnrd.sync import Values


def ini(values: Values, comments: bool = False) -> str:
    """The INI text of ``values``; with ``comments``, a comment above each section and inside it."""
    out = []
    for (kind, name), keys in values.items():
        header = kind if name is None else f"{kind} {name}"
        if comments:
            out.append(f"# about {header}")
        out.append(f"[{header}]")
        if comments:
            out.append(f"# inside {header}")
        out.extend(f"{k} = {v}" for k, v in keys.items())
        out.append("")
    return "\n".join(out)


def node(name: str, address: str) -> Values:
    """A node of pair ``p`` (scope lan) with another pair ``q`` (scope qs) and a scope of its own (local)."""
    return {
        ("server", None): {"name": name, "interfaces": f"eth-{name}", "data-dir": f"/var/lib/{name}",
                           "server-identifier": address, "trap-webhook": f"http://{address}:9/traps"},
        ("api", None): {"listen": f"{address}:8067", "token-file": f"/etc/{name}-token"},
        ("policy", "default"): {"lease-time": "1h"},
        ("scope", "lan"): {"subnet": "10.1.0.0/24", "ranges": "10.1.0.100-10.1.0.199"},
        ("scope", "local"): {"subnet": "10.3.0.0/24", "ranges": "10.3.0.10-10.3.0.20"},
        ("scope", "qs"): {"subnet": "10.4.0.0/24", "ranges": "10.4.0.10-10.4.0.20"},
        ("failover-pair", "p"): {"main": "10.98.0.1", "backup": "10.98.0.2", "scopes": "lan"},
        ("failover-pair", "q"): {"main": "10.97.0.1", "backup": "10.98.0.2", "scopes": "qs"},
    }
