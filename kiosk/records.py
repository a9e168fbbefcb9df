"""What each flow persists in its session, as typed records (schema version ``SCHEMA_VERSION``).

The store keeps a session's data as JSON; a flow reads it back as its TypedDict, so mypy checks
every key a step reads or writes, and the sync daemon and the screens bind to the same names.
Nothing here ever holds a PIN or an SO PIN.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict, cast

from kiosk.errors import CentralRejected
from kiosk.ports import SessionState


class RevocationRecord(TypedDict, total=False):
    """How the card was found not revoked (:func:`kiosk.identity.revocation_record`)."""

    method: str                   # ocsp / crl / none
    checked_at: str
    ocsp_response: str            # base64 DER, signed by the national CA's responder
    ocsp_url: str
    crl_number: int | None
    crl_this_update: str
    crl_next_update: str
    grace_used: bool


class CardRecord(TypedDict):
    name: str
    serial_number: str            # as on the card, e.g. PNOMN-NE80000000
    given_name: str
    surname: str
    certificate_serial: str       # hex
    certificate_sha256: str       # hex: what binds the card to the session
    certificate: str              # base64 DER
    issuer: str
    card_uuid: str
    not_after: str                # ISO 8601
    revocation: RevocationRecord
    verified: bool


class IdentityEvidence(TypedDict):
    """One verification's evidence (:func:`kiosk.identity.evidence_record`); never the PIN."""

    certificate: str              # base64 DER
    certificate_sha256: str
    nonce: str                    # base64, the 32-byte challenge
    signature: str                # base64, the card's signature over it ("" when it failed before)
    signature_algorithm: str
    revocation: RevocationRecord
    verified_at: str
    outcome: str                  # verified, or the error key


class TokenRecord(TypedDict, total=False):
    serial: str
    model: str
    label: str
    pin_locked: bool


class IssuedRecord(TypedDict):
    """A certificate the central issued, as the kiosk keeps it until installed."""

    pem: str
    chain: list[str]
    serial: str
    not_before: str
    not_after: str


class TokenCertificateRecord(TypedDict, total=False):
    """A certificate read off the token (:meth:`kiosk.token_certificates.TokenCertificate.to_dict`)."""

    key_id: str
    serial: str
    not_before: str
    not_after: str
    holder: str
    organisation: str
    serial_number: str
    given_name: str
    surname: str
    public_key_sha256: str
    status: str                   # good / revoked / expired / unknown, when the central was asked


class SessionData(TypedDict, total=False):
    """What every flow's session holds."""

    schema: int
    timings_ms: dict[str, float]
    consent_at: str
    card: CardRecord
    identity_evidence: IdentityEvidence
    receipt_pending: bool


class EarlyRecord(TypedDict, total=False):
    """The early token preparation during the clerk's review (``kiosk.flows.issuance_early``)."""

    status: str                   # initialising / generating / ready / failed
    token_serial: str
    failure: str                  # the error key, when failed


class RejectionRecord(TypedDict):
    clerk_id: str
    reason: str                   # kiosk.flows.issuance_early.RejectReason value
    at: str


class AuthenticationRecord(TypedDict, total=False):
    """The second key and its certificate, where the order's profile issues an authentication certificate."""

    key_id: str                   # hex CKA_ID, derived from the signing key's (kiosk.token_steps)
    csr: str                      # base64 DER
    public_key_sha256: str
    certificate: IssuedRecord


class IssuanceData(SessionData, total=False):
    order: dict[str, Any]         # kiosk.order.Order.to_dict()
    fees_total: int
    by_proxy: bool
    clerk_id: str
    documents: list[str]
    approved_at: str
    token: TokenRecord
    key_id: str                   # hex CKA_ID, chosen before keygen
    idempotency_key: str          # for the enrollment, chosen before keygen
    csr: str                      # base64 DER
    public_key_sha256: str
    certificate: IssuedRecord
    authentication: AuthenticationRecord
    issued_at: str
    pending_since: str            # the visit ended offline; the certificate is fetched later
    early: EarlyRecord
    rejection: RejectionRecord    # the clerk rejected; the session ends once the early key is gone
    refusal: dict[str, Any]       # the central refused the kept request: reason (issued_by, issued_at for a
                                  # conflict; refusal for order_not_payable), refused_at, key_removed_at


class TermsRecord(TypedDict):
    certificate_serial: str
    not_after: str
    last_request_day: str
    organisation: str
    organisation_register: str
    balance_mnt: int
    term_years: int
    fee_mnt: int
    fees: list[list[Any]]         # [item, quantity, unit, amount]


class RenewalData(SessionData, total=False):
    token: TokenRecord
    certificate: TokenCertificateRecord      # the current one, read off the token
    holder: dict[str, str]                   # register_number, name (as the central knows them)
    terms: TermsRecord
    application: dict[str, Any]              # seed 003's application, exactly as signed
    new_key_id: str
    idempotency_key: str
    csr: str
    signature: str
    public_key_sha256: str
    new_certificate: IssuedRecord
    authentication: AuthenticationRecord     # the new authentication key, where the token has one
    installed_at: str
    refusal: dict[str, Any]                  # the central refused the request: reason (and its data), refused_at


class ListedCertificate(TypedDict):
    serial: str
    status: str
    not_before: str
    not_after: str
    holder: str
    organisation: str
    token_serial: str
    invoice: str


class RevocationData(SessionData, total=False):
    certificates: list[ListedCertificate]
    chosen: ListedCertificate
    reason: str
    clerk_id: str
    confirmed_at: str
    idempotency_key: str
    revoked_at: str


class UnblockData(SessionData, total=False):
    token: TokenRecord
    certificate: TokenCertificateRecord
    unblocked_at: str


class CheckResult(TypedDict):
    signature_ok: bool
    checked_at: str
    removed: list[str]


class CheckData(SessionData, total=False):
    token: TokenRecord
    certificate: TokenCertificateRecord
    check: CheckResult


def refusal_record(err: CentralRejected, at: dt.datetime) -> dict[str, Any]:
    """What a session keeps of the central's refusal of its request (``data['refusal']``): the error's
    data without its HTTP status, and when; :func:`kiosk.clerk_desk.refusal_text` says it in words."""
    return {**{k: v for k, v in err.data.items() if k != "status"}, "refused_at": at.isoformat()}


def issuance_data(state: SessionState) -> IssuanceData:
    return cast(IssuanceData, dict(state.data))


def renewal_data(state: SessionState) -> RenewalData:
    return cast(RenewalData, dict(state.data))


def revocation_data(state: SessionState) -> RevocationData:
    return cast(RevocationData, dict(state.data))


def unblock_data(state: SessionState) -> UnblockData:
    return cast(UnblockData, dict(state.data))


def check_data(state: SessionState) -> CheckData:
    return cast(CheckData, dict(state.data))
