"""twistd glue: command-line options and the service maker.

A bad configuration stops ``twistd`` before it forks or opens a socket, with
one line on stderr naming file, section and key (no usage text, no
traceback) and a non-zero exit status.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any, cast

from twisted.application import service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from cnrd import __version__
from cnrd.config import Config, ConfigError, load

log = Logger(namespace="cnrd")


class Options(usage.Options):
    """``twistd cnrd`` options."""

    optParameters = [
        ["config", "c", "/etc/cnrd/cnrd.ini", "Path to the cnrd INI configuration file."],
    ]

    config: Config

    def opt_version(self) -> None:
        """Print cnrd's version and exit."""
        print(f"cnrd {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        from cnrd.ops import logs

        self.config = load_or_exit(self["config"])
        # twistd sets up its log after parsing the options and before
        # makeService: the observer (text, or JSON with log-settings json) is
        # chosen now and follows the running configuration from makeService on.
        self.log_settings = logs.SettingsSource(self.config.server.log_settings)
        s = self.config.server
        self.own_observer = logs.use_for_twistd(self, self.log_settings, max_size=s.log_max_size,
                                                max_files=s.log_max_files)


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
    from cnrd.app.tls import leave_unloaded

    config = options.config
    # Before the reactor's import, which is where Twisted loads TLS.
    tls = bool(config.tls_settings()) or not leave_unloaded()

    from twisted.internet import reactor

    from cnrd.leases.journal import open_store
    from cnrd.leases.store import StoreError
    from cnrd.app.build import build
    from cnrd.app.runtime import Reactor, resolve_interfaces

    try:
        resolve_interfaces(config)
    except ConfigError as e:
        _fail(str(e))
    s = config.server
    try:
        store = open_store(s)
    except StoreError as e:
        _fail(f"{config.path}: [server] data-dir: {e}")
    top = build(config, cast(Reactor, reactor), store=store, tls=tls)
    if not tls:
        log.info("TLS not loaded: no setting of {path} uses it (a reload that turns one on waits for a restart)",
                 path=config.path)
    settings = getattr(options, "log_settings", None)
    if settings is not None:
        dhcp = top.getServiceNamed("dhcp")
        settings.follow(lambda: dhcp.config.server.log_settings)
        if getattr(options, "own_observer", False):
            # The lease lines go straight to twistd's observer (ours, the
            # only one), a reactor turn's lines in one write at its end.
            from cnrd.ops import logs

            logs.direct_in_twistd(dhcp.lease_log, lambda flush: reactor.callLater(0, flush))
    if config.api.enabled:
        try:
            top.getServiceNamed("api").prepare()  # the API token, before anything starts
        except ConfigError as e:
            _fail(str(e))
    _add_service_glue(top, reactor)
    return top


class HangupReload(service.Service):
    """SIGHUP reloads the configuration file, the same way as ``POST /api/v1/dhcp/reload``.

    The outcome is logged (and told to systemd as STATUS=): what was applied
    with its warnings, or why the file was refused and nothing changed.
    """

    name = "sighup-reload"

    def __init__(self, reactor: IReactorFromThreads, admin: Any, notifier: Any = None) -> None:
        self.reactor = reactor
        self.admin = admin
        self.notifier = notifier
        self._previous: Any = None

    def startService(self) -> None:
        service.Service.startService(self)
        try:
            self._previous = signal.signal(signal.SIGHUP, self._on_signal)
        except ValueError:  # not the main thread (an embedding program's): no signal, reload by API only
            log.warn("SIGHUP reload not installed: not running in the main thread")

    def stopService(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        service.Service.stopService(self)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The one reactor call that is safe from a signal handler.
        self.reactor.callFromThread(self.reload)

    def reload(self) -> Any:
        """Reload now; the Deferred fires with the outcome's line once it is logged."""
        path = self.admin.config.path
        if self.notifier is not None:
            self.notifier.reloading()
        log.info("SIGHUP: reloading {path}", path=path)

        def applied(out: dict[str, Any]) -> str:
            warnings = list(out.get("warnings") or [])
            restart = list(out.get("restart-required") or [])
            line = f"reloaded {path}"
            if restart:
                line += f"; restart required for: {', '.join(str(k) for k in restart)}"
            log.info("SIGHUP: {line}", line=line)
            for w in warnings:
                log.warn("SIGHUP reload: {warning}", warning=w)
            return line

        def refused(f: Failure) -> str:
            reason = getattr(f.value, "message", None) or f.getErrorMessage()
            line = f"reload of {path} refused, nothing changed: {reason}"
            log.error("SIGHUP: {line}", line=line)
            return line

        def told(line: str) -> str:
            if self.notifier is not None:
                self.notifier.reloaded(line)
            return line

        return self.admin.reload_checked(None).addCallbacks(applied, refused).addCallback(told)


def _add_service_glue(top: service.MultiService, reactor: Any) -> None:
    """SIGHUP as reload, and systemd's notifications (READY=1 last, once everything else started)."""
    from cnrd.admin.commands import Admin
    from cnrd.app.notify import SystemdNotifier

    runtime = top.getServiceNamed("dhcp")
    try:
        admin = top.getServiceNamed("api").admin  # the API's, so both see the same unsaved changes
    except KeyError:
        admin = Admin(runtime)

    def status() -> str:
        s = runtime.config.server
        return (f"serving DHCP on port {s.server_port}, {len(runtime.config.scopes)} scopes, "
                f"{len(runtime.table.leases)} leases")

    notifier = SystemdNotifier(reactor, status)
    HangupReload(reactor, admin, notifier).setServiceParent(top)
    notifier.setServiceParent(top)


CHECK_HELP = """usage: cnrd-check CONFIG.ini

Check a cnrd configuration file without starting a server: every section,
key and value as twistd cnrd would load it.  Prints "CONFIG.ini: ok (N scopes,
M reservations)" and exits 0, or prints the first problem as one line naming
the file, section and key, and exits 1.  Host-dependent checks (interfaces
that exist, a writable data-dir, the API token file) are made at start-up.

options:
  -h, --help   show this help and exit
  --version    print cnrd's version and exit"""


def check_main(argv: list[str] | None = None) -> int:
    """``cnrd-check FILE``: validate a configuration without starting a server."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(CHECK_HELP)
        return 0
    if args and args[0] == "--version":
        print(f"cnrd-check (cnrd) {__version__}")
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: cnrd-check CONFIG.ini (cnrd-check --help)\n")
        return 2
    try:
        config = load(args[0])
    except ConfigError as e:
        sys.stderr.write(f"cnrd: {e}\n")
        return 1
    print(f"{args[0]}: ok ({len(config.scopes)} scopes, {len(config.reservations)} reservations)")
    return 0

