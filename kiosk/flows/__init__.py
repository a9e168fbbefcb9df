"""The kiosk's flows, one file each; the engine (``kiosk.engine``) runs them."""

from __future__ import annotations

from kiosk.engine import Flow
from kiosk.flows.issuance import IssuanceFlow
from kiosk.flows.renewal import RenewalFlow
from kiosk.flows.revocation import RevocationFlow
from kiosk.flows.token_check import TokenCheckFlow
from kiosk.flows.unblock import UnblockFlow

ALL_FLOWS: tuple[type[Flow], ...] = (IssuanceFlow, RenewalFlow, RevocationFlow, UnblockFlow, TokenCheckFlow)

__all__ = ["ALL_FLOWS", "IssuanceFlow", "RenewalFlow", "RevocationFlow", "TokenCheckFlow", "UnblockFlow"]
