#!/usr/bin/python3
"""The image's HEALTHCHECK: exit 0 when cnrd is alive (GET /api/v1/health answers 200).

    cnrd-healthcheck [--ready] [CONFIG]      (default $CNRD_CONFIG or /etc/cnrd/cnrd.ini)

Alive, not ready: a server waiting out MCLT in RECOVER-WAIT, or with DHCP
stopped by an operator, is working as it should and must not be restarted
by an orchestrator (a restart would only start the wait again).  ``--ready``
asks GET /api/v1/ready instead (200 only while serving DHCP and no failover
pair is in STARTUP, RECOVER, RECOVER-WAIT or POTENTIAL-CONFLICT): for load
balancers, alerts and scripts that wait for a server to serve.

Finds the admin API where the config's ``[api] listen`` says: ``host:port``,
``tcp:PORT[:interface=ADDR]``, ``tcp6:...``, ``ssl:PORT...`` (https; the
certificate is not verified: nothing secret is sent, and the check asks its
own process on loopback) or ``unix:PATH``.  A wildcard address is asked on
loopback.  Neither route needs a token, so none is read or sent.  Prints the
answer or the reason.  Standard library only: it runs on the image's
/usr/bin/python3, which has no capabilities, not on cnrd's venv interpreter.
"""

import configparser
import http.client
import os
import re
import socket
import ssl
import sys

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
FALSE = {"false", "no", "off", "disabled", "0"}
TIMEOUT = 4.0


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the API's Unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self.path)


def _fields(description: str) -> tuple[list[str], dict[str, str]]:
    """An endpoint description's positional and keyword arguments, backslash escapes undone."""
    parts = re.findall(r"((?:\\.|[^:\\])*)(?::|$)", description)[:-1]
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for part in parts[1:]:
        m = re.match(r"((?:\\.|[^\\=])*)=(.*)", part, re.DOTALL)
        if m:
            kwargs[re.sub(r"\\(.)", r"\1", m.group(1))] = re.sub(r"\\(.)", r"\1", m.group(2))
        else:
            args.append(re.sub(r"\\(.)", r"\1", part))
    return args, kwargs


def connection(listen: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the API listening on ``listen``, and how to name it in a message."""
    kind = listen.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6", "ssl", "unix"):
        args, kwargs = _fields(listen)
        if kind == "unix":
            path = kwargs.get("address", args[0] if args else "")
            return UnixConnection(path), f"unix:{path}"
        port = int(kwargs.get("port", args[0] if args else "8067"))
        host = kwargs.get("interface", "")
    elif kind == "systemd":
        raise ValueError(f"[api] listen = {listen}: a socket systemd passes in; nothing to ask here")
    else:
        host, _, port_text = listen.rpartition(":")
        port, host = int(port_text), host.strip("[]")
    host = WILDCARDS.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    if kind == "ssl":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return (http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context),
                f"https://{shown}:{port}")
    return http.client.HTTPConnection(host, port, timeout=TIMEOUT), f"http://{shown}:{port}"


def main(argv: list[str]) -> int:
    args = argv[1:]
    route = "/api/v1/health"
    if args and args[0] == "--ready":
        route, args = "/api/v1/ready", args[1:]
    path = args[0] if args else os.environ.get("CNRD_CONFIG", "/etc/cnrd/cnrd.ini")
    # cnrd's INI: '#' starts an inline comment after a blank, '=' is the only delimiter.
    ini = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#", ";"),
                                    inline_comment_prefixes=("#",), strict=False, interpolation=None)
    try:
        with open(path, encoding="utf-8-sig") as f:
            ini.read_file(f)
    except (OSError, configparser.Error) as e:
        print(f"cannot read {path}: {e}")
        return 1
    if ini.get("api", "enabled", fallback="true").strip().lower() in FALSE:
        print("the admin API is disabled: nothing to ask")
        return 0
    listen = ini.get("api", "listen", fallback="127.0.0.1:8067").strip()
    try:
        conn, where = connection(listen)
    except ValueError as e:
        print(f"cannot use [api] listen = {listen}: {e}")
        return 1
    try:
        conn.request("GET", route, headers={"Accept": "application/json"})
        answer = conn.getresponse()
        body = answer.read().decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as e:
        print(f"{where}{route}: {getattr(e, 'strerror', None) or e}")
        return 1
    finally:
        conn.close()
    if answer.status == 200:
        print(body)
        return 0
    print(f"{where}{route}: {answer.status}: {body}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
