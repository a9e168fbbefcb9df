"""«Does my signature work?»: the holder's PIN, a fresh challenge signed on the token and verified
against its certificate, and the certificate's status and days left as the central knows them.

Steps: token → pin → done.  Nothing is written to the token, except that a certificate a renewal
superseded is removed once it has expired (see :mod:`kiosk.token_certificates`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from enum import Enum, unique
from typing import Any

from kiosk.engine import Flow, FlowKind, StepResult
from kiosk.errors import CentralUnavailable, InvalidPin, NoCertificateOnToken, PinBlocked
from kiosk.events import EventKind
from kiosk.pin import Pin
from kiosk.ports import SessionState
from kiosk.records import check_data
from kiosk.token_certificates import current_certificate, holder_certificates, superseded
from kiosk.views import CertificateView, CheckView, StepView, TokenView
from kiosk.workdays import days_left


@unique
class CheckStep(Enum):
    TOKEN = "token"
    PIN = "pin"
    DONE = "done"
    CANCELLED = "cancelled"


def certificate_view(cert: Mapping[str, Any], now: dt.datetime) -> CertificateView:
    not_after = dt.datetime.fromisoformat(cert["not_after"])
    return CertificateView(cert["serial"], dt.datetime.fromisoformat(cert["not_before"]), not_after,
                           holder=cert.get("holder", ""), organisation=cert.get("organisation", ""),
                           status=cert.get("status", ""), days_left=days_left(now, not_after))


def token_view(data: Mapping[str, Any]) -> TokenView | None:
    token = data.get("token")
    return TokenView(token["serial"], token["model"], token["label"]) if token else None


class TokenCheckFlow(Flow):
    kind = FlowKind.CHECK
    Step = CheckStep
    first_step = CheckStep.TOKEN

    def view(self, state: SessionState) -> StepView:
        data, now = check_data(state), self.now()
        cert = certificate_view(data["certificate"], now) if "certificate" in data else None
        check = data.get("check")
        notice = ""
        if cert is not None and cert.status != "revoked" and cert.days_left is not None \
                and 0 <= cert.days_left <= self.policy.renewal_notice_days:
            notice = "renewal.notice"
        return StepView(token=token_view(data), certificate=cert,
                        check=CheckView(bool(check["signature_ok"]), cert) if check and cert else None,
                        notice=notice, timings_ms=dict(data.get("timings_ms", {})))

    def read_token(self, session_id: str) -> StepResult:
        """Read the inserted token's current certificate and ask the central for its status."""
        state = self.expect(session_id, CheckStep.TOKEN)
        data = check_data(state)
        with self.engine.timed(data, CheckStep.TOKEN):
            info, current = current_certificate(self.services.token, self.services.certificates)
            cert = current.to_dict()
            try:
                record = self.services.central.certificate(current.facts.serial_hex)
                cert["status"] = record.status.value
            except CentralUnavailable:
                cert["status"] = "unknown"       # shown as such: the signature check still runs
        data["token"] = {"serial": info.serial, "model": info.model, "label": info.label}
        data["certificate"] = cert
        return self.result(self.advance(state, CheckStep.PIN, data, EventKind.CHECK_TOKEN_READ,
                                        token_serial=info.serial, serial=cert["serial"], status=cert["status"]))

    def check(self, session_id: str, pin: Pin) -> StepResult:
        """Sign a fresh challenge on the token and verify it with the certificate; remove superseded pairs."""
        state = self.expect(session_id, CheckStep.PIN)
        data = check_data(state)
        serial = data["token"]["serial"]
        key_id = bytes.fromhex(data["certificate"]["key_id"])
        challenge = secrets.token_bytes(32)
        now = self.now()
        with self.engine.timed(data, CheckStep.PIN):
            certs = holder_certificates(self.services.token, self.services.certificates, serial)
            der = next((c.der for c in certs if c.key_id == key_id), None)
            if der is None:
                raise NoCertificateOnToken(serial=serial)
            try:
                with self.services.token.session(serial, pin) as session:
                    signature = session.sign(key_id, challenge)
                    removed = [old.facts.serial_hex for old in superseded(certs, now)]
                    for old in superseded(certs, now):
                        session.remove_key(old.key_id)
            except (InvalidPin, PinBlocked) as err:
                self.record(state, data, EventKind.TOKEN_PIN_REFUSED, blocked=isinstance(err, PinBlocked),
                            attempts_remaining=err.data.get("attempts_remaining"))
                raise
        ok = self.services.certificates.verify(der, challenge, signature)
        data["check"] = {"signature_ok": ok, "checked_at": now.isoformat(), "removed": removed}
        for old_serial in removed:
            state = self.record(state, data, EventKind.OLD_CERTIFICATE_REMOVED, serial=old_serial)
        return self.result(self.advance(state, CheckStep.DONE, data, EventKind.CHECKED, signature_ok=ok,
                                        serial=data["certificate"]["serial"],
                                        status=data["certificate"]["status"]))
