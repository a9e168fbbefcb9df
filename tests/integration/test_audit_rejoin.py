"""A kiosk store restored from a backup older than its last sync, against the real central over mutual TLS.

The central holds the chain the kiosk had before its SD card died; the restored store has an older
prefix of that chain and then entries of its own: the chains fork.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from central.runner import CentralCommandError, CentralServer
from kiosk.audit import AuditEntry
from kiosk.errors import CentralRejected
from provisioning.rejoin import rejoin, signer
from sync.__main__ import status_lines
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.kiosk_identity import KioskIdentity
from sync.store import KioskStore

REPO = Path(__file__).resolve().parents[2]


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

    @property
    def sign(self) -> Callable[[AuditEntry], str]:
        return signer(self.identity.key)

    def client(self, server: CentralServer) -> CentralClient:
        return server.client(timeout_s=10.0, identity=self.identity)


@pytest.fixture
def restored(tmp_path: Path, request: pytest.FixtureRequest) -> Restored:
    """On ``either_central`` when the test asks for it (SQLite and PostgreSQL), else on the session's central."""
    central_server: CentralServer = request.getfixturevalue(
        "either_central" if "either_central" in request.fixturenames else "central_server")
    kiosk_id = "restored-" + re.sub(r"[^a-z0-9]+", "-", request.node.name[-40:]).strip("-")
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


def kiosk_toml(restored: Restored, server: CentralServer, path: Path) -> Path:
    i = restored.identity
    path.write_text(f'[kiosk]\nid = "{restored.kiosk_id}"\ndata_dir = "{restored.data_dir}"\n\n[central]\n'
                    f'url = "{server.url}"\nca_chain = "{i.ca_chain}"\nclient_certificate = "{i.certificate}"\n'
                    f'client_key = "{i.key}"\n', encoding="utf-8")
    return path


def audit_rejoin(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provisioning", "audit-rejoin", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def test_the_technicians_rejoin_keeps_the_restored_chain_as_a_new_branch_and_the_old_one_whole(
        either_central: CentralServer, restored: Restored, tmp_path: Path) -> None:
    central_server = either_central
    store = restored.store
    shared = list(store.audit.entries())[9]                       # entry 10, the last both chains hold
    with restored.client(central_server) as client:
        daemon = SyncDaemon(store, client, restored.kiosk_id)
        assert daemon.once().audit_sent == 0 and daemon.once().audit_sent == 0      # refused twice: one fork
        state = client.audit_state()
    assert (state["branch"], state["head_seq"]) == (0, 20)
    assert state["fork"]["seq"] == 11 and state["fork"]["base_hash"] == shared.hash and state["fork"]["refusals"] == 2
    status = status_lines(store.sync_status())[-1]          # what python -m sync status prints
    assert status.startswith("audit chain      15 unsent; REFUSED: audit_fork: entry 11 differs") and \
        status.endswith("tamga-provision audit-rejoin --reason … --technician …"), status
    store.close()
    with pytest.raises(CentralCommandError) as open_fork:         # the auditor's view: exit 1 while a fork is open
        central_server.manage("audit", restored.kiosk_id)
    assert "OPEN: the kiosk's entries from there on are refused until tamga-provision audit-rejoin" in str(
        open_fork.value)

    config = kiosk_toml(restored, central_server, tmp_path / "kiosk.toml")
    refused = audit_rejoin(config, "--reason", " ", "--technician", "Б. Дорж")
    assert refused.returncode == 1 and "the reason must be 1 to 500 printable characters" in refused.stderr
    reason = "SD card replaced; restored from the backup of 2026-11-30 (ticket 4711)"
    out = audit_rejoin(config, "--reason", reason, "--technician", "Б. Дорж")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "from entry 11 on as branch 1; the branch it left ends at entry 20, which the rejoin entry 16" in out.stdout
    assert "names with its reason; 16 entries sent" in out.stdout   # 1-10 as branch 0's, 11-16 into branch 1

    store = KioskStore.open(restored.data_dir)
    try:
        rejoined = list(store.audit.entries())[-1]
        assert rejoined.kind == "audit.rejoined" and store.audit.verify().intact     # local history untouched
        assert {k: rejoined.fields[k] for k in ("reason", "technician", "fork_seq", "central_head_seq",
                                                "central_head_hash")} == {
            "reason": reason, "technician": "Б. Дорж", "fork_seq": 11, "central_head_seq": 20,
            "central_head_hash": state["head_hash"]}
        assert store.audit.unsent(100) == [] and store.sync_status()["audit_error"] is None
        add_sessions(store, "after-rejoin", 1)         # the kiosk's chain goes on in its branch
        with restored.client(central_server) as client:
            assert SyncDaemon(store, client, restored.kiosk_id).once().audit_sent == 2
            assert client.audit_state() == {"branch": 1, "head_seq": 18, "head_hash": store.audit.verify().head,
                                             "fork": None}
            replay = client.rejoin_audit(rejoined.to_dict(), restored.sign(rejoined))    # a lost answer, sent again
            assert (replay["branch"], replay["fork_seq"], replay["head_hash"]) == (1, 11, shared.hash)
    finally:
        store.close()
    again = audit_rejoin(config, "--reason", reason, "--technician", "Б. Дорж")
    assert again.returncode == 0 and "nothing to rejoin" in again.stdout

    audit = central_server.manage("audit", restored.kiosk_id).splitlines()       # the auditor's view: both whole
    assert audit[0].startswith("branch 0: entries 1-20, head ") and audit[0].endswith(", intact")
    assert audit[1] == f"branch 1: entries 11-18, head {state_head(restored)}, intact"
    kiosk_certificate = restored.identity.load_certificate()
    assert audit[2] == f"  signed by the kiosk certificate {kiosk_certificate.subject.rfc4514_string()} (serial " \
        f"{kiosk_certificate.serial_number:X}): signature verified"
    assert f"left branch 0 after entry 10 ({shared.hash}); rejoined" in audit[3] and repr(reason) in audit[3]
    assert f"its entry 16 names branch 0's head, entry 20 ({state['head_hash']})" in audit[3]
    assert audit[4].startswith("fork at entry 11 of branch 0") and audit[4].endswith(
        "refused 2 time(s): closed by branch 1")


def state_head(restored: Restored) -> str:
    store = KioskStore.open(restored.data_dir)
    try:
        return store.audit.verify().head
    finally:
        store.close()


def test_a_rejoin_that_names_another_head_or_no_fork_is_refused(central_server: CentralServer,
                                                                 restored: Restored) -> None:
    store = restored.store
    with restored.client(central_server) as client:
        assert rejoin(store.audit, client, "restored", "technician", restored.sign) is None      # no fork recorded yet
        SyncDaemon(store, client, restored.kiosk_id).once()
        fork = client.audit_state()["fork"]
        stale = store.audit.append("audit.rejoined", {"reason": "restored", "technician": "t", "fork_seq": fork["seq"],
                                                      "base_hash": fork["base_hash"], "central_branch": 0,
                                                      "central_head_seq": 19, "central_head_hash": "0" * 64})
        with pytest.raises(CentralRejected) as refused:
            client.rejoin_audit(stale.to_dict(), restored.sign(stale))
        assert refused.value.data["reason"] == "audit_rejoin_stale"
        assert client.audit_state()["fork"] is not None and client.audit_state()["branch"] == 0
    store.close()


def test_the_audit_endpoints_answer_as_the_openapi_file_says(central_server: CentralServer,
                                                             restored: Restored) -> None:
    from tests.integration.test_openapi import check

    tls = restored.identity.requests_options()
    url = f"{central_server.url}/api/v1/audit"
    assert check("GET", "/api/v1/audit", requests.get(url, timeout=10, **tls))["fork"] is None
    entries = [e.to_dict() for e in restored.store.audit.entries()]
    forked = check("POST", "/api/v1/audit", requests.post(url, json={"entries": entries}, timeout=10, **tls))
    assert (forked["error"], forked["seq"], forked["fork_seq"]) == ("audit_fork", 11, 11)
    state = check("GET", "/api/v1/audit", requests.get(url, timeout=10, **tls))
    rejoin_url = f"{url}/rejoin"
    wrong_kind = check("POST", "/api/v1/audit/rejoin", requests.post(rejoin_url, json={
        "entry": entries[-1], "signature": restored.sign(AuditEntry.from_dict(entries[-1]))}, timeout=10, **tls))
    assert wrong_kind["error"] == "invalid_request"
    entry = restored.store.audit.append("audit.rejoined", {
        "reason": "restored", "technician": "t", "fork_seq": 11, "base_hash": state["fork"]["base_hash"],
        "central_branch": 0, "central_head_seq": state["head_seq"], "central_head_hash": state["head_hash"]})
    other_key = check("POST", "/api/v1/audit/rejoin", requests.post(rejoin_url, json={
        "entry": entry.to_dict(), "signature": restored.sign(AuditEntry.from_dict(entries[-1]))}, timeout=10, **tls))
    assert (other_key["error"], other_key["field"]) == ("signature_invalid", "signature")
    joined = check("POST", "/api/v1/audit/rejoin", requests.post(rejoin_url, json={
        "entry": entry.to_dict(), "signature": restored.sign(entry)}, timeout=10, **tls))
    assert joined["branch"] == 1
    changed = check("POST", "/api/v1/audit/rejoin", requests.post(rejoin_url, json={"entry": dict(
        entry.to_dict(), fields=dict(entry.fields, reason="another reason")), "signature": restored.sign(entry)},
        timeout=10, **tls))
    assert changed["error"] == "audit_hash"
    second = restored.store.audit.append("audit.rejoined", dict(entry.fields, reason="once more"))
    closed = check("POST", "/api/v1/audit/rejoin", requests.post(rejoin_url, json={
        "entry": second.to_dict(), "signature": restored.sign(second)}, timeout=10, **tls))
    assert closed["error"] == "audit_no_fork"
    restored.store.close()


def test_a_kiosk_restored_twice_forks_its_branch_again_and_every_branch_stays_whole(
        central_server: CentralServer, restored: Restored, tmp_path: Path) -> None:
    """The replacement dies too and is restored from a backup taken right after its rejoin (entries 1-16
    unsent): entries 1-10 are compared with branch 0, 11-16 with branch 1, and its own 17 forks branch 1."""
    store = restored.store
    with restored.client(central_server) as client:
        SyncDaemon(store, client, restored.kiosk_id).once()                       # refused: the fork at 11
        assert rejoin(store.audit, client, "SD card replaced", "Б. Дорж", restored.sign) is not None
        second_backup = tmp_path / "second-backup"
        second_backup.mkdir(mode=0o700)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for name in ("kiosk.db", "kiosk.key"):
            shutil.copy2(restored.data_dir / name, second_backup / name)
        add_sessions(store, "replacement", 2)                                     # 17-20
        assert SyncDaemon(store, client, restored.kiosk_id).once().audit_sent == 20
        store.close()

        again = KioskStore.open(second_backup)
        again.audit.append("kiosk.restored", {"kiosk_id": restored.kiosk_id, "outcome": "restored"})    # 17, forked
        SyncDaemon(again, client, restored.kiosk_id).once()
        state = client.audit_state()
        assert (state["branch"], state["head_seq"], state["fork"]["seq"]) == (1, 20, 17)
        assert [e.seq for e in again.audit.unsent(100)] == list(range(1, 18))   # nothing of it taken for synced
        done = rejoin(again.audit, client, "the replacement's SD card failed as well", "Б. Дорж",
                      restored.sign)
        assert done is not None and (done.branch, done.fork_seq, done.central_head_seq) == (2, 17, 20)
        assert SyncDaemon(again, client, restored.kiosk_id).once().audit_sent == 18
        assert client.audit_state()["fork"] is None
        again.close()
    audit = central_server.manage("audit", restored.kiosk_id).splitlines()
    branches = [line for line in audit if line.startswith("branch ")]
    assert [b.split(", head")[0] for b in branches] == ["branch 0: entries 1-20", "branch 1: entries 11-20",
                                                         "branch 2: entries 17-18"]
    assert all(b.endswith(", intact") for b in branches)
    assert sum("closed by branch" in line for line in audit) == 2
