"""The clerk's screens: sign-in with a PIN pad, the day's sessions, the document review, the revocation.

``clerk`` is the entry (registered by that name): the clerk chooses their language, types their id,
then their personal PIN on a masked pad.  A wrong PIN or a lockout is said in words on the same
screen, in the clerk's language.  Shown with ``result`` (the applicant's session waiting at the
clerk's review), the sign-in leads straight to that session's review; otherwise to the desk.  The
sign-in lasts while the clerk stays on these screens: handing the kiosk back to the applicant (or the
idle timeout) signs the clerk out of it.

Every action goes through :class:`kiosk.clerk_desk.ClerkDesk` on the worker thread, under the
clerk's sign-in; an expired sign-in brings the clerk back to the sign-in screen with its reason.
The review hands the session back to the applicant: an approval or a confirmed revocation shows the
applicant's next step, a rejection shows them its reason in their own language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kivy.clock import Clock
from kivy.graphics import Color, Rectangle
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from kiosk.clerk_desk import (
    REJECT_REASONS,
    ClerkDesk,
    ClerkNotSignedIn,
    ClerkSignInExpired,
    SessionLine,
    SessionStatus,
    clerk_message,
    flow_text,
    refusal_text,
    status_text,
)
from kiosk.clerks import CLERK_PIN_POLICY, SignedInClerk
from kiosk.engine import FINAL_STEPS, FlowKind, StepResult
from kiosk.errors import KioskError, WrongStep
from kiosk.flows.issuance import Document
from kiosk.i18n import LANGUAGE_NAMES, LANGUAGES, Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.theme import Theme
from kiosk.screens.widgets import BigButton, ButtonRow, KeyboardField, PinPad, Text

ENTRY = "clerk"
CLERK_SCREENS = frozenset({ENTRY, "clerk_desk", "clerk_review", "clerk_revocation", "clerk_reject"})


@dataclass
class ClerkSeat:
    """The clerk's side of this kiosk: who is signed in and in which language they read."""

    language: str
    clerk: SignedInClerk | None = None


class TickRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    """A document of the checklist: a box (dark with a white X when ticked, light when not) and the
    document's name; a touch anywhere on the row ticks or unticks it."""

    def __init__(self, theme: Theme, text: str, ticked: bool, on_change: Callable[[bool], None]) -> None:
        super().__init__(orientation="horizontal", spacing=theme.spacing, size_hint_y=None, height=theme.touch)
        self._theme = theme
        self._on_change = on_change
        self.ticked = ticked
        self.box = Label(size_hint=(None, None), size=(theme.touch * 0.7, theme.touch * 0.7), bold=True,
                         font_size=theme.button_size, pos_hint={"center_y": 0.5})
        with self.box.canvas.before:
            self._fill = Color(*theme.secondary)
            self._square = Rectangle(pos=self.box.pos, size=self.box.size)
        self.box.bind(pos=lambda *_: setattr(self._square, "pos", self.box.pos),
                      size=lambda *_: setattr(self._square, "size", self.box.size))
        self.label = Text(theme, text, pos_hint={"center_y": 0.5})
        self.label.bind(height=lambda *_: setattr(self, "height", max(theme.touch, self.label.height)))
        self.add_widget(self.box)
        self.add_widget(self.label)
        self.show_state()

    def show_state(self) -> None:
        th = self._theme
        self._fill.rgba = th.primary if self.ticked else th.secondary
        self.box.text = "X" if self.ticked else ""
        self.box.color = th.primary_text

    def on_release(self) -> None:
        self.ticked = not self.ticked
        self.show_state()
        self._on_change(self.ticked)


class ClerkScreen(KioskScreen):
    """A clerk's screen: words in the clerk's language, actions on the desk under the clerk's sign-in."""

    @property
    def seat(self) -> ClerkSeat:
        """Held by the entry screen, so that every clerk screen of this app shares it."""
        seat: ClerkSeat = getattr(self.app.screen(ENTRY), "clerk_seat")  # noqa: B009 -- the entry's, typed here
        return seat

    @property
    def ct(self) -> Translator:
        """The clerk's translator (the applicant may read another language)."""
        return Translator(self.seat.language, self.app.options.currency)

    @property
    def desk(self) -> ClerkDesk:
        desk: ClerkDesk = self.app.kiosk.clerk_desk
        return desk

    def said(self, err: KioskError) -> str:
        return clerk_message(self.ct, err, self.app.kiosk.engine.policy.timezone)

    def cbutton(self, key: str, action: Callable[[], None], kind: str = "primary", **data: Any) -> BigButton:
        return BigButton(self.theme, self.ct(key, **data), action, kind=kind)

    def redirect(self, name: str, **params: Any) -> None:
        """Show another screen from inside :meth:`render` (after the show in progress has finished)."""
        Clock.schedule_once(lambda _dt: self.app.show(name, **params), 0)

    def session(self, session_id: str) -> StepResult | None:
        """The session under the clerk's sign-in; None (and back to the sign-in screen) once it ended."""
        clerk = self.seat.clerk
        try:
            if clerk is None:
                raise ClerkNotSignedIn()
            return self.desk.session(clerk, session_id)
        except (ClerkSignInExpired, ClerkNotSignedIn) as err:
            self.seat.clerk = None
            self.redirect(ENTRY, message=self.said(err))
            return None

    def act(self, call: Callable[[SignedInClerk], Any], on_done: Callable[[Any], None],
            refused: Callable[[str], None]) -> None:
        """``call(clerk)`` on the worker; a refusal to ``refused`` in the clerk's words, an ended sign-in back
        to the sign-in screen."""
        clerk = self.seat.clerk
        if clerk is None:
            self.app.show(ENTRY, message=self.said(ClerkNotSignedIn()))
            return

        def on_error(err: KioskError) -> None:
            if isinstance(err, ClerkSignInExpired | ClerkNotSignedIn):
                self.seat.clerk = None
                self.app.show(ENTRY, message=self.said(err))
            elif isinstance(err, WrongStep):            # decided elsewhere meanwhile: the list as it is now
                self.app.show("clerk_desk", message=self.said(err))
            else:
                refused(self.said(err))

        self.run(lambda: call(clerk), on_done, on_error)

    def on_leave(self, *_: Any) -> None:
        """Leaving the clerk's screens (handing back to the applicant, the idle timeout) signs the clerk out
        of this touchscreen: the applicant standing at it must not find the clerk's sign-in open."""
        if self.app.manager.current not in CLERK_SCREENS:
            clerk, self.seat.clerk = self.seat.clerk, None
            if clerk is not None:
                self.desk.sign_out(clerk)

    def message_text(self, message: str, good: bool = False) -> Text:
        return Text(self.theme, message, bold=True, color=self.theme.ok if good else self.theme.danger)


# --- sign-in -------------------------------------------------------------------------------------------
class ClerkSignInScreen(ClerkScreen):
    """The clerk's language, id (Latin keyboard) and personal PIN (masked pad)."""

    screen_name = ENTRY

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.clerk_seat = ClerkSeat(language=app.options.language)

    def render(self, result: StepResult | None = None, clerk_id: str = "", message: str = "", **_: Any) -> None:
        seat = self.clerk_seat
        th, ct = self.theme, self.ct
        body: list[Widget] = []
        if message:
            body.append(self.message_text(message))
        back = self.cbutton("clerk.back", self.back, kind="secondary")
        if not clerk_id:
            # The Latin keyboard's five rows need the height: no title row ("sign in" beside the field says
            # it; the PIN pad next has the title), and the languages share the buttons' row.
            languages = tuple(BigButton(th, LANGUAGE_NAMES[lang], partial(self.choose_language, lang),
                                        kind="primary" if lang == seat.language else "secondary")
                              for lang in LANGUAGES)
            sign_in = BigButton(th, ct("clerk.sign_in.button"), lambda: self.typed_id(self.id_field.text),
                                size_hint_x=0.33, size_hint_y=1)
            self.id_field = KeyboardField(th, "latin", self.typed_id, beside=(sign_in,),
                                          hint=ct("clerk.sign_in.clerk_id"))
            body.append(self.id_field)
            self.frame("", *body, buttons=(back, *languages), scroll=False)
            Clock.schedule_once(lambda _dt: setattr(self.id_field.field, "focus", True), 0)   # a USB keyboard too
            return
        self.pad = PinPad(th, ct, ct("clerk.sign_in.pin"), self.submit, max_length=CLERK_PIN_POLICY.max_length)
        body += [Text(th, clerk_id, bold=True), self.pad]
        self.frame(ct("clerk.sign_in.title"), *body, buttons=(back,), scroll=False)

    def choose_language(self, language: str) -> None:
        self.clerk_seat.language = language
        self.app.show(ENTRY, **self.kept())

    def kept(self) -> dict[str, Any]:
        return {"result": self.params["result"]} if self.params.get("result") is not None else {}

    def back(self) -> None:
        result = self.params.get("result")
        if result is not None:
            self.app.show_result(result)
        else:
            self.app.go_home()

    def typed_id(self, text: str) -> None:
        clerk_id = text.strip()
        if clerk_id:
            self.app.show(ENTRY, clerk_id=clerk_id, **self.kept())

    def submit(self) -> None:
        if self.pad.length == 0:
            return
        pin, clerk_id, kept = self.pad.take(), self.params["clerk_id"], self.kept()
        desk = self.desk

        def signed_in(clerk: SignedInClerk) -> None:
            self.clerk_seat.clerk = clerk
            self.enter(kept.get("result"))

        def refused(err: KioskError) -> None:
            self.app.show(ENTRY, clerk_id=clerk_id, message=self.said(err), **kept)

        self.run(lambda: desk.sign_in(clerk_id, pin), signed_in, refused)

    def enter(self, result: StepResult | None) -> None:
        """The review of the applicant's session waiting for the clerk, else the desk."""
        if result is not None and result.step.value == "approval":
            self.app.show(review_screen(result.flow), session_id=result.session_id)
        else:
            self.app.show("clerk_desk")


def review_screen(flow: FlowKind) -> str:
    return "clerk_revocation" if flow is FlowKind.REVOCATION else "clerk_review"


# --- the day's list -------------------------------------------------------------------------------------
class ClerkDeskScreen(ClerkScreen):
    """Today's sessions with their state; open a review, resume, cancel, reprint; sign out."""

    screen_name = "clerk_desk"

    def render(self, message: str = "", good: bool = False, **_: Any) -> None:
        clerk = self.seat.clerk
        try:
            if clerk is None:
                raise ClerkNotSignedIn()
            lines = self.desk.day(clerk)
        except (ClerkSignInExpired, ClerkNotSignedIn) as err:
            self.seat.clerk = None
            self.redirect(ENTRY, message=self.said(err))
            return
        th, ct = self.theme, self.ct
        body: list[Widget] = [self.message_text(message, good)] if message else []
        if not lines:
            body.append(Text(th, ct("clerk.desk.empty"), color=th.muted))
        for line in lines:
            body += self.row(line)
        self.frame(ct("clerk.desk.title", name=clerk.name), *body, buttons=(
            self.cbutton("clerk.sign_out", self.sign_out, kind="secondary"),
            self.cbutton("clerk.desk.refresh", lambda: self.app.show("clerk_desk"), kind="secondary")))

    def row(self, line: SessionLine) -> list[Widget]:
        th, ct = self.theme, self.ct
        tz = self.app.kiosk.engine.policy.timezone
        when = ct.datetime(line.started_at.astimezone(tz)) if line.started_at else ""
        state = status_text(ct, line.status)
        if line.step not in FINAL_STEPS and ct.has(f"step.{line.step}"):
            state = f"{state} ({ct(f'step.{line.step}')})"
        words = " · ".join(part for part in (when, flow_text(ct, line.flow), line.holder) if part)
        widgets: list[Widget] = [Text(th, words, bold=True), Text(th, state, color=th.muted)]
        if line.refusal:            # a request kept offline that the central refused: why, and the token's key
            widgets.append(Text(th, refusal_text(ct, line, tz), color=th.danger))
        sid = line.session_id
        buttons: list[BigButton] = []
        if line.status is SessionStatus.WAITING_FOR_CLERK:
            buttons.append(self.cbutton("clerk.action.open",
                                        lambda: self.app.show(review_screen(line.flow), session_id=sid)))
        if line.can_resume:
            buttons.append(self.cbutton("clerk.action.resume", lambda: self.resume(sid)))
        if line.can_reprint:
            buttons.append(self.cbutton("clerk.action.reprint", lambda: self.reprint(sid), kind="secondary"))
        if line.can_cancel:
            buttons.append(self.cbutton("clerk.action.cancel", lambda: self.cancel(sid), kind="danger"))
        for button in buttons:
            button.session_id = sid          # which row's button it is (read by the screen test)
        if buttons:
            widgets.append(ButtonRow(th, *buttons))
        return widgets

    def refused(self, message: str) -> None:
        self.app.show("clerk_desk", message=message)

    def resume(self, session_id: str) -> None:
        desk = self.desk

        def resumed(result: StepResult) -> None:
            if result.error is not None:            # it went on as far as it could (the central is still down)
                self.app.show("clerk_desk", message=self.said(result.error))
                return
            step = self.ct(f"step.{result.step.value}") if self.ct.has(f"step.{result.step.value}") else \
                status_text(self.ct, desk.line(desk.engine.load(result.session_id)).status)
            self.app.show("clerk_desk", message=self.ct("clerk.done.resumed", step_text=step), good=True)

        self.act(lambda clerk: desk.resume(clerk, session_id), resumed, self.refused)

    def cancel(self, session_id: str) -> None:
        desk = self.desk
        self.act(lambda clerk: desk.cancel(clerk, session_id),
                 lambda _r: self.app.show("clerk_desk", message=self.ct("clerk.done.cancelled"), good=True),
                 self.refused)

    def reprint(self, session_id: str) -> None:
        desk = self.desk
        self.act(lambda clerk: desk.reprint(clerk, session_id),
                 lambda _png: self.app.show("clerk_desk", message=self.ct("clerk.done.reprinted"), good=True),
                 self.refused)

    def sign_out(self) -> None:
        self.app.go_home()           # leaving the clerk's screens signs the clerk out


# --- the issuance review --------------------------------------------------------------------------------
class ClerkReviewScreen(ClerkScreen):
    """The documents of the order type to tick (power of attorney when by proxy); approve, or reject."""

    screen_name = "clerk_review"

    def render(self, session_id: str = "", ticked: tuple[str, ...] = (), by_proxy: bool = False, message: str = "",
               **_: Any) -> None:
        result = self.session(session_id)
        if result is None:
            return
        th, ct = self.theme, self.ct
        view = result.view
        holder = view.card.name if view.card else view.order.holder if view.order else ""
        documents = list(view.documents)
        if by_proxy and Document.POWER_OF_ATTORNEY.value not in documents:
            documents.append(Document.POWER_OF_ATTORNEY.value)
        self.ticks = {d: d in ticked for d in documents}
        self.by_proxy = by_proxy
        body: list[Widget] = [self.message_text(message)] if message else []
        if view.order is not None:
            body.append(Text(th, f"{ct('receipt.invoice')} {view.order.invoice} · {view.order.organisation}"))
        body.append(TickRow(th, ct("clerk.review.by_proxy"), by_proxy, self.proxy_changed))
        body += [TickRow(th, ct(f"doc.{d}"), self.ticks[d], partial(self.tick, d)) for d in documents]
        self.frame(ct("clerk.review.title", holder=holder), *body, buttons=(
            self.cbutton("clerk.back", lambda: self.app.show("clerk_desk"), kind="secondary"),
            self.cbutton("clerk.review.reject", lambda: self.app.show("clerk_reject", session_id=session_id),
                         kind="danger"),
            self.cbutton("clerk.review.approve", self.approve)))

    def tick(self, document: str, on: bool) -> None:
        self.ticks[document] = on

    def proxy_changed(self, on: bool) -> None:
        ticked = tuple(d for d, t in self.ticks.items() if t)
        self.app.show("clerk_review", session_id=self.params["session_id"], ticked=ticked, by_proxy=on)

    def approve(self) -> None:
        sid, by_proxy, desk = self.params["session_id"], self.by_proxy, self.desk
        ticked = tuple(d for d, t in self.ticks.items() if t)

        def refused(message: str) -> None:
            self.app.show("clerk_review", session_id=sid, ticked=ticked, by_proxy=by_proxy, message=message)

        self.act(lambda clerk: desk.approve(clerk, sid, ticked, by_proxy), self.app.show_result, refused)


# --- the revocation -------------------------------------------------------------------------------------
class ClerkRevocationScreen(ClerkScreen):
    """The holder's chosen certificate and reason; the clerk confirms the revocation."""

    screen_name = "clerk_revocation"

    def render(self, session_id: str = "", message: str = "", **_: Any) -> None:
        result = self.session(session_id)
        clerk = self.seat.clerk
        if result is None or clerk is None:
            return
        th, ct = self.theme, self.ct
        view = result.view
        cert = view.certificate
        holder = view.card.name if view.card else ""
        body: list[Widget] = [self.message_text(message)] if message else []
        if cert is not None:
            body += [Text(th, f"{ct('receipt.certificate_serial')}: {cert.serial}"),
                     Text(th, f"{ct('receipt.organisation')}: {cert.organisation}"),
                     Text(th, f"{ct('receipt.valid_until')}: {ct.date(cert.not_after.date())}")]
        reason = self.desk.revocation_reason(clerk, session_id)
        if reason:
            body.append(Text(th, f"{ct('revocation.reason')}: {ct(f'revocation.reason.{reason}')}", bold=True))
        self.frame(ct("clerk.revocation.title", holder=holder), *body, buttons=(
            self.cbutton("clerk.back", lambda: self.app.show("clerk_desk"), kind="secondary"),
            self.cbutton("clerk.revocation.confirm", self.confirm, kind="danger")))

    def confirm(self) -> None:
        sid, desk = self.params["session_id"], self.desk
        self.act(lambda clerk: desk.confirm_revocation(clerk, sid), self.app.show_result,
                 lambda message: self.app.show("clerk_revocation", session_id=sid, message=message))


# --- the rejection -------------------------------------------------------------------------------------
class ClerkRejectScreen(ClerkScreen):
    """The reasons a clerk may reject for, as the applicant will read them; one touch rejects."""

    screen_name = "clerk_reject"

    def render(self, session_id: str = "", message: str = "", **_: Any) -> None:
        if self.session(session_id) is None:
            return
        ct = self.ct
        body: list[Widget] = [self.message_text(message)] if message else []
        body += [self.cbutton(f"refusal.{reason}", partial(self.reject, reason), kind="secondary")
                 for reason in REJECT_REASONS]
        self.frame(ct("clerk.review.reason"), *body, buttons=(
            self.cbutton("clerk.back", lambda: self.app.show("clerk_review", session_id=session_id),
                         kind="secondary"),))

    def reject(self, reason: str) -> None:
        sid, desk = self.params["session_id"], self.desk
        self.act(lambda clerk: desk.reject(clerk, sid, reason), self.rejected,
                 lambda message: self.app.show("clerk_reject", session_id=sid, message=message))

    def rejected(self, result: StepResult) -> None:
        """The applicant reads why, in their language (the error screen ends the visit)."""
        self.app.session = result
        self.app.language = result.language
        if result.error is not None:
            self.app.show_error(result.error)
        else:
            self.app.show_result(result)


SCREENS = (ClerkSignInScreen, ClerkDeskScreen, ClerkReviewScreen, ClerkRevocationScreen, ClerkRejectScreen)
