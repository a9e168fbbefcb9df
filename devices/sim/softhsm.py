"""A SoftHSM2 token store standing in for the kiosk's eToken slot.

Blank eTokens come from the factory initialised with a transport SO PIN; the simulator makes such
tokens with ``softhsm2-util`` so the kiosk's adapter meets them exactly as it would a real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
FACTORY_SO_PIN = "87654321"
FACTORY_USER_PIN = "1234567890"


def token_dir_of(conf_path: Path) -> Path:
    """``directories.tokendir`` of a softhsm2.conf."""
    for line in Path(conf_path).read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "directories.tokendir":
            return Path(value.strip())
    raise ValueError(f"{conf_path} sets no directories.tokendir")


def token_path(token_dir: Path, serial: str) -> Path:
    """The directory of the initialised token ``serial`` in a SoftHSM file store."""
    needle = serial.encode("ascii")
    for token_object in sorted(Path(token_dir).glob("*/token.object")):
        if serial and needle in token_object.read_bytes():
            return token_object.parent
    raise FileNotFoundError(f"no SoftHSM token with serial {serial!r} in {token_dir}")


def blank_token_as_after_init_crash(token_dir: Path, serial: str) -> None:
    """Leave token ``serial`` as a power cut inside its C_InitToken does (measured on SoftHSM 2.6.1).

    C_InitToken deletes the token's object files, then rewrites ``token.object`` (``ftruncate`` to
    0, then one ``write``); killed after a truncation the file stays empty, and at the next
    C_Initialize SoftHSM ignores the token: only its serial-less spare slot is left.  See
    tests/devices/test_token_blank.py, which makes the real crash.  A module that already loaded
    the token answers CKR_GENERAL_ERROR for it until it is initialised again (C_Finalize/C_Initialize).
    """
    path = token_path(token_dir, serial)
    for item in path.iterdir():
        if item.name not in ("token.object", "token.lock", "generation"):
            item.unlink()
    with open(path / "token.object", "r+b") as f:
        f.truncate(0)


def softhsm_module() -> str:
    for path in SOFTHSM_MODULE_CANDIDATES:
        if os.path.exists(path):
            return path
    raise FileNotFoundError("libsofthsm2.so not found: install the Debian package softhsm2")


class SoftHsmStore:
    """A token directory and its ``softhsm2.conf``; ``env`` is what a process needs to use it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.token_dir = self.directory / "tokens"
        self.conf_path = self.directory / "softhsm2.conf"
        self.token_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            f"directories.tokendir = {self.token_dir}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = true\n"
        )
        self.module = softhsm_module()

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf_path)}

    def add_blank_token(self, label: str = "eToken", so_pin: str = FACTORY_SO_PIN,
                        user_pin: str = FACTORY_USER_PIN) -> str:
        """Make a factory-fresh token; return its serial.  In-process PKCS#11 users must rescan."""
        before = self.serials()
        env = {**os.environ, **self.env}
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", user_pin],
            check=True, capture_output=True, env=env, timeout=30,
        )
        new = self.serials() - before
        if len(new) != 1:
            raise RuntimeError(f"expected one new token, found {sorted(new)}")
        return new.pop()

    def serials(self) -> set[str]:
        """Serials of the initialised tokens in the store, as ``softhsm2-util --show-slots`` reports them."""
        env = {**os.environ, **self.env}
        out = subprocess.run(["softhsm2-util", "--show-slots"], check=True, capture_output=True,
                             text=True, env=env, timeout=30).stdout
        serials = set()
        for line in out.splitlines():
            name, _, value = line.strip().partition(":")
            if name == "Serial number" and value.strip():
                serials.add(value.strip())
        return serials

    def blank_token_as_after_init_crash(self, serial: str) -> None:
        """Token ``serial`` as a power cut inside C_InitToken leaves it (see the module function)."""
        blank_token_as_after_init_crash(self.token_dir, serial)

    def clear(self) -> None:
        shutil.rmtree(self.token_dir)
        self.token_dir.mkdir()
