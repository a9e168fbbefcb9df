"""Fault-injecting token (``devices.sim.faults.PullableToken``) over the real adapter on SoftHSM2.

Every test here injects faults SoftHSM cannot produce: a locked user PIN, a power cut inside key
generation, a power cut inside C_InitToken, a pulled token.
"""

from __future__ import annotations

import shutil

import pytest
from cryptography import x509

from devices.sim.faults import PowerCut, PullableToken
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.errors import DeviceNotReady, InvalidPin, PinBlocked, TokenError
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm
from tests.devices.test_token import _issue
from tests.devices.test_token_blank import blank_softhsm_slot, token_object_sizes

USER_PIN = Pin("482916")
SO_PIN = SoPin("5f1e9c0d2a7b4e33")
LABEL = "TAMGA NE80000000"
KEY = bytes.fromhex("a1b2c3d4")


@pytest.fixture
def token(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> tuple[PullableToken, str]:
    serial = softhsm.add_blank_token()
    wrapped = PullableToken(token_adapter)
    wrapped.initialise(serial, SoPin(FACTORY_SO_PIN), SO_PIN, LABEL, USER_PIN)
    return wrapped, serial


def test_locked_user_pin_fault_injected_until_unblocked(token: tuple[PullableToken, str]) -> None:
    wrapped, serial = token
    wrapped.lock_pin = True
    assert wrapped.present().user_pin_locked
    with pytest.raises(PinBlocked), wrapped.session(serial, USER_PIN):    # even the right PIN
        pass
    with pytest.raises(TokenError) as err:
        wrapped.unblock(serial, SoPin(FACTORY_SO_PIN), Pin("730419"))
    assert err.value.data["reason"] == "so_pin_incorrect"
    with pytest.raises(PinBlocked), wrapped.session(serial, USER_PIN):    # a refused unblock keeps it locked
        pass
    new_pin = Pin("730419")
    wrapped.unblock(serial, SO_PIN, new_pin)
    assert not wrapped.lock_pin and not wrapped.present().user_pin_locked
    with wrapped.session(serial, new_pin) as s:
        assert s.certificates() == []
    with pytest.raises(InvalidPin), wrapped.session(serial, USER_PIN):
        pass


def test_locked_user_pin_fault_injected_is_cleared_by_reinitialising(token: tuple[PullableToken, str]) -> None:
    wrapped, serial = token
    wrapped.lock_pin = True
    wrapped.initialise(serial, SO_PIN, SO_PIN, LABEL, USER_PIN)
    with wrapped.session(serial, USER_PIN):
        pass


def test_power_cut_inside_keygen_fault_injected_leaves_a_half_pair_that_the_retry_replaces(
        token: tuple[PullableToken, str], softhsm: SoftHsmStore) -> None:
    wrapped, serial = token
    wrapped.crash_keygen_half = True
    with pytest.raises(PowerCut), wrapped.session(serial, USER_PIN) as s:
        s.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
    assert not wrapped.crash_keygen_half                                  # once
    if shutil.which("pkcs11-tool"):
        from tests.devices.test_token_keys import objects_by_id
        assert objects_by_id(softhsm) == [("public", KEY.hex())]
    with wrapped.session(serial, USER_PIN) as s:                          # the kiosk, restarted, retries
        assert s.find_public_key(KEY) is None
        spki = s.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
        csr = x509.load_der_x509_csr(s.sign_csr(KEY, "NE80000000"))
        assert csr.is_signature_valid
        cert, ca = _issue(s.sign_csr(KEY, "NE80000000"))
        s.install_certificate(KEY, "c", cert, [ca])
        assert s.key_ids() == [KEY] and s.find_public_key(KEY) == spki
    if shutil.which("pkcs11-tool"):
        mine = sorted(kind for kind, hexid in objects_by_id(softhsm) if hexid == KEY.hex())
        assert mine == ["certificate", "private", "public"]


def test_power_cut_inside_c_inittoken_fault_injected_leaves_a_blank_token(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token, token: tuple[PullableToken, str]) -> None:
    wrapped, serial = token
    wrapped.crash_init_token = True
    with pytest.raises(PowerCut):
        wrapped.initialise(serial, SO_PIN, SoPin("0e4c9a7715d3b2f8"), LABEL, USER_PIN)
    assert not wrapped.crash_init_token
    assert token_object_sizes(softhsm) == [0]              # as the measured crash leaves SoftHSM
    # the same process sees it (SoftHSM answers CKR_GENERAL_ERROR for the token until a rescan) …
    assert wrapped.present() == blank_softhsm_slot()
    with pytest.raises(DeviceNotReady):
        token_adapter.info(serial)                         # the token's serial is gone with it
    # … and so does the kiosk restarted after the power cut
    token_adapter.reload()
    blank = wrapped.present()
    assert blank == blank_softhsm_slot()
    info = wrapped.initialise(blank.serial, SO_PIN, SO_PIN, LABEL, USER_PIN)
    assert info.initialised and info.serial and info.serial != serial and info.label == LABEL
    with wrapped.session(info.serial, USER_PIN) as s:
        assert s.key_ids() == []


def test_power_cut_inside_c_inittoken_fault_injected_with_an_explicit_blanker(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    serial = softhsm.add_blank_token()
    wrapped = PullableToken(token_adapter, blank_token=softhsm.blank_token_as_after_init_crash)
    wrapped.crash_init_token = True
    with pytest.raises(PowerCut):
        wrapped.initialise(serial, SoPin(FACTORY_SO_PIN), SO_PIN, LABEL, USER_PIN)
    assert not wrapped.present().initialised


def test_pulled_token_fault_injected_fails_every_call(token: tuple[PullableToken, str]) -> None:
    wrapped, serial = token
    wrapped.pull()
    for call in (wrapped.present, lambda: wrapped.public_certificates(serial),
                 lambda: wrapped.unblock(serial, SO_PIN, USER_PIN),
                 lambda: wrapped.initialise(serial, SO_PIN, SO_PIN, LABEL, USER_PIN)):
        with pytest.raises(DeviceNotReady):
            call()
    with pytest.raises(DeviceNotReady), wrapped.session(serial, USER_PIN):
        pass
    wrapped.insert()
    wrapped.pull_before = "sign"
    with wrapped.session(serial, USER_PIN) as s:
        s.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
        with pytest.raises(DeviceNotReady):
            s.sign(KEY, b"x")
    wrapped.insert()
    assert wrapped.public_certificates(serial) == []


def test_pass_throughs_without_faults(token: tuple[PullableToken, str]) -> None:
    wrapped, serial = token
    with wrapped.session(serial, USER_PIN) as s:
        s.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
        cert, ca = _issue(s.sign_csr(KEY, "NE80000000"))
        s.install_certificate(KEY, "c", cert, [ca])
        assert s.sign(KEY, b"data")
    assert (KEY, cert) in wrapped.public_certificates(serial)
    with wrapped.session(serial, USER_PIN) as s:
        s.remove_key(KEY)
        assert s.find_public_key(KEY) is None
    wrapped.unblock(serial, SO_PIN, Pin("730419"))
    with wrapped.session(serial, Pin("730419")):
        pass
