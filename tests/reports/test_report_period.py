"""Report periods: every accepted form and the ones refused."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reports.period import parse_period
from wattgate.errors import BadRequest


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-Q4", utc(2026, 10, 1), utc(2027, 1, 1)),
    ("2026-Q1", utc(2026, 1, 1), utc(2026, 4, 1)),
    ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
    ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1)),
    ("2026-11-05", utc(2026, 11, 5), utc(2026, 11, 6)),
    ("2026-W01", utc(2025, 12, 29), utc(2026, 1, 5)),  # ISO week 1 holds the year's first Thursday
    ("2026-W45", utc(2026, 11, 2), utc(2026, 11, 9)),
    ("2026-10-01..2026-10-31", utc(2026, 10, 1), utc(2026, 11, 1)),  # an END date includes its day
    ("2026-10-01T06:00..2026-10-01T18:00Z", utc(2026, 10, 1, 6), utc(2026, 10, 1, 18)),
    ("2026-10-01T06:00+02:00..2026-10-02", utc(2026, 10, 1, 4), utc(2026, 10, 3)),
])
def test_periods_parse_to_utc_half_open_ranges(text, start, end):
    period = parse_period(text)
    assert (period.start, period.end, period.label) == (start, end, text)
    assert period.days == (end - start).total_seconds() / 86400


@pytest.mark.parametrize("text", ["", "2026", "2026-Q5", "2026-Q0", "2026-13", "2026-02-30", "2026-W54", "last week",
                                  "2026-10-02..2026-10-01", "2026-10-01T12:00..2026-10-01T12:00", "2026-10-01..soon"])
def test_bad_periods_say_what_parses(text):
    with pytest.raises(BadRequest, match="does not parse.*YYYY-Qn"):
        parse_period(text)
