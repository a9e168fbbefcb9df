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

    def clear(self) -> None:
        shutil.rmtree(self.token_dir)
        self.token_dir.mkdir()
