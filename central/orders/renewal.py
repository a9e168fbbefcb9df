"""Remote renewal (shared seed 003): the holder signs an application with the certificate's key, the
organisation's balance pays, a new certificate is issued for a new key on the same token.

The deadline: the request must arrive at least three working days before the expiry day
(:meth:`kiosk.workdays.WorkCalendar.last_request_day`), counted in the central's country calendar
(``TAMGA_COUNTRY``; its built-in holidays plus ``TAMGA_EXTRA_HOLIDAYS``) on dates in
Asia/Ulaanbaatar.  The fee is :func:`kiosk.order.compute_fees` without an eToken.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from central.orders import certificates, issuance, profiles
from central.orders.errors import ApiError
from central.orders.models import Enrollment, Organisation
from kiosk.order import Fees, compute_fees
from kiosk.workdays import WorkCalendar, default_calendar

log = logging.getLogger("central.renewal")

APPLICATION_TYPE = "tamga.renewal-application/1"
LOCAL_ZONE = ZoneInfo("Asia/Ulaanbaatar")
MAX_CLOCK_SKEW = dt.timedelta(days=1)


def calendar() -> WorkCalendar:
    base = default_calendar(settings.TAMGA_COUNTRY)
    extra = WorkCalendar.from_config(settings.TAMGA_COUNTRY, (), settings.TAMGA_EXTRA_HOLIDAYS)
    return base.with_holidays_of(extra)         # extra has dated holidays only


def last_request_day(not_after: dt.datetime) -> dt.date:
    return calendar().last_request_day(not_after.astimezone(LOCAL_ZONE).date())


def fees_body(fees: Fees) -> dict[str, Any]:
    return {
        "currency": "MNT",
        "lines": [{"item": line.item.value, "quantity": line.quantity, "unit_mnt": line.unit_mnt,
                   "amount_mnt": line.amount_mnt} for line in fees.lines],
        "subtotal_mnt": fees.subtotal, "vat_mnt": fees.vat, "total_mnt": fees.total,
    }


def parse_term(value: Any) -> int:
    if value not in (1, 2, "1", "2") or isinstance(value, bool):
        raise ApiError(400, "invalid_query", "term_years is 1 or 2", field="term_years")
    return int(value)


def organisation_of(enrollment: Enrollment, lock: bool = False) -> Organisation:
    query = Organisation.objects.select_for_update() if lock else Organisation.objects
    organisation = query.filter(register=enrollment.order.organisation_register).first()
    if organisation is None or not enrollment.order.organisation_register:
        raise ApiError(409, "organisation_unknown", "the holder's organisation has no account at the central")
    return organisation


def check_renewable(enrollment: Enrollment) -> dt.date:
    """Refuse a revoked, expired, voided or already renewed certificate; return its last request day."""
    status = certificates.status_of(enrollment.certificate)
    if status != "good" or enrollment.voided_at is not None:
        raise ApiError(409, "certificate_not_renewable", f"the certificate is {status}",
                       certificate_status=status)
    later = enrollment.renewals.filter(voided_at__isnull=True).first()
    if later is not None:
        raise ApiError(409, "already_renewed", "the certificate was renewed already",
                       renewed_by=later.certificate_serial)
    return last_request_day(enrollment.certificate.not_after)


def terms(serial: str, term_years: Any) -> dict[str, Any]:
    """The ``RenewalTerms`` schema for renewing ``serial`` for ``term_years``."""
    term = parse_term(term_years)
    enrollment = certificates.find_enrollment(serial)
    deadline = check_renewable(enrollment)
    organisation = organisation_of(enrollment)
    return {
        "certificate_serial": enrollment.certificate_serial,
        "not_after": enrollment.certificate.pub.loaded.not_valid_after_utc.isoformat(),
        "last_request_day": deadline.isoformat(),
        "organisation": {"name": organisation.name, "register": organisation.register},
        "balance_mnt": organisation.balance_mnt,
        "term_years": term,
        "fees": fees_body(compute_fees(term, etoken=False)),
    }


def _b64(payload: dict[str, Any], name: str) -> bytes:
    value = payload.get(name)
    try:
        if not isinstance(value, str) or not value:
            raise ValueError(name)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, "invalid_request", f"{name} is a base64 string", field=name) from err


def verify_signature(enrollment: Enrollment, application: bytes, signature: bytes) -> None:
    """The holder's current key signed ``application`` (RSA PKCS#1 v1.5 or ECDSA DER, SHA-256)."""
    public_key = enrollment.certificate.pub.loaded.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, application, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, application, ec.ECDSA(hashes.SHA256()))
        else:
            raise InvalidSignature
    except (InvalidSignature, ValueError) as err:
        raise ApiError(400, "signature_invalid",
                       "the application's signature does not verify with the certificate's key") from err


def _mismatch(field: str) -> ApiError:
    return ApiError(409, "application_mismatch", f"the application's {field} does not match", field=field)


def check_application(enrollment: Enrollment, organisation: Organisation, application: bytes) -> int:
    """Check the signed application against the certificate, order and terms; return its term in years."""
    try:
        parsed = json.loads(application.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, "invalid_request", "application is not UTF-8 JSON", field="application") from err
    if not isinstance(parsed, dict):
        raise ApiError(400, "invalid_request", "application is a JSON object", field="application")
    order = enrollment.order
    holder: dict[str, Any] = parsed["holder"] if isinstance(parsed.get("holder"), dict) else {}
    company: dict[str, Any] = parsed["organisation"] if isinstance(parsed.get("organisation"), dict) else {}
    if parsed.get("type") != APPLICATION_TYPE:
        raise _mismatch("type")
    serial = parsed.get("certificate_serial")
    if not isinstance(serial, str) or serial.replace(":", "").upper().lstrip("0") != \
            enrollment.certificate_serial.lstrip("0"):
        raise _mismatch("certificate_serial")
    if holder.get("name") != " ".join(part for part in (order.father_name, order.given_name) if part):
        raise _mismatch("holder.name")
    number = holder.get("register_number")
    if not isinstance(number, str) or not certificates.holder_matches(order.register_number, number):
        raise _mismatch("holder.register_number")
    if company.get("name") != organisation.name:
        raise _mismatch("organisation.name")
    if company.get("register") != organisation.register:
        raise _mismatch("organisation.register")
    term = parsed.get("term_years")
    if term not in (1, 2) or isinstance(term, bool):
        raise _mismatch("term_years")
    fee = parsed.get("fee_mnt")
    if fee != compute_fees(term, etoken=False).total or isinstance(fee, bool):
        raise _mismatch("fee_mnt")
    requested_at = parsed.get("requested_at")
    try:
        when = dt.datetime.fromisoformat(requested_at) if isinstance(requested_at, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or abs(timezone.now() - when) > MAX_CLOCK_SKEW:
        raise _mismatch("requested_at")
    unchanged = parsed.get("details_unchanged")
    if unchanged is False:
        raise ApiError(409, "details_changed",
                       "the holder's details changed: renew at the registration office with documents")
    if unchanged is not True:
        raise _mismatch("details_unchanged")
    return int(term)


def renew(serial: str, payload: dict[str, Any], kiosk_id: str) -> tuple[Enrollment, bool]:
    """Renew ``serial`` for the signed application; return the new enrollment and whether it is new.

    ``authentication_csr`` (optional; only where the holder's profile issues one) renews the
    authentication certificate with it, for a second new key.

    Raises ApiError 400 (``invalid_request``, ``signature_invalid``, CSR refusals), 404
    ``certificate_not_found``, 409 (``application_mismatch``, ``details_changed``,
    ``certificate_not_renewable``, ``already_renewed``, ``renewal_too_late``, ``insufficient_balance``,
    ``key_reused``, ``idempotency_conflict``, ``enrollment_void``, ``organisation_unknown``).
    """
    application = _b64(payload, "application")
    signature = _b64(payload, "signature")
    csr = payload.get("csr")
    if not isinstance(csr, str):
        raise ApiError(400, "invalid_request", "csr is a PEM string", field="csr")
    authentication_csr = payload.get("authentication_csr")
    if authentication_csr is not None and not isinstance(authentication_csr, str):
        raise ApiError(400, "invalid_request", "authentication_csr is a PEM string", field="authentication_csr")
    idempotency_key = issuance.check_idempotency_key(payload.get("idempotency_key"))
    request = issuance.check_csr(csr)
    authentication = issuance.check_csr(authentication_csr) if authentication_csr is not None else None
    keys = (request.public_key_sha256, authentication.public_key_sha256 if authentication else None)
    if keys[0] == keys[1]:
        raise ApiError(400, "invalid_request", "the authentication certificate needs a key of its own",
                       field="authentication_csr")
    with issuance.ISSUE_LOCK, transaction.atomic():
        old = certificates.find_enrollment(serial)
        verify_signature(old, application, signature)
        issuance.refuse_voided(idempotency_key)
        if authentication is not None and not profiles.profile_for(old.order.register_number).separate_authentication:
            raise ApiError(400, "invalid_request", "this holder's profile issues no authentication certificate",
                           field="authentication_csr")
        earlier = Enrollment.objects.select_related("certificate").filter(idempotency_key=idempotency_key).first()
        if earlier is not None:
            if earlier.renewal_of_id != old.pk or issuance.keys_of(earlier) != keys:
                raise ApiError(409, "idempotency_conflict",
                               "this idempotency key was used for another certificate or another key")
            return earlier, False
        organisation = organisation_of(old, lock=True)
        term = check_application(old, organisation, application)
        deadline = check_renewable(old)
        if timezone.localtime(timezone.now(), LOCAL_ZONE).date() > deadline:
            raise ApiError(409, "renewal_too_late",
                           "renewal requests must arrive three working days before expiry",
                           last_request_day=deadline.isoformat())
        if Enrollment.objects.filter(public_key_sha256=request.public_key_sha256).exists():
            raise ApiError(409, "key_reused", "the renewal needs a new key: this public key was certified")
        issuance.refuse_authentication_keys(keys)
        fee = compute_fees(term, etoken=False).total
        if organisation.balance_mnt < fee:
            raise ApiError(409, "insufficient_balance", "the organisation's balance does not cover the fee",
                           balance=organisation.balance_mnt, due=fee, shortfall=fee - organisation.balance_mnt)
        now = timezone.now()
        not_after = issuance.years_from(now, term)
        certificate = issuance.issue_certificate(old.order, request, not_after)
        organisation.balance_mnt -= fee
        organisation.save(update_fields=["balance_mnt", "updated_at"])
        enrollment = Enrollment.objects.create(
            idempotency_key=idempotency_key, order=old.order, public_key_sha256=request.public_key_sha256,
            csr_sha256=request.csr_sha256, certificate=certificate, certificate_serial=certificate.serial,
            kiosk_id=kiosk_id, token_serial=old.token_serial, renewal_of=old, fee_mnt=fee)
        if authentication is not None:        # the holder's second key, renewed with the signing one
            issuance.issue_authentication(enrollment, authentication, not_after)
    log.info("renewed %s as %s for %s MNT (kiosk %s)", old.certificate_serial, enrollment.certificate_serial,
             fee, kiosk_id)
    return enrollment, True
