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

* Lease lines straight to that observer (:func:`direct_lease_lines`): when
  it is the one observer, a text line needs no log event, and the lines of
  one reactor turn are written together (one write, one flush) at the end
  of the turn, or sooner: before any other line, at 512 waiting, at exit.
  A lease line therefore reaches the file at most one reactor turn after
  its reply left; a kill -9 inside that turn loses it.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from types import FrameType
from typing import IO, Any, Protocol, cast

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel
from twisted.python import usage
from twisted.python.logfile import LogFile
from zope.interface import implementer

from cnrd.dhcp.packet import DhcpPacket, MessageType
from cnrd.ops.leaselog import (
    LeaseLine,
    decline_line,
    expiry_line,
    release_line,
    reply_line,
    reply_text,
)
from cnrd.ops.logformat import StampCache as _StampCache  # noqa: F401  (tests compare it with twistd's)
from cnrd.ops.logformat import journal_line, json_line, stamp, text_line
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
        #: The log observer that takes the text of a line without a log
        #: event (:func:`direct_lease_lines`); None: every line is an event.
        self.direct: LogWriter | None = None
        # Relay addresses as ``via`` names them: a few relays, in every line.
        self._relays: dict[int, str] = {}

    def sent(self, reply: SentReply, request: DhcpPacket | None = None) -> None:
        """A reply went on the wire: its lease line (``request`` is what it answered, when known)."""
        packet = reply.packet
        kind = packet.options.get(53)
        if kind is not None and kind not in _LEASE_REPLIES:
            return
        settings = self.settings()
        if kind != _NAK and "no-success-messages" in settings:
            return
        host_name, client_id = self.known(packet.yiaddr or packet.ciaddr) if kind != _NAK else ("", None)
        direct = self.direct
        if direct is not None and direct.takes_text(settings):
            giaddr = packet.giaddr
            via = self._relays.get(giaddr) if giaddr else None
            if via is None:
                via = self._via(reply, giaddr)
            text = reply_text(packet, via, host_name=host_name, client_id=client_id, request=request)
            if text is not None:
                direct.lease_text(text)
            return
        line = reply_line(packet, self.via(reply), host_name=host_name, client_id=client_id, request=request)
        if line is not None:
            _emit(line)

    def _via(self, reply: SentReply, giaddr: int) -> str:
        """``via(reply)``, kept for a relay's address (bounded: the address is the sender's to pick)."""
        via = self.via(reply)
        if giaddr:
            if len(self._relays) >= 1024:
                self._relays.clear()
            self._relays[giaddr] = via
        return via

    def lease_changed(self, lease: LeaseRecord, what: str) -> None:
        """A durable lease change (a :attr:`cnrd.leases.table.LeaseTable.listeners` entry): RELEASE, expiry."""
        if what == "release":
            make = release_line
        elif what == "expire":
            make = expiry_line
        else:
            return
        settings = self.settings()
        if not shown(SUCCESS, settings):
            return
        line = make(lease.address, lease.hw[1:], lease.client_id, lease.host_name)
        direct = self.direct
        if direct is not None and direct.takes_text(settings):
            direct.lease_text(line.text)
        else:
            _emit(line)


# -- the observer ----------------------------------------------------------------


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


def observer(out: IO[str], settings: Callable[[], AbstractSet[str]], *, journal: bool = False) -> LogWriter:
    """A log observer writing to ``out``: twistd's text lines, or JSON lines while ``settings()`` has json.

    ``journal``: text lines in journald's form (:func:`journal_line`).
    """
    return LogWriter(out, settings, journal=journal)


#: Lease lines waiting for the end of the turn before they are written at once.
MAX_PENDING = 512


@implementer(ILogObserver)
class LogWriter:
    """twistd's log observer (:func:`observer`), which also takes lease lines as text.

    A log event is written and flushed as it comes, as twisted's
    FileLogObserver does.  A lease line given by :meth:`lease_text` waits
    in a list until :meth:`flush`: the one ``schedule`` (the reactor's
    ``callLater(0, ...)``) asks for at the turn's end, the next log event,
    :data:`MAX_PENDING` lines, or the process's exit; so the lines keep
    their order among the other lines, and a turn's lines cost one write
    and one flush.
    """

    def __init__(self, out: IO[str], settings: Callable[[], AbstractSet[str]], *, journal: bool = False) -> None:
        self.out = out
        self.settings = settings
        self.journal = journal
        self._text_line = journal_line if journal else text_line
        #: Runs the function it is given once the current reactor turn is
        #: over; None: every lease line is written at once.
        self.schedule: Callable[[Callable[[], None]], object] | None = None
        self._pending: list[str] = []
        # twistd's stamp of an info line of the cnrd namespace, or journald's prefix.
        self._system = "<6>[cnrd] " if journal else " [cnrd#info] "
        # The second of the last line's stamp, and the stamp and system for it.
        self._second = -1.0
        self._prefix = self._system

    def _format(self, event: LogEvent) -> str | None:
        try:
            as_json = "json" in self.settings()
        except Exception:  # the log must keep working whatever the settings source does
            as_json = False
        return json_line(event) if as_json else self._text_line(event)

    def __call__(self, event: LogEvent) -> None:
        """Write one log event (after the lease lines before it)."""
        text = self._format(event)
        if self._pending:
            self._write_pending()
        elif not text:
            return
        if text:
            _write(self.out, [text])
        self.out.flush()

    def takes_text(self, settings: AbstractSet[str]) -> bool:
        """Whether a lease line may come as text under ``settings``: not while lines are JSON."""
        return "json" not in settings

    def lease_text(self, text: str) -> None:
        """A lease line's text (info, namespace cnrd), to be written by the turn's end."""
        pending = self._pending
        if "\n" in text:  # never from leaselog's lines, which show control characters escaped
            pending.append(self._lines(text))
        else:
            now = time.time()
            if not self._second <= now < self._second + 1:
                self._second = math.floor(now)
                self._prefix = self._system if self.journal else stamp(now) + self._system
            pending.append(self._prefix + text + "\n")
        if len(pending) == 1 and self.schedule is not None:
            self.schedule(self.flush)
        elif len(pending) >= MAX_PENDING or self.schedule is None:
            self.flush()

    def _lines(self, text: str) -> str:
        """``text`` of several lines as the journal (a prefix each) or twisted (a tab each) continues them."""
        if self.journal:
            return "".join(self._system + part + "\n" for part in text.split("\n"))
        return stamp(time.time()) + self._system + text.replace("\n", "\n\t") + "\n"

    def flush(self) -> None:
        """Write the waiting lease lines, with one flush."""
        if self._pending:
            self._write_pending()
            self.out.flush()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, []
        _write(self.out, pending)


def _write(out: IO[str], lines: list[str]) -> None:
    """``lines`` to ``out`` in as few writes as a rotated log file allows.

    A :class:`LogFile` rotates before a write once it holds its limit: the
    lines are cut into writes where one write per line would have rotated,
    so each file ends where it did.
    """
    limit = out.rotateLength if isinstance(out, LogFile) else 0
    if not limit:
        out.write(lines[0] if len(lines) == 1 else "".join(lines))
        return
    size = cast(LogFile, out).size
    chunk: list[str] = []
    for line in lines:
        if size >= limit:
            if chunk:
                out.write("".join(chunk))
                chunk = []
            size = 0
        chunk.append(line)
        size += len(line) if line.isascii() else len(line.encode("utf-8"))
    out.write("".join(chunk))


def direct_lease_lines(lease_log: LeaseLogger, writer: LogWriter,
                       schedule: Callable[[Callable[[], None]], object] | None) -> None:
    """Have ``lease_log`` hand its text lines to ``writer``, written once per turn as ``schedule`` runs.

    Only for a ``writer`` that is the one log observer: a lease line then
    goes to no other observer (in JSON, the lines stay log events).
    """
    writer.schedule = schedule
    lease_log.direct = writer
    atexit.register(writer.flush)


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
    writer: LogWriter | None = None
    direct: tuple[LeaseLogger, Callable[[Callable[[], None]], object]] | None = None


_twistd = _TwistdLog()


def direct_in_twistd(lease_log: LeaseLogger, schedule: Callable[[Callable[[], None]], object]) -> None:
    """:func:`direct_lease_lines` to twistd's observer, once twistd made it (after ``makeService``).

    Nothing changes when twistd logs through another observer (the
    operator's ``--logger`` or ``--syslog``).
    """
    _twistd.direct = (lease_log, schedule)
    if _twistd.writer is not None:
        direct_lease_lines(lease_log, _twistd.writer, schedule)


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
    writer = _twistd.writer = observer(out, _twistd.settings, journal=journal_stream(out))
    if _twistd.direct is not None:
        direct_lease_lines(_twistd.direct[0], writer, _twistd.direct[1])
    return writer


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

        cast(IReactorFromThreads, reactor).callFromThread(_rotate, out)

    signal.signal(signal.SIGUSR1, rotate)
    # FileLogObserver only writes and flushes, which LogFile does.
    return cast(IO[str], out)


def _rotate(out: LogFile) -> None:
    # The lease lines still waiting belong to the file before the rotation.
    if _twistd.writer is not None:
        _twistd.writer.flush()
    out.rotate()


def open_log_file(path: str, max_size: int, max_files: int) -> LogFile:
    """``path`` as a log file rotated at ``max_size`` bytes, keeping ``max_files`` old ones (0: all).

    Rotated files are ``path.1`` (newest) up to ``path.N``; the oldest goes.
    """
    out: LogFile = LogFile.fromFullPath(path, rotateLength=max_size, maxRotatedFiles=max_files or None)
    return out
