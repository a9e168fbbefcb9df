"""The flow engine: sessions of every flow, dispatch by (flow, step), resume, cancel, durable commits.

Like Home Assistant's ``FlowManager`` apart from each ``FlowHandler``, the :class:`Engine` knows
no particular flow: it is handed the flow classes (``kiosk.flows.ALL_FLOWS``), creates and loads
sessions, checks that a call belongs to the session's step, persists every transition (session
row, journal row, outbox event in one transaction), and resumes unfinished sessions after a restart.
Each :class:`Flow` (one file under ``kiosk/flows/``) holds only its steps.

The rule for side effects outside the kiosk (a token initialised, a key generated, a certificate
requested, paper printed) lives here, in :meth:`Engine.before_side_effect`: what a retry needs to
find the effect again (the SO PIN, the key id, the idempotency key, the receipt) is committed
durably *before* the effect starts, so a power cut in the middle leaves enough to resume cleanly.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Any, ClassVar

from kiosk.errors import CannotCancel, KioskError, SessionNotFound, WrongStep
from kiosk.events import EventKind
from kiosk.pin import Pin, PinPolicy, SoPin
from kiosk.ports import (
    AgreementSigner,
    CentralPort,
    CertificateReader,
    IdCardPort,
    KeyAlgorithm,
    PrinterPort,
    SessionState,
    SessionStore,
    TokenPort,
)
from kiosk.printing import ReceiptDesk
from kiosk.views import StepView
from kiosk.workdays import RENEWAL_NOTICE_DAYS, WorkCalendar, default_calendar

log = logging.getLogger("tamga.engine")

SCHEMA_VERSION = 1         # of the session data every flow persists (``data['schema']``)
FINAL_STEPS = ("done", "cancelled")
#: In a finished session's data: it still has a call for the central (``Flow.queued``), e.g. a holder agreement
#: signed while the central was away.  The sync daemon still runs it; the retention purge waits for it.
AWAITS_CENTRAL = "awaits_central"


@unique
class FlowKind(Enum):
    ISSUANCE = "issuance"
    RENEWAL = "renewal"
    REVOCATION = "revocation"
    UNBLOCK = "unblock"
    CHECK = "check"


@dataclass(frozen=True)
class KioskPolicy:
    """Settings of the flows that come from the kiosk configuration (secrets as secret types)."""

    office: str = "Tamga"
    country: str = "MN"
    currency: str = "MNT"
    key_algorithm: KeyAlgorithm = KeyAlgorithm.RSA2048
    factory_so_pin: SoPin | None = None
    token_label_prefix: str = "TAMGA"
    qr_template: str = "TAMGA:CERT:{serial}"
    timezone: dt.tzinfo = dt.UTC
    pin_policy: PinPolicy = field(default_factory=PinPolicy)
    calendar: WorkCalendar = field(default_factory=lambda: default_calendar("MN"))
    renewal_notice_days: int = RENEWAL_NOTICE_DAYS
    holder_agreement: bool = False        # the holder signs the agreement on the token after install


@dataclass(frozen=True)
class Services:
    """The ports every flow works through."""

    store: SessionStore
    central: CentralPort
    idcard: IdCardPort
    token: TokenPort
    printer: PrinterPort
    certificates: CertificateReader
    agreement: AgreementSigner | None = None     # signs the holder agreement on the token (kiosk.agreement)


@dataclass(frozen=True)
class StepResult:
    """What the screen shows next: the session's flow and step, its view, and an outcome to tell."""

    session_id: str
    flow: FlowKind
    step: Enum
    language: str
    view: StepView
    error: KioskError | None = None    # an outcome the step moved on with (paper out, a refusal)

    @property
    def finished(self) -> bool:
        return self.step.value in FINAL_STEPS


class PinCache:
    """eToken user PINs the token accepted in this process, per session; never persisted."""

    def __init__(self) -> None:
        self._pins: dict[str, Pin] = {}

    def remember(self, session_id: str, pin: Pin) -> None:
        self._pins[session_id] = pin

    def get(self, session_id: str) -> Pin | None:
        return self._pins.get(session_id)

    def forget(self, session_id: str) -> None:
        self._pins.pop(session_id, None)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._pins

    def __repr__(self) -> str:
        return f"PinCache({len(self._pins)} sessions)"


class Flow:
    """One flow's steps.  Subclasses set ``kind`` and ``Step`` (an Enum with DONE and CANCELLED)."""

    kind: ClassVar[FlowKind]
    Step: ClassVar[type[Enum]]
    first_step: ClassVar[Enum]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- what subclasses may override -------------------------------------------------------------------
    def view(self, state: SessionState) -> StepView:
        """What the session's current step shows."""
        return StepView(timings_ms=dict(state.data.get("timings_ms", {})))

    def resume(self, state: SessionState) -> Callable[[], StepResult] | None:
        """The call that continues a session whose step needs no new input, or None."""
        return None

    def queued(self, state: SessionState) -> Callable[[], StepResult] | None:
        """The call that sends what the session queued for the central, needing no person and no device
        (the sync daemon runs it), or None."""
        return None

    def before_cancel(self, state: SessionState) -> dict[str, Any]:
        """Check that the session may be cancelled at its step (raise CannotCancel), undo what must be
        undone outside the kiosk; return fields for the cancel event."""
        return {}

    def on_finish(self, state: SessionState) -> None:
        """Drop what the process holds for a finished session."""

    # -- for the steps ----------------------------------------------------------------------------------
    @property
    def services(self) -> Services:
        return self.engine.services

    @property
    def policy(self) -> KioskPolicy:
        return self.engine.policy

    @property
    def pins(self) -> PinCache:
        return self.engine.pins

    def now(self) -> dt.datetime:
        return self.engine.clock()

    def begin(self, language: str, **data: Any) -> StepResult:
        return self.engine.begin(self.kind, language, **data)

    def current(self, session_id: str) -> StepResult:
        return self.engine.current(session_id)

    def cancel(self, session_id: str, reason: str) -> StepResult:
        return self.engine.cancel(session_id, reason)

    def unfinished(self) -> list[StepResult]:
        return [r for r in self.engine.unfinished() if r.flow is self.kind]

    def resume_step(self, session_id: str) -> Callable[[], StepResult] | None:
        return self.engine.resume_step(session_id)

    def expect(self, session_id: str, step: Enum) -> SessionState:
        return self.engine.expect(session_id, self.kind, step)

    def advance(self, state: SessionState, to: Enum, data: Mapping[str, Any], event: EventKind,
                **fields: Any) -> SessionState:
        return self.engine.advance(state, to, data, event, **fields)

    def record(self, state: SessionState, data: Mapping[str, Any], event: EventKind, **fields: Any) -> SessionState:
        return self.engine.record(state, data, event, **fields)

    def result(self, state: SessionState, error: KioskError | None = None) -> StepResult:
        return self.engine.result(state, error)

    def step_of(self, state: SessionState) -> Enum:
        return self.Step(state.step)


class Engine:
    """Sessions of every flow over one store.

    One caller drives a session's steps.  Where a flow lets a second thread work on the same session
    (issuance's early key generation while the clerk reviews), every write of either thread is a
    short load-modify-write inside :meth:`locked`, so no update is lost; device I/O stays outside it.
    """

    def __init__(self, services: Services, policy: KioskPolicy, flows: tuple[type[Flow], ...],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.services = services
        self.policy = policy
        self.clock = clock
        self.pins = PinCache()
        self.receipts = ReceiptDesk(services.store, services.printer)
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._closers: list[Callable[[], None]] = [self.receipts.close]
        self.flows: dict[FlowKind, Flow] = {}
        for cls in flows:
            for final in FINAL_STEPS:
                cls.Step(final)        # every flow ends in done or cancelled
            self.flows[cls.kind] = cls(self)

    @property
    def store(self) -> SessionStore:
        return self.services.store

    def flow(self, kind: FlowKind) -> Flow:
        return self.flows[kind]

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in self._closers:
            closer()

    # -- sessions -----------------------------------------------------------------------------------------
    def begin(self, kind: FlowKind, language: str, **data: Any) -> StepResult:
        flow = self.flows[kind]
        state = self.store.create(uuid.uuid4().hex, kind.value, flow.first_step.value, language,
                                  {"schema": SCHEMA_VERSION, "timings_ms": {}, **data})
        log.info("session started", extra={"session": state.id, "flow": kind.value})
        return self.result(state)

    def load(self, session_id: str) -> SessionState:
        try:
            return self.store.load(session_id)
        except KeyError:
            raise SessionNotFound(session_id=session_id) from None

    def flow_of(self, state: SessionState) -> Flow:
        return self.flows[FlowKind(state.flow)]

    def current(self, session_id: str) -> StepResult:
        return self.result(self.load(session_id))

    def unfinished(self) -> list[StepResult]:
        """Sessions of every flow a restarted kiosk must resume (oldest first)."""
        return [self.result(s) for s in self.store.unfinished()]

    def resume_step(self, session_id: str) -> Callable[[], StepResult] | None:
        state = self.load(session_id)
        return self.flow_of(state).resume(state)

    def queued_calls(self) -> list[tuple[str, Callable[[], StepResult]]]:
        """(session id, call) for every session waiting only for the central: the unfinished ones (oldest
        first), then the finished ones that still await it (:data:`AWAITS_CENTRAL`)."""
        calls = []
        for state in [*self.store.unfinished(), *self.store.awaiting_central()]:
            call = self.flow_of(state).queued(state)
            if call is not None:
                calls.append((state.id, call))
        return calls

    def cancel(self, session_id: str, reason: str) -> StepResult:
        """End a session; the flow decides whether its step allows it (CannotCancel) and undoes what it must."""
        state = self.load(session_id)
        if state.step in FINAL_STEPS:
            return self.result(state)
        flow = self.flow_of(state)
        fields = flow.before_cancel(state)
        return self.result(self.advance(state, flow.Step("cancelled"), dict(state.data), EventKind.CANCELLED,
                                        reason=reason, **fields))

    # -- for flows ----------------------------------------------------------------------------------------
    @contextmanager
    def locked(self, session_id: str) -> Iterator[SessionState]:
        """Hold the session's lock and yield its state loaded now: write it inside, never wait on a device.

        Re-entrant in one thread.  Writes made inside see every earlier write of any thread.
        """
        with self._locks_guard:
            lock = self._locks.setdefault(session_id, threading.RLock())
        with lock:
            yield self.load(session_id)

    def expect(self, session_id: str, kind: FlowKind, step: Enum) -> SessionState:
        state = self.load(session_id)
        if state.flow != kind.value or state.step != step.value:
            raise WrongStep(session_id=session_id, expected=f"{kind.value}.{step.value}",
                            actual=f"{state.flow}.{state.step}")
        return state

    def advance(self, state: SessionState, to: Enum, data: Mapping[str, Any], event: EventKind,
                durable: bool = False, **fields: Any) -> SessionState:
        final = to.value in FINAL_STEPS
        data = self._mark_queued(state, to.value, data) if final else data
        new = self.store.transition(state, to.value, dict(data),
                                    {"kind": event.value, "flow": state.flow, "final": final, **fields}, durable)
        log.info("step %s.%s -> %s", state.flow, state.step, to.value,
                 extra={"session": state.id, "event": event.value, "version": new.version,
                        "step_ms": data.get("timings_ms", {}).get(state.step)})
        if final:
            self.pins.forget(state.id)
            self.flow_of(state).on_finish(new)
        return new

    def record(self, state: SessionState, data: Mapping[str, Any], event: EventKind, **fields: Any) -> SessionState:
        """Journal an attempt (a refusal, a wrong PIN, a finished session's queued call) without moving its step."""
        if state.step in FINAL_STEPS:
            data = self._mark_queued(state, state.step, data)
        return self.store.transition(state, state.step, dict(data), {"kind": event.value, "flow": state.flow, **fields})

    def _mark_queued(self, state: SessionState, step: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` of a session finished at ``step``, with :data:`AWAITS_CENTRAL` set while its flow still
        has a call queued for the central."""
        marked = {k: v for k, v in data.items() if k != AWAITS_CENTRAL}
        probe = SessionState(id=state.id, flow=state.flow, step=step, version=state.version,
                             language=state.language, data=marked)
        if self.flow_of(state).queued(probe) is not None:
            marked[AWAITS_CENTRAL] = True
        return marked

    def before_side_effect(self, state: SessionState, data: Mapping[str, Any], event: EventKind,
                           to: Enum | None = None, **fields: Any) -> SessionState:
        """Commit durably (fsync) what a retry needs to find a side effect outside the kiosk, before it starts."""
        target = to if to is not None else self.flow_of(state).Step(state.step)
        return self.advance(state, target, data, event, durable=True, **fields)

    def result(self, state: SessionState, error: KioskError | None = None) -> StepResult:
        flow = self.flow_of(state)
        return StepResult(state.id, flow.kind, flow.step_of(state), state.language, flow.view(state), error)

    @staticmethod
    @contextmanager
    def timed(data: Any, step: Enum) -> Iterator[None]:
        """Add the block's wall-clock time to ``data['timings_ms'][step]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            timings = data.setdefault("timings_ms", {})
            timings[step.value] = round(timings.get(step.value, 0.0) + (time.perf_counter() - start) * 1000, 3)


def cannot_cancel(state: SessionState, why: str) -> CannotCancel:
    return CannotCancel(session_id=state.id, step=state.step, why=why)

