"""The central's renewal calendar on the kiosk (sync.central_calendar): what is accepted, how it is kept,
and that the kiosk counts with it beside its own ``[calendar]`` — picked up without a restart."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from kiosk.workdays import WorkCalendar, default_calendar
from sync.central_calendar import CalendarFile, CentralCalendar, merged

DECREE = "2027-09-15"       # a one-off holiday the government decreed (a Wednesday)


def body(*dated: str, country: str = "MN", version: str = "a" * 64) -> dict[str, Any]:
    return {"version": version, "calendar": {"country": country, "holidays": ["01-01"], "dated_holidays": list(dated)}}


@pytest.mark.parametrize("broken", [
    {}, {"version": "a" * 64}, {"version": "short", "calendar": body()["calendar"]},
    body("2027-13-01"), body("14-07-2027"), {**body(), "calendar": {"country": "Mongolia", "holidays": [],
                                                                   "dated_holidays": []}},
    {**body(), "calendar": {"country": "MN", "holidays": "01-01", "dated_holidays": []}},
    {**body(), "calendar": {"country": "MN", "holidays": ["02-30"], "dated_holidays": []}},
])
def test_a_malformed_calendar_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CentralCalendar.from_body(broken)


def test_the_central_holidays_are_added_to_the_kiosk_own_and_another_country_is_ignored() -> None:
    local = default_calendar("MN")
    day = dt.date.fromisoformat(DECREE)
    assert local.is_working_day(day)
    counted = merged(local, CentralCalendar.from_body(body(DECREE)))
    assert not counted.is_working_day(day) and counted.annual >= local.annual and counted.dated >= local.dated
    assert merged(local, CentralCalendar.from_body(body(DECREE, country="KZ"))) == local
    assert merged(local, None) == local


def test_the_file_is_kept_whole_private_and_once_per_version(tmp_path: Path) -> None:
    kept = CalendarFile.in_data_dir(tmp_path)
    assert kept.load() is None and kept.mtime_ns() == 0
    assert kept.keep(CentralCalendar.from_body(body(DECREE)))
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600 and not list(tmp_path.glob("*.tmp"))
    assert not kept.keep(CentralCalendar.from_body(body(DECREE)))                    # same version
    assert kept.keep(CentralCalendar.from_body(body(DECREE, "2027-09-16", version="b" * 64)))
    loaded = kept.load()
    assert loaded is not None and loaded.dated_holidays == (DECREE, "2027-09-16")


def test_an_unreadable_kept_file_is_not_trusted(tmp_path: Path) -> None:
    kept = CalendarFile.in_data_dir(tmp_path)
    kept.path.write_text(json.dumps(body("2027-02-31")))
    assert kept.load() is None
    kept.path.write_text("{not json")
    assert kept.load() is None


def test_the_renewal_deadline_moves_with_a_decreed_holiday() -> None:
    expiry = dt.date(2027, 9, 20)                                          # a Monday
    local = WorkCalendar("MN")
    assert local.last_request_day(expiry) == dt.date(2027, 9, 14)         # Wed, Thu, Fri lie between
    counted = merged(local, CentralCalendar.from_body(body(DECREE)))
    assert counted.last_request_day(expiry) == dt.date(2027, 9, 13)       # Wednesday is a holiday now


def test_sync_status_says_which_central_calendar_is_kept(tmp_path: Path) -> None:
    from sync.__main__ import calendar_line

    kept = CalendarFile.in_data_dir(tmp_path)
    assert "not fetched yet" in calendar_line(kept)
    kept.keep(CentralCalendar.from_body(body(DECREE, version="c" * 64)))
    line = calendar_line(kept)
    assert line.startswith("central calendar MN version cccccccccccc, 1 dated holidays, kept ") and " s ago " in line
