"""What is attached to the kiosk: PC/SC readers, PKCS#11 modules and their tokens, receipt printers.

Readers come from pcscd (pyscard, through :mod:`devices.pcsc`); each PKCS#11 module is loaded in
its own subprocess (:mod:`provisioning.probe`); printers are a network address, a USB printer
(``/dev/usb/lp*`` through usblp, or vendor:product through pyusb when installed) or a file.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kiosk.ports import TokenInfo

# Where Debian, Raspberry Pi OS and token vendors put PKCS#11 modules.
MODULE_PATTERNS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/*/softhsm/libsofthsm2.so",
    "/usr/lib/opensc-pkcs11.so",
    "/usr/lib/*/opensc-pkcs11.so",
    "/usr/lib/pkcs11/*.so",
    "/usr/lib/*/pkcs11/*.so",
    "/usr/lib/lib*[Pp][Kk][Cc][Ss]11*.so*",          # SafeNet libeTPkcs11.so, libIDPrimePKCS11.so, …
    "/usr/lib/*/lib*[Pp][Kk][Cc][Ss]11*.so*",
    "/usr/lib/librtpkcs11ecp.so",                    # Rutoken
    "/usr/lib/libcastle.so.1",                       # Feitian ePass2003
    "/usr/local/lib/*[Pp][Kk][Cc][Ss]11*.so*",
    "/usr/local/lib/*/*[Pp][Kk][Cc][Ss]11*.so*",
)
P11KIT_MODULES = "/usr/share/p11-kit/modules/*.module"
# Proxies, debugging shims and trust stores: never an eToken's module.
NOT_TOKEN_MODULES = ("pkcs11-spy", "onepin-opensc", "p11-kit-proxy", "p11-kit-client", "p11-kit-trust",
                     "libpkcs11-helper", "libnssckbi", "libnsspem")
PROBE_TIMEOUT_S = 30.0


def _is_token_module(path: str) -> bool:
    name = os.path.basename(path)
    return not any(skip in name for skip in NOT_TOKEN_MODULES)


def _p11kit_module_paths(pattern: str) -> list[str]:
    """``module: PATH`` of p11-kit's module files (relative names live in p11-kit's module dir)."""
    found = []
    for file in sorted(glob.glob(pattern)):
        try:
            lines = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key.strip() == "module" and value.strip():
                path = value.strip()
                if not os.path.isabs(path):
                    path = next(iter(glob.glob(f"/usr/lib/*/pkcs11/{path}")), path)
                found.append(path)
    return found


def find_modules(patterns: tuple[str, ...] = MODULE_PATTERNS, p11kit: str = P11KIT_MODULES) -> list[Path]:
    """PKCS#11 modules installed in the usual places, each once (symlinks resolved), in search order."""
    seen: set[str] = set()
    modules: list[Path] = []
    candidates = [p for pattern in patterns for p in sorted(glob.glob(pattern))] + _p11kit_module_paths(p11kit)
    for path in candidates:
        if not os.path.isfile(path) or not _is_token_module(path):
            continue
        real = os.path.realpath(path)
        if real not in seen and _is_token_module(real):
            seen.add(real)
            modules.append(Path(path))
    return modules


def module_kind(path: Path | str) -> str:
    """``softhsm``, ``opensc`` or ``vendor``: what the module is, for choosing and for ``token.rescan``."""
    name = os.path.basename(os.path.realpath(path)).lower()
    if "softhsm" in name:
        return "softhsm"
    if "opensc" in name:
        return "opensc"
    return "vendor"


@dataclass(frozen=True)
class ModuleProbe:
    module: Path
    token: TokenInfo | None
    error: str = ""
    reason: str = ""


def probe_module(module: Path, timeout_s: float = PROBE_TIMEOUT_S) -> ModuleProbe:
    """Load ``module`` in a subprocess and ask it for the token in the slot."""
    try:
        out = subprocess.run([sys.executable, "-m", "provisioning.probe", str(module)], capture_output=True,
                             text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ModuleProbe(module, None, f"the module did not answer within {timeout_s:.0f} s", "timeout")
    lines = out.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if not answer:
        tail = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        return ModuleProbe(module, None, f"the module crashed the probe: {tail}", "crash")
    if not answer.get("ok"):
        return ModuleProbe(module, None, str(answer.get("error", "")), str(answer.get("reason", "")))
    return ModuleProbe(module, TokenInfo(**answer["token"]))


def list_readers() -> list[str]:
    """The PC/SC readers pcscd reports (raises DeviceNotReady when pcscd does not answer)."""
    from devices.pcsc import list_readers as pcsc_readers

    return pcsc_readers()


def card_present(reader: str) -> bool:
    from devices.pcsc import wait_for_card
    from kiosk.errors import KioskError

    try:
        wait_for_card(reader, 0.3)
    except KioskError:
        return False
    return True


def usb_line_printers() -> list[Path]:
    """USB printers the usblp driver made into character devices."""
    return [Path(p) for p in sorted(glob.glob("/dev/usb/lp*"))]


def usb_printers_by_id() -> list[tuple[int, int, str]]:
    """(vendor, product, name) of USB devices with a printer interface (class 7), via pyusb if installed."""
    try:
        import usb.core  # type: ignore[import-not-found]
    except ImportError:
        return []
    found = []
    try:
        devices = list(usb.core.find(find_all=True))
    except Exception:       # no backend (libusb) or no permission: nothing to offer
        return []
    for dev in devices:
        try:
            is_printer = any(intf.bInterfaceClass == 7 for cfg in dev for intf in cfg)
        except Exception:   # noqa: S112 - a device we may not read
            continue
        if is_printer:
            found.append((int(dev.idVendor), int(dev.idProduct), f"{dev.idVendor:04x}:{dev.idProduct:04x}"))
    return found
