"""Fault-injecting adapters for failures a real stack cannot produce on demand.

SoftHSM never reports a removed token or a locked PIN, and nobody can pull the plug at an exact
point inside a PKCS#11 call; these wrappers make the kiosk meet those failures exactly as the real
adapters (and a real power cut) would leave them.  Tests that use them say so in their names.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devices.sim.softhsm import blank_token_as_after_init_crash, token_dir_of
from kiosk.errors import DeviceNotReady, PinBlocked
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm, TokenInfo, TokenPort, TokenSession


class PowerCut(BaseException):
    """Injected: the kiosk lost power at this point.

    A BaseException, so that no ``except Exception`` in the kiosk handles it: the code after the
    cut never runs, as with a real one.  The test then starts the kiosk again over the same token.
    """


def _blank_softhsm_token_from_env(serial: str) -> None:
    """Leave the SoftHSM token ``serial`` of ``$SOFTHSM2_CONF`` as a power cut inside C_InitToken does."""
    conf = os.environ.get("SOFTHSM2_CONF")
    if not conf:
        raise RuntimeError("crash_init_token needs SOFTHSM2_CONF or PullableToken(blank_token=…)")
    blank_token_as_after_init_crash(token_dir_of(Path(conf)), serial)


class PullableToken:
    """Wraps a TokenPort and injects faults; without any set it passes every call through.

    * ``pull()`` makes every call fail as a pulled token (DeviceNotReady), ``insert()`` undoes it.
    * ``pull_before`` names an operation ('present', 'initialise', 'login', 'public_certificates',
      'unblock', or a session call: 'generate_key_pair', 'sign_csr', 'install_certificate', 'sign',
      'remove_key', …): the token is pulled just before the next such call, once.
    * ``lock_pin = True``: the user PIN is blocked as on a real token: every login raises PinBlocked
      (whatever PIN), ``present()`` reports ``user_pin_locked``, until ``unblock()`` through this
      wrapper succeeds with the right SO PIN (or ``initialise()`` succeeds), which clears it.
    * ``crash_keygen_half = True``: the next ``generate_key_pair`` creates the pair, deletes its
      private key (the state a power cut leaves after the public key is stored and before the
      private one) and raises :class:`PowerCut`.  Once.
    * ``crash_init_token = True``: the next ``initialise`` leaves the token blank as a power cut
      inside C_InitToken does and raises :class:`PowerCut`.  Once.  ``blank_token(serial)`` does
      the blanking; the default truncates the SoftHSM token of ``$SOFTHSM2_CONF`` as measured in
      tests/devices/test_token_blank.py (objects deleted, ``token.object`` empty).
    * ``keygen_delay_s``: every ``generate_key_pair`` takes at least this long, as on a real eToken
      (RSA-2048: 10–60 s, where SoftHSM takes 0.15 s): SoftHSM's key generation is padded to it.  The
      wait runs inside the logged-in session, so the adapter's PKCS#11 lock is held through it as
      through a real token's key generation.
    """

    def __init__(self, inner: TokenPort, blank_token: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self._pulled = threading.Event()
        self.pull_before: str | None = None
        self.lock_pin = False
        self.crash_keygen_half = False
        self.crash_init_token = False
        self.keygen_delay_s = 0.0
        self.blank_token = blank_token or _blank_softhsm_token_from_env
        self.timings: dict[str, float] = getattr(inner, "timings", {})

    def pull(self) -> None:
        self._pulled.set()

    def insert(self) -> None:
        self._pulled.clear()

    def _check(self, op: str) -> None:
        if self.pull_before == op:
            self.pull_before = None
            self._pulled.set()
        if self._pulled.is_set():
            raise DeviceNotReady("token pulled (injected fault)", device="token")

    def present(self) -> TokenInfo:
        self._check("present")
        info = self.inner.present()
        if self.lock_pin and info.initialised:
            info = dataclasses.replace(info, user_pin_locked=True)
        return info

    def initialise(self, serial: str, current_so_pin: SoPin, new_so_pin: SoPin, label: str,
                   user_pin: Pin) -> TokenInfo:
        self._check("initialise")
        if self.crash_init_token:
            self.crash_init_token = False
            self.blank_token(serial)
            raise PowerCut("power cut inside C_InitToken (injected fault)")
        info = self.inner.initialise(serial, current_so_pin, new_so_pin, label, user_pin)
        self.lock_pin = False          # a re-initialised token has a new, unblocked user PIN
        return info

    def public_certificates(self, serial: str) -> list[tuple[bytes, bytes]]:
        self._check("public_certificates")
        return self.inner.public_certificates(serial)

    def unblock(self, serial: str, so_pin: SoPin, new_user_pin: Pin) -> None:
        self._check("unblock")
        self.inner.unblock(serial, so_pin, new_user_pin)
        self.lock_pin = False

    @contextmanager
    def session(self, serial: str, user_pin: Pin) -> Iterator[TokenSession]:
        self._check("login")
        if self.lock_pin:
            raise PinBlocked("user PIN blocked (injected fault)", device="token", serial=serial)
        with self.inner.session(serial, user_pin) as inner:
            yield _PullableSession(inner, self)


class _PullableSession:
    def __init__(self, inner: TokenSession, owner: PullableToken) -> None:
        self._inner = inner
        self._owner = owner

    def generate_key_pair(self, key_id: bytes, label: str, algorithm: KeyAlgorithm) -> bytes:
        self._owner._check("generate_key_pair")
        started = time.monotonic()
        spki = self._inner.generate_key_pair(key_id, label, algorithm)
        time.sleep(max(0.0, self._owner.keygen_delay_s - (time.monotonic() - started)))
        if self._owner.crash_keygen_half:
            self._owner.crash_keygen_half = False
            remove_private = getattr(self._inner, "remove_private_key_only", None)
            if remove_private is None:
                raise RuntimeError("crash_keygen_half needs a session with remove_private_key_only()")
            remove_private(key_id)
            raise PowerCut("power cut inside C_GenerateKeyPair after the public key (injected fault)")
        return spki

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self._owner._check(name)
            return target(*args, **kwargs)

        return call
