"""The eToken adapter against SoftHSM2 as a real PKCS#11 module."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devices.sim.faults import PullableToken
from devices.sim.softhsm import FACTORY_SO_PIN
from devices.token import Pkcs11Token
from kiosk.errors import DeviceNotReady, InvalidPin, KeyMismatch, PinBlocked, TokenError
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm

USER_PIN = Pin("482916")
FACTORY = SoPin(FACTORY_SO_PIN)


def _issue(csr_der: bytes, days: int = 365) -> tuple[bytes, bytes]:
    """A throwaway CA signs the CSR's key (the central service's job in production)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Token Test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(name).public_key(csr.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days)).sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), ca.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def blank(softhsm, token_adapter) -> str:
    return softhsm.add_blank_token()


def test_present_reports_the_blank_token(token_adapter: Pkcs11Token, blank: str) -> None:
    info = token_adapter.present()
    assert info.serial == blank
    assert info.label == "eToken"
    assert info.model == "SoftHSM v2"
    assert info.initialised


def test_empty_softhsm_store_is_a_blank_token_not_a_missing_one(token_adapter: Pkcs11Token) -> None:
    """SoftHSM always offers one uninitialised slot: with no initialised token, that is the token in the slot.

    (A token missing from the slot cannot be made with SoftHSM: see the fault-injected pulled token.)
    """
    info = token_adapter.present()
    assert not info.initialised and info.serial == "" and info.model == "SoftHSM v2"


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.RSA2048, KeyAlgorithm.P256])
def test_personalise_keeps_key_on_token(token_adapter: Pkcs11Token, blank: str, algorithm: KeyAlgorithm) -> None:
    token_adapter.initialise(blank, FACTORY, SoPin("5f1e9c0d2a7b4e33"), "Ариун НЭ80000000", USER_PIN)
    info = token_adapter.info(blank)
    assert info.user_pin_set and info.serial == blank
    key_id = bytes.fromhex("a1b2c3d4")
    with token_adapter.session(blank, USER_PIN) as s:
        spki = s.generate_key_pair(key_id, "Tamga signing key", algorithm)
        assert s.find_public_key(key_id) == spki
        attrs = s.key_attributes(key_id)
        assert attrs == {"sensitive": True, "extractable": False, "never_extractable": True,
                         "always_sensitive": True}
        csr_der = s.sign_csr(key_id, "NE80000000")
        csr = x509.load_der_x509_csr(csr_der)
        assert csr.is_signature_valid
        key_type = rsa.RSAPublicKey if algorithm is KeyAlgorithm.RSA2048 else ec.EllipticCurvePublicKey
        assert isinstance(csr.public_key(), key_type)
        cert_der, ca_der = _issue(csr_der)
        s.install_certificate(key_id, "Tamga signing certificate", cert_der, [ca_der])
        s.install_certificate(key_id, "Tamga signing certificate", cert_der, [ca_der])  # idempotent
        certs = s.certificates()
    assert sorted(der for _, der in certs) == sorted([cert_der, ca_der])
    assert (key_id, cert_der) in certs


def test_new_so_pin_replaces_factory_pin(token_adapter: Pkcs11Token, blank: str) -> None:
    token_adapter.initialise(blank, FACTORY, SoPin("0e4c9a7715d3b2f8"), "T", USER_PIN)
    with pytest.raises(TokenError) as err:
        token_adapter.initialise(blank, FACTORY, FACTORY, "T", USER_PIN)
    assert err.value.data["reason"] == "so_pin_incorrect"
    token_adapter.initialise(blank, SoPin("0e4c9a7715d3b2f8"), SoPin("0e4c9a7715d3b2f8"), "T2", USER_PIN)
    assert token_adapter.info(blank).label == "T2"


def test_certificate_of_another_key_is_refused(token_adapter: Pkcs11Token, blank: str) -> None:
    token_adapter.initialise(blank, FACTORY, SoPin("1111aaaa2222bbbb"), "T", USER_PIN)
    with token_adapter.session(blank, USER_PIN) as s:
        s.generate_key_pair(b"\x01", "k1", KeyAlgorithm.P256)
        s.generate_key_pair(b"\x02", "k2", KeyAlgorithm.P256)
        other_cert, ca = _issue(s.sign_csr(b"\x02", "x"))
        with pytest.raises(KeyMismatch):
            s.install_certificate(b"\x01", "c", other_cert, [ca])
        assert s.certificates() == []


def test_wrong_user_pin_then_right_pin_works(token_adapter: Pkcs11Token, blank: str) -> None:
    token_adapter.initialise(blank, FACTORY, SoPin("1111aaaa2222bbbb"), "T", USER_PIN)
    with pytest.raises(InvalidPin), token_adapter.session(blank, Pin("000000")):
        pass
    # the failed login leaked no session: re-initialising (needs no open session) still works
    token_adapter.initialise(blank, SoPin("1111aaaa2222bbbb"), SoPin("1111aaaa2222bbbb"), "T", USER_PIN)
    with token_adapter.session(blank, USER_PIN) as s:
        assert s.certificates() == []


def test_pulled_token_fault_injected(token_adapter: Pkcs11Token, blank: str) -> None:
    token = PullableToken(token_adapter)
    token.pull()
    with pytest.raises(DeviceNotReady):
        token.present()
    token.insert()
    assert token.present().serial == blank
    token.lock_pin = True
    with pytest.raises(PinBlocked), token.session(blank, USER_PIN):
        pass
