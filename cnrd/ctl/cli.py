"""The cnrctl command line: nrcmd's verbs parsed, run against the API, answered on stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from cnrd import __version__
from cnrd.ctl.backup import add_backup_verbs, backup_verb, export_verb, restore_verb
from cnrd.ctl.client import DEFAULT_CONFIG, Client, find_target
from cnrd.ctl.errors import EXIT_API, EXIT_OK, EXIT_USAGE, ApiError, UsageError
from cnrd.ctl.formatting import (
    LEASE_COLUMNS,
    PAIR_COLUMNS,
    SCOPE_COLUMNS,
    format_fields,
    format_pair,
    format_related_servers,
    format_reload,
    format_status,
    format_sync,
    format_table,
    value_text,
)
from cnrd.ctl.history import history_verb, lease_verb
from cnrd.ctl.values import SYNC_DIRECTIONS, SYNC_OPERATIONS, PAIR_ATTRIBUTES, SERVER_ATTRIBUTES, assignments, bool_attribute, partner_down_time

__all__ = ["build_parser", "parse_args", "Runner", "main"]


# nrcmd is case-insensitive about its verbs (scripts written for it say
# "dhcp getRelatedservers"): each verb's spelling here, by its lower case.
_DHCP_VERBS = {v.lower(): v for v in ("reload", "getRelatedServers", "setPartnerDown", "set", "get", "unset",
                                      "enable", "disable", "stop", "start", "show")}
_OBJECTS = {v: v for v in ("dhcp", "failover-pair", "lease", "scope", "save", "ready", "history")}
_LEASE_VERBS = ("show", "history", "force-available", "delete")
_TIME_OPTIONS = ("--since", "--until", "--at")


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and one 'cnrctl: …' line for usage mistakes."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _common() -> _Parser:
    # Options every level accepts, so "cnrctl dhcp show --json" works as
    # well as "cnrctl --json dhcp show"; SUPPRESS keeps a subparser from
    # resetting what the top level set.
    p = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the API's JSON answer as it is")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every verb (also used by the tests and docs/cnrctl.md)."""
    common = _common()
    top = _Parser(prog="cnrctl", description="nrcmd's DHCP and failover verbs for a cnrd server, over its API.",
                  epilog="Exit status: 0 done, 1 refused by the server or not reachable, 2 usage. "
                         "See docs/cnrctl.md.")
    top.add_argument("--config", "-c", metavar="FILE",
                     help=f"the server's INI file, to find [api] listen and the token (default {DEFAULT_CONFIG}, "
                          "env CNRCTL_CONFIG)")
    top.add_argument("--api", metavar="URL", help="the API: http://127.0.0.1:8067, https://…, or "
                                                  "unix:/run/cnrd/api.sock (env CNRCTL_API)")
    top.add_argument("--token-file", metavar="FILE", help="file holding the API token (env CNRCTL_TOKEN_FILE)")
    top.add_argument("--cacert", metavar="FILE",
                     help="CA certificate(s) that sign an https API's certificate (default: the system's; "
                          "env CNRCTL_CACERT)")
    top.add_argument("--json", action="store_true", default=False, help="print the API's JSON answer as it is")
    top.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="HTTP timeout (default 30)")
    top.add_argument("--version", action="version", version=f"cnrctl (cnrd) {__version__}")
    objects = top.add_subparsers(dest="object", metavar="OBJECT", parser_class=_Parser)
    objects.required = True

    dhcp = objects.add_parser("dhcp", help="the DHCP server: status, failover, attributes", parents=[common])
    verbs = dhcp.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    v = verbs.add_parser("reload", help="read the INI file again and apply it", parents=[common])
    v.add_argument("--force", action="store_true", help="remove scopes that still hold leases")
    verbs.add_parser("getRelatedServers", help="the failover partners and their states", parents=[common])
    v = verbs.add_parser("setPartnerDown", help="declare a partner down (PARTNER-DOWN)", parents=[common])
    v.add_argument("partner", help="failover pair name or the partner's address")
    v.add_argument("time", nargs=argparse.REMAINDER,
                   help="when it was last known up: -3d, Nov 25 14:00 2026, or ISO 8601 "
                        "(default: when communication was interrupted)")
    v = verbs.add_parser("set", help="set server attributes: key=value ...", parents=[common])
    v.add_argument("assignments", nargs="+", metavar="key=value")
    v = verbs.add_parser("get", help="show server attributes (all, or one)", parents=[common])
    v.add_argument("key", nargs="?")
    v = verbs.add_parser("unset", help="unset a server attribute (failover-recover)", parents=[common])
    v.add_argument("key")
    for name, what in (("enable", "true"), ("disable", "false")):
        v = verbs.add_parser(name, help=f"set an on/off attribute to {what} (start-on-reboot, failover)",
                             parents=[common])
        v.add_argument("attribute")
    verbs.add_parser("stop", help="stop answering clients (failover and the API keep running)", parents=[common])
    verbs.add_parser("start", help="answer clients again", parents=[common])
    verbs.add_parser("show", help="status: version, uptime, leases, counters", parents=[common])

    pair = objects.add_parser("failover-pair", help="failover pairs: list, NAME show|get|set|enable|disable|sync",
                              parents=[common])
    pair.add_argument("name", help="the pair's name, or 'list'")
    pair.add_argument("verb", nargs="?", choices=("show", "get", "set", "enable", "disable", "sync", "list"))
    pair.add_argument("args", nargs="*", metavar="key=value",
                      help="set: key=value ...; sync: update, complete or exact")
    pair.add_argument("--direction", choices=SYNC_DIRECTIONS,
                      help="sync: which server's configuration is copied (default main-to-backup)")
    mode = pair.add_mutually_exclusive_group()
    mode.add_argument("--report", action="store_true", help="sync: list the changes only (the default)")
    mode.add_argument("--run", action="store_true", help="sync: make the changes on the target and reload it")

    lease = objects.add_parser("lease", help="leases: ADDRESS show|history|force-available|delete, or list [filters]",
                               parents=[common])
    lease.add_argument("address", help="an IPv4 address, or 'list'")
    lease.add_argument("verb", nargs="?", choices=_LEASE_VERBS)
    lease.add_argument("--since", metavar="TIME", help="history: from this time (-1d, Nov 25 14:00 2026, ISO 8601)")
    lease.add_argument("--until", metavar="TIME", help="history: up to this time")
    lease.add_argument("--at", metavar="TIME", help="history: who held the address at this time")
    lease.add_argument("--hardware-address", metavar="MAC")
    lease.add_argument("--state", help="leased, available, expired, released, backup, ...")
    lease.add_argument("--scope", metavar="NAME")
    lease.add_argument("--limit", type=int, metavar="N", help="list at most N leases (default: all)")
    lease.add_argument("--after", metavar="ADDRESS", help="start after this address")

    scope = objects.add_parser("scope", help="scopes: list, or NAME show", parents=[common])
    scope.add_argument("name", help="a scope name, or 'list'")
    scope.add_argument("verb", nargs="?", choices=("show",))

    history = objects.add_parser("history", help="lease history of every address, or of one client (--mac)",
                                 parents=[common])
    history.add_argument("--mac", "--hardware-address", dest="mac", metavar="MAC",
                         help="only this hardware address's events")
    history.add_argument("--since", metavar="TIME", help="from this time (-1d, Nov 25 14:00 2026, ISO 8601)")
    history.add_argument("--until", metavar="TIME", help="up to this time")
    history.add_argument("--limit", type=int, metavar="N", help="at most N events (default: all)")

    objects.add_parser("save", help="write API changes into the INI file (comments kept)", parents=[common])
    objects.add_parser("ready", help="is the server answering clients? (exit 1 when not)", parents=[common])
    add_backup_verbs(objects, common, _Parser)
    return top


def _canonical_argv(argv: Sequence[str]) -> list[str]:
    """argv with nrcmd's case-insensitive object and verb names spelt as the parser knows them."""
    out = list(argv)
    takes_value = {"--config", "-c", "--api", "--token-file", "--cacert", "--timeout"}
    i = 0
    while i < len(out) and out[i].startswith("-"):
        i += 1 if "=" in out[i] or out[i] not in takes_value else 2
    if i < len(out):
        out[i] = _OBJECTS.get(out[i].lower(), out[i])
        if out[i] == "dhcp":
            j = i + 1
            while j < len(out) and out[j].startswith("-"):
                j += 1
            if j < len(out):
                out[j] = _DHCP_VERBS.get(out[j].lower(), out[j])
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line; UsageError for anything argparse or the verb rules refuse."""
    argv = list(argv)
    if "--json" in argv:
        # A flag that may go anywhere: argparse cannot take it between two
        # positionals ("failover-pair p --json show") nor after REMAINDER.
        argv = ["--json"] + [a for a in argv if a != "--json"]
    # "--since -1d": argparse would take -1d for an option; glued, it is the value.
    glued: list[str] = []
    for arg in argv:
        if glued and glued[-1] in _TIME_OPTIONS and arg.startswith("-") and arg[1:2].isdigit():
            glued[-1] += "=" + arg
        else:
            glued.append(arg)
    argv = glued
    args = build_parser().parse_args(_canonical_argv(argv))
    if args.object == "dhcp" and args.verb == "setPartnerDown":
        # REMAINDER takes "-3d" as it is (argparse would call it an option).
        args.time = " ".join(args.time).strip() or None
    if args.object == "failover-pair":
        if args.name == "list":
            if args.verb is not None or args.args:
                raise UsageError("failover-pair list takes no more arguments")
            args.verb = "list"
        elif args.verb is None:
            raise UsageError(f"failover-pair {args.name}: give a verb: show, get, set, enable or disable")
        elif args.verb == "list":
            raise UsageError("use: cnrctl failover-pair list")
        elif args.verb == "show" and args.args:
            raise UsageError("failover-pair NAME show takes no more arguments")
        elif args.verb == "get" and len(args.args) > 1:
            raise UsageError("failover-pair NAME get takes at most one key")
        elif args.verb in ("enable", "disable") and len(args.args) != 1:
            raise UsageError(f"failover-pair NAME {args.verb} takes one attribute (e.g. load-balancing)")
        elif args.verb == "set" and not args.args:
            raise UsageError("failover-pair NAME set: give key=value ...")
        elif args.verb == "sync":
            if len(args.args) != 1 or args.args[0].lower() not in SYNC_OPERATIONS:
                raise UsageError(f"use: cnrctl failover-pair {args.name} sync update|complete|exact "
                                 "[--direction main-to-backup|backup-to-main] [--report|--run]")
            args.args = [args.args[0].lower()]
        if args.verb != "sync" and (args.direction is not None or args.run or args.report):
            raise UsageError("--direction, --report and --run go with failover-pair NAME sync")
    if args.object == "lease":
        filters = any(getattr(args, k) is not None for k in ("hardware_address", "state", "scope", "after"))
        times = any(getattr(args, k) is not None for k in ("since", "until", "at"))
        if args.limit is not None and args.limit < 1:
            raise UsageError("--limit must be at least 1")
        if args.address == "list":
            if times:
                raise UsageError("--since, --until and --at go with lease ADDRESS history")
            if args.verb is not None:
                raise UsageError("use: cnrctl lease list [--hardware-address MAC] [--state S] [--scope NAME]")
            args.verb = "list"
            if args.limit is not None and args.limit < 1:
                raise UsageError("--limit must be at least 1")
        else:
            if args.verb is None:
                args.verb = "show"
            if filters or (args.limit is not None and args.verb != "history"):
                raise UsageError("--hardware-address, --state, --scope, --limit and --after go with lease list")
            if times and args.verb != "history":
                raise UsageError("--since, --until and --at go with lease ADDRESS history")
            if args.at is not None and (args.since is not None or args.until is not None or args.limit is not None):
                raise UsageError("--at goes alone: it asks who held the address at that time")
    if args.object == "history" and args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    for name in ("since", "until", "at"):
        # Read now (a date in words in cnrctl's zone), so a bad one is a usage error.
        if getattr(args, name, None) is not None:
            setattr(args, name, partner_down_time(getattr(args, name)))
    if args.object == "scope":
        if args.name == "list":
            if args.verb is not None:
                raise UsageError("use: cnrctl scope list")
            args.verb = "list"
        elif args.verb is None:
            args.verb = "show"
    return args


class Runner:
    """Runs one parsed command against the API and writes the answer."""

    def __init__(self, client: Client, json_output: bool, out: TextIO) -> None:
        self.client = client
        self.json = json_output
        self.out = out

    def emit(self, raw: bytes, text: str | Callable[[], str]) -> None:
        """Write the API's answer as it came (--json), else ``text`` (made only when needed)."""
        if self.json:
            s = raw.decode("utf-8", "replace")
            self.out.write(s if s.endswith("\n") else s + "\n")
        else:
            self.out.write(text() if callable(text) else text)

    def run(self, args: argparse.Namespace) -> int:
        """Run the command; returns the exit status."""
        handler: Callable[[argparse.Namespace], int] = getattr(self, "do_" + args.object.replace("-", "_"))
        return handler(args)

    # -- dhcp ---------------------------------------------------------------
    def do_dhcp(self, args: argparse.Namespace) -> int:
        c = self.client
        verb = args.verb
        if verb == "reload":
            _, raw, r = c.call("POST", "/dhcp/reload", {"force": True} if args.force else None)
            self.emit(raw, lambda: format_reload(r))
        elif verb == "getRelatedServers":
            _, raw, r = c.call("GET", "/dhcp/related-servers")
            self.emit(raw, lambda: format_related_servers(r, time.time()))
        elif verb == "setPartnerDown":
            body: dict[str, Any] = {"partner": args.partner}
            if args.time:
                body["time"] = partner_down_time(args.time)
            _, raw, r = c.call("POST", "/dhcp/partner-down", body)
            self.emit(raw, lambda: f"failover-pair {r.get('pair')}: {r.get('state')} "
                                   f"(partner down since {r.get('partner-down-since')})\n")
        elif verb == "set":
            changes = assignments(args.assignments, SERVER_ATTRIBUTES)
            _, raw, r = c.call("PATCH", "/dhcp/attributes", changes)
            self.emit(raw, lambda: format_fields({k: r.get(k) for k in changes if k in r} or r)
                      + "(not saved yet: cnrctl save writes it into the INI file)\n")
        elif verb == "unset":
            key = args.key.strip().lower()
            _, raw, r = c.call("PATCH", "/dhcp/attributes", {key: None})
            self.emit(raw, lambda: format_fields({key: r.get(key)}))
        elif verb in ("enable", "disable"):
            return self._dhcp_switch(args.attribute, verb == "enable")
        elif verb == "get":
            _, raw, r = c.call("GET", "/dhcp/attributes")
            if args.key is not None:
                key = args.key.strip().lower()
                if key not in r:
                    raise ApiError(f"no attribute {key!r} (there are: {', '.join(r)})")
                self.emit(raw, f"{key}={value_text(r[key])}\n")
            else:
                self.emit(raw, lambda: format_fields(r))
        elif verb in ("stop", "start"):
            _, raw, r = c.call("POST", f"/dhcp/{verb}")
            self.emit(raw, "DHCP disabled: no client is answered (failover and the API keep running)\n"
                      if verb == "stop" else "DHCP enabled\n")
        elif verb == "show":
            _, raw, r = c.call("GET", "/dhcp")
            self.emit(raw, lambda: format_status(r))
        return EXIT_OK

    def _dhcp_switch(self, attribute: str, on: bool) -> int:
        key = attribute.strip().lower()
        if key == "failover":
            # nrcmd's "dhcp enable failover" = "failover-pair NAME set failover=true" for every pair.
            _, _, pairs = self.client.call("GET", "/failover-pairs")
            names = [p["name"] for p in pairs.get("failover-pairs", [])]
            if not names:
                raise ApiError("there is no failover pair to " + ("enable" if on else "disable"))
            answers = []
            for name in names:
                _, raw, r = self.client.call("PATCH", f"/failover-pairs/{_quote(name)}", {"failover": on})
                answers.append((raw, r))
            if self.json:
                self.out.write(json.dumps({"failover-pairs": [r for _, r in answers]}) + "\n")
            else:
                for _, r in answers:
                    self.out.write(f"failover-pair {r.get('name')}: failover={value_text(on)}"
                                   + (" (at the next start)" if "failover" in (r.get("restart-required") or [])
                                      else "") + "\n")
            return EXIT_OK
        key = bool_attribute(key, SERVER_ATTRIBUTES, "dhcp")
        _, raw, r = self.client.call("PATCH", "/dhcp/attributes", {key: on})
        self.emit(raw, lambda: format_fields({key: r.get(key)})
                  + "(not saved yet: cnrctl save writes it into the INI file)\n")
        return EXIT_OK

    # -- failover-pair --------------------------------------------------------
    def do_failover_pair(self, args: argparse.Namespace) -> int:
        c = self.client
        if args.verb == "list":
            _, raw, r = c.call("GET", "/failover-pairs")
            pairs = r.get("failover-pairs", [])
            self.emit(raw, lambda: format_table(pairs, PAIR_COLUMNS) if pairs else "no failover pairs\n")
            return EXIT_OK
        path = f"/failover-pairs/{_quote(args.name)}"
        if args.verb == "sync":
            body = {"operation": args.args[0], "direction": args.direction or "main-to-backup", "run": args.run}
            _, raw, r = c.call("POST", path + "/sync", body)
            self.emit(raw, lambda: format_sync(r))
        elif args.verb == "show":
            _, raw, r = c.call("GET", path)
            self.emit(raw, lambda: format_pair(r))
        elif args.verb == "get":
            _, raw, r = c.call("GET", path)
            if args.args:
                key = args.args[0].strip().lower()
                if key not in r:
                    raise ApiError(f"failover-pair {args.name} has no attribute {key!r}")
                self.emit(raw, f"{key}={value_text(r[key])}\n")
            else:
                self.emit(raw, lambda: format_pair(r))
        else:
            if args.verb == "set":
                changes = assignments(args.args, PAIR_ATTRIBUTES)
            else:
                changes = {bool_attribute(args.args[0], PAIR_ATTRIBUTES, "failover-pair"): args.verb == "enable"}
            _, raw, r = c.call("PATCH", path, changes)
            self.emit(raw, lambda: format_pair(r) + "(not saved yet: cnrctl save writes it into the INI file)\n")
        return EXIT_OK

    # -- leases and scopes ------------------------------------------------------
    def do_lease(self, args: argparse.Namespace) -> int:
        c = self.client
        if args.verb in ("history", "force-available", "delete"):
            return lease_verb(c, args, self.out, self.json)
        if args.verb == "show":
            _, raw, r = c.call("GET", f"/leases/{_quote(args.address)}")
            self.emit(raw, lambda: format_fields(r))
            return EXIT_OK
        query = {k: v for k, v in (("hardware-address", args.hardware_address), ("state", args.state),
                                   ("scope", args.scope), ("after", args.after)) if v is not None}
        leases: list[dict[str, Any]] = []
        nxt: str | None = None
        raw = b""
        pages = 0
        while True:
            want = 1000 if args.limit is None else min(1000, args.limit - len(leases))
            _, raw, r = c.call("GET", "/leases", query={**query, "limit": str(want)})
            pages += 1
            leases.extend(r.get("leases", []))
            nxt = r.get("next")
            if nxt is None or (args.limit is not None and len(leases) >= args.limit):
                break
            query["after"] = nxt
        if self.json:
            # One page: the answer as it came; several: the same shape, merged.
            if pages == 1:
                self.emit(raw, "")
            else:
                self.out.write(json.dumps({"leases": leases, "next": nxt}) + "\n")
        else:
            self.out.write(format_table(leases, LEASE_COLUMNS) if leases else "no leases\n")
            if nxt is not None:
                self.out.write(f"(more: cnrctl lease list --after {nxt})\n")
        return EXIT_OK

    def do_scope(self, args: argparse.Namespace) -> int:
        _, raw, r = self.client.call("GET", "/scopes")
        scopes = r.get("scopes", [])
        if args.verb == "list":
            self.emit(raw, lambda: format_table(scopes, SCOPE_COLUMNS) if scopes else "no scopes\n")
            return EXIT_OK
        match = [s for s in scopes if s.get("name") == args.name]
        if not match:
            raise ApiError(f"no scope {args.name!r}" + (f" (there are: {', '.join(s['name'] for s in scopes)})"
                                                          if scopes else ""))
        if self.json:
            self.out.write(json.dumps(match[0]) + "\n")
        else:
            self.out.write(format_fields(match[0]))
        return EXIT_OK

    # -- save, ready ------------------------------------------------------------
    def do_save(self, args: argparse.Namespace) -> int:
        _, raw, r = self.client.call("POST", "/save")
        changed = r.get("changed") or []
        self.emit(raw, lambda: (f"saved to {r.get('saved')}: {', '.join(changed)}\n" if changed
                                else f"nothing to save ({r.get('saved')} has every change)\n"))
        return EXIT_OK

    def do_ready(self, args: argparse.Namespace) -> int:
        status, raw, r = self.client.call("GET", "/ready", ok=(200, 503))
        if r.get("ready"):
            self.emit(raw, "ready\n")
            return EXIT_OK
        self.emit(raw, f"not ready: {r.get('reason', 'no reason given')}\n")
        return EXIT_API


    # -- lease history and lease commands (cnrd/ctl/history.py) -----------------------
    def do_history(self, args: argparse.Namespace) -> int:
        return history_verb(self.client, args, self.out, self.json)

    # -- backup, restore, export (docs/backup.md) -------------------------------------
    def do_backup(self, args: argparse.Namespace) -> int:
        return backup_verb(self.client, args, self.out)

    def do_restore(self, args: argparse.Namespace) -> int:
        return restore_verb(args, self.out)

    def do_leases(self, args: argparse.Namespace) -> int:
        return export_verb(self.client, args, self.out)


def _quote(segment: str) -> str:
    """``segment`` as one path segment of a URL (a '/' in a name stays in the name)."""
    return urllib.parse.quote(segment, safe="")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``cnrctl`` console script; returns the exit status (0 done, 1 server said no, 2 usage)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        target = find_target(args.api, args.token_file, args.config, cacert=args.cacert)
        return Runner(Client(target, args.timeout), args.json, out).run(args)
    except UsageError as e:
        err.write(f"cnrctl: {e}\n")
        return EXIT_USAGE
    except ApiError as e:
        err.write(f"cnrctl: {e.reason}\n")
        return EXIT_API
    except KeyboardInterrupt:
        err.write("cnrctl: interrupted\n")
        return 130
    except BrokenPipeError:
        # "cnrctl lease list | head": the reader left; not an error worth a
        # traceback.  Point stdout at /dev/null so the flush at exit is quiet.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK

