"""Kiosk identity: one-time enrollment codes, per-kiosk client certificates, the central's TLS certificate.

A CA of its own (django-ca, ``Tamga Kiosk Identity CA``, self-signed, apart from the qualified
hierarchy) signs the central's HTTPS server certificate and every kiosk's client certificate, so
the kiosks trust only it (``DIR/tls-ca.pem``) and the central accepts client certificates of it
alone.  A kiosk exchanges a one-time code (``python -m central add-kiosk``: random, stored as its
SHA-256, valid :data:`CODE_VALIDITY`, single use, bound to an office) and a CSR of a key it made
itself for a certificate valid :data:`CLIENT_VALIDITY`, and renews it with the current one.
Revoking the kiosk revokes every certificate row at once; each request is checked against them.
A client address that sent ``TAMGA_ENROLL_FAILURES_PER_MINUTE`` (10) refused codes in a minute is
answered 429 until that minute ends (:class:`CodeFailures`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django_ca.models import Certificate, CertificateAuthority
from django_ca.profiles import profiles as ca_profiles

from central.orders import offices
from central.orders.errors import ApiError
from central.orders.models import EnrollmentCode, KioskCertificate, KioskCredential
from central.serving import TlsFiles

CA_NAME = "Tamga Kiosk Identity CA"
CA_SUBJECT = "C=MN,O=Tamga Test PKI,CN=Tamga Kiosk Identity CA"
CA_VALIDITY_DAYS = 10 * 365
PROFILE = "kiosk-tls"
CODE_VALIDITY = dt.timedelta(hours=24)
CLIENT_VALIDITY = dt.timedelta(days=90)
SERVER_VALIDITY = dt.timedelta(days=365)
SERVER_RENEW_BEFORE = dt.timedelta(days=30)
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""No 0/O, 1/I/L: a technician reads the code off a screen or paper and types it."""
CODE_GROUPS, CODE_GROUP_LEN = 5, 4      # 20 characters of 31: ≈ 99 bits
TLS_DIR = "tls"
CA_FILE = "tls-ca.pem"


CODE_REFUSALS = frozenset({"code_unknown", "code_used", "code_expired", "wrong_office"})
CODE_FAILURES_WINDOW_S = 60.0


class KioskIdentityError(ValueError):
    """A kiosk id or a code the command line was given cannot be used; the message says why."""


# --- the CA and the server certificate -----------------------------------------------------------------
def ensure_ca() -> CertificateAuthority:
    """The kiosk identity CA, created with django-ca's ``init_ca`` on first use (EC P-256, no CRL/OCSP URLs)."""
    with transaction.atomic():
        ca = CertificateAuthority.objects.filter(name=CA_NAME).first()
        if ca is None:
            call_command("init_ca", CA_NAME, CA_SUBJECT, "--key-type", "EC", "--elliptic-curve", "secp256r1",
                         "--algorithm", "SHA-256", "--expires", str(CA_VALIDITY_DAYS), "--path-length", "0",
                         "--no-default-hostname", "--output-format", "none")
            ca = CertificateAuthority.objects.get(name=CA_NAME)
    return ca


def _sign(ca: CertificateAuthority, csr: x509.CertificateSigningRequest, subject: x509.Name,
          not_after: dt.datetime, extensions: list[x509.Extension[Any]]) -> Certificate:
    options = ca.key_backend.get_use_private_key_options(ca, {})
    return Certificate.objects.create_cert(
        ca, options, csr, profile=ca_profiles[PROFILE], subject=subject, not_after=not_after,
        extensions=extensions, add_crl_url=False, add_ocsp_url=False, add_issuer_url=False,
        add_issuer_alternative_name=False)


def _usage(eku: x509.ObjectIdentifier) -> list[x509.Extension[Any]]:
    key_usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False,
                              crl_sign=False, encipher_only=False, decipher_only=False)
    return [x509.Extension(x509.KeyUsage.oid, True, key_usage),
            x509.Extension(x509.ExtendedKeyUsage.oid, False, x509.ExtendedKeyUsage([eku]))]


def _alt_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def ensure_server_files(data_dir: Path, hosts: list[str]) -> TlsFiles:
    """The HTTPS listener's key and certificate (for ``hosts``) and the CA file; renewed when due.

    Writes ``DIR/tls/server.key`` (0600), ``DIR/tls/server.pem`` and ``DIR/tls-ca.pem`` (what kiosks trust).
    """
    ca = ensure_ca()
    ca_pem = ca.pub.pem.encode("ascii")
    tls_dir = data_dir / TLS_DIR
    tls_dir.mkdir(mode=0o700, exist_ok=True)
    files = TlsFiles(certificate=tls_dir / "server.pem", key=tls_dir / "server.key", client_ca=data_dir / CA_FILE)
    if not files.client_ca.exists() or files.client_ca.read_bytes() != ca_pem:
        _write_private(files.client_ca, ca_pem)
        files.client_ca.chmod(0o644)         # public: a technician copies it onto kiosks
    wanted = _alt_names(hosts)
    if files.certificate.exists() and files.key.exists():
        current = x509.load_pem_x509_certificate(files.certificate.read_bytes())
        fresh = current.not_valid_after_utc - timezone.now() > SERVER_RENEW_BEFORE
        try:
            names = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            names = x509.SubjectAlternativeName([])
        if fresh and current.issuer == ca.pub.loaded.subject and set(names) >= set(wanted):
            return files
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tamga-central")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    certificate = _sign(ca, csr, subject, timezone.now() + SERVER_VALIDITY,
                        [*_usage(ExtendedKeyUsageOID.SERVER_AUTH), x509.Extension(wanted.oid, False, wanted)])
    _write_private(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    _write_private(files.certificate, certificate.pub.pem.encode("ascii"))
    return files


# --- codes --------------------------------------------------------------------------------------------
def code_digest(code: str) -> str:
    """SHA-256 of the code as typed, without its dashes and spaces, in upper case."""
    normal = "".join(code.split()).replace("-", "").upper()
    return hashlib.sha256(normal.encode("ascii", "replace")).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUPS * CODE_GROUP_LEN))
    return "-".join(raw[i:i + CODE_GROUP_LEN] for i in range(0, len(raw), CODE_GROUP_LEN))


def add_kiosk(kiosk_id: str, office_code: str, validity: dt.timedelta = CODE_VALIDITY) -> str:
    """Create the kiosk (or bring back a revoked one) in ``office_code``; return a new one-time code.

    The kiosk's earlier unused codes stop working; its certificates stay valid until revoked.
    """
    if not kiosk_id or len(kiosk_id) > 64 or not kiosk_id.isprintable() or kiosk_id != kiosk_id.strip():
        raise KioskIdentityError("a kiosk id is 1 to 64 printable characters")
    office = offices.by_code(office_code)
    code = new_code()
    with transaction.atomic():
        kiosk, _ = KioskCredential.objects.update_or_create(kiosk_id=kiosk_id,
                                                            defaults={"office": office, "revoked_at": None})
        EnrollmentCode.objects.filter(kiosk=kiosk, used_at__isnull=True).update(used_at=timezone.now())
        EnrollmentCode.objects.create(kiosk=kiosk, office=office, code_sha256=code_digest(code),
                                      expires_at=timezone.now() + validity)
    return code


def revoke_kiosk(kiosk_id: str) -> bool:
    """Refuse the kiosk's certificates from the next request on; False if it has no active credential."""
    now = timezone.now()
    with transaction.atomic():
        revoked = KioskCredential.objects.filter(kiosk_id=kiosk_id, revoked_at__isnull=True).update(revoked_at=now)
        KioskCertificate.objects.filter(kiosk__kiosk_id=kiosk_id, revoked_at__isnull=True).update(revoked_at=now)
        EnrollmentCode.objects.filter(kiosk__kiosk_id=kiosk_id, used_at__isnull=True).update(used_at=now)
    return bool(revoked)


# --- issuing client certificates -------------------------------------------------------------------------
def _checked_csr(payload: dict[str, Any]) -> x509.CertificateSigningRequest:
    pem = payload.get("csr")
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE REQUEST-----" not in pem or len(pem) > 16_384:
        raise ApiError(400, "invalid_request", "csr must be a PEM certificate request", field="csr")
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
        valid = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, UnicodeEncodeError) as err:
        raise ApiError(400, "invalid_request", "csr must be a PEM certificate request", field="csr") from err
    if not valid:
        raise ApiError(400, "csr_signature_invalid", "the request's signature does not verify", field="csr")
    if not ((isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1"))
            or (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)):
        raise ApiError(400, "key_unsupported", "a kiosk key is EC P-256/P-384 or RSA of 2048 bits or more",
                       field="csr")
    return csr


def _issue(kiosk: KioskCredential, csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    ca = ensure_ca()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tamga kiosks"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                            kiosk.office.code if kiosk.office else "-"),
                         x509.NameAttribute(NameOID.COMMON_NAME, kiosk.kiosk_id)])
    not_after = min(timezone.now() + CLIENT_VALIDITY, ca.not_after)
    certificate = _sign(ca, csr, subject, not_after, _usage(ExtendedKeyUsageOID.CLIENT_AUTH))
    loaded = certificate.pub.loaded
    KioskCertificate.objects.create(
        kiosk=kiosk, serial=certificate.serial,
        fingerprint_sha256=loaded.fingerprint(hashes.SHA256()).hex(),
        not_before=loaded.not_valid_before_utc, not_after=loaded.not_valid_after_utc)
    return {"kiosk_id": kiosk.kiosk_id, "office": kiosk.office.code if kiosk.office else None,
            "certificate": certificate.pub.pem, "chain": [ca.pub.pem], "serial": certificate.serial,
            "not_before": loaded.not_valid_before_utc.isoformat(), "not_after": loaded.not_valid_after_utc.isoformat()}


def enroll(payload: dict[str, Any]) -> dict[str, Any]:
    """Exchange ``{"code", "office", "csr"}`` for the kiosk's client certificate and the CA chain.

    Refusals (403 unless said): ``code_unknown``, ``code_expired``, ``code_used``, ``wrong_office``
    (409, with the ``office`` the code belongs to), ``kiosk_revoked``; 400 for a malformed request.
    """
    code, office = payload.get("code"), payload.get("office")
    if not isinstance(code, str) or not 1 <= len(code) <= 64:
        raise ApiError(400, "invalid_request", "code is the one-time code add-kiosk printed", field="code")
    if not isinstance(office, str) or not 1 <= len(office) <= 32:
        raise ApiError(400, "invalid_request", "office is the office code the kiosk belongs to", field="office")
    csr = _checked_csr(payload)
    with transaction.atomic():
        row = (EnrollmentCode.objects.select_for_update(of=("self",)).select_related("kiosk", "kiosk__office", "office")
               .filter(code_sha256=code_digest(code)).first())
        if row is None:
            raise ApiError(403, "code_unknown", "no such enrollment code")
        if row.used_at is not None:
            raise ApiError(403, "code_used", "this enrollment code was used or replaced",
                           used_at=row.used_at.isoformat())
        if row.expires_at <= timezone.now():
            raise ApiError(403, "code_expired", "this enrollment code has expired",
                           expired_at=row.expires_at.isoformat())
        if row.office.code != office:
            raise ApiError(409, "wrong_office", "the code belongs to another office", office=row.office.code)
        if row.kiosk.revoked_at is not None:
            raise ApiError(403, "kiosk_revoked", "this kiosk was revoked")
        row.used_at = timezone.now()
        row.save(update_fields=["used_at"])
        return _issue(row.kiosk, csr)


def renew(kiosk_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A new certificate for the authenticated kiosk's new key; the current one stays valid until it ends."""
    csr = _checked_csr(payload)
    with transaction.atomic():
        kiosk = KioskCredential.objects.select_related("office").get(kiosk_id=kiosk_id)
        return _issue(kiosk, csr)


# --- guessing codes --------------------------------------------------------------------------------------
def code_failure_limit() -> int:
    """Refused codes one client address may send in a minute (``TAMGA_ENROLL_FAILURES_PER_MINUTE``, 10)."""
    return int(os.environ.get("TAMGA_ENROLL_FAILURES_PER_MINUTE", "10"))


class CodeFailures:
    """Refused enrollment codes per client address in fixed windows of ``window_s`` (in memory, per process).

    An address that sent ``limit`` refused codes in its window is refused before its request is read until
    the window ends.  A code (≈ 99 bits) is not guessed anyway; this keeps a guesser from costing the CA a
    CSR check per try.  A code that works is not counted: an office enrolling many kiosks is never held up.
    """

    def __init__(self, window_s: float = CODE_FAILURES_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[float, int]] = {}

    def wait_s(self, address: str, limit: int) -> float:
        """Seconds until ``address`` may try a code again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            started, count = self._failures.get(address, (now, 0))
        left = self.window_s - (now - started)
        return left if count >= limit and left > 0 else 0.0

    def refused(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10_000:      # forget finished windows rather than grow without bound
                self._failures = {a: v for a, v in self._failures.items() if now - v[0] < self.window_s}
            started, count = self._failures.get(address, (now, 0))
            if now - started >= self.window_s:
                started, count = now, 0
            self._failures[address] = (started, count + 1)


CODE_FAILURES = CodeFailures()


# --- views ----------------------------------------------------------------------------------------------
def _views() -> tuple[Any, Any]:
    from django.http import HttpRequest, HttpResponse

    from central.orders.api import api_view, error_response, json_response, read_json

    @api_view("POST", kiosk=False)
    def enroll_view(request: HttpRequest) -> HttpResponse:
        """``POST /api/v1/kiosks/enroll``: code + office + CSR → certificate (no client certificate needed)."""
        address = request.META.get("REMOTE_ADDR", "")
        wait = CODE_FAILURES.wait_s(address, code_failure_limit())
        if wait:
            response = error_response(429, "too_many_requests",
                                      "too many refused enrollment codes from this address; try again later")
            response["Retry-After"] = str(math.ceil(wait))
            return response
        try:
            return json_response(enroll(read_json(request)), status=201)
        except ApiError as err:
            if err.code in CODE_REFUSALS:
                CODE_FAILURES.refused(address)
            raise

    @api_view("POST")
    def renew_view(request: HttpRequest) -> HttpResponse:
        """``POST /api/v1/kiosks/renew`` with the current certificate: CSR → a new certificate."""
        return json_response(renew(request.kiosk_id, read_json(request)), status=201)  # type: ignore[attr-defined]

    return enroll_view, renew_view


enroll_view, renew_view = _views()
