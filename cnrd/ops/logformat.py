"""Log events as the lines twistd's log holds: twisted's classic text, journald's stream, JSON.

Pure formatting of one event at a time; :mod:`cnrd.ops.logs` writes them.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from typing import Any

from constantly import NamedConstant  # type: ignore[import-untyped]  # constantly ships no type information
from twisted.logger import (
    LogEvent,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)

__all__ = ["StampCache", "journal_line", "json_line", "stamp", "text_line"]

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


class StampCache:
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


stamp = StampCache()


def text_line(event: LogEvent) -> str | None:
    """twistd's own format (as textFileLogObserver writes it)."""
    return formatEventAsClassicLogText(event, formatTime=stamp)


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
