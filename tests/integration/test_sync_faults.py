"""The sync daemon through a network that breaks (``tests/faultproxy.py``), a kiosk killed mid-push and a
central killed and restarted: every record reaches the central exactly once, counted in its database.

``TAMGA_LONG=1`` drains the issue's 10,000 records (about a minute and a half per database here).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from central.database import postgresql
from central.runner import CentralServer
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key
from tests.faultproxy import Fault, FaultProxy, random_plan, slow_plan

REPO = Path(__file__).resolve().parents[2]
# The 10,000 in the long mode; make test drains 1,000 on each database.
RECORDS = 10_000 if os.environ.get("TAMGA_LONG") else int(os.environ.get("TAMGA_DRAIN_RECORDS", "1000"))


def _inbox_keys(server: CentralServer, kiosk_id: str) -> list[str]:
    """Every idempotency key the central applied for ``kiosk_id``, read from its database."""
    query = "select key from orders_inboxevent where kiosk_id = %s"
    if server.database_url:
        settings = postgresql(server.database_url)
        with psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                             port=settings["PORT"]) as connection:
            return [row[0] for row in connection.execute(query, [kiosk_id])]
    with sqlite3.connect(f"file:{server.data_dir / 'central.sqlite3'}?mode=ro", uri=True) as connection:
        return [row[0] for row in connection.execute(query.replace("%s", "?"), [kiosk_id])]


def _queued_store(path: Path, records: int) -> KioskStore:
    """A kiosk that was offline for a long while: ``records`` journal events waiting in its outbox."""
    store = KioskStore(path / "kiosk.db", load_or_create_key(path / "kiosk.key"))
    for i in range(records // 2):
        state = store.create(f"queued-{i}", "issuance", "consent", "mn", {})
        state = store.transition(state, "order", {}, {"kind": "consent.given"})
        store.transition(state, "identity", {}, {"kind": "order.found"})
    return store


def _expected_keys(store: KioskStore, kiosk_id: str) -> set[str]:
    return {f"{kiosk_id}/{row['id']}" for row in store.db.query("select id from outbox")}


@pytest.mark.timeout(900 if os.environ.get("TAMGA_LONG") else 120)
def test_queued_records_drain_exactly_once_through_a_network_that_drops_and_resets(
        either_central: CentralServer, tmp_path: Path) -> None:
    kiosk_id = f"drain-{secrets.token_hex(4)}"
    identity = either_central.enroll_kiosk(kiosk_id, directory=tmp_path / "identity")
    store = _queued_store(tmp_path, RECORDS)
    expected = _expected_keys(store, kiosk_id)
    assert len(expected) == RECORDS
    port = int(either_central.url.rsplit(":", 1)[1])
    broken_first = (Fault(drop_request=True), Fault(reset_after=300), Fault(reset_after=9000))
    with FaultProxy(port, random_plan(seed=20261203, first=broken_first)) as proxy, \
            CentralClient(proxy.url, identity, timeout_s=5.0) as client:
        daemon = SyncDaemon(store, client, kiosk_id, batch=250, sleep=lambda _: None)
        rounds = 0
        while store.sync_status()["queued"] or store.audit.unsent(1):
            rounds += 1
            assert rounds < 400, f"not drained after {rounds} rounds: {store.sync_status()}"
            daemon.once()
    keys = _inbox_keys(either_central, kiosk_id)
    assert len(keys) == RECORDS and set(keys) == expected          # none lost, none twice
    assert proxy.counts["drop_request"] and proxy.counts["reset_mid_response"], proxy.counts
    store.close()


_CHILD = """
import sys
from pathlib import Path
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.kiosk_identity import KioskIdentity
from sync.store import KioskStore, load_or_create_key
path, url, kiosk_id, ca_chain = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
identity = KioskIdentity.in_directory(path / "identity", ca_chain)
store = KioskStore(path / "kiosk.db", load_or_create_key(path / "kiosk.key"))
with CentralClient(url, identity, timeout_s=10.0) as client:
    print("pushing", flush=True)
    SyncDaemon(store, client, kiosk_id, batch=20).push()
"""


def test_a_kiosk_killed_mid_push_sends_the_rest_after_its_restart_and_nothing_twice(
        either_central: CentralServer, tmp_path: Path) -> None:
    kiosk_id = f"killed-{secrets.token_hex(4)}"
    identity = either_central.enroll_kiosk(kiosk_id, directory=tmp_path / "identity")
    store = _queued_store(tmp_path, 600)
    expected = _expected_keys(store, kiosk_id)
    store.close()
    port = int(either_central.url.rsplit(":", 1)[1])
    # Slow answers, so the kill lands while batches are in flight.
    with FaultProxy(port, slow_plan(0.05)) as proxy:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), proxy.url, kiosk_id,
                                  str(identity.ca_chain)],
                                 cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "pushing"
        deadline = time.monotonic() + 30
        while len(_inbox_keys(either_central, kiosk_id)) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    applied_before = len(_inbox_keys(either_central, kiosk_id))
    assert 100 <= applied_before < len(expected)
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    with CentralClient(either_central.url, identity, timeout_s=10.0) as client:
        report = SyncDaemon(store, client, kiosk_id, batch=100).once()
    assert report.error is None and store.sync_status()["queued"] == 0
    keys = _inbox_keys(either_central, kiosk_id)
    assert len(keys) == len(expected) and set(keys) == expected
    store.close()


@pytest.fixture
def restartable_central(tmp_path_factory: pytest.TempPathFactory) -> CentralServer:
    """A central of its own, to kill; the runner gives it fixed ports, so it binds them again at once
    after the crash even while the kiosk's connection to the dead process lingers in FIN-WAIT-2."""
    return CentralServer(tmp_path_factory.mktemp("central-restart"), demo_data=False)


def test_a_central_killed_after_applying_a_batch_whose_answer_was_lost_applies_each_record_once(
        restartable_central: CentralServer, tmp_path: Path) -> None:
    central = restartable_central.start()
    try:
        kiosk_id = "restart-kiosk"
        identity = central.enroll_kiosk(kiosk_id, directory=tmp_path / "identity")
        store = _queued_store(tmp_path, 400)
        expected = _expected_keys(store, kiosk_id)
        with CentralClient(central.url, identity, timeout_s=5.0) as client:
            daemon = SyncDaemon(store, client, kiosk_id, batch=50, sleep=lambda _: None)
            # The first batch reaches the central, which applies it; its answer never reaches the kiosk.
            first = store.outbox_batch(50)
            assert client.push_events([_event(kiosk_id, row) for row in first])
            assert central.pid is not None
            os.kill(central.pid, signal.SIGKILL)                     # a power cut at the central
            central.stop()
            assert daemon.once().error is not None                   # unreachable: nothing marked sent
            central.start()                                          # on the same ports: the kiosk's URL
            assert central.url == client.base_url
            rounds = 0
            while store.sync_status()["queued"]:
                rounds += 1
                assert rounds < 20
                daemon.once()
        keys = _inbox_keys(central, kiosk_id)
        assert len(keys) == len(expected) and set(keys) == expected
        store.close()
    finally:
        central.stop()


def _event(kiosk_id: str, row: dict[str, object]) -> dict[str, object]:
    return {"key": f"{kiosk_id}/{row['id']}", "session_id": row["session_id"], "kind": row["kind"],
            "payload": json.loads(str(row["payload"])), "created_at": row["created_at"]}
