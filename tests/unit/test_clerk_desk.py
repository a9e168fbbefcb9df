"""The clerk's desk over the fakes (Rig): sign-in, the day's list, resume, cancel, reprint, approve, confirm."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kiosk.clerk_desk import (
    REJECT_REASONS,
    ClerkDesk,
    ClerkLockedOut,
    ClerkNotSignedIn,
    ClerkPinRefused,
    ClerkSignInExpired,
    NoReceipt,
    NothingToResume,
    SessionStatus,
    clerk_message,
    holder_name,
)
from kiosk.clerks import ClerkRecord, ClerkSignIn, ScryptCost, SignedInClerk
from kiosk.engine import FlowKind
from kiosk.errors import ApplicationRejected, ApprovalIncomplete, CannotCancel, InvalidInput, WrongStep
from kiosk.flows.issuance import IssuanceStep
from kiosk.flows.revocation import RevocationStep
from kiosk.i18n import LANGUAGES, Translator
from kiosk.pin import Pin
from kiosk.ports import SessionState
from sync.store import KioskStore, load_or_create_key
from tests.fakes import CARD_PIN, MemoryStore
from tests.unit.conftest import TOKEN_PIN, Rig

CHEAP = ScryptCost(n=2 ** 4, r=1, p=1)
CLERK, CLERK_PIN = "clerk-7", "204817"


class StampedStore(MemoryStore):
    """The in-memory store with the real store's created/updated times (from the rig's clock) and its day read."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = lambda: dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)

    def _stamp(self, state: SessionState, created: bool) -> SessionState:
        now = self.clock().isoformat()
        stamped = replace(state, created_at=now if created else self.sessions[state.id].created_at, updated_at=now)
        self.sessions[state.id] = replace(self.sessions[state.id], created_at=stamped.created_at, updated_at=now)
        return stamped

    def create(self, session_id: str, flow: str, step: str, language: str, data: dict[str, Any]) -> SessionState:
        return self._stamp(super().create(session_id, flow, step, language, data), created=True)

    def transition(self, state: SessionState, to_step: str, data: dict[str, Any], event: dict[str, Any],
                   durable: bool = False) -> SessionState:
        return self._stamp(super().transition(state, to_step, data, event, durable), created=False)

    def sessions_since(self, since: dt.datetime) -> list[SessionState]:
        return sorted((self.load(sid) for sid, s in self.sessions.items()
                       if dt.datetime.fromisoformat(s.updated_at) >= since), key=lambda s: s.created_at)


class MemoryClerks:
    def __init__(self) -> None:
        self.records: dict[str, ClerkRecord] = {}

    def get(self, clerk_id: str) -> ClerkRecord | None:
        return self.records.get(clerk_id)

    def put(self, record: ClerkRecord) -> None:
        self.records[record.clerk_id] = record


class Desk:
    """A rig with a desk over it and what the desk audited."""

    def __init__(self) -> None:
        self.store = StampedStore()
        self.rig = Rig(store=self.store)
        self.store.clock = lambda: self.rig.now
        self.audited: list[tuple[str, dict[str, Any], str | None]] = []
        self.sign_in = ClerkSignIn(MemoryClerks(), cost=CHEAP,
                                   audit=lambda kind, fields: self.audited.append((kind, dict(fields), None)))
        self.sign_in.add(CLERK, "Д.Сарнай", Pin(CLERK_PIN))
        self.desk = ClerkDesk(self.rig.engine, self.sign_in, self.store,
                              lambda kind, fields, sid: self.audited.append((kind, dict(fields), sid)))

    def clerk(self) -> SignedInClerk:
        return self.desk.sign_in(CLERK, Pin(CLERK_PIN))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.audited]

    def at_approval(self) -> str:
        f = self.rig.issuance
        sid = f.begin("kk").session_id
        f.consent(sid, True)
        f.find_order(sid, "147314016754")
        f.read_card(sid)
        assert f.verify_card_pin(sid, Pin(CARD_PIN)).step is IssuanceStep.APPROVAL
        return sid


@pytest.fixture
def d() -> Iterator[Desk]:
    desk = Desk()
    yield desk
    desk.rig.engine.close()


# --- signing in -----------------------------------------------------------------------------------------
def test_a_signed_in_clerk_approves_and_the_step_carries_the_clerk_id(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()
    documents = d.desk.session(clerk, sid).view.documents
    r = d.desk.approve(clerk, sid, documents, by_proxy=False)
    assert r.step is IssuanceStep.TOKEN
    assert d.rig.data(sid)["clerk_id"] == CLERK
    assert [e for s, _, e in d.store.journal if s == sid][-1]["clerk_id"] == CLERK
    assert "clerk.signed_in" in d.kinds()


def test_approval_without_every_document_names_what_is_missing_in_the_clerks_language(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()
    with pytest.raises(ApprovalIncomplete) as err:
        d.desk.approve(clerk, sid, ["official_letter"], by_proxy=True)
    text = clerk_message(Translator("kk"), err.value)
    assert "Сенімхат" in text and "Шарт 2 дана" in text
    assert d.rig.store.load(sid).step == "approval"


@pytest.mark.parametrize(("lang", "word"), [("mn", "ПИН"), ("kk", "PIN-код"), ("ky", "PIN-код"), ("ru", "PIN-код"),
                                            ("en", "PIN")])
def test_a_wrong_pin_is_refused_in_the_clerks_language(d: Desk, lang: str, word: str) -> None:
    with pytest.raises(ClerkPinRefused) as err:
        d.desk.sign_in(CLERK, Pin("999999"))
    assert word in clerk_message(Translator(lang), err.value)
    with pytest.raises(ClerkPinRefused):
        d.desk.sign_in("nobody", Pin(CLERK_PIN))          # an unknown clerk gets the same answer


def test_five_wrong_pins_lock_the_clerk_out_until_a_moment_said_in_words(d: Desk) -> None:
    for _ in range(4):
        with pytest.raises(ClerkPinRefused):
            d.desk.sign_in(CLERK, Pin("999999"))
    with pytest.raises(ClerkLockedOut) as err:
        d.desk.sign_in(CLERK, Pin("999999"))
    with pytest.raises(ClerkLockedOut):
        d.desk.sign_in(CLERK, Pin(CLERK_PIN))             # the right PIN too, while locked out
    ulaanbaatar = dt.timezone(dt.timedelta(hours=8))
    assert clerk_message(Translator("ru"), err.value, ulaanbaatar) == (
        "Слишком много неверных PIN-кодов. Вход заблокирован до 2 дек. 2026\u202fг., 11:15.")
    assert "{" not in clerk_message(Translator("ky"), err.value) and "clerk.locked_out" in d.kinds()
    d.rig.now += dt.timedelta(minutes=16)
    assert d.clerk().clerk_id == CLERK


def test_an_expired_sign_in_is_refused_with_its_end_and_audited_as_signed_out(d: Desk) -> None:
    clerk = d.clerk()
    d.rig.now += dt.timedelta(hours=8)
    with pytest.raises(ClerkSignInExpired) as err:
        d.desk.day(clerk)
    assert clerk_message(Translator("en"), err.value) == \
        "Your sign-in ended at Dec 2, 2026, 11:00\u202fAM. Please sign in again."
    assert d.audited[-1][:2] == ("clerk.signed_out", {"clerk_id": CLERK, "reason": "expired"})
    with pytest.raises(ClerkNotSignedIn):
        d.desk.day(clerk)


def test_a_signed_out_or_made_up_sign_in_does_nothing(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()
    d.desk.sign_out(clerk)
    assert d.audited[-1] == ("clerk.signed_out", {"clerk_id": CLERK}, None)
    with pytest.raises(ClerkNotSignedIn):
        d.desk.approve(clerk, sid, d.rig.issuance.current(sid).view.documents, by_proxy=False)
    forged = SignedInClerk(CLERK, "Д.Сарнай", d.rig.now, d.rig.now + dt.timedelta(hours=8))
    with pytest.raises(ClerkNotSignedIn) as err:
        d.desk.confirm_revocation(forged, sid)
    assert clerk_message(Translator("mn"), err.value) == "Та системээс гарсан байна. Дахин нэвтэрнэ үү."
    assert d.rig.store.load(sid).step == "approval"


def test_a_clerk_disabled_after_signing_in_can_do_nothing_more(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()
    d.sign_in.disable(CLERK)
    with pytest.raises(ClerkNotSignedIn):
        d.desk.approve(clerk, sid, d.rig.issuance.current(sid).view.documents, by_proxy=False)
    assert d.audited[-1] == ("clerk.signed_out", {"clerk_id": CLERK, "reason": "disabled"}, None)
    assert d.rig.store.load(sid).step == "approval"


# --- the day's list -------------------------------------------------------------------------------------
def test_the_days_list_shows_flow_step_holder_time_and_state(d: Desk) -> None:
    old_done = d.rig.issue()                                  # 2 Dec: finished yesterday, not listed
    stuck = d.rig.issuance.begin("mn").session_id             # 2 Dec: unfinished, listed
    d.rig.now += dt.timedelta(days=1)
    clerk = d.clerk()
    waiting = d.at_approval()
    cancelled = d.rig.issuance.begin("ru").session_id
    d.rig.issuance.cancel(cancelled, "applicant")
    lines = {ln.session_id: ln for ln in d.desk.day(clerk)}
    assert set(lines) == {stuck, waiting, cancelled}
    assert old_done not in lines
    w = lines[waiting]
    assert (w.flow, w.step, w.holder, w.status, w.language) == (
        FlowKind.ISSUANCE, "approval", "Баатар Ариун", SessionStatus.WAITING_FOR_CLERK, "kk")
    assert w.started_at == d.rig.now and w.can_cancel and not w.can_resume and not w.can_reprint
    assert lines[stuck].status is SessionStatus.WITH_APPLICANT and lines[stuck].holder == ""
    assert lines[cancelled].status is SessionStatus.CANCELLED and not lines[cancelled].can_cancel
    assert [ln.session_id for ln in d.desk.day(clerk)][-1] == stuck           # newest first


@pytest.mark.parametrize("status", list(SessionStatus))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_state_is_named_in_every_language(status: SessionStatus, lang: str) -> None:
    t = Translator(lang)
    assert t.has(f"clerk.status.{status.value}") and t(f"clerk.status.{status.value}") != f"clerk.status.{status.value}"


def test_holder_name_from_the_order_before_the_card_is_read(d: Desk) -> None:
    f = d.rig.issuance
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.find_order(sid, "147314016754")
    assert holder_name(d.rig.data(sid)) == "Б.Ариун"


# --- stuck sessions -------------------------------------------------------------------------------------
def test_a_session_stopped_at_the_receipt_is_resumed_by_the_clerk(d: Desk) -> None:
    sid = d.rig.to_enrollment_step()
    d.rig.issuance.enroll(sid)
    d.rig.issuance.install(sid)
    d.rig.restart()                                           # a restart before the receipt
    d.desk = ClerkDesk(d.rig.engine, d.sign_in, d.store, lambda kind, fields, s: d.audited.append((kind, fields, s)))
    clerk = d.clerk()
    line = next(ln for ln in d.desk.day(clerk) if ln.session_id == sid)
    assert line.status is SessionStatus.RESUMABLE and line.can_resume
    r = d.desk.resume(clerk, sid)
    assert r.step is IssuanceStep.DONE and d.rig.printer.printed
    assert d.audited[-1] == ("clerk.resumed", {"clerk_id": CLERK, "flow": "issuance", "step": "receipt"}, sid)


def test_a_session_waiting_for_the_applicant_has_nothing_to_resume(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.rig.issuance.begin("mn").session_id
    with pytest.raises(NothingToResume) as err:
        d.desk.resume(clerk, sid)
    assert clerk_message(Translator("en"), err.value) == (
        "This session waits for the applicant at the step “" + Translator("en")("step.consent")
        + "”: there is nothing to resume.")


def test_the_clerk_cancels_a_stuck_session_and_it_is_audited(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.rig.to_token_step()
    r = d.desk.cancel(clerk, sid)
    assert r.step is IssuanceStep.CANCELLED and r.finished
    assert d.audited[-1] == ("clerk.cancelled", {"clerk_id": CLERK, "flow": "issuance", "step": "token"}, sid)


@pytest.mark.parametrize(("lang", "why"), [("kk", "тіркеу куәлігі шығарылды"), ("ky", "сертификат чыгарылды"),
                                           ("mn", "гэрчилгээ олгогдсон"), ("ru", "сертификат выпущен"),
                                           ("en", "")])
def test_a_cancel_refused_says_why_in_the_clerks_language(d: Desk, lang: str, why: str) -> None:
    clerk = d.clerk()
    sid = d.rig.to_enrollment_step()
    d.rig.issuance.enroll(sid)                                # at install: the certificate is issued
    with pytest.raises(CannotCancel) as err:
        d.desk.cancel(clerk, sid)
    t = Translator(lang)
    text = clerk_message(t, err.value)
    assert t("cancel.why.certificate_issued") in text and t("step.install") in text and why in text
    assert d.rig.store.load(sid).step == "install"
    assert d.audited[-1][:2] == ("clerk.cancel_refused", {"clerk_id": CLERK, "flow": "issuance", "step": "install",
                                                          "why": "certificate_issued"})


def test_reprint_of_a_finished_session_only(d: Desk) -> None:
    clerk = d.clerk()
    done = d.rig.issue()
    printed = len(d.rig.printer.printed)
    assert d.desk.reprint(clerk, done)
    assert len(d.rig.printer.printed) == printed + 1
    assert d.audited[-1] == ("clerk.reprinted", {"clerk_id": CLERK, "flow": "issuance"}, done)
    unfinished = d.rig.to_token_step()
    with pytest.raises(NoReceipt) as err:
        d.desk.reprint(clerk, unfinished)
    assert Translator("ru")("step.token") in clerk_message(Translator("ru"), err.value)


def test_the_clerk_rejects_with_a_reason_the_applicant_reads_in_their_language(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()                                     # the applicant reads Kazakh
    r = d.desk.reject(clerk, sid, "holder_not_present")
    assert r.finished and r.step is IssuanceStep.CANCELLED and isinstance(r.error, ApplicationRejected)
    assert Translator("kk")("refusal.holder_not_present") in Translator(r.language).error(r.error)
    assert [e for s, _, e in d.store.journal if s == sid][-1]["clerk_id"] == CLERK
    assert set(REJECT_REASONS) >= {"documents_missing", "rejected_other"}


def test_a_reason_not_on_the_list_is_refused_and_the_session_waits(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()
    with pytest.raises(InvalidInput):
        d.desk.reject(clerk, sid, "bad mood")
    d.rig.now += dt.timedelta(hours=9)
    with pytest.raises(ClerkSignInExpired):
        d.desk.reject(clerk, sid, "documents_missing")
    assert d.rig.store.load(sid).step == "approval"


# --- revocation -----------------------------------------------------------------------------------------
def test_the_clerk_confirms_a_revocation(d: Desk) -> None:
    d.rig.issue()
    d.rig.token.slot = None
    f = d.rig.revocation
    sid = f.begin("ky").session_id
    f.consent(sid, True)
    f.read_card(sid)
    f.verify_card_pin(sid, Pin(CARD_PIN))
    f.choose(sid, f.current(sid).view.certificates[0].serial, "key_compromise")
    clerk = d.clerk()
    assert next(ln for ln in d.desk.day(clerk) if ln.session_id == sid).status is SessionStatus.WAITING_FOR_CLERK
    assert d.desk.revocation_reason(clerk, sid) == "key_compromise"
    r = d.desk.confirm_revocation(clerk, sid)
    assert r.step is RevocationStep.RECEIPT and d.rig.data(sid)["clerk_id"] == CLERK


def test_a_revocation_queued_for_the_central_is_listed_as_waiting_and_resumed(d: Desk) -> None:
    d.rig.issue()
    f = d.rig.revocation
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.read_card(sid)
    f.verify_card_pin(sid, Pin(CARD_PIN))
    f.choose(sid, f.current(sid).view.certificates[0].serial, "superseded")
    clerk = d.clerk()
    d.rig.central.down = True
    assert d.desk.confirm_revocation(clerk, sid).step is RevocationStep.REVOKE
    line = next(ln for ln in d.desk.day(clerk) if ln.session_id == sid)
    assert line.status is SessionStatus.WAITING_FOR_CENTRAL and line.can_resume
    d.rig.central.down = False
    assert d.desk.resume(clerk, sid).step is RevocationStep.RECEIPT


def test_a_receipt_the_printer_lost_is_listed_and_reprinted(d: Desk) -> None:
    d.rig.printer.paper = False
    sid = d.rig.to_enrollment_step()
    d.rig.issuance.enroll(sid)
    d.rig.issuance.install(sid)
    assert d.rig.issuance.print_receipt(sid).finished
    clerk = d.clerk()
    line = next(ln for ln in d.desk.day(clerk) if ln.session_id == sid)
    assert line.status is SessionStatus.RECEIPT_PENDING and line.can_reprint and not line.can_cancel
    d.rig.printer.paper = True
    assert d.desk.reprint(clerk, sid)
    assert d.desk.line(d.store.load(sid)).status is SessionStatus.DONE


def test_a_session_decided_elsewhere_meanwhile_is_said_so(d: Desk) -> None:
    clerk = d.clerk()
    sid = d.at_approval()
    documents = d.rig.issuance.current(sid).view.documents
    d.rig.issuance.approve(sid, "clerk-2", documents, False)             # another clerk, at another desk
    with pytest.raises(WrongStep) as err:
        d.desk.approve(clerk, sid, documents, by_proxy=False)
    assert clerk_message(Translator("ky"), err.value) == "Бул сеанс кийинки кадамга өттү. Тизме жаңыланды."


def test_the_pin_is_never_in_what_the_desk_audits(d: Desk) -> None:
    clerk = d.clerk()
    d.desk.cancel(clerk, d.rig.to_token_step())
    d.desk.sign_out(clerk)
    assert CLERK_PIN not in repr(d.audited) and TOKEN_PIN not in repr(d.audited)


# --- the real store's day read --------------------------------------------------------------------------
def test_the_kiosk_store_reads_sessions_moved_on_since_a_moment(tmp_path: Path) -> None:
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    try:
        first = store.create("s1", "issuance", "consent", "mn", {"schema": 1})
        moment = dt.datetime.fromisoformat(first.updated_at) + dt.timedelta(milliseconds=1)
        second = store.create("s2", "check", "pin", "kk", {"schema": 1})
        assert [s.id for s in store.sessions_since(moment)] in ([], ["s2"])
        while dt.datetime.now(dt.UTC) <= moment:      # the store's times are in milliseconds
            time.sleep(0.001)
        store.transition(store.load("s1"), "order", {"schema": 1}, {"kind": "consent.given"})
        later = store.sessions_since(moment)
        assert "s1" in [s.id for s in later] and later[0].created_at <= later[-1].created_at
        assert [s.id for s in store.sessions_since(moment - dt.timedelta(days=1))] == ["s1", "s2"]
        assert second.created_at
    finally:
        store.close()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_clerk_refusal_is_written_in_every_language(lang: str) -> None:
    refusals = [ClerkPinRefused, ClerkLockedOut, ClerkSignInExpired, ClerkNotSignedIn, NothingToResume, NoReceipt]
    t = Translator(lang)
    for cls in refusals:
        text = clerk_message(t, cls(until="2026-12-02T03:15:00+00:00", expired_at="2026-12-02T11:00:00+00:00",
                                    step="token"))
        assert text != cls.key and "{" not in text and "?" not in text, (lang, cls.key)
