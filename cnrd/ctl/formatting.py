"""cnrctl's output for people: aligned tables and ``key  value`` lines from the API's JSON."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

__all__ = ["value_text", "format_table", "format_fields", "format_related_servers", "format_status",
           "format_reload", "format_pair", "format_sync", "RELATED_FIELDS", "SYNC_COLUMNS", "PAIR_COLUMNS", "LEASE_COLUMNS", "SCOPE_COLUMNS",
           "HISTORY_COLUMNS", "format_history", "format_holder", "format_lease_command"]


def value_text(value: Any) -> str:
    """One JSON value as a table cell: '-' for none, lists and objects joined by commas."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(value_text(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items()) if value else "-"
    return str(value)


def _age(iso: Any, now: float | None) -> str:
    """' (3m12s ago)' for an ISO time, '' when there is none or it does not parse."""
    if not isinstance(iso, str) or now is None:
        return ""
    try:
        when = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    return f" ({_duration(now - when)} ago)" if now >= when else ""


def _duration(seconds: float) -> str:
    s = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out + f"{s}s" if s or not out else out


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Aligned columns: ``columns`` is (heading, key) pairs; every row a dict."""
    cells = [[heading for heading, _ in columns]]
    cells += [[value_text(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def format_fields(obj: dict[str, Any], keys: Sequence[str] | None = None, indent: str = "",
                  ages: Sequence[str] = (), now: float | None = None) -> str:
    """``key  value`` lines, values aligned; ``ages`` names time fields that also get '(… ago)'."""
    keys = list(obj) if keys is None else [k for k in keys if k in obj]
    if not keys:
        return ""
    width = max(len(k) for k in keys)
    return "".join(f"{indent}{k.ljust(width)}  {value_text(obj[k])}{_age(obj[k], now) if k in ages else ''}\n"
                   for k in keys)


RELATED_FIELDS = ("role", "our-address", "partner-address", "state", "partner-state", "communication",
                  "comm-interrupted-since", "last-contact", "state-since", "mclt", "unacked-updates",
                  "clock-skew-seconds")
_RELATED_TIMES = ("comm-interrupted-since", "last-contact", "state-since")


def format_related_servers(answer: dict[str, Any], now: float | None = None) -> str:
    """``dhcp getRelatedServers`` for people: one block per failover pair, as nrcmd lists related servers."""
    servers = answer.get("related-servers") or []
    if not servers:
        return "no related servers (no failover pair is running)\n"
    blocks = []
    for r in servers:
        head = f"failover-pair {r.get('pair')}: partner {r.get('partner-address')}\n"
        keys = list(RELATED_FIELDS) + [k for k in r if k not in RELATED_FIELDS and k != "pair"]
        blocks.append(head + format_fields(r, keys, indent="  ", ages=_RELATED_TIMES, now=now))
    return "\n".join(blocks)


PAIR_COLUMNS = (("NAME", "name"), ("MAIN", "main"), ("BACKUP", "backup"), ("FAILOVER", "failover"),
                ("MCLT", "mclt"), ("BACKUP-PCT", "backup-pct"), ("LOAD-BALANCING", "load-balancing"),
                ("SCOPES", "scopes"))
LEASE_COLUMNS = (("ADDRESS", "address"), ("STATE", "state"), ("SCOPE", "scope"),
                 ("HARDWARE-ADDRESS", "hardware-address"), ("HOST-NAME", "host-name"),
                 ("EXPIRES", "expires"), ("OWNER", "owner"))
SCOPE_COLUMNS = (("NAME", "name"), ("SUBNET", "subnet"), ("TOTAL", "total"), ("LEASED", "leased"),
                 ("AVAILABLE", "available"), ("AVAIL-MAIN", "available-main"),
                 ("AVAIL-BACKUP", "available-backup"), ("UTILIZATION-%", "utilization-percent"))


def format_status(s: dict[str, Any]) -> str:
    """``dhcp show``: the server's status and counters."""
    head = dict(s)
    head.pop("counters", None)
    if isinstance(head.get("uptime-seconds"), int):
        head["uptime-seconds"] = f"{head['uptime-seconds']} ({_duration(head['uptime-seconds'])})"
    out = format_fields(head)
    counters = s.get("counters") or {}
    rows = []
    for group in ("received", "sent", "drops"):
        for name, n in sorted((counters.get(group) or {}).items()):
            rows.append({"group": group, "name": name, "count": n})
    if rows:
        out += "\n" + format_table(rows, (("COUNTER", "group"), ("TYPE/REASON", "name"), ("COUNT", "count")))
    return out


def format_reload(r: dict[str, Any]) -> str:
    out = "reloaded\n"
    for key, title in (("applied", "applied"), ("restart-required", "needs a restart (running value kept)"),
                       ("warnings", "warning")):
        items = r.get(key) or []
        if items:
            out += f"{title}:\n" + "".join(f"  {item}\n" for item in items)
    if not (r.get("applied") or r.get("restart-required")):
        out += "no changes\n"
    return out


def format_pair(p: dict[str, Any]) -> str:
    body = dict(p)
    pending = body.pop("pending", None)
    restart = body.pop("restart-required", None)
    out = format_fields(body)
    if pending:
        out += "pending (at the next start):\n" + format_fields(pending, indent="  ")
    if restart:
        out += f"restart required for: {', '.join(restart)}\n"
    return out


SYNC_COLUMNS = (("CLASS", "class"), ("NAME", "name"), ("PROPERTY", "property"), ("FUNCTION", "function"),
                ("OLD", "old"), ("NEW", "new"))


def _sync_cell(value: Any) -> Any:
    """A change's value as one table cell: a whole object's keys on one line, an empty value visible."""
    if isinstance(value, str):
        return "; ".join(value.split("\n")) if value else '""'
    return value


def format_sync(r: dict[str, Any]) -> str:
    """``failover-pair NAME sync``: the changes as a table, then what a Run applied."""
    changes = r.get("changes") or []
    mode = "run" if r.get("run") else "report"
    out = (f"failover-pair {r.get('pair')}: {r.get('operation')} {r.get('direction')} ({mode}), "
           f"source {r.get('source')}, target {r.get('target')}\n")
    if not changes:
        out += "no changes: the target already has what the source has\n"
    else:
        rows = [{**c, "name": c.get("name") or "-", "old": _sync_cell(c.get("old")), "new": _sync_cell(c.get("new"))}
                for c in changes]
        out += format_table(rows, SYNC_COLUMNS)
        out += f"{len(changes)} change{'s' if len(changes) != 1 else ''}"
        out += " made\n" if r.get("run") else " (report only: --run makes them)\n"
    if r.get("run"):
        for key, title in (("applied", "applied by the target's reload"),
                           ("restart-required", "needs a restart of the target (running value kept)"),
                           ("warnings", "warning")):
            items = r.get(key) or []
            if items:
                out += f"{title}:\n" + "".join(f"  {item}\n" for item in items)
    return out


# -- lease history and lease commands ------------------------------------------------
HISTORY_COLUMNS = (("TIME", "time"), ("STATE", "state"), ("EVENT", "event"), ("HARDWARE-ADDRESS", "hardware-address"),
                   ("CLIENT-ID", "client-id"), ("EXPIRES", "expires"), ("SOURCE", "source"), ("SERVER", "server"))


def format_history(events: Sequence[dict[str, Any]], with_address: bool) -> str:
    """``lease ADDR history`` / ``history``: one line per change, oldest first."""
    if not events:
        return "no history\n"
    columns = ((("ADDRESS", "address"),) if with_address else ()) + HISTORY_COLUMNS
    return format_table(events, columns)


def format_holder(r: dict[str, Any]) -> str:
    """``lease ADDR history --at T``: who held the address then, and the change that made it so."""
    holder = r.get("holder")
    if holder:
        who = holder.get("hardware-address") or f"client-id {holder.get('client-id')}"
        head = f"{r.get('address')} at {r.get('at')}: held by {who} (server {holder.get('server')})\n"
    else:
        head = f"{r.get('address')} at {r.get('at')}: held by no client\n"
    events = r.get("history") or []
    return head + (format_table(events, HISTORY_COLUMNS) if events else "(no recorded change before that time)\n")


def format_lease_command(verb: str, r: dict[str, Any]) -> str:
    """``lease ADDR force-available|delete``: what the address was and is now."""
    out = f"{r.get('address')}: {verb} done, {r.get('was')} -> {r.get('state')}\n"
    if r.get("failover") and r.get("state") == "reset":
        out += "(failover: available once the partner acknowledges the update)\n"
    return out
