"""Which way reaches the ID card: ``[idcard] profile = "piv" | "opensc" | "auto"``.

``auto`` decides per card: the native PIV path when the card's PIV applet answers its SELECT (the
fast path, a few APDUs), else OpenSC's PKCS#11 module (any card OpenSC supports).  Only a card
without a PIV applet goes to OpenSC: a PIV card that fails validation is refused, not tried again
another way.  Both ways feed the one pipeline of :class:`devices.idcard.IdCardVerifier`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from devices.cardprofiles import ChallengeScheme
from devices.idcard import CurrentTrust, IdCardReader, IdCardVerifier, utc_now
from devices.idcard_opensc import OpenscIdCardReader
from devices.revocation import RevocationChecker
from kiosk.errors import CardChanged, CardNotSupported
from kiosk.pin import Pin

CARD_PROFILES = ("piv", "opensc", "auto")


class AutoIdCardReader(IdCardVerifier):
    """The native PIV path for a card whose PIV applet answers, OpenSC's module for any other card."""

    def __init__(self, native: IdCardReader, opensc: OpenscIdCardReader) -> None:
        super().__init__(native.trust_anchors, native.intermediates, native.clock, revocation=native.revocation,
                         rsa_padding=native.rsa_padding)
        self.native = native
        self.opensc = opensc
        self.reader_name = native.reader_name
        self._active: IdCardVerifier = native

    @property
    def active(self) -> IdCardVerifier:
        """The way that read the card last (the native reader until a card needs OpenSC)."""
        return self._active

    def _read_card_waiting(self) -> tuple[bytes, str]:
        try:
            read = self.native._read_card_waiting()
            self._active, self.profile_name = self.native, self.native.profile_name
            return read
        except CardNotSupported:
            self.native.close()              # OpenSC gets the card to itself
        read = self.opensc._read_card_waiting()
        self._active, self.profile_name = self.opensc, self.opensc.profile_name
        return read

    def _verify_and_sign(self, pin: Pin, challenge: bytes, scheme: ChallengeScheme, key_bits: int,
                         certificate: x509.Certificate) -> bytes:
        try:
            return self._active._verify_and_sign(pin, challenge, scheme, key_bits, certificate)
        except CardChanged:
            self._certificate = None
            raise

    def wait_for_card(self, timeout: float) -> None:
        self.native.wait_for_card(timeout)

    def pin_attempts(self) -> int | None:
        return self._active.pin_attempts()

    def close(self) -> None:
        with self._lock:
            self._certificate = None
            self.native.close()
            self.opensc.close()
            self._active = self.native


def id_card_reader_for(profile: str, reader_name: str, trust_anchors: Sequence[x509.Certificate],
                       intermediates: Sequence[x509.Certificate] = (), clock: Callable[[], dt.datetime] = utc_now, *,
                       card_timeout: float = 0.0, revocation: RevocationChecker | None = None,
                       rsa_padding: str = "pkcs1v15", opensc_module: Path | None = None,
                       opensc_conf: Path | None = None, trust_source: CurrentTrust | None = None) -> IdCardVerifier:
    """The reader for ``profile`` (one of :data:`CARD_PROFILES`), trusting what ``trust_source`` returns
    at each card when given (else the anchors passed).  Raises ValueError for another profile."""
    reader = _reader_for(profile, reader_name, trust_anchors, intermediates, clock, card_timeout=card_timeout,
                         revocation=revocation, rsa_padding=rsa_padding, opensc_module=opensc_module,
                         opensc_conf=opensc_conf)
    reader.trust_source = trust_source
    return reader


def _reader_for(profile: str, reader_name: str, trust_anchors: Sequence[x509.Certificate],
                intermediates: Sequence[x509.Certificate], clock: Callable[[], dt.datetime], *,
                card_timeout: float, revocation: RevocationChecker | None, rsa_padding: str,
                opensc_module: Path | None, opensc_conf: Path | None) -> IdCardVerifier:
    if profile not in CARD_PROFILES:
        raise ValueError(f"card profile {profile!r} is not one of {', '.join(CARD_PROFILES)}")
    opensc = OpenscIdCardReader(reader_name, trust_anchors, intermediates, clock, module=opensc_module,
                                opensc_conf=opensc_conf, card_timeout=card_timeout, revocation=revocation,
                                rsa_padding=rsa_padding)
    if profile == "opensc":
        return opensc
    native = IdCardReader(reader_name, trust_anchors, intermediates, "piv", clock, card_timeout=card_timeout,
                          revocation=revocation, rsa_padding=rsa_padding)
    return native if profile == "piv" else AutoIdCardReader(native, opensc)
