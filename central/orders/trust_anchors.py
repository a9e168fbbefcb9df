"""The national ID trust material the central hands its kiosks: CA certificates per country profile.

``python -m central add-trust-anchor FILE… --country MN [--role anchor|intermediate] [--office CODE]``
adds CA certificates (or brings withdrawn ones back): a self-issued one is an anchor (a root), any other
an intermediate, unless ``--role`` says; ``withdraw-trust-anchor SHA256…`` withdraws them; each change
moves the row to the end of ``GET /api/v1/feeds/trust`` (:func:`central.orders.feeds.trust`), which
the kiosks' sync daemon reads.  Only CA certificates (basicConstraints cA, keyCertSign) are taken.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from central.orders import offices
from central.orders.models import TrustAnchor

COUNTRIES = ("MN", "KZ", "KG")
ROLES = ("anchor", "intermediate")


class TrustAnchorError(ValueError):
    """A certificate that cannot be a national ID trust anchor, or an unknown one; the message says why."""


def _ca_certificate(pem: bytes) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except (ValueError, x509.ExtensionNotFound) as err:
        raise TrustAnchorError(f"not a CA certificate in PEM with basicConstraints and keyUsage: {err}") from err
    if not constraints.ca or not usage.key_cert_sign:
        raise TrustAnchorError("the certificate is no CA (basicConstraints cA and keyUsage keyCertSign needed)")
    return certificate


def add(pem: bytes, country: str, role: str | None = None,
        office_code: str | None = None) -> tuple[TrustAnchor, bool]:
    """Add the CA certificate ``pem`` for ``country`` (or bring it back); return it and whether it is new.

    ``role`` None: ``anchor`` for a self-issued certificate (subject = issuer), else ``intermediate``.
    """
    if country not in COUNTRIES:
        raise TrustAnchorError(f"country profile {country!r} is not one of {', '.join(COUNTRIES)}")
    certificate = _ca_certificate(pem)
    role = role or ("anchor" if certificate.subject == certificate.issuer else "intermediate")
    if role not in ROLES:
        raise TrustAnchorError(f"role {role!r} is not one of {', '.join(ROLES)}")
    der = certificate.public_bytes(serialization.Encoding.DER)
    office = offices.by_code(office_code) if office_code else None
    fields = {"country": country, "role": role, "office": office, "withdrawn_at": None,
              "subject": certificate.subject.rfc4514_string()[:500],
              "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")}
    with transaction.atomic():
        anchor, created = TrustAnchor.objects.update_or_create(sha256=hashlib.sha256(der).hexdigest(),
                                                               defaults=fields)
    return anchor, created


def withdraw(sha256: str) -> TrustAnchor:
    """Withdraw the trust anchor whose certificate's SHA-256 is ``sha256``.  Raises TrustAnchorError."""
    with transaction.atomic():
        try:
            anchor = TrustAnchor.objects.select_for_update().get(sha256=sha256.strip().lower())
        except TrustAnchor.DoesNotExist:
            raise TrustAnchorError(f"no trust anchor {sha256!r}") from None
        if anchor.withdrawn_at is None:
            anchor.withdrawn_at = timezone.now()
            anchor.save(update_fields=["withdrawn_at"])
    return anchor


def for_office(office_id: int) -> QuerySet[TrustAnchor]:
    """The trust material the office's kiosks see: every office's and their own."""
    return TrustAnchor.objects.filter(Q(office__isnull=True) | Q(office_id=office_id))


def trust_item(anchor: TrustAnchor) -> dict[str, Any]:
    """One ``TrustEvent`` of ``central/openapi.yaml``."""
    return {"seq": anchor.change_seq, "event": "withdrawn" if anchor.withdrawn_at else "added",
            "country": anchor.country, "role": anchor.role, "sha256": anchor.sha256,
            "subject": anchor.subject, "certificate": anchor.certificate_pem}
