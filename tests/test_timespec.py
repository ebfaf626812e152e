"""The CNR CLI's time conventions (setPartnerDown, failover-recover) and ISO 8601."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnrd.config.timespec import TimeSpecError, format_iso, parse_relative, parse_when, parse_words

UTC = datetime.timezone.utc
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@pytest.mark.parametrize("text, seconds", [
    ("-3d", 3 * 86400),
    ("-90s", 90),
    ("-5m", 300),
    ("-2h", 7200),
    ("-1w", 604800),
    ("-1d12h", 86400 + 12 * 3600),
    ("- 1d 12h", 86400 + 12 * 3600),
    ("-3D", 3 * 86400),
    ("-0s", 0),
])
def test_relative(text, seconds):
    assert parse_when(text, NOW) == NOW - seconds


@given(st.lists(st.tuples(st.integers(0, 500), st.sampled_from("smhdw")), min_size=1, max_size=4))
def test_relative_is_the_sum_of_its_parts(parts):
    text = "-" + "".join(f"{n}{u}" for n, u in parts)
    total = sum(n * UNITS[u] for n, u in parts)
    assert parse_relative(text, NOW) == NOW - total


@pytest.mark.parametrize("text", ["-", "-3", "-3x", "-d3", "3d", "-3d-1h", "--3d", "-1.5h", "-99999999w"])
def test_bad_relative(text):
    with pytest.raises(TimeSpecError):
        parse_when(text, NOW)


@pytest.mark.parametrize("text, expected", [
    ("Nov 25 14:00 2026", "2026-11-25T14:00:00Z"),
    ("November 25 14 2026", "2026-11-25T14:00:00Z"),
    ("nov 25 14:05:30 26", "2026-11-25T14:05:30Z"),
    ("Feb 29 0 2028", "2028-02-29T00:00:00Z"),
    ("Jan 1, 23:59, 2027", "2027-01-01T23:59:00Z"),
    ("Sept 1 1 2026", None),  # four letters that are not the full name
])
def test_words(text, expected):
    if expected is None:
        with pytest.raises(TimeSpecError):
            parse_words(text, UTC)
    else:
        assert format_iso(parse_words(text, UTC)) == expected


def test_words_are_read_in_the_given_zone():
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    assert parse_words("Nov 25 14:00 2026", plus2) == parse_words("Nov 25 12:00 2026", UTC)


@pytest.mark.parametrize("text", ["Foo 25 14:00 2026", "Nov 31 14:00 2026", "Nov 25 24:00 2026",
                                  "Nov 25 14:61 2026", "Nov 25 14:00", "Nov 25 14:00 202", "Nov x 14 2026",
                                  "Nov 25 2pm 2026"])
def test_bad_words(text):
    with pytest.raises(TimeSpecError):
        parse_when(text, NOW, UTC)


@given(st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2099, 12, 31)))
def test_words_round_trip(when):
    when = when.replace(microsecond=0)
    text = when.strftime("%b %d %H:%M:%S %Y")
    assert parse_when(text, NOW, UTC) == int(when.replace(tzinfo=UTC).timestamp())


@given(st.integers(1, 4_000_000_000))
def test_iso_round_trip(epoch):
    assert parse_when(format_iso(epoch), NOW) == epoch


@pytest.mark.parametrize("text, expected", [
    ("2026-11-25T14:00:00Z", "2026-11-25T14:00:00Z"),
    ("2026-11-25T14:00:00", "2026-11-25T14:00:00Z"),  # no offset: UTC, as in the INI file
    ("2026-11-25T15:00:00+01:00", "2026-11-25T14:00:00Z"),
    ("2026-11-25", "2026-11-25T00:00:00Z"),
])
def test_iso(text, expected):
    assert format_iso(parse_when(text, NOW)) == expected


@pytest.mark.parametrize("text", ["", "   ", "2026-13-01", "yesterday", "12345abc", "2026-11-25T25:00"])
def test_bad_iso_and_garbage(text):
    with pytest.raises(TimeSpecError):
        parse_when(text, NOW)


def test_not_a_string():
    with pytest.raises(TimeSpecError):
        parse_when(3, NOW)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_timespecerror(text):
    try:
        value = parse_when(text, NOW, UTC)
    except TimeSpecError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(value, int)


def test_format_iso_edges():
    assert format_iso(None) is None and format_iso(0) is None
    assert format_iso(1_800_000_000) == "2027-01-15T08:00:00Z"
    assert format_iso(10 ** 20) is None
