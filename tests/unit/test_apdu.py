"""Pure APDU and BER-TLV helpers: encoding, parsing, status words."""

from __future__ import annotations

import pytest

from devices.apdu import (
    ApduFormatError,
    CommandApdu,
    Tlv,
    TlvError,
    build_tlvs,
    encode_length,
    encode_tlv,
    find_tlv,
    is_success,
    join_response,
    parse_tlvs,
    read_tlv,
    split_response,
    sw1,
    sw2,
    sw_hex,
    tlv_dict,
    unwrap_tlv,
    verify_tries_left,
)
from devices.piv import (
    Chuid,
    PivApplicationInfo,
    decode_certificate_object,
    encode_certificate_object,
    pkcs1v15_signature_block,
)


@pytest.mark.parametrize(("apdu", "encoded"), [
    (CommandApdu(0x00, 0xA4, 0x04, 0x00), "00A40400"),                                       # case 1
    (CommandApdu(0x00, 0xC0, 0x00, 0x00, ne=256), "00C0000000"),                             # case 2S
    (CommandApdu(0x00, 0xC0, 0x00, 0x00, ne=0x10), "00C0000010"),
    (CommandApdu(0x00, 0x20, 0x00, 0x80, b"\x31\x32"), "00200080023132"),                   # case 3S
    (CommandApdu(0x00, 0xA4, 0x04, 0x00, b"\xa0\x00", ne=256), "00A4040002A00000"),        # case 4S
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, ne=65536), "00CB3FFF000000"),                      # case 2E
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, ne=300), "00CB3FFF00012C"),
    (CommandApdu(0x00, 0xDB, 0x3F, 0xFF, b"\x01" * 300), "00DB3FFF00012C" + "01" * 300),   # case 3E
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, b"\x5c\x01\x7e", ne=65536),                       # case 4E
     "00CB3FFF0000035C017E0000"),
    (CommandApdu(0x00, 0xCB, 0x3F, 0xFF, b"\x5c\x01\x7e", ne=256, extended=True),
     "00CB3FFF0000035C017E0100"),
])
def test_encode_and_parse_every_case(apdu: CommandApdu, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert apdu.to_bytes() == raw
    parsed = CommandApdu.from_bytes(raw)
    assert (parsed.cla, parsed.ins, parsed.p1, parsed.p2, parsed.data, parsed.ne) == (
        apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, apdu.ne)
    assert parsed.is_extended == apdu.is_extended


@pytest.mark.parametrize("encoded", [
    "", "00", "00A404",                      # shorter than a header
    "00A4040005A0000003",                    # Lc 5, 3 bytes
    "00A4040002A0000000FF",                  # two bytes too many
    "00CB3FFF0000",                          # truncated extended length
    "00CB3FFF00000001",                      # extended Lc of zero
    "00CB3FFF000005AABB",                    # extended Lc 5, 2 bytes
])
def test_malformed_apdus_are_rejected(encoded: str) -> None:
    with pytest.raises(ApduFormatError):
        CommandApdu.from_bytes(bytes.fromhex(encoded))


@pytest.mark.parametrize("kwargs", [
    {"cla": 0x100, "ins": 0, "p1": 0, "p2": 0},
    {"cla": 0, "ins": 0, "p1": -1, "p2": 0},
    {"cla": 0, "ins": 0, "p1": 0, "p2": 0, "ne": 0},
    {"cla": 0, "ins": 0, "p1": 0, "p2": 0, "ne": 65537},
    {"cla": 0, "ins": 0, "p1": 0, "p2": 0, "data": b"\x00" * 65536},
])
def test_out_of_range_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises(ApduFormatError):
        CommandApdu(**kwargs)  # type: ignore[arg-type]


def test_status_words() -> None:
    data, sw = split_response(bytes.fromhex("AABB9000"))
    assert (data, sw) == (b"\xaa\xbb", 0x9000)
    assert join_response(data, sw) == bytes.fromhex("AABB9000")
    assert (sw1(0x6A82), sw2(0x6A82), sw_hex(0x6A82)) == (0x6A, 0x82, "6A82")
    assert is_success(0x9000) and is_success(0x6110) and not is_success(0x6A82)
    assert verify_tries_left(0x63C2) == 2
    assert verify_tries_left(0x63C0) == 0
    assert verify_tries_left(0x6983) is None
    with pytest.raises(ApduFormatError):
        split_response(b"\x90")


@pytest.mark.parametrize(("length", "encoded"), [
    (0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"), (0x100, "820100"), (0x10000, "83010000"),
])
def test_lengths(length: int, encoded: str) -> None:
    assert encode_length(length) == bytes.fromhex(encoded)
    element, end = read_tlv(bytes.fromhex("04" + encoded) + b"\x00" * length)
    assert len(element.value) == length and end == 1 + len(encoded) // 2 + length


@pytest.mark.parametrize(("tag", "encoded_tag"), [(0x53, "53"), (0x5FC105, "5FC105"), (0x7F21, "7F21"), (0x7E, "7E")])
def test_multi_byte_tags(tag: int, encoded_tag: str) -> None:
    encoded = encode_tlv(tag, b"\x01\x02")
    assert encoded == bytes.fromhex(encoded_tag + "020102")
    assert read_tlv(encoded) == (Tlv(tag, b"\x01\x02"), len(encoded))


def test_sequences_and_padding() -> None:
    data = build_tlvs([(0x70, b"cert"), (0x71, b"\x00"), (0xFE, b"")]) + b"\x00\x00"
    assert parse_tlvs(data) == [Tlv(0x70, b"cert"), Tlv(0x71, b"\x00"), Tlv(0xFE, b"")]
    assert tlv_dict(data)[0x70] == b"cert"
    assert find_tlv(data, 0x71) == b"\x00"
    assert find_tlv(data, 0x72) is None
    assert unwrap_tlv(encode_tlv(0x53, data), 0x53) == data
    assert Tlv(0x7C, b"").constructed and not Tlv(0x82, b"").constructed
    with pytest.raises(TlvError):
        unwrap_tlv(encode_tlv(0x53, data), 0x7C)


@pytest.mark.parametrize("encoded", [
    "53",            # no length
    "5303AABB",      # value shorter than its length
    "5F",            # truncated tag
    "5FC1",          # tag without end
    "5380",          # indefinite length
    "5385FFFFFFFFFF",  # five length bytes
    "5382FF",        # length bytes missing
])
def test_malformed_tlv(encoded: str) -> None:
    with pytest.raises(TlvError):
        parse_tlvs(bytes.fromhex(encoded))


# --- PIV records -----------------------------------------------------------------------------------------
def test_chuid_round_trip() -> None:
    chuid = Chuid(guid=bytes(range(16)), fasc_n=b"\xd4" * 25, expiration="20300101")
    assert Chuid.from_bytes(chuid.to_bytes()) == chuid
    assert chuid.card_uuid == bytes(range(16)).hex()
    assert Chuid(guid=b"\x00" * 16).card_uuid == ""


def test_application_template_round_trip() -> None:
    info = PivApplicationInfo(aid=bytes.fromhex("000010000100"), label="PIV", algorithms=(0x07, 0x11))
    assert PivApplicationInfo.from_bytes(info.to_bytes()) == info
    assert PivApplicationInfo.from_bytes(b"") == PivApplicationInfo(aid=b"")


@pytest.mark.parametrize("compress", [False, True])
def test_certificate_object_round_trip(compress: bool) -> None:
    der = b"0\x82" + bytes(range(256)) * 4
    content = encode_certificate_object(der, compress=compress)
    assert tlv_dict(content)[0x71] == (b"\x01" if compress else b"\x00")
    assert decode_certificate_object(content) == der


def test_pkcs1_block() -> None:
    block = pkcs1v15_signature_block(b"challenge", 256)
    assert len(block) == 256
    assert block.startswith(b"\x00\x01\xff\xff")
    assert block[-51:-32] == bytes.fromhex("3031300d060960864801650304020105000420")
    with pytest.raises(ValueError):
        pkcs1v15_signature_block(b"x", 32)


def test_malformed_select_response_is_a_card_error() -> None:
    from devices.piv import PivApplicationInfo
    from kiosk.errors import CardError

    with pytest.raises(CardError) as err:
        PivApplicationInfo.from_bytes(bytes.fromhex("61044F05A000"))
    assert err.value.data["reason"] == "malformed_select"
