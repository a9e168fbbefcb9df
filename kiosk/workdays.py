"""Working days per country, and the renewal deadline they give (seed 003: «не позднее 3 рабочих дней»).

A renewal request must reach the central at least three working days before the certificate
expires.  We read that conservatively: on the day of the request, at least three whole working days
must lie strictly between it and the expiry day.  A certificate expiring on a Friday may be renewed
until the Monday before; a public holiday in between moves the deadline back by a day.

Public holidays come from configuration (``[calendar]`` in ``kiosk/defaults.toml`` and the
central's settings): annual ones as ``MM-DD`` and the moving ones (Tsagaan Sar, Chinggis Khaan's
birthday, Nauryz where it moves) as dated ``YYYY-MM-DD`` lists, updated every year from the
government's decree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

RENEWAL_NOTICE_DAYS = 30          # the holder is told from this many days before expiry
RENEWAL_WORKING_DAYS = 3          # the request must reach the central this many working days ahead
SATURDAY, SUNDAY = 5, 6


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days in one country."""

    country: str
    annual: frozenset[tuple[int, int]] = field(default_factory=frozenset)   # (month, day)
    dated: frozenset[dt.date] = field(default_factory=frozenset)
    weekend: frozenset[int] = frozenset({SATURDAY, SUNDAY})

    @classmethod
    def from_config(cls, country: str, annual: Iterable[str], dated: Iterable[str]) -> WorkCalendar:
        """From ``MM-DD`` and ``YYYY-MM-DD`` strings; raises ValueError naming a malformed one."""
        days: set[tuple[int, int]] = set()
        for text in annual:
            try:
                month, day = (int(part) for part in text.split("-"))
                dt.date(2024, month, day)          # a leap year: 02-29 is a valid annual day
            except ValueError as err:
                raise ValueError(f"{text!r} is not an MM-DD holiday") from err
            days.add((month, day))
        try:
            moving = frozenset(dt.date.fromisoformat(text) for text in dated)
        except ValueError as err:
            raise ValueError(f"a dated holiday is not YYYY-MM-DD: {err}") from err
        return cls(country.upper(), frozenset(days), moving)

    def with_holidays_of(self, other: WorkCalendar) -> WorkCalendar:
        """This calendar with ``other``'s annual and dated holidays added (this one's country and weekend)."""
        return WorkCalendar(self.country, self.annual | other.annual, self.dated | other.dated, self.weekend)

    def is_working_day(self, day: dt.date) -> bool:
        return (day.weekday() not in self.weekend and (day.month, day.day) not in self.annual
                and day not in self.dated)

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days strictly after ``start`` and strictly before ``end`` (0 when end ≤ start + 1)."""
        count = 0
        day = start + dt.timedelta(days=1)
        while day < end:
            count += self.is_working_day(day)
            day += dt.timedelta(days=1)
        return count

    def last_request_day(self, expiry: dt.date, working_days: int = RENEWAL_WORKING_DAYS) -> dt.date:
        """The last day a renewal request for a certificate expiring on ``expiry`` is on time."""
        day, found = expiry, 0
        while found < working_days:
            day -= dt.timedelta(days=1)
            found += self.is_working_day(day)
        return day - dt.timedelta(days=1)


# Defaults (configuration may replace them).  Mongolia: Labour Law art. 9 public holidays; the moving
# ones are listed per year and must be refreshed from the government's decree each year.
DEFAULT_HOLIDAYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MN": (
        ("01-01", "03-08", "06-01", "07-11", "07-12", "07-13", "07-14", "07-15", "11-26", "12-29"),
        # Tsagaan Sar (three days) and Chinggis Khaan's birthday.
        ("2026-02-18", "2026-02-19", "2026-02-20", "2026-11-11",
         "2027-02-07", "2027-02-08", "2027-02-09", "2027-11-30",
         "2028-02-26", "2028-02-27", "2028-02-28", "2028-11-18"),
    ),
    "KZ": (
        ("01-01", "01-02", "01-07", "03-08", "03-21", "03-22", "03-23", "05-01", "05-07", "05-09",
         "07-06", "08-30", "10-25", "12-16"),
        (),
    ),
    "KG": (
        ("01-01", "01-07", "02-23", "03-08", "03-21", "05-01", "05-05", "05-09", "08-31", "11-07", "11-08"),
        (),
    ),
}


def default_calendar(country: str) -> WorkCalendar:
    """The built-in calendar of ``country`` (MN, KZ, KG); weekends only for another country."""
    annual, dated = DEFAULT_HOLIDAYS.get(country.upper(), ((), ()))
    return WorkCalendar.from_config(country, annual, dated)


def days_left(now: dt.datetime, not_after: dt.datetime) -> int:
    """Whole days from ``now`` until ``not_after`` (0 on the expiry day, negative after)."""
    return (not_after.date() - now.astimezone(not_after.tzinfo).date()).days
