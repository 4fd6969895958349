"""Time bounds for search filters: fixed ``now``, literals in, literals out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projector.errors import InvalidQuery
from projector.timephrase import format_utc, parse_time_bound

# Sunday 22 November 2026, 10:30 UTC.
NOW = datetime(2026, 11, 22, 10, 30, 15, 250000, tzinfo=timezone.utc)


def bounds(text: str, now: datetime = NOW) -> tuple[str, str]:
    return parse_time_bound(text, now=now), parse_time_bound(text, now=now, end=True)


@pytest.mark.parametrize(
    ("text", "start", "stop"),
    [
        ("2026-03-01", "2026-03-01T00:00:00.000Z", "2026-03-01T23:59:59.999Z"),
        ("2026-02", "2026-02-01T00:00:00.000Z", "2026-02-28T23:59:59.999Z"),
        ("2024-02", "2024-02-01T00:00:00.000Z", "2024-02-29T23:59:59.999Z"),
        ("2026-03-01T10:00Z", "2026-03-01T10:00:00.000Z", "2026-03-01T10:00:00.000Z"),
        ("2026-03-01T10:00:00.5+02:00", "2026-03-01T08:00:00.500Z", "2026-03-01T08:00:00.500Z"),
        ("2026-03-01 10:00", "2026-03-01T10:00:00.000Z", "2026-03-01T10:00:00.000Z"),
        ("2025", "2025-01-01T00:00:00.000Z", "2025-12-31T23:59:59.999Z"),
        ("0999-01-01", "0999-01-01T00:00:00.000Z", "0999-01-01T23:59:59.999Z"),
    ],
)
def test_iso_dates_are_whole_days_and_times_are_instants(text: str, start: str, stop: str) -> None:
    assert bounds(text) == (start, stop)


@pytest.mark.parametrize(
    ("text", "start", "stop"),
    [
        ("now", "2026-11-22T10:30:15.250Z", "2026-11-22T10:30:15.250Z"),
        ("today", "2026-11-22T00:00:00.000Z", "2026-11-22T23:59:59.999Z"),
        ("yesterday", "2026-11-21T00:00:00.000Z", "2026-11-21T23:59:59.999Z"),
        ("  Yesterday ", "2026-11-21T00:00:00.000Z", "2026-11-21T23:59:59.999Z"),
        ("3 days ago", "2026-11-19T00:00:00.000Z", "2026-11-19T23:59:59.999Z"),
        ("a day ago", "2026-11-21T00:00:00.000Z", "2026-11-21T23:59:59.999Z"),
        ("two weeks ago", "2026-11-08T00:00:00.000Z", "2026-11-08T23:59:59.999Z"),
        ("1 month ago", "2026-10-22T00:00:00.000Z", "2026-10-22T23:59:59.999Z"),
        ("1 year ago", "2025-11-22T00:00:00.000Z", "2025-11-22T23:59:59.999Z"),
        ("5 hours ago", "2026-11-22T05:30:15.250Z", "2026-11-22T05:30:15.250Z"),
        ("90 minutes ago", "2026-11-22T09:00:15.250Z", "2026-11-22T09:00:15.250Z"),
        ("last 3 days", "2026-11-19T00:00:00.000Z", "2026-11-22T10:30:15.250Z"),
        ("past 2 hours", "2026-11-22T08:30:15.250Z", "2026-11-22T10:30:15.250Z"),
    ],
)
def test_points_and_relative_phrases(text: str, start: str, stop: str) -> None:
    assert bounds(text) == (start, stop)


@pytest.mark.parametrize(
    ("text", "start", "stop"),
    [
        # ISO weeks run Monday to Sunday; NOW is a Sunday.
        ("this week", "2026-11-16T00:00:00.000Z", "2026-11-22T23:59:59.999Z"),
        ("last week", "2026-11-09T00:00:00.000Z", "2026-11-15T23:59:59.999Z"),
        ("this month", "2026-11-01T00:00:00.000Z", "2026-11-30T23:59:59.999Z"),
        ("last month", "2026-10-01T00:00:00.000Z", "2026-10-31T23:59:59.999Z"),
        ("this year", "2026-01-01T00:00:00.000Z", "2026-12-31T23:59:59.999Z"),
        ("last year", "2025-01-01T00:00:00.000Z", "2025-12-31T23:59:59.999Z"),
    ],
)
def test_calendar_ranges(text: str, start: str, stop: str) -> None:
    assert bounds(text) == (start, stop)


@pytest.mark.parametrize(
    ("text", "start", "stop"),
    [
        ("March", "2026-03-01T00:00:00.000Z", "2026-03-31T23:59:59.999Z"),
        ("in March", "2026-03-01T00:00:00.000Z", "2026-03-31T23:59:59.999Z"),
        ("mar", "2026-03-01T00:00:00.000Z", "2026-03-31T23:59:59.999Z"),
        # The current month counts; a month still to come this year means last year's.
        ("November", "2026-11-01T00:00:00.000Z", "2026-11-30T23:59:59.999Z"),
        ("December", "2025-12-01T00:00:00.000Z", "2025-12-31T23:59:59.999Z"),
        ("in Dec 2024", "2024-12-01T00:00:00.000Z", "2024-12-31T23:59:59.999Z"),
        ("February 2028", "2028-02-01T00:00:00.000Z", "2028-02-29T23:59:59.999Z"),
    ],
)
def test_month_names_mean_the_most_recent_such_month(text: str, start: str, stop: str) -> None:
    assert bounds(text) == (start, stop)


@pytest.mark.parametrize(
    ("text", "start", "stop"),
    [
        ("Monday", "2026-11-16T00:00:00.000Z", "2026-11-16T23:59:59.999Z"),
        ("since Monday", "2026-11-16T00:00:00.000Z", "2026-11-16T23:59:59.999Z"),
        ("Saturday", "2026-11-21T00:00:00.000Z", "2026-11-21T23:59:59.999Z"),
        ("sunday", "2026-11-22T00:00:00.000Z", "2026-11-22T23:59:59.999Z"),
        ("last Sunday", "2026-11-15T00:00:00.000Z", "2026-11-15T23:59:59.999Z"),
        ("last tue", "2026-11-17T00:00:00.000Z", "2026-11-17T23:59:59.999Z"),
    ],
)
def test_weekday_names_mean_the_most_recent_such_day(text: str, start: str, stop: str) -> None:
    assert bounds(text) == (start, stop)


def test_calendar_boundaries_follow_the_time_zone_of_now() -> None:
    # 00:30 on 23 Nov in UTC+02:00 is still 22 Nov in UTC: "today" is the local day.
    local_now = datetime(2026, 11, 23, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert bounds("today", local_now) == ("2026-11-22T22:00:00.000Z", "2026-11-23T21:59:59.999Z")
    assert bounds("2026-03-01", local_now) == ("2026-02-28T22:00:00.000Z", "2026-03-01T21:59:59.999Z")
    assert bounds("2026-03-01T10:00", local_now)[0] == "2026-03-01T08:00:00.000Z"


def test_a_naive_now_is_taken_as_utc() -> None:
    assert parse_time_bound("today", now=NOW.replace(tzinfo=None)) == "2026-11-22T00:00:00.000Z"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "soon", "next week", "3 days", "2026-13-01", "2026-02-30", "0000-01",
     "10000000000 days ago", "3 fortnights ago", "last blue moon", "in Marchember", "tomorrow-ish"],
)
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidQuery) as refused:
        parse_time_bound(text, now=NOW)
    message = str(refused.value)
    assert "yesterday" in message and "last week" in message and "2026-03-01" in message


@given(st.datetimes(timezones=st.just(timezone.utc)), st.datetimes(timezones=st.just(timezone.utc)))
def test_format_utc_sorts_as_text_the_way_the_moments_sort(a: datetime, b: datetime) -> None:
    # Filters compare these strings with the index's timestamps as text.
    a, b = sorted(moment.replace(microsecond=moment.microsecond // 1000 * 1000) for moment in (a, b))
    assert (format_utc(a) < format_utc(b)) == (a < b) and len(format_utc(a)) == 24


def test_format_utc_writes_the_event_log_timestamp_format() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=timezone(timedelta(hours=-5)))
    assert format_utc(moment) == "2026-01-02T08:04:05.678Z"


def test_since_before_until_for_every_span_phrase() -> None:
    for text in ["today", "last week", "March", "Monday", "last 3 days", "2026-03"]:
        start, stop = bounds(text)
        assert start < stop
