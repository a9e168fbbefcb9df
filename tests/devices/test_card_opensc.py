"""The OpenSC way to the ID card on the real stack: OpenSC's ``opensc-pkcs11.so`` over the same pcscd +
vpcd virtual PIV card, feeding the one verification pipeline (path, revocation, binding, signature).

PIN safety holds here too: the token flags are read before a PIN goes out, a card at its final try
is never sent one, the tries left are shown where OpenSC tells them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.x509 import ocsp

from devices.cardprofiles import CardProfile, IdCardApplication, register_profile
from devices.idcard import IdCardReader
from devices.idcard_auto import AutoIdCardReader, id_card_reader_for
from devices.idcard_opensc import OPENSC_MODULES, OpenscIdCardReader, authentication_certificate, opensc_config
from devices.pcsc import wait_for_card, wait_for_removal
from devices.piv import AID_PIV, INS_GENERAL_AUTHENTICATE
from devices.revocation import RevocationChecker, RevocationMode, RevocationPolicy
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.national_ca_services import NationalIdServices, OcspMode
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardNotSupported, CardRevoked, DeviceNotReady, InvalidPin, PinBlocked
from kiosk.pin import Pin

pytestmark = pytest.mark.skipif(not any(p.exists() for p in OPENSC_MODULES),
                                reason="OpenSC's PKCS#11 module (opensc-pkcs11) not installed")

InsertCard = Callable[..., VirtualPivCard]
WRONG_PIN = Pin("000000")


def _spend_tries(card: VirtualPivCard, count: int) -> None:
    """Wrong PINs straight into the chip (outside any reader), as the holder's earlier attempts elsewhere."""
    card.process_apdu(bytes((0x00, 0xA4, 0x04, 0x00, len(AID_PIV))) + AID_PIV)
    for _ in range(count):
        card.process_apdu(bytes.fromhex("0020008008") + b"000000\xff\xff")
    card.clear_log()


@pytest.fixture
def opensc_reader(reader_name: str, national_ca: NationalIdCa) -> Iterator[OpenscIdCardReader]:
    reader = OpenscIdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates)
    yield reader
    reader.close()


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_the_opensc_path_verifies_the_virtual_card(opensc_reader: OpenscIdCardReader, insert_card: InsertCard,
                                                   rsa_card: CardPersonalisation, p256_card: CardPersonalisation,
                                                   key_type: str) -> None:
    personalisation = rsa_card if key_type == "rsa2048" else p256_card
    card = insert_card(personalisation)

    identity = opensc_reader.read_identity()
    signed = opensc_reader.authenticate(Pin(personalisation.pin), os.urandom(32), identity.certificate_sha256)

    assert identity.profile == "opensc"
    assert identity.serial_number == "PNOMN-NE80000000"
    assert identity.certificate_der == personalisation.certificate_der
    assert identity.card_uuid                                     # the token serial OpenSC gives the card
    assert signed.algorithm == ("rsa-pkcs1v15-sha256" if key_type == "rsa2048" else "ecdsa-p256-sha256")
    assert (INS_GENERAL_AUTHENTICATE, 0x9000) in card.apdu_log
    assert card.pin_tries_left == personalisation.pin_tries
    assert not card.pin_verified                                  # C_Logout reset the PIN status


def test_rsa_pss_through_opensc(reader_name: str, national_ca: NationalIdCa, insert_card: InsertCard,
                                rsa_card: CardPersonalisation) -> None:
    insert_card(rsa_card, rsa_pss_only=True)
    with OpenscIdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates,
                            rsa_padding="pss") as reader:
        identity = reader.read_identity()
        assert reader.authenticate(Pin(rsa_card.pin), os.urandom(32), identity.certificate_sha256).algorithm \
            == "rsa-pss-sha256"


def test_a_wrong_pin_through_opensc_says_so_and_then_the_final_try_is_refused(
        opensc_reader: OpenscIdCardReader, insert_card: InsertCard, rsa_card: CardPersonalisation) -> None:
    card = insert_card(rsa_card)
    identity = opensc_reader.read_identity()

    with pytest.raises(InvalidPin) as first:
        opensc_reader.authenticate(WRONG_PIN, os.urandom(32), identity.certificate_sha256)
    with pytest.raises(InvalidPin) as second:
        opensc_reader.authenticate(WRONG_PIN, os.urandom(32), identity.certificate_sha256)
    card.clear_log()
    with pytest.raises(PinBlocked) as refused:
        opensc_reader.authenticate(Pin(rsa_card.pin), os.urandom(32), identity.certificate_sha256)

    assert first.value.data["attempts_remaining"] is None          # PIV does not tell OpenSC its maximum
    assert second.value.data["attempts_remaining"] == 1             # OpenSC says: the final try
    assert refused.value.data["reason"] == "last_try"
    assert card.pin_tries_left == 1 and not card.pin_verified        # the right PIN, had it gone out: 3 tries
    assert INS_GENERAL_AUTHENTICATE not in [ins for ins, _sw in card.apdu_log]


def test_a_card_inserted_at_its_final_try_never_gets_a_pin_through_opensc(
        opensc_reader: OpenscIdCardReader, insert_card: InsertCard, rsa_card: CardPersonalisation) -> None:
    inserted = insert_card(rsa_card)
    _spend_tries(inserted, 2)                    # this very chip: two tries spent before the kiosk sees it
    identity = opensc_reader.read_identity()

    assert opensc_reader.pin_attempts() == 1
    with pytest.raises(PinBlocked) as refused:
        opensc_reader.authenticate(Pin(rsa_card.pin), os.urandom(32), identity.certificate_sha256)

    assert refused.value.data["reason"] == "last_try"
    assert inserted.pin_tries_left == 1 and not inserted.pin_verified
    assert INS_GENERAL_AUTHENTICATE not in [ins for ins, _sw in inserted.apdu_log]


def test_a_card_pulled_while_signing_through_opensc_is_a_device_not_ready_then_a_clean_retry(
        opensc_reader: OpenscIdCardReader, reader_name: str, insert_card: InsertCard,
        rsa_card: CardPersonalisation) -> None:
    card = insert_card(rsa_card)
    identity = opensc_reader.read_identity()
    card.pull_on_ins = INS_GENERAL_AUTHENTICATE

    with pytest.raises(DeviceNotReady) as pulled:
        opensc_reader.authenticate(Pin(rsa_card.pin), os.urandom(32), identity.certificate_sha256)
    assert pulled.value.data["device"] == "card"
    assert wait_for_removal(reader_name, 5)
    with pytest.raises(DeviceNotReady) as absent:
        opensc_reader.read_identity()
    assert absent.value.data["device"] == "card"

    card.insert()                                      # the holder puts the card back: OpenSC binds it again
    wait_for_card(reader_name, 5)
    again = opensc_reader.read_identity()
    assert opensc_reader.authenticate(Pin(rsa_card.pin), os.urandom(32), again.certificate_sha256)
    assert card.pin_tries_left == rsa_card.pin_tries


def test_auto_takes_the_native_path_for_a_piv_card(reader_name: str, national_ca: NationalIdCa,
                                                   insert_card: InsertCard, rsa_card: CardPersonalisation) -> None:
    insert_card(rsa_card)
    reader = id_card_reader_for("auto", reader_name, national_ca.trust_anchors, national_ca.intermediates)
    assert isinstance(reader, AutoIdCardReader)
    with reader:
        identity = reader.read_identity()
        reader.authenticate(Pin(rsa_card.pin), os.urandom(32), identity.certificate_sha256)
        assert identity.profile == "piv" and reader.active is reader.native


def test_auto_goes_to_opensc_when_the_native_applet_does_not_answer(
        reader_name: str, national_ca: NationalIdCa, insert_card: InsertCard, rsa_card: CardPersonalisation) -> None:
    """Fault-injecting profile: the native path looks for an applet (AID) this card lacks, as it would on a
    national eID that is no PIV card; OpenSC then reads the card its own way."""
    register_profile(CardProfile(name="absent-applet", aid=bytes.fromhex("A000000999"),
                                 open=lambda connection: _absent_applet(connection)), replace=True)
    insert_card(rsa_card)
    native = IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates, "absent-applet")
    opensc = OpenscIdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates)
    with AutoIdCardReader(native, opensc) as reader:
        identity = reader.read_identity()
        reader.authenticate(Pin(rsa_card.pin), os.urandom(32), identity.certificate_sha256)
        assert identity.profile == "opensc" and reader.active is opensc


def _absent_applet(connection: object) -> IdCardApplication:
    raise CardNotSupported("no such applet on this card", aid="A000000999")


def test_the_certificate_for_authentication_is_chosen_over_a_signing_one(rsa_card: CardPersonalisation) -> None:
    der = rsa_card.certificate_der
    assert authentication_certificate([(der, b"\x01")]) == (der, b"\x01")
    with pytest.raises(CardNotSupported):
        authentication_certificate([])


def test_opensc_runs_with_pin_caching_off_unless_a_technician_set_its_own_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENSC_CONF", raising=False)
    written = opensc_config(tmp_path / "opensc.conf")
    assert os.environ["OPENSC_CONF"] == str(written) == str(tmp_path / "opensc.conf")
    assert "use_pin_caching = false;" in written.read_text()
    monkeypatch.setenv("OPENSC_CONF", "/etc/opensc/technician.conf")
    assert opensc_config(tmp_path / "other.conf") == Path("/etc/opensc/technician.conf")
    assert not (tmp_path / "other.conf").exists()


# --- the same revocation check ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def revocation_ca(tmp_path_factory: pytest.TempPathFactory) -> NationalIdCa:
    return NationalIdCa.create(tmp_path_factory.mktemp("opensc-revocation-pki"))


@pytest.fixture(scope="module")
def services(revocation_ca: NationalIdCa) -> Iterator[NationalIdServices]:
    with NationalIdServices(revocation_ca) as running:
        yield running


def test_the_opensc_path_checks_revocation_as_the_native_one(
        tmp_path: Path, reader_name: str, revocation_ca: NationalIdCa, services: NationalIdServices,
        insert_card: InsertCard) -> None:
    ca = revocation_ca
    card = ca.issue_card(CardHolder(given_name="Сарнай", surname="Дамдин", register_number="УБ92010134"),
                         key_type="p256")
    checker = RevocationChecker(tmp_path / "crl-cache",
                                RevocationPolicy(RevocationMode.OCSP_THEN_CRL, dt.timedelta(days=3), 2.0),
                                issuers=list(ca.intermediates))
    insert_card(card)
    with OpenscIdCardReader(reader_name, ca.trust_anchors, ca.intermediates, revocation=checker) as reader:
        services.ocsp_mode = OcspMode.GOOD
        status = reader.read_identity().revocation
        assert status is not None and status.method == "ocsp"
        assert ocsp.load_der_ocsp_response(status.ocsp_response).certificate_status is ocsp.OCSPCertStatus.GOOD
        ca.revoke(card.certificate)
        with pytest.raises(CardRevoked):
            reader.read_identity()
