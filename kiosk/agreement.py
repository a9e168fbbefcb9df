"""The holder agreement step at the end of issuance: sign it on the token, hand it to the central (or queue it).

Seed 000 §5 (Тоон гарын үсгийн гэрчилгээ эзэмших гэрээ, «Би гэрээний нөхцөлийг зөвшөөрч байна») and
seed 004 §9: the applicant accepted the certificate-holder agreement with the order; once the
certificate is on the token, the holder signs that agreement (filled in with their name, register
number, the certificate and token serials, the date) with the new key, which never leaves the
token.  The holder types the eToken PIN once more for it; that PIN is used for this one signature
and not kept (not even in the engine's PIN cache).

A flow mixes in :class:`AgreementSteps`, says which step follows in ``after_agreement`` and which
adapter signs in :meth:`agreement_signer`.  How the issuance flow takes it in (the lead wires it;
``kiosk/flows/issuance.py`` is not changed here):

1. ``IssuanceStep`` gets ``AGREEMENT = "agreement"``; ``install`` advances to ``S.AGREEMENT``
   instead of ``S.RECEIPT`` (its event stays ``CERTIFICATE_INSTALLED``).
2. ``class IssuanceFlow(AgreementSteps, IdentitySteps, TokenSteps, ReceiptSteps)`` with
   ``after_agreement = S.RECEIPT`` and ``def agreement_signer(self): return self.services.agreement``
   (a ``Services.agreement: AgreementSigner`` field, built in ``kiosk/shell/app.py`` as
   ``devices.agreement.Pkcs11AgreementSigner(token_adapter)``; ``tests.fakes.FakeAgreementSigner`` in the Rig).
3. The screen at ``agreement`` asks for the PIN (``agreement.sign.prompt``) and calls
   ``sign_agreement(session_id, pin)``; ``InvalidPin`` keeps the session at the step (tries left shown).
4. ``receipt_facts`` passes ``agreement_signed=bool(data.get("agreement"))`` to
   :class:`kiosk.receipt.ReceiptFacts`, which then prints the agreement lines.
5. ``queued(state)`` returns ``self.queued_agreement(state)`` when the flow has nothing else queued.
   A visit that reached ``done`` with ``data["agreement"]["sent"]`` false (the central went away between
   issuance and the agreement) is marked ``awaits_central`` by the engine
   (:data:`kiosk.engine.AWAITS_CENTRAL`): the sync daemon is still offered its call, and the retention
   purge keeps the session until the agreement is sent (or refused).

Session data: ``agreement = {"sha256", "signed_at", "sent", "pdf", "refused"}`` (``pdf``: base64 of the
signed PDF, dropped once the central has it; ``refused``: the central's reason when it refused it, which
is not retried: the PDF stays for the clerk).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, ClassVar

from kiosk import register
from kiosk.engine import Flow, StepResult
from kiosk.errors import CentralRejected, CentralUnavailable, InvalidPin, KioskError, PinBlocked
from kiosk.events import EventKind
from kiosk.i18n import Translator
from kiosk.order import Order
from kiosk.pin import Pin
from kiosk.ports import AgreementFacts, AgreementKey, AgreementSigner, SessionState
from kiosk.token_certificates import pem_to_der


def agreement_facts(data: Mapping[str, Any], language: str, office: str, currency: str,
                    at: dt.datetime) -> AgreementFacts:
    """What the agreement of an issued session says (``at``: aware, in the office's time zone)."""
    order = Order.from_dict(data["order"])
    number = order.holder.register_number
    return AgreementFacts(
        country=register.country_of(number) or "MN", language=language, holder_name=order.holder.full_name,
        register_number=number, certificate_serial=data["certificate"]["serial"].upper(),
        token_serial=data["token"]["serial"], signed_on=at.date(), office=office,
        paid=Translator(language, currency).money(order.paid_mnt))


def agreement_key(data: Mapping[str, Any]) -> AgreementKey:
    cert = data["certificate"]
    return AgreementKey(token_serial=data["token"]["serial"], key_id=bytes.fromhex(data["key_id"]),
                        certificate_der=pem_to_der(cert["pem"]),
                        chain_der=tuple(pem_to_der(pem) for pem in cert["chain"]))


class AgreementSteps(Flow):
    """The ``agreement`` step: ``sign_agreement`` (PIN once more), then ``after_agreement``."""

    after_agreement: ClassVar[Enum]

    def agreement_signer(self) -> AgreementSigner:
        raise NotImplementedError

    def agreement_view(self, state: SessionState) -> AgreementFacts:
        """What the agreement the holder is about to sign says, for the screen (today's date in the office)."""
        at = self.now().astimezone(self.policy.timezone)
        return agreement_facts(state.data, state.language, self.policy.office, self.policy.currency, at)

    def sign_agreement(self, session_id: str, pin: Pin) -> StepResult:
        """Sign the holder agreement on the token with the new key, send it to the central, go on.

        A refused PIN is journalled and raised (the session stays); an unreachable central does not
        hold the visit: the signed PDF waits in the session for :meth:`queued_agreement`.
        """
        state = self.expect(session_id, self.Step("agreement"))
        data = dict(state.data)
        at = self.now().astimezone(self.policy.timezone)
        with self.engine.timed(data, self.Step("agreement")):
            try:
                pdf = self.agreement_signer().sign(
                    agreement_facts(data, state.language, self.policy.office, self.policy.currency, at),
                    agreement_key(data), pin)
            except (InvalidPin, PinBlocked) as err:
                self.record(state, data, EventKind.TOKEN_PIN_REFUSED, blocked=isinstance(err, PinBlocked),
                            attempts_remaining=err.data.get("attempts_remaining"))
                raise
        digest = hashlib.sha256(pdf).hexdigest()
        data["agreement"] = {"sha256": digest, "signed_at": at.isoformat(), "sent": False,
                             "pdf": base64.b64encode(pdf).decode("ascii")}
        error: KioskError | None = None
        try:
            data = self._send(data)
        except CentralUnavailable as err:
            error = err            # queued: the PDF waits in the session
        except CentralRejected as err:
            error = err            # kept for the clerk, not sent again: the certificate is issued all the same
            data["agreement"] = dict(data["agreement"], refused=err.data.get("reason", ""))
        return self.result(self.advance(state, self.after_agreement, data, EventKind.AGREEMENT_SIGNED,
                                        serial=data["certificate"]["serial"], agreement_sha256=digest,
                                        sent=data["agreement"]["sent"],
                                        reason=data["agreement"].get("refused")), error)

    def _send(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the agreement sent (its PDF dropped); raises CentralUnavailable, CentralRejected.

        ``agreement_exists``: the central already keeps one for this certificate, which only this
        token's key can have signed (a send whose answer was lost, then a signature again): sent.
        """
        agreement = dict(data["agreement"])
        try:
            self.services.central.submit_agreement(data["certificate"]["serial"], base64.b64decode(agreement["pdf"]))
        except CentralRejected as err:
            if err.data.get("reason") != "agreement_exists":
                raise
        agreement.update(sent=True)
        agreement.pop("pdf")
        return dict(data, agreement=agreement)

    def queued_agreement(self, state: SessionState) -> Callable[[], StepResult] | None:
        """The call that sends a signed agreement the central did not get yet, or None."""
        agreement = state.data.get("agreement")
        if not agreement or agreement.get("sent") or agreement.get("refused"):
            return None
        return lambda: self.send_agreement(state.id)

    def send_agreement(self, session_id: str) -> StepResult:
        """Send the session's signed agreement (the sync daemon's queued call); raises CentralUnavailable."""
        state = self.engine.load(session_id)
        if self.queued_agreement(state) is None:
            return self.result(state)
        data = dict(state.data)
        try:
            data = self._send(data)
        except CentralRejected as err:
            data["agreement"] = dict(data["agreement"], refused=err.data.get("reason", ""))
            return self.result(self.record(state, data, EventKind.AGREEMENT_SENT, serial=data["certificate"]["serial"],
                                           agreement_sha256=data["agreement"]["sha256"],
                                           reason=data["agreement"]["refused"]), err)
        return self.result(self.record(state, data, EventKind.AGREEMENT_SENT, serial=data["certificate"]["serial"],
                                       agreement_sha256=data["agreement"]["sha256"]))
