"""Issuance with the holder agreement (policy ``holder_agreement``): install → agreement → receipt."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from devices.certificates import X509Reader
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.errors import CentralUnavailable, InvalidPin
from kiosk.flows import ALL_FLOWS
from kiosk.pin import Pin
from sync.store import KioskStore
from tests.fakes import FACTORY_SO, FakeAgreementSigner
from tests.unit.conftest import TOKEN_PIN, Rig


class AgreementRig(Rig):
    def restart(self) -> None:
        self.signer = FakeAgreementSigner(self.token)
        services = Services(self.store, self.central, self.idcard, self.token, self.printer, X509Reader(),
                            agreement=self.signer)
        policy = KioskPolicy(office="Test office", factory_so_pin=FACTORY_SO, holder_agreement=True)
        self.engine = Engine(services, policy, ALL_FLOWS, clock=lambda: self.now)

    def to_agreement(self) -> str:
        sid = self.to_enrollment_step()
        assert self.issuance.enroll(sid).error is None
        result = self.issuance.install(sid)
        assert result.step.value == "agreement" and result.view.pin_needed
        facts = result.view.agreement          # what the screen shows is what is signed
        data = self.data(sid)
        assert facts is not None and facts.certificate_serial == data["certificate"]["serial"].upper()
        assert facts.token_serial == data["token"]["serial"] and facts.signed_on == self.now.date()
        return sid


@pytest.fixture
def arig() -> Iterator[AgreementRig]:
    r = AgreementRig()
    yield r
    r.engine.close()


def test_the_holder_signs_the_agreement_after_install_and_the_receipt_says_so(arig: AgreementRig) -> None:
    sid = arig.to_agreement()
    signed = arig.issuance.sign_agreement(sid, Pin(TOKEN_PIN))
    assert signed.step.value == "receipt" and signed.error is None
    data = arig.data(sid)
    assert data["agreement"]["sent"] is True and "pdf" not in data["agreement"]
    assert arig.signer.signed[0].certificate_serial == data["certificate"]["serial"].upper()
    assert arig.issuance.print_receipt(sid).step.value == "done"
    printed = arig.printer.printed[-1]
    unsigned = arig.issuance.build_receipt(printed.language, {k: v for k, v in data.items() if k != "agreement"},
                                           reprint=False)
    assert set(printed.lines) - set(unsigned.lines), "the receipt prepared at install was printed"


def test_a_wrong_pin_at_the_agreement_keeps_the_step_and_nothing_is_signed(arig: AgreementRig) -> None:
    sid = arig.to_agreement()
    with pytest.raises(InvalidPin):
        arig.issuance.sign_agreement(sid, Pin("000000"))
    assert arig.issuance.current(sid).step.value == "agreement" and arig.signer.signed == []
    assert arig.issuance.sign_agreement(sid, Pin(TOKEN_PIN)).step.value == "receipt"


def test_an_agreement_signed_with_the_central_gone_is_queued_and_sent_later(arig: AgreementRig) -> None:
    sid = arig.to_agreement()
    arig.central.down = True
    result = arig.issuance.sign_agreement(sid, Pin(TOKEN_PIN))
    assert isinstance(result.error, CentralUnavailable) and result.step.value == "receipt"
    state = arig.store.load(sid)
    assert arig.issuance.queued(state) is not None
    arig.central.down = False
    call = arig.issuance.queued(arig.store.load(sid))
    assert call is not None and call().error is None
    assert arig.data(sid)["agreement"]["sent"] is True
    assert arig.issuance.queued(arig.store.load(sid)) is None


def test_without_the_policy_install_goes_straight_to_the_receipt(rig: Rig) -> None:
    sid = rig.to_enrollment_step()
    rig.issuance.enroll(sid)
    assert rig.issuance.install(sid).step.value == "receipt"


def test_an_agreement_still_unsent_when_the_visit_is_done_is_offered_to_the_central_and_kept_from_the_purge(
        tmp_path: Path) -> None:
    """The central goes away between the certificate and the agreement: the holder leaves with the receipt, the
    session is done; the sync daemon must still send the signed PDF, and the retention purge must wait for it."""
    store = KioskStore(tmp_path / "kiosk.db", Fernet.generate_key())
    arig = AgreementRig(store=store)          # type: ignore[arg-type]  # the real SQLite store: its purge decides
    try:
        sid = arig.to_agreement()
        arig.central.down = True
        assert isinstance(arig.issuance.sign_agreement(sid, Pin(TOKEN_PIN)).error, CentralUnavailable)
        assert arig.issuance.print_receipt(sid).step.value == "done"
        store.mark_sent([row["id"] for row in store.outbox()])       # every event synced, the agreement not
        assert store.purge_finished(dt.timedelta(0)) == 0
        queued = dict(arig.engine.queued_calls())
        assert sid in queued
        arig.central.down = False
        assert queued[sid]().error is None
        assert store.load(sid).data["agreement"]["sent"] is True
        assert sid not in dict(arig.engine.queued_calls())
        store.mark_sent([row["id"] for row in store.outbox()])
        assert store.purge_finished(dt.timedelta(0)) == 1
    finally:
        arig.engine.close()
        store.close()
