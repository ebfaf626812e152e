"""What ``dhcp reload`` changes: a pure plan from the running configuration and the file's.

:func:`plan_reload` compares the two :class:`~cnrd.config.Config` values
section by section and returns the configuration to run with (the file's,
with the running value kept for every setting that needs a restart), the
changes applied, the ones that wait for a restart, and warnings.  The admin
command applies the plan through the runtime's ``reconfigure``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from cnrd.admin.values import PAIR_PENDING, AdminError, json_pending
from cnrd.config import Config, FailoverPairConfig
from cnrd.text import hw_text, int_to_ip

__all__ = ["ReloadPlan", "plan_reload", "hold_tls", "field_diff", "SERVER_RESTART", "PAIR_RESTART"]

# [server] settings fixed for the life of the process: sockets, the store,
# threads.  A reload reports them as restart-required and keeps the old value.
SERVER_RESTART = ("interfaces", "data_dir", "server_port", "client_port", "lease_db_size", "event_history",
                  "event_history_age", "commit_thread", "lease_journal", "log_max_size", "log_max_files")
# What identifies a failover relationship (and our role in it) or its
# sockets: changing it means a new failover session, so only at the next start.
PAIR_RESTART = ("main", "backup", "failover", "failover_main_server", "failover_backup_server", "port",
                "scopes")


def field_diff(header: str, old: Any, new: Any, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(field name, "[header] key") for every field that differs between two dataclasses."""
    skipped = set(skip)
    return [(f.name, f"[{header}] {f.name.replace('_', '-')}") for f in fields(old)
            if f.name not in skipped and getattr(old, f.name) != getattr(new, f.name)]


def _section_diff(kind: str, old: Mapping[Any, Any], new: Mapping[Any, Any],
                  name: Callable[[Any], str] = str) -> list[str]:
    """What a reload changes in one kind of named section."""
    out = [f"[{kind} {name(k)}] removed" for k in old if k not in new]
    for k, v in new.items():
        if k not in old:
            out.append(f"[{kind} {name(k)}] added")
        elif old[k] != v:
            out.extend(label for _, label in field_diff(f"{kind} {name(k)}", old[k], v))
    return out


@dataclass
class ReloadPlan:
    """The configuration to run with after a reload, and what to tell the operator."""

    running: Config
    applied: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: pair name -> {API key: JSON value}: role settings the file changed, waiting for a restart.
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)


def hold_tls(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with every setting that needs TLS at its running value, and those settings' labels.

    For a process that runs without TLS (cnrd.app.tls): they wait for the
    next start.  [api] is left alone: all of it waits for a restart anyway.
    """
    labels = [label for label in new.tls_settings() if not label.startswith("[api]")]
    if not labels:
        return new, []
    held: list[str] = []
    server = new.server
    if "[server] trap-webhook" in labels:
        server = replace(server, trap_webhook=old.server.trap_webhook)
        held.append("[server] trap-webhook")
    pairs = dict(new.failover_pairs)
    for name, pair in new.failover_pairs.items():
        running = old.failover_pairs.get(name)
        if running is None:
            continue  # a new pair waits for a restart as a whole
        keep = {f"{key}_api": getattr(running, f"{key}_api") for key in ("main", "backup")
                if f"[failover-pair {name}] {key}-api" in labels}
        if keep:
            pairs[name] = replace(pair, **keep)
            held += [f"[failover-pair {name}] {key.replace('_', '-')}" for key in keep]
    ldap = dict(new.ldap)
    for name in new.ldap:
        if f"[ldap {name}] use-ssl" in labels:
            held.append(f"[ldap {name}] use-ssl")
            if name in old.ldap:
                ldap[name] = old.ldap[name]
            else:
                del ldap[name]
    return replace(new, server=server, failover_pairs=pairs, ldap=ldap), [
        f"{label} (needs TLS, which this process did not load: nothing it started with used it)" for label in held]


def plan_reload(old: Config, new: Config, leased: Mapping[str, int], *, force: bool,
                tls: bool = True) -> ReloadPlan:
    """Plan running ``new`` in place of ``old``.

    ``leased`` counts leased addresses per scope: removing a scope that
    still holds some is refused (:class:`AdminError` 409) unless ``force``.
    ``tls``: False when the process runs without TLS, so that settings
    needing it wait for a restart (:func:`hold_tls`).
    """
    applied: list[str] = []
    restart: list[str] = []
    warnings: list[str] = []
    if not tls:
        new, held = hold_tls(old, new)
        restart += held

    keep: dict[str, Any] = {}
    for name, label in field_diff("server", old.server, new.server):
        if name in SERVER_RESTART:
            restart.append(label)
            keep[name] = getattr(old.server, name)
        else:
            applied.append(label)
    server = replace(new.server, **keep)
    if old.api != new.api:
        for name, label in field_diff("api", old.api, new.api):
            label = "[api] listen" if name in ("listen_host", "listen_port") else label
            if label not in restart:
                restart.append(label)

    for name in old.scopes:
        if name not in new.scopes and leased.get(name):
            if not force:
                raise AdminError(409, f"scope {name} holds {leased[name]} leased addresses; "
                                      "reload with force to remove it anyway")
            warnings.append(f"[scope {name}] removed with {leased[name]} leased addresses: "
                            "those clients cannot renew and get new addresses")

    pairs: dict[str, FailoverPairConfig] = {}
    for name, pair in old.failover_pairs.items():
        if name not in new.failover_pairs:
            restart.append(f"[failover-pair {name}] removed")
            pairs[name] = pair  # its session runs until the restart
            continue
        keep = {}
        for fname, label in field_diff(f"failover-pair {name}", pair, new.failover_pairs[name], ("name",)):
            if fname in PAIR_RESTART:
                restart.append(label)
                keep[fname] = getattr(pair, fname)
            else:
                applied.append(label)
        pairs[name] = replace(new.failover_pairs[name], **keep)
    for name in new.failover_pairs:
        if name not in old.failover_pairs:
            restart.append(f"[failover-pair {name}] added")

    applied += _section_diff("policy", old.policies, new.policies)
    applied += _section_diff("scope", old.scopes, new.scopes)
    applied += _section_diff("reservation", old.reservations, new.reservations, int_to_ip)
    applied += _section_diff("client", old.clients, new.clients, hw_text)
    applied += _section_diff("client-class", old.client_classes, new.client_classes)
    applied += _section_diff("ldap", old.ldap, new.ldap)
    # A password is kept out of comparisons; a new one in the same file still counts.
    applied += [f"[ldap {name}] password-file (the password)" for name, s in new.ldap.items()
                if name in old.ldap and old.ldap[name] == s and old.ldap[name].password != s.password]

    # What waits for a restart is now what the file says and the running pair does not.
    pending: dict[str, dict[str, Any]] = {}
    for name, pair in old.failover_pairs.items():
        file_pair = new.failover_pairs.get(name)
        if file_pair is None:
            continue
        waiting = {key: json_pending(key, getattr(file_pair, key)) for key in PAIR_PENDING
                   if getattr(file_pair, key) != getattr(pair, key)}
        if waiting:
            pending[name] = waiting
    running = replace(new, server=server, api=old.api, failover_pairs=pairs)
    return ReloadPlan(running, applied, restart, warnings, pending)
