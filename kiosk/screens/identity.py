"""The ID card screens every flow with an identity step shares: insert the card (detected by polling on
the worker), then the card's PIN on a masked pad with the tries left."""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock

from kiosk.engine import StepResult
from kiosk.errors import DeviceNotReady, InvalidPin, KioskError
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import PinPad, Text

CARD_POLL_S = 0.5


def identity_screen(result: StepResult) -> str:
    """The identity step's screen: insert the card until it is read, then its PIN."""
    return "insert_card" if result.view.card is None else "card_pin"


class InsertCardScreen(KioskScreen):
    """"Insert your ID card": asks the reader on the worker every half second; reads the card once it is in."""

    screen_name = "insert_card"

    def render(self, result: StepResult, **_: Any) -> None:
        th, t = self.theme, self.t
        self.frame(t("step.identity"), Text(th, t("screens.card.insert"), bold=True),
                   Text(th, t("screens.card.waiting"), color=th.muted), buttons=(self.leave_button(),))
        self._poll = Clock.schedule_interval(lambda _dt: self.poll(), CARD_POLL_S)
        self.poll()

    def poll(self) -> None:
        if self.app.manager.current_screen is not self or self.app.worker.busy or "result" not in self.params:
            return
        idcard = self.app.kiosk.idcard
        self.app.worker.submit(lambda: idcard.wait_for_card(0), lambda _none: self.card_in(),
                               self.not_yet, label="card_poll")

    def not_yet(self, err: KioskError) -> None:
        if not isinstance(err, DeviceNotReady):
            self.app.show_error(err, retry=self.poll)

    def card_in(self) -> None:
        if "result" not in self.params:
            return                       # left (idle timeout, start over) before the answer came
        self._poll.cancel()
        sid, flow = self.result.session_id, self.app.kiosk.engine.flow(self.result.flow)
        self.run(lambda: flow.read_card(sid))    # type: ignore[attr-defined]

    def forget(self) -> None:
        poll = getattr(self, "_poll", None)
        if poll is not None:
            poll.cancel()
        super().forget()


class CardPinScreen(KioskScreen):
    """The ID card's PIN, masked; a wrong PIN comes back here with the tries left (nothing else is lost)."""

    screen_name = "card_pin"

    def render(self, result: StepResult, tries_left: int | None = None, message: str = "", **_: Any) -> None:
        th, t = self.theme, self.t
        card = result.view.card
        info: list[Any] = []
        if card is not None:
            info.append(Text(th, t("screens.card.holder", name=card.name)))
        if message:
            info.append(Text(th, message, color=th.danger, bold=True))
        self.pad = PinPad(th, t, t("screens.card.pin_prompt"), self.submit, max_length=12, tries_left=tries_left,
                          info=tuple(info))
        self.frame(t("step.identity"), self.pad, buttons=(self.leave_button(),), scroll=False)

    def submit(self) -> None:
        if self.pad.length == 0:
            return
        pin = self.pad.take()
        result = self.result
        sid, flow = result.session_id, self.app.kiosk.engine.flow(result.flow)

        def refused(err: KioskError) -> None:
            if isinstance(err, InvalidPin):
                self.app.show("card_pin", result=result, tries_left=err.data.get("attempts_remaining"),
                              message=self.t.error(err))
            else:
                self.app.show_error(err, retry=lambda: self.app.show("card_pin", result=result))

        self.run(lambda: flow.verify_card_pin(sid, pin), on_error=refused)    # type: ignore[attr-defined]


SCREENS = (InsertCardScreen, CardPinScreen)
ROUTES = {(flow, "identity"): identity_screen for flow in ("issuance", "revocation", "unblock")}
