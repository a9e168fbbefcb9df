"""Issuance: from a paid order to a personalised eToken and a printed receipt (shared seed 000).

Steps, in order: consent → order → identity → approval → token → keygen → enrollment → install →
[agreement] → receipt → done.  The agreement step comes when the kiosk's policy has
``holder_agreement`` and a signer: the holder types the eToken PIN once more and signs the
certificate-holder agreement on the token with the new key (:mod:`kiosk.agreement`).

At approval the clerk ticks the documents the order's type needs
(:func:`required_documents`) and approves, or rejects with a reason (``reject``, which ends the
session).  While the clerk reviews, the screen may run ``prepare_early`` on a worker thread: the token
is initialised and the key generated under a temporary PIN, so that after approval ``prepare_token``
only sets the chosen PIN (C_SetPIN) and ``generate_key`` finds the key and its CSR at once; see
:mod:`kiosk.flows.issuance_early` for that path, its locking and its crash rules.

When the central cannot be reached at enrollment, the visit can end offline
(``defer``): enrollment → pending, with a "certificate pending" receipt; the queued request is
sent later (``fetch_certificate``, by the sync daemon or when the token is seen again) and the
certificate is installed the next time the holder's token is in a kiosk of the office
(``token_inserted``, :mod:`kiosk.flows.issuance_insertion`: this kiosk's own session, else one made
for a certificate the central issued on the token for another kiosk of the office).  When the central
refuses the kept request for good (the order was issued at another kiosk that was offline too, or it
was cancelled or changed meanwhile), the session waits at ``refused`` with the central's reason
(``data['refusal']``, shown to the clerk) until the token is inserted again, here or at another kiosk
of the office: ``remove_unused_key`` then deletes the key the refused request was for, and the session
ends.  A restarted kiosk resumes at the persisted step; the steps with side effects are
written so that repeating them after a crash does no harm:

* token: the new SO PIN is stored (encrypted, durably) *before* C_InitToken; a retry tries it,
  then the factory PIN; a token left blank by a crash inside C_InitToken is initialised again;
* keygen: the key's CKA_ID is persisted on entering the step; a retry finds the pair by that ID
  (the adapter removes a half-written pair) instead of generating a second one;
* enrollment: the idempotency key is persisted on entering; the central returns the same
  certificate for it, and a cancel here voids it at the central (revoking what it issued);
* install: writing the certificate is idempotent; receipt: see :mod:`kiosk.printing`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from enum import Enum, unique
from typing import Any

from kiosk.agreement import AgreementSteps
from kiosk.engine import Engine, FlowKind, StepResult, cannot_cancel
from kiosk.errors import (
    ApprovalIncomplete,
    CentralRejected,
    CentralUnavailable,
    InvalidInput,
    KeyMismatch,
    KioskError,
    OrderNotFound,
    PinBlocked,
    TokenPinBlockedRestart,
    WrongStep,
)
from kiosk.events import EventKind
from kiosk.flows.issuance_early import EarlySteps, EarlyWork, RejectReason, ascii_register, token_label
from kiosk.flows.issuance_insertion import InsertionSteps
from kiosk.identity import ExpectedHolder, IdentitySteps, card_view
from kiosk.order import Order, check_may_proceed, classify_query, compute_fees
from kiosk.pin import Pin, SoPin
from kiosk.ports import AgreementSigner, IssuedCertificate, Receipt, SessionState, TokenInfo
from kiosk.receipt import ReceiptFacts, build_pending_receipt, build_receipt
from kiosk.receipt_steps import ReceiptSteps
from kiosk.records import IssuanceData, issuance_data, refusal_record
from kiosk.token_certificates import pem_to_der
from kiosk.token_steps import authentication_issued, authentication_key_id
from kiosk.views import CertificateView, OrderView, StepView, TokenView


@unique
class IssuanceStep(Enum):
    CONSENT = "consent"
    ORDER = "order"
    IDENTITY = "identity"
    APPROVAL = "approval"
    TOKEN = "token"
    KEYGEN = "keygen"
    ENROLLMENT = "enrollment"
    PENDING = "pending"          # the visit ended offline: the CSR waits for the central
    REFUSED = "refused"          # the central refused the kept CSR: its key waits to be removed from the token
    INSTALL = "install"
    AGREEMENT = "agreement"      # the holder signs the agreement with the new key (kiosk.agreement)
    RECEIPT = "receipt"
    DONE = "done"
    CANCELLED = "cancelled"


@unique
class Document(Enum):
    """Documents the clerk checks (seed 000, section 7.1 «Бүрдүүлэх баримт»)."""

    OFFICIAL_LETTER = "official_letter"
    CONTRACT = "contract"                                  # two copies, signed and stamped
    STATE_REGISTRATION_COPY = "state_registration_copy"    # notarised
    ID_CARD_COPY = "id_card_copy"
    POWER_OF_ATTORNEY = "power_of_attorney"                # only when collected by proxy


@unique
class OrderType(Enum):
    """Who ordered: an organisation for its employee (seed 000's case), or a person for themself."""

    ORGANISATION = "organisation"
    INDIVIDUAL = "individual"

    @classmethod
    def of(cls, order: Order) -> OrderType:
        return cls.ORGANISATION if order.organisation_register else cls.INDIVIDUAL


def required_documents(order_type: OrderType, by_proxy: bool) -> list[Document]:
    """The checklist of seed 000 §7.1 for the order's type.

    An organisation's order needs its official letter (signed by the director, stamped), the contract
    in two copies (signed by the applicant, signed and stamped by the director), the notarised copy of
    its state-registration certificate and the holder's ID card with a copy.  A person's own order has
    no organisation papers: the contract (two copies, signed by the applicant) and the ID card copy.
    Collected by proxy: the notarised power of attorney as well.
    """
    docs = [Document.CONTRACT, Document.ID_CARD_COPY]
    if order_type is OrderType.ORGANISATION:
        docs = [Document.OFFICIAL_LETTER, Document.CONTRACT, Document.STATE_REGISTRATION_COPY, Document.ID_CARD_COPY]
    if by_proxy:
        docs.append(Document.POWER_OF_ATTORNEY)
    return docs


S = IssuanceStep
log = logging.getLogger("tamga.issuance")


class IssuanceFlow(AgreementSteps, IdentitySteps, EarlySteps, InsertionSteps, ReceiptSteps):
    """The issuance steps over the engine's ports.

    One caller drives a session's steps; only ``prepare_early`` runs beside ``approve``/``reject``.
    """

    kind = FlowKind.ISSUANCE
    Step = IssuanceStep
    first_step = IssuanceStep.CONSENT
    after_consent = IssuanceStep.ORDER
    after_identity = IssuanceStep.APPROVAL
    after_agreement = IssuanceStep.RECEIPT

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.early_work = EarlyWork()

    # -- engine hooks -----------------------------------------------------------------------------------
    def view(self, state: SessionState) -> StepView:
        data = issuance_data(state)
        step = IssuanceStep(state.step)
        cert = data.get("certificate")
        token = data.get("token")
        at_approval = step is S.APPROVAL
        return StepView(
            order=OrderView.of(Order.from_dict(data["order"])) if "order" in data else None,
            card=card_view(data),
            token=TokenView(token["serial"], token["model"], token["label"]) if token else None,
            certificate=CertificateView(cert["serial"], dt.datetime.fromisoformat(cert["not_before"]),
                                        dt.datetime.fromisoformat(cert["not_after"])) if cert else None,
            documents=tuple(d.value for d in required_documents(OrderType.of(Order.from_dict(data["order"])),
                                                                data.get("by_proxy", False))) if at_approval else (),
            reasons=tuple(r.value for r in RejectReason) if at_approval else (),
            notice=self.early_notice(state) if at_approval else "",
            rejection=str(data.get("rejection", {}).get("reason", "")),
            agreement=self.agreement_view(state) if step is S.AGREEMENT else None,
            pin_needed=step is S.AGREEMENT or (step in (S.KEYGEN, S.INSTALL, S.REFUSED)
                                               and state.id not in self.pins),
            receipt_pending=bool(data.get("receipt_pending", False)),
            timings_ms=dict(data.get("timings_ms", {})),
        )

    def resume(self, state: SessionState) -> Callable[[], StepResult] | None:
        step, sid = IssuanceStep(state.step), state.id
        if step is S.APPROVAL and "rejection" in state.data:
            return lambda: self.finish_rejection(sid)
        if step is S.ENROLLMENT:
            return lambda: self.enroll(sid)
        if step is S.PENDING:
            return lambda: self.fetch_certificate(sid)
        if step is S.RECEIPT:
            return lambda: self.print_receipt(sid)
        if step is S.KEYGEN and sid in self.pins:
            return lambda: self.generate_key(sid)
        if step is S.INSTALL and sid in self.pins:
            return lambda: self.install(sid)
        if step is S.REFUSED and sid in self.pins:
            return lambda: self.remove_unused_key(sid)
        return None

    def queued(self, state: SessionState) -> Callable[[], StepResult] | None:
        if state.step == S.PENDING.value:
            return lambda: self.fetch_certificate(state.id)
        return self.queued_agreement(state)

    def before_cancel(self, state: SessionState) -> dict[str, Any]:
        """No cancel once a certificate is on its way to the token; at enrollment, void the request first.

        The central may have issued before a reply was lost: voiding the idempotency key revokes
        what it issued under it, so no valid certificate is left outstanding for a cancelled visit.
        """
        step = IssuanceStep(state.step)
        if step in (S.INSTALL, S.RECEIPT):
            raise cannot_cancel(state, "certificate_issued")
        if step in (S.APPROVAL, S.TOKEN) and self._key_may_exist(state) and not self._worker_busy(state):
            try:
                return {"early_key": self._destroy_early_key(state)}
            except KioskError as err:       # not in the slot: the token's next preparation wipes it
                log.warning("early key not removed at cancel: %s", err.key, extra={"session": state.id})
                return {"early_key": "left"}
        if step is S.REFUSED:          # the token did not come back: its unused key stays on it
            return {"unused_key": "left"}
        if step in (S.ENROLLMENT, S.PENDING):
            revoked = self.services.central.void_enrollment(state.data["idempotency_key"])
            return {"idempotency_key": state.data["idempotency_key"], "voided": True, "revoked_serial": revoked}
        return {}

    def on_finish(self, state: SessionState) -> None:
        super().on_finish(state)
        if not self.early_work.running(state.id):      # a worker still on the token needs it to remove its key
            self.early_work.forget_pin(state.id)

    def expected_holder(self, state: SessionState) -> ExpectedHolder:
        order = Order.from_dict(state.data["order"])
        return ExpectedHolder(register_number=order.holder.register_number,
                              names=(order.holder.father_name, order.holder.given_name))

    # -- 2. order ---------------------------------------------------------------------------------------
    def find_order(self, session_id: str, query: str) -> StepResult:
        """Look the order up by invoice, register number or QR payload; only a payable one proceeds."""
        state = self.expect(session_id, S.ORDER)
        data = issuance_data(state)
        try:
            kind, value = classify_query(query)
        except ValueError as err:
            raise OrderNotFound(reason="bad_query") from err
        with self.engine.timed(data, S.ORDER):
            order = self.services.central.find_order(kind.value, value)
        try:
            fees = check_may_proceed(order)
        except KioskError as err:
            self.record(state, data, EventKind.ORDER_REFUSED, **{"invoice": order.invoice, **err.data})
            raise
        data["order"], data["fees_total"] = order.to_dict(), fees.total
        return self.result(self.advance(state, S.IDENTITY, data, EventKind.ORDER_FOUND, order_id=order.id,
                                        invoice=order.invoice))

    # -- 3. identity: read_card, verify_card_pin (kiosk.identity) -----------------------------------------

    # -- 4. clerk approval ------------------------------------------------------------------------------
    def approve(self, session_id: str, clerk_id: str, documents: Iterable[str], by_proxy: bool) -> StepResult:
        """The clerk ticked every document the order's type needs (ApprovalIncomplete names the others)."""
        try:
            ticked = {Document(d) for d in documents}
        except ValueError as err:
            raise InvalidInput(str(err), field="documents") from err
        with self.engine.locked(session_id) as state:       # the early worker may write meanwhile
            state = self.expect(session_id, S.APPROVAL)
            if "rejection" in state.data:
                raise WrongStep(session_id=session_id, expected="issuance.approval", actual="issuance.rejected")
            order_type = OrderType.of(Order.from_dict(state.data["order"]))
            missing = [d.value for d in required_documents(order_type, by_proxy) if d not in ticked]
            if missing:
                raise ApprovalIncomplete(missing=missing)
            data = dict(state.data, by_proxy=by_proxy, clerk_id=clerk_id,
                        documents=sorted(d.value for d in ticked), approved_at=self.now().isoformat())
            return self.result(self.advance(state, S.TOKEN, data, EventKind.APPROVAL_GIVEN, clerk_id=clerk_id,
                                            documents=data["documents"], by_proxy=by_proxy))

    # -- 5. token preparation ---------------------------------------------------------------------------
    def prepare_token(self, session_id: str, new_pin: Pin, confirmation: Pin) -> StepResult:
        """Initialise the eToken with a fresh SO PIN and the applicant's chosen user PIN.

        When ``prepare_early`` prepared the token in this process, wait for it and only set the chosen PIN.
        """
        self.expect(session_id, S.TOKEN)
        self.policy.pin_policy.check(new_pin, confirmation)
        taken = self.take_early_token(session_id, new_pin)
        if taken is not None:
            return self.result(taken)
        state = self.expect(session_id, S.TOKEN)
        data = issuance_data(state)
        for leftover in ("csr", "public_key_sha256"):     # of an early key this path wipes
            data.pop(leftover, None)  # type: ignore[misc]
        label = token_label(self.policy.token_label_prefix, Order.from_dict(data["order"]))
        with self.engine.timed(data, S.TOKEN):
            present = self.services.token.present()
            state, info, so_pin = self._initialise(state, data, present, label, new_pin)
        self.pins.remember(session_id, new_pin)
        data["token"] = {"serial": info.serial, "model": info.model, "label": label}
        # Chosen now and persisted with the transition, so a retried keygen/enrollment reuses them.
        data["key_id"] = secrets.token_hex(16)
        data["idempotency_key"] = uuid.uuid4().hex
        if info.serial != present.serial:       # a blank soft token got its serial only now
            self.services.store.save_token_secret(info.serial, so_pin)
        # Durable: the key id and idempotency key must outlive a power cut once the key may exist
        # and the certificate may be issued under them.
        return self.result(self.engine.before_side_effect(state, data, EventKind.TOKEN_INITIALISED, to=S.KEYGEN,
                                                          token_serial=info.serial, model=info.model,
                                                          was_blank=not present.initialised))

    def _initialise(self, state: SessionState, data: Mapping[str, Any], present: TokenInfo, label: str,
                    user_pin: Pin) -> tuple[SessionState, TokenInfo, SoPin]:
        serial = present.serial
        stored = self.services.store.token_secret(serial)
        new_so = stored or SoPin.generate()
        if stored is None:        # before C_InitToken: never lose it
            self.services.store.save_token_secret(serial, new_so)
        state = self.engine.before_side_effect(state, data, EventKind.TOKEN_INITIALISING, token_serial=serial,
                                               blank=not present.initialised)
        return state, self.c_inittoken(present, stored, new_so, label, user_pin), new_so

    # -- 6. key generation and CSR ----------------------------------------------------------------------
    def generate_key(self, session_id: str, pin: Pin | None = None) -> StepResult:
        state = self.expect(session_id, S.KEYGEN)
        user_pin = self.token_pin(session_id, pin)
        data = issuance_data(state)
        key_id = bytes.fromhex(data["key_id"])
        order = Order.from_dict(data["order"])
        with self.engine.timed(data, S.KEYGEN):
            serial = self.check_token(data)
            try:
                with self.token_session(state, serial, user_pin) as session:
                    spki = session.find_public_key(key_id)
                    reused = spki is not None
                    if spki is None:
                        spki = session.generate_key_pair(key_id, data["token"]["label"], self.policy.key_algorithm)
                    if "csr" in data and hashlib.sha256(spki).hexdigest() == data.get("public_key_sha256"):
                        csr = base64.b64decode(data["csr"])        # made with the key during the review
                    else:
                        csr = session.sign_csr(key_id, ascii_register(order))
                    if order.authentication_certificate:        # a second key, for its own certificate
                        data["authentication"] = self.authentication_request(
                            session, key_id, data["token"]["label"], ascii_register(order))
            except PinBlocked as err:
                # Nothing is issued yet: the token is prepared again (the kiosk holds its SO PIN).
                again = self.advance(self.engine.load(session_id), S.TOKEN, dict(state.data), EventKind.TOKEN_REPREPARE,
                                     reason="user_pin_blocked")
                return self.result(again, TokenPinBlockedRestart(serial=serial, cause=err.key))
        data["csr"] = base64.b64encode(csr).decode()
        data["public_key_sha256"] = hashlib.sha256(spki).hexdigest()
        return self.result(self.advance(state, S.ENROLLMENT, data, EventKind.KEY_GENERATED,
                                        public_key_sha256=data["public_key_sha256"], reused_existing_key=reused,
                                        algorithm=self.policy.key_algorithm.value))

    # -- 7. enrollment ----------------------------------------------------------------------------------
    def enroll(self, session_id: str) -> StepResult:
        state = self.expect(session_id, S.ENROLLMENT)
        data = issuance_data(state)
        with self.engine.timed(data, S.ENROLLMENT):
            try:
                issued = self._request_certificate(data)
            except CentralRejected as err:
                # The order changed at central (cancelled, unpaid) or the request was refused: this
                # session cannot go on; the applicant sees why, the journal keeps it.
                ended = self.advance(state, S.CANCELLED, data, EventKind.ENROLLMENT_REFUSED, **err.data)
                return self.result(ended, err)
        return self.result(self._issued(state, data, issued))

    def _request_certificate(self, data: IssuanceData) -> IssuedCertificate:
        """The enrollment call (idempotent by the persisted key), escrowing the token's SO PIN with it; the
        order's digest as checked here goes with it, so an order changed at the central since is refused."""
        serial = data["token"]["serial"]
        authentication = data.get("authentication")
        return self.services.central.enroll(
            data["order"]["id"], base64.b64decode(data["csr"]), data["idempotency_key"], token_serial=serial,
            so_pin=self.services.store.token_secret(serial),
            authentication_csr_der=base64.b64decode(authentication["csr"]) if authentication else None,
            order_digest=Order.from_dict(data["order"]).checked_digest)

    def _issued(self, state: SessionState, data: IssuanceData, issued: IssuedCertificate) -> SessionState:
        if issued.public_key_sha256 and issued.public_key_sha256 != data["public_key_sha256"]:
            # Not our key's certificate: never install it; the session stays here (cancel voids it).
            self.record(state, dict(state.data), EventKind.ENROLLMENT_REFUSED, reason="certificate_key_mismatch",
                        serial=issued.serial_hex)
            raise KeyMismatch(certificate_serial=issued.serial_hex)
        if "authentication" in data:
            try:
                data["authentication"] = authentication_issued(data["authentication"], issued)
            except KeyMismatch as err:
                self.record(state, dict(state.data), EventKind.ENROLLMENT_REFUSED, reason="certificate_key_mismatch",
                            serial=err.data["certificate_serial"])
                raise
        data["certificate"] = {"pem": issued.certificate_pem, "chain": list(issued.chain_pem),
                               "serial": issued.serial_hex, "not_before": issued.not_before.isoformat(),
                               "not_after": issued.not_after.isoformat()}
        return self.advance(state, S.INSTALL, data, EventKind.CERTIFICATE_ISSUED, serial=issued.serial_hex)

    # -- offline: end the visit with the request queued, fetch the certificate later --------------------
    def defer(self, session_id: str) -> StepResult:
        """End the visit without the certificate (the central is unreachable): print the pending receipt."""
        state = self.expect(session_id, S.ENROLLMENT)
        data = issuance_data(state)
        data["pending_since"] = self.now().isoformat()
        order = Order.from_dict(data["order"])

        def receipt(reprint: bool) -> Receipt:
            at = dt.datetime.fromisoformat(data["pending_since"]).astimezone(self.policy.timezone)
            return build_pending_receipt(self.policy.office, at, order, data["token"]["serial"], state.language,
                                         self.policy.currency, reprint)

        error = self.engine.receipts.print(pending_receipt_id(session_id), receipt)
        data["receipt_pending"] = error is not None
        parked = self.advance(state, S.PENDING, data, EventKind.ENROLLMENT_DEFERRED,
                              token_serial=data["token"]["serial"], idempotency_key=data["idempotency_key"])
        return self.result(parked, error)

    def fetch_certificate(self, session_id: str) -> StepResult:
        """Send the queued request again (same idempotency key); the certificate then waits for the token.

        A refusal (``enrollment_conflict``: the order was issued for another kiosk's request first;
        ``order_not_payable``: cancelled or changed meanwhile) is kept in ``data['refusal']`` and the
        session waits at ``refused`` for the token, whose key is now of no use.
        """
        state = self.expect(session_id, S.PENDING)
        data = issuance_data(state)
        try:
            issued = self._request_certificate(data)
        except CentralRejected as err:
            data["refusal"] = refusal_record(err, self.now())
            # The token and the key's digest: any kiosk of the office removes the key (issuance_insertion).
            refused = self.advance(state, S.REFUSED, data, EventKind.ENROLLMENT_REFUSED,
                                   **{**err.data, "token_serial": data["token"]["serial"], "invoice":
                                      data["order"]["invoice"], "public_key_sha256": data["public_key_sha256"]})
            return self.result(refused, err)
        return self.result(self._issued(state, data, issued))

    # -- 8. install -------------------------------------------------------------------------------------
    def take_up_inserted_token(self, language: str) -> StepResult | None:
        """The step to show a holder who brings the eToken back (the touchscreen's welcome screen): the first
        of :meth:`token_inserted`, a kept request sent to the central first; None when nothing is owed
        or only requests the central still cannot be reached for (they stay pending)."""
        for owed in self.token_inserted(language):
            if owed.step is S.PENDING:
                try:
                    owed = self.fetch_certificate(owed.session_id)
                except CentralUnavailable:
                    continue
            if owed.step is not S.PENDING:
                return dataclasses.replace(owed, error=None)     # a refusal is told where the key is removed
        return None

    def install(self, session_id: str, pin: Pin | None = None) -> StepResult:
        state = self.expect(session_id, S.INSTALL)
        user_pin = self.token_pin(session_id, pin)
        data = issuance_data(state)
        cert = data["certificate"]
        data["issued_at"] = self.now().isoformat()
        self.engine.receipts.prepare(state.id, self.build_receipt(state.language, data, reprint=False))
        with self.engine.timed(data, S.INSTALL):
            serial = self.check_token(data)
            with self.token_session(state, serial, user_pin) as session:
                if "key_id" not in data:      # a certificate another kiosk's request got: find its key by digest
                    data["key_id"] = self._key_of(session, data["public_key_sha256"], cert["serial"]).hex()
                    if "authentication" in data:
                        data["authentication"] = {**data["authentication"], "key_id": authentication_key_id(
                            bytes.fromhex(data["key_id"])).hex()}
                chain = [pem_to_der(p) for p in cert["chain"]]
                session.install_certificate(bytes.fromhex(data["key_id"]), data["token"]["label"],
                                            pem_to_der(cert["pem"]), chain)
                if "authentication" in data:
                    self.install_authentication(session, data["authentication"], data["token"]["label"], chain)
        self.pins.forget(session_id)   # the agreement, if any, asks for the PIN once more
        after = S.AGREEMENT if self.policy.holder_agreement and self.services.agreement else S.RECEIPT
        return self.result(self.advance(state, after, data, EventKind.CERTIFICATE_INSTALLED,
                                        serial=cert["serial"]))

    # -- 8a. the holder agreement (kiosk.agreement) -------------------------------------------------------
    def agreement_signer(self) -> AgreementSigner:
        if self.services.agreement is None:
            raise RuntimeError("no agreement signer configured")
        return self.services.agreement

    def sign_agreement(self, session_id: str, pin: Pin) -> StepResult:
        """Sign the agreement (see :class:`AgreementSteps`); the receipt prepared at install then says so."""
        result = super().sign_agreement(session_id, pin)
        state = self.engine.load(session_id)
        self.engine.receipts.prepare(state.id, self.build_receipt(state.language, state.data, reprint=False))
        return result

    # -- 9. receipt -------------------------------------------------------------------------------------
    def receipt_facts(self, data: Mapping[str, Any]) -> ReceiptFacts:
        order = Order.from_dict(data["order"])
        cert = data["certificate"]
        tz = self.policy.timezone
        return ReceiptFacts(
            office=self.policy.office,
            issued_at=dt.datetime.fromisoformat(data.get("issued_at") or self.now().isoformat()).astimezone(tz),
            order=order,
            fees=compute_fees(order.term_years, order.etoken),
            certificate_serial=cert["serial"],
            valid_from=dt.datetime.fromisoformat(cert["not_before"]).astimezone(tz),
            valid_until=dt.datetime.fromisoformat(cert["not_after"]).astimezone(tz),
            token_serial=data["token"]["serial"],
            qr_payload=self.policy.qr_template.format(serial=cert["serial"], invoice=order.invoice),
            agreement_signed=bool(data.get("agreement")),
            authentication_serial=data["authentication"]["certificate"]["serial"] if "authentication" in data else "",
        )

    def build_receipt(self, language: str, data: Mapping[str, Any], reprint: bool) -> Receipt:
        return build_receipt(self.receipt_facts(data), language, self.policy.currency, reprint=reprint)


def pending_receipt_id(session_id: str) -> str:
    """The kept "certificate pending" receipt of a session (its final receipt is kept under the session id)."""
    return f"{session_id}:pending"
