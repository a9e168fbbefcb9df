"""Fixtures shared by tests/ and features/: the one private pcscd of this test process.

libpcsclite fixes its socket path (``PCSCLITE_CSOCK_NAME``) at the first PC/SC call of a process,
so every test that touches PC/SC must use this single session-wide pcscd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.sim.pcscd import PrivatePcscd


@pytest.fixture(scope="session")
def private_pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePcscd]:
    """pcscd in its own mount namespace with two vpcd readers; this process's pyscard talks to it."""
    previous = os.environ.get("PCSCLITE_CSOCK_NAME")
    pcscd = PrivatePcscd(tmp_path_factory.mktemp("pcscd"))
    pcscd.start()
    os.environ.update(pcscd.env)
    pid = pcscd.pid
    try:
        yield pcscd
    finally:
        pcscd.stop()
        if previous is None:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        else:
            os.environ["PCSCLITE_CSOCK_NAME"] = previous
        assert not Path(f"/proc/{pid}").exists(), "pcscd survived the test session"
