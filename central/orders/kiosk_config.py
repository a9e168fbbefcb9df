"""``GET /api/v1/config``: what the central decides that its kiosks must count the same way.

Today that is the renewal calendar: a renewal request must reach the central three working days
before expiry, counted in the central's country calendar (:func:`central.orders.renewal.calendar`:
the built-in holidays and ``TAMGA_EXTRA_HOLIDAYS``, the year's moving ones).  The sync daemon keeps it
(:mod:`sync.central_calendar`), so an offline kiosk names the same last day.  ``version`` is the
SHA-256 of the calendar's canonical JSON: a kiosk writes it again only when it changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.http import HttpRequest, HttpResponse

from central.orders import renewal
from central.orders.api import api_view, json_response


def config_body() -> dict[str, Any]:
    calendar = renewal.calendar()
    body = {"country": calendar.country,
            "holidays": sorted(f"{month:02d}-{day:02d}" for month, day in calendar.annual),
            "dated_holidays": sorted(day.isoformat() for day in calendar.dated)}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return {"version": hashlib.sha256(canonical).hexdigest(), "calendar": body}


@api_view("GET")
def config(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/config`` (a kiosk's client certificate): the renewal calendar and its version."""
    return json_response(config_body())
