"""Screens every flow shares: welcome (language, larger text, the five services), consent, progress,
the calm error screen and done."""

from __future__ import annotations

import logging
from collections.abc import Hashable
from functools import partial
from typing import Any

from kivy.clock import Clock
from kivy.uix.gridlayout import GridLayout

from kiosk.engine import FlowKind, StepResult
from kiosk.errors import ApplicationRejected, CentralUnavailable, DeviceNotReady, InputRefused, KioskError
from kiosk.i18n import LANGUAGE_NAMES
from kiosk.screens.base import KioskScreen
from kiosk.screens.theme import Theme
from kiosk.screens.widgets import BigButton, ButtonRow, ProgressPanel, Text

log = logging.getLogger("tamga.screens")
SERVICES = (FlowKind.ISSUANCE, FlowKind.RENEWAL, FlowKind.REVOCATION, FlowKind.UNBLOCK, FlowKind.CHECK)


class WelcomeScreen(KioskScreen):
    """The language choice (the configured default first), the larger-text option and the five services."""

    screen_name = "welcome"

    def reuse_key(self, **_: Any) -> Hashable:
        return self.app.options.languages

    def render(self, **_: Any) -> None:
        th = self.theme
        languages = ButtonRow(th, *(BigButton(th, LANGUAGE_NAMES[lang],
                                              partial(self.choose_language, lang),
                                              kind="primary" if lang == self.app.language else "secondary")
                                    for lang in self.app.options.languages))
        services = GridLayout(cols=2, spacing=th.spacing, size_hint_y=None)
        services.bind(minimum_height=services.setter("height"))
        for kind in SERVICES:
            services.add_widget(self.button(f"flow.{kind.value}", partial(self.start, kind)))
        services.add_widget(self.button("screens.welcome.normal_text" if th.large_text
                                        else "screens.welcome.larger_text", self.toggle_large_text, kind="secondary"))
        self.frame(self.t("screens.welcome.title"), languages, Text(th, self.t("screens.welcome.choose_service")),
                   services)

    def choose_language(self, language: str) -> None:
        self.app.set_language(language)
        self.app.show("welcome")

    def toggle_large_text(self) -> None:
        self.app.theme = Theme(large_text=not self.theme.large_text)
        self.app.show("welcome")

    def start(self, kind: FlowKind) -> None:
        flow = self.app.kiosk.engine.flow(kind)
        language = self.app.language
        self.run(lambda: flow.begin(language))


class ConsentScreen(KioskScreen):
    """What is read from the ID card, why, and how long it is kept; accept, or leave (nothing is read)."""

    screen_name = "consent"

    def reuse_key(self, **_: Any) -> Hashable:
        return self.app.options.retention_days      # the text; the session is only in the parameters

    def render(self, result: StepResult, **_: Any) -> None:
        t = self.t
        days = self.app.options.retention_days
        self.frame(t("step.consent"), Text(self.theme, t("screens.consent.what")),
                   Text(self.theme, t("screens.consent.why")),
                   Text(self.theme, t("screens.consent.kept", days=days)),
                   Text(self.theme, t("consent.text"), bold=True),
                   buttons=(self.leave_button(), self.button("screens.consent.accept", self.accept)))

    def accept(self) -> None:
        sid, flow = self.result.session_id, self.app.kiosk.engine.flow(self.result.flow)
        self.run(lambda: flow.consent(sid, accepted=True))


class ProgressScreen(KioskScreen):
    """A step that needs no input (key generation, enrollment, printing): runs it, shows an honest estimate."""

    screen_name = "progress"

    def render(self, result: StepResult, **_: Any) -> None:
        step = result.step.value
        call = self.app.kiosk.engine.resume_step(result.session_id)
        self.busy = True
        self.panel = ProgressPanel(self.theme, self.t, self.t(f"step.{step}"), self.app.estimates_s.get(step, 5.0),
                                   padding=self.theme.padding * 2)
        self.add_widget(self.panel)

        def finished(next_result: StepResult) -> None:
            measured = result.view.timings_ms.get(step)
            after = next_result.view.timings_ms.get(step)
            if after is not None:
                self.app.estimates_s[step] = (after - (measured or 0.0)) / 1000
            self.app.central_answered()
            self.app.show_result(next_result)

        def failed(err: KioskError) -> None:
            self.app.show_error(err, retry=lambda: self.app.show("progress", result=result),
                                choices=self.app.choices_after(result, err))

        self.run(call, on_done=finished, on_error=failed)

    def forget(self) -> None:
        panel = getattr(self, "panel", None)
        if panel is not None:
            panel.stop()
        super().forget()


def next_step_key(err: KioskError) -> str:
    """What the person should do now, by the kind of error."""
    if isinstance(err, ApplicationRejected):
        return "screens.next.come_back"         # the visit is over: nothing to continue at the desk
    if isinstance(err, DeviceNotReady):
        return "screens.next.device"
    if isinstance(err, CentralUnavailable):
        return "screens.next.central"
    if isinstance(err, InputRefused):
        return "screens.next.correct"
    if err.recoverable:
        return "screens.next.retry"
    return "screens.next.clerk"


class ErrorScreen(KioskScreen):
    """A calm error: what happened in the person's words, what to do next, try again or start over."""

    screen_name = "error"

    def render(self, error: KioskError, retry: Any = None, choices: tuple[tuple[str, Any], ...] = (),
               **_: Any) -> None:
        t = self.t
        buttons = [self.leave_button(), *(self.button(key, action, kind="secondary") for key, action in choices)]
        if retry is not None:
            buttons.append(self.button("screens.button.try_again", retry))
        self.frame(t("screens.error.title"), Text(self.theme, t.error(error), bold=True),
                   Text(self.theme, t(next_step_key(error))), buttons=tuple(buttons))


TAKE = {FlowKind.ISSUANCE: "screens.done.take_card_and_token", FlowKind.RENEWAL: "screens.done.take_token",
        FlowKind.REVOCATION: "screens.done.take_card", FlowKind.UNBLOCK: "screens.done.take_card_and_token",
        FlowKind.CHECK: "screens.done.take_token"}
DONE_TITLE = {FlowKind.ISSUANCE: "done.title", FlowKind.RENEWAL: "screens.done.renewed",
              FlowKind.REVOCATION: "revocation.done", FlowKind.UNBLOCK: "unblock.done",
              FlowKind.CHECK: "check.title"}


class DoneScreen(KioskScreen):
    """The end of a visit: take your card and token, the receipt's state, reprint when it is pending."""

    screen_name = "done"

    def render(self, result: StepResult, **_: Any) -> None:
        t, th = self.t, self.theme
        body: list[Any] = []
        heading = t(DONE_TITLE[result.flow])
        if result.step.value == "pending":          # the CA was unreachable: the certificate comes later
            heading = t("receipt.pending_status")
            body.append(Text(th, t("receipt.pending_note")))
        if result.flow is FlowKind.ISSUANCE and result.view.certificate is not None:
            body.append(Text(th, t("screens.done.valid_until", date=t.date(result.view.certificate.not_after.date()))))
        if result.view.receipt_pending:
            body.append(Text(th, t("done.receipt_pending"), color=th.danger))
            if result.error is not None:
                body.append(Text(th, t.error(result.error)))
        elif result.flow is not FlowKind.UNBLOCK:
            body.append(Text(th, t("screens.done.receipt_printed")))
        body.append(Text(th, t(TAKE[result.flow]), bold=True))
        buttons = [self.button("screens.button.finish", self.app.go_home)]
        if result.view.receipt_pending:
            buttons.insert(0, self.button("screens.done.reprint", self.reprint, kind="secondary"))
        self.frame(heading, *body, buttons=tuple(buttons))

    def reprint(self) -> None:
        sid = self.result.session_id
        flow = self.app.kiosk.engine.flow(self.result.flow)
        self.run(lambda: flow.reprint(sid), on_done=lambda _png: self.app.show_result(
            flow.current(sid)))




APPROVAL_POLL_S = 2.0


class ApprovalScreen(KioskScreen):
    """The clerk's part: the documents to hand over, then a wait until the clerk decides.

    With the clerk's screens installed (``kiosk/screens/clerk.py`` registers ``"clerk"``) a button opens
    them here; the clerk may also decide from their own desk, so the screen asks the session on the
    worker every two seconds and moves on when its step does (whatever step the flow moves to); a
    rejection there is told here with its reason, in the applicant's language, and what to do next.
    """

    screen_name = "approval"

    def render(self, result: StepResult, **_: Any) -> None:
        th, t = self.theme, self.t
        body: list[Any] = []
        if result.view.documents:
            body.append(Text(th, t("screens.approval.documents"), bold=True))
            body += [Text(th, "• " + t(f"doc.{doc}")) for doc in result.view.documents]
            body.append(Text(th, t("screens.approval.waiting")))
        else:
            body.append(Text(th, t("screens.approval.confirm_wait")))
        buttons = [self.leave_button()]
        if self.app.has_screen("clerk"):
            buttons.append(self.button("screens.approval.clerk", lambda: self.app.show("clerk", result=result)))
        else:
            body.append(Text(th, t("screens.approval.at_desk"), color=th.muted))
        self.frame(t("step.approval"), *body, buttons=tuple(buttons))
        self.busy = True             # the applicant waits for the clerk: not idle
        self._poll = Clock.schedule_interval(lambda _dt: self.poll(), APPROVAL_POLL_S)
        self.prepare_early(result)

    def prepare_early(self, result: StepResult) -> None:
        """Issuance: initialise the token and generate the key while the clerk reviews (``prepare_early``),
        on the app's background thread; whatever it answers, ``prepare_token`` later goes on from there."""
        flow = self.app.kiosk.engine.flow(result.flow)
        if result.flow is FlowKind.ISSUANCE and hasattr(flow, "prepare_early"):
            sid = result.session_id
            self.app.background.submit(lambda: flow.prepare_early(sid), lambda _r: None,
                                       lambda err: log.info("early key generation not done: %s", err.key),
                                       label="prepare_early")

    def poll(self) -> None:
        if self.app.manager.current_screen is not self or self.app.worker.busy or "result" not in self.params:
            return
        result = self.result
        flow = self.app.kiosk.engine.flow(result.flow)
        self.app.worker.submit(lambda: flow.current(result.session_id), self.moved, lambda _err: None,
                               label="approval_poll")

    def moved(self, current: StepResult) -> None:
        if "result" not in self.params or current.step == self.result.step:
            return
        if current.view.rejection and current.error is None:     # rejected at another desk: say why, in words
            self.app.session = current
            self.app.language = current.language
            self.app.show_error(ApplicationRejected(reason=current.view.rejection))
            return
        self.app.show_result(current)

    def forget(self) -> None:
        poll = getattr(self, "_poll", None)
        if poll is not None:
            poll.cancel()
        super().forget()


SCREENS = (WelcomeScreen, ConsentScreen, ProgressScreen, ErrorScreen, DoneScreen, ApprovalScreen)
ROUTES: dict[tuple[str, str], Any] = {**{(kind.value, "consent"): "consent" for kind in SERVICES},
                                      ("issuance", "approval"): "approval", ("revocation", "approval"): "approval"}
