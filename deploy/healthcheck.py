#!/usr/bin/python3
"""The image's HEALTHCHECK: exit 0 when cnrd answers 200 on GET /api/v1/ready.

    cnrd-healthcheck [CONFIG]      (default $CNRD_CONFIG or /etc/cnrd/cnrd.ini)

Finds the admin API where the config's ``[api] listen`` says (a wildcard
address is asked on loopback) and sends the bearer token from ``[api]
token-file`` (default ``<data-dir>/api-token``) when it can read it.  Prints
the answer or the reason.  /ready answers 503 while DHCP is disabled or a
failover pair is in STARTUP, RECOVER, RECOVER-WAIT or POTENTIAL-CONFLICT.
Standard library only: it runs on the image's /usr/bin/python3, which has
no capabilities, not on cnrd's venv interpreter.
"""

import configparser
import json
import os
import sys
import urllib.error
import urllib.request

WILDCARDS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}
FALSE = {"false", "no", "off", "disabled", "0"}


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else os.environ.get("CNRD_CONFIG", "/etc/cnrd/cnrd.ini")
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
    host, _, port = ini.get("api", "listen", fallback="127.0.0.1:8067").strip().rpartition(":")
    url = f"http://{WILDCARDS.get(host, host)}:{port}/api/v1/ready"
    request = urllib.request.Request(url)
    token_file = ini.get("api", "token-file", fallback=None) or os.path.join(
        ini.get("server", "data-dir", fallback="/var/lib/cnrd").strip(), "api-token")
    try:
        with open(token_file.strip(), encoding="utf-8") as f:
            request.add_header("Authorization", "Bearer " + f.read().strip())
    except OSError:
        pass  # ask anyway
    try:
        with urllib.request.urlopen(request, timeout=4) as answer:
            print(answer.read().decode("utf-8", "replace").strip())
            return 0
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace").strip()
        try:
            body = json.loads(body).get("reason") or json.loads(body).get("error") or body
        except (ValueError, AttributeError):
            pass
        print(f"{url}: {e.code}: {body}")
    except OSError as e:
        print(f"{url}: {getattr(e, 'reason', None) or e}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
