"""The identity steps every flow that needs the holder shares: read the ID card, match, PIN challenge.

The card's holder is matched against what the flow expects (the order's holder, or the holder of a
certificate we issued) *before* any PIN is asked; the PIN goes only to the card this session read.
A flow mixes in :class:`IdentitySteps` and says what it expects in :meth:`expected_holder` and
which step follows in ``after_identity``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from kiosk import register
from kiosk.engine import Flow, StepResult
from kiosk.errors import CardChanged, CertificateInvalid, ConsentRequired, HolderMismatch, KioskError, WrongStep
from kiosk.events import EventKind
from kiosk.i18n import Translator
from kiosk.pin import Pin
from kiosk.ports import CardIdentity, ChallengeSignature, RevocationStatus, SessionState
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
    revocation = card.get("revocation") or {}
    next_update = revocation.get("crl_next_update")
    evidence = data.get("identity_evidence")
    summary = ""
    if evidence:
        method, algorithm = revocation.get("method", ""), evidence["signature_algorithm"]
        summary = f"{method} {algorithm} {evidence['certificate_sha256'][:12]}"
    return CardView(card["name"], card["serial_number"], bool(card["verified"]),
                    revocation=revocation.get("method", ""), grace_used=bool(revocation.get("grace_used")),
                    crl_next_update=dt.datetime.fromisoformat(next_update) if next_update else None,
                    crl_number=revocation.get("crl_number"), evidence=summary)


def card_status_lines(card: CardView, t: Translator) -> list[str]:
    """What the clerk reads of the card's revocation check and its evidence, in ``t``'s language."""
    if not card.revocation:
        return []
    lines = [t("identity.status.crl", crl_number=card.crl_number)
             if card.revocation == "crl" else t(f"identity.status.{card.revocation}")]
    if card.grace_used and card.crl_next_update is not None:
        lines.append(t("identity.status.grace", next_update=t.date(card.crl_next_update.date())))
    if card.evidence:
        lines.append(t("identity.evidence", evidence=card.evidence))
    return lines


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def revocation_record(status: RevocationStatus | None) -> dict[str, Any]:
    """The revocation outcome as session data keeps it (the OCSP answer as base64 DER)."""
    if status is None:
        return {"method": "none"}
    return {
        "method": status.method, "checked_at": status.checked_at.isoformat(),
        "ocsp_response": _b64(status.ocsp_response), "ocsp_url": status.ocsp_url,
        "crl_number": status.crl_number,
        "crl_this_update": status.crl_this_update.isoformat() if status.crl_this_update else "",
        "crl_next_update": status.crl_next_update.isoformat() if status.crl_next_update else "",
        "grace_used": status.grace_used,
    }


def evidence_record(identity: Mapping[str, Any], challenge: bytes, signed: ChallengeSignature | None,
                    outcome: str, at: dt.datetime) -> dict[str, Any]:
    """What one verification leaves behind for the central: the certificate and its hash, the nonce,
    the card's signature, the revocation evidence, the card profile, the time and the outcome (never the PIN)."""
    return {
        "certificate": identity["certificate"], "certificate_sha256": identity["certificate_sha256"],
        "nonce": _b64(challenge),
        "signature": _b64(signed.signature) if signed else "",
        "signature_algorithm": signed.algorithm if signed else "",
        "revocation": identity["revocation"],
        "card_profile": identity.get("profile", ""),            # which way reached the card: piv or opensc
        "verified_at": at.isoformat(), "outcome": outcome,
    }


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
        """Read the inserted ID card (chain, revocation) and check that its holder is the expected one
        (before any PIN).  A refused card is journaled with its reason."""
        state = self.expect(session_id, self.Step("identity"))
        data = dict(state.data)
        with self.engine.timed(data, self.Step("identity")):
            try:
                identity = self.services.idcard.read_identity()
            except CertificateInvalid as err:
                self.record(state, data, EventKind.CARD_REFUSED, refusal=err.key,
                            reason=str(err.data.get("reason", "")))
                raise
        mismatch = holder_mismatch(self.expected_holder(state), identity)
        if mismatch:
            self.record(state, data, EventKind.CARD_MISMATCH, field=mismatch,
                        card_serial=format(identity.certificate_serial, "x"))
            raise HolderMismatch(field=mismatch)
        certificate_hash = identity.certificate_sha256 or hashlib.sha256(identity.certificate_der).hexdigest()
        revocation = revocation_record(identity.revocation)
        data["card"] = {"name": identity.common_name, "serial_number": identity.serial_number,
                        "given_name": identity.given_name, "surname": identity.surname,
                        "certificate_serial": format(identity.certificate_serial, "x"),
                        "certificate_sha256": certificate_hash, "certificate": _b64(identity.certificate_der),
                        "issuer": identity.issuer, "card_uuid": identity.card_uuid, "profile": identity.profile,
                        "not_after": identity.not_after.isoformat(), "revocation": revocation, "verified": False}
        return self.result(self.record(state, data, EventKind.CARD_READ,
                                       certificate_serial=data["card"]["certificate_serial"],
                                       revocation_method=revocation["method"],
                                       grace_used=bool(revocation.get("grace_used"))))

    def verify_card_pin(self, session_id: str, pin: Pin) -> StepResult:
        """The PIN challenge: the card signs a fresh 32-byte nonce after VERIFY; a wrong PIN shows tries left.

        Only the card whose certificate's SHA-256 this session read gets the PIN.  Every attempt
        journals an evidence record (``identity.evidence``) that reaches the central with the session.
        """
        state = self.expect(session_id, self.Step("identity"))
        data = dict(state.data)
        if "card" not in data:
            raise WrongStep(session_id=session_id, expected=f"{self.kind.value}.identity.read_card",
                            actual=f"{state.flow}.{state.step}")
        card = data["card"]
        challenge = secrets.token_bytes(32)
        with self.engine.timed(data, self.Step("identity")):
            try:
                # Only the card this session read (and matched) gets the PIN: after a restart or a
                # swap, another card in the reader is refused before VERIFY.
                signed = self.services.idcard.authenticate(pin, challenge, card["certificate_sha256"])
            except CardChanged:
                data.pop("card")       # read the card again (and match its holder) before any PIN
                self.record(state, data, EventKind.CARD_CHANGED)
                raise
            except KioskError as err:
                failed = evidence_record(card, challenge, None, err.key, self.now())
                state = self.record(state, data, EventKind.CARD_PIN_FAILED, **err.data)
                self.record(state, data, EventKind.IDENTITY_EVIDENCE, evidence=failed)
                raise
        data["card"] = dict(card, verified=True)
        data["identity_evidence"] = evidence_record(card, challenge, signed, "verified", self.now())
        self.on_identity_verified(state, data)
        state = self.record(state, data, EventKind.IDENTITY_EVIDENCE, evidence=data["identity_evidence"])
        return self.result(self.advance(state, self.after_identity, data, EventKind.IDENTITY_VERIFIED,
                                        certificate_sha256=card["certificate_sha256"],
                                        revocation_method=card["revocation"]["method"],
                                        grace_used=bool(card["revocation"].get("grace_used"))))
