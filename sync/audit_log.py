"""The audit trail in the kiosk store: the ``audit`` table, append-only (SQLite triggers refuse any
change but marking an entry sent, and any deletion), chained by :mod:`kiosk.audit`.

It shares the store's connection and lock, so a session step and its audit entry commit in one
transaction: there is no step without its entry and no entry without its step.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from kiosk.audit import AuditEntry, ChainReport, chained_fields, verify_chain

migrations = Migrations("tamga-kiosk-audit")


@migrations()
def m001_audit(db: sqlite_utils.Database) -> None:
    db.table("audit").create({
        "seq": int, "at": str, "kind": str, "session_id": str, "fields": str, "prev": str, "hash": str,
        "sent_at": str,
    }, pk="seq", not_null={"at", "kind", "fields", "prev", "hash"})
    db.table("audit").create_index(["sent_at"])
    db.executescript("""
        create trigger audit_append_only before update of seq, at, kind, session_id, fields, prev, hash on audit
        begin select raise(abort, 'the audit log is append-only'); end;
        create trigger audit_sent_once before update of sent_at on audit when old.sent_at is not null
        begin select raise(abort, 'the audit log is append-only'); end;
        create trigger audit_no_delete before delete on audit
        begin select raise(abort, 'the audit log is append-only'); end;
    """)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _entry(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(row["seq"], row["at"], row["kind"], row["session_id"], json.loads(row["fields"]),
                      row["prev"], row["hash"])


class AuditLog:
    """Append and read the chain.  Callers inside a store transaction pass through its connection."""

    def __init__(self, db: sqlite_utils.Database, lock: threading.RLock) -> None:
        self.db = db
        self._lock = lock
        with self._lock:
            migrations.apply(db)

    def _head(self) -> AuditEntry | None:
        rows = list(self.db.query("select * from audit order by seq desc limit 1"))
        return _entry(rows[0]) if rows else None

    def append(self, kind: str, fields: Mapping[str, Any], session_id: str | None = None,
               at: str | None = None) -> AuditEntry:
        """Append one entry; inside the caller's transaction when there is one (the store's lock is re-entrant)."""
        with self._lock:
            entry = AuditEntry.after(self._head(), at or _now(), kind, session_id, fields)
            self.db.table("audit").insert({**entry.to_dict(), "fields": json.dumps(dict(entry.fields),
                                                                                  ensure_ascii=False,
                                                                                  sort_keys=True),
                                           "sent_at": None})
        return entry

    def append_step(self, session_id: str, from_step: str, to_step: str, event: Mapping[str, Any], at: str) -> None:
        """The audit entry of a journalled session event (called by the store in the transition's transaction)."""
        self.append(str(event.get("kind", f"step.{to_step}")), chained_fields(event, from_step, to_step),
                    session_id, at)

    def entries(self, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        sql = "select * from audit where seq > ? order by seq"
        args: list[Any] = [after_seq]
        if limit is not None:
            sql += " limit ?"
            args.append(limit)
        with self._lock:
            rows = list(self.db.query(sql, args))
        yield from (_entry(r) for r in rows)

    def unsent(self, limit: int) -> list[AuditEntry]:
        with self._lock:
            rows = list(self.db.query("select * from audit where sent_at is null order by seq limit ?", [limit]))
        return [_entry(r) for r in rows]

    def mark_sent(self, up_to_seq: int) -> None:
        """The central holds the chain up to this entry."""
        with self._lock, self.db.atomic():
            self.db.execute("update audit set sent_at = ? where sent_at is null and seq <= ?", [_now(), up_to_seq])

    def verify(self) -> ChainReport:
        return verify_chain(self.entries())
