"""Renewal, revocation, PIN unblock and token check over fakes: every branch the features do not reach."""

from __future__ import annotations

import datetime as dt

import pytest

from kiosk.clerk_desk import SessionStatus, refusal_text
from kiosk.errors import (
    CentralRejected,
    CentralUnavailable,
    HolderMismatch,
    InvalidInput,
    NoCertificateOnToken,
    RenewalNotPossible,
)
from kiosk.flows.renewal import RenewalStep, application_bytes
from kiosk.flows.revocation import RevocationStep
from kiosk.flows.token_check import CheckStep
from kiosk.flows.unblock import UnblockStep
from kiosk.i18n import LANGUAGES, Translator
from kiosk.pin import Pin
from kiosk.ports import RevocationReason
from tests.fakes import CARD_PIN, NOW, FakeTokenState
from tests.unit.conftest import TOKEN_PIN, Rig
from tests.unit.test_clerk_desk import Desk


def _issue_expiring(rig: Rig, days: int) -> str:
    rig.central.validity = dt.timedelta(days=days)
    return rig.issue()


# --- token check ---------------------------------------------------------------------------------------
def test_check_of_a_good_certificate(rig: Rig) -> None:
    rig.issue()
    f = rig.check
    sid = f.begin("mn").session_id
    r = f.read_token(sid)
    assert r.step is CheckStep.PIN and r.view.certificate is not None
    assert r.view.certificate.status == "good" and r.view.certificate.days_left == 365
    r = f.check(sid, Pin(TOKEN_PIN))
    assert r.step is CheckStep.DONE and r.view.check is not None and r.view.check.signature_ok
    assert r.view.notice == ""


def test_check_of_a_revoked_certificate_says_revoked_and_still_checks_the_key(rig: Rig) -> None:
    rig.issue()
    (issued,) = rig.central.by_key.values()
    issued.revoked, issued.revoked_at = RevocationReason.KEY_COMPROMISE, NOW
    f = rig.check
    sid = f.begin("mn").session_id
    assert f.read_token(sid).view.certificate.status == "revoked"   # type: ignore[union-attr]
    assert f.check(sid, Pin(TOKEN_PIN)).view.check.signature_ok     # type: ignore[union-attr]


def test_check_offline_shows_status_unknown(rig: Rig) -> None:
    rig.issue()
    rig.central.down = True
    f = rig.check
    sid = f.begin("mn").session_id
    assert f.read_token(sid).view.certificate.status == "unknown"   # type: ignore[union-attr]


def test_check_of_a_blank_token_is_refused(rig: Rig) -> None:
    f = rig.check
    with pytest.raises(NoCertificateOnToken):
        f.read_token(f.begin("mn").session_id)


def test_check_shows_the_renewal_notice_within_30_days(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.check
    r = f.read_token(f.begin("mn").session_id)
    assert r.view.notice == "renewal.notice" and r.view.certificate.days_left == 20   # type: ignore[union-attr]


# --- renewal -------------------------------------------------------------------------------------------
def test_renewal_on_time_installs_the_new_certificate_beside_the_old(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    r = f.read_token(sid)
    assert r.step is RenewalStep.OFFER and r.view.renewal is not None
    assert (r.view.renewal.days_left, r.view.renewal.fee_mnt, r.view.renewal.balance_mnt) == (20, 44000, 500_000)
    r = f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    assert r.step is RenewalStep.INSTALL, r.error
    f.install(sid)
    assert f.print_receipt(sid).step is RenewalStep.DONE
    holder_ids = {kid for kid, obj in rig.token.slot.objects.items() if obj.private is not None}  # type: ignore[union-attr]
    assert len(holder_ids) == 2            # old and new key pair side by side, each with its certificate
    assert rig.central.balance["1234567"] == 500_000 - 44000
    data = rig.data(sid)
    assert data["new_certificate"]["serial"] != data["certificate"]["serial"]
    # the application the holder signed is exactly what the central verified
    assert b'"details_unchanged":true' in application_bytes(data["application"])


def test_renewal_is_not_offered_before_the_notice_period(rig: Rig) -> None:
    rig.issue()
    f = rig.renewal
    sid = f.begin("mn").session_id
    with pytest.raises(RenewalNotPossible) as info:
        f.read_token(sid)
    assert info.value.data["reason"] == "not_yet"
    assert rig.store.load(sid).step == "token"


def test_renewal_too_late_with_a_holiday_in_between(rig: Rig) -> None:
    # NOW is Wednesday 2026-12-02; expiry on Monday 2026-12-07: Thu, Fri are the only working days between.
    _issue_expiring(rig, 5)
    f = rig.renewal
    sid = f.begin("mn").session_id
    with pytest.raises(RenewalNotPossible) as info:
        f.read_token(sid)
    assert info.value.data == {"reason": "too_late", "last_request_day": "2026-12-01"}
    assert "renew" not in rig.central.calls


def test_renewal_refused_for_insufficient_balance_sends_nothing(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    rig.central.balance["1234567"] = 10_000
    f = rig.renewal
    sid = f.begin("mn").session_id
    with pytest.raises(RenewalNotPossible) as info:
        f.read_token(sid)
    assert info.value.data == {"reason": "insufficient_balance", "balance": 10_000, "due": 34_000}
    assert "renew" not in rig.central.calls and "renewal.refused" in rig.store.events(sid)


def test_renewal_with_changed_details_is_refused_towards_a_new_order(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    with pytest.raises(RenewalNotPossible) as info:
        f.confirm(sid, details_unchanged=False, pin=Pin(TOKEN_PIN))
    assert info.value.data["reason"] == "details_changed"


def test_renewal_offline_queues_the_request_and_sends_it_later(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    rig.central.down = True
    r = f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    assert r.step is RenewalStep.SEND and isinstance(r.error, CentralUnavailable)
    rig.central.down = False
    rig.restart()
    resume = rig.engine.resume_step(sid)
    assert resume is not None and resume().step is RenewalStep.INSTALL


def test_a_renewal_refused_while_the_holder_is_here_removes_its_new_key_from_the_token(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    before = set(rig.token.slot.objects)                                     # type: ignore[union-attr]
    rig.central.balance["1234567"] = 10_000                 # spent between the offer and the request
    refused = f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    assert refused.step is RenewalStep.CANCELLED and isinstance(refused.error, CentralRejected)
    assert set(rig.token.slot.objects) == before                             # type: ignore[union-attr]
    assert rig.data(sid)["refusal"]["new_key_removed_at"]


def test_a_queued_renewal_the_central_refuses_later_is_told_to_the_clerk_with_its_reason() -> None:
    desk = Desk()
    rig = desk.rig
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    rig.central.down = True
    f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    rig.central.down = False
    rig.central.balance["1234567"] = 10_000                 # spent meanwhile: the kept request is refused
    rig.restart()
    queued = rig.engine.queued_calls()
    assert [s for s, _ in queued] == [sid]
    refused = queued[0][1]()
    assert refused.step is RenewalStep.CANCELLED and isinstance(refused.error, CentralRejected)
    assert rig.data(sid)["refusal"]["reason"] == "insufficient_balance"
    line = desk.desk.line(rig.store.load(sid))
    assert line.status is SessionStatus.REFUSED_BY_CENTRAL
    serial = rig.data(sid)["certificate"]["serial"]
    for language in LANGUAGES:
        t = Translator(language)
        text = refusal_text(t, line)
        assert serial in text and t("refusal.insufficient_balance") in text and "{" not in text


def test_old_certificate_removed_only_after_expiry(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    f.install(sid)
    f.print_receipt(sid)
    old_key = bytes.fromhex(rig.data(sid)["certificate"]["key_id"])
    c = rig.check
    c.check(c.read_token(c.begin("mn").session_id).session_id, Pin(TOKEN_PIN))
    assert old_key in rig.token.slot.objects                   # type: ignore[union-attr]
    rig.now = NOW + dt.timedelta(days=21)                       # the day after expiry
    r = c.check(c.read_token(c.begin("mn").session_id).session_id, Pin(TOKEN_PIN))
    assert r.view.check is not None and r.view.check.signature_ok
    assert old_key not in rig.token.slot.objects               # type: ignore[union-attr]


# --- revocation ----------------------------------------------------------------------------------------
def _revoke_to_choice(rig: Rig) -> str:
    f = rig.revocation
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.read_card(sid)
    r = f.verify_card_pin(sid, Pin(CARD_PIN))
    assert r.step is RevocationStep.CHOOSE and len(r.view.certificates) == 1
    return sid


def test_revocation_of_a_lost_token(rig: Rig) -> None:
    rig.issue()
    rig.token.slot = None                      # lost: no token needed
    f = rig.revocation
    sid = _revoke_to_choice(rig)
    serial = f.current(sid).view.certificates[0].serial
    f.choose(sid, serial, "key_compromise")
    r = f.confirm(sid, "clerk-1")
    assert r.step is RevocationStep.RECEIPT
    assert f.print_receipt(sid).step is RevocationStep.DONE
    assert rig.central.by_serial[serial].revoked is not None
    assert rig.printer.printed[-1].lines[0].text


def test_revocation_queued_when_the_central_is_down(rig: Rig) -> None:
    rig.issue()
    f = rig.revocation
    sid = _revoke_to_choice(rig)
    f.choose(sid, f.current(sid).view.certificates[0].serial, "cessation_of_operation")
    rig.central.down = True
    r = f.confirm(sid, "clerk-1")
    assert r.step is RevocationStep.REVOKE and isinstance(r.error, CentralUnavailable)
    rig.central.down = False
    resume = rig.engine.resume_step(sid)
    assert resume is not None and resume().step is RevocationStep.RECEIPT


def test_revocation_refuses_a_certificate_not_listed(rig: Rig) -> None:
    rig.issue()
    f = rig.revocation
    sid = _revoke_to_choice(rig)
    with pytest.raises(InvalidInput):
        f.choose(sid, "DEADBEEF", "key_compromise")
    with pytest.raises(InvalidInput):
        f.choose(sid, f.current(sid).view.certificates[0].serial, "because")


# --- unblock -------------------------------------------------------------------------------------------
def _unblock(rig: Rig) -> str:
    f = rig.unblock
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    r = f.read_token(sid)
    assert r.step is UnblockStep.IDENTITY
    f.read_card(sid)
    f.verify_card_pin(sid, Pin(CARD_PIN))
    return sid


def test_unblock_with_the_so_pin_escrowed_at_another_kiosk(rig: Rig) -> None:
    rig.issue()
    rig.token.slot.tries_left = 0                              # type: ignore[union-attr]
    rig.store.secrets.clear()                                  # this kiosk never saw the token
    sid = _unblock(rig)
    r = rig.unblock.set_pin(sid, Pin("509173"), Pin("509173"))
    assert r.step is UnblockStep.DONE
    assert rig.store.journal[-1][2]["so_pin_source"] == "central"
    with rig.token.session("TK0001", Pin("509173")):
        pass


def test_a_token_wiped_by_a_power_cut_inside_the_unblock_is_said_so_and_ends_the_visit(rig: Rig) -> None:
    """Found by the crash harness on SoftHSM: a kill inside the PIN write leaves the token blank, with a
    new serial; the holder must hear that the token lost its key (revoke, issue again), not that
    another eToken is inserted."""
    rig.issue()
    rig.token.slot.tries_left = 0                              # type: ignore[union-attr]
    sid = _unblock(rig)
    rig.token.slot = FakeTokenState(serial="TK-BLANK")         # what the power cut left
    r = rig.unblock.set_pin(sid, Pin("509173"), Pin("509173"))
    assert r.error is not None and r.error.key == "error.token_wiped"
    assert r.step is UnblockStep.CANCELLED and rig.store.load(sid).step == "cancelled"
    assert rig.store.journal[-1][2]["reason"] == "token_wiped"


def test_unblock_refused_when_the_card_holder_is_not_the_token_holder(rig: Rig) -> None:
    rig.issue()
    rig.idcard.insert("Эрдэнэ", "Дорж", "ШУ78787878", 0x2002)
    rig.idcard.verifies = 0
    f = rig.unblock
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.read_token(sid)
    with pytest.raises(HolderMismatch):
        f.read_card(sid)
    assert rig.idcard.verifies == 0 and rig.store.load(sid).step == "identity"


def test_every_flow_resumes_after_a_restart(rig: Rig) -> None:
    flows = [rig.issuance, rig.renewal, rig.revocation, rig.unblock, rig.check]
    ids = {f.begin("mn").session_id: f.kind for f in flows}
    rig.restart()
    assert {r.session_id: r.flow for r in rig.engine.unfinished()} == ids


def test_renewal_confirm_with_a_wrong_pin_tells_the_outcome_and_keygen_retries(rig: Rig) -> None:
    _issue_expiring(rig, 20)
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    r = f.confirm(sid, details_unchanged=True, pin=Pin("000000"))
    assert r.step is RenewalStep.KEYGEN and r.error is not None and r.error.key == "error.invalid_pin"
    assert f.generate_key(sid, Pin(TOKEN_PIN)).step is RenewalStep.INSTALL
