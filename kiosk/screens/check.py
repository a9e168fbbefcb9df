"""The token check's result: does the signature work, the certificate's status and days left, and the
renewal notice when renewal is open."""

from __future__ import annotations

from typing import Any

from kiosk.engine import StepResult
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import Text


class CheckResultScreen(KioskScreen):
    screen_name = "check_result"

    def render(self, result: StepResult, **_: Any) -> None:
        th, t = self.theme, self.t
        check, cert = result.view.check, result.view.certificate
        body: list[Any] = []
        if check is not None:
            body.append(Text(th, t("check.signature_ok" if check.signature_ok else "check.signature_bad"), bold=True,
                             color=th.ok if check.signature_ok else th.danger))
        if cert is not None:
            body.append(Text(th, t("screens.check.status", status=t(f"check.status.{cert.status or 'unknown'}"))))
            body.append(Text(th, t("screens.done.valid_until", date=t.date(cert.not_after.date()))))
            if cert.days_left is not None and cert.days_left >= 0:
                body.append(Text(th, t("check.days_left", days=cert.days_left)))
            if result.view.notice and cert.days_left is not None:
                body.append(Text(th, t(result.view.notice, days=cert.days_left), color=th.danger))
        body.append(Text(th, t("screens.done.take_token"), bold=True))
        self.frame(t("check.title"), *body, buttons=(self.button("screens.button.finish", self.app.go_home),))


SCREENS = (CheckResultScreen,)
ROUTES = {("check", "done"): "check_result"}
