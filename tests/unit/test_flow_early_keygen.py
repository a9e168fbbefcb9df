"""The applicant's wait (issue 6, item 5): the checklist per order type, the rejection, and the token
prepared under a temporary PIN while the clerk reviews — on a worker thread, against the same session."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.errors import ApplicationRejected, ApprovalIncomplete, DeviceNotReady, InvalidInput, WrongStep
from kiosk.flows.issuance import Document, OrderType, required_documents
from kiosk.flows.issuance_early import RejectReason
from kiosk.i18n import LANGUAGES, Translator
from kiosk.pin import Pin
from kiosk.ports import SessionState
from tests.fakes import CARD_PIN, PowerCut, demo_order
from tests.unit.conftest import TOKEN_PIN, Rig

ORGANISATION_DOCS = ["official_letter", "contract", "state_registration_copy", "id_card_copy"]


def _at_approval(rig: Rig, invoice: str = "147314016754") -> str:
    f = rig.issuance
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.find_order(sid, invoice)
    f.read_card(sid)
    f.verify_card_pin(sid, Pin(CARD_PIN))
    assert f.current(sid).step.value == "approval"
    return sid


def _approve(rig: Rig, sid: str) -> None:
    rig.issuance.approve(sid, "clerk-1", rig.issuance.current(sid).view.documents, False)


def _finish(rig: Rig, sid: str) -> None:
    f = rig.issuance
    f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    f.generate_key(sid)
    f.enroll(sid)
    f.install(sid)
    assert f.print_receipt(sid).step.value == "done"


def _key_pairs(rig: Rig) -> list[bytes]:
    assert rig.token.slot is not None
    return [kid for kid, obj in rig.token.slot.objects.items() if obj.private is not None]


class SlowKeygen:
    """Holds the fake token inside generate_key_pair until released (a real eToken's 10–60 s)."""

    def __init__(self, rig: Rig) -> None:
        self.inside, self.release = threading.Event(), threading.Event()
        rig.token.before_keygen = self._wait

    def _wait(self) -> None:
        self.inside.set()
        assert self.release.wait(10), "keygen never released"


def _worker(rig: Rig, sid: str) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(rig.issuance.prepare_early(sid)), daemon=True)
    thread.start()
    return thread, out


# -- the checklist per order type (seed 000 §7.1) ----------------------------------------------------------
@pytest.mark.parametrize(("order_type", "by_proxy", "expected"), [
    (OrderType.ORGANISATION, False, ORGANISATION_DOCS),
    (OrderType.ORGANISATION, True, [*ORGANISATION_DOCS, "power_of_attorney"]),
    (OrderType.INDIVIDUAL, False, ["contract", "id_card_copy"]),
    (OrderType.INDIVIDUAL, True, ["contract", "id_card_copy", "power_of_attorney"]),
])
def test_the_checklist_follows_the_order_type_and_the_proxy(order_type: OrderType, by_proxy: bool,
                                                            expected: list[str]) -> None:
    assert [d.value for d in required_documents(order_type, by_proxy)] == expected


def test_a_persons_own_order_is_approved_without_organisation_papers(rig: Rig) -> None:
    rig.central.add_order(replace(demo_order("147314100099"), organisation="", organisation_register=""))
    sid = _at_approval(rig, "147314100099")
    view = rig.issuance.current(sid).view
    assert view.documents == ("contract", "id_card_copy")
    with pytest.raises(ApprovalIncomplete) as info:
        rig.issuance.approve(sid, "clerk-1", ["contract", "id_card_copy"], by_proxy=True)
    assert info.value.data["missing"] == ["power_of_attorney"]
    assert rig.issuance.approve(sid, "clerk-1", view.documents, False).step.value == "token"


def test_an_organisations_order_shows_its_four_documents_and_the_reject_reasons(rig: Rig) -> None:
    sid = _at_approval(rig)
    view = rig.issuance.current(sid).view
    assert list(view.documents) == ORGANISATION_DOCS
    assert view.reasons == tuple(r.value for r in RejectReason)
    with pytest.raises(ApprovalIncomplete):
        rig.issuance.approve(sid, "clerk-1", [Document.CONTRACT.value], False)


# -- the rejection -----------------------------------------------------------------------------------------
def test_a_rejection_ends_the_session_with_the_clerk_and_reason_journaled(rig: Rig) -> None:
    sid = _at_approval(rig)
    r = rig.issuance.reject(sid, "clerk-7", "proxy_not_authorised")
    assert r.finished and r.step.value == "cancelled"
    assert isinstance(r.error, ApplicationRejected) and r.error.data == {"reason": "proxy_not_authorised"}
    (event,) = [e for s, _, e in rig.store.journal if s == sid and e["kind"] == "approval.refused"]
    assert event["clerk_id"] == "clerk-7" and event["reason"] == "proxy_not_authorised" and event["final"]
    assert rig.token.calls == []              # nothing was done to a token


def test_a_rejection_at_another_desk_leaves_its_reason_in_the_session_for_the_applicants_screen(rig: Rig) -> None:
    """The clerk rejects from the desk: the applicant's kiosk only sees the session end, and must say why."""
    sid = _at_approval(rig)
    rig.issuance.reject(sid, "clerk-7", "documents_missing")
    seen = rig.issuance.current(sid)         # what the applicant's approval screen reads when it asks again
    assert seen.finished and seen.view.rejection == "documents_missing"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_applicant_reads_every_reason_in_their_language(lang: str) -> None:
    t = Translator(lang)
    texts = {t.error(ApplicationRejected(reason=r.value)) for r in RejectReason}
    assert len(texts) == len(RejectReason)
    assert all("{" not in text and "refusal." not in text for text in texts)


def test_an_unknown_reason_or_another_step_is_refused_and_loses_nothing(rig: Rig) -> None:
    sid = _at_approval(rig)
    with pytest.raises(InvalidInput):
        rig.issuance.reject(sid, "clerk-7", "looks_suspicious")
    assert rig.store.load(sid).step == "approval"
    _approve(rig, sid)
    with pytest.raises(WrongStep):
        rig.issuance.reject(sid, "clerk-7", "documents_missing")


def test_a_rejection_is_in_the_audit_chain_with_the_clerk_id(tmp_path: Path) -> None:
    from sync.store import KioskStore, load_or_create_key

    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    try:
        rig = Rig(store=store)  # type: ignore[arg-type]
        sid = _at_approval(rig)
        rig.issuance.reject(sid, "clerk-7", "documents_invalid")
        last = list(store.audit.entries())[-1]
        assert (last.kind, last.fields["clerk_id"], last.fields["reason"], last.fields["to"]) == (
            "approval.refused", "clerk-7", "documents_invalid", "cancelled")
        assert store.audit.verify().intact
    finally:
        store.close()


# -- the early path --------------------------------------------------------------------------------------------
def test_early_key_then_approval_sets_the_chosen_pin_and_enrolls_without_a_second_keygen(rig: Rig) -> None:
    sid = _at_approval(rig)
    r = rig.issuance.prepare_early(sid)
    assert r.error is None and r.view.notice == "approval.key_ready"
    _approve(rig, sid)
    assert rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN)).step.value == "keygen"
    assert rig.issuance.generate_key(sid).step.value == "enrollment"
    _finish_after_keygen(rig, sid)
    assert rig.token.calls.count("initialise") == 1 and rig.token.calls.count("generate_key_pair") == 1
    assert "set_pin" in rig.token.calls
    assert rig.token.slot is not None and rig.token.slot.user_pin == TOKEN_PIN
    events = rig.store.events(sid)
    assert events.index("early.key_generated") < events.index("approval.given") < events.index("token.pin_changed")


def _finish_after_keygen(rig: Rig, sid: str) -> None:
    rig.issuance.enroll(sid)
    rig.issuance.install(sid)
    assert rig.issuance.print_receipt(sid).step.value == "done"


def test_a_second_prepare_early_keeps_the_ready_key_and_one_after_approval_does_nothing(rig: Rig) -> None:
    """Defect: a second call (the screen seeing the token again) dropped the temporary PIN of a ready key."""
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    assert rig.issuance.prepare_early(sid).view.notice == "approval.key_ready"
    _approve(rig, sid)
    rig.issuance.prepare_early(sid)                      # after approval prepare_token prepares, not the worker
    _finish(rig, sid)
    assert rig.token.calls.count("initialise") == 1 and "set_pin" in rig.token.calls


def test_the_temporary_pin_is_never_persisted_journaled_or_shown(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    assert rig.token.slot is not None
    temporary = rig.token.slot.user_pin
    assert len(temporary) >= 12 and temporary.isdigit()
    assert temporary not in repr(rig.store.sessions) + repr(rig.store.journal) + repr(rig.issuance.current(sid))
    assert temporary not in repr(rig.issuance.early_work)


def test_approve_during_keygen_loses_no_update_and_the_pin_step_waits_for_the_key(rig: Rig) -> None:
    slow = SlowKeygen(rig)
    sid = _at_approval(rig)
    thread, _ = _worker(rig, sid)
    assert slow.inside.wait(5)
    assert rig.issuance.current(sid).view.notice == "approval.key_preparing"
    _approve(rig, sid)                                   # on this (the UI) thread, while the worker is on the token
    threading.Timer(0.05, slow.release.set).start()      # the key comes while the applicant's PIN step waits
    assert rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN)).step.value == "keygen"
    thread.join(5)
    data = rig.data(sid)
    assert data["clerk_id"] == "clerk-1" and data["early"]["status"] == "ready"      # both writers' fields
    assert rig.issuance.generate_key(sid).step.value == "enrollment"
    _finish_after_keygen(rig, sid)
    assert rig.token.calls.count("generate_key_pair") == 1 and len(_key_pairs(rig)) == 1


def test_approve_during_keygen_on_the_real_kiosk_store_from_two_threads(tmp_path: Path) -> None:
    from sync.store import KioskStore, load_or_create_key

    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    try:
        rig = Rig(store=store)  # type: ignore[arg-type]
        slow = SlowKeygen(rig)
        sid = _at_approval(rig)
        thread, _ = _worker(rig, sid)
        assert slow.inside.wait(5)
        assert rig.token.slot is not None
        temporary = rig.token.slot.user_pin
        _approve(rig, sid)
        slow.release.set()
        thread.join(5)
        _finish(rig, sid)
        kinds = [json.loads(row["event"])["kind"] for row in store.journal(sid)]
        assert kinds.index("approval.given") < kinds.index("early.key_generated") < kinds.index("token.pin_changed")
        assert store.audit.verify().intact
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert temporary.encode() not in on_disk and TOKEN_PIN.encode() not in on_disk
    finally:
        store.close()


def test_reject_during_keygen_lets_the_worker_remove_its_key_and_end_the_session(rig: Rig) -> None:
    slow = SlowKeygen(rig)
    sid = _at_approval(rig)
    thread, _ = _worker(rig, sid)
    assert slow.inside.wait(5)
    r = rig.issuance.reject(sid, "clerk-7", "holder_not_present")
    assert not r.finished and isinstance(r.error, ApplicationRejected)
    assert r.view.notice == "approval.rejected_pending"
    with pytest.raises(WrongStep):
        _approve(rig, sid)                               # the decision is taken
    slow.release.set()
    thread.join(5)
    state = rig.store.load(sid)
    assert state.step == "cancelled" and _key_pairs(rig) == []
    done = [e for s, _, e in rig.store.journal if s == sid][-1]
    assert (done["kind"], done["method"], done["clerk_id"]) == ("approval.rejection_completed", "remove_key", "clerk-7")


def test_reject_after_keygen_removes_the_key_at_once(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    assert len(_key_pairs(rig)) == 1
    r = rig.issuance.reject(sid, "clerk-7", "documents_missing")
    assert r.finished and isinstance(r.error, ApplicationRejected)
    assert _key_pairs(rig) == [] and rig.store.events(sid)[-2:] == ["approval.refused", "approval.rejection_completed"]


def test_reject_before_the_worker_made_a_key_stops_it_and_leaves_no_key(rig: Rig) -> None:
    sid = _at_approval(rig)
    real_initialise = rig.token.initialise

    def initialise_then_reject(*args: object) -> object:
        info = real_initialise(*args)  # type: ignore[arg-type]
        rig.issuance.reject(sid, "clerk-7", "rejected_other")       # the clerk, while C_InitToken ran
        return info

    rig.token.initialise = initialise_then_reject  # type: ignore[method-assign,assignment]
    thread, _ = _worker(rig, sid)
    thread.join(5)
    assert rig.store.load(sid).step == "cancelled"
    assert "generate_key_pair" not in rig.token.calls and _key_pairs(rig) == []


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_clerks_decision_at_any_moment_of_the_worker_loses_nothing_and_leaves_one_key_or_none(
        decision: str) -> None:
    """The clerk decides on the UI thread at 30 moments spread over the worker's run (the token yields
    inside every call), so the decision lands before, between and after each of the worker's writes."""
    for moment in range(30):
        rig = Rig()
        rig.token.before_keygen = lambda: time.sleep(0.0005)
        sid = _at_approval(rig)
        thread, _ = _worker(rig, sid)
        time.sleep(moment * 0.0002)
        if decision == "approve":
            _approve(rig, sid)
            thread.join(5)
            _finish(rig, sid)
            assert len(_key_pairs(rig)) == 1 and rig.data(sid)["clerk_id"] == "clerk-1"
        else:
            rig.issuance.reject(sid, "clerk-7", "documents_missing")
            thread.join(5)
            assert rig.store.load(sid).step == "cancelled", moment
            assert _key_pairs(rig) == [], moment
        rig.engine.close()


def test_a_cancel_during_keygen_leaves_the_worker_to_remove_its_key(rig: Rig) -> None:
    slow = SlowKeygen(rig)
    sid = _at_approval(rig)
    thread, _ = _worker(rig, sid)
    assert slow.inside.wait(5)
    assert rig.issuance.cancel(sid, "applicant_left").finished
    slow.release.set()
    thread.join(5)
    assert _key_pairs(rig) == [] and rig.issuance.early_work.pin(sid) is None


def test_a_cancel_after_keygen_removes_the_early_key_and_forgets_the_temporary_pin(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    _approve(rig, sid)
    r = rig.issuance.cancel(sid, "applicant_left")
    assert r.finished and _key_pairs(rig) == []
    assert [e for s, _, e in rig.store.journal if s == sid][-1]["early_key"] == "remove_key"
    assert rig.issuance.early_work.pin(sid) is None


def test_a_pulled_token_at_reject_keeps_the_rejection_and_resume_finishes_it_after_a_restart(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    rig.token.pulled = True
    r = rig.issuance.reject(sid, "clerk-7", "documents_missing")
    assert not r.finished and r.error is not None and r.error.key == "error.device_not_ready"
    rig.restart()                                        # the temporary PIN is gone with the process
    rig.token.pulled = False
    resume = rig.engine.resume_step(sid)
    assert resume is not None
    assert resume().finished and _key_pairs(rig) == []
    assert [e for s, _, e in rig.store.journal if s == sid][-1]["method"] == "reinitialised"


def test_a_failed_early_path_falls_back_to_the_usual_one(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.token.pulled = True
    with pytest.raises(DeviceNotReady):                  # no token at all: nothing starts
        rig.issuance.prepare_early(sid)
    assert "early" not in rig.data(sid)
    rig.token.pulled = False

    def pulled_during_keygen() -> None:
        rig.token.before_keygen = None
        raise DeviceNotReady("pulled", device="token")

    rig.token.before_keygen = pulled_during_keygen
    r = rig.issuance.prepare_early(sid)
    assert r.error is not None and rig.data(sid)["early"]["status"] == "failed"
    _approve(rig, sid)
    _finish(rig, sid)
    assert rig.token.calls.count("initialise") == 2 and len(_key_pairs(rig)) == 1


# -- a power cut at every point of the early path ------------------------------------------------------------
def _cut_at_event(kind: str) -> Callable[[Rig], None]:
    def arm(rig: Rig) -> None:
        rig.store.crash_on = kind
    return arm


def _cut_inside_init(rig: Rig) -> None:
    rig.token.crash_inside_init = True


def _cut_inside_keygen(rig: Rig) -> None:
    def cut() -> None:
        rig.token.before_keygen = None
        raise PowerCut("inside C_GenerateKeyPair")
    rig.token.before_keygen = cut


CUTS = {
    "before early.started": _cut_at_event("early.started"),
    "inside C_InitToken": _cut_inside_init,
    "before early.token_initialised": _cut_at_event("early.token_initialised"),
    "inside C_GenerateKeyPair": _cut_inside_keygen,
    "before early.key_generated": _cut_at_event("early.key_generated"),
}


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
@pytest.mark.parametrize("then", ["prepare_again", "approve_and_prepare_usually"])
def test_a_power_cut_in_the_early_path_resumes_or_prepares_the_token_again(rig: Rig, cut: Callable[[Rig], None],
                                                                            then: str) -> None:
    sid = _at_approval(rig)
    cut(rig)
    with pytest.raises(PowerCut):
        rig.issuance.prepare_early(sid)
    rig.store.crash_on = None
    rig.restart()                                        # the temporary PIN died with the process
    assert rig.store.load(sid).step == "approval"
    if then == "prepare_again":
        assert rig.issuance.prepare_early(sid).error is None
    _approve(rig, sid)
    _finish(rig, sid)
    assert len(_key_pairs(rig)) == 1
    assert rig.token.slot is not None and rig.token.slot.user_pin == TOKEN_PIN


def test_a_power_cut_after_the_key_was_ready_prepares_the_token_again(rig: Rig) -> None:
    """The temporary PIN lost in a crash: the chosen PIN cannot replace it, so C_InitToken runs again."""
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    early_key = _key_pairs(rig)
    rig.restart()
    _approve(rig, sid)
    _finish(rig, sid)
    assert rig.token.calls.count("initialise") == 2 and "set_pin" not in rig.token.calls
    assert len(_key_pairs(rig)) == 1 and _key_pairs(rig) != early_key
    assert rig.store.secrets["TK0001"] == rig.central.escrow["TK0001"]


def test_a_power_cut_before_the_pin_change_was_committed_prepares_the_token_again(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    _approve(rig, sid)
    rig.store.crash_on = "token.pin_changed"
    with pytest.raises(PowerCut):
        rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    rig.store.crash_on = None
    rig.restart()
    _finish(rig, sid)
    assert len(_key_pairs(rig)) == 1 and rig.token.slot is not None and rig.token.slot.user_pin == TOKEN_PIN


def test_a_power_cut_after_the_rejection_was_committed_is_finished_by_resume(rig: Rig) -> None:
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    rig.store.crash_on = "approval.rejection_completed"
    with pytest.raises(PowerCut):
        rig.issuance.reject(sid, "clerk-7", "documents_invalid")
    rig.store.crash_on = None
    rig.restart()
    state: SessionState = rig.store.load(sid)
    assert state.step == "approval" and state.data["rejection"]["clerk_id"] == "clerk-7"
    resume = rig.engine.resume_step(sid)
    assert resume is not None and resume().finished
    assert _key_pairs(rig) == []
