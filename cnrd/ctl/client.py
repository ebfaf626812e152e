"""Finding the cnrd API (options, environment, the server's INI file) and talking to it.

Standard library HTTP only, so cnrctl runs wherever cnrd is installed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnrd import __version__
from cnrd.config import ConfigError, InvalidValue, load, parse_bool, parse_listen
from cnrd.config.inifile import read_values
from cnrd.ctl.errors import ApiError, UsageError

__all__ = ["DEFAULT_CONFIG", "PREFIX", "ApiError", "Client", "Target", "find_target"]

DEFAULT_CONFIG = "/etc/cnrd/cnrd.ini"  # twistd cnrd's default --config
PREFIX = "/api/v1"


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
                env: Mapping[str, str] | None = None) -> Target:
    """The API URL and token from the options, the environment, or the server's INI file.

    Options beat the environment (``CNRCTL_API``, ``CNRCTL_TOKEN_FILE``,
    ``CNRCTL_CONFIG``); what is still missing comes from the INI file
    (``[api] listen``; ``[api] token-file``, or ``<data-dir>/api-token``).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    given_api = api
    api = api or environ.get("CNRCTL_API") or None
    token_file = token_file or environ.get("CNRCTL_TOKEN_FILE") or None
    explicit_config = config_path or environ.get("CNRCTL_CONFIG") or None
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
