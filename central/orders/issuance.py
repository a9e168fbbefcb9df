"""Enrollment: check a kiosk's CSR and the order, then have django-ca issue the signature certificate.

The certificate's subject is built from the order, never from the CSR: the CSR only proves
possession of the key (its own signature is checked here, django-ca does not).  One key gets one
certificate; an order gets one certificate; the kiosk's idempotency key finds an issued
certificate again so a retried request never issues twice.

Where the holder's profile issues a separate authentication certificate (Kazakhstan), the kiosk
sends a second CSR for a second key on the same token; both certificates are issued in the same
transaction under the same idempotency key (:class:`~central.orders.models.AuthenticationCertificate`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.db import transaction
from django.utils import timezone
from django_ca.models import Certificate
from django_ca.profiles import profiles as ca_profiles

from central.orders import escrow, pki, profiles
from central.orders.errors import ApiError
from central.orders.models import AuthenticationCertificate, Enrollment, Order, OrderStatus, VoidedKey
from kiosk.errors import OrderNotPayable
from kiosk.order import check_may_proceed

PROFILE = "qualified"
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
MAX_IDEMPOTENCY_KEY = 128
MAX_TOKEN_SERIAL = 64
ORDER_DIGEST = re.compile("[0-9a-f]{64}")

# One issuing decision at a time: the checks and the insert of the enrollment must not interleave.
ISSUE_LOCK = threading.Lock()


@dataclass(frozen=True)
class CheckedRequest:
    """A parsed CSR whose signature verified and whose key is acceptable."""

    csr: x509.CertificateSigningRequest
    public_key_sha256: str
    csr_sha256: str


def check_csr(csr_pem: str) -> CheckedRequest:
    """Parse a PEM PKCS#10 request and verify its own signature.

    Raises ApiError 400 ``csr_invalid``, ``csr_signature_invalid`` or ``key_unsupported``.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        csr_der = csr.public_bytes(serialization.Encoding.DER)
    except (ValueError, UnicodeEncodeError, TypeError) as err:
        raise ApiError(400, "csr_invalid", "csr is not a PEM PKCS#10 certification request") from err
    try:
        public_key = csr.public_key()
    except UnsupportedAlgorithm as err:      # an EC curve (secp112r1, SM2 …) or key type cryptography lacks
        raise ApiError(400, "key_unsupported", "only RSA and EC (P-256, P-384) keys are accepted") from err
    except ValueError as err:
        raise ApiError(400, "csr_invalid", "the CSR's public key cannot be read") from err
    if isinstance(public_key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= public_key.key_size <= MAX_RSA_BITS:
            raise ApiError(400, "key_unsupported",
                           f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits",
                           key_type="rsa", key_size=public_key.key_size)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise ApiError(400, "key_unsupported", "EC keys must be on P-256 or P-384",
                           key_type="ec", curve=public_key.curve.name)
    else:
        raise ApiError(400, "key_unsupported", "only RSA and EC (P-256, P-384) keys are accepted")
    try:
        valid = csr.is_signature_valid
    except Exception:  # an unsupported or garbled signature algorithm is as bad as a wrong signature
        valid = False
    if not valid:
        raise ApiError(400, "csr_signature_invalid",
                       "the CSR's signature does not verify with its public key")
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return CheckedRequest(csr, hashlib.sha256(spki).hexdigest(), hashlib.sha256(csr_der).hexdigest())


def subject_for(order: Order) -> x509.Name:
    """The holder's distinguished name from the order, under the holder's country's profile.

    The serialNumber is PrintableString (``PNOMN-…``, ``IIN…``, ``PNOKG-…``): a Cyrillic value there
    makes orders fail silently in django-ca (field notes).
    """
    return profiles.profile_for(order.register_number).subject(
        given_name=order.given_name, surname=order.father_name, register_number=order.register_number,
        organisation=order.organisation_name, organisation_register=order.organisation_register,
        department=order.department, position=order.position)


def years_from(now: dt.datetime, years: int) -> dt.datetime:
    """``years`` calendar years from now (29 February → 28 February)."""
    try:
        return now.replace(year=now.year + years)
    except ValueError:
        return now.replace(year=now.year + years, day=28)


def not_after_for(order: Order, now: dt.datetime) -> dt.datetime:
    """``term_years`` calendar years from now, or ``validity_days`` days for a pilot/test order."""
    if order.validity_days:
        return now + dt.timedelta(days=order.validity_days)
    return years_from(now, order.term_years)


def check_idempotency_key(idempotency_key: Any) -> str:
    if (not isinstance(idempotency_key, str) or not idempotency_key
            or len(idempotency_key) > MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable()):
        raise ApiError(400, "invalid_request",
                       f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                       field="idempotency_key")
    return idempotency_key


def check_order_digest(order_digest: Any) -> None:
    if order_digest is not None and not (isinstance(order_digest, str) and ORDER_DIGEST.fullmatch(order_digest)):
        raise ApiError(400, "invalid_request", "order_digest is 64 lowercase hexadecimal digits (SHA-256)",
                       field="order_digest")


def check_token_serial(token_serial: Any) -> str:
    if not isinstance(token_serial, str) or len(token_serial) > MAX_TOKEN_SERIAL or (
            token_serial and not token_serial.isprintable()):
        raise ApiError(400, "invalid_request", f"token_serial is up to {MAX_TOKEN_SERIAL} printable characters",
                       field="token_serial")
    return token_serial


def refuse_voided(idempotency_key: str) -> None:
    if VoidedKey.objects.filter(idempotency_key=idempotency_key).exists():
        raise ApiError(409, "enrollment_void", "this idempotency key was voided; start a new enrollment")


def conflict(order: Order) -> ApiError:
    """409 ``enrollment_conflict``: the order's certificate was issued for another key, which kiosk and when.

    Two kiosks that were both offline may each have kept an enrollment for one order; the first one
    applied here is issued, every other one gets this answer (its key is then of no use: its kiosk
    removes it from the token).  ``issued_by``/``issued_at`` are null when the order was marked issued
    without an enrollment here.
    """
    first = (order.enrollments.filter(voided_at__isnull=True, renewal_of__isnull=True)
             .order_by("created_at", "pk").first())
    return ApiError(409, "enrollment_conflict", "the order's certificate was already issued for another key",
                    issued_by=first.kiosk_id if first else None,
                    issued_at=first.created_at.isoformat() if first else None)


def enroll(order_id: str, csr_pem: str, idempotency_key: str, kiosk_id: str, token_serial: str = "",
           escrow_ciphertext: bytes | None = None, *, office_id: int,
           authentication_csr_pem: str | None = None, order_digest: str | None = None) -> tuple[Enrollment, bool]:
    """Issue (or find again) the order's certificate; return the enrollment and whether it is new.

    ``escrow_ciphertext`` (checked by :func:`escrow.check_escrow`) is kept as the SO PIN of
    ``token_serial`` when the certificate is issued now.  ``authentication_csr_pem``, for another key,
    gets the authentication certificate of a profile that issues one (and is required there).
    ``order_digest``, the kiosk's :attr:`kiosk.order.Order.checked_digest` of the order it checked: a
    certificate is not issued from an order changed since (409 ``order_changed``); a repeated request
    still finds what was issued.  An order of another office than ``office_id`` is not found.
    Raises ApiError: 400 for a bad request or CSR, 404 ``order_not_found``, 409 ``enrollment_conflict``
    (issued for another key: :func:`conflict`), ``order_not_payable`` (with ``reason``), ``order_changed``,
    ``key_reused``, ``idempotency_conflict`` or ``enrollment_void``.
    """
    check_idempotency_key(idempotency_key)
    check_order_digest(order_digest)
    request = check_csr(csr_pem)
    authentication = check_csr(authentication_csr_pem) if authentication_csr_pem is not None else None
    if authentication is not None and authentication.public_key_sha256 == request.public_key_sha256:
        raise ApiError(400, "invalid_request", "the authentication certificate needs a key of its own",
                       field="authentication_csr")
    keys = (request.public_key_sha256, authentication.public_key_sha256 if authentication else None)
    with ISSUE_LOCK, transaction.atomic():
        numeric = order_id.isascii() and order_id.isdigit()
        order = Order.objects.filter(pk=order_id, office_id=office_id).first() if numeric else None
        if order is None:
            raise ApiError(404, "order_not_found", "no such order")
        refuse_voided(idempotency_key)
        separate = profiles.profile_for(order.register_number).separate_authentication
        if (authentication is not None) != separate:
            raise ApiError(400, "invalid_request",
                           "this order's profile issues an authentication certificate too: send authentication_csr"
                           if separate else "this order's profile issues no authentication certificate",
                           field="authentication_csr")

        earlier = Enrollment.objects.select_related("certificate").filter(
            idempotency_key=idempotency_key).first()
        if earlier is not None:
            if earlier.order_id != order.pk or keys_of(earlier) != keys or earlier.renewal_of_id is not None:
                raise ApiError(409, "idempotency_conflict",
                               "this idempotency key was used for another order or another key")
            return earlier, False

        same_key = Enrollment.objects.select_related("certificate").filter(
            public_key_sha256=request.public_key_sha256).first()
        if same_key is not None:
            if (same_key.order_id == order.pk and same_key.voided_at is None and same_key.renewal_of_id is None
                    and keys_of(same_key) == keys):
                # The kiosk lost its idempotency key but presents the same keys: the same certificates.
                return same_key, False
            raise ApiError(409, "key_reused", "this public key was already certified")
        refuse_authentication_keys(keys)

        if order.status == OrderStatus.ISSUED or order.enrollments.filter(voided_at__isnull=True).exists():
            raise conflict(order)
        try:
            check_may_proceed(order.to_kiosk())
        except OrderNotPayable as err:
            data = {key: value for key, value in err.data.items() if key != "invoice"}
            raise ApiError(409, "order_not_payable", f"the order may not be issued: {data['reason']}",
                           **data) from err

        if order_digest is not None and order_digest != order.to_kiosk().checked_digest:
            raise ApiError(409, "order_changed", "the order was changed after the kiosk checked it: look it up "
                           "again and check the holder's ID card against it")

        now = timezone.now()
        not_after = not_after_for(order, now)
        certificate = issue_certificate(order, request, not_after)
        enrollment = Enrollment.objects.create(
            idempotency_key=idempotency_key, order=order, public_key_sha256=request.public_key_sha256,
            csr_sha256=request.csr_sha256, certificate=certificate, certificate_serial=certificate.serial,
            kiosk_id=kiosk_id, token_serial=token_serial)
        if authentication is not None:
            issue_authentication(enrollment, authentication, not_after)
        order.status = OrderStatus.ISSUED
        order.issued_at = now
        order.save(update_fields=["status", "issued_at", "updated_at"])
        if escrow_ciphertext is not None:
            escrow.store(token_serial, escrow_ciphertext, enrollment, kiosk_id)
        return enrollment, True


def refuse_authentication_keys(keys: tuple[str, str | None]) -> None:
    """409 ``key_reused`` if a key of ``keys`` (signing, authentication) is an authentication key already
    certified, or the authentication key a signing key already certified."""
    if (AuthenticationCertificate.objects.filter(public_key_sha256__in=[k for k in keys if k]).exists()
            or (keys[1] and Enrollment.objects.filter(public_key_sha256=keys[1]).exists())):
        raise ApiError(409, "key_reused", "this public key was already certified")


def issue_authentication(enrollment: Enrollment, request: CheckedRequest, not_after: dt.datetime) -> None:
    """The authentication certificate beside ``enrollment``'s signing certificate, until the same ``not_after``."""
    issued = issue_certificate(enrollment.order, request, not_after, purpose="authentication")
    AuthenticationCertificate.objects.create(
        enrollment=enrollment, public_key_sha256=request.public_key_sha256, csr_sha256=request.csr_sha256,
        certificate=issued, certificate_serial=issued.serial)


def keys_of(enrollment: Enrollment) -> tuple[str, str | None]:
    """The SHA-256 of the enrollment's signing key and of its authentication key (None without one)."""
    authentication = AuthenticationCertificate.objects.filter(enrollment=enrollment).first()
    return enrollment.public_key_sha256, authentication.public_key_sha256 if authentication else None


def issue_certificate(order: Order, request: CheckedRequest, not_after: dt.datetime,
                      purpose: str = "signing") -> Certificate:
    """Have django-ca sign the order's subject and the ``purpose``'s extensions (``signing`` or
    ``authentication``) for the request's key until ``not_after``."""
    ca = pki.issuing_ca()
    if not_after > ca.not_after:
        raise ApiError(503, "ca_expiring", "the issuing CA expires before the certificate would")
    profile = profiles.profile_for(order.register_number)
    extensions = (profile.authentication_extensions(order.email) if purpose == "authentication"
                  else profile.extensions(order.email))
    key_backend_options = ca.key_backend.get_use_private_key_options(ca, {})
    return Certificate.objects.create_cert(
        ca, key_backend_options, request.csr, profile=ca_profiles[PROFILE],
        subject=subject_for(order), not_after=not_after, extensions=extensions,
        allow_unrecognized_extensions=True,     # qcStatements (profiles.py)
        add_crl_url=True, add_ocsp_url=True, add_issuer_url=True, add_issuer_alternative_name=False)


def void(idempotency_key: str, kiosk_id: str) -> dict[str, Any]:
    """Make ``idempotency_key`` unusable; revoke what was issued under it (cessationOfOperation).

    A first issuance voided puts its order back to paid (or what its payment says); a voided
    renewal gives its fee back to the organisation.  Idempotent: voiding again answers the same.
    """
    from central.orders import certificates, clerk
    from central.orders.models import Organisation

    check_idempotency_key(idempotency_key)
    with ISSUE_LOCK, transaction.atomic():
        voided = VoidedKey.objects.filter(idempotency_key=idempotency_key).first()
        if voided is None:
            enrollment = (Enrollment.objects.select_related("order", "certificate", "certificate__ca")
                          .filter(idempotency_key=idempotency_key).first())
            revoked_serial = ""
            if enrollment is not None and enrollment.voided_at is None:
                if not enrollment.certificate.revoked:
                    certificates.revoke_certificate(enrollment, "cessation_of_operation")
                enrollment.voided_at = timezone.now()
                enrollment.save(update_fields=["voided_at"])
                revoked_serial = enrollment.certificate_serial
                order = enrollment.order
                others = order.enrollments.filter(voided_at__isnull=True).exclude(pk=enrollment.pk)
                if enrollment.renewal_of_id is None and not others.exists():
                    order.issued_at = None
                    order.status = clerk.derived_status(order)
                    order.save(update_fields=["status", "issued_at", "updated_at"])
                elif enrollment.fee_mnt:
                    organisation = Organisation.objects.select_for_update().filter(
                        register=order.organisation_register).first()
                    if organisation is not None:
                        organisation.balance_mnt += enrollment.fee_mnt
                        organisation.save(update_fields=["balance_mnt", "updated_at"])
            voided = VoidedKey.objects.create(idempotency_key=idempotency_key, revoked_serial=revoked_serial,
                                              kiosk_id=kiosk_id)
    return {"idempotency_key": idempotency_key, "voided_at": voided.voided_at.isoformat(),
            "revoked_serial": voided.revoked_serial or None}


def enrollment_body(enrollment: Enrollment) -> dict[str, Any]:
    """The ``Enrollment`` response schema of ``central/openapi.yaml``."""
    certificate = enrollment.certificate
    loaded = certificate.pub.loaded
    body: dict[str, Any] = {
        "certificate": certificate.pub.pem,
        "chain": pki.chain_pem(certificate.ca),
        "serial": enrollment.certificate_serial,
        "not_before": loaded.not_valid_before_utc.isoformat(),
        "not_after": loaded.not_valid_after_utc.isoformat(),
    }
    authentication = AuthenticationCertificate.objects.select_related("certificate").filter(
        enrollment=enrollment).first()
    if authentication is not None:
        issued = authentication.certificate.pub.loaded
        body["authentication"] = {
            "certificate": authentication.certificate.pub.pem, "serial": authentication.certificate_serial,
            "not_before": issued.not_valid_before_utc.isoformat(), "not_after": issued.not_valid_after_utc.isoformat()}
    return body
