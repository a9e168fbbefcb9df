"""The issuance screens of its own steps: order lookup (invoice on a number keyboard, register number on
the register keyboard, or a USB QR/barcode scanner typing into the field) and the order summary with its
fee lines (and, when the central is away and the order comes from the kiosk's copy, the moment of its
last sync).  The steps it shares are routed to their screens (identity, approval, token, progress, done)."""

from __future__ import annotations

from functools import partial
from typing import Any

from kivy.clock import Clock

from kiosk.engine import StepResult
from kiosk.errors import CentralUnavailable, InputRefused, KioskError
from kiosk.order import FeeItem, FeeLine
from kiosk.screens.base import KioskScreen
from kiosk.screens.keyboards import layout_for
from kiosk.screens.token import pin_or_progress
from kiosk.screens.widgets import BigButton, KeyboardField, Text


def fee_text(t: Any, line: FeeLine) -> str:
    """A fee line as the receipt writes it: the item (the term in years agrees with its number), the amount."""
    if line.item is FeeItem.CERTIFICATE:
        return f"{t('fee.certificate', years=line.quantity)}: {t.money(line.amount_mnt)}"
    return f"{t(f'fee.{line.item.value}')}: {t.money(line.amount_mnt)}"


class OrderLookupScreen(KioskScreen):
    """The invoice number (digits keyboard) or the register number (register keyboard); a scanner types here."""

    screen_name = "order"

    def render(self, result: StepResult, mode: str = "invoice", message: str = "", **_: Any) -> None:
        th, t = self.theme, self.t
        layout = "numeric" if mode == "invoice" else layout_for(self.app.language, "register")
        modes = tuple(BigButton(th, t(f"screens.order.{m}"), partial(self.switch, m), size_hint_x=0.33, size_hint_y=1,
                                kind="primary" if m == mode else "secondary") for m in ("invoice", "register"))
        self.field = KeyboardField(th, layout, self.lookup, beside=modes)     # the lit button says what to type
        body: list[Any] = [Text(th, message, color=th.danger, bold=True)] if message else []
        body.append(self.field)
        self.frame(t("step.order"), *body, buttons=(self.leave_button(),
                                                    self.button("screens.order.find", self.find)), scroll=False,
                   note=t("order.prompt"))
        Clock.schedule_once(lambda _dt: setattr(self.field.field, "focus", True), 0)   # the scanner types here

    def switch(self, mode: str) -> None:
        self.app.show("order", result=self.result, mode=mode)

    def find(self) -> None:
        self.lookup(self.field.text)

    def lookup(self, query: str) -> None:
        query = query.strip()
        if not query:
            return
        result = self.result
        mode = self.params.get("mode", "invoice")
        flow = self.app.kiosk.issuance

        def refused(err: KioskError) -> None:
            if isinstance(err, InputRefused):     # a typo: say so here, keep the screen
                self.app.show("order", result=result, mode=mode, message=self.t.error(err))
            elif isinstance(err, CentralUnavailable):
                self.app.show_error(err, retry=lambda: self.app.show("order", result=result, mode=mode))
            else:
                self.app.show_error(err)

        self.run(lambda: flow.find_order(result.session_id, query),
                 on_done=lambda found: self.app.show("order_summary", result=found), on_error=refused)


class OrderSummaryScreen(KioskScreen):
    """The order found: holder, organisation, term, fee lines and what was paid."""

    screen_name = "order_summary"

    def render(self, result: StepResult, **_: Any) -> None:
        th, t = self.theme, self.t
        order = result.view.order
        assert order is not None, "the summary follows a found order"
        body: list[Any] = [
            Text(th, f"{t('receipt.invoice')}: {order.invoice}"),
            Text(th, f"{t('receipt.holder')}: {order.holder}", bold=True),
            Text(th, f"{t('receipt.organisation')}: {order.organisation}"),
        ]
        body += [Text(th, fee_text(t, line), bold=line.item is FeeItem.TOTAL) for line in order.fees]
        body.append(Text(th, f"{t('order.paid')}: {t.money(order.paid_mnt)}", color=th.ok, bold=True))
        if order.as_of is not None:     # found in the kiosk's copy of the office's orders: the central is away
            tz = self.app.kiosk.engine.policy.timezone
            body.insert(0, Text(th, t("sync.order.as_of", time=t.datetime(order.as_of.astimezone(tz))),
                                color=th.danger, bold=True))
            self.app.central_online = False
        self.frame(t("screens.summary.title"), *body,
                   buttons=(self.leave_button(), self.button("screens.button.continue", self.go_on)))

    def go_on(self) -> None:
        self.app.show_result(self.result)


def finish_later(app: Any, result: StepResult, err: KioskError) -> tuple[tuple[str, Any], ...]:
    """The CA is unreachable at enrollment: the visit may end with a pending receipt (the key is on the token)."""
    if not isinstance(err, CentralUnavailable):
        return ()
    flow, sid = app.kiosk.issuance, result.session_id
    return (("screens.next.finish_later",
             lambda: app.worker.submit(lambda: flow.defer(sid), app.show_result, app.show_error, label="defer")),)


SCREENS = (OrderLookupScreen, OrderSummaryScreen)
CHOICES = {("issuance", "enrollment"): finish_later}
ROUTES = {("issuance", "order"): "order", ("issuance", "pending"): "done", ("issuance", "keygen"): pin_or_progress,
          ("issuance", "install"): pin_or_progress}
