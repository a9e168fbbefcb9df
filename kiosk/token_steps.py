"""What every flow that logs in to the holder's eToken shares: the PIN, the right token, the login."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kiosk.engine import Flow
from kiosk.errors import InvalidPin, PinBlocked, PinRequired, WrongToken
from kiosk.events import EventKind
from kiosk.pin import Pin
from kiosk.ports import SessionState, TokenSession


class TokenSteps(Flow):
    def token_pin(self, session_id: str, pin: Pin | None) -> Pin:
        """The PIN given now, else the one the token accepted earlier in this process; else PinRequired."""
        if pin is not None:
            return pin
        known = self.pins.get(session_id)
        if known is None:
            raise PinRequired()
        return known

    def check_token(self, data: Mapping[str, Any]) -> str:
        """The serial of the session's token, if that token is the one in the slot (else WrongToken)."""
        serial: str = data["token"]["serial"]
        present = self.services.token.present()
        if present.serial != serial:
            raise WrongToken(serial=serial, present=present.serial)
        return serial

    @contextmanager
    def token_session(self, state: SessionState, serial: str, pin: Pin) -> Iterator[TokenSession]:
        """Log in; remember the PIN only once the token accepted it; journal and forget a refused one."""
        try:
            with self.services.token.session(serial, pin) as session:
                self.pins.remember(state.id, pin)
                yield session
        except (InvalidPin, PinBlocked) as err:
            self.pins.forget(state.id)
            self.record(state, dict(state.data), EventKind.TOKEN_PIN_REFUSED, blocked=isinstance(err, PinBlocked),
                        attempts_remaining=err.data.get("attempts_remaining"))
            raise
