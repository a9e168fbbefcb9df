"""The clerks' records in the kiosk store (:class:`kiosk.clerks.ClerkDirectory`): the PIN only as its
scrypt hash, in the store's file (0600, the kiosk's user alone)."""

from __future__ import annotations

import datetime as dt
import threading

import sqlite_utils
from sqlite_utils.migrations import Migrations

from kiosk.clerks import ClerkRecord

migrations = Migrations("tamga-kiosk-clerks")


@migrations()
def m001_clerks(db: sqlite_utils.Database) -> None:
    db.table("clerks").create({
        "clerk_id": str, "name": str, "pin_hash": str, "failed_attempts": int, "locked_until": str,
        "disabled": int,
    }, pk="clerk_id", not_null={"name", "pin_hash"})


class ClerkTable:
    def __init__(self, db: sqlite_utils.Database, lock: threading.RLock) -> None:
        self.db = db
        self._lock = lock
        with self._lock:
            migrations.apply(db)

    def get(self, clerk_id: str) -> ClerkRecord | None:
        with self._lock:
            rows = list(self.db.table("clerks").rows_where("clerk_id = ?", [clerk_id]))
        if not rows:
            return None
        r = rows[0]
        locked = dt.datetime.fromisoformat(r["locked_until"]) if r["locked_until"] else None
        return ClerkRecord(r["clerk_id"], r["name"], r["pin_hash"], r["failed_attempts"] or 0, locked,
                           bool(r["disabled"]))

    def put(self, record: ClerkRecord) -> None:
        with self._lock, self.db.atomic():
            self.db.table("clerks").upsert({
                "clerk_id": record.clerk_id, "name": record.name, "pin_hash": record.pin_hash,
                "failed_attempts": record.failed_attempts,
                "locked_until": record.locked_until.isoformat() if record.locked_until else None,
                "disabled": int(record.disabled)}, pk="clerk_id")

    def all(self) -> list[ClerkRecord]:
        with self._lock:
            ids = [r["clerk_id"] for r in self.db.query("select clerk_id from clerks order by clerk_id")]
        return [record for i in ids if (record := self.get(i)) is not None]
