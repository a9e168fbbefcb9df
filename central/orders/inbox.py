"""``POST /api/v1/events``: the kiosks' journals, applied exactly once per (kiosk, key), in order of arrival.

Each event carries the kiosk's idempotency key; an event seen before is acknowledged again and
applies nothing, so a batch replayed after a lost answer is harmless.  Keys of another kiosk's
form are refused: a kiosk can only write its own journal.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse

from central.orders.api import api_view, json_response, read_batch, short_text
from central.orders.errors import ApiError
from central.orders.models import InboxEvent

MAX_EVENTS = 500
_TEXT_FIELDS = (("key", 160), ("session_id", 64), ("kind", 64), ("created_at", 40))


def _checked(event: Any, kiosk_id: str, index: int) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise ApiError(400, "invalid_request", f"events[{index}] must be an object", field=f"events[{index}]")
    for name, limit in _TEXT_FIELDS:
        if not short_text(event.get(name), limit):
            raise ApiError(400, "invalid_request", f"events[{index}].{name} must be 1 to {limit} printable "
                           "characters", field=f"events[{index}].{name}")
    if not event["key"].startswith(f"{kiosk_id}/"):
        raise ApiError(403, "foreign_key", "an event key names another kiosk", field=f"events[{index}].key")
    if not isinstance(event.get("payload"), dict):
        raise ApiError(400, "invalid_request", f"events[{index}].payload must be an object",
                       field=f"events[{index}].payload")
    return event


@api_view("POST")
def events(request: HttpRequest) -> HttpResponse:
    """Apply a batch; answer ``{"acknowledged": [key, …], "applied": n}`` (n new, the rest seen before)."""
    kiosk_id: str = request.kiosk_id  # type: ignore[attr-defined]
    checked = [_checked(e, kiosk_id, i) for i, e in enumerate(read_batch(request, "events", MAX_EVENTS))]
    applied = 0
    with transaction.atomic():
        known = set(InboxEvent.objects.filter(kiosk_id=kiosk_id, key__in=[e["key"] for e in checked])
                    .values_list("key", flat=True))
        for event in checked:
            if event["key"] in known:
                continue
            try:
                with transaction.atomic():
                    InboxEvent.objects.create(kiosk_id=kiosk_id, key=event["key"], session_id=event["session_id"],
                                              kind=event["kind"], payload=event["payload"],
                                              created_at=event["created_at"])
            except IntegrityError:        # the same key twice in one batch, or a concurrent replay
                continue
            known.add(event["key"])
            applied += 1
    return json_response({"acknowledged": [e["key"] for e in checked], "applied": applied})
