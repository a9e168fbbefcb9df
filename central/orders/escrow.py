"""SO PIN escrow: kiosks encrypt a token's SO PIN to the central's escrow key at enrollment; a kiosk
unblocking that token later gets it back, re-encrypted to its own ephemeral key.

The escrow key is an RSA key pair kept beside the CA keys (``DATA_DIR/escrow-key.pem``, owner
only), created with the CA hierarchy.  Ciphertexts are RSA-OAEP with SHA-256 (MGF1-SHA-256, no
label).  The central decrypts a PIN only to check an escrow and to re-encrypt it for a release;
it never logs or stores a PIN in clear, and logs no ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.db import transaction

from central.orders.errors import ApiError
from central.orders.models import Enrollment, SoPinRelease, TokenEscrow

log = logging.getLogger("central.escrow")

ALGORITHM = "RSA-OAEP-SHA256"
ESCROW_KEY_BITS = 3072
MIN_RECIPIENT_BITS = 2048
MAX_RECIPIENT_BITS = 4096
MAX_SO_PIN = 64
MAX_TOKEN_SERIAL = 64

_lock = threading.Lock()
_cached: tuple[Path, rsa.RSAPrivateKey] | None = None


def oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def ensure_key(path: Path | None = None) -> rsa.RSAPrivateKey:
    """The escrow private key, created on first use (mode 0600, atomically: the first process wins)."""
    global _cached
    path = Path(path or settings.TAMGA_ESCROW_KEY_FILE)
    with _lock:
        if _cached is not None and _cached[0] == path:
            return _cached[1]
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=ESCROW_KEY_BITS)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass                       # another process created it first: use theirs
            finally:
                tmp.unlink()
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise RuntimeError(f"{path} is not an RSA private key")
        _cached = (path, loaded)
        return loaded


def public_key_pem() -> str:
    return ensure_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def key_id() -> str:
    """SHA-256 (hex) of the escrow public key's SubjectPublicKeyInfo DER."""
    spki = ensure_key().public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def escrow_key_body() -> dict[str, Any]:
    """The ``EscrowKey`` schema."""
    return {"public_key": public_key_pem(), "key_id": key_id(), "algorithm": ALGORITHM}


def _decrypt(ciphertext: bytes) -> bytes:
    return ensure_key().decrypt(ciphertext, oaep())


def check_escrow(payload: dict[str, Any], token_serial: str) -> bytes | None:
    """The ciphertext of ``so_pin_escrow`` after checking it decrypts to a plausible SO PIN; None if absent.

    Raises ApiError 400 ``invalid_request`` / ``so_pin_escrow_invalid``, 409 ``escrow_key_changed``.
    """
    encoded = payload.get("so_pin_escrow")
    if encoded is None:
        return None
    if not isinstance(encoded, str) or not token_serial:
        raise ApiError(400, "invalid_request", "so_pin_escrow is a base64 string and needs token_serial",
                       field="so_pin_escrow")
    given_key = payload.get("escrow_key_id")
    if given_key is not None and given_key != key_id():
        raise ApiError(409, "escrow_key_changed", "the escrow key changed: fetch GET /api/v1/escrow-key again",
                       key_id=key_id())
    try:
        ciphertext = base64.b64decode(encoded, validate=True)
        so_pin = _decrypt(ciphertext)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, "so_pin_escrow_invalid",
                       f"so_pin_escrow is not {ALGORITHM} to the escrow key") from err
    if not 1 <= len(so_pin) <= MAX_SO_PIN or not so_pin.isascii() or not so_pin.decode().isprintable():
        raise ApiError(400, "so_pin_escrow_invalid", "the escrowed SO PIN is not 1 to 64 printable characters")
    return ciphertext


def store(token_serial: str, ciphertext: bytes, enrollment: Enrollment, kiosk_id: str) -> None:
    """Keep (or replace: the token was initialised again) the token's escrowed SO PIN."""
    TokenEscrow.objects.update_or_create(token_serial=token_serial, defaults={
        "ciphertext": ciphertext, "escrow_key_id": key_id(), "enrollment": enrollment, "kiosk_id": kiosk_id})
    log.info("SO PIN escrowed for token %s (certificate %s, kiosk %s)", token_serial,
             enrollment.certificate_serial, kiosk_id)


def _recipient(public_key: Any) -> rsa.RSAPublicKey:
    if not isinstance(public_key, str):
        raise ApiError(400, "invalid_request", "public_key is a PEM RSA public key", field="public_key")
    try:
        key = serialization.load_pem_public_key(public_key.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError) as err:
        raise ApiError(400, "invalid_request", "public_key is not a PEM public key", field="public_key") from err
    except Exception as err:  # UnsupportedAlgorithm and friends: a key we cannot use
        raise ApiError(400, "key_unsupported", "public_key must be RSA") from err
    if not isinstance(key, rsa.RSAPublicKey) or not MIN_RECIPIENT_BITS <= key.key_size <= MAX_RECIPIENT_BITS:
        raise ApiError(400, "key_unsupported",
                       f"public_key must be RSA with {MIN_RECIPIENT_BITS} to {MAX_RECIPIENT_BITS} bits")
    return key


def _escrowed_with(enrollment: Enrollment, escrow: TokenEscrow) -> bool:
    """Whether the escrow was made with this certificate's issuance or one it renews."""
    current: Enrollment | None = enrollment
    while current is not None:
        if current.pk == escrow.enrollment_id:
            return True
        current = current.renewal_of
    return False


def release(token_serial: str, payload: dict[str, Any], kiosk_id: str) -> dict[str, Any]:
    """Re-encrypt the token's escrowed SO PIN to the kiosk's ephemeral key, if the holder is entitled.

    The certificate must be one the central issued on that token to that register number.  Raises
    ApiError 400, 404 ``certificate_not_found`` / ``so_pin_not_escrowed``, 409 ``holder_mismatch``.
    """
    from central.orders.certificates import find_enrollment, holder_matches, is_holder_number

    certificate_serial = payload.get("certificate_serial")
    register_number = payload.get("register_number")
    if not isinstance(certificate_serial, str) or not isinstance(register_number, str):
        raise ApiError(400, "invalid_request", "certificate_serial and register_number are required strings")
    if not is_holder_number(register_number):
        raise ApiError(400, "invalid_request", "not a register number", field="register_number")
    recipient = _recipient(payload.get("public_key"))
    enrollment = find_enrollment(certificate_serial)
    if enrollment.token_serial != token_serial or not holder_matches(enrollment.order.register_number,
                                                                     register_number):
        raise ApiError(409, "holder_mismatch",
                       "that certificate was not issued on this token to this register number")
    escrow = TokenEscrow.objects.filter(token_serial=token_serial).first()
    if escrow is None:
        raise ApiError(404, "so_pin_not_escrowed", "no SO PIN is escrowed for this token")
    if not _escrowed_with(enrollment, escrow):
        # The token was initialised again (new SO PIN) when another certificate was issued on it:
        # this certificate's holder no longer holds the token.
        raise ApiError(409, "holder_mismatch", "the token was initialised again since this certificate")
    try:
        so_pin = _decrypt(bytes(escrow.ciphertext))
    except ValueError as err:   # the escrow key was replaced since: the escrow is lost
        raise ApiError(404, "so_pin_not_escrowed", "the escrowed SO PIN cannot be decrypted any more") from err
    ciphertext = recipient.encrypt(so_pin, oaep())
    del so_pin
    with transaction.atomic():
        SoPinRelease.objects.create(token_serial=token_serial, certificate_serial=enrollment.certificate_serial,
                                    kiosk_id=kiosk_id)
    log.info("SO PIN of token %s released to kiosk %s (certificate %s)", token_serial, kiosk_id,
             enrollment.certificate_serial)
    return {"token_serial": token_serial, "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "algorithm": ALGORITHM}
