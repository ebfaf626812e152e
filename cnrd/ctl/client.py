"""Finding the cnrd API (options, environment, the server's INI file) and talking to it.

Standard library HTTP only (http.client over TCP, TLS or a Unix socket), so
cnrctl runs wherever cnrd is installed.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from cnrd import __version__
from cnrd.config import ConfigError, InvalidValue, load, parse_bool
from cnrd.config.inifile import read_values
from cnrd.config.listen import DEFAULT_API_LISTEN, Listen, parse_endpoint
from cnrd.ctl.errors import ApiError, UsageError

T = TypeVar("T")

__all__ = ["DEFAULT_CONFIG", "PREFIX", "ApiError", "Client", "Target", "find_target"]

DEFAULT_CONFIG = "/etc/cnrd/cnrd.ini"  # twistd cnrd's default --config
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Target:
    """Where the API is and the token to use, with where each came from (for error messages)."""

    base: str  # e.g. http://127.0.0.1:8067/api/v1, or unix:/run/cnrd/api.sock/api/v1
    token: str
    source: str  # "[api] listen in /etc/cnrd/cnrd.ini", "--api", ...
    socket: str | None = None  # the Unix socket to connect to, when the API listens on one
    cacert: str | None = None  # the CA file that signs an https API's certificate; None: the system's


def _url_host(host: str) -> str:
    # A server listening on every address is reached on loopback.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _normalise_api(url: str) -> str:
    """``http://h:p``, ``h:p`` or ``http://h:p/api/v1`` -> ``http://h:p/api/v1``; ``unix:PATH`` stays."""
    u = url.strip().rstrip("/")
    if u.startswith("unix:"):
        path = u[len("unix:"):].removeprefix("//")
        path = path.removesuffix(PREFIX)
        if not path.startswith("/"):
            raise UsageError(f"bad API socket {url!r} (use unix:/absolute/path.sock)")
        return f"unix:{path}"
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


def _from_config(path: str) -> tuple[Listen, str, bool]:
    """(listen address, token file, enabled) from a server's INI file.

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
            listen = parse_endpoint(api["listen"]) if "listen" in api else DEFAULT_API_LISTEN
            enabled = parse_bool(api["enabled"]) if "enabled" in api else True
        except InvalidValue as bad:
            raise UsageError(f"{path}: [api]: {bad}") from None
        token_file = api.get("token-file", "").strip()
        if not token_file:
            data_dir = server.get("data-dir", "").strip()
            if not data_dir:
                raise UsageError(str(e)) from None
            token_file = os.path.join(data_dir, "api-token")
        return listen, token_file, enabled
    api_config = config.api
    token_file = api_config.token_file or os.path.join(config.server.data_dir, "api-token")
    return api_config.listen, token_file, api_config.enabled


def _api_of(listen: Listen, config_path: str) -> str:
    """The URL (or ``unix:PATH``) a client uses for a server listening on ``listen``."""
    where = f"[api] listen in {config_path}"
    if listen.kind == "unix" and listen.path:
        return f"unix:{listen.path}"
    if listen.port is None or not listen.scheme:
        raise UsageError(f"{where} is {listen.description}: give the API's address with --api")
    if listen.port == 0:
        raise UsageError(f"{where} has port 0 (any free port): give the server's port with --api")
    return f"{listen.scheme}://{_url_host(listen.host or '')}:{listen.port}"


def find_target(api: str | None, token_file: str | None, config_path: str | None,
                env: Mapping[str, str] | None = None, *, cacert: str | None = None) -> Target:
    """The API URL and token from the options, the environment, or the server's INI file.

    Options beat the environment (``CNRCTL_API``, ``CNRCTL_TOKEN_FILE``,
    ``CNRCTL_CONFIG``, ``CNRCTL_CACERT``); what is still missing comes from
    the INI file (``[api] listen``; ``[api] token-file``, or
    ``<data-dir>/api-token``).  ``cacert`` is the CA file for an https API
    (default: the system's trusted CAs).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    given_api = api
    api = api or environ.get("CNRCTL_API") or None
    token_file = token_file or environ.get("CNRCTL_TOKEN_FILE") or None
    cacert = cacert or environ.get("CNRCTL_CACERT") or None
    if cacert is not None and not os.path.isfile(cacert):
        raise UsageError(f"CA file {cacert} does not exist (--cacert / CNRCTL_CACERT)")
    explicit_config = config_path or environ.get("CNRCTL_CONFIG") or None
    config_path = explicit_config or DEFAULT_CONFIG
    source = "--api" if given_api else ("CNRCTL_API" if api else "")
    if api is None or token_file is None:
        if not os.path.exists(config_path):
            hint = "" if explicit_config else " (give --config FILE, or --api URL and --token-file FILE)"
            raise UsageError(f"configuration file {config_path} does not exist{hint}")
        listen, cfg_token_file, enabled = _from_config(config_path)
        if api is None:
            if not enabled:
                raise UsageError(f"the admin API is disabled in {config_path} ([api] enabled = false)")
            api = _api_of(listen, config_path)
            source = f"[api] listen in {config_path}"
        if token_file is None:
            token_file = cfg_token_file
            why = f"from {config_path}"
        else:
            why = "--token-file"
    else:
        why = "--token-file"
    base = _normalise_api(api)
    sock = base[len("unix:"):] if base.startswith("unix:") else None
    shown = f"unix:{sock}{PREFIX}" if sock is not None else base
    return Target(shown, _read_token(token_file, why), source, socket=sock, cacert=cacert)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix stream socket (the API's ``unix:`` listener)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """Sends one request at a time to the API; returns (status, raw body, parsed JSON)."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        """A connection to the API (never through a proxy: an http_proxy must not see the token) and the path prefix."""
        t = self.target
        if t.socket is not None:
            return _UnixConnection(t.socket, self.timeout), PREFIX
        parts = urllib.parse.urlsplit(t.base)
        host = parts.hostname or "127.0.0.1"
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=t.cacert)
            return http.client.HTTPSConnection(host, parts.port, timeout=self.timeout, context=context), parts.path
        return http.client.HTTPConnection(host, parts.port, timeout=self.timeout), parts.path

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
        connection, response = self._send(method, path, data, headers, query)
        try:
            status, raw = response.status, self._guard(response.read)
        finally:
            connection.close()
        return self._answer(url, status, raw, ok)

    def download(self, path: str, out: BinaryIO, query: dict[str, str] | None = None) -> int:
        """GET ``path`` and copy the answer's body into ``out`` 1 MiB at a time; returns the bytes written.

        ApiError (with the JSON error's text) for a status other than 200.
        """
        headers = {"Authorization": f"Bearer {self.target.token}", "User-Agent": f"cnrctl/{__version__}"}
        url = self.target.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        connection, response = self._send("GET", path, None, headers, query)
        try:
            if response.status != 200:
                self._answer(url, response.status, self._guard(lambda: response.read(64 * 1024)), (200,))
            written = 0
            while chunk := self._guard(lambda: response.read(1 << 20)):
                out.write(chunk)
                written += len(chunk)
            return written
        finally:
            connection.close()

    def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str],
              query: dict[str, str] | None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """The request sent and the answer's status and headers read; ApiError for what went wrong."""
        connection, prefix = self._connection()
        target = prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            self._guard(lambda: connection.request(method, target, body=data, headers=headers))
            return connection, self._guard(connection.getresponse)
        except BaseException:
            connection.close()
            raise

    def _guard(self, step: Callable[[], T]) -> T:
        """``step()``, with every network failure turned into an ApiError that says what to check."""
        try:
            return step()
        except ssl.SSLCertVerificationError as e:
            raise ApiError(f"cannot verify the certificate of the cnrd API at {self.target.base} "
                           f"({e.verify_message or e.reason}); give the CA that signs it with --cacert FILE "
                           "(env CNRCTL_CACERT)") from None
        except ssl.SSLError as e:
            raise ApiError(f"TLS with the cnrd API at {self.target.base} failed ({e.reason or e})") from None
        except TimeoutError as e:
            raise ApiError(f"no answer from the cnrd API at {self.target.base} ({e or 'timed out'})") from None
        except (ConnectionRefusedError, FileNotFoundError, socket.gaierror, ConnectionResetError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise ApiError(f"cannot reach the cnrd API at {self.target.base} ({reason}); is cnrd running"
                           + (f", and is {self.target.source} right?" if self.target.source else "?")) from None
        except (OSError, http.client.HTTPException) as e:
            raise ApiError(f"no answer from the cnrd API at {self.target.base} "
                           f"({getattr(e, 'strerror', None) or e or type(e).__name__})") from None

    @staticmethod
    def _answer(url: str, status: int, raw: bytes, ok: Sequence[int]) -> tuple[int, bytes, Any]:
        """(status, raw, parsed JSON); ApiError with the server's reason for a status not in ``ok``."""
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
