"""The applicant's eToken over PKCS#11 (python-pkcs11): initialise, key pair, CSR, certificate,
signing, key removal and unblocking (SO login + C_InitPIN).

Every call into the PKCS#11 module holds one process-wide lock: python-pkcs11 releases the GIL
and SoftHSM (like many vendor modules) corrupts its heap under concurrent calls.  Private keys
are generated on the token as sensitive and never extractable; only public keys leave it.
pkcs11 exceptions are translated here into :mod:`kiosk.errors`.
"""

from __future__ import annotations

import ctypes
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import pkcs11
import pkcs11.exceptions as p11e
from asn1crypto import core as asn1_core
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pkcs11 import Attribute, CertificateType, KeyType, Mechanism, MechanismFlag, ObjectClass, TokenFlag
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from kiosk.errors import DeviceNotReady, InvalidPin, KeyMismatch, PinBlocked, TokenError
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm, TokenInfo

_LOCK = threading.RLock()
T = TypeVar("T")

# PKCS#11 return values used with the raw ctypes calls (python-pkcs11 has no C_InitToken).
CKR_OK = 0x000
CKR_DEVICE_REMOVED = 0x032
CKR_PIN_INCORRECT = 0x0A0
CKR_PIN_LOCKED = 0x0A4
CKR_SESSION_EXISTS = 0x0B6
CKR_SLOT_ID_INVALID = 0x003
CKR_TOKEN_NOT_PRESENT = 0x0E0

_REMOVED = (p11e.DeviceRemoved, p11e.TokenNotPresent, p11e.NoSuchToken, p11e.SessionHandleInvalid,
            p11e.SessionClosed, p11e.SlotIDInvalid, p11e.TokenNotRecognised)


def _translate(err: p11e.PKCS11Error, serial: str = "") -> Exception:
    if isinstance(err, _REMOVED):
        return DeviceNotReady(f"token not present: {type(err).__name__}", device="token", serial=serial)
    if isinstance(err, p11e.PinLocked):
        return PinBlocked(device="token", serial=serial)
    if isinstance(err, p11e.PinLenRange | p11e.PinInvalid):
        return TokenError(type(err).__name__, reason="pin_rejected", serial=serial)
    return TokenError(type(err).__name__, reason="pkcs11", code=type(err).__name__, serial=serial)


class Pkcs11Token:
    """A PKCS#11 module with one removable token at a time (the kiosk's eToken slot).

    Which token is "the token in the slot" (:meth:`present`), in this order:

    1. an initialised token;
    2. an uninitialised token with a serial: a real blank eToken, which keeps its hardware serial;
    3. an uninitialised token without a serial.  SoftHSM always offers one such spare slot, and a
       SoftHSM token that lost power inside C_InitToken looks exactly like it (SoftHSM truncated
       its ``token.object``, then ignores the token; see tests/devices/test_token_blank.py).  It
       is reported only when no token of kind 1 or 2 is present, so the spare slot never hides
       the eToken; with SoftHSM an empty store is "a blank token in the slot".

    A blank token without a serial gets one from C_InitToken: :meth:`initialise` finds it again in
    the same slot (or, after a rescan, by its new label) and returns the token as it is then.

    ``timings`` accumulates seconds spent inside the module per operation, for benchmarks.
    """

    def __init__(self, module_path: str, rescan: bool = False) -> None:
        self.module_path = module_path
        self.rescan = rescan            # re-read the slot list with C_Finalize/C_Initialize (SoftHSM)
        self.timings: dict[str, float] = {}
        try:
            with _LOCK:
                self._lib = pkcs11.lib(module_path)
                self._raw = ctypes.CDLL(module_path)
        except (OSError, RuntimeError) as err:
            raise DeviceNotReady(f"cannot load PKCS#11 module {module_path}: {err}", device="token") from err
        self._raw.C_InitToken.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        self._raw.C_InitToken.restype = ctypes.c_ulong
        self._raw.C_CloseAllSessions.argtypes = [ctypes.c_ulong]
        self._raw.C_CloseAllSessions.restype = ctypes.c_ulong

    # -- helpers ---------------------------------------------------------------------------------------
    def _timed(self, op: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[op] = self.timings.get(op, 0.0) + time.perf_counter() - start

    def _scan(self) -> tuple[list[pkcs11.Token], list[p11e.PKCS11Error]]:
        """The tokens present, best first (see the class), and the errors of slots whose token info failed.

        (SoftHSM answers CKR_GENERAL_ERROR for a token whose file was truncated under it, until the
        next C_Initialize drops it.)
        """
        tokens: list[pkcs11.Token] = []
        errors: list[p11e.PKCS11Error] = []
        for slot in self._timed("slots", lambda: self._lib.get_slots(token_present=True)):
            try:
                tokens.append(self._timed("slots", slot.get_token))
            except p11e.PKCS11Error as err:
                errors.append(err)
        return sorted(tokens, key=_preference), errors

    def _find(self, pick: Callable[[list[pkcs11.Token]], pkcs11.Token | None]
              ) -> tuple[pkcs11.Token | None, list[pkcs11.Token]]:
        """``pick`` among the tokens present, rescanning once (``rescan``) when it finds none."""
        tokens, errors = self._scan()
        found = pick(tokens)
        if found is None and self.rescan:
            self._timed("reload", self._lib.reinitialize)
            tokens, errors = self._scan()
            found = pick(tokens)
        if found is None and not tokens and errors:
            raise errors[0]
        return found, tokens

    def _token(self, serial: str) -> pkcs11.Token:
        """The token with this serial; ``""`` is the blank token without a serial (SoftHSM's spare slot)."""
        found, _ = self._find(lambda tokens: next((t for t in tokens if _text(t.serial) == serial), None))
        if found is None:
            raise DeviceNotReady("token with this serial is not present", device="token", serial=serial)
        return found

    def reload(self) -> None:
        """C_Finalize + C_Initialize: the module re-reads its configuration and slot list (SoftHSM)."""
        with _LOCK:
            self._lib.reinitialize()

    # -- TokenPort -------------------------------------------------------------------------------------
    def present(self) -> TokenInfo:
        with _LOCK:
            try:
                found, tokens = self._find(lambda ts: next((t for t in ts if _preference(t) < 2), None))
            except p11e.PKCS11Error as err:
                raise _translate(err) from err
            if found is None and not tokens:
                raise DeviceNotReady("no token present", device="token")
            return _info(found or tokens[0])

    def info(self, serial: str) -> TokenInfo:
        with _LOCK:
            try:
                return _info(self._token(serial))
            except p11e.PKCS11Error as err:
                raise _translate(err, serial) from err

    def initialise(self, serial: str, current_so_pin: SoPin, new_so_pin: SoPin, label: str,
                   user_pin: Pin) -> TokenInfo:
        """C_InitToken (erases the token's objects), set the user PIN, then change the SO PIN.

        On a blank token ``current_so_pin`` becomes its SO PIN (any is accepted), then is changed.
        Returns the token afterwards: a blank token without a serial has one now.
        """
        _require_so_pin(current_so_pin)
        _require_so_pin(new_so_pin)
        with _LOCK:
            try:
                token, tokens = self._find(lambda ts: next((t for t in ts if _text(t.serial) == serial), None))
                if token is None:
                    raise DeviceNotReady("token with this serial is not present", device="token", serial=serial)
                slot_id = token.slot.slot_id
                before = {_text(t.serial) for t in tokens if _initialised(t)}
                self._raw.C_CloseAllSessions(slot_id)
                so = current_so_pin.reveal().encode()
                raw_label = _label_bytes(label)
                rv = self._timed("init_token", lambda: self._raw.C_InitToken(slot_id, so, len(so), raw_label))
                if rv == CKR_PIN_INCORRECT:
                    raise TokenError("SO PIN refused by C_InitToken", reason="so_pin_incorrect", serial=serial)
                if rv == CKR_PIN_LOCKED:
                    raise PinBlocked(device="token", role="so", serial=serial)
                if rv in (CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_SLOT_ID_INVALID):
                    raise DeviceNotReady("token removed during initialisation", device="token", serial=serial)
                if rv != CKR_OK:
                    raise TokenError(f"C_InitToken returned {rv:#x}", reason="pkcs11", code=hex(rv), serial=serial)
                token = self._initialised_token(serial, slot_id, raw_label, before)
                new_serial = _text(token.serial)
                with token.open(rw=True, so_pin=current_so_pin.reveal()) as session:
                    self._timed("init_pin", lambda: session.init_pin(user_pin.reveal()))
                    if new_so_pin != current_so_pin:
                        self._timed("set_so_pin", lambda: session.set_pin(current_so_pin.reveal(),
                                                                          new_so_pin.reveal()))
                return _info(self._token(new_serial))
            except p11e.PKCS11Error as err:
                raise _translate(err, serial) from err

    def _initialised_token(self, serial: str, slot_id: int, raw_label: bytes, before: set[str]) -> pkcs11.Token:
        """The token just initialised: by its serial when it had one, else in its slot or by its new label."""
        label = raw_label.decode("utf-8", "replace").strip()

        def pick(tokens: list[pkcs11.Token]) -> pkcs11.Token | None:
            fresh = [t for t in tokens if _initialised(t)]
            if serial:
                return next((t for t in fresh if _text(t.serial) == serial), None)
            return (next((t for t in fresh if t.slot.slot_id == slot_id and _text(t.serial) not in before), None)
                    or next((t for t in fresh if _text(t.label) == label and _text(t.serial) not in before), None))

        found, _ = self._find(pick)
        if found is None:
            raise DeviceNotReady("token not found after C_InitToken", device="token", serial=serial)
        return found

    def public_certificates(self, serial: str) -> list[tuple[bytes, bytes]]:
        """(CKA_ID, DER) of the certificate objects visible without login."""
        with _LOCK:
            try:
                token = self._token(serial)
                with self._timed("open", lambda: token.open()) as session:
                    return [(bytes(obj[Attribute.ID]), bytes(obj[Attribute.VALUE]))
                            for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})]
            except p11e.PKCS11Error as err:
                raise _translate(err, serial) from err

    def unblock(self, serial: str, so_pin: SoPin, new_user_pin: Pin) -> None:
        """SO login and C_InitPIN: the new user PIN replaces the old one and clears its lock."""
        _require_so_pin(so_pin)
        with _LOCK:
            try:
                token = self._token(serial)
                if not _initialised(token):
                    raise TokenError("token is not initialised", reason="not_initialised", serial=serial)
                try:
                    sess = self._timed("so_login", lambda: token.open(rw=True, so_pin=so_pin.reveal()))
                except (p11e.PinIncorrect, p11e.PinLocked) as err:
                    self._raw.C_CloseAllSessions(token.slot.slot_id)   # python-pkcs11 leaks it on failed login
                    if isinstance(err, p11e.PinLocked) or self._token(serial).flags & TokenFlag.SO_PIN_LOCKED:
                        raise PinBlocked(device="token", role="so", serial=serial) from err
                    raise TokenError("SO PIN refused", reason="so_pin_incorrect", serial=serial) from err
                try:
                    self._timed("init_pin", lambda: sess.init_pin(new_user_pin.reveal()))
                finally:
                    self._timed("logout", sess.close)
            except p11e.PKCS11Error as err:
                raise _translate(err, serial) from err

    @contextmanager
    def session(self, serial: str, user_pin: Pin) -> Iterator[Pkcs11Session]:
        with _LOCK:
            try:
                token = self._token(serial)
                try:
                    sess = self._timed("login", lambda: token.open(rw=True, user_pin=user_pin.reveal()))
                except p11e.PKCS11Error as err:
                    # python-pkcs11 leaks the session when login fails inside open(): close them all.
                    self._raw.C_CloseAllSessions(token.slot.slot_id)
                    if not isinstance(err, p11e.PinIncorrect):
                        raise
                    flags = self._token(serial).flags
                    if flags & TokenFlag.USER_PIN_LOCKED:
                        raise PinBlocked(device="token", serial=serial) from err
                    remaining = 1 if flags & TokenFlag.USER_PIN_FINAL_TRY else None
                    raise InvalidPin(device="token", attempts_remaining=remaining,
                                     count_low=bool(flags & TokenFlag.USER_PIN_COUNT_LOW)) from err
            except p11e.PKCS11Error as err:
                raise _translate(err, serial) from err
            try:
                yield Pkcs11Session(sess, serial, self._timed)
            except p11e.PKCS11Error as err:
                raise _translate(err, serial) from err
            finally:
                try:
                    self._timed("logout", sess.close)
                except p11e.PKCS11Error:
                    self._raw.C_CloseAllSessions(token.slot.slot_id)


class Pkcs11Session:
    """Operations on a logged-in token session (see :class:`kiosk.ports.TokenSession`)."""

    def __init__(self, session: pkcs11.Session, serial: str,
                 timed: Callable[[str, Callable[[], Any]], Any]) -> None:
        self._s = session
        self.serial = serial
        self._timed = timed

    # -- key pairs: at most one per CKA_ID ------------------------------------------------------------
    # A power cut inside C_GenerateKeyPair can leave the public key object without its private key
    # (the module stores the public one first).  Such half pairs are no key pair: they are never
    # found, generate_key_pair removes them, and every use of a key takes the public key that
    # belongs to the private key (never just "the first public key with this CKA_ID").
    def _objects(self, key_id: bytes, object_class: ObjectClass) -> list[Any]:
        return list(self._s.get_objects({Attribute.CLASS: object_class, Attribute.ID: key_id}))

    def _private_key(self, key_id: bytes) -> Any:
        keys = self._objects(key_id, ObjectClass.PRIVATE_KEY)
        return keys[0] if keys else None

    def _pair(self, key_id: bytes) -> tuple[Any, Any] | None:
        """(private, public) key objects of the key pair ``key_id``, or None when there is no whole pair."""
        privs = self._objects(key_id, ObjectClass.PRIVATE_KEY)
        pubs = self._objects(key_id, ObjectClass.PUBLIC_KEY)
        only = len(privs) == 1 and len(pubs) == 1
        for priv in privs:
            for pub in pubs:
                if _belong_together(priv, pub, only, self._timed):
                    return priv, pub
        return None

    def _require_pair(self, key_id: bytes) -> tuple[Any, Any]:
        pair = self._pair(key_id)
        if pair is None:
            raise TokenError("no key pair with this id", reason="key_missing", serial=self.serial)
        return pair

    def _destroy(self, key_id: bytes, classes: Sequence[ObjectClass], keep: Sequence[Any] = ()) -> int:
        """Destroy the objects of ``classes`` with CKA_ID ``key_id`` except ``keep``; return how many."""
        kept = {obj.handle for obj in keep}
        doomed = [obj for cls in classes for obj in self._objects(key_id, cls) if obj.handle not in kept]
        for obj in doomed:
            self._timed("destroy", obj.destroy)
        return len(doomed)

    def find_public_key(self, key_id: bytes) -> bytes | None:
        pair = self._pair(key_id)
        return None if pair is None else _spki(pair[1])

    def generate_key_pair(self, key_id: bytes, label: str, algorithm: KeyAlgorithm) -> bytes:
        """Generate the pair ``key_id``; a half pair left under the id (and its certificates) is removed first.

        Raises TokenError(reason='key_exists') when a whole pair has this id already: one pair per id.
        """
        if self._pair(key_id) is not None:
            raise TokenError("a key pair with this id exists", reason="key_exists", serial=self.serial)
        self._destroy(key_id, (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE))
        private_template = {
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.DECRYPT: False,
            Attribute.UNWRAP: False, Attribute.DERIVE: False,
        }
        public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.ENCRYPT: False,
                           Attribute.WRAP: False}
        caps = MechanismFlag.SIGN | MechanismFlag.VERIFY
        if algorithm is KeyAlgorithm.RSA2048:
            pub, _ = self._timed("keygen", lambda: self._s.generate_keypair(
                KeyType.RSA, 2048, id=key_id, label=label, store=True, capabilities=caps,
                public_template=public_template, private_template=private_template))
        else:
            params = self._s.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
            pub, _ = self._timed("keygen", lambda: params.generate_keypair(
                id=key_id, label=label, store=True, capabilities=caps,
                public_template=public_template, private_template=private_template))
        return _spki(pub)

    def _sign_with(self, priv: Any, data: bytes) -> tuple[bytes, str]:
        """SHA-256 signature of ``data`` (PKCS#1 v1.5, or ECDSA DER) and its asn1crypto algorithm name."""
        if priv.key_type == KeyType.RSA:
            return self._timed("sign", lambda: priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)), "sha256_rsa"
        digest = hashlib.sha256(data).digest()  # SoftHSM 2.6 lacks CKM_ECDSA_SHA256: hash on host
        raw = self._timed("sign", lambda: priv.sign(digest, mechanism=Mechanism.ECDSA))
        return bytes(encode_ecdsa_signature(raw)), "sha256_ecdsa"

    def sign(self, key_id: bytes, data: bytes) -> bytes:
        priv, _ = self._require_pair(key_id)
        return self._sign_with(priv, data)[0]

    def sign_csr(self, key_id: bytes, subject_cn: str) -> bytes:
        priv, pub = self._require_pair(key_id)
        info = asn1_csr.CertificationRequestInfo({
            "version": "v1",
            "subject": asn1_x509.Name.build({"common_name": subject_cn}),
            "subject_pk_info": asn1_keys.PublicKeyInfo.load(_spki(pub)),
            "attributes": [],
        })
        signature, algorithm = self._sign_with(priv, info.dump())
        request = asn1_csr.CertificationRequest({
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": algorithm},
            "signature": signature,
        })
        der = bytes(request.dump())
        if not x509.load_der_x509_csr(der).is_signature_valid:  # the public key is not the private key's
            raise TokenError("the CSR does not verify with its public key", reason="key_mismatch",
                             serial=self.serial)
        return der

    def remove_key(self, key_id: bytes) -> None:
        self._destroy(key_id, (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE))

    def set_pin(self, old_pin: Pin, new_pin: Pin) -> None:
        """C_SetPIN in this logged-in session; a refused old PIN is InvalidPin."""
        try:
            self._timed("set_pin", lambda: self._s.set_pin(old_pin.reveal(), new_pin.reveal()))
        except p11e.PinIncorrect as err:
            raise InvalidPin(device="token", attempts_remaining=None) from err

    def remove_private_key_only(self, key_id: bytes) -> None:
        """Destroy only the private key(s) ``key_id``, leaving a half pair: for fault injection, never the kiosk."""
        self._destroy(key_id, (ObjectClass.PRIVATE_KEY,))

    def install_certificate(self, key_id: bytes, label: str, certificate_der: bytes,
                            chain_der: Sequence[bytes]) -> None:
        priv, pub = self._require_pair(key_id)
        cert = x509.load_der_x509_certificate(certificate_der)
        token_key = serialization.load_der_public_key(_spki(pub)).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        cert_key = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if token_key != cert_key:
            raise KeyMismatch(serial=self.serial, certificate_serial=format(cert.serial_number, "x"))
        # Public keys under this id that are not the pair's (left by a keygen before half pairs were
        # cleaned up) go now: afterwards the id names exactly one pair and its certificate.
        self._destroy(key_id, (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY), keep=(priv, pub))
        existing = {der for _, der in self.certificates()}
        self._timed("write_cert", lambda: self._write_certificate(certificate_der, key_id, label, existing))
        for ca_der in chain_der:
            ca = x509.load_der_x509_certificate(ca_der)
            ca_id = hashlib.sha1(ca.subject.public_bytes()).digest()  # noqa: S324 - an object id, not security
            ca_label = ca.subject.rfc4514_string()[:64]
            self._timed("write_cert", lambda d=ca_der, i=ca_id, lb=ca_label:  # type: ignore[misc]
                        self._write_certificate(d, i, lb, existing))

    def _write_certificate(self, der: bytes, key_id: bytes, label: str, existing: set[bytes]) -> None:
        """Create one certificate object unless the same DER is already there."""
        if der in existing:
            return
        cert = asn1_x509.Certificate.load(der)
        self._s.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.LABEL: label,
            Attribute.ID: key_id,
            Attribute.SUBJECT: cert.subject.dump(),
            Attribute.ISSUER: cert.issuer.dump(),
            Attribute.SERIAL_NUMBER: cert["tbs_certificate"]["serial_number"].dump(),
            Attribute.VALUE: der,
        })
        existing.add(der)

    def certificates(self) -> list[tuple[bytes, bytes]]:
        out = []
        for obj in self._s.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            out.append((bytes(obj[Attribute.ID]), bytes(obj[Attribute.VALUE])))
        return out

    def key_ids(self) -> list[bytes]:
        """CKA_ID of every private key on the token."""
        return [bytes(k[Attribute.ID]) for k in self._s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})]

    def key_attributes(self, key_id: bytes) -> dict[str, bool]:
        """SENSITIVE / EXTRACTABLE / NEVER_EXTRACTABLE / ALWAYS_SENSITIVE of the private key (for checks)."""
        priv = self._private_key(key_id)
        if priv is None:
            raise TokenError("no key pair with this id", reason="key_missing", serial=self.serial)
        names = {"sensitive": Attribute.SENSITIVE, "extractable": Attribute.EXTRACTABLE,
                 "never_extractable": Attribute.NEVER_EXTRACTABLE,
                 "always_sensitive": Attribute.ALWAYS_SENSITIVE}
        return {name: bool(priv[attr]) for name, attr in names.items()}


def _belong_together(priv: Any, pub: Any, only: bool, timed: Callable[[str, Callable[[], Any]], Any]) -> bool:
    """Whether ``pub`` is the public half of ``priv``.

    RSA: same modulus and exponent (public attributes of the private key).  EC: same curve, and,
    unless they are the only two keys with their id, a signature of the private key verifies with
    the public one (an EC private key object does not carry its public point).
    """
    if priv.key_type != pub.key_type:
        return False
    if priv.key_type == KeyType.RSA:
        return bool(priv[Attribute.MODULUS] == pub[Attribute.MODULUS]
                    and priv[Attribute.PUBLIC_EXPONENT] == pub[Attribute.PUBLIC_EXPONENT])
    if priv.key_type != KeyType.EC or priv[Attribute.EC_PARAMS] != pub[Attribute.EC_PARAMS]:
        return False
    if only:
        return True
    digest = hashlib.sha256(b"tamga key pair check" + secrets.token_bytes(16)).digest()
    signature = encode_ecdsa_signature(timed("sign", lambda: priv.sign(digest, mechanism=Mechanism.ECDSA)))
    key = serialization.load_der_public_key(_spki(pub))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def _require_so_pin(pin: object) -> None:
    if not isinstance(pin, SoPin):
        raise TypeError(f"an SO PIN must be a kiosk.pin.SoPin, not {type(pin).__name__}")


def _label_bytes(label: str) -> bytes:
    """The CKA label for C_InitToken: UTF-8, cut to 32 bytes on a character boundary, blank-padded."""
    raw = label.encode("utf-8")[:32]
    return raw.decode("utf-8", "ignore").encode("utf-8").ljust(32, b" ")


def _initialised(token: pkcs11.Token) -> bool:
    return bool(token.flags & TokenFlag.TOKEN_INITIALIZED)


def _preference(token: pkcs11.Token) -> int:
    """0 initialised, 1 blank with a serial (a real blank token), 2 blank without one (SoftHSM's spare slot)."""
    if _initialised(token):
        return 0
    return 1 if _text(token.serial) else 2


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _info(token: pkcs11.Token) -> TokenInfo:
    flags = token.flags
    return TokenInfo(
        serial=_text(token.serial),
        label=_text(token.label),
        model=_text(token.model),
        manufacturer=_text(token.manufacturer_id),
        initialised=bool(flags & TokenFlag.TOKEN_INITIALIZED),
        user_pin_set=bool(flags & TokenFlag.USER_PIN_INITIALIZED),
        user_pin_locked=bool(flags & TokenFlag.USER_PIN_LOCKED),
    )


def _spki(pub: pkcs11.PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER; RSA with the NULL parameters certificates carry."""
    if pub.key_type == KeyType.RSA:
        rsa = asn1_keys.RSAPublicKey.load(encode_rsa_public_key(pub))
        info = asn1_keys.PublicKeyInfo({
            "algorithm": {"algorithm": "rsa", "parameters": asn1_core.Null()},   # None would omit it
            "public_key": rsa,
        })
        return bytes(info.dump())
    return bytes(encode_ec_public_key(pub))
