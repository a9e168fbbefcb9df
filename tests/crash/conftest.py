"""Crash harness fixtures: the shared real stack (pcscd + vpcd, the central on loopback, the kill shim).

``TAMGA_CRASH=full`` runs every kill point of every flow; without it only the short selection runs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash_harness import World


@pytest.fixture(scope="session")
def crash_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for tool in ("gcc", "pkcs11-tool"):
        if shutil.which(tool) is None:
            pytest.skip(f"the crash harness needs {tool}")
    world = World(tmp_path_factory.mktemp("crash"))
    try:
        yield world
    finally:
        world.stop()
