"""Points in time as operators type them: the CNR CLI's two conventions, and ISO 8601.

CNR 7.2 (``dhcp setPartnerDown``) takes a date in one of two conventions:

* ``-num unit``: a time in the past, ``num`` a decimal number and ``unit``
  one of ``s m h d w``; cnrd also accepts several combined (``-1d12h``);
* month (name or its first three letters), day, hour (24-hour, optionally
  with ``:minutes`` and ``:seconds``), year (all four digits or the last
  two): ``Nov 25 14 2026``, ``November 25 14:00 2026``, ``nov 25 14:00 26``.

CNR reads such a date as "the time that is local to the nrcmd process";
cnrd reads it in the time zone passed in (the API passes the server's local
zone, which is the CLI's when both run on one host).  ISO 8601 is accepted
too; an ISO time without an offset is UTC, as in the configuration file.

Pure module: ``now`` is an argument, nothing here reads a clock.
"""

from __future__ import annotations

import datetime
import re

__all__ = ["TimeSpecError", "parse_when", "parse_relative", "parse_words", "format_iso"]

_UTC = datetime.timezone.utc
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE_RE = re.compile(r"-\s*((?:[0-9]+\s*[smhdw]\s*)+)", re.IGNORECASE)
_PART_RE = re.compile(r"([0-9]+)\s*([smhdw])", re.IGNORECASE)
_MONTHS = {
    name: i + 1
    for i, name in enumerate(("january", "february", "march", "april", "may", "june", "july",
                              "august", "september", "october", "november", "december"))
}
_CLOCK_RE = re.compile(r"([0-9]{1,2})(?::([0-9]{2}))?(?::([0-9]{2}))?")
# Far enough for any lease database; beyond it datetime arithmetic overflows.
_MAX_SECONDS = 100 * 366 * 86400


class TimeSpecError(ValueError):
    """Text that is not a time in any accepted convention; ``str()`` says why, on one line."""


def parse_relative(text: str, now: int) -> int:
    """``-3d`` / ``-1d12h`` / ``-90s``: that long before ``now`` (epoch seconds)."""
    m = _RELATIVE_RE.fullmatch(text.strip())
    if not m:
        raise TimeSpecError(f"bad relative time {text.strip()!r} (use -num unit, unit s m h d or w, e.g. -3d)")
    seconds = sum(int(n) * _UNITS[u.lower()] for n, u in _PART_RE.findall(m.group(1)))
    if seconds > _MAX_SECONDS:
        raise TimeSpecError(f"relative time {text.strip()!r} is too far in the past")
    return now - seconds


def _month(word: str) -> int:
    w = word.lower().rstrip(".")
    if w in _MONTHS:
        return _MONTHS[w]
    for name, number in _MONTHS.items():
        if len(w) == 3 and name.startswith(w):
            return number
    raise TimeSpecError(f"unknown month {word!r} (use its name or first three letters)")


def parse_words(text: str, tz: datetime.tzinfo | None = None) -> int:
    """``Nov 25 14:00 2026``: month, day, hour[:min[:sec]], year, read in ``tz``.

    ``tz`` None means the local time zone of this process (with its
    daylight-saving rules for that date).
    """
    words = text.replace(",", " ").split()
    if len(words) != 4:
        raise TimeSpecError(f"bad date {text.strip()!r} (use month day hour year, e.g. Nov 25 14:00 2026)")
    month = _month(words[0])
    if not words[1].isdigit():
        raise TimeSpecError(f"bad day {words[1]!r}")
    day = int(words[1])
    clock = _CLOCK_RE.fullmatch(words[2])
    if not clock:
        raise TimeSpecError(f"bad hour {words[2]!r} (24-hour: 14, 14:05 or 14:05:30)")
    hour, minute, second = (int(g) if g is not None else 0 for g in clock.groups())
    year_text = words[3]
    if not year_text.isdigit() or len(year_text) not in (2, 4):
        raise TimeSpecError(f"bad year {year_text!r} (all four digits or the last two)")
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    try:
        naive = datetime.datetime(year, month, day, hour, minute, second)
    except ValueError as e:
        raise TimeSpecError(f"bad date {text.strip()!r}: {e}") from None
    if tz is None:
        # A naive datetime's timestamp() is read in the process's local zone.
        return int(naive.timestamp())
    return int(naive.replace(tzinfo=tz).timestamp())


def parse_iso(text: str) -> int:
    """ISO 8601 (``2026-11-25T14:00:00Z``, ``2026-11-25 14:00+01:00``); no offset means UTC."""
    t = text.strip()
    try:
        when = datetime.datetime.fromisoformat(t)
    except ValueError:
        raise TimeSpecError(f"bad time {t!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    try:
        return int(when.timestamp())
    except (OverflowError, ValueError):
        raise TimeSpecError(f"time {t!r} is out of range") from None


def parse_when(text: str, now: int, tz: datetime.tzinfo | None = None) -> int:
    """A point in time in any accepted convention, as epoch seconds.

    ``-num unit`` relative to ``now``; ``month day hour year`` words in
    ``tz`` (None: this process's local zone); else ISO 8601.
    """
    if not isinstance(text, str):
        raise TimeSpecError("a time must be a string")
    t = text.strip()
    if not t:
        raise TimeSpecError("empty time")
    if t.startswith("-"):
        return parse_relative(t, now)
    if t[0].isalpha():
        return parse_words(t, tz)
    try:
        return parse_iso(t)
    except TimeSpecError:
        raise TimeSpecError(f"bad time {t!r} (use -num unit like -3d, a date like Nov 25 14:00 2026, "
                            "or ISO 8601 like 2026-11-25T14:00:00Z)") from None


def format_iso(epoch: int | float | None) -> str | None:
    """``2026-11-28T07:30:00Z`` for epoch seconds; None for None, 0 or a time no calendar holds."""
    if not epoch:
        return None
    try:
        when = datetime.datetime.fromtimestamp(int(epoch), _UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
