"""What a step shows: typed, secret-free views that the screens and the demo bind to.

A flow turns its persisted session data into one :class:`StepView`; only the sections its step
needs are filled.  Nothing here ever holds a PIN, an SO PIN or key material.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from kiosk.order import FeeLine, Order
from kiosk.ports import AgreementFacts


@dataclass(frozen=True)
class OrderView:
    invoice: str
    holder: str                 # display name, e.g. «Б.Ариун»
    register_number: str
    organisation: str
    position: str
    term_years: int
    etoken: bool
    paid_mnt: int
    fees: tuple[FeeLine, ...]
    total_mnt: int
    as_of: dt.datetime | None = None    # found in the kiosk's cache, the central unreachable: the last sync
                                        # (sync.po ``sync.order.as_of``)

    @classmethod
    def of(cls, order: Order) -> OrderView:
        fees = order.fees
        return cls(order.invoice, order.holder.display_name, order.holder.register_number, order.organisation,
                   order.position, order.term_years, order.etoken, order.paid_mnt, fees.lines, fees.total,
                   order.as_of)


@dataclass(frozen=True)
class CardView:
    name: str
    serial_number: str          # as on the card, e.g. PNOMN-NE80000000
    verified: bool
    # How the card was found not revoked, for the clerk (identity.po ``identity.status.*``):
    revocation: str = ""        # ocsp / crl / none; "" before the card is read
    grace_used: bool = False    # offline: a CRL past its nextUpdate decided, within the configured grace
    crl_next_update: dt.datetime | None = None   # when grace_used: the CRL's nextUpdate that passed
    crl_number: int | None = None                 # when revocation is crl: the CRL that decided
    evidence: str = ""          # short summary of the stored evidence, e.g. "ocsp ecdsa-p256-sha256 3f2a…"


@dataclass(frozen=True)
class TokenView:
    serial: str
    model: str
    label: str


@dataclass(frozen=True)
class CertificateView:
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    holder: str = ""
    organisation: str = ""
    status: str = ""            # good / revoked / expired, when the central was asked
    days_left: int | None = None


@dataclass(frozen=True)
class RenewalView:
    """The seed-003 application and notice: days left, deadline, fee, balance."""

    certificate: CertificateView
    days_left: int
    last_request_day: dt.date
    organisation: str
    organisation_register: str
    term_years: int
    fees: tuple[FeeLine, ...]
    fee_mnt: int
    balance_mnt: int


@dataclass(frozen=True)
class CheckView:
    """The token check's findings."""

    signature_ok: bool
    certificate: CertificateView


@dataclass(frozen=True)
class StepView:
    order: OrderView | None = None
    card: CardView | None = None
    token: TokenView | None = None
    certificate: CertificateView | None = None
    documents: tuple[str, ...] = ()                     # the clerk's checklist
    certificates: tuple[CertificateView, ...] = ()      # to choose from (revocation)
    reasons: tuple[str, ...] = ()                       # revocation reasons offered
    rejection: str = ""                                 # why the clerk rejected (a RejectReason value), if so
    renewal: RenewalView | None = None
    check: CheckView | None = None
    agreement: AgreementFacts | None = None             # what the holder agreement to sign says (kiosk.agreement)
    pin_needed: bool = False                            # the step needs the eToken PIN typed again
    receipt_pending: bool = False
    notice: str = ""                                    # a message key shown with the step
    timings_ms: dict[str, float] = field(default_factory=dict)
