"""National ID card profiles: name → how to open the card's application over a connection.

A profile turns a :class:`~devices.apdu.SmartCardConnection` into an :class:`IdCardApplication`
(read the authentication certificate and card UUID, verify the PIN, sign a challenge).  PIV is
registered as ``"piv"``; a national card with its own applet registers another profile with
:func:`register_profile` and is picked by name or found by :func:`detect_profile` (ATR + AID).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, unique
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from devices.apdu import CLA_ISO, INS_SELECT, MAX_SHORT_NE, CommandApdu, SmartCardConnection, is_success
from devices.piv import AID_PIV, PivAlgorithm, PivSession, Slot
from kiosk.errors import CardAlgorithmRefused, CardError, CardNotSupported, ConfigError
from kiosk.pin import Pin


@unique
class ChallengeScheme(Enum):
    """The allow-list of challenge signatures (issue 8, item 5); the value is what evidence records."""

    RSA_PKCS1V15_SHA256 = "rsa-pkcs1v15-sha256"
    RSA_PSS_SHA256 = "rsa-pss-sha256"
    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
    ECDSA_P384_SHA384 = "ecdsa-p384-sha384"

    @property
    def is_rsa(self) -> bool:
        return self in (ChallengeScheme.RSA_PKCS1V15_SHA256, ChallengeScheme.RSA_PSS_SHA256)

    def hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA384() if self is ChallengeScheme.ECDSA_P384_SHA384 else hashes.SHA256()

    def rsa_padding(self) -> padding.AsymmetricPadding:
        if self is ChallengeScheme.RSA_PSS_SHA256:
            return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES)
        return padding.PKCS1v15()


PSS_SALT_BYTES = 32          # = the SHA-256 output, as RFC 8017 recommends


def _mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_signature_block(message: bytes, modulus_bits: int) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 9.1.1) of ``message`` with SHA-256, MGF1-SHA-256 and a 32-byte salt,
    as the raw RSA input of a ``modulus_bits`` key (the card does only the private-key operation)."""
    em_bits = modulus_bits - 1
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.sha256(message).digest()
    salt = secrets.token_bytes(PSS_SALT_BYTES)
    h = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - PSS_SALT_BYTES - len(h) - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1_sha256(h, len(db)), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    block = bytes(masked) + h + b"\xbc"
    return block.rjust((modulus_bits + 7) // 8, b"\x00")


class IdCardApplication(Protocol):
    """What the ID-card reader needs from a national card, whatever its applet."""

    def read_certificate(self) -> bytes:
        """DER of the holder's authentication certificate.  Raises CardError when absent."""
        ...

    def read_card_uuid(self) -> str:
        """The card's UUID as hex, or "" when the card has none."""
        ...

    def pin_attempts(self) -> int | None:
        """PIN tries left, read without spending one; None when the PIN is verified (counter full)."""
        ...

    def verify_pin(self, pin: Pin) -> None:
        """Read the counter, then VERIFY; never at the last try.

        Raises InvalidPin(attempts_remaining=n), PinBlocked(reason='blocked' or 'last_try').
        """
        ...

    def sign_challenge(self, challenge: bytes, scheme: ChallengeScheme, key_bits: int) -> bytes:
        """Sign with the authentication key (of ``key_bits``) by ``scheme``: the signature as the card
        returns it (RSA big-endian, ECDSA DER or r‖s).  Raises CardAlgorithmRefused, CardError."""
        ...


@dataclass(frozen=True)
class CardProfile:
    """A kind of national card.  ``atr_patterns`` are (value, mask) pairs; empty matches any ATR."""

    name: str
    aid: bytes
    open: Callable[[SmartCardConnection], IdCardApplication]
    atr_patterns: tuple[tuple[bytes, bytes], ...] = ()

    def matches_atr(self, atr: bytes) -> bool:
        if not self.atr_patterns:
            return True
        return any(
            len(atr) == len(value)
            and all((a & m) == (v & m) for a, v, m in zip(atr, value, mask, strict=True))
            for value, mask in self.atr_patterns
        )

    def probe(self, atr: bytes, connection: SmartCardConnection) -> bool:
        """ATR matches and the card answers SELECT of the profile's AID with success."""
        if not self.matches_atr(atr):
            return False
        select = CommandApdu(CLA_ISO, INS_SELECT, 0x04, 0x00, self.aid, ne=MAX_SHORT_NE)
        _, sw = connection.send_and_receive(select.to_bytes())
        return is_success(sw)


# --- PIV ------------------------------------------------------------------------------------------------
_PIV_RSA = {2048: PivAlgorithm.RSA2048, 3072: PivAlgorithm.RSA3072, 4096: PivAlgorithm.RSA4096}
_PIV_EC = {ChallengeScheme.ECDSA_P256_SHA256: PivAlgorithm.ECCP256,
           ChallengeScheme.ECDSA_P384_SHA384: PivAlgorithm.ECCP384}


class PivIdCard:
    """An ID card carrying its holder's certificate in the PIV authentication slot (9A)."""

    def __init__(self, connection: SmartCardConnection) -> None:
        self.session = PivSession(connection)

    def read_certificate(self) -> bytes:
        der = self.session.get_certificate(Slot.AUTHENTICATION)
        if der is None:
            raise CardError("no PIV authentication certificate", object="5FC105")
        return der

    def read_card_uuid(self) -> str:
        chuid = self.session.get_chuid()
        return chuid.card_uuid if chuid is not None else ""

    def pin_attempts(self) -> int | None:
        return self.session.get_pin_attempts()

    def verify_pin(self, pin: Pin) -> None:
        self.session.verify_pin(pin)

    def sign_challenge(self, challenge: bytes, scheme: ChallengeScheme, key_bits: int) -> bytes:
        if scheme.is_rsa:
            algorithm = _PIV_RSA.get(key_bits)
            if algorithm is None:
                raise CardAlgorithmRefused("RSA key size not allowed", reason="key_algorithm",
                                           algorithm=f"rsa{key_bits}")
            if scheme is ChallengeScheme.RSA_PKCS1V15_SHA256:
                return self.session.sign_challenge(challenge, algorithm, Slot.AUTHENTICATION)
            block = pss_signature_block(challenge, key_bits)
            signature = self.session.general_authenticate(algorithm, Slot.AUTHENTICATION, block)
            if len(signature) > len(block):
                raise CardError("RSA signature longer than the modulus")
            return signature.rjust(len(block), b"\x00")
        return self.session.sign_challenge(challenge, _PIV_EC[scheme], Slot.AUTHENTICATION)


PIV_PROFILE = CardProfile(name="piv", aid=AID_PIV, open=PivIdCard)

_PROFILES: dict[str, CardProfile] = {PIV_PROFILE.name: PIV_PROFILE}


def register_profile(profile: CardProfile, *, replace: bool = False) -> None:
    """Add a profile.  Raises ValueError when the name is taken and ``replace`` is False."""
    if profile.name in _PROFILES and not replace:
        raise ValueError(f"card profile {profile.name!r} already registered")
    _PROFILES[profile.name] = profile


def get_profile(name: str) -> CardProfile:
    """The profile called ``name``.  Raises ConfigError(setting='idcard.profile') when unknown."""
    try:
        return _PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown card profile {name!r}", setting="idcard.profile",
                          known=sorted(_PROFILES)) from None


def profile_names() -> list[str]:
    return sorted(_PROFILES)


def detect_profile(atr: bytes, connection: SmartCardConnection) -> CardProfile:
    """The first registered profile whose probe accepts the card.  Raises CardNotSupported."""
    for profile in _PROFILES.values():
        if profile.probe(atr, connection):
            return profile
    raise CardNotSupported("no card profile accepts this card", atr=atr.hex())
