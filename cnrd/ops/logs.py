"""What goes to the operator's log: CNR's log-settings, and JSON lines.

Two halves:

* :class:`EventLogger` turns the core's events (``DhcpServer`` and ``Peer``
  call ``log(event, fields)``) into log lines.  Which lines appear follows
  ``[server] log-settings`` as Cisco Network Registrar defines them
  ("Troubleshooting Failover"), read at the time of each event, because the
  admin API can change them while the server runs:

  ``failover-detail``
      every BNDUPD and BNDACK sent and received, one line each;
  ``no-failover-activity``
      no lines for normal failover activity (link up and down, partner heard,
      pool split, the backup's "dropped because failover is in NORMAL");
      warnings, errors and state changes still appear;
  ``no-failover-conflict``
      no lines for binding conflicts between the partners (updates one side
      rejected);
  ``incoming-packet-detail``
      a line for each request dropped, with the reason;
  ``no-success-messages``
      no lease lines for successful exchanges (OFFER, ACK, INFORM answers,
      BOOTREPLY, RELEASE, expiry); NAKs and DECLINEs still appear.

* :class:`LeaseLogger` writes the lease lines (:mod:`cnrd.ops.leaselog`,
  worded as ISC dhcpd's): one per reply the request path sends and per
  release or expiry the lease table reports.

* :func:`observer` writes twistd's log: the usual text lines, or one JSON
  object per line while log-settings has ``json``.  ``twistd cnrd`` installs
  it through :func:`use_for_twistd` (twistd's own ``--logger`` hook), so the
  log file, stdout under ``-n``, and log rotation stay as twistd does them.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from types import FrameType
from typing import IO, Any, Protocol, cast

from constantly import NamedConstant  # type: ignore[import-untyped]  # constantly ships no type information
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python import usage
from twisted.python.logfile import LogFile

from cnrd.dhcp.packet import DhcpPacket, MessageType
from cnrd.ops.leaselog import LeaseLine, decline_line, expiry_line, release_line, reply_line
from cnrd.ops.traps import reject_name
from cnrd.text import int_to_ip, ip_to_int

log = Logger(namespace="cnrd")

# Categories of log lines, and the log-settings that show or hide them.
DETAIL = "failover-detail"  # shown only with failover-detail
ACTIVITY = "failover-activity"  # hidden by no-failover-activity
CONFLICT = "failover-conflict"  # hidden by no-failover-conflict
PACKET_DETAIL = "incoming-packet-detail"  # shown only with incoming-packet-detail
SUCCESS = "success"  # lease lines of successful exchanges, hidden by no-success-messages
ALWAYS = "always"


def shown(category: str, settings: AbstractSet[str]) -> bool:
    """Whether a line of ``category`` goes to the log under ``settings`` (log-settings)."""
    if category == DETAIL:
        return "failover-detail" in settings
    if category == ACTIVITY:
        return "no-failover-activity" not in settings
    if category == CONFLICT:
        return "no-failover-conflict" not in settings
    if category == PACKET_DETAIL:
        return "incoming-packet-detail" in settings
    if category == SUCCESS:
        return "no-success-messages" not in settings
    return True


# States worth a warning on entry: the partner is gone or the pair disagrees.
_TROUBLE_STATES = frozenset({"COMMUNICATIONS-INTERRUPTED", "PARTNER-DOWN", "POTENTIAL-CONFLICT",
                             "RESOLUTION-INTERRUPTED"})

_REJECT = " (reject reason {reason} {reason_name})"

# Peer events: (category, level, format).  The format's fields are the
# event's, with addresses dotted and reject reasons named (see _fields).
_FAILOVER: dict[str, tuple[str, LogLevel, str]] = {
    "failover-comm-ok": (ACTIVITY, LogLevel.info, "failover pair {pair}: partner heard, in state {partner_state}"),
    "failover-comm-lost": (ALWAYS, LogLevel.warn, "failover pair {pair}: communication with the partner lost"),
    "failover-partner-not-heard": (ALWAYS, LogLevel.warn,
                                   "failover pair {pair}: partner not heard in {seconds} s after start-up"),
    "failover-handshake-timeout": (ALWAYS, LogLevel.warn,
                                   "failover pair {pair}: the partner did not complete the handshake"),
    "failover-reject": (ALWAYS, LogLevel.warn, "failover pair {pair}: rejected the partner: {message}" + _REJECT),
    "failover-rejected": (ALWAYS, LogLevel.warn, "failover pair {pair}: the partner rejected us: {message}" + _REJECT),
    "failover-disconnect": (ALWAYS, LogLevel.warn,
                            "failover pair {pair}: the partner disconnected: {message}" + _REJECT),
    "failover-bndack-reject": (CONFLICT, LogLevel.warn,
                               "failover pair {pair}: the partner rejected our update for {address}: "
                               "{message}" + _REJECT),
    "failover-bndupd-reject": (CONFLICT, LogLevel.warn,
                               "failover pair {pair}: rejected the partner's update for {address}: "
                               "{message}" + _REJECT),
    "failover-pool-split": (ACTIVITY, LogLevel.info,
                            "failover pair {pair}: {moved} free addresses handed to the backup"),
    "failover-role-changed": (ALWAYS, LogLevel.warn,
                              ("failover pair {pair}: this server is now the {role}; the failover state stored "
                               "for the old roles is discarded")),
    "failover-recover-still-set": (ALWAYS, LogLevel.warn,
                                   ("failover pair {pair}: [server] failover-recover is still set ({since}); "
                                    "unset it, or the next restart discards what this server learnt since")),
}

NORMAL_DROP_INTERVAL = 60  # seconds between the backup's "dropped in NORMAL" summaries


def _fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """An event's fields for its log line: addresses dotted, reject reasons named."""
    out = dict(fields)
    if isinstance(out.get("address"), int):
        out["address"] = int_to_ip(out["address"])
    if "reason" in out:
        out["reason_name"] = reject_name(out["reason"])
    if "message" in out and not out["message"]:
        out["message"] = "no message"
    return out


class EventLogger:
    """The core's events as log lines, per the log-settings in force at each event.

    ``settings`` returns the current log-settings (the service passes
    ``lambda: dhcp.config.server.log_settings``); ``clock`` paces the
    once-a-minute summaries.
    """

    def __init__(self, settings: Callable[[], AbstractSet[str]], clock: IReactorTime) -> None:
        self.settings = settings
        self.clock = clock
        self._normal_drops = 0
        self._normal_drop_logged = -1e9

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        """Log one event from the DHCP server core or a failover peer."""
        if event == "dhcp-drop":
            self._drop(event, fields)
        elif event == "dhcp-nak":
            pass  # the request path's lease line tells of the NAK as it is sent
        elif event == "dhcp-decline":
            _emit(_decline(fields))
        elif event == "failover-state":
            level = LogLevel.warn if fields["to"] in _TROUBLE_STATES else LogLevel.info
            log.emit(level, "failover pair {pair}: state {old} -> {new} ({reason})", event=event,
                     pair=fields["pair"], old=fields["from"], new=fields["to"], reason=fields["reason"])
        elif event in _FAILOVER:
            category, level, fmt = _FAILOVER[event]
            if shown(category, self.settings()):
                log.emit(level, fmt, event=event, **_fields(fields))
        else:
            log.info("{event} {fields}", event=event, fields=fields)

    def _drop(self, event: str, fields: dict[str, Any]) -> None:
        reason = fields.get("reason", "")
        settings = self.settings()
        if reason == "failover-normal-backup":
            # CNR's "Confirming Failover" step 6: the backup says why it is
            # silent; once a minute with a count, not once per packet.
            if not shown(ACTIVITY, settings):
                return
            now = self.clock.seconds()
            self._normal_drops += 1
            if now - self._normal_drop_logged >= NORMAL_DROP_INTERVAL:
                log.info("backup server dropped {n} DHCP requests because failover is in NORMAL",
                         event=event, n=self._normal_drops)
                self._normal_drop_logged = now
                self._normal_drops = 0
        elif shown(PACKET_DETAIL, settings):
            log.info("dropped request: {reason}", event=event, **fields)


def _decline(fields: Mapping[str, Any]) -> LeaseLine:
    """The lease line of the core's dhcp-decline event (its client is hex htype + chaddr)."""
    address = fields.get("address", 0)
    try:
        hw = bytes.fromhex(str(fields.get("client", "")))[1:]
        address = ip_to_int(address) if isinstance(address, str) else int(address)
    except ValueError:
        hw, address = b"", 0
    cid = fields.get("client_id")
    return decline_line(address, hw, cid if isinstance(cid, bytes) else None)


def _emit(line: LeaseLine) -> None:
    # The text is formatted here, once, by str.format: Twisted's own
    # formatting of a format with fields costs several times more on a line
    # written for every exchange.  Escaped, it reads as literal text.
    text = line.text.replace("{", "{{").replace("}", "}}")
    log.emit(LogLevel.info, text, **line.fields)


class SentReply(Protocol):
    """What a lease line reads of a reply the request path sent (:class:`cnrd.dhcp.model.Reply`)."""

    @property
    def packet(self) -> DhcpPacket: ...


class LeaseRecord(Protocol):
    """What a lease line reads of a changed lease (:class:`cnrd.leases.model.Lease`)."""

    @property
    def address(self) -> int: ...
    @property
    def hw(self) -> bytes: ...  # htype byte + chaddr
    @property
    def client_id(self) -> bytes | None: ...
    @property
    def host_name(self) -> str: ...


# Replies that offer, grant or refuse a lease; lease query answers have no line.
_LEASE_REPLIES = frozenset({bytes([MessageType.OFFER]), bytes([MessageType.ACK]), bytes([MessageType.NAK])})
_NAK = bytes([MessageType.NAK])


class LeaseLogger:
    """The lease lines, one per exchange, per the log-settings in force at each.

    ``via(reply)`` names where a reply went (the relay's address or the
    interface); ``known(address)`` is the host name and client identifier
    the server holds for an address (``("", None)`` when none).  Both are
    asked only for a line that is shown: the request path is hot.
    """

    def __init__(self, settings: Callable[[], AbstractSet[str]], *, via: Callable[[Any], str],
                 known: Callable[[int], tuple[str, bytes | None]]) -> None:
        self.settings = settings
        self.via = via
        self.known = known

    def sent(self, reply: SentReply, request: DhcpPacket | None = None) -> None:
        """A reply went on the wire: its lease line (``request`` is what it answered, when known)."""
        packet = reply.packet
        kind = packet.options.get(53)
        if kind is not None and kind not in _LEASE_REPLIES:
            return
        if kind != _NAK and not shown(SUCCESS, self.settings()):
            return
        host_name, client_id = self.known(packet.yiaddr or packet.ciaddr) if kind != _NAK else ("", None)
        line = reply_line(packet, self.via(reply), host_name=host_name, client_id=client_id, request=request)
        if line is not None:
            _emit(line)

    def lease_changed(self, lease: LeaseRecord, what: str) -> None:
        """A durable lease change (a :attr:`cnrd.leases.table.LeaseTable.listeners` entry): RELEASE, expiry."""
        if what == "release":
            make = release_line
        elif what == "expire":
            make = expiry_line
        else:
            return
        if not shown(SUCCESS, self.settings()):
            return
        _emit(make(lease.address, lease.hw[1:], lease.client_id, lease.host_name))


# -- the observer ----------------------------------------------------------------

# Keys of events from the legacy twisted.python.log API, already in "message".
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "time", "why", "failure"})


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as something json.dumps writes as one valid JSON value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (enum.Enum, NamedConstant)):  # Python enums; twisted's LogLevel
        return value.name
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if depth < 4:
        if isinstance(value, dict):
            return {str(k): _plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
            return [_plain(v, depth + 1) for v in items]
    return str(value)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    when = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def json_line(event: LogEvent) -> str:
    """One log event as one line of JSON.

    ``time`` (UTC, ISO 8601), ``level``, ``namespace`` and ``message`` (the
    text the line would have had) come first; then the event's own fields
    (``event``, ``pair``, ``reason`` ...), and ``traceback`` for a failure.
    """
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": _iso(event.get("log_time")),
        "level": getattr(level, "name", None),
        "namespace": event.get("log_namespace") or event.get("log_system"),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in out:
            continue
        out[key] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            out["traceback"] = failure.getTraceback()
        except Exception:  # a broken failure must not lose the line
            out["traceback"] = repr(failure)
    # json.dumps escapes newlines inside strings: always exactly one line.
    return json.dumps(out, ensure_ascii=False, allow_nan=False) + "\n"


class _StampCache:
    """twistd's time stamps (RFC 3339, whole seconds), worked out once per second.

    With a lease line for every exchange the stamp was the dearest part of
    a text line; every line of one second has the same one.
    """

    def __init__(self) -> None:
        self._last: tuple[int, str] = (-1, "")  # one attribute: a reader never sees half an update

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when, timeFormatRFC3339)
        second = math.floor(when)
        last = self._last
        if last[0] != second:
            last = self._last = (second, formatTime(second, timeFormatRFC3339))
        return last[1]


_stamp = _StampCache()


def _text_line(event: LogEvent) -> str | None:
    """twistd's own format (as textFileLogObserver writes it)."""
    return formatEventAsClassicLogText(event, formatTime=_stamp)


# syslog priorities (sd-daemon(3) prefixes) for twisted.logger's levels.
_JOURNAL_PRIORITY = {LogLevel.debug: 7, LogLevel.info: 6, LogLevel.warn: 4, LogLevel.error: 3,
                     LogLevel.critical: 2}


def journal_line(event: LogEvent) -> str | None:
    """A line for journald's stdout stream: its ``<priority>`` prefix, the system, the text; no time stamp.

    journald stamps each line itself and takes the priority from the prefix
    (sd-daemon(3)); a second time stamp would only repeat it.
    """
    text = formatEvent(event)
    if not text:
        return None
    level = event.get("log_level")
    prio = _JOURNAL_PRIORITY.get(level, 6) if isinstance(level, NamedConstant) else 6
    system = event.get("log_system") or event.get("log_namespace") or "-"
    failure = event.get("log_failure")
    if failure is not None:
        try:
            text += "\n" + failure.getTraceback()
        except Exception:
            text += "\n" + repr(failure)
    # One journal entry per line: continuation lines keep the priority.
    return "".join(f"<{prio}>[{system}] {part}\n" for part in text.split("\n"))


def journal_stream(out: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """Whether ``out`` is the journald stream systemd connected (``$JOURNAL_STREAM`` names its device:inode)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(out.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def observer(out: IO[str], settings: Callable[[], AbstractSet[str]], *, journal: bool = False) -> ILogObserver:
    """A log observer writing to ``out``: twistd's text lines, or JSON lines while ``settings()`` has json.

    ``journal``: text lines in journald's form (:func:`journal_line`).
    """
    text_line = journal_line if journal else _text_line

    def fmt(event: LogEvent) -> str | None:
        try:
            as_json = "json" in settings()
        except Exception:  # the log must keep working whatever the settings source does
            as_json = False
        return json_line(event) if as_json else text_line(event)

    return FileLogObserver(out, fmt)


class SettingsSource:
    """Where the twistd observer reads log-settings: the running configuration once there is one."""

    def __init__(self, initial: AbstractSet[str] = frozenset()) -> None:
        self._get: Callable[[], AbstractSet[str]] = lambda: initial

    def follow(self, get: Callable[[], AbstractSet[str]]) -> None:
        """Read the settings from ``get()`` from now on (``lambda: dhcp.config.server.log_settings``)."""
        self._get = get

    def __call__(self) -> AbstractSet[str]:
        return self._get()


class _TwistdLog:
    """What :func:`twistd_observer` needs; twistd's --logger takes a name, not an object."""

    logfile = ""
    nodaemon = False
    max_size = 10 << 20
    max_files = 10
    settings: Callable[[], AbstractSet[str]] = SettingsSource()


_twistd = _TwistdLog()


def use_for_twistd(options: usage.Options, settings: Callable[[], AbstractSet[str]], *,
                   max_size: int = 10 << 20, max_files: int = 10) -> bool:
    """Have twistd log through :func:`observer`; call from the plugin's ``postOptions``.

    A log file is rotated when it reaches ``max_size`` bytes, keeping
    ``max_files`` rotated files (0: all of them), as ``[server] log-max-size``
    and ``log-max-files`` say.

    Sets twistd's ``--logger`` to :func:`twistd_observer`, unless the
    operator chose ``--logger`` or ``--syslog`` (then twistd logs as told,
    and only the log-settings filtering applies).  True when it did.
    """
    _twistd.settings = settings
    parent = getattr(options, "parent", None)
    if parent is None or parent.get("logger") or parent.get("syslog"):
        return False
    _twistd.logfile = parent.get("logfile") or ""
    _twistd.nodaemon = bool(parent.get("nodaemon"))
    _twistd.max_size, _twistd.max_files = max_size, max_files
    # twistd resolves the name itself after our postOptions (namedAny).
    parent["logger"] = f"{__name__}.twistd_observer"
    return True


def twistd_observer() -> ILogObserver:
    """twistd's ``--logger`` factory: :func:`observer` on the file twistd itself would use."""
    out = _open_twistd_log(_twistd.logfile, _twistd.nodaemon, _twistd.max_size, _twistd.max_files)
    return observer(out, _twistd.settings, journal=journal_stream(out))


def _open_twistd_log(logfile: str, nodaemon: bool, max_size: int = 10 << 20, max_files: int = 10) -> IO[str]:
    # The choice twistd makes without --logger (UnixAppLogger): stdout when
    # not daemonizing and no file is named, else the file (twistd.log by
    # default), rotated on SIGUSR1.
    if logfile == "-" or (nodaemon and not logfile):
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    out = open_log_file(logfile or "twistd.log", max_size, max_files)

    def rotate(signum: int, frame: FrameType | None) -> None:
        # twistd's --logger factory is called without arguments, so the
        # reactor twistd runs is looked up here; callFromThread is the one
        # reactor call that is safe from a signal handler.
        from twisted.internet import reactor

        cast(IReactorFromThreads, reactor).callFromThread(out.rotate)

    signal.signal(signal.SIGUSR1, rotate)
    # FileLogObserver only writes and flushes, which LogFile does.
    return cast(IO[str], out)


def open_log_file(path: str, max_size: int, max_files: int) -> LogFile:
    """``path`` as a log file rotated at ``max_size`` bytes, keeping ``max_files`` old ones (0: all).

    Rotated files are ``path.1`` (newest) up to ``path.N``; the oldest goes.
    """
    out: LogFile = LogFile.fromFullPath(path, rotateLength=max_size, maxRotatedFiles=max_files or None)
    return out
