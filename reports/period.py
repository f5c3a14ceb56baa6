"""Report periods: ``2026-Q4``, ``2026-11``, ``2026-11-05``, ``2026-W45`` or ``START..END``, all UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from wattgate.errors import BadRequest

FORMATS = "YYYY-Qn, YYYY-MM, YYYY-MM-DD, YYYY-Www or START..END (ISO dates or times, UTC)"

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC, and the text it was given as."""

    label: str
    start: datetime
    end: datetime

    @property
    def start_s(self) -> float:
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        return self.end.timestamp()

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86_400


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _bad(text: str, why: str = "") -> BadRequest:
    return BadRequest(f"period {text!r} does not parse{': ' + why if why else ''}; use {FORMATS}")


def _endpoint(text: str, whole: str, is_end: bool) -> datetime:
    """A date (an END date means the end of that day) or a datetime (naive = UTC)."""
    try:
        if _DAY.match(text):
            day = _midnight(date.fromisoformat(text))
            return day + timedelta(days=1) if is_end else day
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(whole, str(exc)) from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def parse_period(text: str) -> Period:
    """The period ``text`` names; BadRequest when it does not parse or is empty."""
    text = (text or "").strip()
    try:
        if m := _QUARTER.match(text):
            year, q = int(m[1]), int(m[2])
            start = datetime(year, 3 * q - 2, 1, tzinfo=timezone.utc)
            end = datetime(year + 1, 1, 1, tzinfo=timezone.utc) if q == 4 else datetime(year, 3 * q + 1, 1, tzinfo=timezone.utc)
        elif m := _MONTH.match(text):
            year, month = int(m[1]), int(m[2])
            start = datetime(year, month, 1, tzinfo=timezone.utc)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
        elif _DAY.match(text):
            start = _midnight(date.fromisoformat(text))
            end = start + timedelta(days=1)
        elif m := _WEEK.match(text):
            start = _midnight(date.fromisocalendar(int(m[1]), int(m[2]), 1))
            end = start + timedelta(days=7)
        elif ".." in text:
            first, _, last = text.partition("..")
            start, end = _endpoint(first.strip(), text, False), _endpoint(last.strip(), text, True)
        else:
            raise _bad(text)
    except ValueError as exc:  # month 13, week 54, day 31 of a 30-day month
        raise _bad(text, str(exc)) from None
    if end <= start:
        raise _bad(text, "it ends before it starts")
    return Period(text, start, end)
