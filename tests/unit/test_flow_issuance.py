"""Issuance over fakes: the spine's branches and the crash defects, each reproduced first."""

from __future__ import annotations

import pytest

from kiosk.engine import KioskPolicy
from kiosk.errors import (
    CannotCancel,
    CentralRejected,
    CentralUnavailable,
    KeyMismatch,
    OrderNotPayable,
    PinRequired,
    WrongStep,
)
from kiosk.flows.issuance import IssuanceStep
from kiosk.i18n import Translator
from kiosk.pin import Pin, SoPin
from kiosk.ports import TokenInfo
from tests.fakes import PowerCut, demo_order
from tests.unit.conftest import TOKEN_PIN, Rig


def test_a_paid_order_becomes_a_token_with_a_certificate_and_a_receipt(rig: Rig) -> None:
    sid = rig.issue()
    data = rig.data(sid)
    assert rig.store.load(sid).flow == "issuance"
    (_key_id, der), = [(k, d) for k, d in rig.token.public_certificates("TK0001") if k.hex() == data["key_id"]]
    assert der and rig.printer.printed[0].lines[0].text
    assert rig.store.events(sid)[-1] == "receipt.printed"
    assert rig.central.escrow["TK0001"] == rig.store.secrets["TK0001"]   # SO PIN escrowed at issuance
    assert rig.engine.unfinished() == []


def test_an_unpaid_order_is_refused_and_the_step_stays(rig: Rig) -> None:
    rig.central.add_order(demo_order("147314048627", paid=0))
    f = rig.issuance
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    with pytest.raises(OrderNotPayable) as info:
        f.find_order(sid, "147314048627")
    assert info.value.data["reason"] == "unpaid"
    assert rig.store.load(sid).step == "order"
    assert "order.refused" in rig.store.events(sid)


def test_a_call_for_another_step_is_a_wrong_step(rig: Rig) -> None:
    f = rig.issuance
    sid = f.begin("mn").session_id
    with pytest.raises(WrongStep) as info:
        f.find_order(sid, "147314016754")
    assert info.value.data == {"session_id": sid, "expected": "issuance.order", "actual": "issuance.consent"}


def test_factory_so_pin_is_not_in_the_policy_repr() -> None:
    policy = KioskPolicy(factory_so_pin=SoPin("0102030405060708"))
    assert "0102030405060708" not in repr(policy) and "SoPin(***)" in repr(policy)
    assert "0102030405060708" not in f"{policy}"


def test_crash_during_keygen_with_half_a_key_pair_resumes_to_one_pair(rig: Rig) -> None:
    """Defect: a crash after the public key is stored and before the private key is."""
    f = rig.issuance
    sid = rig.to_token_step()
    f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    key_id = bytes.fromhex(rig.data(sid)["key_id"])
    with rig.token.session("TK0001", Pin(TOKEN_PIN)) as s:      # the half pair a power cut leaves
        s.generate_key_pair(key_id, "x", rig.engine.policy.key_algorithm)
    rig.token.slot.objects[key_id].private = None                # type: ignore[union-attr]
    rig.restart()
    rig.issuance.generate_key(sid, Pin(TOKEN_PIN))
    for step in ("enroll", "install", "print_receipt"):
        getattr(rig.issuance, step)(sid)
    assert rig.store.load(sid).step == "done"
    objects = rig.token.slot.objects                             # type: ignore[union-attr]
    assert objects[key_id].private is not None and objects[key_id].certificates


def test_crash_inside_c_inittoken_leaves_a_blank_token_that_is_initialised_again(rig: Rig) -> None:
    """Defect: a blank token after a crash inside C_InitToken must not be 'eToken not found' forever."""
    sid = rig.to_token_step()
    rig.token.crash_inside_init = True
    with pytest.raises(PowerCut):
        rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    assert rig.token.present() == TokenInfo("TK0001", "", "FakeToken", "Tamga tests", False, True, False) \
        or not rig.token.present().initialised
    rig.restart()
    r = rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    assert r.step is IssuanceStep.KEYGEN and rig.token.present().initialised
    assert "token.initialising" in rig.store.events(sid)
    # the SO PIN stored before C_InitToken is the one the token now has
    assert rig.store.secrets["TK0001"] == rig.token.slot.so_pin  # type: ignore[union-attr]


def test_cancel_at_enrollment_after_the_central_issued_voids_and_revokes(rig: Rig) -> None:
    """Defect: the reply was lost after the CA signed; cancelling must not leave a valid certificate."""
    f = rig.issuance
    sid = rig.to_enrollment_step()
    rig.central.lose_next_reply = True
    with pytest.raises(CentralUnavailable):
        f.enroll(sid)
    key = rig.data(sid)["idempotency_key"]
    issued = rig.central.by_key[key]
    r = f.cancel(sid, "applicant left")
    assert r.step is IssuanceStep.CANCELLED
    assert issued.revoked is not None
    with pytest.raises(CentralRejected) as info:       # a late retry of the same request is void
        rig.central.enroll(issued.order.id, b"", key)
    assert info.value.data["reason"] == "enrollment_void"


def test_cancel_at_enrollment_is_refused_while_the_central_is_unreachable(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_enrollment_step()
    rig.central.down = True
    with pytest.raises(CentralUnavailable):
        f.cancel(sid, "applicant left")
    assert rig.store.load(sid).step == "enrollment"


def test_no_cancel_once_the_certificate_is_issued(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_enrollment_step()
    f.enroll(sid)
    with pytest.raises(CannotCancel):
        f.cancel(sid, "applicant left")


def test_crash_between_printing_and_marking_printed_reprints_marked_as_reprint(rig: Rig) -> None:
    """Defect: the second receipt after such a crash looked like an original."""
    f = rig.issuance
    sid = rig.to_enrollment_step()
    f.enroll(sid)
    f.install(sid)
    rig.printer.crash_after_print = True
    with pytest.raises(PowerCut):
        f.print_receipt(sid)
    rig.restart()
    resume = rig.engine.resume_step(sid)
    assert resume is not None
    assert resume().step is IssuanceStep.DONE
    first, second = rig.printer.printed
    reprint = Translator("mn")("receipt.reprint")
    assert reprint not in [line.text for line in first.lines]
    assert second.lines[1].text == reprint
    assert rig.store.receipt_status(sid) == "printed"


def test_a_certificate_for_another_key_is_never_installed(rig: Rig) -> None:
    """Defect: a mismatched certificate from the central left the session stuck at install."""
    f = rig.issuance
    sid = rig.to_enrollment_step()
    rig.central.wrong_key_next = True
    with pytest.raises(KeyMismatch):
        f.enroll(sid)
    assert rig.store.load(sid).step == "enrollment"
    assert f.cancel(sid, "central sent a wrong certificate").step is IssuanceStep.CANCELLED


def test_a_cancelled_order_at_central_ends_the_session_with_its_reason(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_enrollment_step()
    order = rig.central.orders["147314016754"]
    rig.central.orders["147314016754"] = type(order)(**{**order.__dict__, "status": type(order.status)("cancelled")})
    r = f.enroll(sid)
    assert r.step is IssuanceStep.CANCELLED and isinstance(r.error, CentralRejected)


def test_after_a_restart_the_token_pin_is_asked_again(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_token_step()
    f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    rig.restart()
    (r,) = rig.engine.unfinished()
    assert r.view.pin_needed and rig.engine.resume_step(sid) is None
    with pytest.raises(PinRequired):
        rig.issuance.generate_key(sid)


def test_a_blocked_token_pin_before_issuance_prepares_the_token_again(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_token_step()
    f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    rig.token.slot.tries_left = 0                                 # type: ignore[union-attr]
    r = f.generate_key(sid)
    assert r.step is IssuanceStep.TOKEN and r.error is not None and r.error.key == "error.token_pin_blocked_restart"
    assert f.prepare_token(sid, Pin("509173"), Pin("509173")).step is IssuanceStep.KEYGEN


def test_offline_enrollment_ends_the_visit_with_a_pending_receipt_and_installs_later(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_enrollment_step()
    rig.central.down = True
    with pytest.raises(CentralUnavailable):
        f.enroll(sid)
    r = f.defer(sid)
    assert r.step is IssuanceStep.PENDING and r.error is None
    pending = rig.printer.printed[-1]
    assert pending.lines[0].text == Translator("mn")("receipt.pending_title")
    assert rig.engine.unfinished()[0].session_id == sid          # not finished: the certificate is owed
    rig.restart()
    with pytest.raises(CentralUnavailable):                       # still offline: nothing changes
        rig.issuance.fetch_certificate(sid)
    rig.central.down = False
    resume = rig.engine.resume_step(sid)
    assert resume is not None and resume().step is IssuanceStep.INSTALL
    (waiting,) = rig.issuance.waiting_for_token("TK0001")
    assert waiting.session_id == sid and waiting.view.pin_needed
    rig.issuance.install(sid, Pin(TOKEN_PIN))
    done = rig.issuance.print_receipt(sid)
    assert done.step is IssuanceStep.DONE
    assert rig.printer.printed[-1].lines[0].text == Translator("mn")("receipt.title")
    assert rig.store.receipt_status(f"{sid}:pending") == "printed" and rig.store.receipt_status(sid) == "printed"


def test_a_pending_issuance_can_be_cancelled_and_is_voided_at_the_central(rig: Rig) -> None:
    f = rig.issuance
    sid = rig.to_enrollment_step()
    rig.central.down = True
    f.defer(sid)
    rig.central.down = False
    assert f.cancel(sid, "holder withdrew").step is IssuanceStep.CANCELLED
    assert rig.data(sid)["idempotency_key"] in rig.central.voided
