"""Synchronizing a failover pair's configuration: Report and Run over the admin API.

CNR 7.2's "Synchronizing Failover Pairs", adapted to one INI file per
server.  :class:`PairSync` serves three routes of a pair:

* ``sync-view``: this server's role, name and shareable configuration
  (:func:`cnrd.sync.planner.shareable` of its INI file), for the partner;
* ``sync``: the operator's command, on either server.  It fetches the
  partner's sync-view, takes source and target from ``direction`` (the
  main's file is the source of main-to-backup), plans ``operation`` with
  :func:`cnrd.sync.planner.plan` and answers with the changes (Report).
  With ``run`` the target applies them: this server itself, or the partner
  through its ``sync-apply``;
* ``sync-apply``: the target's side of a Run.  It applies the given changes
  only if each change's ``old`` value is still what its file says (409
  otherwise: a stale Report never overwrites later edits), loads the result
  as a reload would (422 with the loader's line when it does not load:
  nothing written), writes the file atomically keeping its comments, then
  reloads through :meth:`cnrd.admin.commands.Admin.reload` and answers with
  what was applied and what waits for a restart.

A refusal anywhere leaves both files as they were; the partner's refusal
comes back with its status and reason (:class:`~cnrd.admin.partner.PartnerError`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from cnrd.admin.commands import Admin, _write_atomically
from cnrd.admin.partner import PartnerApi, PartnerError, Values, pair_api_urls, read_token, values_json, view_values
from cnrd.admin.values import AdminError, as_bool, body_object
from cnrd.config import ConfigError, FailoverPairConfig, loads
from cnrd.config.inifile import read_values, section_id
from cnrd.failover.states import Role
from cnrd.sync.planner import OPERATIONS, Change, apply, differing_objects, plan, shareable

log = Logger(namespace="cnrd.admin.sync")

__all__ = ["PairSync", "DIRECTIONS"]

DIRECTIONS = ("main-to-backup", "backup-to-main")

PartnerFactory = Callable[[Any, str, "str | None"], PartnerApi]


class PairSync:
    """The sync commands of every failover pair of one server (behind :class:`Admin`)."""

    def __init__(self, admin: Admin, reactor: Any, *, timeout: float = 10,
                 partner: PartnerFactory | None = None) -> None:
        self.admin = admin
        self.reactor = reactor
        self.timeout = timeout
        self._partner = partner or (lambda r, url, token: PartnerApi(r, url, token, timeout))

    # -- what this server is in the pair ---------------------------------------
    def _role(self, name: str) -> tuple[FailoverPairConfig, Role]:
        pair = self.admin._pair(name)
        session = next((s for s in self.admin.runtime.sessions if s.name == name), None)
        if session is None:
            raise AdminError(409, f"failover pair {name} is not running here (failover = false), "
                                  "so this server has no role in it to sync")
        return pair, session.role

    def _read_file(self) -> str:
        path = self.admin.config.path
        try:
            with open(path, encoding="utf-8-sig") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise AdminError(409, f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None

    def _own_values(self) -> Values:
        return shareable(read_values(self._read_file()))

    # -- routes ------------------------------------------------------------------
    def view(self, name: str) -> dict[str, Any]:
        """GET sync-view: this server's role in ``name``, its server name and shareable values."""
        _, role = self._role(name)
        return {"pair": name, "role": role.value, "server": self.admin.config.server.name,
                "values": values_json(self._own_values())}

    def sync(self, name: str, body: Any) -> defer.Deferred[dict[str, Any]]:
        """POST sync: Report (``run`` false) or Run of ``operation`` in ``direction``."""
        body = body_object(body, ("operation", "direction", "run"))
        operation = _choice(body, "operation", OPERATIONS, "update")
        direction = _choice(body, "direction", DIRECTIONS, "main-to-backup")
        run = as_bool(body["run"]) if "run" in body else False
        pair, role = self._role(name)
        partner = self._partner_api(pair, role)
        # Read before asking the partner, so a file this server cannot read
        # refuses the command without a call out.
        own = self._own_values()
        return defer.ensureDeferred(self._sync(pair, role, partner, own, operation, direction, run))

    async def _sync(self, pair: FailoverPairConfig, role: Role, partner: PartnerApi, own: Values,
                    operation: str, direction: str, run: bool) -> dict[str, Any]:
        name = pair.name
        try:
            view = await partner.sync_view(name)
            theirs = view_values(view, f"partner {partner.base_url}")
        except PartnerError as e:
            raise AdminError(e.status, e.reason) from None
        partner_role = view.get("role")
        ours = role.value
        if partner_role == ours or partner_role not in ("main", "backup"):
            raise AdminError(409, f"partner {partner.base_url} says it is the {partner_role} of "
                                  f"failover pair {name}; this server is the {ours}")
        partner_name = str(view.get("server"))
        me = self.admin.config.server.name
        source_is_me = (direction == "main-to-backup") == (role is Role.MAIN)
        source, target = (own, theirs) if source_is_me else (theirs, own)
        try:
            changes = plan(source, target, pair=name, operation=operation)
        except ValueError as e:
            source_name = me if source_is_me else partner_name
            raise AdminError(409, f"cannot plan {operation} {direction}: {source_name}: {e}") from None
        out: dict[str, Any] = {
            "pair": name, "operation": operation, "direction": direction,
            "source": me if source_is_me else partner_name,
            "target": partner_name if source_is_me else me,
            "changes": [c.as_json() for c in changes],
            "objects": differing_objects(changes),
            "run": run, "applied": [], "restart-required": [], "warnings": [],
        }
        if not run:
            return out
        if not changes:
            out["warnings"] = ["nothing to change: the target already matches"]
            return out
        request = {"operation": operation, "direction": direction, "changes": out["changes"]}
        if source_is_me:
            try:
                result = await partner.sync_apply(name, request)
            except PartnerError as e:
                raise AdminError(e.status, e.reason) from None
        else:
            result = await self.apply(name, request)
        for key in ("applied", "restart-required", "warnings"):
            value = result.get(key)
            out[key] = list(value) if isinstance(value, list) else []
        log.info("failover pair {pair}: {op} {direction} run, {n} changes applied to {target}",
                 pair=name, op=operation, direction=direction, n=len(changes), target=out["target"])
        if source_is_me:
            # The partner compares again after its reload; this side would
            # otherwise show the old mismatch until its next minute.
            self.admin.config_recheck(name)
        return out

    def apply(self, name: str, body: Any) -> Deferred[dict[str, Any]]:
        """POST sync-apply: apply a Report's changes to this server's file, if it is still as reported.

        The reload after the write binds with any LDAP settings it changes
        (as ``dhcp reload`` does); a refusal puts the file back.
        """
        body = body_object(body, ("operation", "direction", "changes"))
        _choice(body, "operation", OPERATIONS, "update")
        direction = _choice(body, "direction", DIRECTIONS, "main-to-backup")
        _, role = self._role(name)
        target_role = Role.BACKUP if direction == "main-to-backup" else Role.MAIN
        if role is not target_role:
            raise AdminError(409, f"this server is the {role.value} of failover pair {name}, "
                                  f"the source of {direction}, not its target")
        changes = _changes(body.get("changes"))
        node = _per_node(changes)
        if node:
            raise AdminError(400, f"{node} belongs to this server alone; no sync changes it")
        path = self.admin.config.path
        text = self._read_file()
        stale = _stale(read_values(text), changes)
        if stale:
            raise AdminError(409, f"target changed since the report: {stale}")
        try:
            new_text = apply(text, changes)
        except (ValueError, TypeError) as e:
            raise AdminError(422, f"cannot apply the changes to {path}: {e}") from None
        try:
            loads(new_text, path)
        except ConfigError as e:
            raise AdminError(422, str(e)) from None
        self._write(path, new_text)

        def refused(f: Failure) -> Failure:
            # The reload refused what was written (a scope removed that
            # still holds leases, LDAP credentials rejected): put the file
            # back so nothing changed.
            self._write(path, text)
            return f

        def applied(result: dict[str, Any]) -> dict[str, Any]:
            log.info("failover pair {pair}: {n} synchronized changes written to {path}",
                     pair=name, n=len(changes), path=path)
            return {"pair": name, "server": self.admin.config.server.name, "applied": result["applied"],
                    "restart-required": result["restart-required"], "warnings": result["warnings"]}

        return self.admin.reload_checked(None).addCallbacks(applied, refused)

    # -- helpers -------------------------------------------------------------------
    def _partner_api(self, pair: FailoverPairConfig, role: Role) -> PartnerApi:
        urls = pair_api_urls(pair)
        if urls is None:
            raise AdminError(409, f"failover pair {pair.name}: sync is not configured "
                                  "(set main-api, backup-api and api-token-file in its section)")
        try:
            token = read_token(self.admin.config, pair)
        except ConfigError as e:
            raise AdminError(409, str(e)) from None
        return self._partner(self.reactor, urls[1] if role is Role.MAIN else urls[0], token)

    def _write(self, path: str, text: str) -> None:
        try:
            _write_atomically(path, text)
        except OSError as e:
            raise AdminError(409, f"cannot write {path}: {e.strerror or e}") from None


def _choice(body: dict[str, Any], key: str, allowed: Sequence[str], default: str) -> str:
    value = body.get(key, default)
    if value not in allowed:
        raise AdminError(400, f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _changes(items: Any) -> list[Change]:
    """The changes of a sync-apply body; AdminError 400 for anything malformed."""
    if not isinstance(items, list):
        raise AdminError(400, "changes must be a list of change objects")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise AdminError(400, f"a change must be an object, not {item!r}")
        try:
            out.append(Change.from_json(item))
        except (KeyError, TypeError, ValueError) as e:
            raise AdminError(400, f"malformed change {item!r}: {e}") from None
    return out


def _per_node(changes: Sequence[Change]) -> str | None:
    """The first per-node section or key ``changes`` would touch (described), or None.

    The planner never makes such a change; a sync-apply body is checked
    anyway, so no caller can rewrite this server's identity through it.
    """
    for c in changes:
        sid = section_id(c.header)
        keys = [c.prop.lower()] if c.prop is not None else list(read_values(f"[x]\n{c.new or ''}").get(("x", None), {}))
        kept = shareable({sid: {k: "x" for k in keys}})
        if sid not in kept:
            return f"[{c.header}]"
        for k in keys:
            if k not in kept[sid]:
                return f"[{c.header}] {k}"
    return None


def _norm(value: str) -> str:
    # As the planner compares: continuation lines joined by a blank.
    return " ".join(part.strip() for part in value.split("\n")).strip()


def _stale(current: Values, changes: Sequence[Change]) -> str | None:
    """The first change whose ``old`` is no longer what the file says (described), or None.

    A key's old value must be the file's value (None: absent).  A whole
    object added must still be absent and one removed still present.
    """
    for c in changes:
        sid = section_id(c.header)
        where = f"[{c.header}]"
        if c.prop is None:
            present = sid in current
            if c.old is None and present:
                return f"{where} exists now"
            if c.old is not None and not present:
                return f"{where} is gone"
            continue
        now = current.get(sid, {}).get(c.prop.lower())
        if (None if now is None else _norm(now)) != (None if c.old is None else _norm(c.old)):
            return f"{where} {c.prop} is {now!r}, the report had {c.old!r}"
    return None
