"""PINs and SO PINs: secret types that never print, and the policy for a PIN the applicant chooses.

A :class:`Pin` renders as ``Pin(***)`` in reprs, f-strings and logs, a :class:`SoPin` as ``SoPin(***)``;
only ``reveal()`` hands the value to a device adapter (or the store's encryption).  User PINs are never
persisted; SO PINs only encrypted.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from itertools import pairwise

from kiosk.errors import PinPolicyViolation


class Secret:
    """A secret string that never prints: ``Pin(***)`` / ``SoPin(***)`` in reprs, f-strings and logs.

    Only :meth:`reveal` hands the value to a device adapter or the store's encryption.  It cannot be
    pickled, and it compares in constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{type(self).__name__} must be a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, Secret)
                and hmac.compare_digest(other._value.encode(), self._value.encode()))

    def __hash__(self) -> int:
        return hash((type(self).__name__, len(self._value)))

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a secret is not to be pickled")


class Pin(Secret):
    """A user PIN (ID card or eToken), typed by the person; never persisted."""

    __slots__ = ()


class SoPin(Secret):
    """An eToken's security-officer PIN; persisted only encrypted (kiosk store, central escrow)."""

    __slots__ = ()

    @classmethod
    def generate(cls) -> SoPin:
        """A fresh random SO PIN (16 hex digits, 64 bits)."""
        return cls(secrets.token_hex(8))


@dataclass(frozen=True)
class PinPolicy:
    """What a new eToken user PIN must satisfy (digits, since the kiosk offers a PIN pad)."""

    min_length: int = 6
    max_length: int = 16

    def check(self, pin: Pin, confirmation: Pin | None = None) -> None:
        """Raise :class:`PinPolicyViolation` with ``rule`` naming the first broken rule."""
        value = pin.reveal()
        if confirmation is not None and confirmation.reveal() != value:
            raise PinPolicyViolation(rule="mismatch")
        if not value.isdigit() or not value.isascii():
            raise PinPolicyViolation(rule="digits_only")
        if not self.min_length <= len(value) <= self.max_length:
            raise PinPolicyViolation(rule="length", min=self.min_length, max=self.max_length)
        if len(set(value)) == 1:
            raise PinPolicyViolation(rule="repeated")
        steps = {int(b) - int(a) for a, b in pairwise(value)}
        if steps in ({1}, {-1}):
            raise PinPolicyViolation(rule="sequence")
