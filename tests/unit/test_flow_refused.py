"""A request the kiosk kept while offline and the central then refused: the session waits at ``refused`` with
the central's reason, the clerk reads it in their language, and the token's next insertion removes the key."""

from __future__ import annotations

import dataclasses

import pytest

from kiosk.clerk_desk import SessionStatus, refusal_text, status_text
from kiosk.errors import CentralRejected, CentralUnavailable, WrongToken
from kiosk.flows.issuance import IssuanceStep
from kiosk.i18n import LANGUAGES, Translator
from kiosk.order import OrderStatus
from kiosk.pin import Pin
from tests.unit.conftest import TOKEN_PIN, Rig
from tests.unit.test_clerk_desk import Desk

INVOICE = "147314016754"


def deferred(rig: Rig) -> str:
    """An issuance that ended offline with a pending receipt; the central is back."""
    sid = rig.to_enrollment_step(INVOICE)
    rig.central.down = True
    with pytest.raises(CentralUnavailable):
        rig.issuance.enroll(sid)
    assert rig.issuance.defer(sid).step is IssuanceStep.PENDING
    rig.central.down = False
    rig.restart()               # what follows happens in another process: the sync daemon's, a later visit's
    return sid


def test_an_order_cancelled_while_the_kiosk_was_offline_is_explained_and_its_key_removed_at_insertion() -> None:
    desk = Desk()
    rig = desk.rig
    sid = deferred(rig)
    key_id = bytes.fromhex(rig.data(sid)["key_id"])
    assert key_id in rig.token.slot.objects                                  # type: ignore[union-attr]
    order = rig.central.orders[INVOICE]
    rig.central.orders[INVOICE] = dataclasses.replace(order, status=OrderStatus.CANCELLED)

    refused = rig.issuance.fetch_certificate(sid)            # the sync daemon's round sends the kept request
    assert refused.step is IssuanceStep.REFUSED and isinstance(refused.error, CentralRejected)
    assert rig.data(sid)["refusal"]["refusal"] == "cancelled"
    assert rig.engine.resume_step(sid) is None and rig.issuance.queued(rig.store.load(sid)) is None

    (line,) = desk.desk.refused()
    assert line.status is SessionStatus.REFUSED_BY_CENTRAL and line.token_serial == "TK0001"
    for language in LANGUAGES:
        t = Translator(language)
        text = refusal_text(t, line)
        assert INVOICE in text and "TK0001" in text and t("refusal.cancelled") in text
        assert text.endswith(t("clerk.refused.key_waiting", token_serial="TK0001"))
        assert status_text(t, line.status) == t("clerk.status.refused_by_central")

    (waiting,) = rig.issuance.waiting_for_token("TK0001")    # the token is inserted again
    assert waiting.step is IssuanceStep.REFUSED and waiting.view.pin_needed
    done = rig.issuance.remove_unused_key(sid, Pin(TOKEN_PIN))
    assert done.step is IssuanceStep.CANCELLED and done.finished
    assert key_id not in rig.token.slot.objects                              # type: ignore[union-attr]
    assert rig.issuance.waiting_for_token("TK0001") == [] and desk.desk.refused() == []
    assert rig.store.events(sid)[-2:] == ["enrollment.refused", "enrollment.unused_key_removed"]
    ended = desk.desk.line(rig.store.load(sid))
    assert ended.status is SessionStatus.REFUSED_BY_CENTRAL
    assert refusal_text(Translator("ru"), ended).endswith("Неиспользуемый ключ на eToken TK0001 удалён.")


def test_another_token_in_the_slot_keeps_the_refused_session_waiting() -> None:
    rig = Rig()
    sid = deferred(rig)
    rig.central.orders[INVOICE] = dataclasses.replace(rig.central.orders[INVOICE], status=OrderStatus.CANCELLED)
    rig.issuance.fetch_certificate(sid)
    rig.token.slot.serial = "TK0002"                                         # type: ignore[union-attr]
    with pytest.raises(WrongToken):
        rig.issuance.remove_unused_key(sid, Pin(TOKEN_PIN))
    assert rig.store.load(sid).step == "refused"


def test_a_refused_session_the_clerk_cancels_leaves_the_key_and_says_so() -> None:
    rig = Rig()
    sid = deferred(rig)
    rig.central.orders[INVOICE] = dataclasses.replace(rig.central.orders[INVOICE], status=OrderStatus.CANCELLED)
    rig.issuance.fetch_certificate(sid)
    assert rig.issuance.cancel(sid, "clerk").step is IssuanceStep.CANCELLED
    assert bytes.fromhex(rig.data(sid)["key_id"]) in rig.token.slot.objects  # type: ignore[union-attr]
    text = refusal_text(Translator("en"), Desk().desk.line(rig.store.load(sid)))
    assert "147314016754" in text and "eToken" not in text       # nothing promised about the key


def test_a_certificate_kept_at_one_kiosk_is_installed_at_another_and_only_once() -> None:
    deferring = Rig()
    sid = deferred(deferring)
    assert deferring.issuance.fetch_certificate(sid).step is IssuanceStep.INSTALL     # the first kiosk's daemon
    other = Rig(central=deferring.central, token=deferring.token)        # another kiosk; the holder brings the token
    other.central.down = True
    assert other.issuance.token_inserted("ky") == []                     # offline: nothing known, nothing made
    other.central.down = False
    (found,) = other.issuance.token_inserted("ky")
    assert found.step is IssuanceStep.INSTALL and found.view.pin_needed and found.language == "ky"
    assert found.view.certificate is not None
    assert found.view.certificate.serial == deferring.data(sid)["certificate"]["serial"]
    assert other.issuance.install(found.session_id, Pin(TOKEN_PIN)).step is IssuanceStep.RECEIPT
    assert other.data(found.session_id)["key_id"] == deferring.data(sid)["key_id"]     # found by its digest
    assert other.issuance.token_inserted("ky") == []                     # on the token now
    assert [r.session_id for r in deferring.issuance.token_inserted("mn")] == [sid]   # its own session first


# --- what the touchscreen's welcome screen takes up when the holder brings the eToken back ---------------------
def test_a_token_brought_back_gets_its_kept_request_sent_and_then_asks_for_the_pin_to_write_the_certificate() -> None:
    rig = Rig()
    sid = deferred(rig)
    rig.central.down = True
    assert rig.issuance.take_up_inserted_token("mn") is None             # still away: it stays pending
    assert rig.store.load(sid).step == "pending"
    rig.central.down = False
    owed = rig.issuance.take_up_inserted_token("mn")
    assert owed is not None and owed.session_id == sid and owed.error is None
    assert owed.step is IssuanceStep.INSTALL and owed.view.pin_needed
    assert rig.issuance.install(sid, Pin(TOKEN_PIN)).step is IssuanceStep.RECEIPT


def test_a_token_brought_back_whose_request_was_refused_asks_for_the_pin_to_remove_the_key() -> None:
    rig = Rig()
    sid = deferred(rig)
    rig.central.orders[INVOICE] = dataclasses.replace(rig.central.orders[INVOICE], status=OrderStatus.CANCELLED)
    owed = rig.issuance.take_up_inserted_token("kk")
    assert owed is not None and owed.step is IssuanceStep.REFUSED and owed.view.pin_needed
    assert owed.error is None                                            # told on the PIN screen, not as an error
    key_id = bytes.fromhex(rig.data(sid)["key_id"])
    assert rig.issuance.remove_unused_key(sid, Pin(TOKEN_PIN)).finished
    assert key_id not in rig.token.slot.objects                              # type: ignore[union-attr]
    assert rig.issuance.take_up_inserted_token("kk") is None


def test_a_token_owed_nothing_takes_nothing_up() -> None:
    rig = Rig()
    assert rig.issuance.take_up_inserted_token("en") is None
    assert rig.engine.unfinished() == []


def test_a_kept_request_for_an_order_changed_since_the_check_is_refused_and_told_to_the_clerk() -> None:
    desk = Desk()
    rig = desk.rig
    sid = deferred(rig)
    order = rig.central.orders[INVOICE]
    renamed = dataclasses.replace(order.holder, given_name="Болд")
    rig.central.orders[INVOICE] = dataclasses.replace(order, holder=renamed)
    refused = rig.issuance.fetch_certificate(sid)
    assert refused.step is IssuanceStep.REFUSED and refused.error is not None
    assert refused.error.data["reason"] == "order_changed"
    (line,) = desk.desk.refused()
    for language in LANGUAGES:
        t = Translator(language)
        assert t("refusal.order_changed") in refusal_text(t, line)


def test_the_checked_digest_covers_what_the_certificate_is_made_from_and_only_that() -> None:
    order = Rig().central.orders[INVOICE]
    digest = order.checked_digest
    assert len(digest) == 64 and digest == dataclasses.replace(order, paid_mnt=1, confirmed=False).checked_digest
    assert digest == dataclasses.replace(order, holder=dataclasses.replace(order.holder, email="x@y.mn")).checked_digest
    changed = [dataclasses.replace(order, holder=dataclasses.replace(order.holder, register_number="УБ80000000")),
               dataclasses.replace(order, holder=dataclasses.replace(order.holder, father_name="Дорж")),
               dataclasses.replace(order, organisation="Өөр ХХК"), dataclasses.replace(order, position="Захирал"),
               dataclasses.replace(order, term_years=2), dataclasses.replace(order, authentication_certificate=True)]
    assert len({digest, *(o.checked_digest for o in changed)}) == len(changed) + 1
