"""Feeds with cursors: the office's orders and certificate events since a change number.

``GET /api/v1/feeds/orders?after=N&limit=M`` lists the office's orders whose last change (new,
confirmed, paid, cancelled, issued) has a change number above N; ``GET /api/v1/feeds/certificates``
the office's certificates whose last event (issued, revoked, expiring — entering the 30-day renewal
window) is above N; ``GET /api/v1/feeds/trust`` the national ID trust material (CA certificates per
country profile, every office's and the office's own) added or withdrawn after N.  A row appears
once, with its current state, at its last change.

Change numbers come from one counter bumped inside each writer's transaction
(:func:`central.orders.models.next_change`): the bump holds the counter row's write lock until the
writer commits, so numbers are committed in increasing order and a reader that has seen n will
never later find an uncommitted-then-committed change below n.  A cursor is the last number a page
held; a page ends early (``more``) only at ``limit``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_ca.models import Certificate

from central.orders import trust_anchors
from central.orders.api import api_view, json_response, office_of, order_body
from central.orders.errors import ApiError
from central.orders.models import FEED_COUNTER, ChangeCounter, Enrollment, Order

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_CURSOR = 2**63 - 1
RENEWAL_NOTICE = dt.timedelta(days=30)


def parse_page(request: HttpRequest) -> tuple[int, int]:
    """``after`` (a cursor, default 0) and ``limit`` (1 to 500, default 100); 400 ``invalid_query``.

    A cursor beyond every change this central has made (its database was restored or replaced) is
    409 ``cursor_ahead`` with ``head``: the kiosk reads again from 0 rather than wait for numbers
    that may never come.
    """
    unknown = set(request.GET) - {"after", "limit"}
    if unknown:
        raise ApiError(400, "invalid_query", f"unknown parameter {sorted(unknown)[0]}")
    after = _number(request.GET.get("after", "0"), "after", 0, MAX_CURSOR)
    limit = _number(request.GET.get("limit", str(DEFAULT_LIMIT)), "limit", 1, MAX_LIMIT)
    head = int(ChangeCounter.objects.values_list("value", flat=True).get(name=FEED_COUNTER))
    if after > head:
        raise ApiError(409, "cursor_ahead", "the cursor is ahead of this central's changes: read again from 0",
                       head=str(head))
    return after, limit


def _number(text: str, name: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or not low <= int(text) <= high:
        raise ApiError(400, "invalid_query", f"{name} is a whole number from {low} to {high}", field=name)
    return int(text)


def page_body(items: list[dict[str, Any]], after: int, limit: int) -> dict[str, Any]:
    cursor = items[-1]["seq"] if items else after
    return {"items": items, "cursor": str(cursor), "more": len(items) == limit}


@api_view("GET")
def orders(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/feeds/orders?after=…&limit=…``."""
    after, limit = parse_page(request)
    rows = (Order.objects.filter(office_id=office_of(request), change_seq__gt=after)
            .order_by("change_seq")[:limit])
    return json_response(page_body([{"seq": row.change_seq, "order": order_body(row)} for row in rows],
                                   after, limit))


def notice_expiring(office_id: int, now: dt.datetime | None = None) -> int:
    """Stamp the office's certificates that entered their renewal window since the last look.

    Each gets a change number, so the feed carries the notice exactly once; returns how many.
    """
    now = now or timezone.now()
    due = Enrollment.objects.filter(
        order__office_id=office_id, expiry_noticed_at__isnull=True, voided_at__isnull=True,
        certificate__revoked=False, certificate__not_after__gt=now,
        certificate__not_after__lte=now + RENEWAL_NOTICE).order_by("pk")
    if not due.exists():        # the usual poll: no write transaction (SQLite takes its write lock at BEGIN)
        return 0
    stamped = 0
    with transaction.atomic():
        # Locked and filtered again: a concurrent reader that stamped them first leaves none here.
        for enrollment in due.select_for_update(of=("self",)):
            enrollment.expiry_noticed_at = now
            enrollment.save(update_fields=["expiry_noticed_at"])
            stamped += 1
    return stamped


def event_of(enrollment: Enrollment) -> str:
    if enrollment.certificate.revoked or enrollment.voided_at is not None:
        return "revoked"
    if enrollment.expiry_noticed_at is not None:
        return "expiring"
    return "issued"


def certificate_item(enrollment: Enrollment) -> dict[str, Any]:
    """One ``CertificateEvent`` of ``central/openapi.yaml``: no personal data beyond the order's ids."""
    certificate = enrollment.certificate
    return {
        "seq": enrollment.change_seq,
        "event": event_of(enrollment),
        "serial": enrollment.certificate_serial,
        "order_id": str(enrollment.order_id),
        "invoice": enrollment.order.invoice,
        "token_serial": enrollment.token_serial or None,
        "renewal_of": enrollment.renewal_of.certificate_serial if enrollment.renewal_of else None,
        "not_after": certificate.not_after.isoformat(),
        "revoked_at": certificate.revoked_date.isoformat() if certificate.revoked_date else None,
        "revocation_reason": certificate.revoked_reason or None if certificate.revoked else None,
    }


@api_view("GET")
def certificates(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/feeds/certificates?after=…&limit=…``."""
    after, limit = parse_page(request)
    office_id = office_of(request)
    notice_expiring(office_id)
    rows = (Enrollment.objects.select_related("order", "certificate", "renewal_of")
            .filter(order__office_id=office_id, change_seq__gt=after).order_by("change_seq")[:limit])
    return json_response(page_body([certificate_item(row) for row in rows], after, limit))


@api_view("GET")
def trust(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/feeds/trust?after=…&limit=…``."""
    after, limit = parse_page(request)
    rows = trust_anchors.for_office(office_of(request)).filter(change_seq__gt=after).order_by("change_seq")[:limit]
    return json_response(page_body([trust_anchors.trust_item(row) for row in rows], after, limit))


def certificate_saved(sender: type[Certificate], instance: Certificate, **kwargs: Any) -> None:
    """A revocation through django-ca moves the certificate's enrollment to the end of the feed."""
    if kwargs.get("created") or not instance.revoked:
        return
    for enrollment in Enrollment.objects.filter(certificate=instance):
        enrollment.save(update_fields=[])


def connect() -> None:
    post_save.connect(certificate_saved, sender=Certificate, dispatch_uid="tamga-feeds-revocation")
