"""A power cut inside C_InitToken, measured on SoftHSM 2.6, and the uninitialised token it leaves.

How the crash is made: a child process calls C_InitToken (raw ctypes, as the adapter does) with a
small LD_PRELOAD library that SIGKILLs the process right after the Nth ``ftruncate`` of the token's
``token.object`` (``KILL_AT_TRUNCATE=N``) or right after the Nth ``remove``/``unlink`` of an object
file (``KILL_AT_UNLINK=N``).  What was measured (SoftHSM 2.6.1, token with two key pairs):

* C_InitToken rewrites ``token.object`` four times (SO-PIN-count flag, label, flags, user PIN
  removed), each as ``ftruncate(fd, 0)`` then one ``write``.  A kill after any of those truncations
  leaves ``token.object`` empty: at the next C_Initialize SoftHSM ignores the token's directory
  ("Failed to open token") and only its spare slot remains: no serial, no label, flags
  SO_PIN_LOCKED|SO_PIN_TO_BE_CHANGED without TOKEN_INITIALIZED.  The same happens when the SO PIN
  given was wrong (the count-low flag is written before the answer).
* A kill while the objects are being deleted (between the first two rewrites) leaves the token
  initialised, with its serial, label and SO PIN, and some of its objects.
* C_InitToken on SoftHSM's spare slot (a new token) killed after a truncation leaves a token
  directory with an empty ``token.object``, ignored the same way: the spare slot stays blank.

The kiosk must see the blank token (``initialised=False``) and be able to initialise it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.errors import TokenError
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm, TokenInfo

USER_PIN = Pin("482916")
NEW_SO = SoPin("5f1e9c0d2a7b4e33")
FACTORY = SoPin(FACTORY_SO_PIN)
LABEL = "TAMGA NE80000000"

KILL_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>

static int n_trunc, n_unlink;

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int ftruncate(int fd, off_t length) {
    static int (*real)(int, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "ftruncate");
    int rv = real(fd, length);
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    const char *at = getenv("KILL_AT_TRUNCATE");
    if (n > 0) {
        path[n] = 0;
        if (ends_with(path, "/token.object") && at && ++n_trunc == atoi(at)) raise(SIGKILL);
    }
    return rv;
}

static int after_unlink(const char *path, int rv) {
    const char *at = getenv("KILL_AT_UNLINK");
    if (ends_with(path, ".object") && at && ++n_unlink == atoi(at)) raise(SIGKILL);
    return rv;
}

int remove(const char *path) {
    static int (*real)(const char *);
    if (!real) real = dlsym(RTLD_NEXT, "remove");
    return after_unlink(path, real(path));
}

int unlink(const char *path) {
    static int (*real)(const char *);
    if (!real) real = dlsym(RTLD_NEXT, "unlink");
    return after_unlink(path, real(path));
}
"""

INIT_TOKEN_CHILD = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
assert lib.C_Initialize(None) == 0
count = ctypes.c_ulong()
lib.C_GetSlotList(1, None, ctypes.byref(count))
slots = (ctypes.c_ulong * count.value)()
lib.C_GetSlotList(1, slots, ctypes.byref(count))
class TokenInfo(ctypes.Structure):
    _fields_ = [("label", ctypes.c_char * 32), ("manufacturer", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
                ("serial", ctypes.c_char * 16), ("flags", ctypes.c_ulong), ("rest", ctypes.c_byte * 256)]
slot = None
for s in slots:
    info = TokenInfo()
    lib.C_GetTokenInfo(ctypes.c_ulong(s), ctypes.byref(info))
    if info.serial.decode().strip() == sys.argv[2]:
        slot = s
so = sys.argv[3].encode()
lib.C_InitToken.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
print(hex(lib.C_InitToken(slot, so, len(so), b"NEW LABEL".ljust(32))))
"""


@pytest.fixture(scope="session")
def kill_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the LD_PRELOAD crash shim")
    d = tmp_path_factory.mktemp("killshim")
    (d / "killshim.c").write_text(KILL_SHIM_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(d / "killshim.so"), str(d / "killshim.c"), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return d / "killshim.so"


def crash_inside_c_inittoken(softhsm: SoftHsmStore, shim: Path, serial: str, so_pin: str, **kill: int) -> None:
    """C_InitToken on ``serial`` in a child process that is SIGKILLed at the point ``kill`` names."""
    env = {**os.environ, **softhsm.env, "LD_PRELOAD": str(shim), **{k: str(v) for k, v in kill.items()}}
    child = subprocess.run([sys.executable, "-c", INIT_TOKEN_CHILD, softhsm.module, serial, so_pin],
                           env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, (child.returncode, child.stdout, child.stderr)


def token_object_sizes(softhsm: SoftHsmStore) -> list[int]:
    return sorted(p.stat().st_size for p in softhsm.token_dir.glob("*/token.object"))


@pytest.fixture
def personalised(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> str:
    """A factory-fresh token with a key pair on it (objects for C_InitToken to delete)."""
    serial = softhsm.add_blank_token()
    token_adapter.reload()
    with token_adapter.session(serial, Pin("1234567890")) as s:
        s.generate_key_pair(b"\x01", "k1", KeyAlgorithm.P256)
        s.generate_key_pair(b"\x02", "k2", KeyAlgorithm.P256)
    return serial


def blank_softhsm_slot() -> TokenInfo:
    return TokenInfo(serial="", label="", model="SoftHSM v2", manufacturer="SoftHSM project",
                     initialised=False, user_pin_set=False, user_pin_locked=False)


def assert_initialised_as_new(token_adapter: Pkcs11Token, info: TokenInfo, old_serial: str) -> None:
    assert info.initialised and info.user_pin_set
    assert info.label == LABEL
    assert info.serial and info.serial != old_serial      # SoftHSM: a new token in the spare slot
    assert token_adapter.present() == info
    with token_adapter.session(info.serial, USER_PIN) as s:
        assert s.key_ids() == []
    # the SO PIN is the new one: the factory PIN is refused, the new one re-initialises
    with pytest.raises(TokenError) as err:
        token_adapter.initialise(info.serial, FACTORY, NEW_SO, LABEL, USER_PIN)
    assert err.value.data["reason"] == "so_pin_incorrect"
    assert token_adapter.initialise(info.serial, NEW_SO, NEW_SO, LABEL, USER_PIN).serial == info.serial


@pytest.mark.parametrize("truncation", [1, 2, 4])
def test_power_cut_inside_c_inittoken_leaves_a_blank_token_that_initialises(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token, personalised: str, kill_shim: Path,
        truncation: int) -> None:
    crash_inside_c_inittoken(softhsm, kill_shim, personalised, FACTORY_SO_PIN, KILL_AT_TRUNCATE=truncation)
    assert token_object_sizes(softhsm) == [0]            # measured: SoftHSM truncated its token file
    token_adapter.reload()                               # the kiosk restarts after the power cut
    blank = token_adapter.present()
    assert blank == blank_softhsm_slot()
    info = token_adapter.initialise(blank.serial, NEW_SO, NEW_SO, LABEL, USER_PIN)
    assert_initialised_as_new(token_adapter, info, personalised)


def test_power_cut_with_a_wrong_so_pin_blanks_the_softhsm_token_too(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token, personalised: str, kill_shim: Path) -> None:
    crash_inside_c_inittoken(softhsm, kill_shim, personalised, "00000000", KILL_AT_TRUNCATE=1)
    token_adapter.reload()
    assert token_adapter.present() == blank_softhsm_slot()


@pytest.mark.parametrize("truncation", [1, 3])
def test_power_cut_initialising_softhsm_spare_slot_leaves_it_blank(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token, kill_shim: Path, truncation: int) -> None:
    """A crash while C_InitToken creates a new token: an empty token directory, the spare slot stays blank."""
    crash_inside_c_inittoken(softhsm, kill_shim, "", FACTORY_SO_PIN, KILL_AT_TRUNCATE=truncation)
    assert token_object_sizes(softhsm) == [0]
    token_adapter.reload()
    blank = token_adapter.present()
    assert blank == blank_softhsm_slot()
    assert_initialised_as_new(token_adapter, token_adapter.initialise(blank.serial, NEW_SO, NEW_SO, LABEL, USER_PIN),
                              "")


def test_power_cut_while_objects_are_deleted_leaves_the_token_initialised(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token, personalised: str, kill_shim: Path) -> None:
    crash_inside_c_inittoken(softhsm, kill_shim, personalised, FACTORY_SO_PIN, KILL_AT_UNLINK=1)
    token_adapter.reload()
    present = token_adapter.present()
    assert present.initialised and present.serial == personalised and present.label == "eToken"
    info = token_adapter.initialise(personalised, FACTORY, NEW_SO, LABEL, USER_PIN)
    assert info.serial == personalised and info.label == LABEL and info.initialised
    with token_adapter.session(personalised, USER_PIN) as s:
        assert s.key_ids() == [] and s.find_public_key(b"\x01") is None


def test_empty_store_offers_softhsm_spare_slot_as_a_blank_token(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    """SoftHSM always has one uninitialised slot; with no initialised token it is the token in the slot."""
    blank = token_adapter.present()
    assert blank == blank_softhsm_slot()
    info = token_adapter.initialise(blank.serial, NEW_SO, NEW_SO, LABEL, USER_PIN)
    assert_initialised_as_new(token_adapter, info, "")
    assert softhsm.serials() == {info.serial}


def test_initialised_token_is_reported_rather_than_the_spare_slot(
        softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    serial = softhsm.add_blank_token()
    assert token_adapter.present().serial == serial       # rescans: the token was added by another process
    assert token_adapter.present().initialised
