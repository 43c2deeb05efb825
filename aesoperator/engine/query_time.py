"""Time words in a query: the period a question asks about ("in May 2023", "on October 13, 2023",
"in 2022", "in June", "yesterday", "last week", "3 days ago"), so that search can favour what was
said or valid then.

Deterministic, English, no model. Absolute dates stand on their own; relative ones ("last week")
count back from `now` (the search's `as_of`, else the present). A month without a year matches
that month of any year. Pure functions; `search.time_candidates` applies the boost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTH_NAMES = "january february march april may june july august september october november december"
MONTHS = {name: i + 1 for i, name in enumerate(_MONTH_NAMES.split())}
MONTHS.update({name[:3]: n for name, n in list(MONTHS.items())})
MONTHS["sept"] = 9
_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_PATTERNS = [
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),  # May 3, 2023
    re.compile(rf"\b{_DAY}\s+{_MONTH},?\s+{_YEAR}\b", re.I),  # 3 May 2023
    re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<mon>[01]\d)-(?P<day>[0-3]\d)\b"),  # 2023-05-03
    re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I),  # May 2023
    re.compile(rf"\b(?:in|during|since|until|of|before|after)\s+{_YEAR}\b", re.I),  # in 2023
    re.compile(rf"\b(?:in|during|of)\s+(?:early\s+|late\s+|mid-?)?{_MONTH}(?![\w-])", re.I),  # in June
]
_RELATIVE = re.compile(
    r"\b(?:(?P<yesterday>yesterday)|(?P<today>today)|(?P<which>last|this|past)\s+(?P<unit>week|weekend|month|year)"
    r"|(?P<n>\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten)\s+(?P<units>days?|weeks?|months?|years?)\s+ago)\b",
    re.I,
)
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10}  # fmt: skip
_DAYS_PER = {"day": 1, "week": 7, "weekend": 7, "month": 30, "year": 365}


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A period: [start, end), or every year's `month` when `month` is set (start/end unused)."""

    label: str
    start: datetime | None = None
    end: datetime | None = None
    month: int | None = None

    def holds(self, moment: datetime) -> bool:
        """Whether `moment` falls in the period."""
        if self.month is not None:
            return moment.month == self.month
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        assert self.start is not None and self.end is not None
        return self.start <= moment < self.end


def _utc(year: int, month: int, day: int) -> datetime | None:
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


def _month_end(year: int, month: int) -> datetime:
    return datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)


def time_window(query: str, now: datetime) -> TimeWindow | None:
    """The period the query names, the most specific first; None when it names none.

    Args:
        query: the question.
        now: the moment relative expressions count back from.

    Returns:
        The period, or None.
    """
    for pattern in _PATTERNS:
        m = pattern.search(query)
        if m is None:
            continue
        groups = m.groupdict()
        label = m.group(0).strip()
        month = MONTHS[groups["month"].lower()] if groups.get("month") else None
        if groups.get("mon"):
            month = int(groups["mon"])
        year = int(groups["year"]) if groups.get("year") else None
        if groups.get("day") and year is not None and month is not None:
            start = _utc(year, month, int(groups["day"]))
            if start is not None:
                return TimeWindow(label, start, start + timedelta(days=1))
            continue
        if year is not None and month is not None:
            return TimeWindow(label, datetime(year, month, 1, tzinfo=UTC), _month_end(year, month))
        if year is not None:
            return TimeWindow(label, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC))
        if month is not None:
            return TimeWindow(label, month=month)
    return _relative(query, now if now.tzinfo is not None else now.replace(tzinfo=UTC))


def _relative(query: str, now: datetime) -> TimeWindow | None:
    m = _RELATIVE.search(query)
    if m is None:
        return None
    label = m.group(0)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if m.group("yesterday"):
        return TimeWindow(label, today - timedelta(days=1), today)
    if m.group("today"):
        return TimeWindow(label, today, today + timedelta(days=1))
    if m.group("which"):
        span = timedelta(days=_DAYS_PER[m.group("unit").lower()])
        if m.group("which").lower() == "this":
            return TimeWindow(label, today - span, now + timedelta(seconds=1))
        return TimeWindow(label, today - 2 * span if m.group("which").lower() == "last" else today - span, now)
    raw = m.group("n").lower()
    n = _NUMBERS.get(raw) or int(raw)
    days = n * _DAYS_PER[m.group("units").lower().rstrip("s")]
    # "3 weeks ago" is about then, give or take a fifth of the distance
    slack = timedelta(days=max(1.0, days / 5))
    centre = now - timedelta(days=days)
    return TimeWindow(label, centre - slack, centre + slack)


__all__ = ["TimeWindow", "time_window"]
