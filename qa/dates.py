"""Relative dates in answers: "on Monday", "yesterday", "next week", "earlier this week",
resolved against the date of the article they were read in, with dateparser.

An expression counts as relative when dateparser reads it as a different date under two
different base dates (so "2 June 2025" is left alone and "Monday" is not). The span itself is
never changed: the resolution sits beside it on the citation.

Conventions dateparser leaves to us, stated once here:
- A weekday ("on Monday") is the most recent one up to the article's own day (news style: an
  article dated Monday 2 June that says "on Monday" means 2 June); the future one when its
  sentence speaks of the future ("will", "next", "is due", "scheduled", "plans to").
- A day and month without a year ("1 June") are in the article's year.
- A week, month or year ("next week", "last month") resolves to a range, first to last day;
  "earlier"/"later this week" is clipped at the article's date.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import threading
from dataclasses import dataclass
from typing import Any

_FUTURE = re.compile(r"\b(will|shall|next|is due|are due|scheduled|plans? to|upcoming|coming|expected to)\b", re.I)
_WEEKDAYS = tuple(d.lower() for d in calendar.day_name)
_PERIODS = ("day", "week", "month", "year")
_lock = threading.RLock()  # one parser per preference, its base set per call
_parsers: dict[str, Any] = {}


@dataclass(frozen=True)
class Resolved:
    """A relative expression as calendar dates: one day (``start == end``) or a range."""

    start: dt.date
    end: dt.date

    @property
    def is_day(self) -> bool:
        return self.start == self.end

    def label(self) -> str:
        """ "2 June 2025", or "9–15 June 2025" for a range."""
        def day(d: dt.date) -> str:
            return f"{d.day} {calendar.month_name[d.month]} {d.year}"
        return day(self.start) if self.is_day else f"{day(self.start)} – {day(self.end)}"


def _parser(prefer: str) -> Any:
    with _lock:
        if prefer not in _parsers:
            from dateparser.date import DateDataParser

            _parsers[prefer] = DateDataParser(languages=["en"], settings={
                "PREFER_DATES_FROM": prefer, "RETURN_AS_TIMEZONE_AWARE": False, "STRICT_PARSING": False})
        return _parsers[prefer]


def _parse(text: str, base: dt.datetime, prefer: str) -> tuple[dt.datetime, str] | None:
    with _lock:
        parser = _parser(prefer)
        parser._settings.RELATIVE_BASE = base  # DateDataParser reads its settings at each call
        data = parser.get_date_data(text)
    if data is None or data.date_obj is None or data.period not in _PERIODS:
        return None
    if (data.date_obj.hour, data.date_obj.minute) != (0, 0):  # "an hour" is a duration, not a date
        return None
    return data.date_obj, data.period


def resolve(expression: str, article_date: str | None, sentence: str = "") -> Resolved | None:
    """The dates ``expression`` stands for in an article of ``article_date`` (ISO), or None when
    it is not a relative date (or the article has no date)."""
    if not article_date or not expression.strip() or len(expression) > 60:
        return None
    try:
        base_day = dt.date.fromisoformat(article_date[:10])
    except ValueError:
        return None
    text = " ".join(expression.split())
    lowered = text.lower()
    future = bool(_FUTURE.search(sentence) or _FUTURE.search(text))
    base = dt.datetime.combine(base_day, dt.time())
    words = text.split()
    for k in range(len(words)):  # "earlier this week" -> "this week"
        candidate = " ".join(words[k:])
        if not re.search(r"[A-Za-z]{3}", candidate):  # "40" is a number, not a year
            continue
        weekday = any(w in candidate.lower() for w in _WEEKDAYS)
        # A weekday up to the article's own day: looking back from the day after it. Any other
        # date without a year ("1 June") is taken in the article's year.
        prefer = ("future" if future else "past") if weekday else "current_period"
        shift = dt.timedelta(days=1 if weekday and not future else (-1 if weekday else 0))
        first = _parse(candidate, base + shift, prefer)
        if first is None:
            continue
        other = _parse(candidate, base + shift + dt.timedelta(days=400), prefer)
        if other is not None and other[0] - first[0] == dt.timedelta(0):
            return None  # the same date under another base: an absolute date
        when, period = first
        start, end = _period_range(when.date(), period)
        if lowered.startswith("earlier"):
            end = min(end, base_day)
        elif lowered.startswith("later"):
            start = max(start, base_day)
        return Resolved(start, end) if start <= end else None
    return None


def _period_range(day: dt.date, period: str) -> tuple[dt.date, dt.date]:
    if period == "week":
        monday = day - dt.timedelta(days=day.weekday())
        return monday, monday + dt.timedelta(days=6)
    if period == "month":
        return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])
    if period == "year":
        return dt.date(day.year, 1, 1), dt.date(day.year, 12, 31)
    return day, day
