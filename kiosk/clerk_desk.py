"""The clerk's desk: what the clerk's screens show and do, each action under a valid sign-in.

The desk lists the day's sessions of every flow (flow, step, holder, time, state), resumes or
cancels a stuck one, reprints a finished one's receipt, approves or rejects an issuance at the
clerk's review and confirms a revocation.  Every action takes the :class:`SignedInClerk` this desk
signed in; a sign-in that expired, or was signed out, is refused with its reason (the clerk signs in
again) and nothing is done.  Each action carries the clerk's id into the session's journal or the
audit chain; sign-ins and sign-outs are audited (sign-ins and refusals by :class:`ClerkSignIn`).

Refusals reach the clerk in the clerk's own language (:func:`clerk_message`, domain ``clerk``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, unique
from typing import Any, Protocol

from kiosk.clerks import ClerkSignIn, SignedInClerk
from kiosk.engine import FINAL_STEPS, Engine, FlowKind, StepResult
from kiosk.errors import CannotCancel, InvalidPin, KioskError, PinBlocked, RequestRefused, WrongStep
from kiosk.flows import FlowAccess
from kiosk.flows.issuance_early import RejectReason
from kiosk.i18n import Translator
from kiosk.order import Order
from kiosk.pin import Pin
from kiosk.ports import SessionState
from kiosk.receipt_steps import ReceiptSteps

#: ``(kind, fields, session_id)`` appended to the kiosk's audit chain (fields as in ``kiosk.audit``).
Audit = Callable[[str, Mapping[str, Any], str | None], object]


class SessionLog(Protocol):
    """The store's read of recent sessions (``sync.store.KioskStore``)."""

    def sessions_since(self, since: dt.datetime) -> list[SessionState]:
        """Sessions created or moved on at or after ``since``, oldest first."""
        ...


# --- refusals to the clerk --------------------------------------------------------------------------------
class ClerkPinRefused(RequestRefused):
    """A wrong clerk id or PIN (the same answer for both, as :class:`ClerkSignIn` gives)."""

    key = "clerk.error.wrong_pin"
    recoverable = True


class ClerkLockedOut(RequestRefused):
    """Too many wrong PINs: signing in is refused until ``data['until']`` (ISO 8601)."""

    key = "clerk.error.locked_out"


class ClerkSignInExpired(RequestRefused):
    """The sign-in ended at ``data['expired_at']`` (ISO 8601): the clerk signs in again."""

    key = "clerk.error.sign_in_expired"


class ClerkNotSignedIn(RequestRefused):
    """The sign-in was signed out, or is not one this desk gave: the clerk signs in again."""

    key = "clerk.error.not_signed_in"


class NothingToResume(RequestRefused):
    """The session waits for the applicant at ``data['step']``: no call continues it without them."""

    key = "clerk.error.nothing_to_resume"


class NoReceipt(RequestRefused):
    """The session has no printed receipt to print again (``data['step']``)."""

    key = "clerk.error.no_receipt"


# --- the day's list -------------------------------------------------------------------------------------
@unique
class SessionStatus(Enum):
    """A session's state as the clerk sees it."""

    WAITING_FOR_CLERK = "waiting_for_clerk"          # at the clerk's review (approval)
    WITH_APPLICANT = "with_applicant"                # the applicant's next input is awaited
    RESUMABLE = "resumable"                          # a call continues it with no new input (after a restart)
    WAITING_FOR_CENTRAL = "waiting_for_central"      # queued for the central service
    RECEIPT_PENDING = "receipt_pending"              # finished, the receipt not confirmed printed
    REFUSED_BY_CENTRAL = "refused_by_central"        # a request kept offline was refused (SessionLine.refusal)
    DONE = "done"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class SessionLine:
    """One row of the day's list."""

    session_id: str
    flow: FlowKind
    step: str
    holder: str                  # display name, "" before the order or the ID card was read
    started_at: dt.datetime | None
    updated_at: dt.datetime | None
    status: SessionStatus
    language: str
    refusal: Mapping[str, Any] | None = None     # why the central refused a kept request (issuance data)
    token_serial: str = ""
    invoice: str = ""
    certificate_serial: str = ""                 # the certificate a renewal was for

    @property
    def can_resume(self) -> bool:
        return self.status is SessionStatus.RESUMABLE or self.status is SessionStatus.WAITING_FOR_CENTRAL

    @property
    def can_cancel(self) -> bool:
        """Offered while unfinished; the flow may still refuse (CannotCancel says why)."""
        return self.step not in FINAL_STEPS

    @property
    def can_reprint(self) -> bool:
        return self.step == "done" and self.flow in PRINTING_FLOWS


#: Why a clerk may reject an application (the applicant reads ``refusal.<value>`` in their language).
REJECT_REASONS = tuple(r.value for r in RejectReason)
PRINTING_FLOWS = frozenset({FlowKind.ISSUANCE, FlowKind.RENEWAL, FlowKind.REVOCATION, FlowKind.UNBLOCK})


def holder_name(data: Mapping[str, Any]) -> str:
    """Whom the session serves, as far as it knows: the ID card, the order, the token's certificate."""
    if "card" in data:
        return str(data["card"]["name"])
    if "order" in data:
        return Order.from_dict(data["order"]).holder.display_name
    if "holder" in data and data["holder"].get("name"):
        return str(data["holder"]["name"])
    if "certificate" in data and data["certificate"].get("holder"):
        return str(data["certificate"]["holder"])
    return ""


def _moment(text: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


# --- the desk -------------------------------------------------------------------------------------------
class ClerkDesk(FlowAccess):
    """The clerk's actions over the engine.  ``audit`` appends to the kiosk's audit chain."""

    def __init__(self, engine: Engine, sign_in: ClerkSignIn, log: SessionLog, audit: Audit) -> None:
        self.engine = engine
        self._sign_in = sign_in
        self._log = log
        self._audit = audit
        self._signed_in: dict[str, SignedInClerk] = {}

    def now(self) -> dt.datetime:
        return self.engine.clock()

    # -- signing in and out -----------------------------------------------------------------------------
    def sign_in(self, clerk_id: str, pin: Pin) -> SignedInClerk:
        """Sign a clerk in; ClerkPinRefused or ClerkLockedOut (with the moment it ends) otherwise."""
        try:
            clerk = self._sign_in.sign_in(clerk_id, pin, self.now())
        except InvalidPin as err:
            raise ClerkPinRefused(clerk_id=clerk_id) from err
        except PinBlocked as err:
            raise ClerkLockedOut(clerk_id=clerk_id, until=err.data["until"]) from err
        self._signed_in[clerk.clerk_id] = clerk
        return clerk

    def sign_out(self, clerk: SignedInClerk) -> None:
        if self._signed_in.pop(clerk.clerk_id, None) is not None:
            self._audit("clerk.signed_out", {"clerk_id": clerk.clerk_id}, None)

    def require(self, clerk: SignedInClerk) -> SignedInClerk:
        """The clerk's sign-in if it still holds: this desk gave it, the clerk is not disabled since, it has not
        expired.  Raises ClerkNotSignedIn or ClerkSignInExpired."""
        if self._signed_in.get(clerk.clerk_id) != clerk:
            raise ClerkNotSignedIn(clerk_id=clerk.clerk_id)
        if not self._sign_in.is_active(clerk.clerk_id):     # disabled since (python -m kiosk clerk disable)
            del self._signed_in[clerk.clerk_id]
            self._audit("clerk.signed_out", {"clerk_id": clerk.clerk_id, "reason": "disabled"}, None)
            raise ClerkNotSignedIn(clerk_id=clerk.clerk_id)
        if not clerk.is_valid(self.now()):
            del self._signed_in[clerk.clerk_id]
            self._audit("clerk.signed_out", {"clerk_id": clerk.clerk_id, "reason": "expired"}, None)
            raise ClerkSignInExpired(clerk_id=clerk.clerk_id, expired_at=clerk.expires_at.isoformat())
        return clerk

    # -- the day's list ---------------------------------------------------------------------------------
    def day(self, clerk: SignedInClerk) -> list[SessionLine]:
        """Today's sessions (in the kiosk's time zone) and every unfinished older one, newest first."""
        self.require(clerk)
        local = self.now().astimezone(self.engine.policy.timezone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        states = {s.id: s for s in self.engine.store.unfinished()}
        states.update((s.id, s) for s in self._log.sessions_since(midnight))
        lines = [self.line(s) for s in states.values()]
        return sorted(lines, key=lambda ln: (ln.started_at is not None, ln.started_at or dt.datetime.min),
                      reverse=True)

    def line(self, state: SessionState) -> SessionLine:
        data = state.data
        return SessionLine(state.id, FlowKind(state.flow), state.step, holder_name(data),
                           _moment(state.created_at), _moment(state.updated_at), self._status(state), state.language,
                           refusal=data.get("refusal"), token_serial=data.get("token", {}).get("serial", ""),
                           invoice=data.get("order", {}).get("invoice", ""),
                           certificate_serial=data.get("certificate", {}).get("serial", ""))

    def refused(self) -> list[SessionLine]:
        """Sessions whose kept request the central refused and whose token has not been back since (oldest first);
        for ``python -m sync status``, which needs no sign-in."""
        return [self.line(s) for s in self.engine.store.unfinished() if s.data.get("refusal")]

    def _status(self, state: SessionState) -> SessionStatus:
        if state.data.get("refusal"):
            return SessionStatus.REFUSED_BY_CENTRAL
        if state.step == "cancelled":
            return SessionStatus.CANCELLED
        if state.step == "done":
            return SessionStatus.RECEIPT_PENDING if state.data.get("receipt_pending") else SessionStatus.DONE
        if state.step == "approval":
            return SessionStatus.WAITING_FOR_CLERK
        flow = self.engine.flow_of(state)
        if flow.queued(state) is not None:
            return SessionStatus.WAITING_FOR_CENTRAL
        if flow.resume(state) is not None:
            return SessionStatus.RESUMABLE
        return SessionStatus.WITH_APPLICANT

    def session(self, clerk: SignedInClerk, session_id: str) -> StepResult:
        """One session's current step and view (the checklist, the chosen certificate)."""
        self.require(clerk)
        return self.engine.current(session_id)

    # -- a stuck session --------------------------------------------------------------------------------
    def resume(self, clerk: SignedInClerk, session_id: str) -> StepResult:
        """Continue a session whose step needs no new input; NothingToResume when it waits for the applicant."""
        self.require(clerk)
        state = self.engine.load(session_id)
        call = self.engine.resume_step(session_id)
        if call is None:
            raise NothingToResume(session_id=session_id, step=state.step, flow=state.flow)
        self._audit("clerk.resumed", {"clerk_id": clerk.clerk_id, "flow": state.flow, "step": state.step}, session_id)
        return call()

    def cancel(self, clerk: SignedInClerk, session_id: str) -> StepResult:
        """End a session; CannotCancel (with ``why``) when its step no longer allows it."""
        self.require(clerk)
        state = self.engine.load(session_id)
        try:
            result = self.engine.cancel(session_id, "clerk")
        except CannotCancel as err:
            self._audit("clerk.cancel_refused", {"clerk_id": clerk.clerk_id, "flow": state.flow, "step": state.step,
                                                 "why": err.data.get("why")}, session_id)
            raise
        self._audit("clerk.cancelled", {"clerk_id": clerk.clerk_id, "flow": state.flow, "step": state.step},
                    session_id)
        return result

    def reprint(self, clerk: SignedInClerk, session_id: str) -> bytes:
        """Print a finished session's receipt again (marked as a reprint); the rendered PNG."""
        self.require(clerk)
        state = self.engine.load(session_id)
        flow = self.engine.flow_of(state)
        if state.step != "done" or not isinstance(flow, ReceiptSteps):
            raise NoReceipt(session_id=session_id, step=state.step, flow=state.flow)
        png = flow.reprint(session_id)
        self._audit("clerk.reprinted", {"clerk_id": clerk.clerk_id, "flow": state.flow}, session_id)
        return png

    # -- the clerk's review -----------------------------------------------------------------------------
    def approve(self, clerk: SignedInClerk, session_id: str, documents: Iterable[str], by_proxy: bool) -> StepResult:
        """The documents are all there: the issuance goes on (ApprovalIncomplete names what is missing)."""
        self.require(clerk)
        return self.issuance.approve(session_id, clerk.clerk_id, list(documents), by_proxy)

    def reject(self, clerk: SignedInClerk, session_id: str, reason: str) -> StepResult:
        """Reject the application with a :data:`REJECT_REASONS` value; the result's error is what the
        applicant reads (ApplicationRejected).  Not ``finished`` while the early key is still being removed."""
        self.require(clerk)
        return self.issuance.reject(session_id, clerk.clerk_id, reason)

    def revocation_reason(self, clerk: SignedInClerk, session_id: str) -> str:
        """The reason the holder chose for the revocation the clerk is to confirm ("" before the choice)."""
        self.require(clerk)
        return str(self.engine.load(session_id).data.get("reason", ""))

    def confirm_revocation(self, clerk: SignedInClerk, session_id: str) -> StepResult:
        """The clerk confirms the holder's revocation; it is committed and sent."""
        self.require(clerk)
        return self.revocation.confirm(session_id, clerk.clerk_id)


# --- messages -------------------------------------------------------------------------------------------
def clerk_message(t: Translator, err: KioskError, timezone: dt.tzinfo = dt.UTC) -> str:
    """The refusal in the clerk's language, with moments and steps spelled out."""
    data = dict(err.data)
    for field in ("until", "expired_at"):
        if isinstance(data.get(field), str):
            data[f"{field}_text"] = t.datetime(dt.datetime.fromisoformat(data[field]).astimezone(timezone))
    if isinstance(data.get("step"), str):
        data["step_text"] = t(f"step.{data['step']}") if t.has(f"step.{data['step']}") else data["step"]
    if isinstance(err, CannotCancel):
        return t("clerk.error.cannot_cancel", why_text=t(f"cancel.why.{data.get('why')}"), **data)
    if isinstance(err, WrongStep):
        return t("clerk.error.wrong_step")
    if err.key.startswith("clerk."):
        return t(err.key, **data)
    return t.error(err)


def refusal_text(t: Translator, line: SessionLine, timezone: dt.tzinfo = dt.UTC) -> str:
    """Why the central refused the session's kept request, and what becomes of the token's unused key."""
    refusal = dict(line.refusal or {})
    if refusal.get("reason") == "enrollment_conflict":
        at = refusal.get("issued_at")
        issued_on = t.date(dt.datetime.fromisoformat(at).astimezone(timezone).date()) if at else "-"
        why = t("clerk.refused.enrollment_conflict", invoice=line.invoice, issued_by=refusal.get("issued_by") or "-",
                issued_on=issued_on)
    else:
        code = str(refusal.get("refusal") or refusal.get("reason", ""))     # order_not_payable's own reason first
        amounts = {k: t.money(v) for k, v in refusal.items() if k in ("total", "paid", "due") and isinstance(v, int)}
        reason_text = t(f"refusal.{code}", **{**refusal, **amounts}) if t.has(f"refusal.{code}") else code
        if line.flow is FlowKind.RENEWAL:       # no order: the certificate it was to renew
            return t("clerk.refused.renewal", serial=line.certificate_serial, reason_text=reason_text)
        why = t("clerk.refused.request", invoice=line.invoice, reason_text=reason_text)
    if refusal.get("key_removed_at"):
        return f"{why} {t('clerk.refused.key_removed', token_serial=line.token_serial)}"
    if line.step == "refused":
        return f"{why} {t('clerk.refused.key_waiting', token_serial=line.token_serial)}"
    return why          # the clerk ended it before the token came back: the key is still on it


def status_text(t: Translator, status: SessionStatus) -> str:
    return t(f"clerk.status.{status.value}")


def flow_text(t: Translator, flow: FlowKind) -> str:
    return t(f"flow.{flow.value}")

