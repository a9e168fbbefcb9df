"""The kiosk and the central service: is it there, does it accept this kiosk, what does the kiosk trust.

:func:`enroll` is the one function the offline-sync issue replaces: today the central issues a
bearer token (``python -m central add-kiosk KIOSK_ID``) that the technician brings on a file;
then the kiosk will trade a one-time code for a client certificate.  Everything else here only
reads from the central.
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

from provisioning.steps import StepFailed

API = "/api/v1"
TIMEOUT_S = 10.0


def _get(url: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return requests.get(url, headers=headers, timeout=TIMEOUT_S)
    except requests.exceptions.SSLError as err:
        raise StepFailed(f"TLS to {url} failed: {err}",
                         "the kiosk's clock (a wrong date breaks TLS) and the central's certificate") from err
    except requests.exceptions.ConnectionError as err:
        raise StepFailed(f"cannot connect to {url}",
                         "the network cable or Wi-Fi, the central URL (--central-url), "
                         "that the central is up; a firewall between the office and the central") from err
    except requests.exceptions.Timeout as err:
        raise StepFailed(f"{url} did not answer within {TIMEOUT_S:.0f} s",
                         "the network (a proxy or firewall may swallow the request), the central's load") from err


def health(central_url: str) -> str:
    """``GET /api/v1/health`` answers ``{"status": "ok"}``; returns what answered."""
    url = central_url.rstrip("/") + f"{API}/health"
    response = _get(url)
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
    """What the kiosk authenticates with; ``token`` is written to central.token_file (mode 0600)."""

    kind: str          # "bearer" today; "certificate" with the offline-sync issue
    token: str
    escrow_key_id: str

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, token=***, escrow_key_id={self.escrow_key_id!r})"


def enroll(central_url: str, kiosk_id: str, token_file: Path) -> Credential:
    """This kiosk's credential at the central: the bearer token in ``token_file``, checked by an authenticated call.

    The check asks for the SO PIN escrow key (``GET /api/v1/escrow-key``): it changes nothing and
    only a kiosk the central knows may read it.  Replace this function (same result) when the
    central issues client certificates for a one-time code.
    """
    try:
        token = token_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise StepFailed(f"cannot read the central token file {token_file}: {err}",
                         f"the file's path (--central-token-file); the central operator makes it with "
                         f"`python -m central add-kiosk {kiosk_id}`") from err
    if not token:
        raise StepFailed(f"{token_file} is empty", f"ask the central operator for `python -m central add-kiosk "
                         f"{kiosk_id}` and save its one line in the file")
    url = central_url.rstrip("/") + f"{API}/escrow-key"
    response = _get(url, token)
    if response.status_code == 401:
        raise StepFailed("the central refused this kiosk's token (401)",
                         f"the token expired, was revoked or belongs to another central: ask for a new one "
                         f"(`python -m central add-kiosk {kiosk_id}`)")
    try:
        key_id = str(response.json()["key_id"])
    except (ValueError, KeyError, TypeError) as err:
        raise StepFailed(f"{url} answered {response.status_code} without an escrow key",
                         "the central's version and log (the escrow key is made at its first start)") from err
    if response.status_code != 200:
        raise StepFailed(f"{url} answered {response.status_code}", "the central's log")
    return Credential("bearer", token, key_id)


# --- trust material ---------------------------------------------------------------------------------
def load_certificates(source: str, what: str) -> list[x509.Certificate]:
    """PEM certificates from a file or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        response = _get(source)
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


def confirm_at_central(central_url: str, certs: list[x509.Certificate]) -> int:
    """Each CA certificate is the one the central's CA serves (``GET /ca/issuer/{serial}.der``); returns how many."""
    for cert in certs:
        url = central_url.rstrip("/") + f"/ca/issuer/{cert.serial_number:X}.der"
        response = _get(url)
        if response.status_code != 200:
            raise StepFailed(f"the central does not serve {cert.subject.rfc4514_string()} ({url}: "
                             f"{response.status_code})", "that the CA chain file belongs to this central")
        if response.content != cert.public_bytes(Encoding.DER):
            raise StepFailed(f"the central serves another certificate under serial {cert.serial_number:X}",
                             "that the CA chain file belongs to this central")
    return len(certs)


def pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)
