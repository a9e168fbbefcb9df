"""The SQLite store on a real file: atomic transitions, optimistic versions, encrypted secrets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kiosk.errors import ConfigError, StaleSession
from kiosk.pin import SoPin
from kiosk.ports import Receipt, ReceiptLine, ReceiptLineStyle
from sync.store import KioskStore, load_or_create_key


@pytest.fixture
def store(tmp_path: Path) -> KioskStore:
    return KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))


def test_transition_writes_session_journal_and_outbox_together(store: KioskStore) -> None:
    s = store.create("s1", "issuance", "consent", "mn", {})
    s2 = store.transition(s, "order", {"a": 1}, {"kind": "consent.given"})
    assert (s2.step, s2.version, s2.data) == ("order", 1, {"a": 1})
    loaded = store.load("s1")
    assert (loaded.step, loaded.version, loaded.data) == ("order", 1, {"a": 1})
    assert [j["to_step"] for j in store.journal("s1")] == ["consent", "order"]
    assert [o["kind"] for o in store.outbox()] == ["consent.given"]


def test_stale_version_is_refused_and_writes_nothing(store: KioskStore) -> None:
    s = store.create("s1", "issuance", "consent", "mn", {})
    store.transition(s, "order", {}, {"kind": "a"})
    with pytest.raises(StaleSession):
        store.transition(s, "identity", {}, {"kind": "b"})
    assert store.load("s1").step == "order"
    assert len(store.outbox()) == 1


def test_store_survives_reopen_and_migrations_apply_once(tmp_path: Path, store: KioskStore) -> None:
    store.create("s1", "issuance", "consent", "mn", {"x": "Ө"})
    store.close()
    again = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    assert again.load("s1").data == {"x": "Ө"}
    assert [s.id for s in again.unfinished()] == ["s1"]
    assert again.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_token_secret_is_encrypted_at_rest(tmp_path: Path, store: KioskStore) -> None:
    store.save_token_secret("ABC123", SoPin("5f1e9c0d2a7b4e33"))
    assert store.token_secret("ABC123") == SoPin("5f1e9c0d2a7b4e33")
    raw = (tmp_path / "kiosk.db").read_bytes() + (tmp_path / "kiosk.db-wal").read_bytes()
    assert b"5f1e9c0d2a7b4e33" not in raw
    assert (tmp_path / "kiosk.key").stat().st_mode & 0o777 == 0o600


def test_receipts_pending_until_printed(store: KioskStore) -> None:
    store.create("s1", "issuance", "receipt", "mn", {})
    receipt = Receipt("mn", (ReceiptLine(ReceiptLineStyle.TITLE, "Т"),))
    store.keep_receipt("s1", receipt, printed=False)
    assert store.receipt_status("s1") == "pending"
    assert store.pending_receipts() == [("s1", receipt)]
    store.keep_receipt("s1", receipt, printed=True)
    assert store.receipt_status("s1") == "printed"
    assert store.pending_receipts() == []


def test_purge_keeps_unsynced_and_recent_sessions(store: KioskStore) -> None:
    for sid in ("old", "unsynced", "recent"):
        s = store.create(sid, "issuance", "receipt", "mn", {"order": {"holder": "x"}})
        store.transition(s, "done", {}, {"kind": "done", "final": True})
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
    store.db.execute("update sessions set finished_at = ? where id in ('old', 'unsynced')", [long_ago])
    store.db.execute("update outbox set sent_at = ? where session_id != 'unsynced'", [long_ago])
    assert store.purge_finished(dt.timedelta(days=30)) == 1
    with pytest.raises(KeyError):
        store.load("old")
    assert store.load("unsynced") and store.load("recent")
    assert not store.journal("old")


def test_wrong_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(ConfigError):
        load_or_create_key(tmp_path / "bad.key")


def test_durable_commit_syncs_only_itself(store: KioskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    execute = store.db.execute

    def spy(sql: str, *args: object) -> object:
        if sql.startswith("PRAGMA synchronous"):
            seen.append(sql)
        return execute(sql, *args)

    monkeypatch.setattr(store.db, "execute", spy)
    s = store.create("s1", "issuance", "token", "mn", {})
    s = store.transition(s, "keygen", {"key_id": "ab"}, {"kind": "token.initialised"}, durable=True)
    store.transition(s, "enrollment", {}, {"kind": "key.generated"})
    store.save_token_secret("T1", SoPin("0e4c9a7715d3b2f8"))
    assert seen == ["PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL"] * 2
    assert store.db.execute("pragma synchronous").fetchone()[0] == 1   # NORMAL between durable commits
