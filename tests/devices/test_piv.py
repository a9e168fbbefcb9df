"""PivSession and the virtual PIV card: straight to the card, through pcscd, and as OpenSC sees it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from devices.apdu import (
    INS_GET_RESPONSE,
    SW_AUTH_METHOD_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_REFERENCE_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    split_response,
)
from devices.pcsc import PcscConnection
from devices.piv import (
    AID_PIV,
    INS_GET_DATA,
    OBJ_KEY_HISTORY,
    OBJ_SIGNATURE_CERT,
    PivAlgorithm,
    PivSession,
    Slot,
)
from devices.sim.national_ca import CardPersonalisation
from devices.sim.vcard import DEFAULT_ATR, VirtualPivCard
from kiosk.errors import CardError, CardNotSupported, InvalidPin, PinBlocked
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
SELECT_PIV = bytes.fromhex("00A4040009") + AID_PIV + b"\x00"


class DirectConnection:
    """The seam straight onto the virtual card, no pcscd in between."""

    def __init__(self, card: VirtualPivCard) -> None:
        self.card = card
        self.sent: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return split_response(self.card.process_apdu(apdu))


@pytest.fixture
def rsa_vcard(rsa_card: CardPersonalisation) -> VirtualPivCard:
    return VirtualPivCard(rsa_card, port=0)


def _sw(card: VirtualPivCard, apdu_hex: str) -> int:
    return split_response(card.process_apdu(bytes.fromhex(apdu_hex)))[1]


# --- the session over the card ----------------------------------------------------------------------------
def test_select_reads_the_application_template(rsa_vcard: VirtualPivCard) -> None:
    session = PivSession(DirectConnection(rsa_vcard))
    assert session.application.aid == bytes.fromhex("000010000100")
    assert session.application.algorithms == (PivAlgorithm.RSA2048,)


def test_card_without_piv_is_not_supported() -> None:
    class Silent:
        def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
            return b"", SW_FILE_NOT_FOUND

    with pytest.raises(CardNotSupported):
        PivSession(Silent())


def test_certificate_and_chuid_in_one_extended_apdu_each(rsa_vcard: VirtualPivCard,
                                                         rsa_card: CardPersonalisation) -> None:
    connection = DirectConnection(rsa_vcard)
    session = PivSession(connection)
    assert session.get_certificate(Slot.AUTHENTICATION) == rsa_card.certificate_der
    chuid = session.get_chuid()
    assert chuid is not None and chuid.card_uuid == rsa_card.chuid_uuid.hex()
    assert len(connection.sent) == 3
    assert connection.sent[1].endswith(b"\x00\x00")           # extended Le 0000


def test_short_apdus_chain_with_get_response(rsa_vcard: VirtualPivCard, rsa_card: CardPersonalisation) -> None:
    session = PivSession(DirectConnection(rsa_vcard), extended_length=False)
    assert session.get_certificate() == rsa_card.certificate_der
    assert INS_GET_RESPONSE in [ins for ins, _ in rsa_vcard.apdu_log]


def test_falls_back_when_the_card_refuses_extended_length(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0, extended_length=False)
    session = PivSession(DirectConnection(card))
    assert session.get_certificate() == rsa_card.certificate_der
    assert not session.extended_length
    assert card.apdu_log[1] == (INS_GET_DATA, SW_WRONG_LENGTH)


def test_gzip_certificate_is_decompressed(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0, compress_certificate=True)
    assert PivSession(DirectConnection(card)).get_certificate() == rsa_card.certificate_der


def test_absent_objects_are_none(rsa_vcard: VirtualPivCard) -> None:
    session = PivSession(DirectConnection(rsa_vcard))
    assert session.get_certificate(Slot.SIGNATURE) is None
    assert session.get_object(OBJ_SIGNATURE_CERT) is None
    assert session.get_object(OBJ_KEY_HISTORY) is None


def test_pin_counter(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    session = PivSession(DirectConnection(card))
    assert session.get_pin_attempts() == 3
    with pytest.raises(InvalidPin) as caught:
        session.verify_pin(Pin("000000"))
    assert caught.value.data["attempts_remaining"] == 2
    assert session.get_pin_attempts() == 2
    session.verify_pin(Pin("123456"))
    assert session.get_pin_attempts() is None                  # verified
    assert card.pin_tries_left == 3


def test_pin_blocks_after_three_wrong(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    session = PivSession(DirectConnection(card))
    for left in (2, 1):
        with pytest.raises(InvalidPin) as caught:
            session.verify_pin(Pin("000000"))
        assert caught.value.data["attempts_remaining"] == left
    with pytest.raises(PinBlocked) as last:
        session.verify_pin(Pin("000000"))                      # the last try is not spent by default
    assert last.value.data["reason"] == "last_try"
    with pytest.raises(PinBlocked):
        session.verify_pin(Pin("000000"), last_try_allowed=True)
    with pytest.raises(PinBlocked):
        session.verify_pin(Pin("123456"), last_try_allowed=True)
    assert session.get_pin_attempts() == 0
    assert _sw(card, "0020008008313233343536FFFF") == SW_AUTH_METHOD_BLOCKED


def test_overlong_pin_does_not_spend_a_try(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    with pytest.raises(InvalidPin) as caught:
        PivSession(DirectConnection(card)).verify_pin(Pin("123456789"))
    assert caught.value.data["attempts_remaining"] == 3


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_sign_challenge_verifies(rsa_card: CardPersonalisation, p256_card: CardPersonalisation,
                                 key_type: str) -> None:
    personalisation = rsa_card if key_type == "rsa2048" else p256_card
    algorithm = PivAlgorithm.RSA2048 if key_type == "rsa2048" else PivAlgorithm.ECCP256
    session = PivSession(DirectConnection(VirtualPivCard(personalisation, port=0)))
    session.verify_pin(Pin("123456"))
    challenge = os.urandom(40)

    signature = session.sign_challenge(challenge, algorithm)

    public = personalisation.certificate.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, challenge, ec.ECDSA(hashes.SHA256()))


def test_rsa_raw_operation_on_any_block(rsa_card: CardPersonalisation) -> None:
    """The card does raw RSA on whatever block it gets (here PSS-free arbitrary data below n)."""
    session = PivSession(DirectConnection(VirtualPivCard(rsa_card, port=0)))
    session.verify_pin(Pin("123456"))
    block = b"\x00\x02" + b"\x5a" * 254
    result = session.general_authenticate(PivAlgorithm.RSA2048, Slot.AUTHENTICATION, block)
    public = rsa_card.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    numbers = public.public_numbers()
    assert pow(int.from_bytes(result, "big"), numbers.e, numbers.n) == int.from_bytes(block, "big")


def test_sign_needs_the_pin(rsa_vcard: VirtualPivCard) -> None:
    session = PivSession(DirectConnection(rsa_vcard))
    with pytest.raises(CardError) as caught:
        session.sign_challenge(b"x", PivAlgorithm.RSA2048)
    assert caught.value.data["sw"] == f"{SW_SECURITY_STATUS_NOT_SATISFIED:04X}"


def test_command_chaining_without_extended_length(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0, extended_length=False)
    session = PivSession(DirectConnection(card), extended_length=False)
    session.verify_pin(Pin("123456"))
    signature = session.sign_challenge(b"chained", PivAlgorithm.RSA2048)
    public = rsa_card.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"chained", padding.PKCS1v15(), hashes.SHA256())


def test_reset_drops_the_verified_pin(rsa_vcard: VirtualPivCard) -> None:
    session = PivSession(DirectConnection(rsa_vcard))
    session.verify_pin(Pin("123456"))
    assert rsa_vcard.pin_verified
    rsa_vcard.power_cycle()
    assert not rsa_vcard.pin_verified


# --- malformed APDUs straight to the card -----------------------------------------------------------------
@pytest.mark.parametrize(("apdu_hex", "sw"), [
    ("", SW_WRONG_LENGTH),                                   # nothing
    ("00", SW_WRONG_LENGTH),                                 # a CLA byte only
    ("00A4", SW_WRONG_LENGTH),                               # half a header
    ("00A40400", SW_FILE_NOT_FOUND),                         # SELECT without an AID
    ("00A4040005A0000003", SW_WRONG_LENGTH),                 # Lc says 5, 3 bytes follow
    ("00A4040000000001", SW_WRONG_LENGTH),                   # extended Lc of zero
    ("00A4040005A00000030900", SW_FILE_NOT_FOUND),           # another application
    ("80A4040005A00000030800", SW_CLA_NOT_SUPPORTED),        # proprietary class
    ("0CA4040005A00000030800", 0x6882),                      # secure messaging
    ("00CB3FFF055C035FC10500", SW_INS_NOT_SUPPORTED),        # GET DATA before SELECT
])
def test_malformed_or_early_commands_get_error_status(rsa_vcard: VirtualPivCard, apdu_hex: str, sw: int,
                                                      ) -> None:
    assert _sw(rsa_vcard, apdu_hex) == sw


@pytest.mark.parametrize(("apdu_hex", "sw"), [
    ("00FE000000", SW_INS_NOT_SUPPORTED),                    # unknown instruction
    ("00CB3F00055C035FC10500", SW_INCORRECT_P1P2),           # GET DATA, wrong P1P2
    ("00CB3FFF055D035FC10500", SW_WRONG_DATA),               # no tag list
    ("00CB3FFF045C035FC100", SW_WRONG_DATA),                 # tag list shorter than its length
    ("00CB3FFF065C045FC1050100", SW_WRONG_DATA),             # tag of four bytes
    ("00CB3FFF055C035FC1FF00", SW_FILE_NOT_FOUND),           # an object the card does not hold
    ("00C0000000", SW_CONDITIONS_NOT_SATISFIED),             # GET RESPONSE with nothing pending
    ("00C0010000", SW_INCORRECT_P1P2),                       # GET RESPONSE, wrong P1
    ("0020008007313233343536FF", SW_WRONG_DATA),             # PIN block of 7 bytes
    ("00200080083132333435363738FFFF", SW_WRONG_LENGTH),     # Lc 8 but 10 bytes follow
    ("0020008008414243444546FFFF", SW_WRONG_DATA),           # letters in the PIN
    ("0020008108313233343536FFFF", SW_REFERENCE_NOT_FOUND),  # VERIFY the PUK reference
    ("00200180", SW_INCORRECT_P1P2),                         # VERIFY with P1 01
    ("00870B9A047C028100", SW_INCORRECT_P1P2),               # GENERAL AUTHENTICATE, algorithm mismatch
    ("0087079C047C02820000", SW_REFERENCE_NOT_FOUND),        # key 9C not on the card
    ("008707 9A 04 7D02820000".replace(" ", ""), SW_WRONG_DATA),  # not a 7C template
    ("0087079A057C028200", SW_WRONG_LENGTH),                 # Lc 5 but 3 bytes follow
    ("00CB3FFF055C035FC10500", 0x6883),                      # a command that breaks an open chain
])
def test_malformed_commands_after_select(rsa_vcard: VirtualPivCard, apdu_hex: str, sw: int) -> None:
    assert _sw(rsa_vcard, SELECT_PIV.hex()) == SW_OK
    if sw == 0x6883:
        assert _sw(rsa_vcard, "1087079A027C0200") == SW_OK   # first part of a chained command
    assert _sw(rsa_vcard, apdu_hex) == sw
    assert _sw(rsa_vcard, "00CB3FFF055C035FC10200") == SW_OK    # and the card still answers


def test_malformed_frames_on_the_vpcd_wire(rsa_card: CardPersonalisation) -> None:
    """Be vpcd: accept the card's connection and speak the framing to it directly."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    card = VirtualPivCard(rsa_card, port=server.getsockname()[1])
    card.insert()
    try:
        conn, _ = server.accept()
        conn.settimeout(5)

        def exchange(payload: bytes) -> bytes:
            conn.sendall(len(payload).to_bytes(2, "big") + payload)
            size = int.from_bytes(_read(conn, 2), "big")
            return _read(conn, size)

        assert exchange(b"\x04") == DEFAULT_ATR                # control: send ATR
        conn.sendall(b"\x00\x01\x01")                          # control: power on (no answer)
        assert exchange(b"\x00\xa4") == bytes.fromhex("6700")  # two bytes are no APDU
        assert exchange(b"\x00\xa4\x04") == bytes.fromhex("6700")
        assert exchange(b"\xff" * 300)[-2:] == bytes.fromhex("6700")
        assert exchange(SELECT_PIV)[-2:] == b"\x90\x00"
        assert exchange(b"\x00\x00\x00\x00\x00")[-2:] == bytes.fromhex("6D00")
        conn.sendall(b"\x00\x01\x02")                          # control: reset
        assert exchange(bytes.fromhex("00CB3FFF055C035FC10500")) == bytes.fromhex("6D00")  # deselected
        conn.close()
    finally:
        card.close()
        server.close()
    assert not card.inserted


def _read(conn: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("card closed the connection")
        buf += chunk
    return buf


def test_card_is_thread_safe(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            session = PivSession(DirectConnection(card))
            for _ in range(20):
                assert session.get_certificate() == rsa_card.certificate_der
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


# --- through pcscd ----------------------------------------------------------------------------------------
def test_session_through_pcscd(reader_name: str, insert_card: InsertCard, rsa_card: CardPersonalisation) -> None:
    card = insert_card(rsa_card)
    with PcscConnection(reader_name) as connection:
        connection.connect()
        assert connection.protocol == "T=1"
        assert connection.atr == DEFAULT_ATR
        session = PivSession(connection)
        assert session.get_certificate() == rsa_card.certificate_der
        assert connection.apdu_count == 2
        assert connection.apdu_seconds > 0
    assert [ins for ins, _ in card.apdu_log] == [0xA4, INS_GET_DATA]


def test_malformed_apdus_through_pcscd(reader_name: str, insert_card: InsertCard,
                                       rsa_card: CardPersonalisation) -> None:
    insert_card(rsa_card)
    with PcscConnection(reader_name) as connection:
        connection.connect()
        assert connection.send_and_receive(bytes.fromhex("80A4040005A00000030800"))[1] == SW_CLA_NOT_SUPPORTED
        assert connection.send_and_receive(SELECT_PIV)[1] == SW_OK
        assert connection.send_and_receive(bytes.fromhex("00FE000000"))[1] == SW_INS_NOT_SUPPORTED
        assert connection.send_and_receive(bytes.fromhex("00CB3FFF055C035FC10500"[:16]))[1] == SW_WRONG_LENGTH
        assert connection.send_and_receive(bytes.fromhex("0020008007313233343536FF"))[1] == SW_WRONG_DATA
        assert connection.send_and_receive(bytes.fromhex("00CB3FFF055C035FC10200"))[1] == SW_OK


@pytest.mark.skipif(shutil.which("pkcs15-tool") is None, reason="OpenSC not installed")
@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_opensc_lists_the_certificate(private_pcscd: object, insert_card: InsertCard, tmp_path: Path,
                                      rsa_card: CardPersonalisation, p256_card: CardPersonalisation,
                                      key_type: str) -> None:
    from devices.sim.pcscd import PrivatePcscd

    assert isinstance(private_pcscd, PrivatePcscd)
    personalisation = rsa_card if key_type == "rsa2048" else p256_card
    insert_card(personalisation)
    env = {**os.environ, **private_pcscd.env, "HOME": str(tmp_path)}

    result = subprocess.run(["pkcs15-tool", "--reader", "0", "--list-certificates"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert "Certificate for PIV Authentication" in result.stdout
    serial = f"{personalisation.certificate.serial_number:X}"
    assert serial in result.stdout.replace(" ", "").upper()


# --- card profiles ----------------------------------------------------------------------------------------
def test_piv_profile_is_registered_and_detected(rsa_vcard: VirtualPivCard) -> None:
    from devices.cardprofiles import detect_profile, get_profile, profile_names

    assert "piv" in profile_names()
    assert detect_profile(DEFAULT_ATR, DirectConnection(rsa_vcard)) is get_profile("piv")


def test_unknown_profile_is_a_config_error() -> None:
    from devices.cardprofiles import get_profile
    from kiosk.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        get_profile("no-such-card")
    assert caught.value.data["setting"] == "idcard.profile"


def test_a_national_profile_can_be_added(monkeypatch: pytest.MonkeyPatch, rsa_vcard: VirtualPivCard) -> None:
    import devices.cardprofiles as cardprofiles

    monkeypatch.setattr(cardprofiles, "_PROFILES", dict(cardprofiles._PROFILES))
    national = cardprofiles.CardProfile(
        name="mn-eid", aid=bytes.fromhex("D4960000000001"), open=cardprofiles.PivIdCard,
        atr_patterns=((DEFAULT_ATR, b"\xff" * len(DEFAULT_ATR)),))
    cardprofiles.register_profile(national)
    with pytest.raises(ValueError):
        cardprofiles.register_profile(national)

    assert cardprofiles.get_profile("mn-eid") is national
    assert national.matches_atr(DEFAULT_ATR) and not national.matches_atr(b"\x3b\x00")
    assert not national.probe(DEFAULT_ATR, DirectConnection(rsa_vcard))     # the card has no such applet
    assert cardprofiles.detect_profile(DEFAULT_ATR, DirectConnection(rsa_vcard)).name == "piv"


def test_a_card_without_any_profile(rsa_vcard: VirtualPivCard, monkeypatch: pytest.MonkeyPatch) -> None:
    import devices.cardprofiles as cardprofiles

    monkeypatch.setattr(cardprofiles, "_PROFILES", {})
    with pytest.raises(CardNotSupported):
        cardprofiles.detect_profile(DEFAULT_ATR, DirectConnection(rsa_vcard))


# --- PIN management on the virtual card ---------------------------------------------------------------------
def _pin_block(pin: str) -> str:
    return pin.encode().ljust(8, b"\xff").hex()


def test_change_pin_and_unblock_with_puk(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    assert _sw(card, SELECT_PIV.hex()) == SW_OK
    change = "0024008010" + _pin_block("123456") + _pin_block("24681357")
    assert _sw(card, change) == SW_OK
    assert _sw(card, "0020008008" + _pin_block("24681357")) == SW_OK
    for _ in range(3):
        _sw(card, "0020008008" + _pin_block("000000"))
    assert _sw(card, "0020008008" + _pin_block("24681357")) == SW_AUTH_METHOD_BLOCKED
    assert _sw(card, "002C008010" + _pin_block("87654321") + _pin_block("111111")) == 0x63C2   # wrong PUK
    assert _sw(card, "002C008010" + _pin_block("12345678") + _pin_block("135790")) == SW_OK
    assert card.pin_tries_left == 3
    assert _sw(card, "0020008008" + _pin_block("135790")) == SW_OK


def test_private_pcscd_refuses_a_taken_port(private_pcscd: object, tmp_path: Path) -> None:
    from devices.sim.pcscd import PcscdError, PrivatePcscd

    assert isinstance(private_pcscd, PrivatePcscd)
    second = PrivatePcscd(tmp_path / "second", port=private_pcscd.vpcd_port)
    with pytest.raises(PcscdError, match="in use"):
        second.start()
    assert not second.running
