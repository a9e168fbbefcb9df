"""Defects of the spine's store, each reproduced here first: file modes and the data key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kiosk.errors import ConfigError
from sync.store import KioskStore, load_or_create_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_directory_and_database_files_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = os.umask(0o022)        # a default umask, as systemd or a shell gives it
    try:
        store = KioskStore(data / "kiosk.db", load_or_create_key(data / "kiosk.key"))
        store.db.execute("create table t(x)")       # the WAL and SHM files exist now
        files = [data / name for name in ("kiosk.db", "kiosk.db-wal", "kiosk.db-shm", "kiosk.key")]
        assert all(f.exists() for f in files)
        assert _mode(data) == 0o700
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        store.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_data_directory_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "kiosk.db").touch()
    os.chmod(data / "kiosk.db", 0o644)
    KioskStore(data / "kiosk.db", _key(data)).close()
    assert _mode(data) == 0o700 and _mode(data / "kiosk.db") == 0o600


def _key(data: Path) -> bytes:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    (data / "kiosk.key").write_bytes(key)
    return key


def test_no_new_data_key_beside_an_existing_database(tmp_path: Path) -> None:
    key_path = tmp_path / "kiosk.key"
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(key_path))
    store.close()
    key_path.unlink()           # lost in a bad restore
    with pytest.raises(ConfigError) as info:
        load_or_create_key(key_path, tmp_path / "kiosk.db")
    assert info.value.data["setting"] == "store.key_file"
    assert "restore" in info.value.detail
    assert not key_path.exists()
