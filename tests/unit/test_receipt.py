"""The issuance receipt's lines: the QR code and the link printed under it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from kiosk.i18n import Translator
from kiosk.order import compute_fees
from kiosk.ports import ReceiptLineStyle
from kiosk.receipt import ReceiptFacts, build_receipt
from tests.fakes import demo_order

ZONE = ZoneInfo("Asia/Ulaanbaatar")


def facts(qr_payload: str) -> ReceiptFacts:
    return ReceiptFacts(office="УБ-1", issued_at=dt.datetime(2026, 12, 3, 14, 5, tzinfo=ZONE), order=demo_order(),
                        fees=compute_fees(1, True), certificate_serial="5a3f0011",
                        valid_from=dt.datetime(2026, 12, 3, tzinfo=ZONE),
                        valid_until=dt.datetime(2027, 12, 2, tzinfo=ZONE), token_serial="0A1B2C",
                        qr_payload=qr_payload)


@pytest.mark.parametrize("language", ["mn", "kk", "ky", "ru", "en"])
def test_the_https_link_of_the_qr_code_is_printed_under_it(language: str) -> None:
    link = "https://pki.tamga.mn/verify/5A3F0011"
    lines = build_receipt(facts(link), language).lines
    qr = next(i for i, line in enumerate(lines) if line.style is ReceiptLineStyle.QR)
    assert (lines[qr].text, lines[qr].value) == (Translator(language)("receipt.qr_caption"), link)
    assert (lines[qr + 1].style, lines[qr + 1].text) == (ReceiptLineStyle.NOTE, link)


@pytest.mark.parametrize("payload", ["TAMGA:CERT:5A3F0011", "http://pki.tamga.mn/verify/5A3F0011"])
def test_a_payload_that_is_no_https_link_is_not_printed_as_one(payload: str) -> None:
    lines = build_receipt(facts(payload), "mn").lines
    assert [line.value for line in lines if line.style is ReceiptLineStyle.QR] == [payload]
    assert all(payload not in line.text for line in lines)
