"""The eToken screens the flows share: insert the token (detected by polling on the worker), choose a new
PIN (the policy shown live, then typed again), and type the token's PIN where a step needs it."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

from kivy.clock import Clock

from kiosk.engine import FlowKind, StepResult
from kiosk.errors import DeviceNotReady, InvalidPin, KioskError, PinPolicyViolation
from kiosk.pin import Pin
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import PinPad, Text

TOKEN_POLL_S = 1.0
PIN_RULES = ("length", "repeated", "sequence")

#: What the typed eToken PIN is for, by (flow, step).
PinCall = Callable[[Any, str, Pin], StepResult]
TOKEN_PIN_CALLS: dict[tuple[str, str], PinCall] = {
    ("issuance", "keygen"): lambda f, sid, pin: f.generate_key(sid, pin),
    ("issuance", "install"): lambda f, sid, pin: f.install(sid, pin),
    ("issuance", "refused"): lambda f, sid, pin: f.remove_unused_key(sid, pin),
    ("renewal", "offer"): lambda f, sid, pin: f.confirm(sid, details_unchanged=True, pin=pin),
    ("renewal", "keygen"): lambda f, sid, pin: f.generate_key(sid, pin),
    ("renewal", "install"): lambda f, sid, pin: f.install(sid, pin),
    ("check", "pin"): lambda f, sid, pin: f.check(sid, pin),
}
#: What the PIN pad says the PIN is for, where the step alone does not tell (an eToken brought back).
PIN_PURPOSES = {("issuance", "install"): "screens.pin.for_install",
                ("issuance", "refused"): "screens.pin.for_removing_unused_key"}
#: What a new PIN and its confirmation are for, by flow.
NewPinCall = Callable[[Any, str, Pin, Pin], StepResult]
NEW_PIN_CALLS: dict[str, NewPinCall] = {
    "issuance": lambda f, sid, pin, again: f.prepare_token(sid, pin, again),
    "unblock": lambda f, sid, pin, again: f.set_pin(sid, pin, again),
}


def pin_or_progress(result: StepResult) -> str:
    """A step that needs the eToken PIN again (after a restart) asks for it; otherwise it runs by itself."""
    return "token_pin" if result.view.pin_needed else "progress"


class InsertTokenScreen(KioskScreen):
    """"Insert your eToken": asks the token slot on the worker every second, then goes on with the flow."""

    screen_name = "insert_token"

    def render(self, result: StepResult, **_: Any) -> None:
        th, t = self.theme, self.t
        self.frame(t(f"flow.{result.flow.value}"), Text(th, t("screens.token.insert"), bold=True),
                   Text(th, t("screens.token.waiting"), color=th.muted), buttons=(self.leave_button(),))
        self._poll = Clock.schedule_interval(lambda _dt: self.poll(), TOKEN_POLL_S)
        self.poll()

    def poll(self) -> None:
        if self.app.manager.current_screen is not self or self.app.worker.busy or "result" not in self.params:
            return
        token = self.app.kiosk.token
        self.app.worker.submit(token.present, lambda _info: self.token_in(), self.not_yet, label="token_poll")

    def not_yet(self, err: KioskError) -> None:
        if not isinstance(err, DeviceNotReady):
            self.app.show_error(err, retry=self.poll)

    def token_in(self) -> None:
        if "result" not in self.params:
            return
        self._poll.cancel()
        result = self.result
        if result.flow is FlowKind.ISSUANCE:
            self.app.show("choose_pin", result=result)     # the token is initialised with the chosen PIN
            return
        sid, flow = result.session_id, self.app.kiosk.engine.flow(result.flow)
        self.run(lambda: flow.read_token(sid))    # type: ignore[attr-defined]

    def forget(self) -> None:
        poll = getattr(self, "_poll", None)
        if poll is not None:
            poll.cancel()
        super().forget()


class ChoosePinScreen(KioskScreen):
    """A new eToken PIN: the rules turn green as they are met; then the same PIN again."""

    screen_name = "choose_pin"

    def render(self, result: StepResult, first: Pin | None = None, message: str = "", **_: Any) -> None:
        th, t = self.theme, self.t
        self.first = first
        policy = self.app.kiosk.engine.policy.pin_policy
        prompt = t("screens.pin.confirm") if first is not None else t("screens.pin.choose")
        self.rules = {rule: Text(th, "• " + t(f"pin.rule.{rule}", min=policy.min_length, max=policy.max_length),
                                 size=th.small_size, color=th.muted) for rule in PIN_RULES}
        info: list[Any] = [Text(th, message, color=th.danger, bold=True)] if message else []
        if first is None:
            info += [Text(th, t("screens.pin.rules"), size=th.small_size), *self.rules.values()]
        info.append(Text(th, t("screens.pin.remember"), size=th.small_size, color=th.muted))
        self.pad = PinPad(th, t, prompt, self.submit, max_length=policy.max_length, on_change=self.check_rules,
                          info=tuple(info))
        self.frame(t("step.new_pin"), self.pad, buttons=(self.leave_button(),), scroll=False)

    def broken_rules(self, pin: Pin) -> set[str]:
        """The rules of :data:`PIN_RULES` the PIN typed so far breaks (shown live; the policy decides at the end)."""
        policy = self.app.kiosk.engine.policy.pin_policy
        value = pin.reveal()
        broken = set()
        if not policy.min_length <= len(value) <= policy.max_length:
            broken.add("length")
        if len(set(value)) <= 1:
            broken.add("repeated")
        if len(value) < 2 or {int(b) - int(a) for a, b in pairwise(value)} in ({1}, {-1}):
            broken.add("sequence")
        return broken

    def check_rules(self) -> None:
        if self.first is not None:
            return
        broken = self.broken_rules(self.pad.peek())
        for rule, label in self.rules.items():
            label.color = self.theme.muted if rule in broken else self.theme.ok

    def submit(self) -> None:
        result = self.result
        if self.first is None:
            pin = self.pad.take()
            try:
                self.app.kiosk.engine.policy.pin_policy.check(pin)
            except PinPolicyViolation as err:
                self.app.show("choose_pin", result=result, message=self.t.error(err))
                return
            self.app.show("choose_pin", result=result, first=pin)
            return
        first, again = self.first, self.pad.take()
        sid, flow = result.session_id, self.app.kiosk.engine.flow(result.flow)
        call = NEW_PIN_CALLS[result.flow.value]

        def refused(err: KioskError) -> None:
            if isinstance(err, PinPolicyViolation):
                self.app.show("choose_pin", result=result, message=self.t.error(err))
            else:
                self.app.show_error(err, retry=lambda: self.app.show("choose_pin", result=result))

        self.run(lambda: call(flow, sid, first, again), on_error=refused)


class TokenPinScreen(KioskScreen):
    """The eToken's PIN where a step needs it (check, renewal, a step resumed after a restart)."""

    screen_name = "token_pin"

    def render(self, result: StepResult, tries_left: int | None = None, message: str = "", **_: Any) -> None:
        th, t = self.theme, self.t
        why = PIN_PURPOSES.get((result.flow.value, result.step.value))
        info = ((Text(th, message, color=th.danger, bold=True),) if message else ()) + \
            ((Text(th, t(why)),) if why else ())
        self.pad = PinPad(th, t, t("screens.pin.enter_token"), self.submit, tries_left=tries_left, info=info)
        self.frame(t("step.pin"), self.pad, buttons=(self.leave_button(),), scroll=False)

    def submit(self) -> None:
        if self.pad.length == 0:
            return
        pin, result = self.pad.take(), self.result
        sid, flow = result.session_id, self.app.kiosk.engine.flow(result.flow)
        call = TOKEN_PIN_CALLS[(result.flow.value, result.step.value)]

        def refused(err: KioskError) -> None:
            if isinstance(err, InvalidPin):
                self.app.show("token_pin", result=result, tries_left=err.data.get("attempts_remaining"),
                              message=self.t.error(err))
            else:
                self.app.show_error(err, retry=lambda: self.app.show("token_pin", result=result))

        self.run(lambda: call(flow, sid, pin), on_error=refused)


SCREENS = (InsertTokenScreen, ChoosePinScreen, TokenPinScreen)
ROUTES = {("issuance", "token"): "insert_token", ("renewal", "token"): "insert_token",
          ("check", "token"): "insert_token", ("unblock", "token"): "insert_token",
          ("unblock", "new_pin"): "choose_pin", ("check", "pin"): "token_pin",
          ("issuance", "refused"): pin_or_progress,
          **{(flow, step): pin_or_progress for flow in ("issuance", "renewal") for step in ("keygen", "install")}}
