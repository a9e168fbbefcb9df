"""The Kivy app: a status bar over a ScreenManager, one top-level error handler, the idle timeout.

Screens come from :data:`SCREEN_MODULES` (and ``kiosk.screens.clerk`` when that module exists): each
module's ``SCREENS`` are instantiated with the app and added to the manager under their
``screen_name``; its ``ROUTES`` map ``(flow, step)`` values to a screen name or to a function of the
step result giving one (see :mod:`kiosk.screens.base` for how a screen calls the worker and
navigates).  The clerk's module may also be absent: :meth:`KioskApp.has_screen` tells.

Errors: a :class:`~kiosk.errors.KioskError` from a call is shown by the ``error`` screen in the
person's words (``Translator.error``) with what to do next; anything else raised on the worker or
in the Kivy loop is logged once with its traceback (journald) and shown as the same calm screen
with ``error.unexpected`` — never a traceback on the screen.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kivy.app import App
from kivy.base import ExceptionHandler, ExceptionManager
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kiosk.engine import FlowKind, StepResult
from kiosk.errors import CentralUnavailable, DeviceNotReady, KioskError
from kiosk.i18n import DEFAULT_LANGUAGE, Translator
from kiosk.ports import PrinterStatus
from kiosk.screens.base import KioskScreen, RouteTarget
from kiosk.screens.theme import Theme, register_fonts
from kiosk.screens.widgets import StatusBar
from kiosk.screens.worker import Worker

log = logging.getLogger("tamga.screens")

#: A flow module's other ways on after an error at a step: (message key, action) buttons.
Choices = Callable[["KioskApp", StepResult, KioskError], tuple[tuple[str, Callable[[], None]], ...]]

SCREEN_MODULES = ("kiosk.screens.common", "kiosk.screens.identity", "kiosk.screens.token",
                  "kiosk.screens.issuance", "kiosk.screens.agreement", "kiosk.screens.renewal",
                  "kiosk.screens.revocation", "kiosk.screens.unblock", "kiosk.screens.check")
CLERK_MODULE = "kiosk.screens.clerk"
#: Seconds a step takes before this kiosk measured it (a real eToken: RSA-2048 in 10-60 s).
DEFAULT_ESTIMATES_S = {"keygen": 30.0, "enrollment": 5.0, "install": 3.0, "receipt": 4.0, "send": 5.0,
                       "revoke": 3.0, "pending": 5.0}


@dataclass(frozen=True)
class UiOptions:
    """The ``[ui]`` settings the app needs."""

    idle_timeout_s: float = 60.0
    large_text: bool = False
    status_interval_s: float = 5.0
    languages: tuple[str, ...] = ("mn", "kk", "ky", "ru", "en")
    language: str = DEFAULT_LANGUAGE
    currency: str = "MNT"
    retention_days: int = 30


class _CalmHandler(ExceptionHandler):  # type: ignore[misc]
    def __init__(self, app: KioskApp) -> None:
        super().__init__()
        self.app = app

    def handle_exception(self, inst: BaseException) -> Any:
        if isinstance(inst, KeyboardInterrupt | SystemExit):
            return ExceptionManager.RAISE
        self.app.unexpected(inst)
        return ExceptionManager.PASS


class KioskApp(App):  # type: ignore[misc]
    """The touchscreen app over a :class:`kiosk.shell.app.Kiosk` (anything with its flows and store)."""

    title = "Tamga"

    def __init__(self, kiosk: Any, options: UiOptions | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.kiosk = kiosk
        self.options = options or UiOptions()
        self.theme = Theme(large_text=self.options.large_text)
        self.language = self.options.language
        self.session: StepResult | None = None
        self.routes: dict[tuple[str, str], RouteTarget] = {}
        self.choices: dict[tuple[str, str], Choices] = {}
        self.estimates_s = dict(DEFAULT_ESTIMATES_S)
        self.central_online = True
        self.transitions_ms: list[float] = []
        self.first_frame_at: float | None = None
        self._translators: dict[str, Translator] = {}
        self._last_input = time.monotonic()
        self._token_was_present: bool | None = None
        self._on_first_frame: list[Callable[[], object]] = []
        self.worker = Worker(self.unexpected)
        self.background = Worker(self.unexpected)     # work that overlaps a person's wait (early key generation)
        self.manager = ScreenManager(transition=NoTransition())
        self.status = StatusBar(self.theme)

    # -- building -------------------------------------------------------------------------------------------
    def build(self) -> BoxLayout:
        register_fonts()
        Window.clearcolor = self.theme.background
        ExceptionManager.add_handler(_CalmHandler(self))
        modules = list(SCREEN_MODULES)
        try:
            importlib.import_module(CLERK_MODULE)
            modules.append(CLERK_MODULE)
        except ModuleNotFoundError as err:
            if err.name != CLERK_MODULE:
                raise
        for name in modules:
            module = importlib.import_module(name)
            for cls in getattr(module, "SCREENS", ()):
                self.manager.add_widget(cls(self))
            self.routes.update(getattr(module, "ROUTES", {}))
            self.choices.update(getattr(module, "CHOICES", {}))
        root = BoxLayout(orientation="vertical")
        root.add_widget(self.status)
        root.add_widget(self.manager)
        Window.bind(on_touch_down=self._input, on_key_down=self._input)
        Window.bind(on_flip=self._flipped)
        Clock.schedule_interval(self._check_idle, 1.0)
        Clock.schedule_interval(lambda _dt: self.refresh_status(), self.options.status_interval_s)
        self.show("welcome")
        self.refresh_status()
        return root

    def when_first_frame(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the first frame is on the screen (systemd READY=1, the cold-start bench)."""
        if self.first_frame_at is not None:
            callback()
        else:
            self._on_first_frame.append(callback)

    def _flipped(self, *_: Any) -> None:
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
            for callback in self._on_first_frame:
                callback()
            self._on_first_frame.clear()

    def on_stop(self) -> None:
        self.worker.stop()
        self.background.stop()

    # -- language -------------------------------------------------------------------------------------------
    @property
    def t(self) -> Translator:
        if self.language not in self._translators:
            self._translators[self.language] = Translator(self.language, self.options.currency)
        return self._translators[self.language]

    def set_language(self, language: str) -> None:
        self.language = language
        self.refresh_status()

    # -- navigation -----------------------------------------------------------------------------------------
    def has_screen(self, name: str) -> bool:
        return bool(self.manager.has_screen(name))

    def screen(self, name: str) -> KioskScreen:
        screen: KioskScreen = self.manager.get_screen(name)
        return screen

    def show(self, name: str, **params: Any) -> None:
        """Show screen ``name``, rendered afresh with ``params``."""
        started = time.perf_counter()
        leaving = self.manager.current_screen
        if isinstance(leaving, KioskScreen) and leaving.name != name:
            leaving.forget()
        screen = self.screen(name)
        screen.show_with(params)
        self.manager.current = name
        self.transitions_ms.append((time.perf_counter() - started) * 1000)
        log.debug("screen %s", name)

    def route(self, result: StepResult) -> str:
        """The screen of a step result: what the flow's module routes ``(flow, step)`` to; else a step
        that needs no input shows progress (and continues by itself); done and cancelled end the visit."""
        step = result.step.value
        target = self.routes.get((result.flow.value, step))
        if target is not None:
            return target if isinstance(target, str) else target(result)
        if step == "cancelled":
            return "welcome"
        if step == "done":
            return "done"
        if self.kiosk.engine.resume_step(result.session_id) is not None:
            return "progress"
        raise LookupError(f"no screen for {result.flow.value}.{step}")

    def show_result(self, result: StepResult) -> None:
        """Show what a step returned.  An outcome the step moved on with (``result.error``) is told on the
        step's screen when the visit is over (a receipt left unprinted), else on the error screen, whose
        "try again" shows the step again."""
        self.session = result
        self.language = result.language
        if isinstance(result.error, CentralUnavailable):
            self.central_online = False
        if result.error is not None and not result.finished:
            again = dataclasses.replace(result, error=None)
            self.show_error(result.error, retry=lambda: self.show_result(again))
            return
        self.show(self.route(result), result=result)

    def show_error(self, err: KioskError, retry: Callable[[], None] | None = None,
                   choices: tuple[tuple[str, Callable[[], None]], ...] = ()) -> None:
        """The calm error screen: the message in the person's language and what to do next.

        ``retry`` is offered when the error is recoverable; ``choices`` are (message key, action)
        buttons for other ways on (finish later, ask the clerk).
        """
        if isinstance(err, CentralUnavailable):
            self.central_online = False
        self.show("error", error=err, retry=retry if err.recoverable else None, choices=choices)

    def choices_after(self, result: StepResult, err: KioskError) -> tuple[tuple[str, Callable[[], None]], ...]:
        """Other ways on after ``err`` at the step of ``result`` that its flow's module offers (``CHOICES``)."""
        offer = self.choices.get((result.flow.value, result.step.value))
        return offer(self, result, err) if offer is not None else ()

    def unexpected(self, exc: BaseException) -> None:
        """The top-level handler: one log line (with the traceback, for the technician), a calm screen."""
        log.error("unexpected error in the touchscreen app: %s", type(exc).__name__, exc_info=exc)
        try:
            self.show("error", error=KioskError(), retry=None)
        except Exception:
            log.exception("the error screen could not be shown")

    def go_home(self) -> None:
        """Back to the welcome screen; the session stays in the store, resumable by the clerk."""
        self.forget_session()
        self.language = self.options.language
        self.show("welcome")

    def forget_session(self) -> None:
        """Drop the session's personal data from memory: the step result and every screen's widgets."""
        self.session = None
        for screen in self.manager.screens:
            if isinstance(screen, KioskScreen) and screen is not self.manager.current_screen:
                screen.forget()

    # -- idle timeout -----------------------------------------------------------------------------------------
    def _input(self, *_: Any) -> bool:
        self._last_input = time.monotonic()
        return False

    def idle_for(self) -> float:
        return time.monotonic() - self._last_input

    def _check_idle(self, _dt: float) -> None:
        current = self.manager.current_screen
        if current is None or current.name == "welcome" or getattr(current, "busy", False):
            self._last_input = time.monotonic()      # waiting for the machine is not being idle
            return
        if self.idle_for() >= self.options.idle_timeout_s:
            log.info("idle timeout: back to the welcome screen", extra={"screen": current.name})
            self.go_home()

    # -- status bar -----------------------------------------------------------------------------------------
    def refresh_status(self) -> None:
        """Ask the devices on the worker (when it is free), show the answers in the status bar."""
        if self.worker.busy:
            return
        self.worker.submit(self._probe, self._show_status, lambda _err: None, label="status")

    def _probe(self) -> dict[str, Any]:
        k = self.kiosk
        k.refresh_calendar()          # the central's calendar, if the sync daemon kept a new one
        found: dict[str, Any] = {}
        try:
            k.idcard.wait_for_card(0)
            found["reader"] = "card"
        except DeviceNotReady as err:
            found["reader"] = "empty" if err.data.get("device") == "card" else "missing"
        except KioskError:
            found["reader"] = "missing"
        try:
            k.token.present()
            found["token"] = "present"
        except KioskError:
            found["token"] = "absent"
        try:
            status = k.printer.status()
        except KioskError:
            status = PrinterStatus.OFFLINE
        found["printer"] = status.value
        sync = k.store.sync_status()
        found["queued"] = int(sync["queued"])
        if sync.get("last_error_at") and (sync.get("last_success_at") or "") < sync["last_error_at"]:
            self.central_online = False
        return found

    def _show_status(self, found: dict[str, Any]) -> None:
        t = self.t
        self.status.show({
            "reader": t(f"screens.status.reader.{found['reader']}"),
            "token": t(f"screens.status.token.{found['token']}"),
            "printer": t(f"screens.status.printer.{found['printer']}"),
            "central": t("screens.status.central.online" if self.central_online else "screens.status.central.offline"),
            "queue": t("screens.status.queue", count=found["queued"]),
        })
        present = found["token"] == "present"
        inserted, self._token_was_present = present and not self._token_was_present, present
        if inserted:
            self.token_inserted()

    # -- an eToken brought back ------------------------------------------------------------------------------
    def token_inserted(self) -> None:
        """An eToken put in while the welcome screen shows: what an issuance still owes it — a certificate
        kept for it here or at another kiosk of the office, or a key the central refused to certify — is
        taken up at once (:meth:`kiosk.flows.issuance.IssuanceFlow.take_up_inserted_token`).  Called from
        the status bar's answer, while its worker job still counts as running: queued behind it."""
        if self._at_welcome():
            self.worker.submit(self._owed_to_token, self._take_up, self._nothing_owed, label="token_inserted")

    def _at_welcome(self) -> bool:
        current = self.manager.current_screen
        return self.session is None and current is not None and current.name == "welcome"

    def _owed_to_token(self) -> StepResult | None:
        return self.kiosk.engine.flow(FlowKind.ISSUANCE).take_up_inserted_token(self.language)

    def _take_up(self, owed: StepResult | None) -> None:
        if owed is not None and self._at_welcome():
            log.info("the inserted eToken is owed issuance.%s", owed.step.value)
            self.show_result(owed)

    def _nothing_owed(self, err: KioskError) -> None:
        log.info("nothing looked up for the inserted eToken: %s", type(err).__name__)

    def central_answered(self) -> None:
        """A call to the central succeeded: it is online."""
        self.central_online = True
