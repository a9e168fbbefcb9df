"""Holder certificates as the kiosk sees them, and their revocation through django-ca.

A certificate's status is django-ca's: ``revoked`` once revoked, else ``expired`` after its
notAfter, else ``good``.  A revocation regenerates the issuing CA's CRLs at once, so the CRL
served under ``/ca/crl/<CA serial>/`` lists it before the answer leaves.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_ca.constants import ReasonFlags
from django_ca.models import Certificate, CertificateAuthority

from central.orders.errors import ApiError
from central.orders.models import AuthenticationCertificate, Enrollment, RevocationRequest
from kiosk import register

log = logging.getLogger("central.certificates")

REVOCATION_REASONS = ("key_compromise", "affiliation_changed", "superseded", "cessation_of_operation")
MAX_IDEMPOTENCY_KEY = 128
_HEX_SERIAL = re.compile(r"^[0-9A-Fa-f:]{1,100}$")
_ASCII_NUMBER = re.compile(r"^[A-Z]{2,8}\d{8}$|^\d{12}$|^\d{14}$")


def is_holder_number(text: object) -> bool:
    """A register number as typed (``НЭ80000000``) or as certificates and ID cards carry it
    (``PNOMN-NE80000000``, or its bare ASCII ``NE80000000``)."""
    if not isinstance(text, str) or len(text) > 40:
        return False
    return register.is_valid(text) or bool(_ASCII_NUMBER.match(register.from_certificate_serial_number(text)))


def holder_matches(order_register: str, given: str) -> bool:
    """Whether ``given`` (any form :func:`is_holder_number` accepts) names the order's holder.

    The ASCII form loses Ө/У/Ү distinctions; it is compared as :func:`kiosk.register.same_person` does.
    """
    return register.canonical(given) == order_register or register.same_person(order_register, given)


def normalise_serial(text: str) -> str:
    """Upper-case hex without colons or leading zeros, as django-ca writes serials; 404 if not hex."""
    if not _HEX_SERIAL.match(text) or not text.replace(":", ""):
        raise ApiError(404, "certificate_not_found", "no such certificate")
    return f"{int(text.replace(':', ''), 16):X}"


def find_enrollment(serial: str) -> Enrollment:
    """The enrollment (first issuance or renewal) of the certificate ``serial``; 404 ``certificate_not_found``."""
    enrollment = (Enrollment.objects.select_related("order", "certificate", "certificate__ca", "renewal_of")
                  .filter(certificate_serial=normalise_serial(serial)).first())
    if enrollment is None:
        raise ApiError(404, "certificate_not_found", "no such certificate")
    return enrollment


def status_of(certificate: Certificate) -> str:
    if certificate.revoked:
        return "revoked"
    if certificate.not_after <= timezone.now():
        return "expired"
    return "good"


def certificate_body(enrollment: Enrollment) -> dict[str, Any]:
    """The ``Certificate`` schema of ``central/openapi.yaml``."""
    certificate = enrollment.certificate
    order = enrollment.order
    loaded = certificate.pub.loaded
    revoked = certificate.revoked
    return {
        "serial": enrollment.certificate_serial,
        "status": status_of(certificate),
        "not_before": loaded.not_valid_before_utc.isoformat(),
        "not_after": loaded.not_valid_after_utc.isoformat(),
        "register_number": order.register_number,
        "holder_name": " ".join(part for part in (order.father_name, order.given_name) if part),
        "organisation": order.organisation_name,
        "invoice": order.invoice,
        "token_serial": enrollment.token_serial,
        "certificate": certificate.pub.pem,
        "renewal_of": enrollment.renewal_of.certificate_serial if enrollment.renewal_of else None,
        "revoked_at": certificate.revoked_date.isoformat() if revoked and certificate.revoked_date else None,
        "revocation_reason": certificate.revoked_reason or None if revoked else None,
    }


def holder_certificates(register_number: str) -> list[dict[str, Any]]:
    """The holder's certificates, newest first (400 ``invalid_query`` for a malformed register number)."""
    if not is_holder_number(register_number):
        raise ApiError(400, "invalid_query", "not a register number")
    digits = re.sub(r"\D", "", register_number)
    enrollments = (Enrollment.objects.select_related("order", "certificate", "renewal_of")
                   .filter(order__register_number__endswith=digits).order_by("-created_at", "-id"))
    return [certificate_body(enrollment) for enrollment in enrollments
            if holder_matches(enrollment.order.register_number, register_number)]


def regenerate_crls(ca: CertificateAuthority) -> None:
    """New CRLs for ``ca`` now (cached for django-ca's CRL views), not at the next scheduled renewal."""
    options = ca.key_backend.get_use_private_key_options(ca, {})
    ca.generate_crls(options, force=True)


def revoke_certificate(enrollment: Enrollment, reason: str) -> None:
    """Revoke through django-ca (which also refreshes OCSP) and regenerate the CRLs.

    The authentication certificate issued with it (same token, same visit) is revoked with it.
    """
    certificate = enrollment.certificate
    certificate.revoke(ReasonFlags[reason])
    authentication = AuthenticationCertificate.objects.select_related("certificate").filter(
        enrollment=enrollment).first()
    if authentication is not None and not authentication.certificate.revoked:
        authentication.certificate.revoke(ReasonFlags[reason])
    regenerate_crls(certificate.ca)
    log.info("revoked %s%s (%s)", enrollment.certificate_serial,
             f" and authentication {authentication.certificate_serial}" if authentication else "", reason)


def revocation_body(enrollment: Enrollment) -> dict[str, Any]:
    certificate = enrollment.certificate
    return {"serial": enrollment.certificate_serial,
            "revoked_at": certificate.revoked_date.isoformat() if certificate.revoked_date else None,
            "reason": certificate.revoked_reason}


def revoke(serial: str, payload: dict[str, Any], kiosk_id: str) -> tuple[dict[str, Any], bool]:
    """Revoke the holder's certificate; return the ``Revocation`` answer and whether it was revoked now.

    The same idempotency key, or a certificate already revoked, gives the same answer.  Raises
    ApiError 400 ``invalid_request``, 404 ``certificate_not_found``, 409 ``holder_mismatch`` or
    ``idempotency_conflict``.
    """
    reason = payload.get("reason")
    register_number = payload.get("register_number")
    idempotency_key = payload.get("idempotency_key")
    if reason not in REVOCATION_REASONS:
        raise ApiError(400, "invalid_request", f"reason is one of {', '.join(REVOCATION_REASONS)}",
                       field="reason")
    if not isinstance(register_number, str) or not is_holder_number(register_number):
        raise ApiError(400, "invalid_request", "register_number is a register number", field="register_number")
    if (not isinstance(idempotency_key, str) or not idempotency_key
            or len(idempotency_key) > MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable()):
        raise ApiError(400, "invalid_request",
                       f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                       field="idempotency_key")
    from central.orders.issuance import ISSUE_LOCK

    with ISSUE_LOCK, transaction.atomic():
        enrollment = find_enrollment(serial)
        if not holder_matches(enrollment.order.register_number, register_number):
            raise ApiError(409, "holder_mismatch", "the certificate is not this register number's")
        earlier = RevocationRequest.objects.filter(idempotency_key=idempotency_key).first()
        if earlier is not None:
            if earlier.certificate_serial != enrollment.certificate_serial:
                raise ApiError(409, "idempotency_conflict", "this idempotency key revoked another certificate")
            return revocation_body(enrollment), False
        created = not enrollment.certificate.revoked
        if created:
            revoke_certificate(enrollment, str(reason))
        RevocationRequest.objects.create(idempotency_key=idempotency_key,
                                         certificate_serial=enrollment.certificate_serial,
                                         reason=str(reason), kiosk_id=kiosk_id)
        return revocation_body(enrollment), created
