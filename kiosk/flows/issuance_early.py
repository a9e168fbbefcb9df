"""Issuance at the clerk's desk: the rejection, and the token prepared while the clerk reviews (issue 6, item 5).

A real eToken takes 10–60 s to generate an RSA-2048 key.  So that the applicant does not wait for
it after the clerk approved, the screen calls :meth:`EarlySteps.prepare_early` as soon as identity is
verified and the token is in (the session is at APPROVAL).  It is a blocking call that the screen runs on
a worker thread, while the clerk's ``approve``/``reject`` run on the UI thread against the same session:

1. SO PIN kept (encrypted, durably) before C_InitToken, as on the usual path; ``early.started`` durable;
2. C_InitToken under a **temporary PIN** (random, only in this process's memory, never persisted or logged);
3. the key id and the enrollment's idempotency key chosen and committed durably (``early.token_initialised``);
4. key pair generated and the CSR signed on the token (``early.key_generated``: status ``ready``).

Then ``prepare_token(pin, confirmation)`` (after approval) waits for a worker still running, and when the
early key is ready replaces the temporary PIN by the chosen one (C_SetPIN, ``token.pin_changed``) instead
of initialising; ``generate_key`` finds the key and the CSR made early and moves on to enrollment at once.
Anything else (no early work, it failed, or a crash lost the temporary PIN) makes ``prepare_token`` take
the usual path: C_InitToken again with the kept SO PIN, which wipes what the early work left.

Concurrency: every write of either thread is a short load-modify-write inside ``Engine.locked``; device
I/O is outside it.  The worker merges only its own keys into the state it loads under the lock, so an
approval in between is never lost; ``approve``/``reject`` decide under the same lock, so exactly one side
destroys an early key:

* ``reject`` with no early work (or none that may have left a key): the session ends at once
  (``approval.refused``, final);
* ``reject`` while this process's worker is on the token: the rejection is committed (``approval.refused``)
  and the worker, at its next write, stops, removes the key if it made one and ends the session
  (``approval.rejection_completed``); a token initialised under a PIN nobody knows and holding no key is
  clean (the next preparation initialises it again);
* ``reject`` with a key and no worker: the key is removed now (C_DestroyObject under the temporary PIN,
  or, when a crash lost that PIN, C_InitToken with the kept SO PIN), then the session ends;
* ``cancel`` at approval or token: the same, by ``before_cancel`` or by the worker.

A rejection committed and not yet completed (power cut, token pulled) is finished by ``resume``.
``prepare_early`` starts only at approval; called again, or once approved, it does nothing.

For the screens: at approval ``view.notice`` is ``approval.key_preparing`` while the worker runs,
``approval.key_ready`` once the key is made, ``approval.rejected_pending`` while a rejection waits for the
key to go; ``view.reasons`` lists the RejectReason values (the applicant reads ``refusal.<value>``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import uuid
from enum import Enum, unique
from typing import Any

from kiosk import register
from kiosk.engine import FINAL_STEPS, StepResult
from kiosk.errors import ApplicationRejected, InvalidInput, KioskError, TokenError, TokenSoPinUnknown
from kiosk.events import EventKind
from kiosk.order import Order
from kiosk.pin import Pin, PinPolicy, SoPin
from kiosk.ports import SessionState, TokenInfo
from kiosk.records import issuance_data
from kiosk.token_steps import TokenSteps

log = logging.getLogger("tamga.issuance")

APPROVAL, TOKEN, CANCELLED = "approval", "token", "cancelled"     # the IssuanceStep values used here
INITIALISING, GENERATING, READY, FAILED = "initialising", "generating", "ready", "failed"
TEMPORARY_PIN_DIGITS = 12


@unique
class RejectReason(Enum):
    """Why the clerk rejects (the applicant reads ``refusal.<value>`` in their language)."""

    DOCUMENTS_MISSING = "documents_missing"
    DOCUMENTS_INVALID = "documents_invalid"
    HOLDER_NOT_PRESENT = "holder_not_present"
    PROXY_NOT_AUTHORISED = "proxy_not_authorised"
    OTHER = "rejected_other"


def temporary_pin(policy: PinPolicy) -> Pin:
    """A random PIN for the token until the applicant chooses theirs; it lives only in memory."""
    while True:
        pin = Pin("".join(secrets.choice("0123456789") for _ in range(max(TEMPORARY_PIN_DIGITS, policy.min_length))))
        try:
            policy.check(pin)
        except KioskError:
            continue
        return pin


class EarlyWork:
    """What this process holds of the early preparations: temporary PINs and the workers running."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pins: dict[str, Pin] = {}
        self._running: dict[str, threading.Event] = {}

    def start(self, session_id: str) -> bool:
        """Register a worker for the session; False when one already runs."""
        with self._guard:
            if session_id in self._running:
                return False
            self._running[session_id] = threading.Event()
            return True

    def finish(self, session_id: str) -> None:
        with self._guard:
            done = self._running.pop(session_id, None)
        if done is not None:
            done.set()

    def running(self, session_id: str) -> bool:
        with self._guard:
            return session_id in self._running

    def wait(self, session_id: str, timeout: float | None = None) -> None:
        """Until this process's worker for the session (if any) has finished."""
        with self._guard:
            done = self._running.get(session_id)
        if done is not None:
            done.wait(timeout)

    def remember_pin(self, session_id: str, pin: Pin) -> None:
        with self._guard:
            self._pins[session_id] = pin

    def pin(self, session_id: str) -> Pin | None:
        with self._guard:
            return self._pins.get(session_id)

    def forget_pin(self, session_id: str) -> None:
        with self._guard:
            self._pins.pop(session_id, None)

    def __repr__(self) -> str:
        return f"EarlyWork({len(self._running)} running)"


class EarlySteps(TokenSteps):
    """The approval step's rejection and the early token preparation (mixed into IssuanceFlow)."""

    early_work: EarlyWork

    # -- the rejection ------------------------------------------------------------------------------------
    def reject(self, session_id: str, clerk_id: str, reason: str) -> StepResult:
        """The clerk rejects at approval with a RejectReason value; the session ends once its early key is gone.

        The result's ``error`` is ApplicationRejected (the applicant's message).  ``finished`` is False only
        while this process's worker is still on the token (it removes its key and ends the session), or
        when the token was not there to remove the key (then the error says so; ``resume`` finishes it).
        """
        try:
            why = RejectReason(reason)
        except ValueError as err:
            raise InvalidInput(str(err), field="reason") from err
        rejected = ApplicationRejected(reason=why.value)
        with self.engine.locked(session_id) as state:
            state = self.expect(session_id, self.Step(APPROVAL))
            data = issuance_data(state)
            if "rejection" in data:
                return self.result(state, rejected)
            fields: dict[str, Any] = {"clerk_id": clerk_id, "reason": why.value}
            busy = self._worker_busy(state)
            # Kept in the session also when it ends at once: the applicant's screen reads why from it.
            data["rejection"] = {"clerk_id": clerk_id, "reason": why.value, "at": self.now().isoformat()}
            if not busy and not self._key_may_exist(state):
                return self.result(self.advance(state, self.Step(CANCELLED), data, EventKind.APPROVAL_REFUSED,
                                                **fields), rejected)
            state = self.engine.before_side_effect(state, data, EventKind.APPROVAL_REFUSED, **fields)
            if busy:
                return self.result(state, rejected)       # the worker removes its key and ends the session
        return self.finish_rejection(session_id)

    def finish_rejection(self, session_id: str) -> StepResult:
        """Remove the early key of a rejected session and end it (also ``resume`` after a power cut)."""
        state = self.expect(session_id, self.Step(APPROVAL))
        rejection = issuance_data(state)["rejection"]
        rejected = ApplicationRejected(reason=rejection["reason"])
        if self._worker_busy(state):
            return self.result(state, rejected)
        try:
            method = self._destroy_early_key(state) if self._key_may_exist(state) else "none"
        except KioskError as err:          # e.g. the token was pulled: resume finishes it once it is back
            log.warning("early key not removed yet: %s", err.key, extra={"session": session_id})
            return self.result(state, err)
        with self.engine.locked(session_id) as state:
            ended = self.advance(state, self.Step(CANCELLED), issuance_data(state), EventKind.REJECTION_COMPLETED,
                                 clerk_id=rejection["clerk_id"], reason=rejection["reason"], method=method)
        self.early_work.forget_pin(session_id)
        return self.result(ended, rejected)

    def _worker_busy(self, state: SessionState) -> bool:
        """This process's worker may still be on the session's token (it writes again before it is done)."""
        return self.early_work.running(state.id) and state.data.get("early", {}).get("status") not in (READY, FAILED)

    def _key_may_exist(self, state: SessionState) -> bool:
        """Whether early work may have left a key (or half a pair) under the session's key id."""
        data = issuance_data(state)
        return data.get("early", {}).get("status") in (GENERATING, READY, FAILED) and "key_id" in data

    def _destroy_early_key(self, state: SessionState) -> str:
        """Remove the session's early key: C_DestroyObject under the temporary PIN, else C_InitToken."""
        data = issuance_data(state)
        serial = self.check_token(data)
        temp = self.early_work.pin(state.id)
        if temp is not None:
            with self.services.token.session(serial, temp) as session:
                session.remove_key(bytes.fromhex(data["key_id"]))
            return "remove_key"
        # The temporary PIN died with the process: only the SO PIN can clear the token, by initialising it.
        stored = self.services.store.token_secret(serial)
        if stored is None:
            raise TokenSoPinUnknown(serial=serial)
        self.c_inittoken(self.services.token.present(), stored, stored, data["token"]["label"],
                         temporary_pin(self.policy.pin_policy))
        return "reinitialised"

    # -- the early preparation ------------------------------------------------------------------------------
    def prepare_early(self, session_id: str) -> StepResult:
        """Initialise the token and generate the key during the clerk's review (blocking: run it off the UI thread).

        Does nothing when this process already prepared or prepares the session's token, or when the
        clerk already decided.  A failure is journaled (``early.failed``) and returned as the result's
        error: ``prepare_token`` then takes the usual path.
        """
        present = self.services.token.present()
        if not self.early_work.start(session_id):
            return self.current(session_id)
        try:
            return self._prepare_early(session_id, present)
        finally:
            self.early_work.finish(session_id)

    def _start_early(self, session_id: str, present: TokenInfo) -> tuple[SoPin | None, SoPin, str] | None:
        """Commit the start (the SO PIN kept before C_InitToken); None when there is nothing to start.

        Only at approval: once approved, ``prepare_token`` prepares the token itself.
        """
        with self.engine.locked(session_id) as state:
            data = issuance_data(state)
            early = data.get("early", {})
            if state.step != APPROVAL or not self._early_allowed(state) or (
                    early.get("status") == READY and self.early_work.pin(session_id) is not None):
                return None
            stored = self.services.store.token_secret(present.serial)
            new_so = stored or SoPin.generate()
            if stored is None:        # before C_InitToken: never lose it
                self.services.store.save_token_secret(present.serial, new_so)
            data["early"] = {"status": INITIALISING, "token_serial": present.serial}
            self.engine.before_side_effect(state, data, EventKind.EARLY_STARTED, token_serial=present.serial,
                                           blank=not present.initialised)
            return stored, new_so, token_label(self.policy.token_label_prefix, Order.from_dict(data["order"]))

    def _prepare_early(self, session_id: str, present: TokenInfo) -> StepResult:
        serial = present.serial
        started = self._start_early(session_id, present)
        if started is None:
            state = self.engine.load(session_id)
            if "rejection" in state.data or state.step in FINAL_STEPS:
                return self._after_decision(session_id)
            return self.result(state)             # done already, or approved: prepare_token prepares
        stored, new_so, label = started
        temp = temporary_pin(self.policy.pin_policy)
        try:
            info = self.c_inittoken(present, stored, new_so, label, temp)
        except KioskError as err:
            return self._early_failed(session_id, err)
        self.early_work.remember_pin(session_id, temp)
        if info.serial != serial:       # a blank soft token got its serial only now
            self.services.store.save_token_secret(info.serial, new_so)
        with self.engine.locked(session_id) as state:
            go_on = self._early_allowed(state)
            if go_on:
                data = issuance_data(state)
                data["token"] = {"serial": info.serial, "model": info.model, "label": label}
                data["key_id"], data["idempotency_key"] = secrets.token_hex(16), uuid.uuid4().hex
                data["early"] = {"status": GENERATING, "token_serial": info.serial}
                # Durable before the key may exist: a retry, or the rejection, finds it by this id.
                self.engine.before_side_effect(state, data, EventKind.EARLY_TOKEN_READY, token_serial=info.serial,
                                               model=info.model)
                key_id, subject = bytes.fromhex(data["key_id"]), ascii_register(Order.from_dict(data["order"]))
        if not go_on:
            return self._after_decision(session_id)
        timing: dict[str, Any] = {}
        try:
            with self.engine.timed(timing, self.Step(APPROVAL)), \
                    self.services.token.session(info.serial, temp) as session:
                spki = session.generate_key_pair(key_id, label, self.policy.key_algorithm)
                csr = session.sign_csr(key_id, subject)
        except KioskError as err:
            return self._early_failed(session_id, err)
        with self.engine.locked(session_id) as state:
            go_on = self._early_allowed(state)
            if go_on:
                data = issuance_data(state)
                data["csr"] = base64.b64encode(csr).decode()
                data["public_key_sha256"] = hashlib.sha256(spki).hexdigest()
                data["early"] = {"status": READY, "token_serial": info.serial}
                data.setdefault("timings_ms", {})["early_keygen"] = timing["timings_ms"][APPROVAL]
                return self.result(self.record(state, data, EventKind.EARLY_KEY_READY,
                                               public_key_sha256=data["public_key_sha256"],
                                               algorithm=self.policy.key_algorithm.value))
        return self._after_decision(session_id)

    def _early_allowed(self, state: SessionState) -> bool:
        """Early work may go on: the session waits for the clerk, or was just approved, and is not rejected."""
        return state.step in (APPROVAL, TOKEN) and "rejection" not in state.data

    def _after_decision(self, session_id: str) -> StepResult:
        """The clerk rejected, or the session ended, while the worker was on the token: leave no key behind."""
        self.early_work.finish(session_id)          # this worker is done with the token
        state = self.engine.load(session_id)
        if "rejection" in state.data and state.step == APPROVAL:
            return self.finish_rejection(session_id)
        if state.step in FINAL_STEPS and self._key_may_exist(state):
            try:
                self._destroy_early_key(state)     # cancelled during the review
            except KioskError as err:
                log.warning("early key of a cancelled session not removed: %s", err.key, extra={"session": session_id})
        self.early_work.forget_pin(session_id)
        return self.result(state)

    def _early_failed(self, session_id: str, err: KioskError) -> StepResult:
        with self.engine.locked(session_id) as state:
            decided = not self._early_allowed(state)
            if not decided:
                data = issuance_data(state)
                data["early"] = {**data.get("early", {}), "status": FAILED, "failure": err.key}
                failed = self.record(state, data, EventKind.EARLY_FAILED, reason=err.key)
        if decided:
            return self._after_decision(session_id)
        self.early_work.forget_pin(session_id)
        return self.result(failed, err)

    def c_inittoken(self, present: TokenInfo, stored: SoPin | None, new_so: SoPin, label: str,
                    user_pin: Pin) -> TokenInfo:
        """C_InitToken setting ``new_so`` and ``user_pin``: a blank token takes any SO PIN; else the kept one
        (``stored``), then the factory's.  Neither: TokenSoPinUnknown (final: no retry into an SO lockout)."""
        serial = present.serial
        if not present.initialised:
            # Blank (new, or left so by a power cut inside C_InitToken): any SO PIN opens it.
            return self.services.token.initialise(serial, new_so, new_so, label, user_pin)
        candidates = [stored] if stored else []
        factory = self.policy.factory_so_pin
        if factory and factory not in candidates:
            candidates.append(factory)
        last: KioskError | None = None
        for current in candidates:
            try:
                return self.services.token.initialise(serial, current, new_so, label, user_pin)
            except TokenError as err:
                if err.data.get("reason") != "so_pin_incorrect":
                    raise
                last = err
        # Prepared by someone else; the clerk resets the token with its vendor tool.
        raise TokenSoPinUnknown(serial=serial) from last

    # -- after approval ---------------------------------------------------------------------------------------
    def take_early_token(self, session_id: str, new_pin: Pin) -> SessionState | None:
        """Give the early-prepared token the chosen PIN (C_SetPIN); None when the usual path must prepare it.

        Waits while this process's worker is still on the token (the applicant sees the progress).
        """
        self.early_work.wait(session_id)
        state = self.expect(session_id, self.Step(TOKEN))
        data = issuance_data(state)
        temp = self.early_work.pin(session_id)
        if data.get("early", {}).get("status") != READY or temp is None:
            return None           # not made, failed, or its temporary PIN died with a crash: prepare again
        serial = self.check_token(data)
        try:
            with self.services.token.session(serial, temp) as session:
                session.set_pin(temp, new_pin)
        except TokenError as err:
            log.warning("early token not taken over: %s", err.key, extra={"session": session_id})
            return None
        self.early_work.forget_pin(session_id)
        self.pins.remember(session_id, new_pin)
        with self.engine.locked(session_id) as state:
            return self.engine.before_side_effect(state, issuance_data(state), EventKind.TOKEN_PIN_CHANGED,
                                                  to=self.Step("keygen"), token_serial=serial)

    def early_notice(self, state: SessionState) -> str:
        """The message key the approval screen shows while the token is prepared or the rejection completes."""
        if "rejection" in state.data:
            return "approval.rejected_pending"
        status = state.data.get("early", {}).get("status")
        if status in (INITIALISING, GENERATING) and self.early_work.running(state.id):
            return "approval.key_preparing"
        if status == READY:
            return "approval.key_ready"
        return ""


def ascii_register(order: Order) -> str:
    try:
        return register.to_ascii(order.holder.register_number)
    except ValueError as err:
        raise InvalidInput(str(err), field="register_number") from err


def token_label(prefix: str, order: Order) -> str:
    return f"{prefix} {ascii_register(order)}"[:32]
