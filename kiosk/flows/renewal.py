"""Renewal before expiry (shared seed 003, «ЗАЯВКА НА ПРОДЛЕНИЕ ЭЦП»), on the holder's own token.

Steps: token → offer → keygen → send → install → receipt → done.

* token: the current certificate is read off the token; the central says it is good, how much
  renewal costs and what the organisation's balance is.  From ``renewal_notice_days`` (30) before
  expiry the offer is made; the request must reach the central at least 3 working days before
  expiry (:mod:`kiosk.workdays`), else renewal is no longer possible and a new issuance is
  offered; a balance that does not cover the fee refuses it before anything is sent.
* offer: the holder confirms that the details are unchanged and chooses the term; the
  application (holder, organisation and its tax number, term, fee from the balance) is signed on
  the token with the current, still valid key — that signature is what lets a holder renew
  without a clerk.  Changed details need the clerk and a new order: refused with that reason.
* keygen: the new key pair is generated beside the old one, under a new CKA_ID persisted first.
* send: the signed application and the new key's CSR go to the central (idempotency key);
  an unreachable central leaves the session here, resumed later.
* install: the new certificate is written beside the old; the old pair is removed only once it has
  expired, the next time the token is seen (:mod:`kiosk.token_certificates`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from enum import Enum, unique
from typing import Any

from kiosk.engine import FlowKind, StepResult, cannot_cancel
from kiosk.errors import (
    CentralRejected,
    CentralUnavailable,
    InvalidInput,
    KeyMismatch,
    KioskError,
    RenewalNotPossible,
)
from kiosk.events import EventKind
from kiosk.flows.token_check import certificate_view, token_view
from kiosk.i18n import Translator
from kiosk.order import FeeItem, FeeLine
from kiosk.pin import Pin
from kiosk.ports import CertificateStatus, Receipt, ReceiptLine, ReceiptLineStyle, RenewalTerms, SessionState
from kiosk.receipt import grouped_serial
from kiosk.receipt_steps import ReceiptSteps
from kiosk.records import RenewalData, TermsRecord, refusal_record, renewal_data
from kiosk.token_certificates import current_certificate, pem_to_der
from kiosk.token_steps import TokenSteps, authentication_issued, authentication_key_id
from kiosk.views import RenewalView, StepView
from kiosk.workdays import days_left

log = logging.getLogger("tamga.renewal")

APPLICATION_TYPE = "tamga.renewal-application/1"


@unique
class RenewalStep(Enum):
    TOKEN = "token"
    OFFER = "offer"
    KEYGEN = "keygen"
    SEND = "send"
    INSTALL = "install"
    RECEIPT = "receipt"
    DONE = "done"
    CANCELLED = "cancelled"


N = RenewalStep


def application_bytes(application: dict[str, Any]) -> bytes:
    """The exact bytes the holder signs and the central verifies (sorted keys, UTF-8, no spaces)."""
    return json.dumps(application, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _terms_dict(terms: RenewalTerms) -> TermsRecord:
    return {"certificate_serial": terms.certificate_serial, "not_after": terms.not_after.isoformat(),
            "last_request_day": terms.last_request_day.isoformat(), "organisation": terms.organisation,
            "organisation_register": terms.organisation_register, "balance_mnt": terms.balance_mnt,
            "term_years": terms.term_years, "fee_mnt": terms.fees.total,
            "fees": [[f.item.value, f.quantity, f.unit_mnt, f.amount_mnt] for f in terms.fees.lines]}


class RenewalFlow(TokenSteps, ReceiptSteps):
    kind = FlowKind.RENEWAL
    Step = RenewalStep
    first_step = RenewalStep.TOKEN

    # -- engine hooks -----------------------------------------------------------------------------------
    def view(self, state: SessionState) -> StepView:
        data, now = renewal_data(state), self.now()
        cert = certificate_view(data["certificate"], now) if "certificate" in data else None
        renewal = None
        if cert is not None and "terms" in data:
            terms = data["terms"]
            renewal = RenewalView(
                certificate=cert, days_left=cert.days_left or 0,
                last_request_day=dt.date.fromisoformat(terms["last_request_day"]),
                organisation=terms["organisation"], organisation_register=terms["organisation_register"],
                term_years=terms["term_years"],
                fees=tuple(FeeLine(FeeItem(i), q, u, a) for i, q, u, a in terms["fees"]),
                fee_mnt=terms["fee_mnt"], balance_mnt=terms["balance_mnt"])
        step = RenewalStep(state.step)
        return StepView(token=token_view(data), certificate=cert, renewal=renewal,
                        notice="renewal.notice" if step is N.OFFER else "",
                        pin_needed=step in (N.KEYGEN, N.INSTALL) and state.id not in self.pins,
                        receipt_pending=bool(data.get("receipt_pending", False)),
                        timings_ms=dict(data.get("timings_ms", {})))

    def resume(self, state: SessionState) -> Callable[[], StepResult] | None:
        step, sid = RenewalStep(state.step), state.id
        if step is N.SEND:
            return lambda: self.send(sid)
        if step is N.RECEIPT:
            return lambda: self.print_receipt(sid)
        if step is N.KEYGEN and sid in self.pins:
            return lambda: self.generate_key(sid)
        if step is N.INSTALL and sid in self.pins:
            return lambda: self.install(sid)
        return None

    def queued(self, state: SessionState) -> Callable[[], StepResult] | None:
        if state.step == N.SEND.value:
            return lambda: self.send(state.id)
        return None

    def before_cancel(self, state: SessionState) -> dict[str, Any]:
        if state.step in (N.SEND.value, N.INSTALL.value, N.RECEIPT.value):
            raise cannot_cancel(state, "renewal_requested")   # the fee may be taken: see it through
        return {}

    # -- checks -----------------------------------------------------------------------------------------
    def _refuse(self, state: SessionState, reason: str, **data: Any) -> RenewalNotPossible:
        self.record(state, dict(state.data), EventKind.RENEWAL_REFUSED, reason=reason, **data)
        return RenewalNotPossible(reason=reason, **data)

    def _check_terms(self, state: SessionState, terms: RenewalTerms) -> dt.date:
        """The last day renewal is possible (the kiosk's calendar and the central's, the earlier); refuse
        when today is past it or the balance does not cover the fee."""
        tz = self.policy.timezone
        expiry = terms.not_after.astimezone(tz).date()
        last = min(self.policy.calendar.last_request_day(expiry), terms.last_request_day)
        today = self.now().astimezone(tz).date()
        if today > last:
            raise self._refuse(state, "too_late", last_request_day=last.isoformat())
        if terms.balance_mnt < terms.fees.total:
            raise self._refuse(state, "insufficient_balance", balance=terms.balance_mnt,
                               due=terms.fees.total - terms.balance_mnt)
        return last

    # -- 1. token ---------------------------------------------------------------------------------------
    def read_token(self, session_id: str, term_years: int = 1) -> StepResult:
        """Read the current certificate, ask the central for its status and the renewal terms."""
        state = self.expect(session_id, N.TOKEN)
        data = renewal_data(state)
        with self.engine.timed(data, N.TOKEN):
            info, current = current_certificate(self.services.token, self.services.certificates)
            record = self.services.central.certificate(current.facts.serial_hex)
            if record.status is not CertificateStatus.GOOD:
                raise self._refuse(state, "not_renewable", status=record.status.value)
            left = days_left(self.now(), record.not_after)
            if left > self.policy.renewal_notice_days:
                raise self._refuse(state, "not_yet", days_left=left,
                                   notice_days=self.policy.renewal_notice_days)
            terms = self.services.central.renewal_terms(current.facts.serial_hex, term_years)
            self._check_terms(state, terms)
        data["token"] = {"serial": info.serial, "model": info.model, "label": info.label}
        data["certificate"] = current.to_dict()
        data["certificate"]["status"] = record.status.value
        data["holder"] = {"register_number": record.register_number, "name": record.holder_name}
        data["terms"] = _terms_dict(terms)
        return self.result(self.advance(state, N.OFFER, data, EventKind.RENEWAL_OFFERED, serial=record.serial_hex,
                                        days_left=left, fee_mnt=terms.fees.total))

    # -- 2. offer ---------------------------------------------------------------------------------------
    def confirm(self, session_id: str, details_unchanged: bool, pin: Pin, term_years: int | None = None) -> StepResult:
        """The holder confirms the application; the new key's id and the idempotency key are committed first."""
        state = self.expect(session_id, N.OFFER)
        data = renewal_data(state)
        if not details_unchanged:
            raise self._refuse(state, "details_changed")
        term = term_years or data["terms"]["term_years"]
        if term not in (1, 2):
            raise InvalidInput("the term is 1 or 2 years", field="term_years")
        if term != data["terms"]["term_years"]:
            terms = self.services.central.renewal_terms(data["certificate"]["serial"], term)
            self._check_terms(state, terms)
            data["terms"] = _terms_dict(terms)
        data["application"] = {
            "type": APPLICATION_TYPE,
            "certificate_serial": data["certificate"]["serial"],
            "holder": data["holder"],
            "organisation": {"name": data["terms"]["organisation"], "register": data["terms"]["organisation_register"]},
            "term_years": term,
            "fee_mnt": data["terms"]["fee_mnt"],
            "details_unchanged": True,
            "requested_at": self.now().isoformat(timespec="seconds"),
        }
        data["new_key_id"] = secrets.token_hex(16)
        data["idempotency_key"] = uuid.uuid4().hex
        state = self.engine.before_side_effect(state, data, EventKind.RENEWAL_CONFIRMED, to=N.KEYGEN,
                                               term_years=term, fee_mnt=data["terms"]["fee_mnt"])
        try:
            return self.generate_key(state.id, pin)
        except KioskError as err:
            # The session moved on to keygen: the outcome is told, not raised; keygen is retried from there.
            return self.result(self.engine.load(state.id), err)

    # -- 3. keygen: new pair beside the old; the application signed with the old key ----------------------
    def generate_key(self, session_id: str, pin: Pin | None = None) -> StepResult:
        state = self.expect(session_id, N.KEYGEN)
        user_pin = self.token_pin(session_id, pin)
        data = renewal_data(state)
        new_id, old_id = bytes.fromhex(data["new_key_id"]), bytes.fromhex(data["certificate"]["key_id"])
        application = application_bytes(data["application"])
        with self.engine.timed(data, N.KEYGEN):
            serial = self.check_token(data)
            with self.token_session(state, serial, user_pin) as session:
                spki = session.find_public_key(new_id)
                label = data["token"]["label"]
                if spki is None:
                    spki = session.generate_key_pair(new_id, label, self.policy.key_algorithm)
                csr = session.sign_csr(new_id, data["certificate"]["serial_number"])
                signature = session.sign(old_id, application)
                if session.find_public_key(authentication_key_id(old_id)) is not None:   # renewed with it
                    data["authentication"] = self.authentication_request(
                        session, new_id, label, data["certificate"]["serial_number"])
        data["csr"] = base64.b64encode(csr).decode()
        data["signature"] = base64.b64encode(signature).decode()
        data["public_key_sha256"] = hashlib.sha256(spki).hexdigest()
        state = self.advance(state, N.SEND, data, EventKind.RENEWAL_KEY_GENERATED,
                             public_key_sha256=data["public_key_sha256"])
        return self.send(state.id)

    def _remove_new_keys(self, state: SessionState, data: RenewalData) -> bool:
        """Delete the refused request's new key pair (and authentication pair) while the holder's eToken and
        PIN are still here; whether it was done.  A request refused after the visit (kept offline) leaves
        them: the clerk's message says the new key is unused."""
        pin = self.pins.get(state.id)
        if pin is None:
            return False
        try:
            serial = self.check_token(data)
            with self.token_session(state, serial, pin) as session:
                session.remove_key(bytes.fromhex(data["new_key_id"]))
                if "authentication" in data:
                    session.remove_key(bytes.fromhex(data["authentication"]["key_id"]))
        except KioskError as err:            # the token pulled meanwhile: the refusal is told all the same
            log.info("the refused renewal's new key stays on the token", extra={"reason": err.key})
            return False
        return True

    # -- 4. send ----------------------------------------------------------------------------------------
    def send(self, session_id: str) -> StepResult:
        state = self.expect(session_id, N.SEND)
        data = renewal_data(state)
        with self.engine.timed(data, N.SEND):
            try:
                authentication = data.get("authentication")
                issued = self.services.central.renew(
                    data["certificate"]["serial"], application_bytes(data["application"]),
                    base64.b64decode(data["signature"]), base64.b64decode(data["csr"]), data["idempotency_key"],
                    authentication_csr_der=base64.b64decode(authentication["csr"]) if authentication else None)
            except CentralUnavailable as err:
                return self.result(state, err)          # queued: resumed until the central answers
            except CentralRejected as err:
                # Kept for the clerk (kiosk.clerk_desk.refusal_text), as a refused issuance's is.
                data["refusal"] = refusal_record(err, self.now())
                if self._remove_new_keys(state, data):
                    data["refusal"]["new_key_removed_at"] = self.now().isoformat()
                ended = self.advance(state, N.CANCELLED, data, EventKind.RENEWAL_REFUSED, **err.data)
                return self.result(ended, err)
        if issued.public_key_sha256 and issued.public_key_sha256 != data["public_key_sha256"]:
            ended = self.advance(state, N.CANCELLED, data, EventKind.RENEWAL_REFUSED,
                                 reason="certificate_key_mismatch")
            return self.result(ended, CentralRejected(reason="certificate_key_mismatch"))
        if "authentication" in data:
            try:
                data["authentication"] = authentication_issued(data["authentication"], issued)
            except KeyMismatch:
                ended = self.advance(state, N.CANCELLED, data, EventKind.RENEWAL_REFUSED,
                                     reason="certificate_key_mismatch")
                return self.result(ended, CentralRejected(reason="certificate_key_mismatch"))
        data["new_certificate"] = {"pem": issued.certificate_pem, "chain": list(issued.chain_pem),
                                   "serial": issued.serial_hex, "not_before": issued.not_before.isoformat(),
                                   "not_after": issued.not_after.isoformat()}
        return self.result(self.advance(state, N.INSTALL, data, EventKind.RENEWAL_ISSUED, serial=issued.serial_hex))

    # -- 5. install -------------------------------------------------------------------------------------
    def install(self, session_id: str, pin: Pin | None = None) -> StepResult:
        state = self.expect(session_id, N.INSTALL)
        user_pin = self.token_pin(session_id, pin)
        data = renewal_data(state)
        cert = data["new_certificate"]
        with self.engine.timed(data, N.INSTALL):
            serial = self.check_token(data)
            with self.token_session(state, serial, user_pin) as session:
                chain = [pem_to_der(p) for p in cert["chain"]]
                session.install_certificate(bytes.fromhex(data["new_key_id"]), data["token"]["label"],
                                            pem_to_der(cert["pem"]), chain)
                if "authentication" in data:
                    self.install_authentication(session, data["authentication"], data["token"]["label"], chain)
        self.pins.forget(session_id)
        data["installed_at"] = self.now().isoformat()
        return self.result(self.advance(state, N.RECEIPT, data, EventKind.RENEWAL_INSTALLED, serial=cert["serial"]))

    # -- 6. receipt -------------------------------------------------------------------------------------
    def build_receipt(self, language: str, data: Mapping[str, Any], reprint: bool) -> Receipt:
        t = Translator(language, self.policy.currency)
        tz = self.policy.timezone
        cert = data["new_certificate"]
        serial = cert["serial"]
        L, S = ReceiptLine, ReceiptLineStyle
        lines = [L(S.TITLE, t("renewal.receipt_title"))]
        if reprint:
            lines.append(L(S.HEADING, t("receipt.reprint")))
        lines += [
            L(S.PAIR, t("receipt.office"), self.policy.office),
            L(S.PAIR, t("receipt.date"), t.datetime(dt.datetime.fromisoformat(data["installed_at"]).astimezone(tz))),
            L(S.PAIR, t("receipt.holder"), data["holder"]["name"]),
            L(S.PAIR, t("receipt.organisation"), data["terms"]["organisation"]),
            L(S.RULE),
            L(S.HEADING, t("receipt.certificate_serial")),
            L(S.TEXT, grouped_serial(serial)),
            *([L(S.HEADING, t("receipt.authentication_serial")),
               L(S.TEXT, grouped_serial(data["authentication"]["certificate"]["serial"]))]
              if "authentication" in data else []),
            L(S.PAIR, t("receipt.valid_from"), t.date(dt.datetime.fromisoformat(cert["not_before"]).astimezone(tz))),
            L(S.PAIR, t("receipt.valid_until"), t.date(dt.datetime.fromisoformat(cert["not_after"]).astimezone(tz))),
            L(S.PAIR, t("receipt.token_serial"), data["token"]["serial"]),
            L(S.RULE),
            L(S.TOTAL, t("renewal.fee_from_balance"), t.money(data["terms"]["fee_mnt"])),
            L(S.NOTE, t("renewal.old_kept_until",
                        date=t.date(dt.datetime.fromisoformat(data["certificate"]["not_after"]).astimezone(tz)))),
            L(S.NOTE, t("receipt.pin_not_printed")),
        ]
        return Receipt(language, tuple(lines))
