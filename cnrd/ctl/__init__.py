"""``cnrctl``: the operator's command line, CNR's ``nrcmd`` verbs over the admin HTTP API.

One invocation is one nrcmd line::

    cnrctl dhcp getRelatedServers
    cnrctl dhcp setPartnerDown examplepair -3d
    cnrctl dhcp set failover-recover=0
    cnrctl failover-pair examplepair set backup-pct=20
    cnrctl save

It finds the server from the server's own INI file (``--config``, default
``/etc/cnrd/cnrd.ini``: ``[api] listen`` and the token file) or from
``--api URL --token-file FILE`` (environment: ``CNRCTL_API``,
``CNRCTL_TOKEN_FILE``, ``CNRCTL_CONFIG``).  Output is aligned text for
people, or with ``--json`` the API's JSON answer as it came.  Exit status: 0
done, 1 the server refused (its reason on stderr) or could not be reached,
2 a usage mistake found before asking the server.

Only the standard library and cnrd's pure modules (the config value
parsers, the time formats), so it runs wherever cnrd is installed.
docs/cnrctl.md lists every verb; docs/api.md the routes behind them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from cnrd import __version__
from cnrd.config import (
    ConfigError,
    InvalidValue,
    parse_listen,
    load,
    parse_bool,
    parse_duration,
    parse_int,
    parse_ipv4,
    parse_list,
    parse_log_settings,
    parse_percent,
)
from cnrd.config.inifile import read_values
from cnrd.config.timespec import TimeSpecError, format_iso, parse_when

__all__ = ["main", "UsageError", "ApiError", "Target", "parse_assignment", "convert_value",
           "format_table", "format_fields", "format_related_servers"]

DEFAULT_CONFIG = "/etc/cnrd/cnrd.ini"  # twistd cnrd's default --config
PREFIX = "/api/v1"
EXIT_OK, EXIT_API, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line (or in finding the server): exit 2, nothing was sent."""


class ApiError(Exception):
    """The server answered with an error, or could not be reached: exit 1."""

    def __init__(self, reason: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body


# ---------------------------------------------------------------------------
# Finding the server
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the API is and the token to use, with where each came from (for error messages)."""

    base: str  # e.g. http://127.0.0.1:8067/api/v1
    token: str
    source: str  # "[api] listen in /etc/cnrd/cnrd.ini", "--api", ...


def _url_host(host: str) -> str:
    # A server listening on every address is reached on loopback.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _normalise_api(url: str) -> str:
    """``http://h:p``, ``h:p`` or ``http://h:p/api/v1`` -> ``http://h:p/api/v1``."""
    u = url.strip().rstrip("/")
    if "://" not in u:
        u = "http://" + u
    parts = urllib.parse.urlsplit(u)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad API URL {url!r} (use http://host:port)")
    path = parts.path.rstrip("/")
    if not path.endswith(PREFIX):
        path += PREFIX
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _read_token(path: str, why: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except FileNotFoundError:
        raise UsageError(f"API token file {path} does not exist ({why}); the server creates it "
                         "at its first start") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the API token file {path} ({why}): "
                         f"{getattr(e, 'strerror', None) or e}") from None
    if not token:
        raise UsageError(f"the API token file {path} is empty ({why})")
    return token


def _from_config(path: str) -> tuple[str, int, str, bool]:
    """(listen host, port, token file, enabled) from a server's INI file.

    The whole file is validated as the server would; a file that does not
    load (being edited, or the reason for a ``dhcp reload`` that is about
    to fail) still yields its [api] and [server] settings, read leniently.
    """
    try:
        config = load(path)
    except ConfigError as e:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            raise UsageError(str(e)) from None
        values = read_values(text)
        api = values.get(("api", None), {})
        server = values.get(("server", None), {})
        try:
            host, port = parse_listen(api["listen"]) if "listen" in api else ("127.0.0.1", 8067)
            enabled = parse_bool(api["enabled"]) if "enabled" in api else True
        except InvalidValue as bad:
            raise UsageError(f"{path}: [api]: {bad}") from None
        token_file = api.get("token-file", "").strip()
        if not token_file:
            data_dir = server.get("data-dir", "").strip()
            if not data_dir:
                raise UsageError(str(e)) from None
            token_file = os.path.join(data_dir, "api-token")
        return host, port, token_file, enabled
    api_config = config.api
    token_file = api_config.token_file or os.path.join(config.server.data_dir, "api-token")
    return api_config.listen_host, api_config.listen_port, token_file, api_config.enabled


def find_target(api: str | None, token_file: str | None, config_path: str | None,
                env: dict[str, str] | None = None) -> Target:
    """The API URL and token from the options, the environment, or the server's INI file.

    Options beat the environment (``CNRCTL_API``, ``CNRCTL_TOKEN_FILE``,
    ``CNRCTL_CONFIG``); what is still missing comes from the INI file
    (``[api] listen``; ``[api] token-file``, or ``<data-dir>/api-token``).
    """
    env = os.environ if env is None else env
    given_api = api
    api = api or env.get("CNRCTL_API") or None
    token_file = token_file or env.get("CNRCTL_TOKEN_FILE") or None
    explicit_config = config_path or env.get("CNRCTL_CONFIG") or None
    config_path = explicit_config or DEFAULT_CONFIG
    source = "--api" if given_api else ("CNRCTL_API" if api else "")
    if api is None or token_file is None:
        if not os.path.exists(config_path):
            hint = "" if explicit_config else " (give --config FILE, or --api URL and --token-file FILE)"
            raise UsageError(f"configuration file {config_path} does not exist{hint}")
        host, port, cfg_token_file, enabled = _from_config(config_path)
        if api is None:
            if not enabled:
                raise UsageError(f"the admin API is disabled in {config_path} ([api] enabled = false)")
            if port == 0:
                raise UsageError(f"[api] listen in {config_path} has port 0 (any free port): "
                                 "give the server's port with --api")
            api = f"http://{_url_host(host)}:{port}"
            source = f"[api] listen in {config_path}"
        if token_file is None:
            token_file = cfg_token_file
            why = f"from {config_path}"
        else:
            why = "--token-file"
    else:
        why = "--token-file"
    return Target(_normalise_api(api), _read_token(token_file, why), source)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class Client:
    """Sends one request at a time to the API; returns (status, raw body, parsed JSON)."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        # No proxies: the API is on this host (or one the operator names),
        # and an http_proxy meant for the web must not see the token.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
             ok: Sequence[int] = (200,)) -> tuple[int, bytes, Any]:
        """The answer to ``method path``; ApiError for anything but a status in ``ok``."""
        url = self.target.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Authorization": f"Bearer {self.target.token}", "Accept": "application/json",
                   "User-Agent": f"cnrctl/{__version__}"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PATCH", "PUT"):
            data = b""
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
            e.close()
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or str(e.reason)
            raise ApiError(f"cannot reach the cnrd API at {self.target.base} ({reason}); is cnrd running"
                           + (f", and is {self.target.source} right?" if self.target.source else "?")) from None
        except (TimeoutError, OSError) as e:
            raise ApiError(f"no answer from the cnrd API at {self.target.base} "
                           f"({getattr(e, 'strerror', None) or e or 'timed out'})") from None
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        if status not in ok:
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
                reason = parsed["error"]
            elif isinstance(parsed, dict) and isinstance(parsed.get("reason"), str):
                reason = parsed["reason"]
            else:
                reason = f"HTTP {status} from {url}: {raw[:200].decode('utf-8', 'replace').strip()}"
            raise ApiError(reason, status, raw)
        if parsed is None and status != 204:
            raise ApiError(f"the answer from {url} is not JSON: {raw[:200]!r}", status, raw)
        return status, raw, parsed


# ---------------------------------------------------------------------------
# Values: key=value as nrcmd takes them
# ---------------------------------------------------------------------------

_UNSET_WORDS = frozenset({"", "0", "none", "null", "unset"})

#: [server] attributes the API can change (PATCH /dhcp/attributes) and their types.
SERVER_ATTRIBUTES: dict[str, str] = {
    "start-on-reboot": "bool",
    "failover-recover": "time",
    "log-settings": "log-settings",
    "max-dhcp-requests": "int",
    "safe-period": "duration",
}

#: failover-pair attributes the API can change (PATCH /failover-pairs/NAME) and their types.
PAIR_ATTRIBUTES: dict[str, str] = {
    "main": "ipv4",
    "backup": "ipv4",
    "failover": "bool",
    "mclt": "duration",
    "backup-pct": "percent",
    "dynamic-bootp-backup-pct": "optional-percent",
    "load-balancing": "bool",
    "failover-poll-interval": "duration",
    "failover-poll-timeout": "duration",
    "use-safe-period": "bool",
    "safe-period": "duration",
    "max-unacked-updates": "int",
}


def parse_assignment(text: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); UsageError without an '='."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise UsageError(f"expected key=value, not {text!r}")
    return key, value.strip()


def _time_value(text: str, now: float | None = None) -> str | None:
    """failover-recover text for the API: None unsets; dates in words become ISO here.

    nrcmd reads a date in words in the time zone of the nrcmd process, so
    cnrctl converts it before sending; ``-3d`` stays relative (the server's
    clock counts it) and ISO or epoch seconds go as they are.
    """
    t = text.strip()
    if t.lower() in _UNSET_WORDS:
        return None
    if t.isdigit():
        return t
    try:
        when = parse_when(t, int(time.time() if now is None else now))
    except TimeSpecError as e:
        raise InvalidValue(str(e)) from None  # convert_value names the key
    return t if t.startswith("-") else format_iso(when)


def convert_value(key: str, text: str, kind: str | None) -> Any:
    """The JSON value for ``key=text``, converted as the configuration file would read it.

    ``kind`` is the attribute's type (see SERVER_ATTRIBUTES); None for a key
    cnrctl does not know, which is sent as a number, a boolean or a string
    (the server then says what it thinks of it).
    """
    try:
        if kind == "bool":
            return parse_bool(text)
        if kind == "int":
            return parse_int(text)
        if kind == "duration":
            return parse_duration(text)
        if kind == "percent":
            return parse_percent(text)
        if kind == "optional-percent":
            return None if text.strip().lower() in _UNSET_WORDS - {"0"} else parse_percent(text)
        if kind == "ipv4":
            parse_ipv4(text)
            return text.strip()
        if kind == "log-settings":
            parse_log_settings(text)  # refuse a misspelt flag before sending
            return [w.lower() for w in parse_list(text)]
        if kind == "time":
            return _time_value(text)
    except InvalidValue as e:
        raise UsageError(f"{key}: {e}") from None
    t = text.strip()
    try:
        return parse_int(t)
    except InvalidValue:
        pass
    if t.lower() in ("true", "false", "enabled", "disabled", "on", "off", "yes", "no"):
        return parse_bool(t)
    return t


def _assignments(items: Sequence[str], kinds: dict[str, str]) -> dict[str, Any]:
    if not items:
        raise UsageError("nothing to set (give key=value ...)")
    out: dict[str, Any] = {}
    for item in items:
        key, text = parse_assignment(item)
        out[key] = convert_value(key, text, kinds.get(key))
    return out


def _bool_attribute(name: str, kinds: dict[str, str], what: str) -> str:
    key = name.strip().lower()
    if kinds.get(key) != "bool":
        flags = ", ".join(k for k, v in kinds.items() if v == "bool")
        raise UsageError(f"{what} has no on/off attribute {name!r} (there: {flags})")
    return key


# ---------------------------------------------------------------------------
# Output for people
# ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) if value else "-"
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
    cells += [[_text(row.get(key)) for _, key in columns] for row in rows]
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
    return "".join(f"{indent}{k.ljust(width)}  {_text(obj[k])}{_age(obj[k], now) if k in ages else ''}\n"
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


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------

# nrcmd is case-insensitive about its verbs (the seed even writes
# "dhcp getRelatedservers"): each verb's spelling here, by its lower case.
_DHCP_VERBS = {v.lower(): v for v in ("reload", "getRelatedServers", "setPartnerDown", "set", "get", "unset",
                                      "enable", "disable", "stop", "start", "show")}
_OBJECTS = {v: v for v in ("dhcp", "failover-pair", "lease", "scope", "save", "ready")}


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and one 'cnrctl: …' line for usage mistakes."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _common() -> argparse.ArgumentParser:
    # Options every level accepts, so "cnrctl dhcp show --json" works as
    # well as "cnrctl --json dhcp show"; SUPPRESS keeps a subparser from
    # resetting what the top level set.
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
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
    top.add_argument("--api", metavar="URL", help="the API, e.g. http://127.0.0.1:8067 (env CNRCTL_API)")
    top.add_argument("--token-file", metavar="FILE", help="file holding the API token (env CNRCTL_TOKEN_FILE)")
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

    pair = objects.add_parser("failover-pair", help="failover pairs: list, NAME show|get|set|enable|disable",
                              parents=[common])
    pair.add_argument("name", help="the pair's name, or 'list'")
    pair.add_argument("verb", nargs="?", choices=("show", "get", "set", "enable", "disable", "list"))
    pair.add_argument("args", nargs="*", metavar="key=value")

    lease = objects.add_parser("lease", help="leases: ADDRESS show, or list [filters]", parents=[common])
    lease.add_argument("address", help="an IPv4 address, or 'list'")
    lease.add_argument("verb", nargs="?", choices=("show",))
    lease.add_argument("--hardware-address", metavar="MAC")
    lease.add_argument("--state", help="leased, available, expired, released, backup, ...")
    lease.add_argument("--scope", metavar="NAME")
    lease.add_argument("--limit", type=int, metavar="N", help="list at most N leases (default: all)")
    lease.add_argument("--after", metavar="ADDRESS", help="start after this address")

    scope = objects.add_parser("scope", help="scopes: list, or NAME show", parents=[common])
    scope.add_argument("name", help="a scope name, or 'list'")
    scope.add_argument("verb", nargs="?", choices=("show",))

    objects.add_parser("save", help="write API changes into the INI file (comments kept)", parents=[common])
    objects.add_parser("ready", help="is the server answering clients? (exit 1 when not)", parents=[common])
    return top


def _canonical_argv(argv: Sequence[str]) -> list[str]:
    """argv with nrcmd's case-insensitive object and verb names spelt as the parser knows them."""
    out = list(argv)
    takes_value = {"--config", "-c", "--api", "--token-file", "--timeout"}
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
    if args.object == "lease":
        filters = any(getattr(args, k) is not None for k in ("hardware_address", "state", "scope", "limit", "after"))
        if args.address == "list":
            if args.verb is not None:
                raise UsageError("use: cnrctl lease list [--hardware-address MAC] [--state S] [--scope NAME]")
            args.verb = "list"
            if args.limit is not None and args.limit < 1:
                raise UsageError("--limit must be at least 1")
        else:
            if args.verb is None:
                args.verb = "show"
            if filters:
                raise UsageError("--hardware-address, --state, --scope, --limit and --after go with lease list")
    if args.object == "scope":
        if args.name == "list":
            if args.verb is not None:
                raise UsageError("use: cnrctl scope list")
            args.verb = "list"
        elif args.verb is None:
            args.verb = "show"
    return args


# ---------------------------------------------------------------------------
# Running a command
# ---------------------------------------------------------------------------


class Runner:
    """Runs one parsed command against the API and writes the answer."""

    def __init__(self, client: Client, json_output: bool, out: TextIO) -> None:
        self.client = client
        self.json = json_output
        self.out = out

    def emit(self, raw: bytes, text: str | Callable[[], str]) -> None:
        if self.json:
            s = raw.decode("utf-8", "replace")
            self.out.write(s if s.endswith("\n") else s + "\n")
        else:
            self.out.write(text() if callable(text) else text)

    def run(self, args: argparse.Namespace) -> int:
        handler = getattr(self, "do_" + args.object.replace("-", "_"))
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
                body["time"] = _partner_down_time(args.time)
            _, raw, r = c.call("POST", "/dhcp/partner-down", body)
            self.emit(raw, lambda: f"failover-pair {r.get('pair')}: {r.get('state')} "
                                   f"(partner down since {r.get('partner-down-since')})\n")
        elif verb == "set":
            changes = _assignments(args.assignments, SERVER_ATTRIBUTES)
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
                self.emit(raw, f"{key}={_text(r[key])}\n")
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
                    self.out.write(f"failover-pair {r.get('name')}: failover={_text(on)}"
                                   + (" (at the next start)" if "failover" in (r.get("restart-required") or [])
                                      else "") + "\n")
            return EXIT_OK
        key = _bool_attribute(key, SERVER_ATTRIBUTES, "dhcp")
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
        if args.verb == "show":
            _, raw, r = c.call("GET", path)
            self.emit(raw, lambda: format_pair(r))
        elif args.verb == "get":
            _, raw, r = c.call("GET", path)
            if args.args:
                key = args.args[0].strip().lower()
                if key not in r:
                    raise ApiError(f"failover-pair {args.name} has no attribute {key!r}")
                self.emit(raw, f"{key}={_text(r[key])}\n")
            else:
                self.emit(raw, lambda: format_pair(r))
        else:
            if args.verb == "set":
                changes = _assignments(args.args, PAIR_ATTRIBUTES)
            else:
                changes = {_bool_attribute(args.args[0], PAIR_ATTRIBUTES, "failover-pair"): args.verb == "enable"}
            _, raw, r = c.call("PATCH", path, changes)
            self.emit(raw, lambda: format_pair(r) + "(not saved yet: cnrctl save writes it into the INI file)\n")
        return EXIT_OK

    # -- leases and scopes ------------------------------------------------------
    def do_lease(self, args: argparse.Namespace) -> int:
        c = self.client
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


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _partner_down_time(text: str) -> str:
    """setPartnerDown's time for the API; a date in words is read here, in cnrctl's time zone (as nrcmd does)."""
    try:
        when = parse_when(text, int(time.time()))
    except TimeSpecError as e:
        raise UsageError(str(e)) from None
    t = text.strip()
    if t.startswith("-") or not t[0].isalpha():
        return t  # relative: the server's clock counts back; ISO: unambiguous
    iso = format_iso(when)
    if iso is None:
        raise UsageError(f"bad time {t!r}")
    return iso


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``cnrctl`` console script; returns the exit status (0 done, 1 server said no, 2 usage)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
        target = find_target(args.api, args.token_file, args.config)
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


if __name__ == "__main__":  # python -m cnrd.ctl
    sys.exit(main())
