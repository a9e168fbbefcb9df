"""Binds features/identity.feature to the shared steps in features/conftest.py and the identity steps here."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from pytest_bdd import given, parsers, scenarios, then

from devices.sim.national_ca import NationalIdCa
from devices.sim.national_ca_services import OcspMode
from devices.sim.stack import ARIUN, CARD_PIN
from kiosk.i18n import Translator
from kiosk.identity import card_status_lines

scenarios("identity.feature")


@given("the national ID authority has revoked that card")
def _revoked(driver: Any) -> None:
    driver.stack.national_ca.revoke(driver.stack.card.personalisation.certificate)


@given("Ариун's expired ID card is in the reader")
def _expired(driver: Any) -> None:
    ca = driver.stack.national_ca
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    card = ca.issue_card(ARIUN, not_before=now - dt.timedelta(days=400),
                         not_after=now - dt.timedelta(days=2), pin=CARD_PIN)
    driver.stack.insert_card(personalisation=card)


@given("Ариун's ID card issued by a foreign authority is in the reader")
def _foreign(driver: Any) -> None:
    foreign = NationalIdCa.create(driver.stack.workdir / "foreign-id", root_name="Foreign National ID Root")
    driver.stack.insert_card(personalisation=foreign.issue_card(ARIUN, pin=CARD_PIN))


@given(parsers.parse("the authority's OCSP responder is down and its revocation list is {days:d} days past "
                     "its next update"))
def _offline(driver: Any, days: int) -> None:
    services = driver.stack.national_services
    services.ocsp_mode = OcspMode.DOWN
    services.crl_lifetime = dt.timedelta(days=1)
    services.crl_age = dt.timedelta(days=1 + days)


@given("the kiosk reads ID cards through OpenSC")
def _through_opensc(driver: Any) -> None:
    path = driver.stack.workdir / "kiosk-opensc.toml"
    path.write_text(driver.stack.config_path.read_text().replace("[idcard]\n", '[idcard]\nprofile = "opensc"\n', 1))
    driver.restart(config_path=path)


@then("the ID card still has its final PIN try")
def _final_try_kept(driver: Any) -> None:
    card = driver.stack.card
    assert card.pin_tries_left == 1 and not card.pin_verified


@then("the evidence says OpenSC read the card and holds the authority's OCSP answer")
def _opensc_evidence(driver: Any) -> None:
    evidence = _evidence(driver)
    assert evidence["card_profile"] == "opensc" and evidence["outcome"] == "verified"
    assert evidence["revocation"]["method"] == "ocsp"
    answer = ocsp.load_der_ocsp_response(base64.b64decode(evidence["revocation"]["ocsp_response"]))
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == driver.stack.card.personalisation.certificate.serial_number


@then(parsers.parse('the refusal "{key}" is journaled for the central'))
def _journaled(driver: Any, key: str) -> None:
    refusals = [json.loads(row["payload"]) for row in driver.kiosk.store.outbox()
                if row["kind"] == "identity.card_refused"]
    assert [r["refusal"] for r in refusals] == [key]


@then("the clerk sees that the offline grace was used")
def _grace_shown(driver: Any) -> None:
    card = driver.result.view.card
    assert card.revocation == "crl" and card.grace_used and card.crl_next_update is not None
    lines = card_status_lines(card, Translator("mn"))
    assert lines[0].startswith("Үнэмлэхний төлөвийг хүчингүй гэрчилгээний жагсаалт №")
    assert "хөнгөлөлтийн хугацаанд" in lines[1] and lines[2].startswith("Баталгаажуулалтын нотолгоо: crl ")


def _evidence(driver: Any) -> dict[str, Any]:
    return dict(driver.kiosk.store.load(driver.session_id).data["identity_evidence"])


@then("the evidence holds the card's certificate, the nonce, its signature and the revocation list that decided")
def _evidence_holds(driver: Any) -> None:
    evidence = _evidence(driver)
    certificate = x509.load_der_x509_certificate(base64.b64decode(evidence["certificate"]))
    assert certificate == driver.stack.card.personalisation.certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert evidence["certificate_sha256"] == hashlib.sha256(der).hexdigest()
    nonce, signature = base64.b64decode(evidence["nonce"]), base64.b64decode(evidence["signature"])
    assert len(nonce) == 32 and signature and evidence["outcome"] == "verified"
    assert evidence["signature_algorithm"] == "rsa-pkcs1v15-sha256"
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, nonce, padding.PKCS1v15(), hashes.SHA256())      # what the central can check again
    revocation = evidence["revocation"]
    crl = x509.load_der_x509_crl(driver.stack.national_services.current_crl())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert revocation["method"] == "crl" and revocation["grace_used"] and 0 < revocation["crl_number"] < number
    assert driver.result.view.card.evidence.startswith("crl rsa-pkcs1v15-sha256 ")


@then("the evidence is queued for the central without the PIN")
def _evidence_queued(driver: Any) -> None:
    rows = [row for row in driver.kiosk.store.outbox() if row["kind"] == "identity.evidence"]
    assert len(rows) == 1
    assert json.loads(rows[0]["payload"])["evidence"] == _evidence(driver)
    assert all(CARD_PIN not in row["payload"] for row in driver.kiosk.store.outbox())
