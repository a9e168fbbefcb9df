"""A kiosk store restored from a backup older than its last sync, against the real central over mutual TLS.

The central holds the chain the kiosk had before its SD card died; the restored store has an older
prefix of that chain and then entries of its own: the chains fork.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.runner import CentralServer
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.kiosk_identity import KioskIdentity
from sync.store import KioskStore


def add_sessions(store: KioskStore, prefix: str, count: int) -> None:
    """``count`` sessions of two audit entries each (created, consent given)."""
    for i in range(count):
        s = store.create(f"{prefix}-{i}", "issuance", "consent", "mn", {})
        store.transition(s, "order", {}, {"kind": "consent.given"})


@dataclass
class Restored:
    """A kiosk whose chain the central holds to entry 20, and its store restored from a backup at entry 10."""

    identity: KioskIdentity
    kiosk_id: str
    store: KioskStore
    data_dir: Path

    def client(self, server: CentralServer) -> CentralClient:
        return server.client(timeout_s=10.0, identity=self.identity)


@pytest.fixture
def restored(central_server: CentralServer, tmp_path: Path, request: pytest.FixtureRequest) -> Restored:
    kiosk_id = f"restored-{request.node.name[-40:].replace('_', '-')}"
    identity = central_server.enroll_kiosk(kiosk_id, directory=tmp_path / "identity")
    original = KioskStore.open(tmp_path / "dead-sd-card")
    add_sessions(original, "before-backup", 5)                 # entries 1-10
    backup = tmp_path / "restored"
    backup.mkdir(mode=0o700)
    original.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for name in ("kiosk.db", "kiosk.key"):                      # the backup: entries 1-10, none sent yet
        shutil.copy2(tmp_path / "dead-sd-card" / name, backup / name)
    add_sessions(original, "after-backup", 5)                  # entries 11-20, synced, then the card died
    with central_server.client(timeout_s=10.0, identity=identity) as client:
        assert SyncDaemon(original, client, kiosk_id).once().audit_sent == 20
    original.close()
    store = KioskStore.open(backup)
    store.audit.append("kiosk.restored", {"kiosk_id": kiosk_id, "outcome": "restored"})     # entry 11, forked
    add_sessions(store, "restored", 2)                          # entries 12-15
    return Restored(identity, kiosk_id, store, backup)


def test_a_batch_that_ends_inside_the_shared_prefix_marks_only_its_own_entries_sent(
        central_server: CentralServer, restored: Restored) -> None:
    """The central answers with its head (20); entries past the batch are not the central's, however numbered."""
    with restored.client(central_server) as client:
        report = SyncDaemon(restored.store, client, restored.kiosk_id, batch=4).once()
    status = restored.store.sync_status()
    # 1-4 and 5-8 acknowledged; the batch 9-12 holds the forked entry 11 and is refused whole.
    assert [e.seq for e in restored.store.audit.unsent(100)] == list(range(9, 16)), report
    assert "audit_fork" in (status["audit_error"] or ""), status
    restored.store.close()
