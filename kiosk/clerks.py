"""Clerk sign-in: a personal PIN per clerk, kept only as a slow scrypt hash.

A clerk's PIN (6-8 digits, :class:`kiosk.pin.Pin`) is never stored; :class:`ClerkRecord` holds
``scrypt$n$r$p$salt$hash`` (base64, 16-byte salt per clerk), so the cost can be raised later: a
record hashed under lower parameters is re-hashed at its next good sign-in (:func:`needs_rehash`).
The default cost (n=2**14, r=8, p=1, 16 MiB) takes ~70 ms per check on the development machine
(2 shared cores); raise it if the appliance is faster.  Five wrong PINs in a row lock the clerk
out for 15 minutes; an unknown or disabled clerk gets the same :class:`InvalidPin` as a wrong PIN,
after the same hashing work.  Every addition, disabling, sign-in, refusal and lockout is reported to
``audit`` (the kiosk's hash-chained audit trail, :mod:`kiosk.audit`) with the clerk id, never the PIN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from kiosk.errors import InputRefused, InvalidPin, PinBlocked
from kiosk.pin import Pin, PinPolicy

CLERK_PIN_POLICY = PinPolicy(min_length=6, max_length=8)
SALT_BYTES = 16
HASH_BYTES = 32


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's parameters: CPU/memory cost ``n`` (a power of two), block size ``r``, parallelism ``p``."""

    n: int = 2 ** 14
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise ValueError(f"invalid scrypt cost {self}")

    def weaker_than(self, other: ScryptCost) -> bool:
        return self.n < other.n or self.r < other.r or self.p < other.p


@dataclass(frozen=True)
class PinHash:
    """One parsed ``scrypt$n$r$p$salt_b64$hash_b64`` string."""

    cost: ScryptCost
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> PinHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a scrypt PIN hash")
        try:
            cost = ScryptCost(int(parts[1]), int(parts[2]), int(parts[3]))
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except (ValueError, TypeError) as exc:
            raise ValueError("malformed scrypt PIN hash") from exc
        if not salt or not digest:
            raise ValueError("malformed scrypt PIN hash")
        return cls(cost, salt, digest)

    def format(self) -> str:
        c = self.cost
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"scrypt${c.n}${c.r}${c.p}${salt}${digest}"


def _scrypt(pin: Pin, salt: bytes, cost: ScryptCost, length: int) -> bytes:
    maxmem = 128 * cost.r * (cost.n + cost.p + 2) + (1 << 20)
    return hashlib.scrypt(pin.reveal().encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p,
                          maxmem=maxmem, dklen=length)


def hash_pin(pin: Pin, cost: ScryptCost | None = None) -> str:
    """A fresh self-describing hash of ``pin`` with a new random salt."""
    cost = cost or ScryptCost()
    salt = secrets.token_bytes(SALT_BYTES)
    return PinHash(cost, salt, _scrypt(pin, salt, cost, HASH_BYTES)).format()


def verify_pin(pin: Pin, stored: str) -> bool:
    """Whether ``pin`` matches ``stored``, compared in constant time."""
    parsed = PinHash.parse(stored)
    return hmac.compare_digest(_scrypt(pin, parsed.salt, parsed.cost, len(parsed.digest)), parsed.digest)


def needs_rehash(stored: str, cost: ScryptCost | None = None) -> bool:
    """Whether ``stored`` was made with less than ``cost`` (the current parameters)."""
    return PinHash.parse(stored).cost.weaker_than(cost or ScryptCost())


@dataclass(frozen=True)
class ClerkRecord:
    """What the directory keeps of a clerk; the hash never shows in a repr."""

    clerk_id: str
    name: str
    pin_hash: str = field(repr=False)
    failed_attempts: int = 0
    locked_until: datetime | None = None
    disabled: bool = False


@dataclass(frozen=True)
class SignedInClerk:
    """A clerk's sign-in, good until ``expires_at``."""

    clerk_id: str
    name: str
    signed_in_at: datetime
    expires_at: datetime

    def is_valid(self, now: datetime) -> bool:
        return self.signed_in_at <= now < self.expires_at


class ClerkDirectory(Protocol):
    """Where clerk records live (the kiosk store; a dict in unit tests)."""

    def get(self, clerk_id: str) -> ClerkRecord | None: ...

    def put(self, record: ClerkRecord) -> None: ...


class ClerkSignIn:
    """Adds clerks, signs them in with their PIN, locks them out after repeated wrong PINs."""

    def __init__(self, directory: ClerkDirectory, *, cost: ScryptCost | None = None,
                 max_failures: int = 5, lockout: timedelta = timedelta(minutes=15),
                 session_length: timedelta = timedelta(hours=8),
                 audit: Callable[[str, dict[str, Any]], object] | None = None) -> None:
        self._directory = directory
        self._audit = audit or (lambda kind, fields: None)
        self._cost = cost or ScryptCost()
        self._max_failures = max_failures
        self._lockout = lockout
        self._session_length = session_length
        # Hashed once, so that an unknown clerk costs the same scrypt work as a known one.
        self._decoy_hash = hash_pin(Pin(secrets.token_hex(8)), self._cost)

    def add(self, clerk_id: str, name: str, pin: Pin) -> ClerkRecord:
        """Register a clerk; :class:`PinPolicyViolation` if the PIN is not 6-8 non-trivial digits."""
        if not clerk_id or not name.strip():
            raise InputRefused("clerk id and name are required", field="clerk")
        if self._directory.get(clerk_id) is not None:
            raise InputRefused("clerk id already taken", field="clerk_id")
        CLERK_PIN_POLICY.check(pin)
        record = ClerkRecord(clerk_id, name.strip(), hash_pin(pin, self._cost))
        self._directory.put(record)
        self._audit("clerk.added", {"clerk_id": clerk_id})
        return record

    def disable(self, clerk_id: str) -> None:
        record = self._directory.get(clerk_id)
        if record is not None:
            self._directory.put(replace(record, disabled=True))
            self._audit("clerk.disabled", {"clerk_id": clerk_id})

    def is_active(self, clerk_id: str) -> bool:
        """Whether the clerk is known and not disabled (a sign-in ends when its clerk is disabled)."""
        record = self._directory.get(clerk_id)
        return record is not None and not record.disabled

    def sign_in(self, clerk_id: str, pin: Pin, now: datetime) -> SignedInClerk:
        """Sign a clerk in.  :class:`InvalidPin` for a wrong PIN, an unknown or a disabled clerk (the
        same error after the same work); :class:`PinBlocked` with ``until`` while locked out."""
        record = self._directory.get(clerk_id)
        known = record is not None and not record.disabled
        matches = verify_pin(pin, record.pin_hash if record is not None and known else self._decoy_hash)
        if record is None or not known:
            self._audit("clerk.pin_refused", {"clerk_id": clerk_id, "reason": "unknown_or_disabled"})
            raise InvalidPin(attempts_remaining=None)
        if record.locked_until is not None and now < record.locked_until:
            self._audit("clerk.pin_refused", {"clerk_id": clerk_id, "reason": "locked_out"})
            raise PinBlocked(until=record.locked_until.isoformat())
        if not matches:
            failures = record.failed_attempts + 1
            if failures >= self._max_failures:
                self._directory.put(replace(record, failed_attempts=0, locked_until=now + self._lockout))
                self._audit("clerk.locked_out", {"clerk_id": clerk_id, "reason": "wrong_pin"})
                raise PinBlocked(until=(now + self._lockout).isoformat())
            self._directory.put(replace(record, failed_attempts=failures, locked_until=None))
            self._audit("clerk.pin_refused", {"clerk_id": clerk_id, "reason": "wrong_pin"})
            raise InvalidPin(attempts_remaining=None)
        pin_hash = hash_pin(pin, self._cost) if needs_rehash(record.pin_hash, self._cost) else record.pin_hash
        if (pin_hash, record.failed_attempts, record.locked_until) != (record.pin_hash, 0, None):
            self._directory.put(replace(record, pin_hash=pin_hash, failed_attempts=0, locked_until=None))
        self._audit("clerk.signed_in", {"clerk_id": clerk_id})
        return SignedInClerk(record.clerk_id, record.name, now, now + self._session_length)
