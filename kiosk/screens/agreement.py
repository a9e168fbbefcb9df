"""The holder agreement at the end of issuance (``[token] holder_agreement``): what is signed, then the PIN.

The screen shows the agreement as it will be signed, filled in with the holder's name, register
number, certificate and token serials, the office, the date and the amount paid (the text is the one
the PDF is laid out from, ``devices/agreement_texts``), scrolled when longer than the screen.  "Sign"
opens the eToken PIN pad; a wrong PIN comes back to the pad with the tries left and keeps the step.
A central that cannot be reached or refuses the signed agreement does not hold the visit up: the
agreement waits in the session for the sync daemon (or for the clerk), and the receipt comes next.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from kiosk.engine import StepResult
from kiosk.errors import CentralRejected, CentralUnavailable, InvalidPin, KioskError
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import PinPad, Text

if TYPE_CHECKING:
    from devices.agreement import AgreementText

log = logging.getLogger("tamga.screens")


@cache
def agreement_text() -> AgreementText:
    """The agreement's texts, read once (and the module only when a kiosk has the step: not at start)."""
    from devices.agreement import AgreementText

    return AgreementText()


class AgreementScreen(KioskScreen):
    """The agreement to read (``pin=False``), then the eToken PIN pad that signs it (``pin=True``)."""

    screen_name = "agreement"

    def render(self, result: StepResult, pin: bool = False, tries_left: int | None = None, message: str = "",
               **_: Any) -> None:
        th, t = self.theme, self.t
        facts = result.view.agreement
        assert facts is not None, "the agreement step's view carries what it says"
        if pin:
            info = (Text(th, message, color=th.danger, bold=True),) if message else ()
            self.pad = PinPad(th, t, t("agreement.sign.prompt"), self.submit, tries_left=tries_left, info=info)
            self.frame(t("step.agreement"), self.pad,
                       buttons=(self.button("screens.agreement.read_again", self.read, kind="secondary"),),
                       scroll=False)
            return
        heading, blocks = agreement_text().fill(dataclasses.replace(facts, language=result.language))
        body = [Text(th, t("screens.agreement.read"), color=th.muted, size=th.small_size)]
        body += [Text(th, line, bold=kind == "heading") for kind, line in blocks]
        self.frame(heading, *body, buttons=(self.button("screens.agreement.sign", self.sign),))

    def read(self) -> None:
        self.app.show("agreement", result=self.result)

    def sign(self) -> None:
        self.app.show("agreement", result=self.result, pin=True)

    def submit(self) -> None:
        if self.pad.length == 0:
            return
        pin, result = self.pad.take(), self.result
        sid, flow = result.session_id, self.app.kiosk.engine.flow(result.flow)

        def refused(err: KioskError) -> None:
            if isinstance(err, InvalidPin):
                self.app.show("agreement", result=result, pin=True, tries_left=err.data.get("attempts_remaining"),
                              message=self.t.error(err))
            else:
                self.app.show_error(err, retry=lambda: self.app.show("agreement", result=result, pin=True))

        self.run(lambda: flow.sign_agreement(sid, pin), on_done=self.signed,   # type: ignore[attr-defined]
                 on_error=refused)

    def signed(self, result: StepResult) -> None:
        """Signed: on to the receipt, even when the central did not take the agreement now (it waits)."""
        if isinstance(result.error, CentralUnavailable | CentralRejected):
            log.info("holder agreement kept for later: %s", result.error.key, extra={"session": result.session_id})
            if isinstance(result.error, CentralUnavailable):
                self.app.central_online = False
            result = dataclasses.replace(result, error=None)
        self.app.show_result(result)


SCREENS = (AgreementScreen,)
ROUTES = {("issuance", "agreement"): "agreement"}
