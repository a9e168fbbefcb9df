"""Bad ID cards through the real stack (pcscd + vpcd + the virtual card's fault modes): pulled at any
APDU, malformed answers, a card that never answers.  Each is a clear kiosk error, then a clean retry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from devices.apdu import INS_SELECT
from devices.idcard import IdCardReader
from devices.pcsc import wait_for_card, wait_for_removal
from devices.piv import INS_GENERAL_AUTHENTICATE, INS_GET_DATA, INS_VERIFY
from devices.sim.national_ca import CardPersonalisation, NationalIdCa
from devices.sim.pcscd import PrivatePcscd
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import (
    CardAuthenticationFailed,
    CardError,
    CardNotSupported,
    CertificateInvalid,
    DeviceNotReady,
    InvalidPin,
    KioskError,
    PinBlocked,
)
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
INSERT_TIMEOUT = 15.0   # a deadline, as in conftest.py: seconds on a loaded machine
APDU_TIMEOUT = 0.5
RIGHT_PIN = Pin("123456")
INSTRUCTIONS = {"select": INS_SELECT, "get_data": INS_GET_DATA, "verify": INS_VERIFY,
                "general_authenticate": INS_GENERAL_AUTHENTICATE}


@pytest.fixture
def reader(reader_name: str, national_ca: NationalIdCa) -> Iterator[IdCardReader]:
    reader = IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates,
                          apdu_timeout=APDU_TIMEOUT)
    yield reader
    reader.close()


def _verification(reader: IdCardReader) -> None:
    reader.read_identity()
    reader.authenticate(RIGHT_PIN, b"c" * 32)


def _reinsert(card: VirtualPivCard, reader_name: str) -> None:
    card.remove()
    assert wait_for_removal(reader_name, INSERT_TIMEOUT)
    card.insert()
    wait_for_card(reader_name, INSERT_TIMEOUT)


# --- pulled ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ins", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
def test_card_pulled_at_any_apdu(reader: IdCardReader, insert_card: InsertCard, reader_name: str,
                                 p256_card: CardPersonalisation, ins: int) -> None:
    card = insert_card(p256_card)
    card.pull_on_ins = ins

    with pytest.raises(DeviceNotReady) as caught:
        _verification(reader)

    assert caught.value.data["device"] == "card" and caught.value.recoverable
    assert not card.pin_verified
    assert wait_for_removal(reader_name, INSERT_TIMEOUT)
    card.insert()
    wait_for_card(reader_name, INSERT_TIMEOUT)
    _verification(reader)                                   # a clean retry on the same reader


# --- never answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ins", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
def test_card_that_never_answers_times_out(reader: IdCardReader, insert_card: InsertCard, reader_name: str,
                                           p256_card: CardPersonalisation, ins: int) -> None:
    card = insert_card(p256_card)
    card.mute_on_ins = ins

    started = time.monotonic()
    with pytest.raises(DeviceNotReady) as caught:
        _verification(reader)
    waited = time.monotonic() - started

    assert caught.value.data == {"device": "card", "reason": "not_answering", "reader": reader_name,
                                 "timeout_s": APDU_TIMEOUT}
    assert APDU_TIMEOUT <= waited < APDU_TIMEOUT + 2
    # until it is taken out, the hung card is refused at once, with the same reason
    started = time.monotonic()
    with pytest.raises(DeviceNotReady) as again:
        reader.read_identity()
    assert again.value.data["reason"] == "not_answering"
    assert time.monotonic() - started < 0.2

    _reinsert(card, reader_name)
    _verification(reader)


def test_a_mute_card_does_not_hang_pin_attempts(reader: IdCardReader, insert_card: InsertCard,
                                                reader_name: str, p256_card: CardPersonalisation) -> None:
    card = insert_card(p256_card)
    reader.read_identity()
    card.mute_on_ins = -1
    with pytest.raises(DeviceNotReady):
        reader.pin_attempts()
    _reinsert(card, reader_name)
    assert reader.pin_attempts() == 3


# --- malformed answers ----------------------------------------------------------------------------------
def _hex(value: str) -> bytes:
    return bytes.fromhex(value.replace(" ", ""))


MALFORMED = [
    # SELECT
    ("select", "61 05 4F 03 00 9000", CardError),                    # template runs past its length
    ("select", "61 84 FFFFFFFF 9000", CardError),                    # absurd length
    ("select", "6A82", CardNotSupported),
    ("select", "6F00", CardNotSupported),
    ("select", "90", DeviceNotReady),                                # shorter than a status word
    # GET DATA (certificate and CHUID)
    ("get_data", "53 82 FFFF 00 9000", CardError),                   # value runs past the data
    ("get_data", "53 85 0000000001 00 9000", CardError),             # a 5-byte length field
    ("get_data", "53 80 9000", CardError),                           # indefinite length
    ("get_data", "7F 9000", CardError),                              # truncated tag
    ("get_data", "54 00 9000", CardError),                           # another outer tag
    ("get_data", "9000", CardError),                                 # no data at all
    ("get_data", "53 00 9000", CardError),                           # an object without a certificate
    ("get_data", "53 05 70 01 00 71 00 9000", CertificateInvalid),   # a one-byte "certificate"
    ("get_data", "53 06 70 01 1F 71 01 01 9000", CardError),         # "gzip" that is not
    ("get_data", "53 04 70 82 FFFF 9000", CardError),                # nested absurd length
    ("get_data", "6A82", CardError),                                 # the card says it has no certificate
    ("get_data", "6F00", CardError),
    ("get_data", "6982", CardError),
    ("get_data", "6100", CardError),                                 # more data, then GET RESPONSE refused
    # VERIFY (the counter query and the PIN)
    ("verify", "6F00", CardError),
    ("verify", "6A80", CardError),
    ("verify", "63C1", PinBlocked),                                  # one try left: no PIN sent
    ("verify", "6983", PinBlocked),
    ("verify", "63CF", InvalidPin),
    ("verify", "00 9000", CardError),                                # "verified", then the card refuses to sign
    # GENERAL AUTHENTICATE
    ("general_authenticate", "7C 02 82 00 9000", CardError),          # no signature in 82
    ("general_authenticate", "7C 05 82 03 010203 9000", CardAuthenticationFailed),
    ("general_authenticate", "7D 00 9000", CardError),
    ("general_authenticate", "7C 82 FFFF 9000", CardError),
    ("general_authenticate", "7C 04 82 84 FFFFFFFF 9000", CardError),
    ("general_authenticate", "6982", CardError),
    ("general_authenticate", "9000", CardError),
]


@pytest.fixture(scope="module")
def spare_card(private_pcscd: PrivatePcscd, spare_reader_name: str,
               p256_card: CardPersonalisation) -> Iterator[VirtualPivCard]:
    """One card in the second reader for all the malformed answers (inserting costs ~0.5 s each time)."""
    card = VirtualPivCard(p256_card, private_pcscd.vpcd_port + 1)
    card.insert()
    wait_for_card(spare_reader_name, INSERT_TIMEOUT)
    yield card
    card.close()
    assert wait_for_removal(spare_reader_name, INSERT_TIMEOUT)


@pytest.mark.parametrize(("command", "response", "expected"), MALFORMED,
                         ids=[f"{c}-{r.replace(' ', '')[:16]}" for c, r, _ in MALFORMED])
def test_malformed_answers_are_clear_errors_then_a_clean_retry(
        spare_card: VirtualPivCard, spare_reader_name: str, national_ca: NationalIdCa,
        command: str, response: str, expected: type[KioskError]) -> None:
    card = spare_card
    card.responses[INSTRUCTIONS[command]] = _hex(response)
    reader = IdCardReader(spare_reader_name, national_ca.trust_anchors, national_ca.intermediates,
                          apdu_timeout=APDU_TIMEOUT)
    try:
        with pytest.raises(KioskError) as caught:
            _verification(reader)

        assert type(caught.value) is expected, caught.value
        assert not card.pin_verified
        card.responses.clear()
        if isinstance(caught.value, DeviceNotReady):
            _reinsert(card, spare_reader_name)
        _verification(reader)                               # the same reader, a clean retry
        assert card.pin_tries_left == 3
    finally:
        card.responses.clear()
        reader.close()


def test_measured_without_a_bound_pcsc_waits_until_the_mute_card_is_pulled(
        reader_name: str, national_ca: NationalIdCa, insert_card: InsertCard, p256_card: CardPersonalisation,
        ) -> None:
    """What the timeout is for (pcscd 2.0 + vpcd, pyscard 2.3): SCardTransmit to a card that never answers
    returns only when the card is pulled, then at once."""
    import threading

    card = insert_card(p256_card)
    card.mute_on_ins = INS_GET_DATA
    unbounded = IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates, apdu_timeout=0)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            unbounded.read_identity()
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(2.0)
    assert worker.is_alive(), "the transmit returned without an answer"
    pulled = time.monotonic()
    card.remove()
    worker.join(INSERT_TIMEOUT)
    assert not worker.is_alive() and time.monotonic() - pulled < 1.0
    assert isinstance(outcome[0], DeviceNotReady)
    unbounded.close()
