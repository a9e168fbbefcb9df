"""The central's renewal calendar on the kiosk: what ``GET /api/v1/config`` says, kept by the sync daemon.

The central decides whether a renewal request is on time by its own country calendar (the built-in
holidays plus the year's moving ones from the government's decree, ``TAMGA_EXTRA_HOLIDAYS``).  The
daemon keeps the central's calendar in ``<data_dir>/central-calendar.json`` (0600, written whole or
not at all) whenever its version changes; the kiosk counts working days on its own ``[calendar]``
together with it (:func:`merged`), so an offline kiosk tells the holder the same last renewal day as
the central would.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.workdays import WorkCalendar
from sync.private_files import write_private

log = logging.getLogger("tamga.sync")

CALENDAR_FILE = "central-calendar.json"


@dataclass(frozen=True)
class CentralCalendar:
    """The central's working-day calendar as ``GET /api/v1/config`` gives it (``version``: its SHA-256)."""

    version: str
    country: str
    holidays: tuple[str, ...]           # annual, "MM-DD"
    dated_holidays: tuple[str, ...]     # one-off, "YYYY-MM-DD"

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> CentralCalendar:
        """From the API's JSON; raises ValueError naming what is malformed."""
        calendar = body.get("calendar")
        version = body.get("version")
        if not isinstance(calendar, dict) or not isinstance(version, str) or len(version) != 64:
            raise ValueError("the configuration has no calendar or no version")
        country, holidays, dated = calendar.get("country"), calendar.get("holidays"), calendar.get("dated_holidays")
        if not (isinstance(country, str) and len(country) == 2 and country.isalpha()
                and isinstance(holidays, list) and all(isinstance(d, str) for d in holidays)
                and isinstance(dated, list) and all(isinstance(d, str) for d in dated)):
            raise ValueError("the calendar needs a country and lists of holidays")
        WorkCalendar.from_config(country, holidays, dated)          # each day well-formed
        return cls(version, country.upper(), tuple(holidays), tuple(dated))

    def to_body(self) -> dict[str, Any]:
        return {"version": self.version, "calendar": {"country": self.country, "holidays": list(self.holidays),
                                                      "dated_holidays": list(self.dated_holidays)}}

    def work_calendar(self) -> WorkCalendar:
        return WorkCalendar.from_config(self.country, self.holidays, self.dated_holidays)


def merged(local: WorkCalendar, central: CentralCalendar | None) -> WorkCalendar:
    """The kiosk's calendar with the central's holidays added (a calendar of another country is ignored)."""
    if central is None or central.country != local.country:
        return local
    return local.with_holidays_of(central.work_calendar())


@dataclass(frozen=True)
class CalendarFile:
    """``<data_dir>/central-calendar.json``: written by the daemon, read by the kiosk."""

    path: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> CalendarFile:
        return cls(Path(data_dir) / CALENDAR_FILE)

    def load(self) -> CentralCalendar | None:
        """The kept calendar; None when there is none yet or it does not read (logged, never trusted)."""
        try:
            return CentralCalendar.from_body(json.loads(self.path.read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("the central's kept calendar is unreadable; the kiosk's own is used",
                        extra={"path": str(self.path), "error": str(err)})
            return None

    def keep(self, calendar: CentralCalendar) -> bool:
        """Write ``calendar`` unless the same version is kept; whether it was written."""
        kept = self.load()
        if kept is not None and kept.version == calendar.version:
            return False
        write_private(self.path, json.dumps(calendar.to_body(), ensure_ascii=False, indent=1).encode("utf-8"))
        log.info("kept the central's calendar", extra={"version": calendar.version[:12],
                                                       "dated_holidays": len(calendar.dated_holidays)})
        return True

    def mtime_ns(self) -> int:
        """When it was last written (0: never), to see a new version without reading it."""
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0
