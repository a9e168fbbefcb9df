"""The identity steps every flow that needs the holder shares: read the ID card, match, PIN challenge.

The card's holder is matched against what the flow expects (the order's holder, or the holder of a
certificate we issued) *before* any PIN is asked; the PIN goes only to the card this session read.
A flow mixes in :class:`IdentitySteps` and says what it expects in :meth:`expected_holder` and
which step follows in ``after_identity``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from kiosk import register
from kiosk.engine import Flow, StepResult
from kiosk.errors import CardChanged, ConsentRequired, HolderMismatch, KioskError, WrongStep
from kiosk.events import EventKind
from kiosk.pin import Pin
from kiosk.ports import CardIdentity, SessionState
from kiosk.views import CardView


@dataclass(frozen=True)
class ExpectedHolder:
    """Who must be holding the card.  Every given field must match; none given: anyone (revocation)."""

    register_number: str = ""          # as on an order (Cyrillic letters + digits, or digits)
    certificate_serial_number: str = ""  # the subject serialNumber of a certificate we issued (PNOMN-…)
    names: tuple[str, ...] = ()        # words that must all appear in the card's names


def holder_mismatch(expected: ExpectedHolder, identity: CardIdentity) -> str | None:
    """Which field differs between the card's holder and the expected holder, or None."""
    if expected.register_number and not register.same_person(expected.register_number, identity.serial_number):
        return "register_number"
    if (expected.certificate_serial_number
            and expected.certificate_serial_number.strip().upper() != identity.serial_number.strip().upper()):
        return "register_number"
    card_names = {w.casefold() for w in f"{identity.common_name} {identity.given_name} {identity.surname}".split()}
    wanted = {w.casefold() for name in expected.names for w in name.split()}
    if not wanted <= card_names:
        return "name"
    return None


def card_view(data: Mapping[str, Any]) -> CardView | None:
    card = data.get("card")
    if card is None:
        return None
    return CardView(card["name"], card["serial_number"], bool(card["verified"]))


class IdentitySteps(Flow):
    """``consent`` (to reading the ID card), then ``read_card`` and ``verify_card_pin`` at the ``identity`` step."""

    after_consent: ClassVar[Enum]
    after_identity: ClassVar[Enum]

    def consent(self, session_id: str, accepted: bool) -> StepResult:
        """The privacy consent: what is read from the ID card, why, for how long; without it, nothing is read."""
        state = self.expect(session_id, self.Step("consent"))
        if not accepted:
            raise ConsentRequired()
        data = dict(state.data, consent_at=self.now().isoformat())
        return self.result(self.advance(state, self.after_consent, data, EventKind.CONSENT_GIVEN))

    def expected_holder(self, state: SessionState) -> ExpectedHolder:
        raise NotImplementedError

    def on_identity_verified(self, state: SessionState, data: dict[str, Any]) -> None:
        """Add what the next step needs to ``data`` (e.g. the holder's certificates); may raise to refuse."""

    def read_card(self, session_id: str) -> StepResult:
        """Read the inserted ID card and check that its holder is the expected one (before any PIN)."""
        state = self.expect(session_id, self.Step("identity"))
        data = dict(state.data)
        with self.engine.timed(data, self.Step("identity")):
            identity = self.services.idcard.read_identity()
        mismatch = holder_mismatch(self.expected_holder(state), identity)
        if mismatch:
            self.record(state, data, EventKind.CARD_MISMATCH, field=mismatch,
                        card_serial=format(identity.certificate_serial, "x"))
            raise HolderMismatch(field=mismatch)
        data["card"] = {"name": identity.common_name, "serial_number": identity.serial_number,
                        "given_name": identity.given_name, "surname": identity.surname,
                        "certificate_serial": format(identity.certificate_serial, "x"),
                        "issuer": identity.issuer, "card_uuid": identity.card_uuid,
                        "not_after": identity.not_after.isoformat(), "verified": False}
        return self.result(self.record(state, data, EventKind.CARD_READ,
                                       certificate_serial=data["card"]["certificate_serial"]))

    def verify_card_pin(self, session_id: str, pin: Pin) -> StepResult:
        """The PIN challenge: the card signs a fresh challenge after VERIFY; a wrong PIN shows tries left."""
        state = self.expect(session_id, self.Step("identity"))
        data = dict(state.data)
        if "card" not in data:
            raise WrongStep(session_id=session_id, expected=f"{self.kind.value}.identity.read_card",
                            actual=f"{state.flow}.{state.step}")
        challenge = secrets.token_bytes(32)
        with self.engine.timed(data, self.Step("identity")):
            try:
                # Only the card this session read (and matched) gets the PIN: after a restart or a
                # swap, another card in the reader is refused before VERIFY.
                self.services.idcard.authenticate(pin, challenge, int(data["card"]["certificate_serial"], 16))
            except CardChanged:
                data.pop("card")       # read the card again (and match its holder) before any PIN
                self.record(state, data, EventKind.CARD_CHANGED)
                raise
            except KioskError as err:
                self.record(state, data, EventKind.CARD_PIN_FAILED, **err.data)
                raise
        data["card"] = dict(data["card"], verified=True)
        data["identity_evidence"] = {
            "challenge_sha256": hashlib.sha256(challenge).hexdigest(),
            "certificate_serial": data["card"]["certificate_serial"],
            "verified_at": self.now().isoformat(),
        }
        self.on_identity_verified(state, data)
        return self.result(self.advance(state, self.after_identity, data, EventKind.IDENTITY_VERIFIED,
                                        evidence=data["identity_evidence"]))
