"""Telling systemd how the server is doing: sd_notify(3) over ``$NOTIFY_SOCKET``, stdlib only.

A unit with ``Type=notify`` (deploy/systemd/cnrd.service) waits for
``READY=1`` before it counts cnrd as started; :class:`SystemdNotifier` sends
it once the lease store is loaded and the DHCP socket answers, i.e. on the
reactor's first turn after every other service has started.  With
``WatchdogSec=`` set, systemd passes ``$WATCHDOG_USEC`` and kills a server
that stays silent that long: ``WATCHDOG=1`` goes out every half of it from a
reactor timer, so a wedged reactor stops the pings and gets restarted.

Outside systemd (no ``$NOTIFY_SOCKET``) everything here does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

from twisted.application import service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["notify", "watchdog_interval", "SystemdNotifier"]

log = Logger(namespace="cnrd")


def _address(env: Mapping[str, str]) -> str | bytes | None:
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode()  # Linux abstract namespace
    return path


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``"READY=1"``, ``"WATCHDOG=1"``, newline-separated assignments) to systemd.

    True when it was sent; False without ``$NOTIFY_SOCKET`` or when the
    socket is gone (a notification is never worth failing the server for).
    """
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``; None when no watchdog is asked for.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is for; a
    child that inherited the environment must not ping for its parent.
    """
    e = os.environ if env is None else env
    try:
        usec = int(e.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = e.get("WATCHDOG_PID")
    if owner and owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return usec / 2e6


class SystemdNotifier(service.Service):
    """READY=1 once everything has started, WATCHDOG=1 at half the watchdog interval, STOPPING=1 at stop.

    Must be the last child of the service tree so that its ``startService``
    runs after the runtime's (store loaded, DHCP port open).  ``status``
    gives the one-line STATUS= text systemctl shows.
    """

    name = "systemd-notify"

    def __init__(self, reactor: IReactorTime, status: Callable[[], str] = lambda: "",
                 env: Mapping[str, str] | None = None,
                 send: Callable[[str], bool] | None = None) -> None:
        self.reactor = reactor
        self._env = dict(os.environ if env is None else env)
        self._status = status
        self._send: Callable[[str], bool] = send or (lambda m: notify(m, self._env))
        self._watchdog: LoopingCall | None = None
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (``$NOTIFY_SOCKET`` is set)."""
        return _address(self._env) is not None

    def startService(self) -> None:
        service.Service.startService(self)
        if not self.enabled:
            return
        # The first turn of the reactor: every service has started and the
        # DHCP socket is read from now on.
        self.reactor.callLater(0, self._ready)
        interval = watchdog_interval(self._env)
        if interval is not None:
            loop = self._watchdog = LoopingCall(self._send, "WATCHDOG=1")
            loop.clock = self.reactor
            loop.start(interval, now=True)

    def _ready(self) -> None:
        if not self.running:
            return
        status = self._status()
        self.ready_sent = self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))
        log.info("told systemd the server is ready")

    def reloading(self) -> None:
        """A reload begins (``RELOADING=1``); :meth:`reloaded` ends it."""
        if self.enabled:
            self._send("RELOADING=1")

    def reloaded(self, outcome: str) -> None:
        """A reload ended: READY=1 again, with its outcome as STATUS."""
        if self.enabled:
            self._send(f"READY=1\nSTATUS={outcome}")

    def stopService(self) -> None:
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
        if self.enabled and self.running:
            self._send("STOPPING=1")
        service.Service.stopService(self)
