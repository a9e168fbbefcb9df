"""Fault-injecting adapters for failures a real stack cannot produce on demand.

SoftHSM never reports a removed token or a locked PIN; these wrappers make the kiosk meet those
failures exactly as the real adapters would report them.  Tests that use them say so in their names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kiosk.errors import DeviceNotReady, PinBlocked
from kiosk.pin import Pin, SoPin
from kiosk.ports import TokenInfo, TokenPort, TokenSession


class PullableToken:
    """Wraps a TokenPort; ``pull()`` makes every call fail as a pulled token, ``insert()`` undoes it.

    ``pull_before`` names an operation ('generate_key_pair', 'sign_csr', 'install_certificate',
    'login', 'initialise'): the token is pulled just before the next such call, once.
    """

    def __init__(self, inner: TokenPort) -> None:
        self.inner = inner
        self._pulled = threading.Event()
        self.pull_before: str | None = None
        self.lock_pin = False
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
        return self.inner.present()

    def initialise(self, serial: str, current_so_pin: SoPin, new_so_pin: SoPin, label: str, user_pin: Pin) -> None:
        self._check("initialise")
        self.inner.initialise(serial, current_so_pin, new_so_pin, label, user_pin)

    @contextmanager
    def session(self, serial: str, user_pin: Pin) -> Iterator[TokenSession]:
        self._check("login")
        if self.lock_pin:
            raise PinBlocked(device="token", serial=serial)
        with self.inner.session(serial, user_pin) as inner:
            yield _PullableSession(inner, self._check)


class _PullableSession:
    def __init__(self, inner: TokenSession, check: Any) -> None:
        self._inner = inner
        self._check = check

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self._check(name)
            return target(*args, **kwargs)

        return call
