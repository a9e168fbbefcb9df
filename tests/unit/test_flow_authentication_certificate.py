"""Issuance of an order whose profile adds an authentication certificate (a second key on the token), over fakes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from devices.certificates import X509Reader
from kiosk.errors import KeyMismatch
from kiosk.i18n import Translator
from kiosk.pin import Pin
from kiosk.ports import IssuedCertificate
from kiosk.token_certificates import current_certificate
from kiosk.token_steps import AUTHENTICATION_LABEL, authentication_key_id
from tests.fakes import NOW, demo_order
from tests.unit.conftest import TOKEN_PIN, Rig

KAZAKH = "147314016754"


@pytest.fixture
def kazakh(rig: Rig) -> Rig:
    """The demo order as the central sends it for a profile with a separate authentication certificate."""
    rig.central.orders[KAZAKH] = dataclasses.replace(demo_order(), authentication_certificate=True)
    return rig


def certificates_by_key(rig: Rig) -> dict[bytes, x509.Certificate]:
    """The token's end-entity certificates (the CA chain left out) by CKA_ID."""
    reader = X509Reader()
    return {key_id: x509.load_der_x509_certificate(der) for key_id, der in rig.token.public_certificates("TK0001")
            if not reader.describe(der).is_ca}


def test_the_token_gets_a_second_key_and_its_authentication_certificate(kazakh: Rig) -> None:
    sid = kazakh.issue()
    data = kazakh.data(sid)
    signing_id = bytes.fromhex(data["key_id"])
    authentication_id = authentication_key_id(signing_id)
    assert data["authentication"]["key_id"] == authentication_id.hex() != data["key_id"]
    on_token = certificates_by_key(kazakh)
    assert set(on_token) >= {signing_id, authentication_id}
    signing, authentication = on_token[signing_id], on_token[authentication_id]
    assert authentication.public_key() != signing.public_key()
    assert ExtendedKeyUsageOID.CLIENT_AUTH in authentication.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert f"{authentication.serial_number:X}" == data["authentication"]["certificate"]["serial"]
    objects = kazakh.token.slot.objects                                       # type: ignore[union-attr]
    assert objects[authentication_id].private is not None                      # generated on the token

    # The flows after issuance see the signing certificate as the holder's, not the authentication one.
    _, current = current_certificate(kazakh.token, X509Reader())
    assert current.key_id == signing_id and current.facts.serial_hex == data["certificate"]["serial"]

    # The receipt lists both serials.
    lines = [line.text for line in kazakh.printer.printed[-1].lines]
    t = Translator("mn")
    assert t("receipt.authentication_serial") in lines
    grouped = data["authentication"]["certificate"]["serial"][:4]
    assert any(text.startswith(grouped) for text in lines[lines.index(t("receipt.authentication_serial")):])


def test_a_mongolian_order_stays_one_key_and_one_certificate(rig: Rig) -> None:
    sid = rig.issue()
    data = rig.data(sid)
    assert "authentication" not in data
    assert list(certificates_by_key(rig)) == [bytes.fromhex(data["key_id"])]
    printed = [line.text for line in rig.printer.printed[-1].lines]
    assert Translator("mn")("receipt.authentication_serial") not in printed


def test_a_keygen_retried_after_a_power_cut_finds_the_authentication_key_it_made(kazakh: Rig) -> None:
    f = kazakh.issuance
    sid = kazakh.to_token_step()
    f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    signing_id = bytes.fromhex(kazakh.data(sid)["key_id"])
    with kazakh.token.session("TK0001", Pin(TOKEN_PIN)) as s:    # what the cut visit had made on the token
        s.generate_key_pair(signing_id, "x", kazakh.engine.policy.key_algorithm)
        made = s.generate_key_pair(authentication_key_id(signing_id), AUTHENTICATION_LABEL.format(label="x"),
                                   kazakh.engine.policy.key_algorithm)
    kazakh.restart()
    kazakh.issuance.generate_key(sid, Pin(TOKEN_PIN))
    objects = kazakh.token.slot.objects                          # type: ignore[union-attr]
    assert len(objects) == 2
    for step in ("enroll", "install", "print_receipt"):
        getattr(kazakh.issuance, step)(sid)
    assert kazakh.data(sid)["authentication"]["public_key_sha256"] == hashlib.sha256(made).hexdigest()
    assert set(certificates_by_key(kazakh)) == {signing_id, authentication_key_id(signing_id)}
    assert len([o for o in objects.values() if o.private is not None]) == 2


def test_an_authentication_certificate_for_another_key_is_never_installed(kazakh: Rig,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    f = kazakh.issuance
    sid = kazakh.to_enrollment_step()
    enroll = kazakh.central.enroll

    def swapped(*args: object, **kwargs: object) -> IssuedCertificate:
        issued = enroll(*args, **kwargs)                           # type: ignore[arg-type]
        assert issued.authentication is not None
        other = dataclasses.replace(issued.authentication, public_key_sha256="00" * 32)
        return dataclasses.replace(issued, authentication=other)

    monkeypatch.setattr(kazakh.central, "enroll", swapped)
    with pytest.raises(KeyMismatch):
        f.enroll(sid)
    assert kazakh.store.load(sid).step == "enrollment"
    assert kazakh.store.events(sid)[-1] == "enrollment.refused"


def test_both_certificates_kept_at_one_kiosk_are_installed_at_another(kazakh: Rig) -> None:
    sid = kazakh.to_enrollment_step(KAZAKH)
    kazakh.central.down = True
    kazakh.issuance.defer(sid)
    kazakh.central.down = False
    kazakh.restart()
    kazakh.issuance.fetch_certificate(sid)                      # the deferring kiosk's sync daemon
    other = Rig(central=kazakh.central, token=kazakh.token)      # the holder inserts the token at another kiosk
    (found,) = other.issuance.token_inserted("kk")
    assert other.issuance.install(found.session_id, Pin(TOKEN_PIN)).error is None
    data, kept = other.data(found.session_id), kazakh.data(sid)
    assert (data["key_id"], data["authentication"]["key_id"]) == (kept["key_id"], kept["authentication"]["key_id"])
    on_token = certificates_by_key(other)
    assert {f"{c.serial_number:X}" for c in on_token.values()} == {
        kept["certificate"]["serial"], kept["authentication"]["certificate"]["serial"]}


def test_an_offline_visit_sends_both_requests_later_and_installs_both(kazakh: Rig) -> None:
    f = kazakh.issuance
    sid = kazakh.to_enrollment_step()
    kazakh.central.down = True
    assert f.defer(sid).step.value == "pending"
    kazakh.restart()
    kazakh.central.down = False
    assert kazakh.issuance.fetch_certificate(sid).step.value == "install"
    kazakh.issuance.install(sid, Pin(TOKEN_PIN))
    assert kazakh.issuance.print_receipt(sid).step.value == "done"
    data = kazakh.data(sid)
    signing_id = bytes.fromhex(data["key_id"])
    assert set(certificates_by_key(kazakh)) == {signing_id, authentication_key_id(signing_id)}


def test_a_renewal_renews_the_authentication_certificate_with_the_signing_one(kazakh: Rig) -> None:
    kazakh.central.validity = dt.timedelta(days=20)
    issued = kazakh.data(kazakh.issue())
    old_signing = bytes.fromhex(issued["key_id"])
    f = kazakh.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    r = f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    assert r.step.value == "install", r.error
    f.install(sid)
    assert f.print_receipt(sid).step.value == "done"
    data = kazakh.data(sid)
    new_signing = bytes.fromhex(data["new_key_id"])
    assert data["authentication"]["key_id"] == authentication_key_id(new_signing).hex()
    on_token = certificates_by_key(kazakh)
    assert set(on_token) == {old_signing, authentication_key_id(old_signing), new_signing,
                             authentication_key_id(new_signing)}      # the old pairs stay until they expire
    renewed = on_token[authentication_key_id(new_signing)]
    assert f"{renewed.serial_number:X}" == data["authentication"]["certificate"]["serial"]
    assert renewed.not_valid_after_utc == on_token[new_signing].not_valid_after_utc
    _, current = current_certificate(kazakh.token, X509Reader())
    assert current.key_id == new_signing
    lines = [line.text for line in kazakh.printer.printed[-1].lines]
    assert Translator("mn")("receipt.authentication_serial") in lines


def test_a_renewal_of_a_single_certificate_token_sends_no_second_request(rig: Rig) -> None:
    rig.central.validity = dt.timedelta(days=20)
    rig.issue()
    f = rig.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    assert f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN)).step.value == "install"
    assert "authentication" not in rig.data(sid) and not rig.central.authentication


def test_the_old_authentication_pair_goes_with_the_old_signing_pair_after_expiry(kazakh: Rig) -> None:
    kazakh.central.validity = dt.timedelta(days=20)
    old_signing = bytes.fromhex(kazakh.data(kazakh.issue())["key_id"])
    f = kazakh.renewal
    sid = f.begin("mn").session_id
    f.read_token(sid)
    f.confirm(sid, details_unchanged=True, pin=Pin(TOKEN_PIN))
    f.install(sid)
    f.print_receipt(sid)
    new_signing = bytes.fromhex(kazakh.data(sid)["new_key_id"])
    kazakh.now = NOW + dt.timedelta(days=21)                       # the day after the old pairs expired
    c = kazakh.check
    r = c.check(c.read_token(c.begin("mn").session_id).session_id, Pin(TOKEN_PIN))
    assert r.view.check is not None and r.view.check.signature_ok
    objects = kazakh.token.slot.objects                            # type: ignore[union-attr]
    assert old_signing not in objects and authentication_key_id(old_signing) not in objects
    assert set(certificates_by_key(kazakh)) == {new_signing, authentication_key_id(new_signing)}
