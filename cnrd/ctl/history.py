"""cnrctl's lease history and lease-command verbs: ``lease ADDR history|force-available|delete`` and ``history``."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any, TextIO

from cnrd.ctl.client import Client
from cnrd.ctl.errors import EXIT_OK
from cnrd.ctl.formatting import format_history, format_holder, format_lease_command

__all__ = ["history_verb", "lease_verb"]


def _emit(out: TextIO, json_output: bool, raw: bytes, text: str) -> None:
    if json_output:
        s = raw.decode("utf-8", "replace")
        out.write(s if s.endswith("\n") else s + "\n")
    else:
        out.write(text)


def _times(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k, v in (("since", args.since), ("until", args.until)) if v is not None}


def lease_verb(client: Client, args: argparse.Namespace, out: TextIO, json_output: bool) -> int:
    """``lease ADDR history [--since/--until/--limit | --at]``, ``force-available`` or ``delete``."""
    path = f"/leases/{urllib.parse.quote(args.address, safe='')}"
    if args.verb != "history":
        _, raw, r = client.call("POST", f"{path}/{args.verb}")
        _emit(out, json_output, raw, "" if json_output else format_lease_command(args.verb, r))
        return EXIT_OK
    if args.at is not None:
        _, raw, r = client.call("GET", path + "/history", query={"at": args.at})
        _emit(out, json_output, raw, "" if json_output else format_holder(r))
        return EXIT_OK
    return _pages(client, path + "/history", _times(args), args.limit, out, json_output, with_address=False)


def history_verb(client: Client, args: argparse.Namespace, out: TextIO, json_output: bool) -> int:
    """``history [--mac MAC] [--since T] [--until T] [--limit N]``."""
    query = _times(args)
    if args.mac is not None:
        query["hardware-address"] = args.mac
    return _pages(client, "/history", query, args.limit, out, json_output, with_address=True)


def _pages(client: Client, path: str, query: dict[str, str], limit: int | None, out: TextIO, json_output: bool,
           *, with_address: bool) -> int:
    """Every page of a history answer (up to ``limit`` entries), as one table or one JSON object."""
    events: list[dict[str, Any]] = []
    nxt: str | None = None
    for _ in range(100000):  # pages of up to 1000: bounded by any store's event-history
        want = 1000 if limit is None else min(1000, limit - len(events))
        _, _, r = client.call("GET", path, query={**query, "limit": str(want)})
        events.extend(r.get("history", []))
        nxt = r.get("next")
        if nxt is None or (limit is not None and len(events) >= limit):
            break
        query["cursor"] = nxt
    if json_output:
        out.write(json.dumps({"history": events, "next": nxt}) + "\n")
    else:
        out.write(format_history(events, with_address))
    return EXIT_OK
