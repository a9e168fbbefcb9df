"""Exactly once on both databases the central runs on: the embedded SQLite and PostgreSQL.

Each test runs against the session's SQLite central and against a central on a throwaway
PostgreSQL cluster (``tests/pgcluster.py``; the fixtures ``either_central`` and ``central_postgresql``
are in conftest).  SQLite serialises writers; PostgreSQL lets concurrent requests of one kiosk
really interleave, which is where an "exactly once" that holds only by luck shows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from central.runner import CentralServer
from kiosk.audit import AuditEntry
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.kiosk_identity import KioskIdentity
from sync.store import KioskStore, load_or_create_key

WRITERS = 6


Post = Callable[[str, dict[str, Any]], requests.Response]


def _poster(server: CentralServer, identity: KioskIdentity) -> Post:
    def post(path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{server.url}{path}", json=body, timeout=30, **identity.requests_options())
    return post


def _new_kiosk(server: CentralServer) -> tuple[str, Post]:
    kiosk_id = f"once-{secrets.token_hex(4)}"
    return kiosk_id, _poster(server, server.enroll_kiosk(kiosk_id))


def _chain(length: int) -> list[dict[str, Any]]:
    entries: list[AuditEntry] = []
    for i in range(length):
        prev = entries[-1] if entries else None
        entries.append(AuditEntry.after(prev, "2026-12-03T07:00:00+00:00", "clerk.signed_in", None,
                                        {"clerk_id": f"c{i}"}))
    return [e.to_dict() for e in entries]


def test_concurrent_pushes_of_one_audit_chain_append_each_link_once(either_central: CentralServer) -> None:
    """Two daemons of one kiosk (a restart racing the old one) push the same chain at once."""
    _, post = _new_kiosk(either_central)
    chain = _chain(40)
    with ThreadPoolExecutor(WRITERS) as pool:
        answers = list(pool.map(lambda _: post("/api/v1/audit", {"entries": chain}), range(WRITERS)))
    assert [a.status_code for a in answers] == [200] * WRITERS, [a.text for a in answers if a.status_code != 200]
    assert sum(a.json()["applied"] for a in answers) == 40
    assert {a.json()["head_seq"] for a in answers} == {40}


def test_concurrent_replays_of_one_journal_batch_apply_each_event_once(either_central: CentralServer) -> None:
    kiosk_id, post = _new_kiosk(either_central)
    events = [{"key": f"{kiosk_id}/{i}", "session_id": f"s{i}", "kind": "consent.given", "payload": {"i": i},
               "created_at": "2026-12-03T07:00:00+00:00"} for i in range(60)]
    with ThreadPoolExecutor(WRITERS) as pool:
        answers = list(pool.map(lambda _: post("/api/v1/events", {"events": events}), range(WRITERS)))
    assert [a.status_code for a in answers] == [200] * WRITERS, [a.text for a in answers if a.status_code != 200]
    assert sum(a.json()["applied"] for a in answers) == 60


def test_the_daemon_drains_the_journal_and_the_chain_once(either_central: CentralServer, tmp_path: Path) -> None:
    kiosk_id = f"once-{secrets.token_hex(4)}"
    identity = either_central.enroll_kiosk(kiosk_id)
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    for i in range(50):
        s = store.create(f"drain-{i}", "issuance", "consent", "mn", {})
        store.transition(s, "order", {}, {"kind": "consent.given"})
    with CentralClient(either_central.url, identity, timeout_s=30.0) as client:
        first = SyncDaemon(store, client, kiosk_id, batch=20).once()
        again = SyncDaemon(store, client, kiosk_id, batch=20).once()
    assert first.error is None and first.pushed == 50 and first.audit_sent == 100
    assert again.pushed == 0 and again.audit_sent == 0
    assert store.sync_status()["queued"] == 0
    store.close()


def test_the_postgresql_central_keeps_its_data_out_of_the_data_directory(central_postgresql: CentralServer) -> None:
    assert not (central_postgresql.data_dir / "central.sqlite3").exists()
    assert os.environ.get("DATABASE_URL") is None   # the cluster's URL does not leak into other tests
