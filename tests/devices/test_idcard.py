"""IdCardReader against the real stack: private pcscd + vpcd + a virtual PIV card."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smartcard import scard
from smartcard.Exceptions import CardConnectionException, CardRequestTimeoutException, NoCardException
from smartcard.pcsc.PCSCExceptions import EstablishContextException

from devices.apdu import INS_SELECT
from devices.idcard import IdCardReader, certificate_sha256, validate_chain
from devices.pcsc import translate_error, wait_for_card, wait_for_removal
from devices.piv import INS_GENERAL_AUTHENTICATE, INS_GET_DATA, INS_VERIFY
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import (
    CardChanged,
    CardError,
    CertificateInvalid,
    DeviceNotReady,
    InvalidPin,
    KioskError,
    PinBlocked,
)
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
INSERT_TIMEOUT = 15.0   # a deadline, as in conftest.py: seconds on a loaded machine
ROOT = Path(__file__).resolve().parents[2]

RIGHT_PIN = Pin("123456")
WRONG_PIN = Pin("654321")


def test_read_identity(id_reader: IdCardReader, insert_card: InsertCard, rsa_card: CardPersonalisation,
                       ) -> None:
    insert_card(rsa_card)

    identity = id_reader.read_identity()

    assert identity.common_name == "Дорж Бат"
    assert identity.given_name == "Бат"
    assert identity.surname == "Дорж"
    assert identity.serial_number == "PNOMN-NE80000000"
    assert identity.certificate_der == rsa_card.certificate_der
    assert identity.certificate_serial == rsa_card.certificate.serial_number
    assert identity.not_after == rsa_card.certificate.not_valid_after_utc
    assert identity.issuer == rsa_card.certificate.issuer.rfc4514_string()
    assert "CN=Test National ID Issuing CA" in identity.issuer
    assert identity.card_uuid == rsa_card.chuid_uuid.hex()
    assert identity.profile == "piv"


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_full_verification_is_six_apdus(id_reader: IdCardReader, insert_card: InsertCard,
                                        rsa_card: CardPersonalisation, p256_card: CardPersonalisation,
                                        key_type: str) -> None:
    personalisation = rsa_card if key_type == "rsa2048" else p256_card
    card = insert_card(personalisation)

    id_reader.read_identity()
    id_reader.authenticate(RIGHT_PIN, os.urandom(32))

    # the PIN counter is read (VERIFY without data: 63C3) before the PIN is sent
    assert card.apdu_log == [(INS_SELECT, 0x9000), (INS_GET_DATA, 0x9000), (INS_GET_DATA, 0x9000),
                             (INS_VERIFY, 0x63C3), (INS_VERIFY, 0x9000), (INS_GENERAL_AUTHENTICATE, 0x9000)]
    assert id_reader.apdu_count == 6 <= 8
    assert not card.pin_verified    # the reader reset the card after authenticating


def test_challenge_signature_is_checked_against_the_certificate(
        id_reader: IdCardReader, insert_card: InsertCard, national_ca: NationalIdCa,
        holder: CardHolder, rsa_card: CardPersonalisation) -> None:
    from kiosk.errors import CardAuthenticationFailed

    # a card whose key does not belong to its certificate: the signature cannot verify
    other = national_ca.issue_card(holder, key_type="rsa2048")
    mismatched = CardPersonalisation(holder, "rsa2048", other.private_key, rsa_card.certificate,
                                     rsa_card.chuid_uuid)
    insert_card(mismatched)
    id_reader.read_identity()

    with pytest.raises(CardAuthenticationFailed):
        id_reader.authenticate(RIGHT_PIN, b"challenge from the kiosk")


def test_wrong_pin_shows_tries_left_then_blocks(id_reader: IdCardReader, insert_card: InsertCard,
                                                national_ca: NationalIdCa, holder: CardHolder) -> None:
    insert_card(national_ca.issue_card(holder, key_type="p256"))
    id_reader.read_identity()

    with pytest.raises(InvalidPin) as first:
        id_reader.authenticate(WRONG_PIN, b"c" * 32)
    with pytest.raises(InvalidPin) as second:
        id_reader.authenticate(WRONG_PIN, b"c" * 32)
    with pytest.raises(PinBlocked) as third:      # one try left: not spent at the kiosk
        id_reader.authenticate(WRONG_PIN, b"c" * 32)
    with pytest.raises(PinBlocked):
        id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    assert first.value.data["attempts_remaining"] == 2
    assert second.value.data["attempts_remaining"] == 1
    assert third.value.data["reason"] == "last_try"


def test_right_pin_restores_the_counter(id_reader: IdCardReader, insert_card: InsertCard,
                                        national_ca: NationalIdCa, holder: CardHolder) -> None:
    card = insert_card(national_ca.issue_card(holder, key_type="p256"))
    id_reader.read_identity()
    with pytest.raises(InvalidPin):
        id_reader.authenticate(WRONG_PIN, b"c" * 32)
    assert card.pin_tries_left == 2

    id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    assert card.pin_tries_left == 3


def test_pin_never_reaches_the_log(id_reader: IdCardReader, insert_card: InsertCard,
                                   p256_card: CardPersonalisation, caplog: pytest.LogCaptureFixture) -> None:
    card = insert_card(p256_card)
    caplog.set_level("DEBUG")
    id_reader.read_identity()
    id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    assert all(len(entry) == 2 for entry in card.apdu_log)
    assert "123456" not in caplog.text


@pytest.mark.parametrize("kind", ["rogue_root", "rogue_root_same_names", "self_signed", "forged_issuer"])
def test_card_not_from_the_trust_anchor(id_reader: IdCardReader, insert_card: InsertCard, holder: CardHolder,
                                        tmp_path: Path, kind: str) -> None:
    if kind == "rogue_root":
        card = NationalIdCa.create(tmp_path / "rogue", root_name="Rogue Root").issue_card(holder, "p256")
        reason = "untrusted_issuer"
    elif kind == "rogue_root_same_names":
        card = NationalIdCa.create(tmp_path / "rogue").issue_card(holder, "p256")
        reason = "bad_signature"
    elif kind == "self_signed":
        card = NationalIdCa.issue_self_signed_card(holder, "p256")
        reason = "untrusted_issuer"
    else:
        card = NationalIdCa.issue_self_signed_card(holder, "p256", forge_issuer=True)
        reason = "bad_signature"
    insert_card(card)

    with pytest.raises(CertificateInvalid) as caught:
        id_reader.read_identity()

    assert caught.value.data["reason"] == reason
    with pytest.raises(CertificateInvalid):   # no identity, so authenticate re-reads and refuses too
        id_reader.authenticate(RIGHT_PIN, b"c" * 32)


def test_expired_card(id_reader: IdCardReader, insert_card: InsertCard, national_ca: NationalIdCa,
                      holder: CardHolder) -> None:
    insert_card(national_ca.issue_expired_card(holder, "p256"))

    with pytest.raises(CertificateInvalid) as caught:
        id_reader.read_identity()

    assert caught.value.data["reason"] == "expired"


def test_validity_uses_the_injected_clock(reader_name: str, national_ca: NationalIdCa, insert_card: InsertCard,
                                          p256_card: CardPersonalisation) -> None:
    insert_card(p256_card)
    later = p256_card.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates,
                      clock=lambda: later) as reader, pytest.raises(CertificateInvalid) as caught:
        reader.read_identity()
    assert caught.value.data["reason"] == "expired"


def test_missing_intermediate_is_untrusted(reader_name: str, national_ca: NationalIdCa, insert_card: InsertCard,
                                           p256_card: CardPersonalisation) -> None:
    insert_card(p256_card)
    with IdCardReader(reader_name, national_ca.trust_anchors) as reader, \
            pytest.raises(CertificateInvalid) as caught:
        reader.read_identity()
    assert caught.value.data["reason"] == "untrusted_issuer"


def test_issuing_ca_as_the_only_anchor_is_enough(reader_name: str, national_ca: NationalIdCa,
                                                 insert_card: InsertCard, p256_card: CardPersonalisation,
                                                 ) -> None:
    insert_card(p256_card)
    with IdCardReader(reader_name, [national_ca.issuing]) as reader:
        assert reader.read_identity().serial_number == "PNOMN-NE80000000"


def test_card_pulled_and_reinserted(id_reader: IdCardReader, insert_card: InsertCard, reader_name: str,
                                    rsa_card: CardPersonalisation) -> None:
    card = insert_card(rsa_card)
    id_reader.read_identity()

    card.remove()
    assert wait_for_removal(reader_name, INSERT_TIMEOUT)
    with pytest.raises(DeviceNotReady) as caught:
        id_reader.read_identity()
    assert caught.value.data["device"] == "card"
    assert caught.value.recoverable

    card.insert()
    wait_for_card(reader_name, INSERT_TIMEOUT)
    card.clear_log()
    assert id_reader.read_identity().serial_number == "PNOMN-NE80000000"
    id_reader.authenticate(RIGHT_PIN, b"c" * 32)
    assert len(card.apdu_log) == 6


def test_card_reinserted_between_read_and_pin_is_checked_again(
        id_reader: IdCardReader, insert_card: InsertCard, reader_name: str,
        p256_card: CardPersonalisation) -> None:
    card = insert_card(p256_card)
    id_reader.read_identity()
    card.remove()
    assert wait_for_removal(reader_name, INSERT_TIMEOUT)
    card.insert()
    wait_for_card(reader_name, INSERT_TIMEOUT)
    card.clear_log()

    id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    # reconnected: SELECT, the certificate again (same card?), then the PIN counter, VERIFY and
    # GENERAL AUTHENTICATE
    assert [ins for ins, _ in card.apdu_log] == [INS_SELECT, INS_GET_DATA, INS_VERIFY, INS_VERIFY,
                                                 INS_GENERAL_AUTHENTICATE]


def test_another_card_inserted_before_the_pin(id_reader: IdCardReader, insert_card: InsertCard,
                                              reader_name: str, national_ca: NationalIdCa,
                                              p256_card: CardPersonalisation) -> None:
    first = insert_card(p256_card)
    id_reader.read_identity()
    first.remove()
    assert wait_for_removal(reader_name, INSERT_TIMEOUT)
    other = insert_card(national_ca.issue_card(CardHolder("Сүх", "Бат", "УБ99010101"), "p256"))

    with pytest.raises(CardChanged):
        id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    assert INS_VERIFY not in [ins for ins, _ in other.apdu_log]      # the PIN never went to it


def test_card_pulled_in_the_middle_of_authentication(id_reader: IdCardReader, insert_card: InsertCard,
                                                     reader_name: str, p256_card: CardPersonalisation) -> None:
    card = insert_card(p256_card)
    id_reader.read_identity()
    card.pull_on_ins = INS_GENERAL_AUTHENTICATE

    with pytest.raises(DeviceNotReady) as caught:
        id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    assert caught.value.data["device"] == "card"
    assert wait_for_removal(reader_name, INSERT_TIMEOUT)
    card.insert()
    wait_for_card(reader_name, INSERT_TIMEOUT)
    id_reader.authenticate(RIGHT_PIN, b"c" * 32)


def test_no_card(spare_reader_name: str, national_ca: NationalIdCa) -> None:
    with IdCardReader(spare_reader_name, national_ca.trust_anchors, national_ca.intermediates) as reader:
        with pytest.raises(DeviceNotReady) as caught:
            reader.read_identity()
        assert caught.value.data["device"] == "card"

        reader.card_timeout = 0.2
        started = time.monotonic()
        with pytest.raises(DeviceNotReady) as waited:
            reader.read_identity()
        assert waited.value.data["device"] == "card"
        assert 0.15 < time.monotonic() - started < 2


def test_waits_for_a_card_when_asked(spare_reader_name: str, national_ca: NationalIdCa,
                                     insert_card: InsertCard, p256_card: CardPersonalisation) -> None:
    with IdCardReader(spare_reader_name, national_ca.trust_anchors, national_ca.intermediates,
                      card_timeout=INSERT_TIMEOUT) as reader:
        insert_card(p256_card, reader=1, wait=False)
        assert reader.read_identity().card_uuid == p256_card.chuid_uuid.hex()


def test_no_reader(private_pcscd: object, national_ca: NationalIdCa) -> None:
    with IdCardReader("No Such Reader", national_ca.trust_anchors) as reader, \
            pytest.raises(DeviceNotReady) as caught:
        reader.read_identity()
    assert caught.value.data["device"] == "reader"


def test_reader_name_is_a_substring(private_pcscd: object, national_ca: NationalIdCa, insert_card: InsertCard,
                                    p256_card: CardPersonalisation) -> None:
    insert_card(p256_card)
    with IdCardReader("virtual pcd 00 00", national_ca.trust_anchors, national_ca.intermediates) as reader:
        assert reader.read_identity().profile == "piv"


def test_compressed_certificate(id_reader: IdCardReader, insert_card: InsertCard,
                                rsa_card: CardPersonalisation) -> None:
    insert_card(rsa_card, compress_certificate=True)
    assert id_reader.read_identity().certificate_der == rsa_card.certificate_der


def test_card_without_extended_length(id_reader: IdCardReader, insert_card: InsertCard,
                                      rsa_card: CardPersonalisation) -> None:
    card = insert_card(rsa_card, extended_length=False)

    identity = id_reader.read_identity()
    id_reader.authenticate(RIGHT_PIN, os.urandom(32))

    assert identity.certificate_der == rsa_card.certificate_der
    assert len(card.apdu_log) > 5          # GET RESPONSE rounds and command chaining


def test_card_without_chuid(id_reader: IdCardReader, insert_card: InsertCard,
                            p256_card: CardPersonalisation) -> None:
    insert_card(p256_card, with_chuid=False)
    assert id_reader.read_identity().card_uuid == ""



@pytest.mark.parametrize(("error", "expected", "device"), [
    (NoCardException("x", hresult=scard.SCARD_E_NO_SMARTCARD), DeviceNotReady, "card"),
    (CardConnectionException("x", hresult=scard.SCARD_W_REMOVED_CARD), DeviceNotReady, "card"),
    (CardConnectionException("x", hresult=scard.SCARD_E_READER_UNAVAILABLE), DeviceNotReady, "reader"),
    (EstablishContextException(scard.SCARD_E_NO_SERVICE), DeviceNotReady, "reader"),
    (CardRequestTimeoutException(), DeviceNotReady, "card"),
    (CardConnectionException("x", hresult=scard.SCARD_F_INTERNAL_ERROR), CardError, None),
], ids=["no-card", "removed", "reader-gone", "no-service", "timeout", "other"])
def test_pyscard_errors_are_translated(error: Exception, expected: type[KioskError], device: str | None) -> None:
    translated = translate_error(error, "Reader")
    assert type(translated) is expected
    if device is not None:
        assert isinstance(translated, KioskError) and translated.data["device"] == device


def test_no_pcsc_service(tmp_path: Path) -> None:
    """Without pcscd every entry point raises DeviceNotReady(device='reader'), nothing from pyscard."""
    script = (
        "from devices import pcsc\n"
        "from devices.idcard import IdCardReader\n"
        "from devices.sim.national_ca import NationalIdCa\n"
        "from kiosk.errors import DeviceNotReady\n"
        "import pathlib, sys\n"
        "ca = NationalIdCa.create(pathlib.Path(sys.argv[1]))\n"
        "calls = [pcsc.list_readers, lambda: pcsc.wait_for_card('x', 0.1),\n"
        "         lambda: pcsc.wait_for_removal('x', 0.1), lambda: pcsc.PcscConnection('x').connect(),\n"
        "         lambda: IdCardReader('x', ca.trust_anchors).read_identity()]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except DeviceNotReady as err:\n"
        "        assert err.data['device'] == 'reader', err.data\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "none" / "pcscd.comm")}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "pki")], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_next_applicants_card_swapped_in_quickly_is_read(reader_name: str, national_ca: NationalIdCa,
                                                          insert_card: InsertCard) -> None:
    """Applicant B's card goes in right after A's comes out, before pcscd noticed: B's card is read."""
    first = national_ca.issue_card(CardHolder("Ариун", "Баатар", "НЭ80000000"))
    second = national_ca.issue_card(CardHolder("Эрдэнэ", "Дорж", "ШУ78787878"), key_type="p256")
    reader = IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates, card_timeout=5.0)
    try:
        card = insert_card(first)
        assert reader.read_identity().serial_number == "PNOMN-NE80000000"
        card.remove()
        insert_card(second, wait=False)
        assert reader.read_identity().serial_number == "PNOMN-SHU78787878"
        reader.authenticate(RIGHT_PIN, os.urandom(32))
    finally:
        reader.close()


def test_pin_goes_only_to_the_card_the_session_read(id_reader: IdCardReader, insert_card: InsertCard,
                                                    rsa_card: CardPersonalisation) -> None:
    card = insert_card(rsa_card)
    with pytest.raises(CardChanged):
        id_reader.authenticate(RIGHT_PIN, os.urandom(32), expected_sha256="ab" * 32)
    assert INS_VERIFY not in [ins for ins, _ in card.apdu_log]
    id_reader.authenticate(RIGHT_PIN, os.urandom(32), expected_sha256=certificate_sha256(rsa_card.certificate))


def test_a_ca_certificate_is_not_a_persons_card(national_ca: NationalIdCa) -> None:
    """A sub-CA certificate with a person's name and serialNumber must not pass as an ID card."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Баатар Ариун"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, "PNOMN-NE80000000")])
    sub_ca = (x509.CertificateBuilder().subject_name(name).issuer_name(national_ca.issuing.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True)
              .sign(national_ca._issuing_key, hashes.SHA384()))
    with pytest.raises(CertificateInvalid) as err:
        validate_chain(sub_ca, national_ca.trust_anchors, national_ca.intermediates, now)
    assert err.value.data["reason"] == "leaf_is_ca"
