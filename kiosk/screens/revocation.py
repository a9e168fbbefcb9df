"""The revocation screens: the holder's valid certificates from the CA (after the ID card), one chosen
with a reason; the clerk confirms (the shared approval screen), then it is sent and the receipt printed."""

from __future__ import annotations

from functools import partial
from typing import Any

from kiosk.engine import StepResult
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import BigButton, Text


class ChooseCertificateScreen(KioskScreen):
    """Which certificate (organisation, valid until, serial), then why."""

    screen_name = "revocation_choose"

    def render(self, result: StepResult, serial: str = "", **_: Any) -> None:
        th, t = self.theme, self.t
        body: list[Any] = []
        if not serial:
            if not result.view.certificates:
                body.append(Text(th, t("screens.revocation.none"), bold=True))
            body.append(Text(th, t("screens.revocation.which"), bold=True))
            for cert in result.view.certificates:
                label = t("screens.revocation.certificate", organisation=cert.organisation,
                          date=t.date(cert.not_after.date()), serial=cert.serial[-8:])
                body.append(BigButton(th, label, partial(
                    self.app.show, "revocation_choose", result=result, serial=cert.serial), kind="secondary"))
        else:
            body.append(Text(th, t("revocation.reason"), bold=True))
            body += [self.button(f"revocation.reason.{reason}", partial(self.choose, serial, reason),
                                 kind="secondary") for reason in result.view.reasons]
        self.frame(t("step.choose"), *body, buttons=(self.leave_button(),))

    def choose(self, serial: str, reason: str) -> None:
        sid, flow = self.result.session_id, self.app.kiosk.revocation
        self.run(lambda: flow.choose(sid, serial, reason))


SCREENS = (ChooseCertificateScreen,)
ROUTES = {("revocation", "choose"): "revocation_choose"}
