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

from kiosk.order import Fees, Order
from kiosk.pin import Pin, SoPin


# --- ID card ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevocationStatus:
    """How the ID card's certificate was found not revoked: the evidence the central keeps.

    ``method``: ``ocsp`` (``ocsp_response`` is the signed DER answer), ``crl`` (``crl_number``,
    ``crl_this_update``, ``crl_next_update`` of the CRL that did not list it) or ``none`` (the kiosk is
    configured without revocation checking).  ``grace_used``: OCSP was unreachable and the cached CRL
    was past its nextUpdate, but within the configured offline grace: the clerk is shown it.
    """

    method: str
    checked_at: dt.datetime
    ocsp_response: bytes = field(default=b"", repr=False)
    ocsp_url: str = ""
    crl_number: int | None = None
    crl_this_update: dt.datetime | None = None
    crl_next_update: dt.datetime | None = None
    grace_used: bool = False


@dataclass(frozen=True)
class ChallengeSignature:
    """The card's signature over the kiosk's challenge, verified; ``algorithm`` as allow-listed
    (``rsa-pkcs1v15-sha256``, ``rsa-pss-sha256``, ``ecdsa-p256-sha256``, ``ecdsa-p384-sha384``)."""

    signature: bytes = field(repr=False)
    algorithm: str


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
    certificate_sha256: str = ""     # hex SHA-256 of certificate_der: what binds the card to a session
    revocation: RevocationStatus | None = None


class IdCardPort(Protocol):
    """The inserted national ID card.  Raises DeviceNotReady when no card/reader, CardError on bad data."""

    def read_identity(self) -> CardIdentity:
        """Read the holder's certificate, validate its chain to the national trust anchors, check revocation.

        Raises CertificateInvalid (CardExpired, CardIssuerUnknown, CardWrongUsage, CardRevoked,
        RevocationUnknown) when the card may not be used.
        """
        ...

    def authenticate(self, pin: Pin, challenge: bytes, expected_sha256: str | None = None) -> ChallengeSignature:
        """VERIFY the PIN, have the card sign ``challenge`` and check that signature with its certificate.

        The PIN goes only to the card whose certificate's SHA-256 (hex) is ``expected_sha256``; another
        card raises CardChanged before any PIN is sent.  Raises InvalidPin(attempts_remaining=n),
        PinBlocked, CardAuthenticationFailed, CardAlgorithmRefused.
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

    def key_ids(self) -> list[bytes]:
        """CKA_ID of every private key on the token."""
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

    def sign(self, key_id: bytes, data: bytes) -> bytes:
        """Sign ``data`` on the token with the private key ``key_id`` (SHA-256; RSA PKCS#1 v1.5, or ECDSA DER).

        Raises TokenError(reason='key_missing') when there is no such key.
        """
        ...

    def remove_key(self, key_id: bytes) -> None:
        """Delete the private key, public key and certificate objects with CKA_ID ``key_id``; idempotent."""
        ...

    def set_pin(self, old_pin: Pin, new_pin: Pin) -> None:
        """C_SetPIN: the user PIN ``old_pin`` (the one this session logged in with) becomes ``new_pin``.

        Raises InvalidPin when ``old_pin`` is refused.
        """
        ...


class TokenPort(Protocol):
    """The eToken slot.  Raises DeviceNotReady when no token is present or it was pulled."""

    def present(self) -> TokenInfo:
        """The token now in the slot (first one when several), initialised or not.  Raises DeviceNotReady if none."""
        ...

    def initialise(self, serial: str, current_so_pin: SoPin, new_so_pin: SoPin, label: str,
                   user_pin: Pin) -> TokenInfo:
        """C_InitToken with ``current_so_pin`` (factory or earlier), set SO PIN to ``new_so_pin``, set user PIN.

        Returns the token as it is afterwards (a blank software token may get its serial only now).

        Works on an uninitialised token too (``TokenInfo.initialised`` False: e.g. after a power cut
        inside an earlier C_InitToken), where any SO PIN is accepted.  Raises
        TokenError(reason='so_pin_incorrect'), PinBlocked(role='so'), DeviceNotReady.
        """
        ...

    def public_certificates(self, serial: str) -> list[tuple[bytes, bytes]]:
        """(CKA_ID, DER) of the token's certificate objects, read without logging in."""
        ...

    def unblock(self, serial: str, so_pin: SoPin, new_user_pin: Pin) -> None:
        """Log in as SO and set a new user PIN (C_InitPIN), which also clears a blocked user PIN.

        Raises TokenError(reason='so_pin_incorrect'), PinBlocked(role='so'), DeviceNotReady.
        """
        ...

    def session(self, serial: str, user_pin: Pin) -> AbstractContextManager[TokenSession]:
        """Log in as user; raises InvalidPin(attempts_remaining=…) or PinBlocked."""
        ...


# --- holder agreement ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgreementFacts:
    """What the certificate-holder agreement is filled in with (seed 000 §5, seed 004 §9)."""

    country: str                 # the certificate profile: "MN", "KZ", "KG"
    language: str                # mn, kk, ky, ru, en
    holder_name: str
    register_number: str         # the holder's, as on the order
    certificate_serial: str      # upper-case hex
    token_serial: str
    signed_on: dt.date           # the office's date
    office: str
    paid: str                    # the amount paid, as the language writes money ("88,000 ₮")


@dataclass(frozen=True)
class AgreementKey:
    """The token key that signs the agreement, and the certificate (with its chain) the central issued for it."""

    token_serial: str
    key_id: bytes
    certificate_der: bytes
    chain_der: tuple[bytes, ...]   # issuing CA first


class AgreementSigner(Protocol):
    """Renders the holder agreement as a PDF and signs it PAdES on the token; the key never leaves it."""

    def sign(self, facts: AgreementFacts, key: AgreementKey, pin: Pin) -> bytes:
        """The signed PDF.  ``pin`` is used for this one login and not kept.

        Raises InvalidPin(attempts_remaining=…), PinBlocked, DeviceNotReady, TokenError(reason='key_missing').
        """
        ...


# --- central service ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    chain_pem: tuple[str, ...]     # issuing CA first, root last
    serial_hex: str
    not_before: dt.datetime
    not_after: dt.datetime
    public_key_sha256: str = ""    # hex SHA-256 of the certificate's SubjectPublicKeyInfo DER
    authentication: IssuedCertificate | None = None   # issued with it for a second key (the order's profile)


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate the central issued on a token for an order of this office (``GET /tokens/{serial}/certificate``),
    whichever kiosk of the office sent the request."""

    certificate: IssuedCertificate
    order_id: str
    invoice: str
    token_serial: str


@dataclass(frozen=True)
class RefusedKey:
    """A key on a token whose kept request the central refused, journalled by a kiosk of this office."""

    public_key_sha256: str
    kiosk_id: str
    refusal: dict[str, Any]         # reason, refusal, issued_by, issued_at, refused_at (as in the session data)
    invoice: str


@unique
class CertificateStatus(Enum):
    GOOD = "good"
    REVOKED = "revoked"
    EXPIRED = "expired"


@unique
class RevocationReason(Enum):
    """RFC 5280 CRLReason values a holder may give at the kiosk."""

    KEY_COMPROMISE = "key_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"


@dataclass(frozen=True)
class CertificateRecord:
    """A holder certificate as the central knows it (``central/openapi.yaml``, schema ``Certificate``)."""

    serial_hex: str                 # upper-case hex, as django-ca writes it
    status: CertificateStatus
    not_before: dt.datetime
    not_after: dt.datetime
    register_number: str            # the holder's, canonical (kiosk.register.canonical)
    holder_name: str
    organisation: str
    invoice: str
    token_serial: str               # "" when the central does not know it
    certificate_pem: str
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None


@dataclass(frozen=True)
class RenewalTerms:
    """What renewing a certificate costs and until when it is possible (seed 003)."""

    certificate_serial: str
    not_after: dt.datetime
    last_request_day: dt.date        # the last day the central accepts the request (3 working days ahead)
    organisation: str
    organisation_register: str       # the organisation's tax number
    balance_mnt: int                 # the organisation's balance at the central
    term_years: int
    fees: Fees


@dataclass(frozen=True)
class Revocation:
    certificate_serial: str
    revoked_at: dt.datetime
    reason: RevocationReason


class CentralPort(Protocol):
    """The central registration service.  Every call raises CentralUnavailable when it cannot be reached
    (or answers 5xx/garbage) and CentralRejected(reason=…) when it refuses."""

    def find_order(self, kind: str, value: str) -> Order:
        """``kind`` is 'invoice' or 'register'.  Raises OrderNotFound, CentralUnavailable."""
        ...

    def enroll(self, order_id: str, csr_der: bytes, idempotency_key: str, token_serial: str = "",
               so_pin: SoPin | None = None, authentication_csr_der: bytes | None = None,
               order_digest: str = "") -> IssuedCertificate:
        """Have the CA issue a certificate for the order.  The same key returns the same certificate.

        ``order_digest`` (:attr:`kiosk.order.Order.checked_digest` of the order as checked here): an
        order changed at the central since is refused (CentralRejected ``order_changed``).

        ``so_pin`` is escrowed at the central, encrypted to the central's escrow key by the adapter,
        under ``token_serial``.  ``authentication_csr_der`` (another key, where the order has
        ``authentication_certificate``) gets the authentication certificate, as ``authentication``.
        The returned certificate was parsed and checked by the adapter (PEM, chain); its
        ``public_key_sha256`` is the SHA-256 of its SubjectPublicKeyInfo DER.
        Raises CentralRejected(reason=…) (``enrollment_void`` when the key was voided) or CentralUnavailable.
        """
        ...

    def void_enrollment(self, idempotency_key: str) -> str | None:
        """Make the idempotency key unusable; revoke what was issued under it.  Returns that serial or None."""
        ...

    def refused_keys(self, token_serial: str) -> list[RefusedKey]:
        """Keys on the token whose kept request the central refused and that no kiosk of the office removed yet."""
        ...

    def token_certificate(self, token_serial: str) -> TokenCertificate:
        """The newest valid certificate issued on the token for an order of this office, whichever kiosk of the
        office sent its request.  Raises CentralRejected(reason='certificate_not_found') when there is none."""
        ...

    def certificates(self, register_number: str) -> list[CertificateRecord]:
        """The holder's certificates, newest first."""
        ...

    def certificate(self, serial_hex: str) -> CertificateRecord:
        """One certificate's record and status.  Raises CentralRejected(reason='certificate_not_found')."""
        ...

    def revoke(self, serial_hex: str, reason: RevocationReason, register_number: str,
               idempotency_key: str) -> Revocation:
        """Revoke the holder's certificate (``register_number`` must be its holder's); idempotent by key."""
        ...

    def renewal_terms(self, serial_hex: str, term_years: int) -> RenewalTerms:
        """Fee, balance and deadline for renewing ``serial_hex`` for ``term_years``."""
        ...

    def renew(self, serial_hex: str, application: bytes, signature: bytes, csr_der: bytes,
              idempotency_key: str, authentication_csr_der: bytes | None = None) -> IssuedCertificate:
        """Send the signed renewal application (seed 003) and the new key's CSR; the same key returns the same.

        ``authentication_csr_der``: a new authentication key's, where the token has an authentication
        certificate (its renewal comes back as ``authentication``).

        ``application`` is the exact UTF-8 JSON the holder's current key signed.  Raises
        CentralRejected(reason='renewal_too_late' | 'insufficient_balance' | 'signature_invalid' | …).
        """
        ...

    def escrowed_so_pin(self, token_serial: str, certificate_serial: str, register_number: str) -> SoPin:
        """The token's SO PIN escrowed at issuance (by any kiosk), for unblocking.

        The central releases it only when ``certificate_serial`` is a certificate it issued on that
        token to ``register_number``.  Raises CentralRejected(reason='so_pin_not_escrowed' | …).
        """
        ...

    def submit_agreement(self, certificate_serial: str, pdf: bytes) -> str:
        """Hand the holder agreement signed with the certificate's key to the central; idempotent per serial.

        Returns the SHA-256 (hex) of the PDF the central keeps.  Raises CentralRejected(reason=
        'agreement_signature_invalid' | 'agreement_signer_mismatch' | 'certificate_not_found' | …).
        """
        ...


# --- certificates --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificateFacts:
    """What the flows need to know of an X.509 certificate (parsed by an adapter)."""

    serial_hex: str                  # upper-case hex
    subject_serial_number: str       # the subject's serialNumber, e.g. PNOMN-NE80000000 ("" if none)
    common_name: str
    given_name: str
    surname: str
    organisation: str
    issuer: str                      # RFC 4514
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    public_key_sha256: str           # hex SHA-256 of the SubjectPublicKeyInfo DER
    authentication_only: bool = False   # clientAuth without nonRepudiation: a holder's authentication certificate


class CertificateReader(Protocol):
    def describe(self, certificate_der: bytes) -> CertificateFacts:
        """Parse a DER certificate.  Raises InvalidInput(field='certificate') when it is not one."""
        ...

    def verify(self, certificate_der: bytes, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` over ``data`` verifies with the certificate's key (SHA-256; PKCS#1 v1.5 or ECDSA)."""
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
    """One session of a flow, as persisted: the flow, the step reached and what the steps recorded."""

    id: str
    flow: str
    step: str
    version: int
    language: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


class SessionStore(Protocol):
    def create(self, session_id: str, flow: str, step: str, language: str, data: dict[str, Any]) -> SessionState:
        ...

    def load(self, session_id: str) -> SessionState:
        """Raises KeyError when there is no such session."""
        ...

    def unfinished(self) -> list[SessionState]:
        ...

    def awaiting_central(self) -> list[SessionState]:
        """Finished sessions whose data has ``awaits_central`` (kiosk.engine.AWAITS_CENTRAL), oldest first;
        the retention purge keeps them."""
        ...

    def transition(self, state: SessionState, to_step: str, data: dict[str, Any],
                   event: dict[str, Any], durable: bool = False) -> SessionState:
        """Persist the new step and data, a journal row and an outbox event in one transaction.

        ``durable``: the commit must survive a power cut before the caller goes on (it precedes a
        side effect outside the kiosk); other commits may be lost to one, but never half-written.

        Fails (StaleSession) when ``state.version`` is no longer current: another writer moved on.
        """
        ...

    def save_token_secret(self, token_serial: str, so_pin: SoPin) -> None:
        """Keep the token's SO PIN, encrypted at rest, never in clear; durable when this returns."""
        ...

    def token_secret(self, token_serial: str) -> SoPin | None:
        ...

    def keep_receipt(self, session_id: str, receipt: Receipt, printed: bool) -> None:
        ...

    def pending_receipts(self) -> list[tuple[str, Receipt]]:
        ...

    def receipt_status(self, session_id: str) -> str | None:
        """'printed', 'pending' (kept: a print was attempted and not confirmed) or None (no receipt yet)."""
        ...
