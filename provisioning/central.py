"""The kiosk and the central service: is it there, does it accept this kiosk, what does the kiosk trust.

:func:`enroll` trades the one-time code of ``python -m central add-kiosk KIOSK_ID --office OFFICE``
for this kiosk's client certificate (its key made here, never sent), and proves it with a call that
needs the certificate.  Every HTTPS call trusts only the central's CA file (its ``tls-ca.pem``).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from kiosk.errors import KioskError
from kiosk.i18n import Translator
from provisioning.steps import StepFailed
from sync import kiosk_identity

API = "/api/v1"
TIMEOUT_S = 10.0


def _get(url: str, verify: str | bool = True, cert: tuple[str, str] | None = None) -> requests.Response:
    try:
        return requests.get(url, timeout=TIMEOUT_S, verify=verify, cert=cert)
    except requests.exceptions.SSLError as err:
        raise StepFailed(f"TLS to {url} failed: {err}",
                         "the central CA file (--central-ca: the central's tls-ca.pem), the central URL's host "
                         "name, the kiosk's clock (a wrong date breaks TLS)") from err
    except requests.exceptions.ConnectionError as err:
        raise StepFailed(f"cannot connect to {url}",
                         "the network cable or Wi-Fi, the central URL (--central-url), "
                         "that the central is up; a firewall between the office and the central") from err
    except requests.exceptions.Timeout as err:
        raise StepFailed(f"{url} did not answer within {TIMEOUT_S:.0f} s",
                         "the network (a proxy or firewall may swallow the request), the central's load") from err


def health(central_url: str, central_ca: Path) -> str:
    """``GET /api/v1/health`` over HTTPS that chains to ``central_ca`` answers ``{"status": "ok"}``."""
    if not central_url.startswith("https://"):
        raise StepFailed(f"{central_url} is not an https URL", "the central URL: https://HOST:PORT (mutual TLS)")
    url = central_url.rstrip("/") + f"{API}/health"
    response = _get(url, verify=str(central_ca))
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        raise StepFailed(f"{url} answered {response.status_code}, not a Tamga central's health",
                         "the central URL (scheme, host, port; no path after it): something else answers there")
    return f"{central_url} is up ({response.elapsed.total_seconds() * 1000:.0f} ms)"


@dataclass(frozen=True)
class Credential:
    """This kiosk's client certificate and key (PEM), to be written 0600; the key never leaves the kiosk."""

    kind: str          # "certificate"
    subject: str
    not_after: dt.datetime
    certificate_pem: bytes
    key_pem: bytes
    escrow_key_id: str

    def __repr__(self) -> str:
        return (f"Credential(kind={self.kind!r}, subject={self.subject!r}, not_after={self.not_after:%Y-%m-%d}, "
                f"key=***, escrow_key_id={self.escrow_key_id!r})")


def enroll(central_url: str, kiosk_id: str, office: str, code: str, central_ca: Path, tmp_dir: Path) -> Credential:
    """Exchange the one-time ``code`` for this kiosk's client certificate and check it with an authenticated call.

    The check asks for the SO PIN escrow key (``GET /api/v1/escrow-key``): it changes nothing and only
    a kiosk the central knows may read it.  ``tmp_dir`` (owner only) holds the key for that one call.
    """
    if not code.strip():
        raise StepFailed("no enrollment code", f"ask the central operator for `python -m central add-kiosk "
                         f"{kiosk_id} --office {office}` and give its code (--enrollment-code)")
    try:
        key, certificate = kiosk_identity.request_certificate(central_url, code.strip(), office, central_ca,
                                                             kiosk_id=kiosk_id, timeout_s=TIMEOUT_S)
    except KioskError as err:
        raise StepFailed(f"the central did not enroll this kiosk ({err.data.get('reason', err.key)})",
                         Translator("en")(err.key, **err.data)) from err
    key_pem, certificate_pem = kiosk_identity.pem_files(key, certificate)
    check = kiosk_identity.KioskIdentity.in_directory(tmp_dir, central_ca)
    kiosk_identity.store(check, key, certificate)
    try:
        url = central_url.rstrip("/") + f"{API}/escrow-key"
        response = _get(url, verify=str(central_ca), cert=(str(check.certificate), str(check.key)))
    finally:
        check.key.unlink(missing_ok=True)
        check.certificate.unlink(missing_ok=True)
    if response.status_code == 401:
        raise StepFailed("the central refused this kiosk's new certificate (401)",
                         "the central's log; that the kiosk was not revoked meanwhile")
    try:
        key_id = str(response.json()["key_id"])
    except (ValueError, KeyError, TypeError) as err:
        raise StepFailed(f"{url} answered {response.status_code} without an escrow key",
                         "the central's version and log (the escrow key is made at its first start)") from err
    return Credential("certificate", certificate.subject.rfc4514_string(), certificate.not_valid_after_utc,
                      certificate_pem, key_pem, key_id)


# --- trust material ---------------------------------------------------------------------------------
def load_certificates(source: str, what: str, central_ca: Path | None = None) -> list[x509.Certificate]:
    """PEM certificates from a file or an http(s) URL (https: trusting ``central_ca`` when given)."""
    if source.startswith(("http://", "https://")):
        response = _get(source, verify=str(central_ca) if central_ca else True)
        if response.status_code != 200:
            raise StepFailed(f"{source} answered {response.status_code}", f"the URL of the {what}")
        data = response.content
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise StepFailed(f"cannot read the {what} {source}: {err.strerror}",
                             f"the path of the {what} (a PEM file)") from err
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise StepFailed(f"{source} holds no PEM certificate: {err}",
                         f"that the file is the {what} in PEM (-----BEGIN CERTIFICATE-----)") from err
    return certs


def _verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_ca_certificates(certs: list[x509.Certificate], what: str, chain: bool,
                          now: dt.datetime | None = None) -> None:
    """Every certificate is a CA valid now; with ``chain``, each is signed by the next and the last by itself."""
    now = now or dt.datetime.now(dt.UTC)
    for cert in certs:
        name = cert.subject.rfc4514_string()
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise StepFailed(f"{what}: {name} is not a CA certificate", f"that the file is the {what}, not a "
                             "holder's certificate")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise StepFailed(f"{what}: {name} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                             f"{cert.not_valid_after_utc:%Y-%m-%d})", "the kiosk's date and time, then the file")
    if chain:
        for cert, issuer in itertools.pairwise(certs):
            if not _verify_signed_by(cert, issuer):
                raise StepFailed(f"{what}: {cert.subject.rfc4514_string()} is not signed by the next certificate",
                                 "the chain's order: issuing CA first, root last")
        root = certs[-1]
        if not _verify_signed_by(root, root):
            raise StepFailed(f"{what}: the last certificate is not a self-signed root", "that the chain ends "
                             "with the root")


def confirm_at_central(central_url: str, certs: list[x509.Certificate], central_ca: Path) -> int:
    """Each CA certificate is the one the central's CA serves (``GET /ca/issuer/{serial}.der``); returns how many."""
    for cert in certs:
        url = central_url.rstrip("/") + f"/ca/issuer/{cert.serial_number:X}.der"
        response = _get(url, verify=str(central_ca))
        if response.status_code != 200:
            raise StepFailed(f"the central does not serve {cert.subject.rfc4514_string()} ({url}: "
                             f"{response.status_code})", "that the CA chain file belongs to this central")
        if response.content != cert.public_bytes(Encoding.DER):
            raise StepFailed(f"the central serves another certificate under serial {cert.serial_number:X}",
                             "that the CA chain file belongs to this central")
    return len(certs)


def pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)
