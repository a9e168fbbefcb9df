"""The issuance receipt as translated lines (pure); ``devices/receipt_render.py`` draws it.

It never carries a PIN, and masks the register number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kiosk import register
from kiosk.i18n import Translator
from kiosk.order import FeeItem, Fees, Order
from kiosk.ports import Receipt, ReceiptLine, ReceiptLineStyle

S = ReceiptLineStyle


@dataclass(frozen=True)
class ReceiptFacts:
    office: str
    issued_at: dt.datetime          # aware, in the office's time zone
    order: Order
    fees: Fees
    certificate_serial: str         # hex
    valid_from: dt.datetime
    valid_until: dt.datetime
    token_serial: str
    qr_payload: str
    agreement_signed: bool = False  # the holder agreement was signed on the token (kiosk/agreement.py)
    authentication_serial: str = ""  # hex, of the authentication certificate beside it (the order's profile)


def build_receipt(facts: ReceiptFacts, language: str, currency: str = "MNT", reprint: bool = False) -> Receipt:
    t = Translator(language, currency)
    order = facts.order
    lines = [ReceiptLine(S.TITLE, t("receipt.title"))]
    if reprint:
        lines.append(ReceiptLine(S.HEADING, t("receipt.reprint")))
    lines += [
        ReceiptLine(S.PAIR, t("receipt.office"), facts.office),
        ReceiptLine(S.PAIR, t("receipt.date"), t.datetime(facts.issued_at)),
        ReceiptLine(S.PAIR, t("receipt.invoice"), order.invoice),
        ReceiptLine(S.RULE),
        ReceiptLine(S.PAIR, t("receipt.holder"), order.holder.display_name),
        ReceiptLine(S.PAIR, t("receipt.register"), register.masked(order.holder.register_number)),
        ReceiptLine(S.PAIR, t("receipt.organisation"), order.organisation),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, t("receipt.certificate_serial")),
        ReceiptLine(S.TEXT, grouped_serial(facts.certificate_serial)),
    ]
    if facts.authentication_serial:
        lines += [ReceiptLine(S.HEADING, t("receipt.authentication_serial")),
                  ReceiptLine(S.TEXT, grouped_serial(facts.authentication_serial))]
    lines += [
        ReceiptLine(S.PAIR, t("receipt.valid_from"), t.date(facts.valid_from)),
        ReceiptLine(S.PAIR, t("receipt.valid_until"), t.date(facts.valid_until)),
        ReceiptLine(S.PAIR, t("receipt.token_serial"), facts.token_serial),
        ReceiptLine(S.RULE),
    ]
    for fee in facts.fees.lines:
        if fee.item is FeeItem.CERTIFICATE:
            lines.append(ReceiptLine(S.PAIR, t("fee.certificate", years=fee.quantity), t.money(fee.amount_mnt)))
        elif fee.item is FeeItem.TOTAL:
            lines.append(ReceiptLine(S.TOTAL, t("fee.total"), t.money(fee.amount_mnt)))
        else:
            lines.append(ReceiptLine(S.PAIR, t(f"fee.{fee.item.value}"), t.money(fee.amount_mnt)))
    lines += [
        ReceiptLine(S.PAIR, t("receipt.paid"), t.money(order.paid_mnt)),
        ReceiptLine(S.RULE),
    ]
    if facts.agreement_signed:
        lines += [ReceiptLine(S.NOTE, t("agreement.receipt.signed")), ReceiptLine(S.NOTE, t("agreement.receipt.where"))]
    lines.append(ReceiptLine(S.QR, t("receipt.qr_caption"), facts.qr_payload))
    if facts.qr_payload.startswith("https://"):         # the link to type where no camera reads the code
        lines.append(ReceiptLine(S.NOTE, facts.qr_payload))
    lines.append(ReceiptLine(S.NOTE, t("receipt.pin_not_printed")))
    return Receipt(language, tuple(lines))


def grouped_serial(serial: str) -> str:
    """Upper-case hex in groups of four, so the line wraps at spaces."""
    serial = serial.upper()
    return " ".join(serial[i:i + 4] for i in range(0, len(serial), 4))


def build_pending_receipt(office: str, at: dt.datetime, order: Order, token_serial: str, language: str,
                          currency: str = "MNT", reprint: bool = False) -> Receipt:
    """The receipt of a visit finished while the central could not be reached: the certificate is pending."""
    t = Translator(language, currency)
    lines = [ReceiptLine(S.TITLE, t("receipt.pending_title"))]
    if reprint:
        lines.append(ReceiptLine(S.HEADING, t("receipt.reprint")))
    lines += [
        ReceiptLine(S.PAIR, t("receipt.office"), office),
        ReceiptLine(S.PAIR, t("receipt.date"), t.datetime(at)),
        ReceiptLine(S.PAIR, t("receipt.invoice"), order.invoice),
        ReceiptLine(S.RULE),
        ReceiptLine(S.PAIR, t("receipt.holder"), order.holder.display_name),
        ReceiptLine(S.PAIR, t("receipt.register"), register.masked(order.holder.register_number)),
        ReceiptLine(S.PAIR, t("receipt.organisation"), order.organisation),
        ReceiptLine(S.PAIR, t("receipt.token_serial"), token_serial),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, t("receipt.pending_status")),
        ReceiptLine(S.NOTE, t("receipt.pending_note")),
        ReceiptLine(S.PAIR, t("receipt.paid"), t.money(order.paid_mnt)),
        ReceiptLine(S.NOTE, t("receipt.pin_not_printed")),
    ]
    return Receipt(language, tuple(lines))
