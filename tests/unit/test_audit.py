"""The audit trail: hash-chained, append-only, and a verifier that names the first broken link."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlite_utils

from kiosk.audit import GENESIS, AuditEntry, chained_fields, verify_chain
from sync.audit_log import AuditLog


def _chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for i in range(n):
        entries.append(AuditEntry.after(entries[-1] if entries else None, f"2026-12-03T04:00:{i:02d}.000+00:00",
                                        "approval.given", f"s{i % 3}", {"clerk_id": "clerk-1", "seq_hint": i}))
    return entries


def test_an_untouched_chain_verifies_and_reports_its_head() -> None:
    entries = _chain(10)
    report = verify_chain(entries)
    assert report.intact and report.entries == 10 and report.head == entries[-1].hash
    assert entries[0].prev == GENESIS and report.kinds == {"approval.given": 10}


def test_a_changed_entry_is_named() -> None:
    entries = _chain(6)
    forged = AuditEntry(**{**entries[3].__dict__, "fields": {"clerk_id": "clerk-2", "seq_hint": 3}})
    report = verify_chain([*entries[:3], forged, *entries[4:]])
    assert report.broken is not None and (report.broken.seq, report.broken.problem) == (4, "hash")
    assert report.entries == 3


def test_a_removed_entry_is_a_gap_and_a_rehashed_forgery_breaks_the_next_link() -> None:
    entries = _chain(6)
    gap = verify_chain([*entries[:2], *entries[3:]])
    assert gap.broken is not None and (gap.broken.seq, gap.broken.problem) == (3, "gap")
    # the forger recomputes the changed entry's own hash: the following entry no longer points to it
    old = entries[2]
    rehashed = AuditEntry.after(entries[1], old.at, old.kind, old.session_id, {"clerk_id": "forger"})
    report = verify_chain([*entries[:2], rehashed, *entries[3:]])
    assert report.broken is not None and (report.broken.seq, report.broken.problem) == (4, "prev")


def test_chained_fields_keep_no_personal_data_but_commit_to_the_whole_event() -> None:
    event = {"kind": "order.found", "flow": "issuance", "invoice": "147314100017", "holder": "Б.Ариун",
             "register_number": "НЕ80000000", "order_id": "o-1"}
    fields = chained_fields(event, "order", "identity")
    text = json.dumps(fields, ensure_ascii=False)
    assert "Ариун" not in text and "НЕ80000000" not in text and "147314100017" not in text
    assert fields["from"] == "order" and fields["to"] == "identity" and len(fields["body_sha256"]) == 64
    assert chained_fields({**event, "holder": "Б.Болд"})["body_sha256"] != fields["body_sha256"]


@pytest.fixture()
def log(tmp_path: Path) -> AuditLog:
    conn = sqlite3.connect(str(tmp_path / "kiosk.db"), check_same_thread=False, isolation_level=None)
    return AuditLog(sqlite_utils.Database(conn), threading.RLock())


def test_the_store_refuses_to_change_or_delete_an_entry(log: AuditLog) -> None:
    for i in range(3):
        log.append("clerk.signed_in", {"clerk_id": f"c{i}"})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.db.execute("update audit set fields = '{}' where seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.db.execute("delete from audit where seq = 3")
    log.mark_sent(2)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.db.execute("update audit set sent_at = 'later' where seq = 1")
    assert [e.seq for e in log.unsent(10)] == [3]
    assert log.verify().intact and log.verify().entries == 3


def test_tampering_past_the_triggers_is_found_by_verify(log: AuditLog) -> None:
    """Someone with the file drops the triggers and edits an entry: the chain names it."""
    for i in range(5):
        log.append("session.step", {"to": f"step{i}"}, session_id="s1")
    log.db.executescript("drop trigger audit_append_only; drop trigger audit_no_delete;")
    log.db.execute("""update audit set fields = '{"to":"elsewhere"}' where seq = 4""")
    report = log.verify()
    assert report.broken is not None and (report.broken.seq, report.broken.problem) == (4, "hash")
    log.db.execute("delete from audit where seq = 2")
    report = log.verify()
    assert report.broken is not None and (report.broken.seq, report.broken.problem) == (2, "gap")


def test_every_session_step_is_chained_in_its_own_transaction_and_survives_the_purge(tmp_path: Path) -> None:
    from sync.store import KioskStore, load_or_create_key

    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    try:
        s = store.create("s1", "issuance", "consent", "mn", {})
        s = store.transition(s, "order", {}, {"kind": "consent.given", "flow": "issuance"})
        s = store.transition(s, "identity", {"order": {"holder": "Б.Ариун"}},
                             {"kind": "order.found", "flow": "issuance", "invoice": "147314100017"})
        store.transition(s, "done", {}, {"kind": "session.cancelled", "flow": "issuance", "final": True})
        entries = list(store.audit.entries())
        assert [(e.kind, e.fields.get("to")) for e in entries] == [
            ("session.created", "consent"), ("consent.given", "order"), ("order.found", "identity"),
            ("session.cancelled", "done")]
        assert all(e.session_id == "s1" for e in entries)
        long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
        store.db.execute("update sessions set finished_at = ?", [long_ago])
        store.mark_sent([r["id"] for r in store.outbox()])
        assert store.purge_finished(dt.timedelta(days=30)) == 1
        report = store.audit.verify()
        assert report.intact and report.entries == 4
        assert "147314100017" not in json.dumps([e.to_dict() for e in store.audit.entries()], ensure_ascii=False)
    finally:
        store.close()


def test_audit_verify_command_names_the_first_broken_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk.shell import app, cli
    from tests.unit.test_shell_build import _config

    cfg = _config(tmp_path)
    kiosk = app.build(cfg)
    try:
        r = kiosk.issuance.begin("mn")
        kiosk.issuance.consent(r.session_id, accepted=True)
        kiosk.issuance.cancel(r.session_id, "applicant_left")
    finally:
        kiosk.close()
    assert cli.main(["--config", str(cfg.source), "audit", "verify"]) == 0
    assert "audit chain intact: 3 entries" in capsys.readouterr().out
    conn = sqlite3.connect(str(cfg.kiosk.data_dir / "kiosk.db"))
    conn.executescript("drop trigger audit_append_only;")
    conn.execute("""update audit set kind = 'approval.given' where seq = 2""")
    conn.commit()
    conn.close()
    assert cli.main(["--config", str(cfg.source), "audit", "verify"]) == 1
    assert "BROKEN at entry 2 (hash)" in capsys.readouterr().out


def test_clerk_commands_keep_only_the_hash_and_audit_every_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from kiosk.clerks import ClerkSignIn, ScryptCost
    from kiosk.errors import InvalidPin
    from kiosk.pin import Pin
    from kiosk.shell import cli
    from sync.store import KioskStore, load_or_create_key
    from tests.unit.test_shell_build import _config

    cfg = _config(tmp_path)
    args = ["--config", str(cfg.source), "clerk"]
    monkeypatch.setattr("sys.stdin", io.StringIO("204817\n204817\n"))
    assert cli.main([*args, "add", "clerk-7", "--name", "Д.Сарнай"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("204817\n204818\n"))
    assert cli.main([*args, "add", "clerk-8", "--name", "Б.Нурлан"]) == 1        # the two PINs differ
    assert cli.main([*args, "list"]) == 0
    assert "clerk-7" in capsys.readouterr().out
    database = cfg.kiosk.data_dir / "kiosk.db"
    assert b"204817" not in b"".join(p.read_bytes() for p in database.parent.glob("kiosk.db*"))
    store = KioskStore(database, load_or_create_key(cfg.kiosk.data_dir / "kiosk.key", database))
    try:
        desk = ClerkSignIn(store.clerks, cost=ScryptCost(n=2**10), audit=lambda k, f: store.audit.append(k, f))
        assert desk.sign_in("clerk-7", Pin("204817"), dt.datetime.now(dt.UTC)).clerk_id == "clerk-7"
        with pytest.raises(InvalidPin):
            desk.sign_in("clerk-7", Pin("111222"), dt.datetime.now(dt.UTC))
        kinds = [e.kind for e in store.audit.entries()]
        assert kinds == ["clerk.added", "clerk.signed_in", "clerk.pin_refused"] and store.audit.verify().intact
        assert "204817" not in json.dumps([e.to_dict() for e in store.audit.entries()])
    finally:
        store.close()
    assert cli.main([*args, "disable", "clerk-7"]) == 0
    assert cli.main([*args, "list"]) == 0 and "disabled" in capsys.readouterr().out


def test_a_changed_configuration_is_audited_by_setting_name_never_by_value(tmp_path: Path) -> None:
    from kiosk.shell import app, config
    from tests.unit.test_shell_build import _config

    cfg = _config(tmp_path)
    for _ in range(2):                      # the same configuration twice: one entry
        app.start(cfg).close()
    text = cfg.source.read_text().replace("retention_days = 1", "retention_days = 2")
    cfg.source.write_text(text)
    kiosk = app.start(config.load(cfg.source))
    try:
        changes = [e for e in kiosk.store.audit.entries() if e.kind == "config.changed"]
        assert len(changes) == 2 and changes[1].fields["setting"] == ["kiosk.retention_days"]
        assert "kiosk.data_dir" in changes[0].fields["setting"]
        assert str(cfg.kiosk.data_dir) not in json.dumps([e.to_dict() for e in changes])
        assert kiosk.store.audit.verify().intact
    finally:
        kiosk.close()
