"""The eToken after issuance (SoftHSM2): signing, removing a key, public certificates, unblocking."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.errors import InvalidPin, TokenError
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm
from tests.devices.test_token import _issue

USER_PIN = Pin("482916")
SO_PIN = SoPin("5f1e9c0d2a7b4e33")
KEY = bytes.fromhex("a1b2c3d4")
OTHER = bytes.fromhex("0badc0de")


@pytest.fixture
def token(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> str:
    serial = softhsm.add_blank_token()
    token_adapter.initialise(serial, SoPin(FACTORY_SO_PIN), SO_PIN, "TAMGA NE80000000", USER_PIN)
    return serial


def verify(spki: bytes, data: bytes, signature: bytes) -> None:
    key = serialization.load_der_public_key(spki)
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.RSA2048, KeyAlgorithm.P256])
def test_sign_verifies_with_the_public_key(token_adapter: Pkcs11Token, token: str, algorithm: KeyAlgorithm) -> None:
    data = "renewal application: НЭ80000000".encode()
    with token_adapter.session(token, USER_PIN) as s:
        s.generate_key_pair(KEY, "k", algorithm)
        signature = s.sign(KEY, data)
        spki = s.find_public_key(KEY)
    assert spki is not None
    verify(spki, data, signature)
    with pytest.raises(InvalidSignature):
        verify(spki, data + b".", signature)


def test_sign_without_the_key_is_key_missing(token_adapter: Pkcs11Token, token: str) -> None:
    with token_adapter.session(token, USER_PIN) as s:
        with pytest.raises(TokenError) as err:
            s.sign(KEY, b"x")
        assert err.value.data["reason"] == "key_missing"


def test_remove_key_deletes_pair_and_certificate_only(token_adapter: Pkcs11Token, token: str) -> None:
    with token_adapter.session(token, USER_PIN) as s:
        s.generate_key_pair(KEY, "old", KeyAlgorithm.P256)
        s.generate_key_pair(OTHER, "new", KeyAlgorithm.P256)
        old_cert, ca = _issue(s.sign_csr(KEY, "NE80000000"))
        new_cert, ca2 = _issue(s.sign_csr(OTHER, "NE80000000"))
        s.install_certificate(KEY, "old", old_cert, [ca])
        s.install_certificate(OTHER, "new", new_cert, [ca2])
        other_spki = s.find_public_key(OTHER)
        s.remove_key(KEY)
        s.remove_key(KEY)                                   # idempotent
        assert s.find_public_key(KEY) is None
        assert s.key_ids() == [OTHER]
        assert s.find_public_key(OTHER) == other_spki
        remaining = s.certificates()
    assert (KEY, old_cert) not in remaining
    assert (OTHER, new_cert) in remaining
    assert {der for _, der in remaining} == {new_cert, ca, ca2}   # CA certificates have their own ids


def test_public_certificates_need_no_login(token_adapter: Pkcs11Token, token: str) -> None:
    assert token_adapter.public_certificates(token) == []
    with token_adapter.session(token, USER_PIN) as s:
        s.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
        cert, ca = _issue(s.sign_csr(KEY, "NE80000000"))
        s.install_certificate(KEY, "c", cert, [ca])
        logged_in = s.certificates()
    public = token_adapter.public_certificates(token)
    assert sorted(public) == sorted(logged_in)
    assert (KEY, cert) in public


def test_unblock_sets_a_new_user_pin(token_adapter: Pkcs11Token, token: str) -> None:
    for _ in range(3):       # SoftHSM never locks the PIN: what unblock changes is which PIN works
        with pytest.raises(InvalidPin), token_adapter.session(token, Pin("000000")):
            pass
    with token_adapter.session(token, USER_PIN) as s:
        s.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
    new_pin = Pin("730419")
    token_adapter.unblock(token, SO_PIN, new_pin)
    with pytest.raises(InvalidPin), token_adapter.session(token, USER_PIN):
        pass
    with token_adapter.session(token, new_pin) as s:
        assert s.find_public_key(KEY) is not None          # unblocking keeps the keys
    assert token_adapter.info(token).user_pin_set


def test_unblock_with_a_wrong_so_pin_is_refused(token_adapter: Pkcs11Token, token: str) -> None:
    with pytest.raises(TokenError) as err:
        token_adapter.unblock(token, SoPin(FACTORY_SO_PIN), Pin("730419"))
    assert err.value.data["reason"] == "so_pin_incorrect"
    with token_adapter.session(token, USER_PIN):             # the user PIN is unchanged
        pass
    # the failed SO login leaked no session: C_InitToken (which needs none open) still works
    token_adapter.initialise(token, SO_PIN, SO_PIN, "T", USER_PIN)


def test_unblock_a_blank_token_is_refused(token_adapter: Pkcs11Token) -> None:
    blank = token_adapter.present()
    assert not blank.initialised
    with pytest.raises(TokenError) as err:
        token_adapter.unblock(blank.serial, SO_PIN, USER_PIN)
    assert err.value.data["reason"] == "not_initialised"


def test_so_pins_must_be_sopin(token_adapter: Pkcs11Token, token: str) -> None:
    with pytest.raises(TypeError):
        token_adapter.initialise(token, FACTORY_SO_PIN, SO_PIN, "T", USER_PIN)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        token_adapter.unblock(token, "5f1e9c0d2a7b4e33", USER_PIN)  # type: ignore[arg-type]
