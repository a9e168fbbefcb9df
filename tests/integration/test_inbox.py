"""The central's inbox over HTTP: the sync daemon's events applied once per key, another kiosk's refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from central.runner import CentralServer
from kiosk.errors import CentralRejected
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key


def _post(server: CentralServer, events: list[dict[str, object]]) -> requests.Response:
    return requests.post(f"{server.url}/api/v1/events", json={"events": events}, timeout=10,
                         **server.tls)


def test_the_daemon_pushes_the_journal_once_even_when_replayed(central_server: CentralServer,
                                                               central_client: CentralClient,
                                                               tmp_path: Path) -> None:
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    for i in range(120):
        s = store.create(f"inbox-{i}", "issuance", "consent", "mn", {})
        store.transition(s, "order", {}, {"kind": "consent.given"})
    daemon = SyncDaemon(store, central_client, "demo-kiosk", batch=50)
    assert daemon.once().pushed == 120
    rows = [dict(r) for r in store.db.query("select id, session_id, kind, payload, created_at from outbox")]
    replay = [{"key": f"demo-kiosk/{r['id']}", "session_id": r["session_id"], "kind": r["kind"],
               "payload": json.loads(r["payload"]), "created_at": r["created_at"]} for r in rows[:30]]
    assert len(central_client.push_events(replay)) == 30          # acknowledged again
    answer = _post(central_server, replay)
    assert answer.status_code == 200 and answer.json()["applied"] == 0   # … and applied nothing
    fresh = dict(replay[0], key="demo-kiosk/inbox-test-new")
    assert _post(central_server, [fresh, fresh]).json()["applied"] == 1  # the same key twice in a batch: once
    assert store.sync_status()["queued"] == 0


def test_a_day_of_identity_evidence_goes_out_in_batches_under_the_centrals_body_limit(
        central_server: CentralServer, central_client: CentralClient, tmp_path: Path) -> None:
    """Evidence events (the card's certificate, nonce, signature, OCSP answer) are ~3.5 KB each: 200 of
    them are past the central's 256 KB body limit, which it refuses with 413, so a batch of a fixed
    number of events would never get through and the kiosk would stop syncing for good."""
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    evidence = {"kind": "identity.evidence", "certificate": "M" * 2400, "ocsp_response": "B" * 900}
    for i in range(240):
        s = store.create(f"evidence-{i}", "issuance", "identity", "mn", {})
        store.transition(s, "identity", {}, evidence)
    report = SyncDaemon(store, central_client, "demo-kiosk").once()
    assert report.error is None, report.error
    assert report.pushed == 240 and store.sync_status()["queued"] == 0
    store.close()


def test_a_kiosk_cannot_write_another_kiosks_journal(central_client: CentralClient) -> None:
    event = {"key": "other-kiosk/1", "session_id": "s", "kind": "consent.given", "payload": {},
             "created_at": "2026-12-02T00:00:00+00:00"}
    with pytest.raises(CentralRejected) as info:
        central_client.push_events([event])
    assert info.value.data["reason"] == "foreign_key"


@pytest.mark.parametrize("body", [{"events": "x"}, {"events": [1]}, {"events": [{"key": "demo-kiosk/1"}]},
                                  {"events": [{}] * 501}])
def test_malformed_batches_are_refused_with_a_reason(central_server: CentralServer, body: object) -> None:
    answer = requests.post(f"{central_server.url}/api/v1/events", json=body, timeout=10,
                           **central_server.tls)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def test_the_central_keeps_the_kiosks_audit_chain_whole(central_server: CentralServer, tmp_path: Path) -> None:
    """The daemon pushes the chain; a replay is acknowledged, a gap and a changed entry are refused."""
    from kiosk.audit import AuditEntry

    identity = central_server.enroll_kiosk("audit-kiosk", directory=tmp_path / "identity")

    def post(entries: list[dict[str, object]]) -> requests.Response:
        return requests.post(f"{central_server.url}/api/v1/audit", json={"entries": entries}, timeout=10,
                             **identity.requests_options())

    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    for i in range(30):
        s = store.create(f"audit-{i}", "issuance", "consent", "mn", {})
        store.transition(s, "order", {}, {"kind": "consent.given"})
    with CentralClient(central_server.url, identity, timeout_s=10.0) as client:
        report = SyncDaemon(store, client, "audit-kiosk", batch=25).once()
    assert report.error is None and report.audit_sent == 60 and store.audit.unsent(10) == []
    chain = [e.to_dict() for e in store.audit.entries()]
    replay = post(chain[40:])
    assert replay.status_code == 200 and replay.json()["applied"] == 0 and replay.json()["head_seq"] == 60
    changed = dict(chain[41], kind="approval.given")
    refused = post([changed])
    assert refused.status_code == 400 and refused.json()["error"] == "audit_hash"
    last = AuditEntry.from_dict(chain[-1])
    after = AuditEntry.after(last, last.at, "clerk.signed_in", None, {"clerk_id": "c1"})
    beyond = AuditEntry.after(after, last.at, "clerk.signed_in", None, {"clerk_id": "c1"})
    gap = post([beyond.to_dict()])
    assert gap.status_code == 409 and gap.json()["error"] == "audit_gap" and gap.json()["expected_seq"] == 61
    fork = AuditEntry.after(AuditEntry.from_dict(chain[-2]), last.at, "clerk.signed_in", None, {})
    forked = post([fork.to_dict()])
    assert forked.status_code == 409 and forked.json()["error"] == "audit_fork"
    assert post([after.to_dict()]).json()["head_seq"] == 61
    store.close()
