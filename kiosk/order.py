"""Orders as the central service sends them, their fee lines, and whether one may proceed.

Fees follow the MonPass CA ordering guide (shared seed 000, section 3): the Class-3 employee
certificate costs the year-price per year of term, the eToken storage device is a separate line,
VAT is 10 % of the sum.  Amounts are whole tögrög (MNT) as integers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Any

from kiosk import register
from kiosk.errors import OrderNotPayable

YEAR_PRICE_MNT = 40_000
ETOKEN_PRICE_MNT = 40_000
VAT_PERCENT = 10
INVOICE_PATTERN = re.compile(r"^\d{12}$")
X520_MAX_LENGTH = 64    # ub-common-name, ub-organization-name, ub-title … (RFC 5280 appendix A)


@unique
class OrderStatus(Enum):
    """The order's life at the central service (seed 000: «Баталгаажуулах» → «Шинэ» → paid → issued)."""

    AWAITING_CONFIRMATION = "awaiting_confirmation"
    NEW = "new"
    PAID = "paid"
    ISSUED = "issued"
    CANCELLED = "cancelled"


@unique
class OrderRefusal(Enum):
    NOT_CONFIRMED = "not_confirmed"
    UNPAID = "unpaid"
    UNDERPAID = "underpaid"
    ALREADY_ISSUED = "already_issued"
    CANCELLED = "cancelled"
    INVALID_TERM = "invalid_term"
    INVALID_DATA = "invalid_data"      # a field cannot be written into a certificate


@unique
class FeeItem(Enum):
    CERTIFICATE = "certificate"
    ETOKEN = "etoken"
    SUBTOTAL = "subtotal"
    VAT = "vat"
    TOTAL = "total"


@dataclass(frozen=True)
class FeeLine:
    item: FeeItem
    quantity: int
    unit_mnt: int
    amount_mnt: int


@dataclass(frozen=True)
class Fees:
    lines: tuple[FeeLine, ...]

    @property
    def subtotal(self) -> int:
        return self._amount(FeeItem.SUBTOTAL)

    @property
    def vat(self) -> int:
        return self._amount(FeeItem.VAT)

    @property
    def total(self) -> int:
        return self._amount(FeeItem.TOTAL)

    def _amount(self, item: FeeItem) -> int:
        return next(line.amount_mnt for line in self.lines if line.item is item)


def compute_fees(term_years: int, etoken: bool, year_price: int = YEAR_PRICE_MNT,
                 etoken_price: int = ETOKEN_PRICE_MNT, vat_percent: int = VAT_PERCENT) -> Fees:
    """Fee lines for a term of 1 or 2 years; VAT rounds half up to whole tögrög."""
    if term_years not in (1, 2):
        raise OrderNotPayable(reason=OrderRefusal.INVALID_TERM.value, term_years=term_years)
    lines = [FeeLine(FeeItem.CERTIFICATE, term_years, year_price, year_price * term_years)]
    if etoken:
        lines.append(FeeLine(FeeItem.ETOKEN, 1, etoken_price, etoken_price))
    subtotal = sum(line.amount_mnt for line in lines)
    vat = (subtotal * vat_percent + 50) // 100
    lines += [
        FeeLine(FeeItem.SUBTOTAL, 1, subtotal, subtotal),
        FeeLine(FeeItem.VAT, 1, vat, vat),
        FeeLine(FeeItem.TOTAL, 1, subtotal + vat, subtotal + vat),
    ]
    return Fees(tuple(lines))


@dataclass(frozen=True)
class Holder:
    surname: str          # ургийн овог (clan name)
    father_name: str      # эцэг/эхийн нэр
    given_name: str       # өөрийн нэр
    register_number: str
    email: str = ""
    phone: str = ""

    @property
    def display_name(self) -> str:
        """``Б.Ариун``: the initial of the father's name, then the given name (as the seed's lists show)."""
        initial = self.father_name[:1]
        return f"{initial}.{self.given_name}" if initial else self.given_name

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.father_name, self.given_name) if part)


@dataclass(frozen=True)
class Order:
    id: str
    invoice: str
    status: OrderStatus
    holder: Holder
    organisation: str
    organisation_register: str
    department: str
    position: str
    term_years: int
    etoken: bool
    confirmed: bool
    paid_mnt: int
    authentication_certificate: bool = False   # the holder's profile adds one for a second key (Kazakhstan)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    as_of: dt.datetime | None = field(default=None, compare=False)   # from the kiosk's cache: last sync

    @property
    def fees(self) -> Fees:
        return compute_fees(self.term_years, self.etoken)

    @property
    def checked_digest(self) -> str:
        """SHA-256 (hex) of what the certificate is made from and the clerk checked against the ID card:
        the holder's names and register number, the organisation, the position, the term, the separate
        authentication certificate.  The kiosk sends it with the enrollment; the central refuses it
        (``order_changed``) when its order no longer has the same digest."""
        facts = {
            "holder": [self.holder.surname, self.holder.father_name, self.holder.given_name,
                       self.holder.register_number],
            "organisation": [self.organisation, self.organisation_register, self.department],
            "position": self.position, "term_years": self.term_years,
            "authentication_certificate": self.authentication_certificate,
        }
        text = json.dumps(facts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        """Build from the central service's JSON (``central/openapi.yaml``, schema ``Order``)."""
        h = d["holder"]
        org = d.get("organisation") or {}
        return cls(
            id=str(d["id"]),
            invoice=str(d["invoice"]),
            status=OrderStatus(d["status"]),
            holder=Holder(
                surname=h.get("surname", ""),
                father_name=h["father_name"],
                given_name=h["given_name"],
                register_number=h["register_number"],
                email=h.get("email", ""),
                phone=h.get("phone", ""),
            ),
            organisation=org.get("name", ""),
            organisation_register=org.get("register", ""),
            department=org.get("department", ""),
            position=d.get("position", ""),
            term_years=int(d["term_years"]),
            etoken=bool(d["etoken"]),
            confirmed=bool(d["confirmed"]),
            paid_mnt=int(d.get("paid_mnt", 0)),
            authentication_certificate=bool(d.get("authentication_certificate", False)),
            as_of=dt.datetime.fromisoformat(d["as_of"]) if d.get("as_of") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "invoice": self.invoice,
            "status": self.status.value,
            "holder": {
                "surname": self.holder.surname,
                "father_name": self.holder.father_name,
                "given_name": self.holder.given_name,
                "register_number": self.holder.register_number,
                "email": self.holder.email,
                "phone": self.holder.phone,
            },
            "organisation": {
                "name": self.organisation,
                "register": self.organisation_register,
                "department": self.department,
            },
            "position": self.position,
            "term_years": self.term_years,
            "etoken": self.etoken,
            "confirmed": self.confirmed,
            "paid_mnt": self.paid_mnt,
            "authentication_certificate": self.authentication_certificate,
        } | ({"as_of": self.as_of.isoformat()} if self.as_of is not None else {})


def check_may_proceed(order: Order) -> Fees:
    """Return the order's fees if it may be issued now; else raise :class:`OrderNotPayable`.

    Only an order that the holder confirmed by e-mail, whose invoice is paid in full, and that is
    neither issued nor cancelled may proceed.
    """
    if order.status is OrderStatus.CANCELLED:
        raise OrderNotPayable(reason=OrderRefusal.CANCELLED.value, invoice=order.invoice)
    if order.status is OrderStatus.ISSUED:
        raise OrderNotPayable(reason=OrderRefusal.ALREADY_ISSUED.value, invoice=order.invoice)
    if not order.confirmed or order.status is OrderStatus.AWAITING_CONFIRMATION:
        raise OrderNotPayable(reason=OrderRefusal.NOT_CONFIRMED.value, invoice=order.invoice)
    _check_certificate_fields(order)
    fees = order.fees
    if order.paid_mnt <= 0:
        raise OrderNotPayable(reason=OrderRefusal.UNPAID.value, invoice=order.invoice, total=fees.total)
    if order.paid_mnt < fees.total:
        raise OrderNotPayable(reason=OrderRefusal.UNDERPAID.value, invoice=order.invoice,
                              total=fees.total, paid=order.paid_mnt, due=fees.total - order.paid_mnt)
    return fees


def _check_certificate_fields(order: Order) -> None:
    """Refuse, before any token is touched, an order whose data cannot go into a certificate."""
    fields = {"name": order.holder.full_name, "organisation": order.organisation,
              "department": order.department, "position": order.position}
    for name, value in fields.items():
        if len(value) > X520_MAX_LENGTH:
            raise OrderNotPayable(reason=OrderRefusal.INVALID_DATA.value, invoice=order.invoice, field=name)
    try:
        register.to_ascii(order.holder.register_number)
    except ValueError:
        raise OrderNotPayable(reason=OrderRefusal.INVALID_DATA.value, invoice=order.invoice,
                              field="register_number") from None


@unique
class QueryKind(Enum):
    INVOICE = "invoice"
    REGISTER = "register"


def classify_query(text: str) -> tuple[QueryKind, str]:
    """What the applicant typed or scanned: a 12-digit invoice, a register number, or a QR payload.

    The order QR code carries ``TAMGA:INV:<invoice>``; anything else is read as typed.
    Raises ValueError when it is neither.
    """
    value = text.strip()
    if value.upper().startswith("TAMGA:INV:"):
        value = value[len("TAMGA:INV:"):]
    digits = re.sub(r"\s", "", value)
    if INVOICE_PATTERN.match(digits):
        return QueryKind.INVOICE, digits
    if register.is_valid(value):
        return QueryKind.REGISTER, register.canonical(value)
    raise ValueError("neither an invoice number nor a register number")
