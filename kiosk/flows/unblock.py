"""PIN unblock: the holder brings the token and the ID card; the kiosk unblocks with the token's SO PIN.

Steps: consent → token (read the holder's certificate off the token) → identity (the card's holder
must be that certificate's holder) → new_pin (the SO PIN — this kiosk's, else the one escrowed at
the central by whichever kiosk personalised the token — sets the holder's new PIN) → done.
The SO PIN travels only as :class:`kiosk.pin.SoPin` and is never persisted by this flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, unique
from typing import Any

from kiosk.engine import FlowKind, StepResult
from kiosk.errors import KioskError, TokenWiped, WrongToken
from kiosk.events import EventKind
from kiosk.flows.token_check import certificate_view, token_view
from kiosk.identity import ExpectedHolder, IdentitySteps, card_view
from kiosk.pin import Pin, SoPin
from kiosk.ports import SessionState
from kiosk.records import unblock_data
from kiosk.token_certificates import current_certificate
from kiosk.views import StepView


@unique
class UnblockStep(Enum):
    CONSENT = "consent"
    TOKEN = "token"
    IDENTITY = "identity"
    NEW_PIN = "new_pin"
    DONE = "done"
    CANCELLED = "cancelled"


U = UnblockStep


class UnblockFlow(IdentitySteps):
    kind = FlowKind.UNBLOCK
    Step = UnblockStep
    first_step = UnblockStep.CONSENT
    after_consent = UnblockStep.TOKEN
    after_identity = UnblockStep.NEW_PIN

    def view(self, state: SessionState) -> StepView:
        data = unblock_data(state)
        return StepView(token=token_view(data), card=card_view(data),
                        certificate=certificate_view(data["certificate"], self.now()) if "certificate" in data
                        else None, timings_ms=dict(data.get("timings_ms", {})))

    def expected_holder(self, state: SessionState) -> ExpectedHolder:
        cert = state.data["certificate"]
        return ExpectedHolder(certificate_serial_number=cert["serial_number"],
                              names=(cert["given_name"], cert["surname"]))

    def read_token(self, session_id: str) -> StepResult:
        state = self.expect(session_id, U.TOKEN)
        data = unblock_data(state)
        info, current = current_certificate(self.services.token, self.services.certificates)
        data["token"] = {"serial": info.serial, "model": info.model, "label": info.label,
                         "pin_locked": info.user_pin_locked}
        data["certificate"] = current.to_dict()
        return self.result(self.advance(state, U.IDENTITY, data, EventKind.UNBLOCK_TOKEN_READ,
                                        token_serial=info.serial, serial=data["certificate"]["serial"],
                                        pin_locked=info.user_pin_locked))

    def _so_pin(self, data: Mapping[str, Any]) -> tuple[SoPin, str]:
        serial = data["token"]["serial"]
        local = self.services.store.token_secret(serial)
        if local is not None:
            return local, "kiosk"
        cert = data["certificate"]
        escrowed = self.services.central.escrowed_so_pin(serial, cert["serial"], cert["serial_number"])
        return escrowed, "central"

    def set_pin(self, session_id: str, new_pin: Pin, confirmation: Pin) -> StepResult:
        """Unblock with the SO PIN and set the holder's new PIN (policy checked first)."""
        state = self.expect(session_id, U.NEW_PIN)
        self.policy.pin_policy.check(new_pin, confirmation)
        data = unblock_data(state)
        serial = data["token"]["serial"]
        with self.engine.timed(data, U.NEW_PIN):
            present = self.services.token.present()
            if not present.initialised:
                # Blank (SoftHSM gives it a new serial): a power cut inside the PIN write wiped it.
                wiped = TokenWiped(serial=serial)
                ended = self.advance(state, U.CANCELLED, data, EventKind.UNBLOCK_REFUSED, token_serial=serial,
                                     reason="token_wiped")
                return self.result(ended, wiped)
            if present.serial != serial:
                raise WrongToken(serial=serial, present=present.serial)
            try:
                so_pin, source = self._so_pin(data)
                self.services.token.unblock(serial, so_pin, new_pin)
            except KioskError as err:
                self.record(state, data, EventKind.UNBLOCK_REFUSED, **{"token_serial": serial, **err.data})
                raise
        data["unblocked_at"] = self.now().isoformat()
        return self.result(self.advance(state, U.DONE, data, EventKind.UNBLOCKED, token_serial=serial,
                                        so_pin_source=source))
