"""The kiosk's flows, one file each; the engine (``kiosk.engine``) runs them."""

from __future__ import annotations

from typing import cast

from kiosk.engine import Engine, Flow, FlowKind
from kiosk.flows.issuance import IssuanceFlow
from kiosk.flows.renewal import RenewalFlow
from kiosk.flows.revocation import RevocationFlow
from kiosk.flows.token_check import TokenCheckFlow
from kiosk.flows.unblock import UnblockFlow

ALL_FLOWS: tuple[type[Flow], ...] = (IssuanceFlow, RenewalFlow, RevocationFlow, UnblockFlow, TokenCheckFlow)



class FlowAccess:
    """Each flow of ``self.engine``, typed (for the app shell, the demo and tests)."""

    engine: Engine

    @property
    def issuance(self) -> IssuanceFlow:
        return cast(IssuanceFlow, self.engine.flow(FlowKind.ISSUANCE))

    @property
    def renewal(self) -> RenewalFlow:
        return cast(RenewalFlow, self.engine.flow(FlowKind.RENEWAL))

    @property
    def revocation(self) -> RevocationFlow:
        return cast(RevocationFlow, self.engine.flow(FlowKind.REVOCATION))

    @property
    def unblock(self) -> UnblockFlow:
        return cast(UnblockFlow, self.engine.flow(FlowKind.UNBLOCK))

    @property
    def check(self) -> TokenCheckFlow:
        return cast(TokenCheckFlow, self.engine.flow(FlowKind.CHECK))


__all__ = ["ALL_FLOWS", "FlowAccess", "IssuanceFlow", "RenewalFlow", "RevocationFlow", "TokenCheckFlow", "UnblockFlow"]
