"""A pure-Python virtual PIV card that plugs into vpcd (vsmartcard's virtual reader driver in pcscd).

The card is a TCP client of vpcd on ``host:port``.  Every message both ways is a 2-byte big-endian
length and a payload; a 1-byte payload from vpcd is a control code (0 power off, 1 power on,
2 reset, 4 send ATR), a longer one a command APDU to answer.  Closing the socket removes the card.

It implements enough of SP 800-73-4 for the kiosk and for OpenSC's PIV driver: SELECT, GET DATA
(extended or short Le, 61xx chaining), GET RESPONSE, VERIFY (status query, retry counter,
blocking), CHANGE REFERENCE DATA, RESET RETRY COUNTER, GENERAL AUTHENTICATE with key 9A, ISO
command chaining.  Malformed commands get an error status word; nothing a reader sends crashes it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from devices.apdu import (
    CLA_CHAINING,
    INS_GET_RESPONSE,
    INS_SELECT,
    MAX_SHORT_NE,
    SW_AUTH_METHOD_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_LAST_COMMAND_EXPECTED,
    SW_OK,
    SW_REFERENCE_NOT_FOUND,
    SW_SECURE_MESSAGING_NOT_SUPPORTED,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_UNKNOWN,
    SW_VERIFY_FAILED_BASE,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    ApduFormatError,
    CommandApdu,
    TlvError,
    encode_tlv,
    join_response,
    read_tlv,
    tlv_dict,
)
from devices.piv import (
    AID_PIV_FULL,
    DIGEST_INFO_SHA256,
    INS_CHANGE_REFERENCE,
    INS_GENERAL_AUTHENTICATE,
    INS_GET_DATA,
    INS_RESET_RETRY_COUNTER,
    INS_VERIFY,
    KEY_REF_PIV_PIN,
    KEY_REF_PUK,
    OBJ_AUTHENTICATION_CERT,
    OBJ_CHUID,
    OBJ_DISCOVERY,
    PIN_BLOCK_SIZE,
    RID_PIV,
    TAG_AID,
    TAG_CHALLENGE,
    TAG_DATA,
    TAG_DISCOVERY,
    TAG_DYNAMIC_AUTH,
    TAG_PIN_USAGE_POLICY,
    TAG_RESPONSE,
    TAG_TAG_LIST,
    Chuid,
    PivAlgorithm,
    PivApplicationInfo,
    Slot,
    encode_certificate_object,
)
from devices.sim.national_ca import CardPersonalisation

log = logging.getLogger(__name__)

VPCD_CTRL_OFF = 0
VPCD_CTRL_ON = 1
VPCD_CTRL_RESET = 2
VPCD_CTRL_ATR = 4


def _atr(historical: bytes) -> bytes:
    """A T=1 ATR (3B 8n 80 01 + historical bytes + TCK), the form PC/SC uses for generic cards."""
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes((tck,))


DEFAULT_ATR = _atr(b"TamgaPIV")
_MAX_CHAIN = 64 * 1024
_FASC_N = bytes.fromhex("D4E739DA739CED39CE739D836858210842108421C84210C3EB")   # a test FASC-N
_DISCOVERY = encode_tlv(TAG_DISCOVERY, encode_tlv(TAG_AID, AID_PIV_FULL)
                        + encode_tlv(TAG_PIN_USAGE_POLICY, bytes((0x40, 0x00))))


@dataclass
class _Pending:
    data: bytes


class VirtualPivCard:
    """A PIV card holding one personalisation; ``insert()`` puts it in the vpcd reader on ``port``.

    ``apdu_log`` lists (INS, SW) of every command, never command data.  Thread-safe.
    ``extended_length=False`` makes it refuse extended APDUs with 6700 (an older card).
    """

    def __init__(self, personalisation: CardPersonalisation, port: int, *, host: str = "127.0.0.1",
                 atr: bytes = DEFAULT_ATR, compress_certificate: bool = False,
                 extended_length: bool = True, with_chuid: bool = True,
                 connect_timeout: float = 5.0, rsa_pss_only: bool = False) -> None:
        self.personalisation = personalisation
        self.port = port
        self.host = host
        self.atr = atr
        self.extended_length = extended_length
        self.connect_timeout = connect_timeout
        self.rsa_pss_only = rsa_pss_only    # refuse PKCS#1 v1.5 blocks, as a card that signs only PSS
        self._lock = threading.RLock()
        self._log: list[tuple[int, int]] = []
        # persistent state
        self._pin = self._pad(personalisation.pin)
        self._puk = self._pad(personalisation.puk)
        self._pin_max = personalisation.pin_tries
        self._pin_left = personalisation.pin_tries
        self._puk_max = personalisation.puk_tries
        self._puk_left = personalisation.puk_tries
        self._objects: dict[int, bytes] = {
            OBJ_AUTHENTICATION_CERT: encode_tlv(TAG_DATA, encode_certificate_object(
                personalisation.certificate_der, compress=compress_certificate)),
            OBJ_DISCOVERY: _DISCOVERY,
        }
        if with_chuid:
            chuid = Chuid(guid=personalisation.chuid_uuid, fasc_n=_FASC_N,
                          expiration=personalisation.certificate.not_valid_after_utc.strftime("%Y%m%d"))
            self._objects[OBJ_CHUID] = encode_tlv(TAG_DATA, chuid.to_bytes())
        key = personalisation.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            algorithm = PivAlgorithm.RSA2048
        else:
            algorithm = PivAlgorithm.ECCP384 if isinstance(key.curve, ec.SECP384R1) else PivAlgorithm.ECCP256
        self._keys: dict[int, tuple[PivAlgorithm, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]] = {
            Slot.AUTHENTICATION: (algorithm, key)}
        self._select_response = PivApplicationInfo(
            aid=AID_PIV_FULL[len(RID_PIV):], label="Tamga virtual PIV",
            algorithms=(int(algorithm),)).to_bytes()
        # volatile state
        self._selected = False
        self._verified = False
        self._pending: _Pending | None = None
        self._chain: tuple[tuple[int, int, int], bytearray] | None = None
        # connection
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.pull_on_ins: int | None = None
        """Fault injection: the card vanishes, unanswered, when a command with this INS arrives."""
        self.mute_on_ins: int | None = None
        """Fault injection: from the command with this INS on, the card stays in the reader and never
        answers a command again (a hung chip) until :meth:`remove`; -1: from the next command."""
        self.responses: dict[int, bytes] = {}
        """Fault injection: INS → the raw response (data + SW, or any bytes) sent instead of the answer."""
        self._mute = False

    # -- state ---------------------------------------------------------------------------------------
    @staticmethod
    def _pad(value: str) -> bytes:
        return value.encode("ascii").ljust(PIN_BLOCK_SIZE, b"\xff")

    @property
    def apdu_log(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def pin_tries_left(self) -> int:
        with self._lock:
            return self._pin_left

    @property
    def pin_verified(self) -> bool:
        with self._lock:
            return self._verified

    def power_cycle(self) -> None:
        """Drop the volatile state, as a reset or power-up does."""
        with self._lock:
            self._selected = False
            self._verified = False
            self._pending = None
            self._chain = None

    # -- the reader side -----------------------------------------------------------------------------
    @property
    def inserted(self) -> bool:
        return self._connected.is_set()

    def insert(self) -> None:
        """Connect to vpcd in a background thread (retrying until ``connect_timeout``)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._connected.clear()
            self.power_cycle()
            self._thread = threading.Thread(target=self._serve, name=f"vpiv-{self.port}", daemon=True)
            self._thread.start()

    def wait_connected(self, timeout: float = 5.0) -> bool:
        """Whether the card reached vpcd within ``timeout`` (vpcd still needs ~0.4 s to notice)."""
        return self._connected.wait(timeout)

    def remove(self) -> None:
        """Pull the card: close the socket and stop the thread."""
        self._stop.set()
        with self._lock:
            sock, thread = self._sock, self._thread
            self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            self._thread = None
        self._connected.clear()
        self._mute = False
        self.mute_on_ins = None
        self.power_cycle()

    close = remove

    def __enter__(self) -> VirtualPivCard:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> socket.socket | None:
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.01
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect((self.host, self.port))
                return sock
            except OSError:
                sock.close()
                if time.monotonic() >= deadline:
                    log.warning("virtual card: vpcd on port %d not reachable", self.port)
                    return None
                self._stop.wait(delay)
                delay = min(delay * 2, 0.2)
        return None

    def _serve(self) -> None:
        sock = self._connect()
        if sock is None:
            return
        with self._lock:
            if self._stop.is_set():
                sock.close()
                return
            self._sock = sock
        self._connected.set()
        try:
            while not self._stop.is_set():
                header = self._recv_exact(sock, 2)
                if header is None:
                    break
                size = int.from_bytes(header, "big")
                payload = self._recv_exact(sock, size) if size else b""
                if payload is None:
                    break
                if size > 1 and payload[1] == self.pull_on_ins:
                    self.pull_on_ins = None          # pulled in the middle of this command
                    break
                if size > 1 and self.mute_on_ins is not None and self.mute_on_ins in (-1, payload[1]):
                    self._mute = True
                if size == 1:
                    reply = self._control(payload[0])
                elif size == 0 or self._mute:
                    continue                         # a hung chip: the command is never answered
                elif payload[1] in self.responses:
                    reply = self.responses[payload[1]]
                    with self._lock:
                        self._log.append((payload[1], -1))
                else:
                    reply = self.process_apdu(payload)
                if reply is not None:
                    sock.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            pass
        finally:
            self._connected.clear()
            with self._lock:
                if self._sock is sock:
                    self._sock = None
            sock.close()
            self.power_cycle()                       # out of the reader, the chip has no power

    @staticmethod
    def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < size:
            chunk = sock.recv(size - len(buf))
            # vpcd writes length and APDU in two send() calls: ACK at once, or pay ~40 ms each
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _control(self, code: int) -> bytes | None:
        if code in (VPCD_CTRL_OFF, VPCD_CTRL_ON, VPCD_CTRL_RESET):
            self.power_cycle()
            return None
        if code == VPCD_CTRL_ATR:
            return self.atr
        return None

    # -- the card ------------------------------------------------------------------------------------
    def process_apdu(self, raw: bytes) -> bytes:
        """Answer one command APDU with a response APDU (data + SW).  Never raises."""
        with self._lock:
            try:
                data, sw = self._dispatch(raw)
            except Exception:                               # the card must answer, whatever happens
                log.exception("virtual card failed on INS %02X", raw[1] if len(raw) > 1 else 0)
                data, sw = b"", SW_UNKNOWN
            self._log.append((raw[1] if len(raw) > 1 else -1, sw))
            return join_response(data, sw)

    def _dispatch(self, raw: bytes) -> tuple[bytes, int]:
        try:
            apdu = CommandApdu.from_bytes(raw)
        except ApduFormatError:
            self._pending = None
            return b"", SW_WRONG_LENGTH
        if apdu.cla & 0x0C:
            return b"", SW_SECURE_MESSAGING_NOT_SUPPORTED
        if apdu.cla & ~CLA_CHAINING & 0xFF:
            return b"", SW_CLA_NOT_SUPPORTED
        if apdu.is_extended and not self.extended_length:
            return b"", SW_WRONG_LENGTH
        if apdu.ins == INS_GET_RESPONSE:
            return self._get_response(apdu)
        self._pending = None
        # ISO 7816-4 command chaining
        header = (apdu.ins, apdu.p1, apdu.p2)
        if apdu.cla & CLA_CHAINING:
            if self._chain is not None and self._chain[0] != header:
                self._chain = None
                return b"", SW_LAST_COMMAND_EXPECTED
            if self._chain is None:
                self._chain = (header, bytearray())
            self._chain[1].extend(apdu.data)
            if len(self._chain[1]) > _MAX_CHAIN:
                self._chain = None
                return b"", SW_WRONG_LENGTH
            return b"", SW_OK
        if self._chain is not None:
            chain_header, buffered = self._chain
            self._chain = None
            if chain_header != header:
                return b"", SW_LAST_COMMAND_EXPECTED
            apdu = CommandApdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, bytes(buffered) + apdu.data,
                               ne=apdu.ne, extended=True)
        if apdu.ins == INS_SELECT:
            data, sw = self._select(apdu)
        elif not self._selected:
            return b"", SW_INS_NOT_SUPPORTED
        elif apdu.ins == INS_GET_DATA:
            data, sw = self._get_data(apdu)
        elif apdu.ins == INS_VERIFY:
            data, sw = self._verify(apdu)
        elif apdu.ins == INS_CHANGE_REFERENCE:
            data, sw = self._change_reference(apdu)
        elif apdu.ins == INS_RESET_RETRY_COUNTER:
            data, sw = self._reset_retry_counter(apdu)
        elif apdu.ins == INS_GENERAL_AUTHENTICATE:
            data, sw = self._general_authenticate(apdu)
        else:
            return b"", SW_INS_NOT_SUPPORTED
        return self._respond(data, sw, apdu.ne)

    def _respond(self, data: bytes, sw: int, ne: int | None) -> tuple[bytes, int]:
        """Send what fits in Ne; keep the rest for GET RESPONSE (61xx).

        Without Le, up to 256 bytes come back with 9000, as real PIV cards (T=1) answer a SELECT or
        GET DATA that omits Le (yubico-piv-tool's SELECT does); only the rest waits behind 61xx.
        """
        if sw != SW_OK or not data:
            return data, sw
        limit = MAX_SHORT_NE if ne is None else ne
        if len(data) <= limit:
            return data, SW_OK
        self._pending = _Pending(data[limit:])
        return data[:limit], 0x6100 | (min(len(data) - limit, 256) & 0xFF)

    def _get_response(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.p1 or apdu.p2:
            return b"", SW_INCORRECT_P1P2
        pending, self._pending = self._pending, None
        if pending is None:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        return self._respond(pending.data, SW_OK, apdu.ne or 256)

    def _select(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.p1 != 0x04 or apdu.p2 not in (0x00, 0x0C):
            return b"", SW_INCORRECT_P1P2
        if len(apdu.data) < len(RID_PIV) or not AID_PIV_FULL.startswith(apdu.data):
            return b"", SW_FILE_NOT_FOUND
        if not self._selected:
            self._verified = False
        self._selected = True
        return (b"" if apdu.p2 == 0x0C else self._select_response), SW_OK

    def _get_data(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if (apdu.p1, apdu.p2) != (0x3F, 0xFF):
            return b"", SW_INCORRECT_P1P2
        try:
            element, end = read_tlv(apdu.data)
        except TlvError:
            return b"", SW_WRONG_DATA
        if element.tag != TAG_TAG_LIST or end != len(apdu.data) or not 1 <= len(element.value) <= 3:
            return b"", SW_WRONG_DATA
        content = self._objects.get(int.from_bytes(element.value, "big"))
        if content is None:
            return b"", SW_FILE_NOT_FOUND
        return content, SW_OK

    # -- PIN -----------------------------------------------------------------------------------------
    @staticmethod
    def _well_formed(block: bytes) -> bool:
        value = block.rstrip(b"\xff")
        return len(value) > 0 and value.isdigit() and len(block) == PIN_BLOCK_SIZE

    def _check_reference(self, kind: int, candidate: bytes) -> int:
        """Compare with the PIN (80) or PUK (81); count a failure.  Returns the SW."""
        if kind == KEY_REF_PIV_PIN:
            if self._pin_left == 0:
                return SW_AUTH_METHOD_BLOCKED
            if hmac.compare_digest(candidate, self._pin):
                self._pin_left = self._pin_max
                return SW_OK
            self._pin_left -= 1
            self._verified = False
            return SW_VERIFY_FAILED_BASE | self._pin_left
        if self._puk_left == 0:
            return SW_AUTH_METHOD_BLOCKED
        if hmac.compare_digest(candidate, self._puk):
            self._puk_left = self._puk_max
            return SW_OK
        self._puk_left -= 1
        return SW_VERIFY_FAILED_BASE | self._puk_left

    def _verify(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.p2 != KEY_REF_PIV_PIN:
            return b"", SW_REFERENCE_NOT_FOUND if apdu.p2 in (0x00, KEY_REF_PUK) else SW_INCORRECT_P1P2
        if apdu.p1 == 0xFF:                                  # reset the PIN's security status
            if apdu.data:
                return b"", SW_INCORRECT_P1P2
            self._verified = False
            return b"", SW_OK
        if apdu.p1 != 0x00:
            return b"", SW_INCORRECT_P1P2
        if not apdu.data:                                    # status query
            if self._verified:
                return b"", SW_OK
            if self._pin_left == 0:
                return b"", SW_AUTH_METHOD_BLOCKED
            return b"", SW_VERIFY_FAILED_BASE | self._pin_left
        if not self._well_formed(apdu.data):
            return b"", SW_WRONG_DATA
        sw = self._check_reference(KEY_REF_PIV_PIN, apdu.data)
        self._verified = sw == SW_OK
        return b"", sw

    def _change_reference(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.p1 != 0x00 or apdu.p2 not in (KEY_REF_PIV_PIN, KEY_REF_PUK):
            return b"", SW_INCORRECT_P1P2
        if len(apdu.data) != 2 * PIN_BLOCK_SIZE:
            return b"", SW_WRONG_DATA
        old, new = apdu.data[:PIN_BLOCK_SIZE], apdu.data[PIN_BLOCK_SIZE:]
        if apdu.p2 == KEY_REF_PIV_PIN and not (self._well_formed(old) and self._well_formed(new)):
            return b"", SW_WRONG_DATA
        sw = self._check_reference(apdu.p2, old)
        if sw == SW_OK:
            if apdu.p2 == KEY_REF_PIV_PIN:
                self._pin = new
            else:
                self._puk = new
        return b"", sw

    def _reset_retry_counter(self, apdu: CommandApdu) -> tuple[bytes, int]:
        if apdu.p1 != 0x00 or apdu.p2 != KEY_REF_PIV_PIN:
            return b"", SW_INCORRECT_P1P2
        if len(apdu.data) != 2 * PIN_BLOCK_SIZE or not self._well_formed(apdu.data[PIN_BLOCK_SIZE:]):
            return b"", SW_WRONG_DATA
        sw = self._check_reference(KEY_REF_PUK, apdu.data[:PIN_BLOCK_SIZE])
        if sw == SW_OK:
            self._pin = apdu.data[PIN_BLOCK_SIZE:]
            self._pin_left = self._pin_max
            self._verified = False
        return b"", sw

    # -- keys ----------------------------------------------------------------------------------------
    def _general_authenticate(self, apdu: CommandApdu) -> tuple[bytes, int]:
        entry = self._keys.get(apdu.p2)
        if entry is None:
            return b"", SW_REFERENCE_NOT_FOUND
        algorithm, key = entry
        if apdu.p1 != algorithm:
            return b"", SW_INCORRECT_P1P2
        try:
            element, end = read_tlv(apdu.data)
            if element.tag != TAG_DYNAMIC_AUTH or end != len(apdu.data):
                return b"", SW_WRONG_DATA
            fields = tlv_dict(element.value)
        except TlvError:
            return b"", SW_WRONG_DATA
        challenge = fields.get(TAG_CHALLENGE)
        if challenge is None or fields.get(TAG_RESPONSE, b"x") != b"":
            return b"", SW_WRONG_DATA
        if not self._verified:
            return b"", SW_SECURITY_STATUS_NOT_SATISFIED
        if isinstance(key, rsa.RSAPrivateKey):
            if self.rsa_pss_only and not challenge.endswith(b"\xbc"):     # EMSA-PSS ends in 0xBC
                return b"", SW_WRONG_DATA
            signature = self._rsa_raw(key, challenge)
        else:
            digest: hashes.HashAlgorithm = hashes.SHA384() if algorithm == PivAlgorithm.ECCP384 else hashes.SHA256()
            if len(challenge) != digest.digest_size:
                return b"", SW_WRONG_DATA
            signature = key.sign(challenge, ec.ECDSA(Prehashed(digest)))
        if signature is None:
            return b"", SW_WRONG_DATA
        return encode_tlv(TAG_DYNAMIC_AUTH, encode_tlv(TAG_RESPONSE, signature)), SW_OK

    @staticmethod
    def _rsa_raw(key: rsa.RSAPrivateKey, block: bytes) -> bytes | None:
        """The raw RSA private operation on ``block`` (it must be modulus-sized and below n)."""
        size = (key.key_size + 7) // 8
        if len(block) != size:
            return None
        prefix = b"\x00\x01" + b"\xff" * (size - len(DIGEST_INFO_SHA256) - 32 - 3) + b"\x00" + DIGEST_INFO_SHA256
        if block.startswith(prefix):                  # the usual case: let OpenSSL do it, same result
            return key.sign(block[len(prefix):], padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        numbers = key.private_numbers()
        m = int.from_bytes(block, "big")
        n = numbers.public_numbers.n
        if m >= n:
            return None
        # CRT
        m1 = pow(m, numbers.dmp1, numbers.p)
        m2 = pow(m, numbers.dmq1, numbers.q)
        h = (numbers.iqmp * (m1 - m2)) % numbers.p
        return (m2 + h * numbers.q).to_bytes(size, "big")
