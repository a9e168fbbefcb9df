"""ISO 7816-4 command APDUs, status words and BER-TLV, as pure functions over bytes.

No vendor import: the PIV session, the virtual card and the tests all build on this module.
The one seam to a card is :class:`SmartCardConnection` (``send_and_receive(apdu) -> (data, sw)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

# --- status words ----------------------------------------------------------------------------------------
SW_OK = 0x9000
SW_WARNING_NV_UNCHANGED = 0x6200
SW_VERIFY_FAILED_BASE = 0x63C0        # 63Cx: wrong PIN, x tries left
SW_MEMORY_FAILURE = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
SW_LAST_COMMAND_EXPECTED = 0x6883
SW_SECURITY_STATUS_NOT_SATISFIED = 0x6982
SW_AUTH_METHOD_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCE_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00

SW1_MORE_DATA = 0x61                  # 61xx: xx more bytes, fetch with GET RESPONSE
SW1_WRONG_LE = 0x6C                   # 6Cxx: resend with Le = xx

# --- common instructions ----------------------------------------------------------------------------------
INS_SELECT = 0xA4
INS_GET_RESPONSE = 0xC0

CLA_ISO = 0x00
CLA_CHAINING = 0x10                   # ISO 7816-4 command chaining: more commands of this chain follow

MAX_SHORT_NC = 255
MAX_SHORT_NE = 256
MAX_EXTENDED_NC = 65535
MAX_EXTENDED_NE = 65536


class ApduFormatError(ValueError):
    """Bytes that are not a well-formed command APDU (or a field out of range)."""


class TlvError(ValueError):
    """Bytes that are not well-formed BER-TLV."""


class ExtendedLengthUnsupported(Exception):
    """Raised by a connection whose reader or card path cannot carry an extended-length APDU.

    A session catches it and falls back to short APDUs with GET RESPONSE / command chaining.
    """


class SmartCardConnection(Protocol):
    """The one seam to a card: send a command APDU, get the response data and the status word."""

    def send_and_receive(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        """A bytearray APDU (one carrying a PIN) is the caller's: it is zeroed after the call."""
        ...


# --- status word helpers ----------------------------------------------------------------------------------
def sw1(sw: int) -> int:
    return (sw >> 8) & 0xFF


def sw2(sw: int) -> int:
    return sw & 0xFF


def is_success(sw: int) -> bool:
    """9000, or 61xx (success with more data waiting)."""
    return sw == SW_OK or sw1(sw) == SW1_MORE_DATA


def sw_hex(sw: int) -> str:
    return f"{sw:04X}"


def verify_tries_left(sw: int) -> int | None:
    """x of a 63Cx status word, else None."""
    return sw & 0x0F if sw & 0xFFF0 == SW_VERIFY_FAILED_BASE else None


# --- command APDU -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandApdu:
    """A command APDU.  ``ne`` is the number of response bytes expected (None: no Le field).

    ``ne`` 256 encodes as short Le 00, 65536 as extended Le 0000.  Extended encoding is used when
    the data or ``ne`` do not fit a short APDU, or when ``extended`` is True.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ApduFormatError(f"{name} out of range: {value}")
        if len(self.data) > MAX_EXTENDED_NC:
            raise ApduFormatError("command data longer than 65535 bytes")
        if self.ne is not None and not 0 < self.ne <= MAX_EXTENDED_NE:
            raise ApduFormatError(f"Ne out of range: {self.ne}")

    @property
    def is_extended(self) -> bool:
        return (self.extended or len(self.data) > MAX_SHORT_NC
                or (self.ne is not None and self.ne > MAX_SHORT_NE))

    def to_bytes(self) -> bytes:
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        nc = len(self.data)
        if not self.is_extended:
            body = bytes((nc,)) + self.data if nc else b""
            le = bytes((self.ne & 0xFF,)) if self.ne is not None else b""  # 256 -> 00
            return header + body + le
        body = b"\x00" + nc.to_bytes(2, "big") + self.data if nc else b""
        if self.ne is None:
            le = b""
        else:
            le_value = (self.ne & 0xFFFF).to_bytes(2, "big")          # 65536 -> 0000
            le = le_value if nc else b"\x00" + le_value
        return header + body + le

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandApdu:
        """Parse cases 1, 2S, 3S, 4S, 2E, 3E, 4E.  Raises ApduFormatError on inconsistent lengths."""
        if len(raw) < 4:
            raise ApduFormatError("APDU shorter than its header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        if not body:                                                   # case 1
            return cls(cla, ins, p1, p2)
        if len(body) == 1:                                             # case 2S
            return cls(cla, ins, p1, p2, ne=body[0] or MAX_SHORT_NE)
        if body[0] != 0:                                               # case 3S / 4S
            nc = body[0]
            if len(body) == 1 + nc:
                return cls(cla, ins, p1, p2, body[1:])
            if len(body) == 2 + nc:
                return cls(cla, ins, p1, p2, body[1:1 + nc], ne=body[-1] or MAX_SHORT_NE)
            raise ApduFormatError("short APDU length fields do not match its size")
        if len(body) == 3:                                             # case 2E
            return cls(cla, ins, p1, p2, ne=int.from_bytes(body[1:3], "big") or MAX_EXTENDED_NE,
                       extended=True)
        if len(body) < 3:
            raise ApduFormatError("truncated extended length")
        nc = int.from_bytes(body[1:3], "big")
        if nc == 0:
            raise ApduFormatError("extended Lc of zero")
        if len(body) == 3 + nc:                                        # case 3E
            return cls(cla, ins, p1, p2, body[3:], extended=True)
        if len(body) == 5 + nc:                                        # case 4E
            return cls(cla, ins, p1, p2, body[3:3 + nc],
                       ne=int.from_bytes(body[-2:], "big") or MAX_EXTENDED_NE, extended=True)
        raise ApduFormatError("extended APDU length fields do not match its size")


def split_response(raw: bytes) -> tuple[bytes, int]:
    """Split a response APDU into (data, sw).  Raises ApduFormatError when shorter than a status word."""
    if len(raw) < 2:
        raise ApduFormatError("response shorter than a status word")
    return bytes(raw[:-2]), (raw[-2] << 8) | raw[-1]


def join_response(data: bytes, sw: int) -> bytes:
    return bytes(data) + sw.to_bytes(2, "big")


# --- BER-TLV ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tlv:
    """One BER-TLV element; ``tag`` is the whole tag as an integer (``0x5FC105``, ``0x7C``)."""

    tag: int
    value: bytes

    def to_bytes(self) -> bytes:
        return encode_tlv(self.tag, self.value)

    @property
    def constructed(self) -> bool:
        return bool(_tag_bytes(self.tag)[0] & 0x20)


def _tag_bytes(tag: int) -> bytes:
    if tag < 0:
        raise TlvError("negative tag")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode_length(length: int) -> bytes:
    if length < 0:
        raise TlvError("negative length")
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > 4:
        raise TlvError("length too large")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def encode_tlv(tag: int, value: bytes) -> bytes:
    return _tag_bytes(tag) + encode_length(len(value)) + bytes(value)


def read_tlv(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Read one TLV at ``offset``; return it and the offset after it.  Raises TlvError."""
    end = len(data)
    if offset >= end:
        raise TlvError("no tag")
    first = data[offset]
    tag = first
    offset += 1
    if first & 0x1F == 0x1F:                     # multi-byte tag
        while True:
            if offset >= end:
                raise TlvError("truncated tag")
            byte = data[offset]
            tag = (tag << 8) | byte
            offset += 1
            if not byte & 0x80:
                break
            if tag > 0xFFFFFFFF:
                raise TlvError("tag too long")
    if offset >= end:
        raise TlvError("missing length")
    length = data[offset]
    offset += 1
    if length == 0x80:
        raise TlvError("indefinite length is not allowed")
    if length > 0x80:
        size = length & 0x7F
        if size > 4 or offset + size > end:
            raise TlvError("bad length field")
        length = int.from_bytes(data[offset:offset + size], "big")
        offset += size
    if offset + length > end:
        raise TlvError("value runs past the end of the data")
    return Tlv(tag, bytes(data[offset:offset + length])), offset + length


def iter_tlvs(data: bytes) -> Iterator[Tlv]:
    """The TLVs of a flat sequence; 00 and FF bytes between them are padding (ISO 7816-4 5.2.2)."""
    offset = 0
    end = len(data)
    while offset < end:
        if data[offset] in (0x00, 0xFF):
            offset += 1
            continue
        element, offset = read_tlv(data, offset)
        yield element


def parse_tlvs(data: bytes) -> list[Tlv]:
    """All TLVs of a flat sequence.  Raises TlvError."""
    return list(iter_tlvs(data))


def tlv_dict(data: bytes) -> dict[int, bytes]:
    """Tag → value of a flat sequence; the first occurrence wins."""
    result: dict[int, bytes] = {}
    for element in iter_tlvs(data):
        result.setdefault(element.tag, element.value)
    return result


def find_tlv(data: bytes, tag: int) -> bytes | None:
    """Value of the first ``tag`` in a flat sequence, or None."""
    for element in iter_tlvs(data):
        if element.tag == tag:
            return element.value
    return None


def unwrap_tlv(data: bytes, tag: int) -> bytes:
    """Value of a single outer ``tag`` (trailing bytes ignored).  Raises TlvError when the tag differs."""
    element, _ = read_tlv(data)
    if element.tag != tag:
        raise TlvError(f"expected tag {tag:X}, got {element.tag:X}")
    return element.value


def build_tlvs(elements: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(encode_tlv(tag, value) for tag, value in elements)
