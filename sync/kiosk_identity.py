"""The kiosk's identity at the central: its own key, its client certificate, the CA it trusts.

``enroll`` makes an EC P-256 key on the kiosk (it never leaves it), sends a CSR of it with the
one-time code ``python -m central add-kiosk`` printed and the kiosk's office, and writes the key
and the certificate it gets back as files readable by the owner only.  ``renew_if_due`` replaces
both, authenticated with the current certificate, once less than a third of its validity is left.
Every failure is a :class:`kiosk.errors.KioskError` whose message (``kiosk/locale/*/transport.po``)
says what the technician should check.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.errors import KioskError
from sync.private_files import write_private

if TYPE_CHECKING:
    from sync.central_client import CentralClient

ENROLL_PATH = "/api/v1/kiosks/enroll"
RENEW_FRACTION = 3
"""Renew once less than 1/RENEW_FRACTION of the certificate's validity is left."""


# --- errors the technician reads ---------------------------------------------------------------------------
class IdentityError(KioskError):
    """The kiosk could not get or use its certificate; the message says what to check."""

    key = "transport.enrollment_refused"


class CodeExpired(IdentityError):
    key = "transport.code_expired"


class CodeUsed(IdentityError):
    key = "transport.code_used"


class CodeUnknown(IdentityError):
    key = "transport.code_unknown"


class WrongOffice(IdentityError):
    """``data``: ``office`` (what the kiosk is configured with), ``code_office`` (the code's)."""

    key = "transport.wrong_office"


class KioskRevoked(IdentityError):
    key = "transport.kiosk_revoked"


class CodeAttemptsLimited(IdentityError):
    """The central takes no code from this address for ``data['retry_after']`` seconds (too many wrong ones)."""

    key = "transport.code_attempts_limited"
    recoverable = True


class CentralUnreachable(IdentityError):
    """``data['url']``."""

    key = "transport.central_unreachable"
    recoverable = True


class CentralNotTrusted(IdentityError):
    """The central's certificate does not chain to ``data['ca_chain']`` or does not name its host."""

    key = "transport.central_not_trusted"


class IdentityMissing(IdentityError):
    """``data['path']``: the certificate or key file is absent or unreadable."""

    key = "transport.identity_missing"


_REFUSALS: dict[str, type[IdentityError]] = {
    "code_expired": CodeExpired, "code_used": CodeUsed, "code_unknown": CodeUnknown,
    "wrong_office": WrongOffice, "kiosk_revoked": KioskRevoked, "too_many_requests": CodeAttemptsLimited,
}


# --- the files ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KioskIdentity:
    """Paths: the CA chain that the central's certificate must chain to, the kiosk's certificate and key."""

    ca_chain: Path
    certificate: Path
    key: Path

    @classmethod
    def in_directory(cls, directory: Path, ca_chain: Path) -> KioskIdentity:
        return cls(ca_chain=ca_chain, certificate=directory / "kiosk-identity.pem",
                   key=directory / "kiosk-identity.key")

    def load_certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.certificate.read_bytes())
        except (OSError, ValueError) as err:
            raise IdentityMissing(f"cannot read {self.certificate}", path=str(self.certificate)) from err

    def requests_options(self) -> dict[str, Any]:
        """``verify`` and ``cert`` for requests: trust only the CA chain, present the kiosk's certificate."""
        return {"verify": str(self.ca_chain), "cert": (str(self.certificate), str(self.key))}


def new_key_and_csr(kiosk_id: str = "tamga-kiosk") -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh EC P-256 key and the PEM CSR of it (the central sets the subject itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id[:64] or "tamga-kiosk")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def checked_certificate(key: ec.EllipticCurvePrivateKey, answer: dict[str, Any]) -> x509.Certificate:
    """The certificate of the central's answer, which must be for ``key``."""
    try:
        certificate = x509.load_pem_x509_certificate(str(answer["certificate"]).encode("ascii"))
    except (KeyError, ValueError, UnicodeEncodeError) as err:
        raise IdentityError("the central's answer has no certificate", reason="malformed_response") from err
    if certificate.public_key() != key.public_key():
        raise IdentityError("the certificate is not for this kiosk's key", reason="malformed_response")
    return certificate


def pem_files(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) as the identity files hold them."""
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            certificate.public_bytes(serialization.Encoding.PEM))


def store(identity: KioskIdentity, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
    """Write key and certificate, each 0600 and atomically (key first: a certificate is never without it)."""
    key_pem, certificate_pem = pem_files(key, certificate)
    write_private(identity.key, key_pem)
    write_private(identity.certificate, certificate_pem)


def _refusal(response: requests.Response, office: str) -> IdentityError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    if not isinstance(code, str):
        return IdentityError(f"the central answered {response.status_code}", reason=f"http_{response.status_code}")
    data: dict[str, Any] = {"reason": code}
    if code == "wrong_office" and isinstance(body, dict):
        data.update(office=office, code_office=str(body.get("office", "")))
    if code == "too_many_requests":
        wait = response.headers.get("Retry-After", "")
        data["retry_after"] = int(wait) if wait.isdigit() else 60
    return _REFUSALS.get(code, IdentityError)(str(body.get("message", code)) if isinstance(body, dict) else code,
                                              **data)


def request_certificate(url: str, code: str, office: str, ca_chain: Path, kiosk_id: str = "tamga-kiosk",
                        timeout_s: float = 15.0) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Make a key here and exchange the one-time ``code`` and its CSR for a client certificate; write nothing."""
    key, csr = new_key_and_csr(kiosk_id)
    if not ca_chain.is_file():
        raise IdentityMissing(f"no CA chain at {ca_chain}", path=str(ca_chain))
    try:
        response = requests.post(url.rstrip("/") + ENROLL_PATH, json={"code": code, "office": office, "csr": csr},
                                 verify=str(ca_chain), timeout=timeout_s)
    except requests.exceptions.SSLError as err:
        raise CentralNotTrusted(str(err), url=url, ca_chain=str(ca_chain)) from err
    except requests.RequestException as err:
        raise CentralUnreachable(str(err), url=url) from err
    if response.status_code != 201:
        raise _refusal(response, office)
    try:
        answer = response.json()
    except ValueError as err:
        raise IdentityError("the central's answer is not JSON", reason="malformed_response") from err
    return key, checked_certificate(key, answer if isinstance(answer, dict) else {})


def enroll(url: str, code: str, office: str, identity: KioskIdentity, kiosk_id: str = "tamga-kiosk",
           timeout_s: float = 15.0) -> x509.Certificate:
    """Exchange the one-time ``code`` for this kiosk's client certificate; write key and certificate (0600)."""
    key, certificate = request_certificate(url, code, office, identity.ca_chain, kiosk_id, timeout_s)
    store(identity, key, certificate)
    return certificate


def renewal_due(certificate: x509.Certificate, now: dt.datetime | None = None) -> bool:
    """Whether less than a third of the certificate's validity is left."""
    now = now or dt.datetime.now(dt.UTC)
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return certificate.not_valid_after_utc - now < validity / RENEW_FRACTION


def renew_if_due(client: CentralClient, identity: KioskIdentity, now: dt.datetime | None = None) -> bool:
    """Replace key and certificate through the central when due; whether it did.

    Raises what the client raises (CentralUnavailable, CentralRejected) and IdentityError.
    """
    current = identity.load_certificate()
    if not renewal_due(current, now):
        return False
    kiosk_id = current.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    key, csr = new_key_and_csr(str(kiosk_id[0].value) if kiosk_id else "tamga-kiosk")
    store(identity, key, checked_certificate(key, client.renew_identity(csr)))
    return True
