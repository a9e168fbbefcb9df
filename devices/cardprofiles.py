"""National ID card profiles: name → how to open the card's application over a connection.

A profile turns a :class:`~devices.apdu.SmartCardConnection` into an :class:`IdCardApplication`
(read the authentication certificate and card UUID, verify the PIN, sign a challenge).  PIV is
registered as ``"piv"``; a national card with its own applet registers another profile with
:func:`register_profile` and is picked by name or found by :func:`detect_profile` (ATR + AID).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from devices.apdu import CLA_ISO, INS_SELECT, MAX_SHORT_NE, CommandApdu, SmartCardConnection, is_success
from devices.piv import AID_PIV, PivAlgorithm, PivSession, Slot
from kiosk.errors import CardError, CardNotSupported, ConfigError
from kiosk.pin import Pin
from kiosk.ports import KeyAlgorithm


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

    def sign_challenge(self, challenge: bytes, key: KeyAlgorithm) -> bytes:
        """Sign with the authentication key: RSA PKCS#1 v1.5/SHA-256, or DER ECDSA/SHA-256."""
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
_PIV_ALGORITHMS = {KeyAlgorithm.RSA2048: PivAlgorithm.RSA2048, KeyAlgorithm.P256: PivAlgorithm.ECCP256}


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

    def sign_challenge(self, challenge: bytes, key: KeyAlgorithm) -> bytes:
        return self.session.sign_challenge(challenge, _PIV_ALGORITHMS[key], Slot.AUTHENTICATION)


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
