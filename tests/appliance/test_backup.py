"""``tamga-provision backup|restore``: a kiosk's key, identity and store carried over to a replacement."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.pin import SoPin
from provisioning import backup
from sync.store import KioskStore

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "тамга-дархан-2026"
HOLDER = "Боржигон Ариун"
SO_PIN = "73915402"


def _kiosk(root: Path) -> Path:
    """A provisioned kiosk's files under ``root``: kiosk.toml, a credential beside it, a store in use."""
    etc = root / "etc" / "tamga"
    etc.mkdir(parents=True)
    config = etc / "kiosk.toml"
    config.write_text(f'[kiosk]\nid = "darkhan-7"\ndata_dir = "{root}/var/lib/tamga"\n', encoding="utf-8")
    (etc / "central-token").write_text("tamga_secret-credential\n", encoding="ascii")
    os.chmod(etc / "central-token", 0o600)
    store = KioskStore.open(root / "var" / "lib" / "tamga")
    state = store.create("s-unfinished", "issuance", "consent", "mn", {"holder": HOLDER})
    store.transition(state, "order", {"holder": HOLDER}, {"kind": "consent.given"})
    store.save_token_secret("TK-0042", SoPin(SO_PIN))
    store.close()
    return config


def _wipe(root: Path) -> None:
    subprocess.run(["rm", "-rf", str(root / "etc"), str(root / "var")], check=True)


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provisioning", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=False)


def test_a_replacement_kiosk_gets_back_its_sessions_its_so_pins_and_its_audit_chain(tmp_path: Path) -> None:
    root, medium = tmp_path / "kiosk", tmp_path / "usb" / "darkhan-7.tamga-backup"
    config = _kiosk(root)
    made = _cli("backup", str(medium), "--config", str(config), stdin=PASSPHRASE + "\n")
    assert made.returncode == 0, made.stderr
    assert "backed up 4 files" in made.stdout          # kiosk.toml, central-token, kiosk.key, kiosk.db
    assert medium.stat().st_mode & 0o777 == 0o600
    sealed = medium.read_bytes()
    for secret in (HOLDER.encode(), SO_PIN.encode(), b"tamga_secret-credential",
                   (root / "var/lib/tamga/kiosk.key").read_bytes().strip()):
        assert secret not in sealed
    backed_up = KioskStore.open(root / "var/lib/tamga")      # the kiosk's chain says a backup was made, of what
    try:
        last = list(backed_up.audit.entries())[-1]
    finally:
        backed_up.close()
    assert (last.kind, last.fields["backup_sha256"]) == ("kiosk.backed_up", hashlib.sha256(sealed).hexdigest())
    assert PASSPHRASE not in json.dumps(last.to_dict(), ensure_ascii=False)

    _wipe(root)                                         # the SD card died; a fresh image has none of it
    restored = _cli("restore", str(medium), "--config", str(config), stdin=PASSPHRASE + "\n")
    assert restored.returncode == 0, restored.stderr
    assert "1 unfinished sessions, 1 eToken SO PINs readable, audit chain of 3 entries intact" in restored.stdout
    data = root / "var/lib/tamga"
    assert data.stat().st_mode & 0o777 == 0o700
    assert (data / "kiosk.key").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/tamga/central-token").stat().st_mode & 0o777 == 0o600
    store = KioskStore.open(data)
    try:
        assert [s.id for s in store.unfinished()] == ["s-unfinished"]
        assert store.unfinished()[0].data["holder"] == HOLDER
        so_pin = store.token_secret("TK-0042")
        assert so_pin is not None and so_pin.reveal() == SO_PIN
        entries = store.audit.entries()
        assert [e.kind for e in entries][-1] == "kiosk.restored" and store.audit.verify().intact
    finally:
        store.close()


def test_a_wrong_passphrase_or_a_changed_byte_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    root, medium = tmp_path / "kiosk", tmp_path / "kiosk.tamga-backup"
    config = _kiosk(root)
    backup.create(config, medium, PASSPHRASE)
    _wipe(root)
    with pytest.raises(backup.BackupError, match="passphrase is wrong or the file is damaged"):
        backup.restore(medium, "тамга-дархан-2025", config)
    damaged = bytearray(medium.read_bytes())
    damaged[-40] ^= 0x01
    medium.write_bytes(bytes(damaged))
    with pytest.raises(backup.BackupError, match="passphrase is wrong or the file is damaged"):
        backup.restore(medium, PASSPHRASE, config)
    with pytest.raises(backup.BackupError, match="not a Tamga kiosk backup"):
        backup.unseal(b"PK\x03\x04 a zip file", PASSPHRASE)
    assert not (root / "etc").exists() and not (root / "var").exists()


def test_restoring_over_a_kiosk_that_has_a_store_needs_replace_and_keeps_the_old_one(tmp_path: Path) -> None:
    root, medium = tmp_path / "kiosk", tmp_path / "kiosk.tamga-backup"
    config = _kiosk(root)
    backup.create(config, medium, PASSPHRASE)
    with pytest.raises(backup.BackupError, match="already has a store"):
        backup.restore(medium, PASSPHRASE, config)
    result = backup.restore(medium, PASSPHRASE, config, replace=True)
    assert result.kept_aside is not None and result.kept_aside.name.startswith("kiosk.db.before-restore-")
    assert result.kept_aside.stat().st_size > 0 and result.so_pins == 1


def test_a_running_kiosk_is_backed_up_with_what_it_committed_but_not_yet_checkpointed(tmp_path: Path) -> None:
    root, medium = tmp_path / "kiosk", tmp_path / "kiosk.tamga-backup"
    config = _kiosk(root)
    running = KioskStore.open(root / "var/lib/tamga")        # the kiosk keeps its store open (WAL)
    try:
        running.create("s-late", "issuance", "consent", "mn", {})
        assert (root / "var/lib/tamga/kiosk.db-wal").stat().st_size > 0
        backup.create(config, medium, PASSPHRASE)
    finally:
        running.close()
    _wipe(root)
    assert backup.restore(medium, PASSPHRASE, config).unfinished_sessions == 2


def test_a_short_passphrase_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root, medium = tmp_path / "kiosk", tmp_path / "kiosk.tamga-backup"
    config = _kiosk(root)
    made = _cli("backup", str(medium), "--config", str(config), stdin="short\n")
    assert made.returncode == 1 and "shorter than 12 characters" in made.stderr
    assert not medium.exists()
