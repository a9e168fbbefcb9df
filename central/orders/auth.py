"""Who is calling: the kiosk whose client certificate the TLS layer verified, checked against the database.

The HTTPS listener (:mod:`central.serving`) verifies the chain and hands the leaf over as
``SSL_CLIENT_CERT``; a certificate is accepted only while its row (:class:`KioskCertificate`, found by
its SHA-256 fingerprint) is unrevoked and unexpired and its kiosk unrevoked, so revoking a kiosk
refuses its very next request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.http import HttpRequest
from django.utils import timezone

from central.orders.models import KioskCertificate, KioskCredential

CLIENT_CERT_KEY = "SSL_CLIENT_CERT"
_TOUCH_INTERVAL = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Refusal:
    """Why a request has no kiosk: a stable code and a sentence for the technician."""

    code: str
    message: str


NO_CERTIFICATE = Refusal("kiosk_certificate_required",
                         "a kiosk client certificate is required (HTTPS with the kiosk's certificate)")
REFUSED = Refusal("kiosk_certificate_refused",
                  "this kiosk certificate is unknown, expired or revoked: enroll the kiosk again")


def client_certificate(request: HttpRequest) -> x509.Certificate | None:
    pem = request.META.get(CLIENT_CERT_KEY)
    if not isinstance(pem, str) or not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def authenticate(request: HttpRequest) -> str | Refusal:
    """The kiosk id of the request's verified client certificate, or why there is none."""
    certificate = client_certificate(request)
    if certificate is None:
        return NO_CERTIFICATE
    now = timezone.now()
    row = (KioskCertificate.objects.select_related("kiosk")
           .filter(fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(), revoked_at__isnull=True,
                   not_before__lte=now, not_after__gt=now, kiosk__revoked_at__isnull=True).first())
    if row is None:
        return REFUSED
    kiosk = row.kiosk
    if kiosk.last_used_at is None or now - kiosk.last_used_at > _TOUCH_INTERVAL:
        KioskCredential.objects.filter(pk=kiosk.pk).update(last_used_at=now)
    return kiosk.kiosk_id
