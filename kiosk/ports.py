"""The seams between the issuance core and the world: one narrow protocol per device or service.

Adapters live in ``devices/`` (ID card, eToken, printer) and ``sync/`` (store, central client).
Each translates its library's failures into :mod:`kiosk.errors`; the core never sees a vendor
exception.  Value types that cross a seam are frozen dataclasses defined here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Any, Protocol

from kiosk.order import Order
from kiosk.pin import Pin


# --- ID card ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CardIdentity:
    """Who the ID card says its holder is, read from its authentication certificate (chain checked)."""

    common_name: str
    given_name: str
    surname: str
    serial_number: str          # the subject serialNumber as on the card, e.g. "PNOMN-NE80000000"
    certificate_der: bytes
    certificate_serial: int
    not_after: dt.datetime
    issuer: str
    card_uuid: str = ""         # from the CHUID, hex; empty when the card has none
    profile: str = "piv"


class IdCardPort(Protocol):
    """The inserted national ID card.  Raises DeviceNotReady when no card/reader, CardError on bad data."""

    def read_identity(self) -> CardIdentity:
        """Read the holder's certificate and validate its chain to the national trust anchors.

        Raises CertificateInvalid when it does not chain or is out of validity.
        """
        ...

    def authenticate(self, pin: Pin, challenge: bytes, expected_serial: int | None = None) -> None:
        """VERIFY the PIN, have the card sign ``challenge`` and check that signature with its certificate.

        The PIN goes only to the card whose certificate serial is ``expected_serial``; another card
        raises CardChanged before any PIN is sent.  Raises InvalidPin(attempts_remaining=n),
        PinBlocked, CardAuthenticationFailed.
        """
        ...


# --- eToken -------------------------------------------------------------------------------------------
@unique
class KeyAlgorithm(Enum):
    RSA2048 = "rsa2048"
    P256 = "p256"


@dataclass(frozen=True)
class TokenInfo:
    serial: str
    label: str
    model: str
    manufacturer: str
    initialised: bool
    user_pin_set: bool
    user_pin_locked: bool = False


class TokenSession(Protocol):
    """A logged-in user session on one token; all key material stays on the token."""

    def find_public_key(self, key_id: bytes) -> bytes | None:
        """The DER SubjectPublicKeyInfo of the key pair with CKA_ID ``key_id``, or None."""
        ...

    def generate_key_pair(self, key_id: bytes, label: str, algorithm: KeyAlgorithm) -> bytes:
        """Generate a sensitive, never-extractable key pair on the token; return its public key SPKI DER."""
        ...

    def sign_csr(self, key_id: bytes, subject_cn: str) -> bytes:
        """A PKCS#10 request (DER) for the key ``key_id``, signed on the token."""
        ...

    def install_certificate(self, key_id: bytes, label: str, certificate_der: bytes,
                            chain_der: Sequence[bytes]) -> None:
        """Write the certificate (with CKA_ID ``key_id``) and its chain; idempotent.

        Raises KeyMismatch if the certificate's public key is not the token's key ``key_id``.
        """
        ...

    def certificates(self) -> list[tuple[bytes, bytes]]:
        """(CKA_ID, DER) of every certificate object on the token."""
        ...


class TokenPort(Protocol):
    """The eToken slot.  Raises DeviceNotReady when no token is present or it was pulled."""

    def present(self) -> TokenInfo:
        """The token now in the slot (first one when several).  Raises DeviceNotReady if none."""
        ...

    def initialise(self, serial: str, current_so_pin: str, new_so_pin: str, label: str, user_pin: Pin) -> None:
        """C_InitToken with ``current_so_pin`` (factory or earlier), set SO PIN to ``new_so_pin``, set user PIN."""
        ...

    def session(self, serial: str, user_pin: Pin) -> AbstractContextManager[TokenSession]:
        """Log in as user; raises InvalidPin(attempts_remaining=…) or PinBlocked."""
        ...


# --- central service ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    chain_pem: tuple[str, ...]     # issuing CA first, root last
    serial_hex: str
    not_before: dt.datetime
    not_after: dt.datetime


class CentralPort(Protocol):
    def find_order(self, kind: str, value: str) -> Order:
        """``kind`` is 'invoice' or 'register'.  Raises OrderNotFound, CentralUnavailable."""
        ...

    def enroll(self, order_id: str, csr_der: bytes, idempotency_key: str) -> IssuedCertificate:
        """Have the CA issue a certificate for the order.  The same key returns the same certificate.

        Raises CentralRejected(reason=…) or CentralUnavailable.
        """
        ...


# --- printer ------------------------------------------------------------------------------------------
@unique
class PrinterStatus(Enum):
    READY = "ready"
    PAPER_NEAR_END = "paper_near_end"
    PAPER_OUT = "paper_out"
    OFFLINE = "offline"
    UNKNOWN = "unknown"   # the backend cannot report status (a file printer)


@unique
class ReceiptLineStyle(Enum):
    TITLE = "title"
    HEADING = "heading"
    TEXT = "text"
    PAIR = "pair"         # label left, value right
    TOTAL = "total"
    RULE = "rule"
    NOTE = "note"
    QR = "qr"


@dataclass(frozen=True)
class ReceiptLine:
    style: ReceiptLineStyle
    text: str = ""
    value: str = ""


@dataclass(frozen=True)
class Receipt:
    """A receipt as translated lines; the printer adapter renders it to a raster image."""

    language: str
    lines: tuple[ReceiptLine, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language,
                "lines": [[ln.style.value, ln.text, ln.value] for ln in self.lines]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Receipt:
        return cls(d["language"], tuple(ReceiptLine(ReceiptLineStyle(s), t, v) for s, t, v in d["lines"]))

    def text(self) -> Iterator[str]:
        for ln in self.lines:
            yield f"{ln.text} {ln.value}".strip()


class PrinterPort(Protocol):
    def status(self) -> PrinterStatus:
        ...

    def prepare(self, receipt: Receipt) -> object:
        """Render ahead of printing, with no printer I/O (the workflow overlaps it with token writes)."""
        ...

    def print_receipt(self, receipt: Receipt, prepared: object | None = None) -> bytes:
        """Print (``prepared`` if it is this receipt's, else render now); return the rendered PNG.

        Raises PaperOut, PrinterError, DeviceNotReady.
        """
        ...


# --- persistence --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionState:
    """One applicant's issuance, as persisted: the step reached and what the steps recorded."""

    id: str
    step: str
    version: int
    language: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


class SessionStore(Protocol):
    def create(self, session_id: str, step: str, language: str, data: dict[str, Any]) -> SessionState:
        ...

    def load(self, session_id: str) -> SessionState:
        """Raises KeyError when there is no such session."""
        ...

    def unfinished(self) -> list[SessionState]:
        ...

    def transition(self, state: SessionState, to_step: str, data: dict[str, Any],
                   event: dict[str, Any], durable: bool = False) -> SessionState:
        """Persist the new step and data, a journal row and an outbox event in one transaction.

        ``durable``: the commit must survive a power cut before the caller goes on (it precedes a
        side effect outside the kiosk); other commits may be lost to one, but never half-written.

        Fails (StepOutOfOrder) when ``state.version`` is no longer current: another writer moved on.
        """
        ...

    def save_token_secret(self, token_serial: str, so_pin: str) -> None:
        """Keep the token's SO PIN, encrypted at rest, never in clear; durable when this returns."""
        ...

    def token_secret(self, token_serial: str) -> str | None:
        ...

    def keep_receipt(self, session_id: str, receipt: Receipt, printed: bool) -> None:
        ...

    def pending_receipts(self) -> list[tuple[str, Receipt]]:
        ...

    def receipt_status(self, session_id: str) -> str | None:
        """'printed', 'pending' (kept for reprint) or None (no receipt yet)."""
        ...
