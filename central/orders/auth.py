"""Kiosk API credentials: random bearer tokens of which only the SHA-256 is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from central.orders.models import KioskCredential

TOKEN_PREFIX = "tamga_"
_TOUCH_INTERVAL = dt.timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(kiosk_id: str) -> str:
    """Create the kiosk's credential, or replace its token (the old one stops working); return the token."""
    if not kiosk_id or len(kiosk_id) > 64 or not kiosk_id.isprintable():
        raise ValueError("a kiosk id is 1 to 64 printable characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        KioskCredential.objects.update_or_create(
            kiosk_id=kiosk_id, defaults={"token_sha256": token_digest(token), "revoked_at": None})
    return token


def ensure_token(kiosk_id: str, known_token: str | None) -> str | None:
    """Keep ``known_token`` if it is the kiosk's current, unrevoked token; issue one for a new kiosk.

    A kiosk whose credential was revoked gets none (None): revocation lasts across restarts.
    """
    if known_token and KioskCredential.objects.filter(
            kiosk_id=kiosk_id, token_sha256=token_digest(known_token), revoked_at__isnull=True).exists():
        return known_token
    if KioskCredential.objects.filter(kiosk_id=kiosk_id, revoked_at__isnull=False).exists():
        return None
    return issue_token(kiosk_id)


def revoke(kiosk_id: str) -> bool:
    return bool(KioskCredential.objects.filter(kiosk_id=kiosk_id, revoked_at__isnull=True)
                .update(revoked_at=timezone.now()))


def authenticate(authorization: str) -> str | None:
    """The kiosk id for an ``Authorization: Bearer …`` header value, or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    credential = KioskCredential.objects.filter(
        token_sha256=token_digest(token), revoked_at__isnull=True).first()
    if credential is None:
        return None
    now = timezone.now()
    if credential.last_used_at is None or now - credential.last_used_at > _TOUCH_INTERVAL:
        KioskCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential.kiosk_id
