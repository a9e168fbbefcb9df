"""PIV (NIST SP 800-73-4) card application: a session over a :class:`SmartCardConnection`.

``PivSession(connection)`` selects the PIV application in its constructor and offers verbs:
``get_certificate``, ``get_chuid``, ``verify_pin``, ``get_pin_attempts``, ``sign_challenge``.
Objects are read with ONE extended-length GET DATA (Le 0000); when the card or reader cannot
carry extended APDUs the session falls back, once and for the rest of the session, to short
APDUs with 61xx GET RESPONSE chaining and ISO command chaining.

No vendor import; failures are raised as :mod:`kiosk.errors` (CardError carries ``sw``).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from enum import IntEnum, unique

from devices.apdu import (
    CLA_CHAINING,
    CLA_ISO,
    INS_GET_RESPONSE,
    INS_SELECT,
    MAX_EXTENDED_NE,
    MAX_SHORT_NC,
    MAX_SHORT_NE,
    SW1_MORE_DATA,
    SW1_WRONG_LE,
    SW_AUTH_METHOD_BLOCKED,
    SW_FILE_NOT_FOUND,
    SW_OK,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    CommandApdu,
    ExtendedLengthUnsupported,
    SmartCardConnection,
    TlvError,
    build_tlvs,
    encode_tlv,
    read_tlv,
    sw1,
    sw2,
    sw_hex,
    tlv_dict,
    verify_tries_left,
)
from kiosk.errors import CardError, CardNotSupported, InvalidPin, PinBlocked
from kiosk.pin import Pin

# --- identifiers ------------------------------------------------------------------------------------------
RID_PIV = bytes.fromhex("A000000308")
AID_PIV = bytes.fromhex("A00000030800001000")          # right-truncated PIV AID (800-73-4 part 1, 2.2)
AID_PIV_FULL = AID_PIV + bytes.fromhex("0100")         # with version 01 00

INS_VERIFY = 0x20
INS_CHANGE_REFERENCE = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_GENERAL_AUTHENTICATE = 0x87
INS_GET_DATA = 0xCB
INS_PUT_DATA = 0xDB

KEY_REF_GLOBAL_PIN = 0x00
KEY_REF_PIV_PIN = 0x80
KEY_REF_PUK = 0x81

# SELECT response: application property template
TAG_APPLICATION_PROPERTY = 0x61
TAG_AID = 0x4F
TAG_ALLOCATION_AUTHORITY = 0x79
TAG_APPLICATION_LABEL = 0x50
TAG_APPLICATION_URL = 0x5F50
TAG_ALGORITHMS = 0xAC
TAG_ALGORITHM_ID = 0x80
TAG_OID = 0x06
# GET DATA
TAG_TAG_LIST = 0x5C
TAG_DATA = 0x53
TAG_DISCOVERY = 0x7E
TAG_PIN_USAGE_POLICY = 0x5F2F
# certificate object
TAG_CERTIFICATE = 0x70
TAG_CERT_INFO = 0x71
TAG_MSCUID = 0x72
TAG_LRC = 0xFE
# CHUID
TAG_FASC_N = 0x30
TAG_ORGANIZATION_ID = 0x32
TAG_DUNS = 0x33
TAG_GUID = 0x34
TAG_EXPIRATION = 0x35
TAG_CARDHOLDER_UUID = 0x36
TAG_ISSUER_SIGNATURE = 0x3E
# GENERAL AUTHENTICATE dynamic authentication template
TAG_DYNAMIC_AUTH = 0x7C
TAG_WITNESS = 0x80
TAG_CHALLENGE = 0x81
TAG_RESPONSE = 0x82
TAG_EXPONENTIATION = 0x85

OBJ_CARD_AUTH_CERT = 0x5FC101
OBJ_CHUID = 0x5FC102
OBJ_AUTHENTICATION_CERT = 0x5FC105
OBJ_SECURITY = 0x5FC106
OBJ_CCC = 0x5FC107
OBJ_SIGNATURE_CERT = 0x5FC10A
OBJ_KEY_MANAGEMENT_CERT = 0x5FC10B
OBJ_KEY_HISTORY = 0x5FC10C
OBJ_DISCOVERY = 0x7E

CERT_INFO_GZIP = 0x01

PIN_BLOCK_SIZE = 8
_MAX_OBJECT_SIZE = 64 * 1024
_MAX_GET_RESPONSE = 1024            # GET RESPONSE rounds before we call the card broken

DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")
DIGEST_INFO_SHA384 = bytes.fromhex("3041300d060960864801650304020205000430")


@unique
class Slot(IntEnum):
    AUTHENTICATION = 0x9A
    SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTH = 0x9E

    @property
    def object_id(self) -> int:
        return _SLOT_OBJECTS[self]


_SLOT_OBJECTS = {
    Slot.AUTHENTICATION: OBJ_AUTHENTICATION_CERT,
    Slot.SIGNATURE: OBJ_SIGNATURE_CERT,
    Slot.KEY_MANAGEMENT: OBJ_KEY_MANAGEMENT_CERT,
    Slot.CARD_AUTH: OBJ_CARD_AUTH_CERT,
}


@unique
class PivAlgorithm(IntEnum):
    """Cryptographic algorithm identifiers, SP 800-78-4 table 6-2."""

    RSA3072 = 0x05
    RSA1024 = 0x06
    RSA2048 = 0x07
    ECCP256 = 0x11
    ECCP384 = 0x14
    RSA4096 = 0x16

    @property
    def is_rsa(self) -> bool:
        return self in _RSA_SIZES

    @property
    def rsa_bytes(self) -> int:
        """Modulus length in bytes (RSA only)."""
        return _RSA_SIZES[self]


_RSA_SIZES = {PivAlgorithm.RSA1024: 128, PivAlgorithm.RSA2048: 256,
              PivAlgorithm.RSA3072: 384, PivAlgorithm.RSA4096: 512}


# --- data objects -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PivApplicationInfo:
    """The application property template returned by SELECT (tag 61)."""

    aid: bytes
    label: str = ""
    url: str = ""
    algorithms: tuple[int, ...] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> PivApplicationInfo:
        """Parse SELECT's response data.  An empty response is accepted (some cards send none)."""
        if not data:
            return cls(aid=b"")
        try:
            fields = tlv_dict(_unwrap(data, TAG_APPLICATION_PROPERTY))
            algorithms: list[int] = []
            if TAG_ALGORITHMS in fields:
                for tag, value in _items(fields[TAG_ALGORITHMS]):
                    if tag == TAG_ALGORITHM_ID and len(value) == 1:
                        algorithms.append(value[0])
        except TlvError as err:
            raise CardError("malformed SELECT response", reason="malformed_select") from err
        return cls(
            aid=fields.get(TAG_AID, b""),
            label=fields.get(TAG_APPLICATION_LABEL, b"").decode("utf-8", "replace"),
            url=fields.get(TAG_APPLICATION_URL, b"").decode("utf-8", "replace"),
            algorithms=tuple(algorithms),
        )

    def to_bytes(self) -> bytes:
        body = encode_tlv(TAG_AID, self.aid)
        body += encode_tlv(TAG_ALLOCATION_AUTHORITY, encode_tlv(TAG_AID, RID_PIV))
        if self.label:
            body += encode_tlv(TAG_APPLICATION_LABEL, self.label.encode())
        if self.url:
            body += encode_tlv(TAG_APPLICATION_URL, self.url.encode())
        if self.algorithms:
            algs = b"".join(encode_tlv(TAG_ALGORITHM_ID, bytes((a,))) for a in self.algorithms)
            body += encode_tlv(TAG_ALGORITHMS, algs + encode_tlv(TAG_OID, b"\x00"))
        return encode_tlv(TAG_APPLICATION_PROPERTY, body)


@dataclass(frozen=True)
class Chuid:
    """Card Holder Unique Identifier (object 5FC102).  ``guid`` is the 16-byte card UUID."""

    guid: bytes
    fasc_n: bytes = b""
    expiration: str = ""            # YYYYMMDD
    issuer_signature: bytes = b""

    @property
    def card_uuid(self) -> str:
        """The GUID as lower-case hex; empty when absent or all zeros."""
        return self.guid.hex() if any(self.guid) else ""

    @classmethod
    def from_bytes(cls, data: bytes) -> Chuid:
        """Parse the object's content (the value of tag 53).  Raises CardError on malformed data."""
        try:
            fields = tlv_dict(data)
        except TlvError as err:
            raise CardError("malformed CHUID", object="5FC102") from err
        return cls(
            guid=fields.get(TAG_GUID, b""),
            fasc_n=fields.get(TAG_FASC_N, b""),
            expiration=fields.get(TAG_EXPIRATION, b"").decode("ascii", "replace"),
            issuer_signature=fields.get(TAG_ISSUER_SIGNATURE, b""),
        )

    def to_bytes(self) -> bytes:
        items: list[tuple[int, bytes]] = []
        if self.fasc_n:
            items.append((TAG_FASC_N, self.fasc_n))
        items.append((TAG_GUID, self.guid))
        if self.expiration:
            items.append((TAG_EXPIRATION, self.expiration.encode("ascii")))
        items.append((TAG_ISSUER_SIGNATURE, self.issuer_signature))
        items.append((TAG_LRC, b""))
        return build_tlvs(items)


def encode_certificate_object(certificate_der: bytes, compress: bool = False) -> bytes:
    """Content of a PIV certificate object (value of tag 53): 70 cert, 71 CertInfo, FE LRC."""
    if compress:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)     # wbits 31: gzip container
        body = packer.compress(certificate_der) + packer.flush()
        info = CERT_INFO_GZIP
    else:
        body, info = certificate_der, 0
    return build_tlvs([(TAG_CERTIFICATE, body), (TAG_CERT_INFO, bytes((info,))), (TAG_LRC, b"")])


def decode_certificate_object(content: bytes) -> bytes:
    """The DER certificate from a certificate object's content, gunzipped when CertInfo says so."""
    try:
        fields = tlv_dict(content)
    except TlvError as err:
        raise CardError("malformed certificate object") from err
    body = fields.get(TAG_CERTIFICATE)
    if not body:
        raise CardError("certificate object without a certificate")
    info = fields.get(TAG_CERT_INFO, b"\x00")
    if info and info[0] & CERT_INFO_GZIP:
        unpacker = zlib.decompressobj(47)                   # gzip or zlib header, auto-detected
        try:
            body = unpacker.decompress(body, _MAX_OBJECT_SIZE)
        except zlib.error as err:
            raise CardError("certificate does not decompress") from err
        if unpacker.unconsumed_tail:
            raise CardError("decompressed certificate too large")
        if not unpacker.eof:
            raise CardError("certificate does not decompress (truncated)")
    return body


def pkcs1v15_signature_block(message: bytes, modulus_bytes: int, hash_name: str = "sha256") -> bytes:
    """EMSA-PKCS1-v1_5 encoding of DigestInfo(hash(message)): the raw RSA input for a PIV card."""
    if hash_name == "sha256":
        digest_info = DIGEST_INFO_SHA256 + hashlib.sha256(message).digest()
    elif hash_name == "sha384":
        digest_info = DIGEST_INFO_SHA384 + hashlib.sha384(message).digest()
    else:
        raise ValueError(f"unsupported hash {hash_name}")
    padding = modulus_bytes - len(digest_info) - 3
    if padding < 8:
        raise ValueError("modulus too short for this digest")
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info


def _items(data: bytes) -> list[tuple[int, bytes]]:
    offset, out = 0, []
    while offset < len(data):
        element, offset = read_tlv(data, offset)
        out.append((element.tag, element.value))
    return out


def _unwrap(data: bytes, tag: int) -> bytes:
    try:
        element, _ = read_tlv(data)
    except TlvError as err:
        raise CardError(f"malformed response, expected tag {tag:X}") from err
    if element.tag != tag:
        raise CardError(f"unexpected tag {element.tag:X}, expected {tag:X}")
    return element.value


def _object_tag(object_id: int) -> bytes:
    return object_id.to_bytes(max(1, (object_id.bit_length() + 7) // 8), "big")


# --- the session ------------------------------------------------------------------------------------------
class PivSession:
    """The PIV application on one card; selects it on construction.

    Raises CardNotSupported when the card has no PIV application, CardError on unexpected status
    words or malformed data; the connection's own errors (DeviceNotReady) pass through.
    """

    def __init__(self, connection: SmartCardConnection, *, extended_length: bool = True) -> None:
        self._connection = connection
        self._extended = extended_length
        self.application = self._select()

    @property
    def extended_length(self) -> bool:
        """Whether this session still sends extended-length APDUs (False after a fallback)."""
        return self._extended

    # -- transport ------------------------------------------------------------------------------------
    def _exchange(self, apdu: CommandApdu) -> tuple[bytes, int]:
        """Send one APDU (chaining the command if needed) and collect 61xx / 6Cxx responses."""
        if len(apdu.data) > MAX_SHORT_NC and not self._extended:
            return self._chain_command(apdu)
        data, sw = self._connection.send_and_receive(apdu.to_bytes())
        if sw1(sw) == SW1_WRONG_LE and apdu.ne is not None:
            retry = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, sw2(sw) or MAX_SHORT_NE)
            data, sw = self._connection.send_and_receive(retry.to_bytes())
        return self._collect(data, sw)

    def _collect(self, data: bytes, sw: int) -> tuple[bytes, int]:
        chunks = [data]
        total = len(data)
        rounds = 0
        while sw1(sw) == SW1_MORE_DATA:
            rounds += 1
            if rounds > _MAX_GET_RESPONSE or total > _MAX_OBJECT_SIZE:
                raise CardError("card keeps answering 61xx", sw=sw_hex(sw))
            get_response = CommandApdu(CLA_ISO, INS_GET_RESPONSE, 0, 0, ne=sw2(sw) or MAX_SHORT_NE)
            data, sw = self._connection.send_and_receive(get_response.to_bytes())
            chunks.append(data)
            total += len(data)
        return b"".join(chunks), sw

    def _chain_command(self, apdu: CommandApdu) -> tuple[bytes, int]:
        payload = apdu.data
        pieces = [payload[i:i + MAX_SHORT_NC] for i in range(0, len(payload), MAX_SHORT_NC)]
        for piece in pieces[:-1]:
            link = CommandApdu(apdu.cla | CLA_CHAINING, apdu.ins, apdu.p1, apdu.p2, piece)
            _, sw = self._connection.send_and_receive(link.to_bytes())
            if sw != SW_OK:
                return b"", sw
        last = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, pieces[-1],
                           ne=MAX_SHORT_NE if apdu.ne is not None else None)
        data, sw = self._connection.send_and_receive(last.to_bytes())
        return self._collect(data, sw)

    def _send(self, ins: int, p1: int, p2: int, data: bytes = b"", expect_data: bool = True,
              ) -> tuple[bytes, int]:
        """One logical command; extended Le 0000 when allowed, with a one-time fallback to short."""
        if self._extended:
            apdu = CommandApdu(CLA_ISO, ins, p1, p2, data, ne=MAX_EXTENDED_NE if expect_data else None,
                               extended=expect_data or len(data) > MAX_SHORT_NC)
            try:
                response, sw = self._exchange(apdu)
            except ExtendedLengthUnsupported:
                response, sw = b"", SW_WRONG_LENGTH
            if not (sw == SW_WRONG_LENGTH and apdu.is_extended):
                return response, sw
            self._extended = False                      # reader or card refused extended length
        short = CommandApdu(CLA_ISO, ins, p1, p2, data, ne=MAX_SHORT_NE if expect_data else None)
        return self._exchange(short)

    # -- verbs ----------------------------------------------------------------------------------------
    def _select(self) -> PivApplicationInfo:
        apdu = CommandApdu(CLA_ISO, INS_SELECT, 0x04, 0x00, AID_PIV, ne=MAX_SHORT_NE)
        data, sw = self._exchange(apdu)
        if sw != SW_OK:
            raise CardNotSupported("no PIV application on this card", sw=sw_hex(sw))
        return PivApplicationInfo.from_bytes(data)

    def get_object(self, object_id: int) -> bytes | None:
        """Content of a data object (inside tag 53; the 7E template for discovery), None if absent."""
        tag = _object_tag(object_id)
        data, sw = self._send(INS_GET_DATA, 0x3F, 0xFF, encode_tlv(TAG_TAG_LIST, tag))
        if sw == SW_FILE_NOT_FOUND:
            return None
        if sw != SW_OK:
            raise CardError("GET DATA failed", sw=sw_hex(sw), object=tag.hex().upper())
        outer = TAG_DISCOVERY if object_id == OBJ_DISCOVERY else TAG_DATA
        return _unwrap(data, outer)

    def get_certificate(self, slot: Slot = Slot.AUTHENTICATION) -> bytes | None:
        """The DER certificate of ``slot``, None when the card holds none."""
        content = self.get_object(slot.object_id)
        return None if content is None else decode_certificate_object(content)

    def get_chuid(self) -> Chuid | None:
        content = self.get_object(OBJ_CHUID)
        return None if content is None else Chuid.from_bytes(content)

    def get_pin_attempts(self) -> int | None:
        """Tries left for the PIV PIN (empty VERIFY); None when already verified in this session."""
        _, sw = self._exchange(CommandApdu(CLA_ISO, INS_VERIFY, 0x00, KEY_REF_PIV_PIN))
        if sw == SW_OK:
            return None
        if sw == SW_AUTH_METHOD_BLOCKED:
            return 0
        tries = verify_tries_left(sw)
        if tries is None:
            raise CardError("PIN status query failed", sw=sw_hex(sw))
        return tries

    def verify_pin(self, pin: Pin, *, last_try_allowed: bool = False) -> None:
        """VERIFY the PIV PIN, after reading the retry counter (VERIFY without data).

        A card with one try left gets no PIN unless ``last_try_allowed``: the applicant is sent to
        the card's issuer, PinBlocked(device='card', reason='last_try', attempts_remaining=1).
        The PIN block exists only in the APDU's own bytearray, zeroed once sent.  Raises
        InvalidPin(attempts_remaining=n), PinBlocked(reason='blocked'|'last_try').
        """
        tries = self.get_pin_attempts()          # None: verified already, so the counter is full
        if tries == 0:
            raise PinBlocked("PIN blocked", device="card", reason="blocked", attempts_remaining=0)
        if tries == 1 and not last_try_allowed:
            raise PinBlocked("one PIN try left: not spent at the kiosk", device="card", reason="last_try",
                             attempts_remaining=1)
        value = pin.reveal()
        if not value.isascii() or not 0 < len(value) <= PIN_BLOCK_SIZE:
            # cannot be this card's PIN: report the counter without spending a try
            raise InvalidPin("PIN format", attempts_remaining=tries)
        sw = self._send_pin_block(value)
        if sw == SW_OK:
            return
        if sw == SW_AUTH_METHOD_BLOCKED:
            raise PinBlocked("PIN blocked", device="card", reason="blocked", attempts_remaining=0)
        left = verify_tries_left(sw)
        if left == 0:
            raise PinBlocked("PIN blocked", device="card", reason="blocked", attempts_remaining=0)
        if left is not None:
            raise InvalidPin(attempts_remaining=left)
        if sw == SW_WRONG_DATA:
            raise InvalidPin("PIN format", attempts_remaining=self.get_pin_attempts())
        raise CardError("VERIFY failed", sw=sw_hex(sw))

    def _send_pin_block(self, value: str) -> int:
        """VERIFY with the PIN padded to 8 bytes with FF, built in one bytearray that is zeroed after."""
        apdu = bytearray(5 + PIN_BLOCK_SIZE)
        apdu[:5] = bytes((CLA_ISO, INS_VERIFY, 0x00, KEY_REF_PIV_PIN, PIN_BLOCK_SIZE))
        for index in range(PIN_BLOCK_SIZE):
            apdu[5 + index] = ord(value[index]) if index < len(value) else 0xFF
        try:
            _, sw = self._connection.send_and_receive(apdu)
        finally:
            for index in range(len(apdu)):
                apdu[index] = 0
        return sw

    def general_authenticate(self, algorithm: PivAlgorithm, slot: Slot, data: bytes) -> bytes:
        """GENERAL AUTHENTICATE with ``data`` as the challenge (81); return the response (82)."""
        template = encode_tlv(TAG_DYNAMIC_AUTH,
                              encode_tlv(TAG_RESPONSE, b"") + encode_tlv(TAG_CHALLENGE, data))
        response, sw = self._send(INS_GENERAL_AUTHENTICATE, int(algorithm), int(slot), template)
        if sw != SW_OK:
            raise CardError("GENERAL AUTHENTICATE failed", sw=sw_hex(sw), slot=f"{int(slot):02X}")
        try:
            fields = tlv_dict(_unwrap(response, TAG_DYNAMIC_AUTH))
        except TlvError as err:
            raise CardError("malformed GENERAL AUTHENTICATE response") from err
        value = fields.get(TAG_RESPONSE)
        if not value:
            raise CardError("GENERAL AUTHENTICATE response without tag 82")
        return value

    def sign_challenge(self, challenge: bytes, algorithm: PivAlgorithm,
                       slot: Slot = Slot.AUTHENTICATION) -> bytes:
        """Have the card sign ``challenge`` with the key in ``slot``.

        RSA: the card gets EMSA-PKCS1-v1_5(DigestInfo(SHA-256)) as raw input; the result is the
        big-endian signature of the modulus length.  ECC: the card gets SHA-256 (P-256) or
        SHA-384 (P-384) of the challenge; the result is a DER ECDSA-Sig-Value.
        """
        if algorithm.is_rsa:
            size = algorithm.rsa_bytes
            block = pkcs1v15_signature_block(challenge, size)
            signature = self.general_authenticate(algorithm, slot, block)
            if len(signature) > size:
                raise CardError("RSA signature longer than the modulus")
            return signature.rjust(size, b"\x00")
        if algorithm == PivAlgorithm.ECCP256:
            digest = hashlib.sha256(challenge).digest()
        else:
            digest = hashlib.sha384(challenge).digest()
        return self.general_authenticate(algorithm, slot, digest)
