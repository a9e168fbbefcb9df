"""The issuance workflow: from a paid order to a personalised eToken and a printed receipt.

Steps, in order: consent → order → identity → approval → token → keygen → enrollment → install →
receipt → done.  One method per step; each checks that the session is at its step, does its
device or service work through a port, and persists the transition (session row, journal row,
outbox event) in one transaction before returning.  A restarted kiosk reloads the session and
resumes at the persisted step; the steps with side effects are written so that repeating them
after a crash does no harm:

* token: the new SO PIN is stored (encrypted) *before* C_InitToken; a retry tries it, then the
  factory PIN;
* keygen: the key's CKA_ID is chosen and persisted on entering the step; a retry finds the key
  by that ID instead of generating a second one;
* enrollment: the idempotency key is persisted on entering; the central service returns the same
  certificate for it;
* install: writing the certificate is idempotent;
* receipt: it is stored before printing and marked printed after; a printed receipt is not
  printed again on resume.

PINs are held only in memory (``Pin``), for the running session, and dropped at the end.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Any

from kiosk import register
from kiosk.errors import (
    ApprovalIncomplete,
    CardChanged,
    CentralRejected,
    ConsentRequired,
    DeviceNotReady,
    HolderMismatch,
    InvalidInput,
    InvalidPin,
    KioskError,
    OrderNotFound,
    PaperOut,
    PinBlocked,
    PinRequired,
    PrinterError,
    SessionNotFound,
    StepOutOfOrder,
    TokenError,
    TokenPinBlockedRestart,
    TokenSoPinUnknown,
    WrongToken,
)
from kiosk.order import Order, check_may_proceed, classify_query, compute_fees
from kiosk.pin import Pin, PinPolicy
from kiosk.ports import (
    CardIdentity,
    CentralPort,
    IdCardPort,
    KeyAlgorithm,
    PrinterPort,
    Receipt,
    SessionState,
    SessionStore,
    TokenPort,
    TokenSession,
)
from kiosk.receipt import ReceiptFacts, build_receipt

log = logging.getLogger("tamga.issuance")


@unique
class IssuanceStep(Enum):
    CONSENT = "consent"
    ORDER = "order"
    IDENTITY = "identity"
    APPROVAL = "approval"
    TOKEN = "token"
    KEYGEN = "keygen"
    ENROLLMENT = "enrollment"
    INSTALL = "install"
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


def required_documents(by_proxy: bool) -> list[Document]:
    docs = [Document.OFFICIAL_LETTER, Document.CONTRACT, Document.STATE_REGISTRATION_COPY,
            Document.ID_CARD_COPY]
    if by_proxy:
        docs.append(Document.POWER_OF_ATTORNEY)
    return docs


@dataclass(frozen=True)
class IssuancePolicy:
    """Settings of the workflow that come from the kiosk configuration."""

    office: str = "Tamga"
    country: str = "MN"
    currency: str = "MNT"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.RSA2048
    factory_so_pin: str = ""
    token_label_prefix: str = "TAMGA"
    qr_template: str = "TAMGA:CERT:{serial}"
    timezone: dt.tzinfo = dt.UTC
    pin_policy: PinPolicy = field(default_factory=PinPolicy)


@dataclass(frozen=True)
class StepResult:
    """What the screen shows next: the step awaiting input and the data it renders."""

    session_id: str
    step: IssuanceStep
    language: str
    data: dict[str, Any]
    error: KioskError | None = None

    @property
    def finished(self) -> bool:
        return self.step in (IssuanceStep.DONE, IssuanceStep.CANCELLED)


class Issuance:
    """The workflow over its ports.  Not thread-safe per session: one caller drives one session."""

    def __init__(self, store: SessionStore, central: CentralPort, idcard: IdCardPort, token: TokenPort,
                 printer: PrinterPort, policy: IssuancePolicy,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.store = store
        self.central = central
        self.idcard = idcard
        self.token = token
        self.printer = printer
        self.policy = policy
        self.clock = clock
        self._pins: dict[str, Pin] = {}
        # Receipts rendered while the certificate is written to the token (no device I/O in there).
        self._renderer: ThreadPoolExecutor | None = None
        self._prepared: dict[str, Future[object]] = {}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.shutdown(wait=True, cancel_futures=True)
            self._renderer = None

    # -- session plumbing ---------------------------------------------------------------------------------
    def begin(self, language: str) -> StepResult:
        sid = uuid.uuid4().hex
        state = self.store.create(sid, IssuanceStep.CONSENT.value, language, {"timings_ms": {}})
        return self._result(state)

    def current(self, session_id: str) -> StepResult:
        return self._result(self._load(session_id))

    def _load(self, session_id: str) -> SessionState:
        try:
            return self.store.load(session_id)
        except KeyError:
            raise SessionNotFound(session_id=session_id) from None

    def unfinished(self) -> list[StepResult]:
        """Sessions a restarted kiosk must resume (oldest first)."""
        return [self._result(s) for s in self.store.unfinished()]

    def forget_pin(self, session_id: str) -> None:
        self._pins.pop(session_id, None)

    def _expect(self, session_id: str, step: IssuanceStep) -> SessionState:
        state = self._load(session_id)
        if state.step != step.value:
            raise StepOutOfOrder(session_id=session_id, expected=step.value, actual=state.step)
        return state

    @contextmanager
    def _timed(self, data: dict[str, Any], step: IssuanceStep) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            timings = data.setdefault("timings_ms", {})
            timings[step.value] = round(timings.get(step.value, 0.0) + (time.perf_counter() - start) * 1000, 3)

    def _advance(self, state: SessionState, to: IssuanceStep, data: dict[str, Any], kind: str,
                 durable: bool = False, **event: Any) -> StepResult:
        final = to in (IssuanceStep.DONE, IssuanceStep.CANCELLED)
        new = self.store.transition(state, to.value, data, {"kind": kind, "final": final, **event}, durable)
        log.info("step %s -> %s", state.step, to.value,
                 extra={"session": state.id, "event": kind, "version": new.version,
                        "step_ms": data.get("timings_ms", {}).get(state.step)})
        if final:
            self.forget_pin(state.id)
            self._prepared.pop(state.id, None)
        return self._result(new)

    def _result(self, state: SessionState, error: KioskError | None = None) -> StepResult:
        return StepResult(state.id, IssuanceStep(state.step), state.language, self._view(state), error)

    def _view(self, state: SessionState) -> dict[str, Any]:
        """What the screen of the session's current step shows (no secrets, no PINs)."""
        data = state.data
        view: dict[str, Any] = {"timings_ms": data.get("timings_ms", {})}
        if "order" in data:
            order = Order.from_dict(data["order"])
            view["order"] = {"invoice": order.invoice, "holder": order.holder.display_name,
                             "organisation": order.organisation, "position": order.position,
                             "term_years": order.term_years, "etoken": order.etoken,
                             "paid_mnt": order.paid_mnt,
                             "fees": [(f.item.value, f.quantity, f.amount_mnt) for f in order.fees.lines]}
        if state.step == IssuanceStep.APPROVAL.value:
            view["documents"] = [d.value for d in required_documents(data.get("by_proxy", False))]
        for key in ("card", "token", "certificate", "receipt_pending"):
            if key in data:
                view[key] = data[key]
        if state.step in (IssuanceStep.KEYGEN.value, IssuanceStep.INSTALL.value):
            view["pin_needed"] = state.id not in self._pins
        return view

    def cancel(self, session_id: str, reason: str) -> StepResult:
        """End a session that has no certificate yet (from install on, one was issued: it must be installed).

        A session cancelled at enrollment may have had its certificate issued before a crash; the
        event names the idempotency key so the central service can find and revoke it.
        """
        state = self._load(session_id)
        step = IssuanceStep(state.step)
        if step in (IssuanceStep.DONE, IssuanceStep.CANCELLED):
            return self._result(state)
        if step in (IssuanceStep.INSTALL, IssuanceStep.RECEIPT):
            raise StepOutOfOrder(session_id=session_id, expected="install", actual=state.step)
        return self._advance(state, IssuanceStep.CANCELLED, dict(state.data), "cancelled", reason=reason,
                             idempotency_key=state.data.get("idempotency_key"))

    # -- 1. consent -----------------------------------------------------------------------------------------
    def consent(self, session_id: str, accepted: bool) -> StepResult:
        state = self._expect(session_id, IssuanceStep.CONSENT)
        if not accepted:
            raise ConsentRequired()
        data = dict(state.data, consent_at=self.clock().isoformat())
        return self._advance(state, IssuanceStep.ORDER, data, "consent.given")

    # -- 2. order ---------------------------------------------------------------------------------------------
    def find_order(self, session_id: str, query: str) -> StepResult:
        """Look the order up by invoice, register number or QR payload; only a payable one proceeds."""
        state = self._expect(session_id, IssuanceStep.ORDER)
        data = dict(state.data)
        try:
            kind, value = classify_query(query)
        except ValueError as err:
            raise OrderNotFound(reason="bad_query") from err
        with self._timed(data, IssuanceStep.ORDER):
            order = self.central.find_order(kind.value, value)
        try:
            fees = check_may_proceed(order)
        except KioskError as err:
            self.store.transition(state, state.step, data,
                                  {"kind": "order.refused", "invoice": order.invoice, **err.data})
            raise
        data.update(order=order.to_dict(), fees_total=fees.total)
        return self._advance(state, IssuanceStep.IDENTITY, data, "order.found", order_id=order.id,
                             invoice=order.invoice)

    # -- 3. identity ------------------------------------------------------------------------------------------
    def read_card(self, session_id: str) -> StepResult:
        """Read the inserted ID card and check that its holder is the order's holder (before any PIN)."""
        state = self._expect(session_id, IssuanceStep.IDENTITY)
        data = dict(state.data)
        order = Order.from_dict(data["order"])
        with self._timed(data, IssuanceStep.IDENTITY):
            identity = self.idcard.read_identity()
        mismatch = _holder_mismatch(order, identity)
        if mismatch:
            self.store.transition(state, state.step, data, {"kind": "identity.mismatch", "field": mismatch,
                                                            "card_serial": identity.certificate_serial})
            raise HolderMismatch(field=mismatch)
        data["card"] = {"name": identity.common_name, "serial_number": identity.serial_number,
                        "certificate_serial": format(identity.certificate_serial, "x"),
                        "issuer": identity.issuer, "card_uuid": identity.card_uuid,
                        "not_after": identity.not_after.isoformat(), "verified": False}
        return self._advance(state, IssuanceStep.IDENTITY, data, "identity.card_read",
                             certificate_serial=data["card"]["certificate_serial"])

    def verify_card_pin(self, session_id: str, pin: Pin) -> StepResult:
        """The PIN challenge: the card signs a fresh challenge after VERIFY; a wrong PIN shows tries left."""
        state = self._expect(session_id, IssuanceStep.IDENTITY)
        data = dict(state.data)
        if "card" not in data:
            raise StepOutOfOrder(session_id=session_id, expected="read_card")
        challenge = secrets.token_bytes(32)
        with self._timed(data, IssuanceStep.IDENTITY):
            try:
                # Only the card this session read (and matched to the order) gets the PIN: after a
                # restart or a swap, another card in the reader is refused before VERIFY.
                self.idcard.authenticate(pin, challenge, int(data["card"]["certificate_serial"], 16))
            except CardChanged:
                data.pop("card")       # read the card again (and match its holder) before any PIN
                self.store.transition(state, state.step, data, {"kind": "identity.card_changed"})
                raise
            except KioskError as err:
                self.store.transition(state, state.step, data, {"kind": "identity.pin_failed", **err.data})
                raise
        data["card"] = dict(data["card"], verified=True)
        data["identity_evidence"] = {
            "challenge_sha256": hashlib.sha256(challenge).hexdigest(),
            "certificate_serial": data["card"]["certificate_serial"],
            "verified_at": self.clock().isoformat(),
        }
        return self._advance(state, IssuanceStep.APPROVAL, data, "identity.verified",
                             evidence=data["identity_evidence"])

    # -- 4. clerk approval -------------------------------------------------------------------------------------
    def approve(self, session_id: str, clerk_id: str, documents: Iterable[str], by_proxy: bool) -> StepResult:
        state = self._expect(session_id, IssuanceStep.APPROVAL)
        try:
            ticked = {Document(d) for d in documents}
        except ValueError as err:
            raise InvalidInput(str(err), field="documents") from err
        missing = [d.value for d in required_documents(by_proxy) if d not in ticked]
        if missing:
            raise ApprovalIncomplete(missing=missing)
        data = dict(state.data, by_proxy=by_proxy, clerk_id=clerk_id,
                    documents=sorted(d.value for d in ticked), approved_at=self.clock().isoformat())
        return self._advance(state, IssuanceStep.TOKEN, data, "approval.given", clerk_id=clerk_id,
                             documents=data["documents"], by_proxy=by_proxy)

    # -- 5. token preparation ----------------------------------------------------------------------------------
    def prepare_token(self, session_id: str, new_pin: Pin, confirmation: Pin) -> StepResult:
        """Initialise the eToken with a fresh SO PIN and the applicant's chosen user PIN."""
        state = self._expect(session_id, IssuanceStep.TOKEN)
        self.policy.pin_policy.check(new_pin, confirmation)
        data = dict(state.data)
        order = Order.from_dict(data["order"])
        with self._timed(data, IssuanceStep.TOKEN):
            info = self.token.present()
            label = f"{self.policy.token_label_prefix} {_ascii_register(order)}"[:32]
            self._initialise(info.serial, label, new_pin)
        self._pins[session_id] = new_pin
        data["token"] = {"serial": info.serial, "model": info.model, "label": label}
        # Chosen now and persisted with the transition, so a retried keygen/enrollment reuses them.
        data["key_id"] = secrets.token_hex(16)
        data["idempotency_key"] = uuid.uuid4().hex
        # Durable: the key id and idempotency key must outlive a power cut once the key may exist
        # and the certificate may be issued under them.
        return self._advance(state, IssuanceStep.KEYGEN, data, "token.initialised", durable=True,
                             token_serial=info.serial, model=info.model)

    def _initialise(self, serial: str, label: str, user_pin: Pin) -> None:
        stored = self.store.token_secret(serial)
        new_so = stored or secrets.token_hex(16)
        if stored is None:
            self.store.save_token_secret(serial, new_so)     # before C_InitToken: never lose it
        candidates = [new_so] if stored else []
        if self.policy.factory_so_pin and self.policy.factory_so_pin not in candidates:
            candidates.append(self.policy.factory_so_pin)
        last: KioskError | None = None
        for current in candidates:
            try:
                self.token.initialise(serial, current, new_so, label, user_pin)
                return
            except TokenError as err:
                if err.data.get("reason") != "so_pin_incorrect":
                    raise
                last = err
        # Neither ours nor the factory's: prepared by someone else.  Final, so that nobody retries
        # into an SO PIN lockout; the clerk resets the token with its vendor tool.
        raise TokenSoPinUnknown(serial=serial) from last

    def _token_pin(self, session_id: str, pin: Pin | None) -> Pin:
        """The PIN given now, else the one the token accepted earlier in this process; else PinRequired."""
        if pin is not None:
            return pin
        try:
            return self._pins[session_id]
        except KeyError:
            raise PinRequired() from None

    @contextmanager
    def _token_session(self, state: SessionState, serial: str, pin: Pin) -> Iterator[TokenSession]:
        """Log in; remember the PIN only once the token accepted it, forget it when it refuses it."""
        try:
            with self.token.session(serial, pin) as session:
                self._pins[state.id] = pin
                yield session
        except (InvalidPin, PinBlocked) as err:
            self.forget_pin(state.id)
            self.store.transition(state, state.step, dict(state.data),
                                  {"kind": "token.pin_refused", "blocked": isinstance(err, PinBlocked),
                                   "attempts_remaining": err.data.get("attempts_remaining")})
            raise

    def _check_token(self, data: dict[str, Any]) -> str:
        serial: str = data["token"]["serial"]
        info = self.token.present()
        if info.serial != serial:
            raise WrongToken(serial=serial, present=info.serial)
        return serial

    # -- 6. key generation and CSR -----------------------------------------------------------------------------
    def generate_key(self, session_id: str, pin: Pin | None = None) -> StepResult:
        state = self._expect(session_id, IssuanceStep.KEYGEN)
        user_pin = self._token_pin(session_id, pin)
        data = dict(state.data)
        key_id = bytes.fromhex(data["key_id"])
        order = Order.from_dict(data["order"])
        with self._timed(data, IssuanceStep.KEYGEN):
            serial = self._check_token(data)
            try:
                with self._token_session(state, serial, user_pin) as session:
                    spki = session.find_public_key(key_id)
                    reused = spki is not None
                    if spki is None:
                        spki = session.generate_key_pair(key_id, data["token"]["label"], self.policy.key_algorithm)
                    csr = session.sign_csr(key_id, _ascii_register(order))
            except PinBlocked as err:
                # Nothing is issued yet: the token is prepared again (the kiosk holds its SO PIN).
                self._advance(self.store.load(session_id), IssuanceStep.TOKEN, dict(state.data),
                              "token.reprepare", reason="user_pin_blocked")
                raise TokenPinBlockedRestart(serial=serial) from err
        data["csr"] = base64.b64encode(csr).decode()
        data["public_key_sha256"] = hashlib.sha256(spki).hexdigest()
        return self._advance(state, IssuanceStep.ENROLLMENT, data, "key.generated",
                             public_key_sha256=data["public_key_sha256"], reused_existing_key=reused,
                             algorithm=self.policy.key_algorithm.value)

    # -- 7. enrollment -----------------------------------------------------------------------------------------
    def enroll(self, session_id: str) -> StepResult:
        state = self._expect(session_id, IssuanceStep.ENROLLMENT)
        data = dict(state.data)
        with self._timed(data, IssuanceStep.ENROLLMENT):
            try:
                issued = self.central.enroll(data["order"]["id"], base64.b64decode(data["csr"]),
                                             data["idempotency_key"])
            except CentralRejected as err:
                # The order changed at central (cancelled, unpaid) or the request was refused: this
                # session cannot go on; the applicant sees why, the journal keeps it.
                self._advance(state, IssuanceStep.CANCELLED, data, "enrollment.refused", **err.data)
                raise
        data["certificate"] = {"pem": issued.certificate_pem, "chain": list(issued.chain_pem),
                               "serial": issued.serial_hex, "not_before": issued.not_before.isoformat(),
                               "not_after": issued.not_after.isoformat()}
        return self._advance(state, IssuanceStep.INSTALL, data, "certificate.issued", serial=issued.serial_hex)

    # -- 8. install --------------------------------------------------------------------------------------------
    def install(self, session_id: str, pin: Pin | None = None) -> StepResult:
        state = self._expect(session_id, IssuanceStep.INSTALL)
        user_pin = self._token_pin(session_id, pin)
        data = dict(state.data)
        cert = data["certificate"]
        data["issued_at"] = self.clock().isoformat()
        self._prepare_receipt(SessionState(state.id, state.step, state.version, state.language, data))
        with self._timed(data, IssuanceStep.INSTALL):
            serial = self._check_token(data)
            with self._token_session(state, serial, user_pin) as session:
                session.install_certificate(bytes.fromhex(data["key_id"]), data["token"]["label"],
                                            _pem_to_der(cert["pem"]), [_pem_to_der(p) for p in cert["chain"]])
        self.forget_pin(session_id)   # no further token operation needs it
        return self._advance(state, IssuanceStep.RECEIPT, data, "certificate.installed", serial=cert["serial"])

    # -- 9. receipt --------------------------------------------------------------------------------------------
    def receipt_facts(self, state: SessionState) -> ReceiptFacts:
        data = state.data
        order = Order.from_dict(data["order"])
        cert = data["certificate"]
        tz = self.policy.timezone
        return ReceiptFacts(
            office=self.policy.office,
            issued_at=dt.datetime.fromisoformat(data.get("issued_at") or self.clock().isoformat()).astimezone(tz),
            order=order,
            fees=compute_fees(order.term_years, order.etoken),
            certificate_serial=cert["serial"],
            valid_from=dt.datetime.fromisoformat(cert["not_before"]).astimezone(tz),
            valid_until=dt.datetime.fromisoformat(cert["not_after"]).astimezone(tz),
            token_serial=data["token"]["serial"],
            qr_payload=self.policy.qr_template.format(serial=cert["serial"], invoice=order.invoice),
        )

    def _receipt(self, state: SessionState, reprint: bool = False) -> Receipt:
        return build_receipt(self.receipt_facts(state), state.language, self.policy.currency, reprint=reprint)

    def _prepare_receipt(self, state: SessionState) -> None:
        if self._renderer is None:
            self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tamga-receipt")
        self._prepared[state.id] = self._renderer.submit(self.printer.prepare, self._receipt(state))

    def _take_prepared(self, session_id: str) -> object | None:
        future = self._prepared.pop(session_id, None)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:   # any failure: printing renders again and reports the error where it belongs
            log.warning("receipt pre-render failed; rendering again to print", exc_info=True)
            return None

    def print_receipt(self, session_id: str) -> StepResult:
        """Print the receipt; a printer fault still completes the issuance, with the receipt kept for reprint."""
        state = self._expect(session_id, IssuanceStep.RECEIPT)
        data = dict(state.data)
        data.setdefault("issued_at", self.clock().isoformat())
        state = SessionState(state.id, state.step, state.version, state.language, data)
        receipt = self._receipt(state)
        prepared = self._take_prepared(session_id)
        status = self.store.receipt_status(session_id)
        error: KioskError | None = None
        with self._timed(data, IssuanceStep.RECEIPT):
            if status != "printed":      # printed before a crash: do not print twice
                self.store.keep_receipt(session_id, receipt, printed=False)
                try:
                    self.printer.print_receipt(receipt, prepared)
                    self.store.keep_receipt(session_id, receipt, printed=True)
                except (PaperOut, PrinterError, DeviceNotReady) as err:
                    error = err
        data["receipt_pending"] = error is not None
        result = self._advance(state, IssuanceStep.DONE, data, "receipt.printed" if error is None
                               else "receipt.pending", error=error.to_dict() if error else None)
        return StepResult(result.session_id, result.step, result.language, result.data, error)

    def reprint(self, session_id: str) -> bytes:
        """Print a kept receipt again (marked as a reprint); returns the rendered PNG."""
        state = self._load(session_id)
        if state.step != IssuanceStep.DONE.value:
            raise StepOutOfOrder(session_id=session_id, expected=IssuanceStep.DONE.value, actual=state.step)
        receipt = self._receipt(state, reprint=True)
        png = self.printer.print_receipt(receipt)
        self.store.keep_receipt(session_id, receipt, printed=True)
        data = dict(state.data, receipt_pending=False)
        self.store.transition(state, state.step, data, {"kind": "receipt.reprinted", "final": True})
        return png

    # -- driving ------------------------------------------------------------------------------------------------
    def resume_step(self, session_id: str) -> Callable[[], StepResult] | None:
        """The call that continues a session whose step needs no new input, or None."""
        state = self._load(session_id)
        step = IssuanceStep(state.step)
        if step is IssuanceStep.ENROLLMENT:
            return lambda: self.enroll(session_id)
        if step is IssuanceStep.RECEIPT:
            return lambda: self.print_receipt(session_id)
        if step is IssuanceStep.KEYGEN and session_id in self._pins:
            return lambda: self.generate_key(session_id)
        if step is IssuanceStep.INSTALL and session_id in self._pins:
            return lambda: self.install(session_id)
        return None


def _holder_mismatch(order: Order, identity: CardIdentity) -> str | None:
    """Which field differs between the card's holder and the order's holder, or None."""
    if not register.same_person(order.holder.register_number, identity.serial_number):
        return "register_number"
    card_names = {w.casefold() for w in f"{identity.common_name} {identity.given_name} {identity.surname}".split()}
    wanted = {w.casefold() for w in f"{order.holder.father_name} {order.holder.given_name}".split()}
    if not wanted <= card_names:
        return "name"
    return None


def _ascii_register(order: Order) -> str:
    try:
        return register.to_ascii(order.holder.register_number)
    except ValueError as err:
        raise InvalidInput(str(err), field="register_number") from err


def _pem_to_der(pem: str) -> bytes:
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)
