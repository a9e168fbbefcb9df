"""Signed holder agreements: ``POST /api/v1/agreements`` from a kiosk, the PDF for its holder on the verify page.

A kiosk sends the certificate-holder agreement the holder signed PAdES on the token at issuance
(``devices/agreement.py``).  It is kept only when pyHanko's validator finds one signature over the
whole file, intact, by exactly the certificate this central issued under that serial (a foreign
certificate, even for the same key, does not chain to this central's root), of an agreement that
names that serial.  Refusals are 422 with a reason.  The first accepted PDF stays: sending the same
again answers 200, another one 409 ``agreement_exists``.

Files: ``<data dir>/agreements/<SERIAL>.pdf``, 0600, in a 0700 directory (no database row: the file
system is the index).  The holder downloads it from the verification page by typing the token's
serial; a wrong serial and a missing agreement get the same answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from central.orders import certificates, offices
from central.orders.api import api_view, json_response, office_of, read_json
from central.orders.errors import ApiError
from central.orders.models import Enrollment

MAX_PDF_BYTES = 160 * 1024      # a signed agreement is ~50 KB; the body limit is 256 KiB of base64 JSON


def agreements_dir() -> Path:
    directory = Path(settings.DATA_DIR) / "agreements"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


def agreement_path(serial: str) -> Path:
    return agreements_dir() / f"{certificates.normalise_serial(serial)}.pdf"


def _refuse(reason: str, message: str) -> ApiError:
    return ApiError(422, reason, message)


def check_signed_agreement(pdf: bytes, enrollment: Enrollment) -> None:
    """Raise 422 unless ``pdf`` is the agreement for ``enrollment``'s certificate, signed with its key."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = reader.embedded_signatures
        subject = str(reader.trailer_view["/Info"].get("/Subject", "")) if "/Info" in reader.trailer_view else ""
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as err:
        raise _refuse("agreement_not_pdf", "the document is not a readable PDF") from err
    if len(signatures) != 1:
        raise _refuse("agreement_unsigned", "the agreement must carry exactly one signature")
    if subject.upper() != enrollment.certificate_serial:
        raise _refuse("agreement_wrong_document", "the document is not the agreement of this certificate")
    issuing = enrollment.certificate.ca
    chain = [asn1_x509.Certificate.load(ca.pub.der) for ca in issuing.bundle]
    context = ValidationContext(trust_roots=chain[-1:], other_certs=chain[:-1], allow_fetching=False,
                                revocation_mode="soft-fail")
    try:
        status = validate_pdf_signature(signatures[0], context)
    except Exception as err:   # pyHanko raises several types for malformed CMS; any of them is a bad signature
        raise _refuse("agreement_signature_invalid", "the signature cannot be read") from err
    if not (status.intact and status.valid):
        raise _refuse("agreement_signature_invalid", "the signature does not match the document")
    if status.coverage is None or status.coverage.name != "ENTIRE_FILE":
        raise _refuse("agreement_signature_invalid", "the document was changed after it was signed")
    if not status.trusted:
        raise _refuse("agreement_certificate_foreign", "the signing certificate was not issued by this central")
    if status.signing_cert.dump() != enrollment.certificate.pub.der:
        raise _refuse("agreement_signer_mismatch", "the agreement was not signed with this certificate's key")
    if certificates.status_of(enrollment.certificate) != "good":
        raise _refuse("certificate_not_valid", "the certificate is revoked or expired")


def store(enrollment: Enrollment, pdf: bytes) -> tuple[dict[str, Any], bool]:
    """Keep ``pdf`` (checked) for the enrollment's serial; (body, created).  409 if another one is kept."""
    digest = hashlib.sha256(pdf).hexdigest()
    path = agreement_path(enrollment.certificate_serial)
    body = {"certificate_serial": enrollment.certificate_serial, "sha256": digest, "size": len(pdf)}
    if path.exists():
        if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return body, False
        raise ApiError(409, "agreement_exists", "another agreement is kept for this certificate")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pdf)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)      # fails if a concurrent request stored one first
        except FileExistsError:
            return store(enrollment, pdf)
    finally:
        tmp.unlink(missing_ok=True)
    return body, True


def read_pdf(payload: dict[str, Any]) -> bytes:
    value = payload.get("pdf")
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_request", "pdf must be the base64 of the signed PDF", field="pdf")
    if len(value) > MAX_PDF_BYTES * 4 // 3 + 4:
        raise ApiError(413, "request_too_large", "the agreement is too large", field="pdf")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, "invalid_request", "pdf is not base64", field="pdf") from err


@api_view("POST")
def agreements(request: HttpRequest) -> HttpResponse:
    """``POST /api/v1/agreements`` with ``{certificate_serial, pdf}`` (base64): 201 kept, 200 already kept."""
    payload = read_json(request)
    serial = payload.get("certificate_serial")
    if not isinstance(serial, str) or not 0 < len(serial) <= 64:
        raise ApiError(400, "invalid_request", "certificate_serial must be the certificate's hex serial",
                       field="certificate_serial")
    pdf = read_pdf(payload)
    offices.require_certificate(serial, office_of(request))
    enrollment = certificates.find_enrollment(serial)
    check_signed_agreement(pdf, enrollment)
    body, created = store(enrollment, pdf)
    return json_response(body, status=201 if created else 200)


def for_holder(serial: str, token_serial: str) -> bytes | None:
    """The kept agreement of ``serial`` if ``token_serial`` is the serial of the token that holds its key."""
    try:
        enrollment = certificates.find_enrollment(serial)
    except ApiError:
        return None
    typed = token_serial.strip().encode("utf-8")[:64]
    if not enrollment.token_serial or not hmac.compare_digest(typed, enrollment.token_serial.encode("utf-8")):
        return None
    try:
        return agreement_path(enrollment.certificate_serial).read_bytes()
    except FileNotFoundError:
        return None
