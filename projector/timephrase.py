"""Time bounds for search filters: ISO dates and a small, explicit set of English phrases.

Pure: no I/O, no clock -- the caller passes ``now``. Calendar boundaries (days, weeks, months)
are taken in ``now``'s time zone, so "yesterday" means the user's yesterday; the result is
always a UTC timestamp in the event log's format (``2026-11-22T10:00:00.123Z``), which sorts
lexicographically with the stored ones.

A phrase names either a point or a calendar span. ``end=False`` (a ``since`` bound) gives the
first millisecond of the span, ``end=True`` (an ``until`` bound) the last, so
``since="March", until="March"`` covers the whole month.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from .errors import InvalidQuery

ACCEPTED_FORMS = (
    "an ISO date or time ('2026-03-01', '2026-03', '2026-03-01T10:00Z'), 'now', 'today', "
    "'yesterday', 'N minutes/hours/days/weeks/months/years ago', 'last N days' (also hours, "
    "weeks, months), 'this week', 'last week', 'this month', 'last month', 'this year', "
    "'last year', a month name ('March', 'in March', 'March 2025'), or a weekday name "
    "('Monday', 'last Monday')"
)

_ONE_MS = timedelta(milliseconds=1)
_PREFIXES = ("since ", "from ", "after ", "until ", "till ", "til ", "before ", "on ", "in ")
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_WEEKDAYS |= {name.lower(): i for i, name in enumerate(calendar.day_abbr)}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12}
_UNITS = {"minute": "minute", "min": "minute", "mins": "minute", "hour": "hour", "hr": "hour",
          "day": "day", "week": "week", "wk": "week", "month": "month", "year": "year", "yr": "year"}

_AGO = re.compile(r"(?P<n>\d+|[a-z]+)\s+(?P<unit>[a-z]+?)s?\s+ago")
_LAST_N = re.compile(r"(?:last|past|previous)\s+(?P<n>\d+|[a-z]+)\s+(?P<unit>[a-z]+?)s?")
_MONTH_YEAR = re.compile(r"(?P<month>[a-z]+)\.?(?:\s+(?P<year>\d{4}))?")
_YEAR_MONTH = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})")
_YEAR = re.compile(r"\d{4}")


@dataclass(frozen=True, slots=True)
class _Span:
    """A half-open interval of local time [start, stop)."""

    start: datetime
    stop: datetime


def parse_time_bound(text: str, *, now: datetime, end: bool = False) -> str:
    """Return the UTC timestamp a ``since`` (``end=False``) or ``until`` (``end=True``) bound means.

    Raises ``InvalidQuery`` listing the accepted forms when ``text`` is none of them.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidQuery(f"empty time bound; use {ACCEPTED_FORMS}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    try:
        result = _parse(text, now, end)
    except (ValueError, OverflowError):  # a date before year 1 or after 9999
        result = None
    if result is None:
        raise InvalidQuery(f"cannot read the time {text.strip()!r}; use {ACCEPTED_FORMS}")
    return format_utc(result)


def format_utc(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (the event log's timestamp format)."""
    utc = moment.astimezone(timezone.utc)
    # The year padded by hand: strftime's %Y leaves years before 1000 short here ('999-'), and
    # these strings are compared as text with the index's timestamps.
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse(text: str, now: datetime, end: bool) -> datetime | None:
    iso = _parse_iso(text.strip(), now.tzinfo, end)
    if iso is not None:
        return iso
    phrase = " ".join(text.lower().replace(",", " ").split())
    for prefix in _PREFIXES:
        if phrase.startswith(prefix):
            phrase = phrase[len(prefix):]
            break
    if phrase == "now":
        return now
    found = _parse_phrase(phrase, now)
    if isinstance(found, _Span):
        return found.stop - _ONE_MS if end else found.start
    return found


def _parse_iso(text: str, tz: tzinfo | None, end: bool) -> datetime | None:
    """ISO dates are whole local days; ISO times without an offset are local times."""
    if m := _YEAR_MONTH.fullmatch(text):
        year, month = int(m["year"]), int(m["month"])
        if not 1 <= month <= 12:
            return None
        span = _month_span(year, month, tz)
        return span.stop - _ONE_MS if end else span.start
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        span = _day_span(day, tz)
        return span.stop - _ONE_MS if end else span.start
    if not text[:4].isdigit() or "T" not in text.upper() and " " not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _parse_phrase(phrase: str, now: datetime) -> datetime | _Span | None:
    today = now.date()
    tz = now.tzinfo
    fixed: dict[str, _Span] = {
        "today": _day_span(today, tz),
        "yesterday": _day_span(today - timedelta(days=1), tz),
        "this week": _week_span(today, tz),
        "last week": _week_span(today - timedelta(days=7), tz),
        "this month": _month_span(today.year, today.month, tz),
        "last month": _month_span(*_add_months(today.year, today.month, -1), tz),
        "this year": _year_span(today.year, tz),
        "last year": _year_span(today.year - 1, tz),
    }
    if phrase in fixed:
        return fixed[phrase]
    if m := _AGO.fullmatch(phrase):
        return _ago(m["n"], m["unit"], now)
    if m := _LAST_N.fullmatch(phrase):  # a span that runs up to now
        point = _ago(m["n"], m["unit"], now)
        if point is None:
            return None
        return _Span(point.start if isinstance(point, _Span) else point, now + _ONE_MS)
    words = phrase.split(" ")
    if words[-1] in _WEEKDAYS and (len(words) == 1 or words[:-1] in (["last"], ["this"])):
        back = (today.weekday() - _WEEKDAYS[words[-1]]) % 7
        if back == 0 and words[0] == "last":  # "last Monday" said on a Monday: a week ago
            back = 7
        return _day_span(today - timedelta(days=back), tz)
    if _YEAR.fullmatch(phrase):
        return _year_span(int(phrase), tz)
    if (m := _MONTH_YEAR.fullmatch(phrase)) and m["month"] in _MONTHS:
        month = _MONTHS[m["month"]]
        if m["year"]:
            year = int(m["year"])
        else:  # the most recent such month that has begun
            year = today.year if month <= today.month else today.year - 1
        return _month_span(year, month, tz)
    return None


def _ago(count: str, unit_word: str, now: datetime) -> datetime | _Span | None:
    """Minutes and hours ago are instants; days and longer are the whole day they land on."""
    n = int(count) if count.isdigit() else _NUMBER_WORDS.get(count)
    unit = _UNITS.get(unit_word)
    if n is None or unit is None:
        return None
    if unit == "minute":
        return now - timedelta(minutes=n)
    if unit == "hour":
        return now - timedelta(hours=n)
    today = now.date()
    if unit == "day":
        day = today - timedelta(days=n)
    elif unit == "week":
        day = today - timedelta(weeks=n)
    else:
        months = n if unit == "month" else 12 * n
        year, month = _add_months(today.year, today.month, -months)
        day = date(year, month, min(today.day, calendar.monthrange(year, month)[1]))
    return _day_span(day, now.tzinfo)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _midnight(day: date, tz: tzinfo | None) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz)


def _day_span(day: date, tz: tzinfo | None) -> _Span:
    return _Span(_midnight(day, tz), _midnight(day, tz) + timedelta(days=1))


def _week_span(day: date, tz: tzinfo | None) -> _Span:
    """The ISO week (Monday to Sunday) containing ``day``."""
    monday = day - timedelta(days=day.weekday())
    return _Span(_midnight(monday, tz), _midnight(monday + timedelta(days=7), tz))


def _month_span(year: int, month: int, tz: tzinfo | None) -> _Span:
    next_year, next_month = _add_months(year, month, 1)
    return _Span(_midnight(date(year, month, 1), tz), _midnight(date(next_year, next_month, 1), tz))


def _year_span(year: int, tz: tzinfo | None) -> _Span:
    return _Span(_midnight(date(year, 1, 1), tz), _midnight(date(year + 1, 1, 1), tz))
