"""PIN safety on the ID card: the counter is read first, a card at its last try never gets a PIN,
tries left are shown, and the PIN bytes live no longer than the APDU."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devices.apdu import SW_OK, split_response
from devices.idcard import IdCardReader
from devices.piv import INS_VERIFY, PivSession
from devices.sim.national_ca import CardPersonalisation
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import InvalidPin, PinBlocked
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
RIGHT_PIN = Pin("123456")
WRONG_PIN = Pin("654321")


class RecordingConnection:
    """The seam straight onto the virtual card; keeps the very objects it was handed."""

    def __init__(self, card: VirtualPivCard) -> None:
        self.card = card
        self.sent: list[bytes | bytearray] = []

    def send_and_receive(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        self.sent.append(apdu)
        return split_response(self.card.process_apdu(bytes(apdu)))


def _pin_apdus(connection: RecordingConnection) -> list[bytes | bytearray]:
    """The APDUs that carried a PIN block (VERIFY with 8 bytes of data: 13 bytes, zeroed since)."""
    return [apdu for apdu in connection.sent if len(apdu) == 5 + 8 and not any(apdu[:4])]


def test_the_counter_is_read_before_the_pin_is_sent(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    connection = RecordingConnection(card)
    PivSession(connection).verify_pin(RIGHT_PIN)

    _select, status_query, verify = connection.sent
    assert bytes(status_query) == bytes.fromhex("00200080")          # VERIFY without data: 63Cx / 9000
    assert len(verify) == 5 + 8
    assert [ins for ins, _sw in card.apdu_log] == [0xA4, INS_VERIFY, INS_VERIFY]
    assert card.apdu_log[1] == (INS_VERIFY, 0x63C3)
    assert card.pin_verified


def test_a_card_at_its_last_try_never_gets_a_pin(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    connection = RecordingConnection(card)
    session = PivSession(connection)
    for _ in range(2):
        with pytest.raises(InvalidPin):
            session.verify_pin(WRONG_PIN)
    assert card.pin_tries_left == 1
    sent_before = len(connection.sent)

    with pytest.raises(PinBlocked) as caught:
        session.verify_pin(RIGHT_PIN)          # even the right PIN: the applicant goes to the issuer

    assert caught.value.data == {"device": "card", "reason": "last_try", "attempts_remaining": 1}
    assert [bytes(a) for a in connection.sent[sent_before:]] == [bytes.fromhex("00200080")]
    assert card.pin_tries_left == 1 and not card.pin_verified
    assert card.apdu_log[-1] == (INS_VERIFY, 0x63C1)


def test_the_last_try_can_be_spent_only_when_asked(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    session = PivSession(RecordingConnection(card))
    for _ in range(2):
        with pytest.raises(InvalidPin):
            session.verify_pin(WRONG_PIN)
    session.verify_pin(RIGHT_PIN, last_try_allowed=True)
    assert card.pin_verified and card.pin_tries_left == 3


def test_a_blocked_card_gets_no_pin(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    session = PivSession(RecordingConnection(card))
    for _ in range(2):
        with pytest.raises(InvalidPin):
            session.verify_pin(WRONG_PIN)
    with pytest.raises(PinBlocked):
        session.verify_pin(WRONG_PIN, last_try_allowed=True)
    with pytest.raises(PinBlocked) as caught:
        session.verify_pin(RIGHT_PIN, last_try_allowed=True)
    assert caught.value.data["reason"] == "blocked"
    assert caught.value.data["attempts_remaining"] == 0


def test_the_pin_bytes_are_zeroed_once_sent(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    connection = RecordingConnection(card)
    session = PivSession(connection)
    session.verify_pin(RIGHT_PIN)
    with pytest.raises(InvalidPin):
        session.verify_pin(WRONG_PIN)

    sent_pins = _pin_apdus(connection)
    assert len(sent_pins) == 2 == len([1 for ins, _sw in card.apdu_log if ins == INS_VERIFY]) - 2
    for apdu in sent_pins:
        assert isinstance(apdu, bytearray) and apdu == bytearray(len(apdu))   # nothing left of the PIN


def test_tries_left_are_shown_before_and_after_a_wrong_pin(id_reader: IdCardReader, insert_card: InsertCard,
                                                            p256_card: CardPersonalisation) -> None:
    card = insert_card(p256_card)
    id_reader.read_identity()
    assert id_reader.pin_attempts() == 3
    with pytest.raises(InvalidPin) as caught:
        id_reader.authenticate(WRONG_PIN, b"c" * 32)
    assert caught.value.data["attempts_remaining"] == 2
    assert id_reader.pin_attempts() == 2
    assert card.pin_tries_left == 2


def test_the_reader_refuses_the_last_try_through_pcscd(id_reader: IdCardReader, insert_card: InsertCard,
                                                       p256_card: CardPersonalisation) -> None:
    card = insert_card(p256_card)
    id_reader.read_identity()
    for left in (2, 1):
        with pytest.raises(InvalidPin) as caught:
            id_reader.authenticate(WRONG_PIN, b"c" * 32)
        assert caught.value.data["attempts_remaining"] == left
    card.clear_log()

    with pytest.raises(PinBlocked) as refused:
        id_reader.authenticate(RIGHT_PIN, b"c" * 32)

    assert refused.value.data["reason"] == "last_try"
    assert card.pin_tries_left == 1 and not card.pin_verified
    assert [entry for entry in card.apdu_log if entry[0] == INS_VERIFY] == [(INS_VERIFY, 0x63C1)]
    assert all(sw != SW_OK or ins != INS_VERIFY for ins, sw in card.apdu_log)
