"""The holder's certificates on an eToken: which one is current, which ones a renewal superseded.

After a renewal the token holds two key pairs and two certificates for the same holder.  The old
pair stays until its certificate has expired — never removed before the new one is installed, and
never before its expiry day — and is removed the next time the token is seen at or after it.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from kiosk.errors import NoCertificateOnToken
from kiosk.ports import CertificateFacts, CertificateReader, TokenInfo, TokenPort
from kiosk.records import TokenCertificateRecord


@dataclass(frozen=True)
class TokenCertificate:
    key_id: bytes
    der: bytes
    facts: CertificateFacts

    def to_dict(self) -> TokenCertificateRecord:
        f = self.facts
        return {"key_id": self.key_id.hex(), "serial": f.serial_hex, "not_before": f.not_before.isoformat(),
                "not_after": f.not_after.isoformat(), "holder": f.common_name, "organisation": f.organisation,
                "serial_number": f.subject_serial_number, "given_name": f.given_name, "surname": f.surname,
                "public_key_sha256": f.public_key_sha256}


def holder_certificates(token: TokenPort, reader: CertificateReader, serial: str) -> list[TokenCertificate]:
    """The token's end-entity certificates, signing and authentication, the one valid longest first (CA
    certificates left out)."""
    certs = []
    for key_id, der in token.public_certificates(serial):
        facts = reader.describe(der)
        if not facts.is_ca:
            certs.append(TokenCertificate(key_id, der, facts))
    return sorted(certs, key=lambda c: c.facts.not_after, reverse=True)


def current_certificate(token: TokenPort, reader: CertificateReader) -> tuple[TokenInfo, TokenCertificate]:
    """The token in the slot and its current signing certificate (an authentication certificate beside it is
    not one); NoCertificateOnToken for a blank or foreign one."""
    info = token.present()
    certs = holder_certificates(token, reader, info.serial) if info.initialised else []
    certs = [c for c in certs if not c.facts.authentication_only]
    if not certs:
        raise NoCertificateOnToken(serial=info.serial)
    return info, certs[0]


def superseded(certs: list[TokenCertificate], now: dt.datetime) -> list[TokenCertificate]:
    """Expired certificates of a holder who also has a certificate on the token that is still valid
    (after a renewal: the old signing and, where there is one, the old authentication certificate)."""
    valid = {c.facts.subject_serial_number for c in certs if c.facts.not_before <= now < c.facts.not_after}
    return [c for c in certs if c.facts.not_after <= now and c.facts.subject_serial_number in valid]


def pem_to_der(pem: str) -> bytes:
    """The DER of one PEM certificate (as the central sends them; the token stores DER)."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)
