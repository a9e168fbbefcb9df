"""Revocation of a lost or compromised token: no token needed, the holder's ID card is.

Steps: consent → identity → choose (the certificate, from the central's list for the card's
holder, and a reason) → approval (the clerk confirms) → revoke → receipt → done.  The revoke
request is committed durably with its idempotency key before it is sent, so a power cut or a
central that cannot be reached leaves the session at ``revoke``, resumed until the central answers;
the receipt says "sent to the CA" only once it has.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from enum import Enum, unique
from typing import Any

from kiosk.engine import FlowKind, StepResult, cannot_cancel
from kiosk.errors import CentralUnavailable, InvalidInput, RequestRefused
from kiosk.events import EventKind
from kiosk.i18n import Translator
from kiosk.identity import ExpectedHolder, IdentitySteps, card_view
from kiosk.ports import (
    CertificateRecord,
    CertificateStatus,
    Receipt,
    ReceiptLine,
    ReceiptLineStyle,
    RevocationReason,
    SessionState,
)
from kiosk.receipt_steps import ReceiptSteps
from kiosk.records import ListedCertificate, revocation_data
from kiosk.views import CertificateView, StepView
from kiosk.workdays import days_left


@unique
class RevocationStep(Enum):
    CONSENT = "consent"
    IDENTITY = "identity"
    CHOOSE = "choose"
    APPROVAL = "approval"
    REVOKE = "revoke"
    RECEIPT = "receipt"
    DONE = "done"
    CANCELLED = "cancelled"


R = RevocationStep


def _record_dict(rec: CertificateRecord) -> ListedCertificate:
    return {"serial": rec.serial_hex, "status": rec.status.value, "not_before": rec.not_before.isoformat(),
            "not_after": rec.not_after.isoformat(), "holder": rec.holder_name, "organisation": rec.organisation,
            "token_serial": rec.token_serial, "invoice": rec.invoice}


class RevocationFlow(IdentitySteps, ReceiptSteps):
    kind = FlowKind.REVOCATION
    Step = RevocationStep
    first_step = RevocationStep.CONSENT
    after_consent = RevocationStep.IDENTITY
    after_identity = RevocationStep.CHOOSE

    def view(self, state: SessionState) -> StepView:
        data, now = revocation_data(state), self.now()

        def cert_view(c: Mapping[str, Any]) -> CertificateView:
            not_after = dt.datetime.fromisoformat(c["not_after"])
            return CertificateView(c["serial"], dt.datetime.fromisoformat(c["not_before"]), not_after,
                                   holder=c["holder"], organisation=c["organisation"], status=c["status"],
                                   days_left=days_left(now, not_after))

        chosen = data.get("chosen")
        return StepView(card=card_view(data),
                        certificates=tuple(cert_view(c) for c in data.get("certificates", [])),
                        certificate=cert_view(chosen) if chosen else None,
                        reasons=tuple(r.value for r in RevocationReason) if state.step == R.CHOOSE.value else (),
                        receipt_pending=bool(data.get("receipt_pending", False)),
                        timings_ms=dict(data.get("timings_ms", {})))

    def resume(self, state: SessionState) -> Callable[[], StepResult] | None:
        if state.step == R.REVOKE.value:
            return lambda: self.revoke(state.id)
        if state.step == R.RECEIPT.value:
            return lambda: self.print_receipt(state.id)
        return None

    def queued(self, state: SessionState) -> Callable[[], StepResult] | None:
        if state.step == R.REVOKE.value:
            return lambda: self.revoke(state.id)
        return None

    def before_cancel(self, state: SessionState) -> dict[str, Any]:
        if state.step in (R.REVOKE.value, R.RECEIPT.value):
            raise cannot_cancel(state, "revocation_requested")   # it may have reached the CA: see it through
        return {}

    def expected_holder(self, state: SessionState) -> ExpectedHolder:
        return ExpectedHolder()       # the card names the holder; their certificates are listed after

    def on_identity_verified(self, state: SessionState, data: dict[str, Any]) -> None:
        records = self.services.central.certificates(data["card"]["serial_number"])
        data["certificates"] = [_record_dict(r) for r in records if r.status is CertificateStatus.GOOD]

    # -- steps ------------------------------------------------------------------------------------------
    def choose(self, session_id: str, certificate_serial: str, reason: str) -> StepResult:
        state = self.expect(session_id, R.CHOOSE)
        data = revocation_data(state)
        chosen = next((c for c in data.get("certificates", []) if c["serial"] == certificate_serial.upper()), None)
        if chosen is None:
            raise InvalidInput("not one of the holder's valid certificates", field="certificate")
        try:
            RevocationReason(reason)
        except ValueError as err:
            raise InvalidInput(str(err), field="reason") from err
        data["chosen"], data["reason"] = chosen, reason
        return self.result(self.advance(state, R.APPROVAL, data, EventKind.REVOCATION_CHOSEN,
                                        serial=chosen["serial"], reason=reason))

    def confirm(self, session_id: str, clerk_id: str) -> StepResult:
        """The clerk confirms; the request and its idempotency key are committed before it is sent."""
        state = self.expect(session_id, R.APPROVAL)
        data = dict(state.data, clerk_id=clerk_id, confirmed_at=self.now().isoformat(),
                    idempotency_key=uuid.uuid4().hex)
        state = self.engine.before_side_effect(state, data, EventKind.REVOCATION_CONFIRMED, to=R.REVOKE,
                                               clerk_id=clerk_id, serial=data["chosen"]["serial"])
        return self.revoke(state.id)

    def revoke(self, session_id: str) -> StepResult:
        """Send the revocation; CentralUnavailable leaves the session here, resumed later."""
        state = self.expect(session_id, R.REVOKE)
        data = revocation_data(state)
        with self.engine.timed(data, R.REVOKE):
            try:
                done = self.services.central.revoke(data["chosen"]["serial"], RevocationReason(data["reason"]),
                                                    data["card"]["serial_number"], data["idempotency_key"])
            except CentralUnavailable as err:
                return self.result(state, err)     # queued: resumed until the central answers
            except RequestRefused as err:
                ended = self.advance(state, R.CANCELLED, data, EventKind.CANCELLED, reason="refused", **err.data)
                return self.result(ended, err)
        data["revoked_at"] = done.revoked_at.isoformat()
        return self.result(self.advance(state, R.RECEIPT, data, EventKind.REVOKED, serial=done.certificate_serial,
                                        revoked_at=data["revoked_at"], reason=done.reason.value))

    def build_receipt(self, language: str, data: Mapping[str, Any], reprint: bool) -> Receipt:
        t = Translator(language, self.policy.currency)
        tz = self.policy.timezone
        revoked_at = dt.datetime.fromisoformat(data["revoked_at"]).astimezone(tz)
        serial = data["chosen"]["serial"]
        L, S = ReceiptLine, ReceiptLineStyle
        lines = [L(S.TITLE, t("revocation.receipt_title"))]
        if reprint:
            lines.append(L(S.HEADING, t("receipt.reprint")))
        lines += [
            L(S.PAIR, t("receipt.office"), self.policy.office),
            L(S.PAIR, t("receipt.holder"), data["chosen"]["holder"]),
            L(S.PAIR, t("receipt.organisation"), data["chosen"]["organisation"]),
            L(S.RULE),
            L(S.HEADING, t("receipt.certificate_serial")),
            L(S.TEXT, " ".join(serial[i:i + 4] for i in range(0, len(serial), 4))),
            L(S.PAIR, t("revocation.reason"), t(f"revocation.reason.{data['reason']}")),
            L(S.PAIR, t("revocation.sent_at"), t.datetime(revoked_at)),
            L(S.RULE),
            L(S.NOTE, t("revocation.receipt_note")),
        ]
        return Receipt(language, tuple(lines))
