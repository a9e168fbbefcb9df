"""The sync daemon over a real SQLite store and a fault-injecting inbox: exactly once, in order, then purged."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from devices.certificates import X509Reader
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.errors import CentralUnavailable
from kiosk.flows import ALL_FLOWS, FlowAccess
from kiosk.flows.issuance import IssuanceStep
from kiosk.pin import Pin
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key
from tests.fakes import CARD_PIN, FACTORY_SO, NOW, FakeCentral, FakeIdCard, FakePrinter, FakeToken


class FlakyInbox:
    """Applies each key once; ``lose_answers`` batches are applied and then their answer is lost."""

    def __init__(self) -> None:
        self.applied: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.audit: list[dict[str, Any]] = []
        self.lose_answers = 0
        self.down = False
        self.retry_after: float | None = None

    def push_events(self, events: list[dict[str, Any]]) -> set[str]:
        if self.down:
            raise CentralUnavailable("down (fake)", status=503, cause="http_error", retry_after=self.retry_after)
        for event in events:
            if event["key"] not in self.applied:
                self.applied[event["key"]] = event
                self.order.append(event["key"])
        if self.lose_answers:
            self.lose_answers -= 1
            raise CentralUnavailable("reply lost (fake)", status=None, cause="timeout")
        return {e["key"] for e in events}

    def push_audit(self, entries: list[dict[str, Any]]) -> int:
        if self.down:
            raise CentralUnavailable("down (fake)", status=503, cause="http_error", retry_after=self.retry_after)
        for entry in entries:
            if entry["seq"] == len(self.audit) + 1:
                self.audit.append(entry)
        return len(self.audit)


@pytest.fixture
def store(tmp_path: Path) -> KioskStore:
    return KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))


def _events(store: KioskStore, n: int) -> None:
    for i in range(n):
        s = store.create(f"s{i}", "issuance", "consent", "mn", {"order": {"holder": "Б.Ариун"}})
        store.transition(s, "done", {}, {"kind": "session.cancelled", "final": True})


def test_every_event_reaches_the_inbox_once_in_order_despite_lost_answers(store: KioskStore) -> None:
    _events(store, 300)                       # 300 outbox rows: several batches
    inbox = FlakyInbox()
    inbox.lose_answers = 2
    daemon = SyncDaemon(store, inbox, "kiosk-01", batch=100, sleep=lambda s: None)
    first = daemon.once()
    assert first.error is not None and first.pushed == 0
    second = daemon.once()
    assert second.error is not None and second.pushed == 0
    third = daemon.once()
    assert third.error is None and third.pushed == 300
    assert len(inbox.applied) == 300
    ids = [int(k.split("/")[1]) for k in inbox.order]
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert store.sync_status()["queued"] == 0
    assert daemon.once().pushed == 0           # nothing twice


def test_sent_events_let_the_retention_purge_delete_personal_data(store: KioskStore) -> None:
    _events(store, 3)
    store.db.execute("update sessions set finished_at = '2000-01-01T00:00:00+00:00'")
    daemon = SyncDaemon(store, FlakyInbox(), "kiosk-01", retention=dt.timedelta(days=1))
    report = daemon.once()
    assert report.purged == 3
    assert list(store.db.query("select * from sessions")) == []
    assert b"\xd0\x90\xd1\x80\xd0\xb8\xd1\x83\xd0\xbd" not in (store.path.read_bytes())  # «Ариун» not in kiosk.db


def test_unsent_events_keep_the_session(store: KioskStore) -> None:
    _events(store, 1)
    store.db.execute("update sessions set finished_at = '2000-01-01T00:00:00+00:00'")
    inbox = FlakyInbox()
    inbox.down = True
    assert SyncDaemon(store, inbox, "kiosk-01", retention=dt.timedelta(days=1)).once().purged == 0
    assert store.load("s0").step == "done"


def test_backoff_honours_retry_after_and_is_jittered_and_capped(store: KioskStore) -> None:
    inbox = FlakyInbox()
    inbox.down, inbox.retry_after = True, 42.0
    waits: list[float] = []
    daemon = SyncDaemon(store, inbox, "k", sleep=waits.append, jitter=lambda lo, hi: hi)
    _events(store, 1)
    daemon.run(interval_s=30, rounds=2)
    assert waits == [42.0]
    inbox.retry_after = None
    waits.clear()
    daemon.run(interval_s=30, rounds=12)
    assert waits[0] == 2.0 * 2 ** 3 and max(waits) == 300.0
    assert store.sync_status()["last_error"].startswith("error.central_unavailable")


def test_a_pending_certificate_is_fetched_by_the_daemon(tmp_path: Path) -> None:
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    central, token = FakeCentral(), FakeToken()
    engine = Engine(Services(store, central, FakeIdCard(), token, FakePrinter(), X509Reader()),
                    KioskPolicy(factory_so_pin=FACTORY_SO), ALL_FLOWS, clock=lambda: NOW)

    class Flows(FlowAccess):
        pass

    flows = Flows()
    flows.engine = engine
    f = flows.issuance
    sid = f.begin("mn").session_id
    f.consent(sid, True)
    f.find_order(sid, "147314016754")
    f.read_card(sid)
    f.verify_card_pin(sid, Pin(CARD_PIN))
    f.approve(sid, "clerk", f.current(sid).view.documents, False)
    f.prepare_token(sid, Pin("482916"), Pin("482916"))
    f.generate_key(sid)
    central.down = True
    f.defer(sid)
    daemon = SyncDaemon(store, FlakyInbox(), "kiosk-01", engine)
    assert daemon.once().queued_sent == 0 and store.load(sid).step == "pending"
    central.down = False
    assert daemon.once().queued_sent == 1
    assert f.current(sid).step is IssuanceStep.INSTALL
    engine.close()


@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), (None, None), ("soon", None), ("", None)])
def test_retry_after_header_is_read_as_seconds(header: str | None, seconds: float | None) -> None:
    from sync.central_client import _retry_after

    assert _retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    import email.utils

    from sync.central_client import _retry_after

    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90), usegmt=True)
    value = _retry_after(later)
    assert value is not None and 80 < value <= 90


def test_the_audit_chain_is_pushed_and_a_refusal_is_shown_without_holding_back_the_journal(store: KioskStore) -> None:
    from kiosk.errors import CentralRejected

    s = store.create("a1", "issuance", "consent", "mn", {})
    store.transition(s, "order", {}, {"kind": "consent.given"})
    inbox = FlakyInbox()
    report = SyncDaemon(store, inbox, "kiosk-01").once()
    assert report.error is None and report.audit_sent == 2 and [e["seq"] for e in inbox.audit] == [1, 2]
    assert store.sync_status()["audit_unsent"] == 0 and store.sync_status()["audit_error"] is None

    class ForkedCentral(FlakyInbox):
        def push_audit(self, entries: list[dict[str, Any]]) -> int:
            raise CentralRejected("entry 1 differs", status=409, reason="audit_fork")

    s = store.create("a2", "issuance", "consent", "mn", {})
    store.transition(s, "order", {}, {"kind": "consent.given"})
    report = SyncDaemon(store, ForkedCentral(), "kiosk-01").once()
    assert report.error is None and report.pushed == 1 and report.audit_sent == 0
    assert store.sync_status()["audit_unsent"] == 2 and "audit_fork" in store.sync_status()["audit_error"]


def test_a_batch_is_cut_by_its_size_but_always_carries_at_least_one_event() -> None:
    from sync.daemon import fitting

    small, big = {"payload": "x" * 10}, {"payload": "x" * 5000}
    assert fitting([small] * 5, 10_000) == [small] * 5
    assert len(fitting([big] * 5, 10_000)) == 1 and fitting([big, small], 100) == [big]
    assert fitting([], 100) == []
