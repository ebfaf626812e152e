"""twistd glue: command-line options and the service maker.

A bad configuration stops ``twistd`` before it forks or opens a socket, with
one line on stderr naming file, section and key (no usage text, no
traceback) and a non-zero exit status.
"""

from __future__ import annotations

import sys
from typing import cast
from twisted.application import service
from twisted.python import usage

from cnrd.config import Config, ConfigError, load


class Options(usage.Options):
    """``twistd cnrd`` options."""

    optParameters = [
        ["config", "c", "/etc/cnrd/cnrd.ini", "Path to the cnrd INI configuration file."],
    ]

    config: Config

    def postOptions(self) -> None:
        from cnrd.ops import logs

        self.config = load_or_exit(self["config"])
        # twistd sets up its log after parsing the options and before
        # makeService: the observer (text, or JSON with log-settings json) is
        # chosen now and follows the running configuration from makeService on.
        self.log_settings = logs.SettingsSource(self.config.server.log_settings)
        logs.use_for_twistd(self, self.log_settings)


def load_or_exit(path: str) -> Config:
    """Load ``path``, or exit with the one-line reason when it is not valid."""
    try:
        return load(path)
    except ConfigError as e:
        _fail(str(e))
    raise AssertionError("unreachable")


def _fail(line: str) -> None:
    sys.stderr.write(f"cnrd: {line}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def makeService(options: Options) -> service.IService:
    """Build the service tree for twistd, checking what only the host can tell."""
    from twisted.internet import reactor

    from cnrd.leases.journal import open_store
    from cnrd.leases.store import StoreError
    from cnrd.app.build import build
    from cnrd.app.runtime import Reactor, resolve_interfaces

    config = options.config
    try:
        resolve_interfaces(config)
    except ConfigError as e:
        _fail(str(e))
    s = config.server
    try:
        store = open_store(s)
    except StoreError as e:
        _fail(f"{config.path}: [server] data-dir: {e}")
    top = build(config, cast(Reactor, reactor), store=store)
    settings = getattr(options, "log_settings", None)
    if settings is not None:
        dhcp = top.getServiceNamed("dhcp")
        settings.follow(lambda: dhcp.config.server.log_settings)
    if config.api.enabled:
        try:
            top.getServiceNamed("api").prepare()  # the API token, before anything starts
        except ConfigError as e:
            _fail(str(e))
    return top


def check_main(argv: list[str] | None = None) -> int:
    """``cnrd-check FILE``: validate a configuration without starting a server."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: cnrd-check CONFIG.ini\n")
        return 2
    try:
        config = load(args[0])
    except ConfigError as e:
        sys.stderr.write(f"cnrd: {e}\n")
        return 1
    print(f"{args[0]}: ok ({len(config.scopes)} scopes, {len(config.reservations)} reservations)")
    return 0

