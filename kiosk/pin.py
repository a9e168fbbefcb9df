"""PINs: a wrapper that never prints, and the policy for a PIN the applicant chooses.

A :class:`Pin` renders as ``Pin(***)`` in reprs, f-strings and logs; only :meth:`Pin.reveal`
hands the digits to a device adapter.  PINs are never persisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from kiosk.errors import PinPolicyViolation


class Pin:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("PIN must be a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Pin(***)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "Pin(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pin) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Pin", len(self._value)))

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a PIN is not to be pickled")


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
