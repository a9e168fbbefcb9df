"""The holder agreement step (kiosk/agreement.py) over the in-memory fakes.

Issuance does not take the step in yet (the lead wires it, see the module docstring), so a flow made
of the step alone runs here on a session that holds what an issuance holds after ``install``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from enum import Enum, unique

import pytest

from devices.certificates import X509Reader
from kiosk.agreement import AgreementSteps, agreement_facts
from kiosk.engine import Engine, FlowKind, KioskPolicy, Services
from kiosk.errors import CentralRejected, CentralUnavailable, InvalidPin
from kiosk.i18n import catalogue
from kiosk.pin import Pin
from kiosk.ports import AgreementSigner, ReceiptLineStyle
from kiosk.receipt import build_receipt
from tests.fakes import NOW, FakeAgreementSigner, FakeCentral, FakeIdCard, FakePrinter, FakeToken, MemoryStore
from tests.unit.conftest import TOKEN_PIN, Rig


@unique
class Step(Enum):
    AGREEMENT = "agreement"
    RECEIPT = "receipt"
    DONE = "done"
    CANCELLED = "cancelled"


class AgreementOnly(AgreementSteps):
    kind = FlowKind.ISSUANCE
    Step = Step
    first_step = Step.AGREEMENT
    after_agreement = Step.RECEIPT
    signer: AgreementSigner

    def agreement_signer(self) -> AgreementSigner:
        return self.signer


class Desk:
    def __init__(self) -> None:
        rig = Rig()
        sid = rig.to_enrollment_step()
        rig.issuance.enroll(sid)
        rig.issuance.install(sid)
        self.issued = rig.data(sid)               # what an issuance holds after install
        self.central: FakeCentral = rig.central
        self.token: FakeToken = rig.token
        self.store = MemoryStore()
        services = Services(self.store, self.central, FakeIdCard(), self.token, FakePrinter(), X509Reader())
        self.engine = Engine(services, KioskPolicy(office="Test office"), (AgreementOnly,), clock=lambda: NOW)
        self.flow = self.engine.flow(FlowKind.ISSUANCE)
        assert isinstance(self.flow, AgreementOnly)
        self.signer = FakeAgreementSigner(self.token)
        self.flow.signer = self.signer
        rig.engine.close()

    def begin(self, language: str = "mn") -> str:
        return self.engine.begin(FlowKind.ISSUANCE, language, **{
            k: v for k, v in self.issued.items() if k not in ("schema", "timings_ms")}).session_id


@pytest.fixture
def desk() -> Iterator[Desk]:
    d = Desk()
    yield d
    d.engine.close()


def test_signed_on_the_token_sent_and_the_pin_not_kept(desk: Desk) -> None:
    sid = desk.begin()
    result = desk.flow.sign_agreement(sid, Pin(TOKEN_PIN))
    assert result.step is Step.RECEIPT and result.error is None
    data = desk.store.load(sid).data
    serial = data["certificate"]["serial"]
    assert data["agreement"]["sent"] is True and "pdf" not in data["agreement"]
    kept = desk.central.agreements[serial.upper()]
    assert data["agreement"]["sha256"] == desk.central.submit_agreement(serial, kept)
    facts = json.loads(kept[len(FakeAgreementSigner.MAGIC):].split(b"\n")[0])
    assert facts["certificate_serial"] == serial.upper() and facts["register_number"] == "НЭ80000000"
    assert facts["holder_name"] == "Баатар Ариун" and facts["country"] == "MN"
    assert facts["paid"].replace("\xa0", " ") == "88,000 ₮"
    assert sid not in desk.engine.pins
    journal = json.dumps([e for s, _, e in desk.store.journal if s == sid], ensure_ascii=False)
    assert TOKEN_PIN not in journal and TOKEN_PIN not in json.dumps(data, ensure_ascii=False)
    assert desk.store.events(sid)[-1] == "agreement.signed"


def test_wrong_pin_stays_at_the_step_and_is_journalled(desk: Desk) -> None:
    sid = desk.begin()
    with pytest.raises(InvalidPin):
        desk.flow.sign_agreement(sid, Pin("000000"))
    state = desk.store.load(sid)
    assert state.step == "agreement" and "agreement" not in state.data
    assert desk.store.events(sid)[-1] == "token.pin_refused"
    assert desk.flow.sign_agreement(sid, Pin(TOKEN_PIN)).step is Step.RECEIPT


def test_central_down_queues_the_signed_pdf_and_the_queued_call_sends_it(desk: Desk) -> None:
    sid = desk.begin()
    desk.central.down = True
    result = desk.flow.sign_agreement(sid, Pin(TOKEN_PIN))
    assert result.step is Step.RECEIPT and isinstance(result.error, CentralUnavailable)
    state = desk.store.load(sid)
    assert state.data["agreement"]["sent"] is False
    pdf = base64.b64decode(state.data["agreement"]["pdf"])
    call = desk.flow.queued_agreement(state)
    assert call is not None
    with pytest.raises(CentralUnavailable):
        call()
    desk.central.down = False
    call()
    state = desk.store.load(sid)
    assert state.data["agreement"]["sent"] is True and "pdf" not in state.data["agreement"]
    assert desk.central.agreements[state.data["certificate"]["serial"].upper()] == pdf
    assert desk.store.events(sid)[-1] == "agreement.sent"
    assert desk.flow.queued_agreement(state) is None


def test_an_agreement_the_central_already_keeps_counts_as_sent(desk: Desk) -> None:
    """The answer to a send was lost and the holder signed again: the central keeps the first one (409)."""
    sid = desk.begin()
    serial = desk.issued["certificate"]["serial"].upper()
    desk.central.agreements[serial] = FakeAgreementSigner.MAGIC + b"the first one"
    result = desk.flow.sign_agreement(sid, Pin(TOKEN_PIN))
    assert result.error is None and desk.store.load(sid).data["agreement"]["sent"] is True
    assert desk.central.agreements[serial] == FakeAgreementSigner.MAGIC + b"the first one"


def test_a_refusal_keeps_the_pdf_and_is_not_retried(desk: Desk) -> None:
    """A refusal cannot be fixed by sending again; the certificate is issued all the same: the visit goes on."""
    sid = desk.begin()
    desk.central.by_serial.pop(desk.issued["certificate"]["serial"].upper())
    result = desk.flow.sign_agreement(sid, Pin(TOKEN_PIN))
    assert result.step is Step.RECEIPT and isinstance(result.error, CentralRejected)
    state = desk.store.load(sid)
    assert state.data["agreement"]["refused"] == "certificate_not_found" and state.data["agreement"]["pdf"]
    assert desk.flow.queued_agreement(state) is None
    assert desk.flow.send_agreement(sid).error is None and desk.central.calls.count("submit_agreement") == 1


def test_facts_follow_the_holders_country_and_the_language(desk: Desk) -> None:
    data = dict(desk.issued)
    data["order"] = dict(data["order"], holder=dict(data["order"]["holder"], register_number="880101300010"))
    at = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    facts = agreement_facts(data, "kk", "Алматы", "KZT", at)
    assert facts.country == "KZ" and facts.language == "kk" and facts.signed_on == dt.date(2026, 12, 3)
    assert "₸" in facts.paid and facts.certificate_serial == data["certificate"]["serial"].upper()


@pytest.mark.parametrize("language", ["mn", "kk", "ky", "ru", "en"])
def test_the_receipt_says_the_agreement_was_signed_and_where_to_get_it(desk: Desk, language: str) -> None:
    rig = Rig()
    sid = rig.to_enrollment_step()
    rig.issuance.enroll(sid)
    rig.issuance.install(sid)
    facts = rig.issuance.receipt_facts(rig.data(sid))
    rig.engine.close()
    without = build_receipt(facts, language)
    signed = build_receipt(type(facts)(**{**facts.__dict__, "agreement_signed": True}), language)
    words = catalogue(language)
    added = [ln for ln in signed.lines if ln not in without.lines]
    assert [(ln.style, ln.text) for ln in added] == [
        (ReceiptLineStyle.NOTE, words["agreement.receipt.signed"]),
        (ReceiptLineStyle.NOTE, words["agreement.receipt.where"])]
    qr = next(i for i, ln in enumerate(signed.lines) if ln.style is ReceiptLineStyle.QR)
    assert signed.lines[qr - 1] == added[-1]       # just above the QR code it speaks of
