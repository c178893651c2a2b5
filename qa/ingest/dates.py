"""Metadata dates as ISO 8601 (``YYYY-MM-DD``), whatever form an input states them in."""

from __future__ import annotations

import datetime as dt
import re

_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_date(value: object) -> str | None:
    """``value`` (an ISO string, an RFC 822 feed date, "3 June 2025", a datetime) as
    ``YYYY-MM-DD``, or None if it is not a date."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        return None
    text = value.strip()
    m = _ISO_RE.match(text)
    if m:
        try:
            return dt.date.fromisoformat(m.group(0)).isoformat()
        except ValueError:
            return None
    import dateparser

    parsed = dateparser.parse(text, settings={"RETURN_AS_TIMEZONE_AWARE": False, "PREFER_DAY_OF_MONTH": "first"})
    return parsed.date().isoformat() if parsed is not None else None


def warm_date_parser() -> None:
    """Parse one non-ISO date, so dateparser loads its language data (seconds) now, not in the
    first request that filters by a date in words."""
    iso_date("1 June 2025")
