"""C_SetPIN on SoftHSM2 through the real adapter, and the early token preparation with a rejection on it."""

from __future__ import annotations

from typing import cast

import pytest

from devices.certificates import X509Reader
from devices.sim.faults import PowerCut, PullableToken
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.errors import InvalidPin
from kiosk.flows import ALL_FLOWS
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm
from tests.fakes import CARD_PIN, FakeToken
from tests.unit.conftest import TOKEN_PIN, Rig

OLD_PIN, NEW_PIN = Pin("271828"), Pin("482916")
KEY = bytes.fromhex("a1b2c3d4")


@pytest.fixture
def serial(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> str:
    serial = softhsm.add_blank_token()
    token_adapter.initialise(serial, SoPin(FACTORY_SO_PIN), SoPin("5f1e9c0d2a7b4e33"), "TAMGA T", OLD_PIN)
    return serial


def test_set_pin_replaces_the_user_pin_and_keeps_the_key(token_adapter: Pkcs11Token, serial: str) -> None:
    with token_adapter.session(serial, OLD_PIN) as session:
        spki = session.generate_key_pair(KEY, "k", KeyAlgorithm.P256)
        session.set_pin(OLD_PIN, NEW_PIN)
    with token_adapter.session(serial, NEW_PIN) as session:
        assert session.find_public_key(KEY) == spki
    with pytest.raises(InvalidPin), token_adapter.session(serial, OLD_PIN):
        pass


def test_set_pin_with_a_wrong_old_pin_is_an_invalid_pin_and_changes_nothing(token_adapter: Pkcs11Token,
                                                                            serial: str) -> None:
    with token_adapter.session(serial, OLD_PIN) as session, pytest.raises(InvalidPin):
        session.set_pin(Pin("999999"), NEW_PIN)
    with token_adapter.session(serial, OLD_PIN):
        pass


class SoftHsmRig(Rig):
    """The flows over fakes, but for the eToken: the real adapter on SoftHSM2 with its factory SO PIN.

    P-256 keys (12 ms on SoftHSM) where the key's kind does not matter; RSA-2048 where it is the point."""

    key_algorithm = KeyAlgorithm.P256

    def restart(self) -> None:
        services = Services(self.store, self.central, self.idcard, self.token, self.printer, X509Reader())
        policy = KioskPolicy(office="Test office", factory_so_pin=SoPin(FACTORY_SO_PIN),
                             key_algorithm=self.key_algorithm)
        self.engine = Engine(services, policy, ALL_FLOWS, clock=lambda: self.now)


class RsaSoftHsmRig(SoftHsmRig):
    key_algorithm = KeyAlgorithm.RSA2048


def _rig_on(token_adapter: Pkcs11Token, rig: type[SoftHsmRig] = SoftHsmRig) -> Rig:
    return rig(token=cast(FakeToken, token_adapter))


def _at_approval(rig: Rig) -> str:
    f = rig.issuance
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.find_order(sid, "147314016754")
    f.read_card(sid)
    f.verify_card_pin(sid, Pin(CARD_PIN))
    return sid


def test_early_rsa_key_on_softhsm_then_approval_takes_the_chosen_pin(softhsm: SoftHsmStore,
                                                                    token_adapter: Pkcs11Token) -> None:
    softhsm.add_blank_token()
    rig = _rig_on(token_adapter, RsaSoftHsmRig)
    sid = _at_approval(rig)
    assert rig.issuance.prepare_early(sid).error is None
    rig.issuance.approve(sid, "clerk-1", rig.issuance.current(sid).view.documents, False)
    rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    assert rig.issuance.generate_key(sid).step.value == "enrollment"
    data = rig.data(sid)
    serial = data["token"]["serial"]
    with token_adapter.session(serial, Pin(TOKEN_PIN)) as session:
        assert session.key_ids() == [bytes.fromhex(data["key_id"])]
    assert "token.pin_changed" in rig.store.events(sid) and "key.generated" in rig.store.events(sid)


def test_early_key_on_softhsm_is_destroyed_when_the_clerk_rejects(softhsm: SoftHsmStore,
                                                                 token_adapter: Pkcs11Token) -> None:
    softhsm.add_blank_token()
    rig = _rig_on(token_adapter)
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    data = rig.data(sid)
    temporary = rig.issuance.early_work.pin(sid)
    assert temporary is not None
    with token_adapter.session(data["token"]["serial"], temporary) as session:
        assert session.key_ids() == [bytes.fromhex(data["key_id"])]
    r = rig.issuance.reject(sid, "clerk-7", "documents_invalid")
    assert r.finished
    with token_adapter.session(data["token"]["serial"], temporary) as session:
        assert session.key_ids() == [] and session.certificates() == []


def test_early_key_on_softhsm_is_wiped_by_c_inittoken_when_a_restart_lost_the_temporary_pin(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    softhsm.add_blank_token()
    rig = _rig_on(token_adapter)
    sid = _at_approval(rig)
    rig.issuance.prepare_early(sid)
    rig.restart()
    r = rig.issuance.reject(sid, "clerk-7", "holder_not_present")
    assert r.finished and rig.store.journal[-1][2]["method"] == "reinitialised"
    serial = rig.data(sid)["token"]["serial"]
    assert token_adapter.public_certificates(serial) == []
    # Only the SO PIN the kiosk keeps opens it again, and it holds nothing.
    so_pin = rig.store.token_secret(serial)
    assert so_pin is not None
    token_adapter.initialise(serial, so_pin, so_pin, "TAMGA T", NEW_PIN)
    with token_adapter.session(serial, NEW_PIN) as session:
        assert session.key_ids() == []


@pytest.mark.parametrize("fault", ["crash_init_token", "crash_keygen_half"])
def test_power_cut_fault_injected_in_the_early_path_on_softhsm_prepares_the_token_again(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token, fault: str) -> None:
    """A power cut inside C_InitToken or C_GenerateKeyPair of the early path: after the restart the
    temporary PIN is gone, so preparing the token after approval initialises it again; one key remains."""
    softhsm.add_blank_token()
    token = PullableToken(token_adapter)
    rig = _rig_on(cast(Pkcs11Token, token))
    sid = _at_approval(rig)
    setattr(token, fault, True)
    with pytest.raises(PowerCut):
        rig.issuance.prepare_early(sid)
    token_adapter.reload()
    rig.restart()
    rig.issuance.approve(sid, "clerk-1", rig.issuance.current(sid).view.documents, False)
    rig.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    assert rig.issuance.generate_key(sid).step.value == "enrollment"
    data = rig.data(sid)
    with token_adapter.session(data["token"]["serial"], Pin(TOKEN_PIN)) as session:
        assert session.key_ids() == [bytes.fromhex(data["key_id"])]
