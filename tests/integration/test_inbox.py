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
                         headers={"Authorization": f"Bearer {server.token}"})


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
                           headers={"Authorization": f"Bearer {central_server.token}"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
