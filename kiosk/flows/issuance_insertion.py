"""What an issuance owes the eToken when it is inserted again, at this kiosk or at another of the office.

The visit may have ended offline with the request kept (``pending``).  At the token's next insertion
(:meth:`InsertionSteps.token_inserted`):

* this kiosk's own sessions for the token come first: a kept request to send (``pending``), a certificate
  to write (``install``), or a key to remove (``refused``: the central refused the kept request);
* else the central may have issued a certificate on the token for another kiosk's kept request: a new
  session at ``install`` writes it, the key found on the token by its public key's digest;
* else the central may know, from another kiosk's journal, a key on the token whose kept request it
  refused: a new session at ``refused`` removes it (and journals that, so no kiosk asks again).

A kiosk of another office is told of neither.  With the central unreachable only this kiosk's own
sessions are known.
"""

from __future__ import annotations

import hashlib
import logging

from kiosk.engine import StepResult
from kiosk.errors import CentralRejected, CentralUnavailable, KeyMismatch, OrderNotFound
from kiosk.events import EventKind
from kiosk.pin import Pin
from kiosk.ports import TokenInfo, TokenSession
from kiosk.records import issuance_data
from kiosk.token_steps import TokenSteps, authentication_issued

log = logging.getLogger("tamga.issuance")

PENDING, INSTALL, REFUSED, CANCELLED = "pending", "install", "refused", "cancelled"   # IssuanceStep values


class InsertionSteps(TokenSteps):
    def waiting_for_token(self, token_serial: str) -> list[StepResult]:
        """Issuances of this token at this kiosk whose certificate is pending or waits to be written, or whose
        refused key waits to be removed (oldest first)."""
        return [r for r in self.engine.unfinished() if r.flow is self.kind
                and r.step.value in (PENDING, INSTALL, REFUSED)
                and r.view.token is not None and r.view.token.serial == token_serial]

    def token_inserted(self, language: str) -> list[StepResult]:
        """What the token now in the slot is owed here (see the module); [] when nothing."""
        info = self.services.token.present()
        waiting = self.waiting_for_token(info.serial)
        if waiting:
            return waiting
        try:
            issued = self._issued_elsewhere(info, language)
            return [issued] if issued is not None else self._refused_elsewhere(info, language)
        except CentralUnavailable:
            log.info("central unreachable: nothing is looked for at the central for the inserted token",
                     extra={"token_serial": info.serial})
            return []

    def _issued_elsewhere(self, info: TokenInfo, language: str) -> StepResult | None:
        try:
            found = self.services.central.token_certificate(info.serial)
        except CentralRejected as err:
            if err.data.get("reason") == "certificate_not_found":    # none, or another office's token
                return None
            raise
        issued = found.certificate
        describe = self.services.certificates.describe
        if any(describe(der).serial_hex == issued.serial_hex
               for _, der in self.services.token.public_certificates(info.serial)):
            return None
        order = self.services.central.find_order("invoice", found.invoice)
        state = self.engine.load(self.begin(language).session_id)
        data = issuance_data(state)
        data["order"] = order.to_dict()
        data["token"] = {"serial": info.serial, "model": info.model, "label": info.label}
        data["public_key_sha256"] = issued.public_key_sha256
        data["certificate"] = {"pem": issued.certificate_pem, "chain": list(issued.chain_pem),
                               "serial": issued.serial_hex, "not_before": issued.not_before.isoformat(),
                               "not_after": issued.not_after.isoformat()}
        if issued.authentication is not None:      # its key's id follows from the signing key's, found at install
            data["authentication"] = authentication_issued(
                {"public_key_sha256": issued.authentication.public_key_sha256}, issued)
        return self.result(self.advance(state, self.Step(INSTALL), data, EventKind.CERTIFICATE_FOUND,
                                        serial=issued.serial_hex, token_serial=info.serial, order_id=found.order_id))

    def _refused_elsewhere(self, info: TokenInfo, language: str) -> list[StepResult]:
        sessions = []
        for key in self.services.central.refused_keys(info.serial):
            state = self.engine.load(self.begin(language).session_id)
            data = issuance_data(state)
            if key.invoice:
                try:
                    data["order"] = self.services.central.find_order("invoice", key.invoice).to_dict()
                except OrderNotFound:
                    log.warning("the refused key's order is not found", extra={"invoice": key.invoice})
            data["token"] = {"serial": info.serial, "model": info.model, "label": info.label}
            data["public_key_sha256"] = key.public_key_sha256
            data["refusal"] = {**key.refusal, "kiosk_id": key.kiosk_id}
            sessions.append(self.result(self.advance(state, self.Step(REFUSED), data, EventKind.REFUSED_KEY_FOUND,
                                                     token_serial=info.serial, kiosk_id=key.kiosk_id,
                                                     public_key_sha256=key.public_key_sha256)))
        return sessions

    def remove_unused_key(self, session_id: str, pin: Pin | None = None) -> StepResult:
        """The token is back: delete the key pair the refused request was for; the session ends.

        A session made for another kiosk's refusal finds the key by its digest; a token that no longer
        holds it (initialised again since) has nothing to remove, and the session ends the same.
        """
        state = self.expect(session_id, self.Step(REFUSED))
        user_pin = self.token_pin(session_id, pin)
        data = issuance_data(state)
        serial = self.check_token(data)
        found = True
        with self.token_session(state, serial, user_pin) as session:
            if "key_id" not in data:
                try:
                    data["key_id"] = self._key_of(session, data["public_key_sha256"], "").hex()
                except KeyMismatch:
                    found = False
            if found:
                session.remove_key(bytes.fromhex(data["key_id"]))
        self.pins.forget(session_id)
        data["refusal"] = {**data["refusal"], "key_removed_at": self.now().isoformat()}
        return self.result(self.advance(state, self.Step(CANCELLED), data, EventKind.UNUSED_KEY_REMOVED,
                                        token_serial=serial, public_key_sha256=data["public_key_sha256"],
                                        found=found, reason=data["refusal"].get("reason")))

    @staticmethod
    def _key_of(session: TokenSession, public_key_sha256: str, certificate_serial: str) -> bytes:
        """The CKA_ID of the token's key pair whose public key has this SHA-256; KeyMismatch when none has."""
        for key_id in session.key_ids():
            spki = session.find_public_key(key_id)
            if spki is not None and hashlib.sha256(spki).hexdigest() == public_key_sha256:
                return key_id
        raise KeyMismatch(certificate_serial=certificate_serial)
