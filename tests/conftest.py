"""Shared fixtures: a SoftHSM token store per test, the PKCS#11 adapter over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.sim.softhsm import SoftHsmStore


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", action="store", default=None,
                     help="run hardware tests against a real device (reader name, token serial or printer)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--device"):
        return
    skip = pytest.mark.skip(reason="needs a real device: pass --device")
    for item in items:
        if "device" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmStore:
    store = SoftHsmStore(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(store.conf_path))
    return store


@pytest.fixture
def token_adapter(softhsm: SoftHsmStore) -> Iterator[object]:
    from devices.token import Pkcs11Token

    adapter = Pkcs11Token(softhsm.module, rescan=True)
    adapter.reload()  # SoftHSM reads SOFTHSM2_CONF only at C_Initialize
    yield adapter
    adapter.reload()
