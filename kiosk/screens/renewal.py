"""The renewal screens: the notice with the days left, the last day to apply, the fee from the
organisation's balance; confirming asks for the eToken PIN (the application is signed with the current key)."""

from __future__ import annotations

from typing import Any

from kiosk.engine import StepResult
from kiosk.screens.base import KioskScreen
from kiosk.screens.issuance import fee_text
from kiosk.screens.widgets import Text


class RenewalNoticeScreen(KioskScreen):
    """Seed 003's notice and application: days left, deadline, fee lines, balance; renew or leave."""

    screen_name = "renewal_notice"

    def render(self, result: StepResult, **_: Any) -> None:
        th, t = self.theme, self.t
        offer = result.view.renewal
        assert offer is not None, "the offer step has the renewal terms"
        body: list[Any] = [
            Text(th, t("renewal.notice", days=offer.days_left), bold=True),
            Text(th, t("screens.renewal.last_day", date=t.date(offer.last_request_day))),
            Text(th, f"{t('receipt.organisation')}: {offer.organisation} ({offer.organisation_register})"),
            *(Text(th, fee_text(t, line)) for line in offer.fees),
            Text(th, t("renewal.fee_from_balance")),
            Text(th, t("screens.renewal.balance", balance=t.money(offer.balance_mnt))),
        ]
        self.frame(t("renewal.title"), *body,
                   buttons=(self.leave_button(), self.button("screens.renewal.confirm", self.confirm)))

    def confirm(self) -> None:
        self.app.show("token_pin", result=self.result)     # the PIN signs the application (renewal.confirm)


SCREENS = (RenewalNoticeScreen,)
ROUTES = {("renewal", "offer"): "renewal_notice"}
