"""Property-based fuzzing (hypothesis) of what a card sends us: APDUs, BER-TLV, PIV data objects, the
PIV session's handling of any answer, and the holder's certificate.

Short run (``make test``): ``SHORT_EXAMPLES`` examples per property, a few hundred in all, < 10 s.
Long run, skipped by ``make test``::

    TAMGA_FUZZ=long .venv/bin/python -m pytest tests/fuzz -q      # LONG_EXAMPLES per property, > 100,000

``TAMGA_FUZZ_EXAMPLES=n`` sets the examples per property for either run.  No example database is
written (``database=None``): every run draws afresh; a failure prints its reproducing example.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.apdu import (
    ApduFormatError,
    CommandApdu,
    TlvError,
    encode_length,
    encode_tlv,
    iter_tlvs,
    read_tlv,
    split_response,
    tlv_dict,
)
from devices.idcard import card_identity
from devices.piv import (
    Chuid,
    PivAlgorithm,
    PivApplicationInfo,
    PivSession,
    Slot,
    decode_certificate_object,
    encode_certificate_object,
)
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardError, CertificateInvalid, KioskError
from kiosk.pin import Pin

LONG = os.environ.get("TAMGA_FUZZ", "") == "long"
SHORT_EXAMPLES = 25
LONG_EXAMPLES = 8_000              # × 16 properties = 128,000 cases
EXAMPLES = int(os.environ.get("TAMGA_FUZZ_EXAMPLES", LONG_EXAMPLES if LONG else SHORT_EXAMPLES))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
# the session over a fuzzed card costs a few ms per example: a tenth of the examples, at least 20
SESSION_FUZZ = settings(FUZZ, max_examples=max(20, EXAMPLES // 10) if not LONG else EXAMPLES)


# --- command APDUs -----------------------------------------------------------------------------------------
byte = st.integers(0, 0xFF)


@st.composite
def command_apdus(draw: st.DrawFn) -> CommandApdu:
    data = draw(st.one_of(st.binary(max_size=40), st.binary(min_size=250, max_size=1200)))
    ne = draw(st.one_of(st.none(), st.integers(1, 256), st.integers(257, 65536)))
    return CommandApdu(draw(byte), draw(byte), draw(byte), draw(byte), data, ne, draw(st.booleans()))


@FUZZ
@given(command_apdus())
def test_command_apdu_round_trip(apdu: CommandApdu) -> None:
    raw = apdu.to_bytes()
    parsed = CommandApdu.from_bytes(raw)
    assert (parsed.cla, parsed.ins, parsed.p1, parsed.p2, parsed.data, parsed.ne) == \
        (apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, apdu.ne)
    assert parsed.to_bytes() == raw
    assert parsed.is_extended == apdu.is_extended or not (apdu.data or apdu.ne)


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_are_an_apdu_that_encodes_back_or_an_apdu_format_error(raw: bytes) -> None:
    try:
        parsed = CommandApdu.from_bytes(raw)
    except ApduFormatError:
        return
    assert parsed.to_bytes() == raw


@FUZZ
@given(st.binary(max_size=40))
def test_a_response_is_split_or_refused(raw: bytes) -> None:
    try:
        data, sw = split_response(raw)
    except ApduFormatError:
        assert len(raw) < 2
        return
    assert data + sw.to_bytes(2, "big") == raw


# --- BER-TLV ---------------------------------------------------------------------------------------------
@st.composite
def tags(draw: st.DrawFn) -> int:
    """Well-formed BER tags of 1 to 3 bytes (not the 00/FF padding bytes)."""
    first = draw(byte.filter(lambda b: b not in (0x00, 0xFF)))
    if first & 0x1F != 0x1F:
        return first
    middle = draw(st.lists(st.integers(0x80, 0xFF), max_size=1))
    last = draw(st.integers(0x00, 0x7F))
    return int.from_bytes(bytes([first, *middle, last]), "big")


@FUZZ
@given(st.lists(st.tuples(tags(), st.binary(max_size=300)), max_size=6))
def test_tlv_round_trip(elements: list[tuple[int, bytes]]) -> None:
    encoded = b"".join(encode_tlv(tag, value) for tag, value in elements)
    assert [(e.tag, e.value) for e in iter_tlvs(encoded)] == elements


@FUZZ
@given(st.integers(0, 2**32 - 1))
def test_length_field_round_trip(length: int) -> None:
    field = encode_length(length)
    prefix = b"\x53" + field
    if length <= 300:
        element, end = read_tlv(prefix + bytes(length))
        assert len(element.value) == length and end == len(prefix) + length
    else:                                   # an absurd length in a short buffer is refused, not read
        with pytest.raises(TlvError):
            read_tlv(prefix + bytes(10))


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_are_tlvs_or_a_tlv_error(data: bytes) -> None:
    try:
        elements = list(iter_tlvs(data))
    except TlvError:
        return
    assert sum(len(e.value) for e in elements) <= len(data)
    for element in elements:
        assert element.value in data
    tlv_dict(data)


# --- PIV data objects --------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=300))
def test_any_select_answer_is_an_application_or_a_card_error(data: bytes) -> None:
    with contextlib.suppress(CardError):
        PivApplicationInfo.from_bytes(data)


@FUZZ
@given(st.binary(max_size=20), st.text(max_size=20), st.text(max_size=30),
       st.lists(byte, max_size=5).map(tuple))
def test_application_info_round_trip(aid: bytes, label: str, url: str, algorithms: tuple[int, ...]) -> None:
    info = PivApplicationInfo(aid=aid, label=label, url=url, algorithms=algorithms)
    assert PivApplicationInfo.from_bytes(info.to_bytes()) == info


@FUZZ
@given(st.binary(max_size=300))
def test_any_chuid_is_parsed_or_a_card_error(data: bytes) -> None:
    try:
        chuid = Chuid.from_bytes(data)
    except CardError:
        return
    assert isinstance(chuid.card_uuid, str)


@FUZZ
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=25),
       st.from_regex(r"\A(|[0-9]{8})\Z"), st.binary(max_size=300))
def test_chuid_round_trip(guid: bytes, fasc_n: bytes, expiration: str, signature: bytes) -> None:
    chuid = Chuid(guid=guid, fasc_n=fasc_n, expiration=expiration, issuer_signature=signature)
    assert Chuid.from_bytes(chuid.to_bytes()) == chuid


@FUZZ
@given(st.binary(min_size=1, max_size=2000), st.booleans())
def test_certificate_object_round_trip(der: bytes, compress: bool) -> None:
    assert decode_certificate_object(encode_certificate_object(der, compress=compress)) == der


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=200).map(lambda b: encode_tlv(0x70, b) + encode_tlv(0x71, b"\x01")),
                 st.binary(max_size=200).map(lambda b: encode_tlv(0x70, zlib.compress(b)[:-1] + b"x")
                                             + encode_tlv(0x71, b"\x01"))))
def test_any_certificate_object_is_bytes_or_a_card_error(content: bytes) -> None:
    try:
        der = decode_certificate_object(content)
    except CardError:
        return
    assert 0 < len(der) <= 64 * 1024


# --- the PIV session over a card that answers anything -----------------------------------------------------
responses = st.one_of(
    st.tuples(st.binary(max_size=80), st.sampled_from([0x9000, 0x6A82, 0x6982, 0x6983, 0x6700, 0x6F00,
                                                       0x63C0, 0x63C1, 0x63C2, 0x63C3, 0x6100, 0x6110,
                                                       0x6C10, 0x6A80])),
    st.tuples(st.binary(max_size=80), st.integers(0, 0xFFFF)),
)


class ScriptedCard:
    """A connection whose card answers whatever hypothesis draws, then 6F00."""

    def __init__(self, answers: list[tuple[bytes, int]]) -> None:
        self.answers = iter(answers)
        self.count = 0

    def send_and_receive(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        self.count += 1
        return next(self.answers, (b"", 0x6F00))


@SESSION_FUZZ
@given(st.lists(responses, max_size=12))
def test_the_session_turns_any_answer_into_a_kiosk_error(answers: list[tuple[bytes, int]]) -> None:
    card = ScriptedCard(answers)
    try:
        session = PivSession(card)
        session.get_certificate(Slot.AUTHENTICATION)
        session.get_chuid()
        session.get_pin_attempts()
        session.verify_pin(Pin("123456"))
        session.sign_challenge(b"c" * 32, PivAlgorithm.ECCP256)
        session.sign_challenge(b"c" * 32, PivAlgorithm.RSA2048)
    except KioskError:
        pass
    assert card.count <= 12 + 8 * 1025      # bounded: 61xx and 6Cxx loops end


# --- the card's certificate ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NationalIdCa, CardPersonalisation]]:
    ca = NationalIdCa.create(Path(tmp_path_factory.mktemp("fuzz-pki")))
    yield ca, ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"), key_type="p256")


def _identity(pki: tuple[NationalIdCa, CardPersonalisation], der: bytes) -> None:
    ca, _card = pki
    with contextlib.suppress(CertificateInvalid):
        card_identity(der, ca.trust_anchors, ca.intermediates, dt.datetime.now(dt.UTC))


@FUZZ
@given(st.binary(max_size=1500))
def test_any_bytes_as_a_certificate(pki: tuple[NationalIdCa, CardPersonalisation], der: bytes) -> None:
    _identity(pki, der)


@FUZZ
@given(st.data())
def test_a_mutated_card_certificate(pki: tuple[NationalIdCa, CardPersonalisation], data: st.DataObject) -> None:
    der = bytearray(pki[1].certificate_der)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(der) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if action == "flip":
            der[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            der[position] = data.draw(byte)
        elif action == "insert":
            der[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        elif len(der) > 1:
            del der[position:position + data.draw(st.integers(1, 8))]
    _identity(pki, bytes(der))


# --- the virtual card answers anything a reader sends -----------------------------------------------------
@SESSION_FUZZ
@given(st.lists(st.one_of(st.binary(max_size=40),
                          st.builds(lambda ins, body: bytes([0, ins, 0x3F, 0xFF]) + body,
                                    st.sampled_from([0xA4, 0xCB, 0x20, 0x24, 0x2C, 0x87, 0xC0]),
                                    st.binary(max_size=40))), max_size=8))
def test_the_virtual_card_answers_every_command(pki: tuple[NationalIdCa, CardPersonalisation],
                                                commands: list[bytes]) -> None:
    card = VirtualPivCard(pki[1], port=0)
    card.process_apdu(bytes.fromhex("00A4040009A00000030800001000"))
    for raw in commands:
        response = card.process_apdu(raw)
        assert len(response) >= 2


def test_found_by_the_long_run_a_certificate_of_version_4(pki: tuple[NationalIdCa, CardPersonalisation]) -> None:
    """Falsifying example of test_a_mutated_card_certificate (TAMGA_FUZZ=long): bit 0 of byte 12 (the
    version) flipped makes cryptography raise InvalidVersion, which is no ValueError."""
    der = bytearray(pki[1].certificate_der)
    der[12] ^= 1
    ca = pki[0]
    with pytest.raises(CertificateInvalid) as caught:
        card_identity(bytes(der), ca.trust_anchors, ca.intermediates, dt.datetime.now(dt.UTC))
    assert caught.value.data["reason"] == "malformed"


def test_found_by_the_long_run_a_duplicate_extension(pki: tuple[NationalIdCa, CardPersonalisation]) -> None:
    """Falsifying example of test_a_mutated_card_certificate (TAMGA_FUZZ=long): one flipped bit turned the
    keyUsage OID (2.5.29.15) into subjectKeyIdentifier's (2.5.29.14); cryptography raises
    DuplicateExtension, which is no ValueError."""
    der = pki[1].certificate_der
    key_usage_oid = bytes.fromhex("0603551d0f")
    assert der.count(key_usage_oid) == 1
    mutated = der.replace(key_usage_oid, bytes.fromhex("0603551d0e"))
    ca = pki[0]
    with pytest.raises(CertificateInvalid) as caught:
        card_identity(mutated, ca.trust_anchors, ca.intermediates, dt.datetime.now(dt.UTC))
    assert caught.value.data["reason"] == "malformed"
