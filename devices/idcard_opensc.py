"""Any national ID card OpenSC can read: the second way to reach the card, through ``opensc-pkcs11.so``.

:class:`OpenscIdCardReader` reads the authentication certificate and has the card sign the
challenge through OpenSC's PKCS#11 module (python-pkcs11), over the same pcscd as the native PIV
path; everything after that (path validation, revocation, the SHA-256 binding, the algorithm
allow-list, the signature check) is :class:`devices.idcard.IdCardVerifier`, shared with it.

PIN safety as on the native path: the token's flags are read before any PIN goes out
(``CKF_USER_PIN_LOCKED`` → PinBlocked(reason='blocked'), ``CKF_USER_PIN_FINAL_TRY`` →
PinBlocked(reason='last_try'), no PIN sent); after a wrong PIN the flags are read again and the
tries left are reported where OpenSC knows them (1 on the final try; None when it only says
"count low" or nothing: PIV cards do not tell OpenSC their maximum).  OpenSC runs with PIN
caching off (its own ``opensc.conf``, :func:`opensc_config`), so the PIN lives no longer than the
C_Login call; the session is logged out and the card reset after the signature.

Every python-pkcs11 error is translated here: a pulled card → DeviceNotReady(device='card'),
a reader OpenSC does not see → DeviceNotReady(device='reader'), anything else → CardError.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import MGF, Attribute, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11e
from smartcard import scard

from devices.cardprofiles import ChallengeScheme
from devices.idcard import PCSCD_POLL_S, IdCardVerifier, utc_now
from devices.pcsc import PcscConnection, find_reader, next_reader_state, wait_for_card
from devices.revocation import RevocationChecker
from kiosk.errors import CardChanged, CardError, CardNotSupported, DeviceNotReady, InvalidPin, PinBlocked
from kiosk.pin import Pin

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Library

OPENSC_MODULES = (Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
                  Path("/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so"),
                  Path("/usr/lib/arm-linux-gnueabihf/opensc-pkcs11.so"),
                  Path("/usr/lib/opensc-pkcs11.so"))
"""Where Debian's ``opensc-pkcs11`` package puts the module, per architecture."""

_OPENSC_CONF = """\
# Written by Tamga: OpenSC as the kiosk's ID-card reader uses it.
app default {
    framework pkcs15 {
        use_pin_caching = false;    # the holder's PIN lives no longer than the C_Login call
        use_file_caching = no;
    }
}
"""
_REMOVED = (p11e.DeviceRemoved, p11e.TokenNotPresent, p11e.NoSuchToken, p11e.SessionHandleInvalid,
            p11e.SessionClosed, p11e.SlotIDInvalid, p11e.DeviceError)
_MODULE_LOCK = threading.Lock()
_OPENSC_LOCK = threading.RLock()
"""Every OpenSC reader's calls, process-wide: python-pkcs11 initialises OpenSC without locking."""
_SIGN_MECHANISMS = {
    ChallengeScheme.RSA_PKCS1V15_SHA256: (Mechanism.SHA256_RSA_PKCS, None),
    ChallengeScheme.RSA_PSS_SHA256: (Mechanism.SHA256_RSA_PKCS_PSS, (Mechanism.SHA256, MGF.SHA256, 32)),
    ChallengeScheme.ECDSA_P256_SHA256: (Mechanism.ECDSA, None),
    ChallengeScheme.ECDSA_P384_SHA384: (Mechanism.ECDSA, None),
}


def default_opensc_module() -> Path:
    """The installed ``opensc-pkcs11.so``.  Raises DeviceNotReady(device='reader') when none is."""
    for path in OPENSC_MODULES:
        if path.exists():
            return path
    raise DeviceNotReady("OpenSC's PKCS#11 module is not installed (Debian package opensc-pkcs11)",
                         device="reader", module=str(OPENSC_MODULES[0]))


def opensc_config(path: Path | None = None) -> Path:
    """Point this process's OpenSC at a configuration with PIN caching off (``OPENSC_CONF``), written to
    ``path`` (the kiosk's data dir; None: a new temporary directory).

    OpenSC reads it at C_Initialize, so this runs before the module is first loaded; an
    ``OPENSC_CONF`` already set (a technician's own) is kept.
    """
    existing = os.environ.get("OPENSC_CONF")
    if existing:
        return Path(existing)
    path = path or Path(tempfile.mkdtemp(prefix="tamga-opensc-")) / "opensc.conf"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(_OPENSC_CONF)
    tmp.replace(path)
    os.environ["OPENSC_CONF"] = str(path)
    return path


def _load(module: Path, config: Path | None) -> tuple[Pkcs11Library, ctypes.CDLL]:
    with _MODULE_LOCK:
        opensc_config(config)
        try:
            library = pkcs11.lib(str(module))
        except (p11e.PKCS11Error, OSError, RuntimeError) as err:
            raise DeviceNotReady("OpenSC's PKCS#11 module does not load", device="reader",
                                 module=str(module), cause=type(err).__name__) from err
        raw = ctypes.CDLL(str(module))
        raw.C_CloseAllSessions.argtypes = [ctypes.c_ulong]
        raw.C_CloseAllSessions.restype = ctypes.c_ulong
        return library, raw


def _translate(err: p11e.PKCS11Error, reader: str) -> Exception:
    if isinstance(err, _REMOVED):
        return DeviceNotReady(f"card pulled or not answering: {type(err).__name__}", device="card", reader=reader)
    if isinstance(err, p11e.TokenNotRecognised):
        return CardNotSupported("OpenSC does not know this card", reader=reader)
    return CardError(f"OpenSC refused: {type(err).__name__}", reader=reader, cause=type(err).__name__)


def pin_tries_from_flags(flags: int) -> int | None:
    """Tries left as the token flags tell them: 0 locked, 1 final try, None not told."""
    if flags & TokenFlag.USER_PIN_LOCKED:
        return 0
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return 1
    return None


def authentication_certificate(certificates: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """(DER, CKA_ID) of the holder's authentication certificate among a card's ``(DER, CKA_ID)`` pairs.

    A person's certificate (no CA) whose key may sign (digitalSignature) comes first, one without
    nonRepudiation (a qualified signing certificate) before one with it; the card's order breaks
    ties.  Raises CardNotSupported when the card holds none.
    """
    ranked: list[tuple[int, int, bytes, bytes]] = []
    for index, (der, key_id) in enumerate(certificates):
        try:
            extensions = x509.load_der_x509_certificate(der).extensions
            usage = extensions.get_extension_for_class(x509.KeyUsage).value
            is_ca = any(isinstance(e.value, x509.BasicConstraints) and e.value.ca for e in extensions)
        except (ValueError, x509.ExtensionNotFound):
            continue                    # the pipeline refuses it with its reason if nothing else is there
        if is_ca or not usage.digital_signature:
            continue
        ranked.append((1 if usage.content_commitment else 0, index, der, key_id))
    if not ranked:
        raise CardNotSupported("OpenSC finds no authentication certificate on this card",
                               certificates=len(certificates))
    _, _, der, key_id = min(ranked)
    return der, key_id


class OpenscIdCardReader(IdCardVerifier):
    """The ID card in the reader whose name contains ``reader_name``, through OpenSC's PKCS#11 module.

    Thread-safe (one process-wide lock around every PKCS#11 call, whichever reader makes it:
    python-pkcs11 initialises OpenSC without locking).  ``card_timeout`` > 0 makes reading wait
    that long for a card.
    """

    profile_name = "opensc"

    def __init__(self, reader_name: str, trust_anchors: Sequence[x509.Certificate],
                 intermediates: Sequence[x509.Certificate] = (), clock: Callable[[], dt.datetime] = utc_now, *,
                 module: Path | None = None, opensc_conf: Path | None = None, card_timeout: float = 0.0,
                 revocation: RevocationChecker | None = None, rsa_padding: str = "pkcs1v15") -> None:
        super().__init__(trust_anchors, intermediates, clock, revocation=revocation, rsa_padding=rsa_padding)
        self._lock = _OPENSC_LOCK
        self.reader_name = reader_name
        self.card_timeout = card_timeout
        self._module = module
        self.opensc_conf = opensc_conf          # where OpenSC's configuration is written (None: a temp dir)
        self._library: Pkcs11Library | None = None
        self._raw: ctypes.CDLL | None = None

    # -- OpenSC's slots -------------------------------------------------------------------------------
    def _lib(self) -> Pkcs11Library:
        if self._library is None:
            self._library, self._raw = _load(self._module or default_opensc_module(), self.opensc_conf)
        return self._library

    def _slot(self) -> pkcs11.Slot:
        """OpenSC's slot for the reader.  Raises DeviceNotReady (reader: no such reader; card: no card)."""
        wanted = self.reader_name.casefold()
        try:
            slots = self._lib().get_slots()
            for slot in slots:
                if wanted in slot.slot_description.strip().casefold():
                    if not slot.flags & pkcs11.SlotFlag.TOKEN_PRESENT:
                        raise DeviceNotReady("no card in the reader", device="card", reader=self.reader_name)
                    return slot
        except p11e.PKCS11Error as err:
            raise _translate(err, self.reader_name) from err
        raise DeviceNotReady("OpenSC sees no such reader", device="reader", reader=self.reader_name,
                             readers=[s.slot_description.strip() for s in slots])

    def _token(self) -> pkcs11.Token:
        """The token in the reader, its flags read now (python-pkcs11's Token is a snapshot)."""
        slot = self._slot()
        try:
            return slot.get_token()
        except p11e.PKCS11Error as err:
            raise _translate(err, self.reader_name) from err

    @contextmanager
    def _public_session(self, token: pkcs11.Token) -> Iterator[pkcs11.Session]:
        try:
            with token.open() as session:
                yield session
        except p11e.PKCS11Error as err:
            raise _translate(err, self.reader_name) from err

    @staticmethod
    def _certificates(session: pkcs11.Session) -> list[tuple[bytes, bytes]]:
        return [(bytes(obj[Attribute.VALUE]), bytes(obj[Attribute.ID]))
                for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})]

    # -- the card -------------------------------------------------------------------------------------
    def wait_for_card(self, timeout: float) -> None:
        """Block until a card is in the reader (PC/SC, as OpenSC sees it).  Raises DeviceNotReady, also
        (device='reader') when OpenSC's module is missing, so ``python -m kiosk check`` says so."""
        with self._lock:
            self._lib()
        wait_for_card(find_reader(self.reader_name), timeout)

    def _read_card_waiting(self) -> tuple[bytes, str]:
        try:
            return self._read_card()
        except DeviceNotReady as err:
            if self.card_timeout <= 0 or err.data.get("device") != "card":
                raise
        self.wait_for_card(self.card_timeout)
        return self._read_card()

    def _read_card(self) -> tuple[bytes, str]:
        with self._lock:
            return self._read_token()

    def _read_token(self) -> tuple[bytes, str]:
        token = self._token()
        with self._public_session(token) as session:
            der, _ = authentication_certificate(self._certificates(session))
        serial = token.serial.decode("ascii", "replace") if isinstance(token.serial, bytes) else str(token.serial)
        return der, serial.strip()

    def pin_attempts(self) -> int | None:
        """Tries left as OpenSC tells them (0, 1, or None when it does not know: more than one)."""
        with self._lock:
            return pin_tries_from_flags(self._token().flags)

    def _verify_and_sign(self, pin: Pin, challenge: bytes, scheme: ChallengeScheme, key_bits: int,
                         certificate: x509.Certificate) -> bytes:
        with self._lock:
            return self._verify_and_sign_locked(pin, challenge, scheme, certificate)

    def _verify_and_sign_locked(self, pin: Pin, challenge: bytes, scheme: ChallengeScheme,
                                certificate: x509.Certificate) -> bytes:
        token = self._token()
        with self._public_session(token) as session:
            der, key_id = authentication_certificate(self._certificates(session))
        if der != certificate.public_bytes(serialization.Encoding.DER):
            self._certificate = None
            raise CardChanged("a different card is in the reader")
        tries = pin_tries_from_flags(token.flags)
        if tries == 0:
            raise PinBlocked("PIN blocked", device="card", reason="blocked", attempts_remaining=0)
        if tries == 1:
            raise PinBlocked("one PIN try left: not spent at the kiosk", device="card", reason="last_try",
                             attempts_remaining=1)
        session = self._login(token, pin)
        try:
            key = cast(pkcs11.SignMixin, session.get_key(ObjectClass.PRIVATE_KEY, id=key_id))
            mechanism, parameters = _SIGN_MECHANISMS[scheme]
            data = challenge if mechanism != Mechanism.ECDSA else hashlib.new(scheme.hash().name, challenge).digest()
            return bytes(key.sign(data, mechanism=mechanism, mechanism_param=parameters))
        except (p11e.NoSuchKey, p11e.MultipleObjectsReturned) as err:
            raise CardError("the card's key for its authentication certificate is missing",
                            reader=self.reader_name) from err
        except p11e.PKCS11Error as err:
            raise self._failure(err) from err
        finally:
            try:
                session.close()                 # C_Logout, then C_CloseSession
            except p11e.PKCS11Error:
                self._close_all_sessions(token)
            self._reset_card()

    def _reset_card(self) -> None:
        """Reset the card over PC/SC: OpenSC's C_Logout leaves a PIV PIN verified on the card, and the
        verified PIN must not outlive the call (OpenSC notices the reset and reconnects)."""
        try:
            connection = PcscConnection(find_reader(self.reader_name))
            connection.connect()
        except DeviceNotReady:
            return                              # pulled (or the reader gone): no power, no verified PIN
        connection.disconnect(reset=True)

    def _login(self, token: pkcs11.Token, pin: Pin) -> pkcs11.Session:
        try:
            return token.open(user_pin=pin.reveal())
        except p11e.PKCS11Error as err:
            # python-pkcs11 leaks the session when C_Login fails inside open(): close them all.
            self._close_all_sessions(token)
            if isinstance(err, p11e.PinLocked):
                raise PinBlocked("PIN blocked", device="card", reason="blocked", attempts_remaining=0) from err
            if isinstance(err, p11e.PinLenRange | p11e.PinInvalid):
                raise InvalidPin("PIN format", device="card", attempts_remaining=None) from err
            if not isinstance(err, p11e.PinIncorrect):
                raise self._failure(err) from err
            left = pin_tries_from_flags(self._token().flags)
            if left == 0:
                raise PinBlocked("PIN blocked", device="card", reason="blocked", attempts_remaining=0) from err
            raise InvalidPin(device="card", attempts_remaining=left) from err

    def _failure(self, err: p11e.PKCS11Error) -> Exception:
        """What a failed C_Login or C_Sign means: OpenSC says CKR_GENERAL_ERROR for a card pulled in the
        middle, so PC/SC is asked whether the card is still there (waiting at most one pcscd poll)."""
        translated = _translate(err, self.reader_name)
        if isinstance(translated, DeviceNotReady):
            return translated
        reader = find_reader(self.reader_name)
        state = next_reader_state(reader, None, 0)
        if state & scard.SCARD_STATE_PRESENT:
            state = next_reader_state(reader, state, PCSCD_POLL_S)
        if not state & scard.SCARD_STATE_PRESENT:
            return DeviceNotReady("card pulled", device="card", reason="removed", reader=self.reader_name)
        return translated

    def _close_all_sessions(self, token: pkcs11.Token) -> None:
        if self._raw is not None:
            self._raw.C_CloseAllSessions(token.slot.slot_id)

    def close(self) -> None:
        """Forget what was read (OpenSC keeps its own connection to pcscd)."""
        with self._lock:
            self._certificate = None
