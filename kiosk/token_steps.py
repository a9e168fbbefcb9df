"""What every flow that logs in to the holder's eToken shares: the PIN, the right token, the login.

Also the authentication key beside the signing key, where the order's profile issues a separate
authentication certificate (Kazakhstan): its CKA_ID is derived from the signing key's, so a retried
key generation finds the key it made before instead of making another.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from kiosk.engine import Flow
from kiosk.errors import InvalidPin, KeyMismatch, PinBlocked, PinRequired, WrongToken
from kiosk.events import EventKind
from kiosk.pin import Pin
from kiosk.ports import IssuedCertificate, SessionState, TokenSession
from kiosk.records import AuthenticationRecord
from kiosk.token_certificates import pem_to_der

AUTHENTICATION_LABEL = "{label} AUTH"
"""CKA_LABEL of the authentication key pair and certificate (the signing ones carry the token label)."""


def authentication_key_id(signing_key_id: bytes) -> bytes:
    """The CKA_ID of the authentication key beside the signing key ``signing_key_id`` (as long as it)."""
    return hashlib.sha256(b"tamga authentication key\0" + signing_key_id).digest()[:len(signing_key_id)]


def authentication_issued(record: AuthenticationRecord, issued: IssuedCertificate) -> AuthenticationRecord:
    """``record`` with the authentication certificate the central issued beside ``issued``.

    Raises KeyMismatch if there is none or it certifies another key than the token's second key.
    """
    certificate = issued.authentication
    if certificate is None or certificate.public_key_sha256 != record["public_key_sha256"]:
        raise KeyMismatch(certificate_serial=certificate.serial_hex if certificate else issued.serial_hex)
    return {**record, "certificate": {
        "pem": certificate.certificate_pem, "chain": list(certificate.chain_pem), "serial": certificate.serial_hex,
        "not_before": certificate.not_before.isoformat(), "not_after": certificate.not_after.isoformat()}}


class TokenSteps(Flow):
    def token_pin(self, session_id: str, pin: Pin | None) -> Pin:
        """The PIN given now, else the one the token accepted earlier in this process; else PinRequired."""
        if pin is not None:
            return pin
        known = self.pins.get(session_id)
        if known is None:
            raise PinRequired()
        return known

    def check_token(self, data: Mapping[str, Any]) -> str:
        """The serial of the session's token, if that token is the one in the slot (else WrongToken)."""
        serial: str = data["token"]["serial"]
        present = self.services.token.present()
        if present.serial != serial:
            raise WrongToken(serial=serial, present=present.serial)
        return serial

    def authentication_request(self, session: TokenSession, signing_key_id: bytes, label: str,
                               subject_cn: str) -> AuthenticationRecord:
        """The second key (found again, else generated beside the signing key) and its CSR signed on the token."""
        key_id = authentication_key_id(signing_key_id)
        spki = session.find_public_key(key_id)
        if spki is None:
            spki = session.generate_key_pair(key_id, AUTHENTICATION_LABEL.format(label=label),
                                             self.policy.key_algorithm)
        csr = session.sign_csr(key_id, subject_cn)
        return {"key_id": key_id.hex(), "csr": base64.b64encode(csr).decode(),
                "public_key_sha256": hashlib.sha256(spki).hexdigest()}

    def install_authentication(self, session: TokenSession, record: AuthenticationRecord, label: str,
                               chain_der: Sequence[bytes]) -> None:
        """Write the authentication certificate beside its key (idempotent; KeyMismatch for another key)."""
        session.install_certificate(bytes.fromhex(record["key_id"]), AUTHENTICATION_LABEL.format(label=label),
                                    pem_to_der(record["certificate"]["pem"]), chain_der)

    @contextmanager
    def token_session(self, state: SessionState, serial: str, pin: Pin) -> Iterator[TokenSession]:
        """Log in; remember the PIN only once the token accepted it; journal and forget a refused one."""
        try:
            with self.services.token.session(serial, pin) as session:
                self.pins.remember(state.id, pin)
                yield session
        except (InvalidPin, PinBlocked) as err:
            self.pins.forget(state.id)
            self.record(state, dict(state.data), EventKind.TOKEN_PIN_REFUSED, blocked=isinstance(err, PinBlocked),
                        attempts_remaining=err.data.get("attempts_remaining"))
            raise
