"""The kiosk's SQLite store (sqlite-utils, WAL): sessions, their journal, the outbox, token secrets, receipts.

This module owns the schema.  Every step transition writes the session row, a journal row and an
outbox event in ONE transaction, so a power cut leaves either all three or none, and the sync
daemon later sends exactly what happened.  PINs never reach this database; the only secret here,
each token's SO PIN, is encrypted with the kiosk's key (Fernet: AES-128-CBC + HMAC-SHA256).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from cryptography.fernet import Fernet, InvalidToken
from sqlite_utils.migrations import Migrations

from kiosk.engine import AWAITS_CENTRAL
from kiosk.errors import ConfigError, StaleSession
from kiosk.events import EventKind
from kiosk.pin import SoPin
from kiosk.ports import Receipt, SessionState
from sync.audit_log import AuditLog
from sync.clerk_directory import ClerkTable
from sync.order_cache import OrderCache

migrations = Migrations("tamga-kiosk")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.table("sessions").create({
        "id": str, "step": str, "version": int, "language": str, "data": str,
        "created_at": str, "updated_at": str, "finished_at": str,
    }, pk="id", not_null={"step", "version", "language", "data", "created_at", "updated_at"})
    db.table("sessions").create_index(["finished_at"])
    db.table("transitions").create({
        "id": int, "session_id": str, "from_step": str, "to_step": str, "version": int,
        "at": str, "event": str,
    }, pk="id", foreign_keys=[("session_id", "sessions", "id")])
    db.table("transitions").create_index(["session_id", "version"], unique=True)
    db.table("outbox").create({
        "id": int, "session_id": str, "kind": str, "payload": str, "created_at": str, "sent_at": str,
    }, pk="id")
    db.table("outbox").create_index(["sent_at"])
    db.table("token_secrets").create({"token_serial": str, "so_pin": bytes, "created_at": str}, pk="token_serial")
    db.table("receipts").create({
        "session_id": str, "language": str, "payload": str, "printed_at": str, "attempts": int,
        "created_at": str,
    }, pk="session_id")


@migrations()
def m002_session_flow(db: sqlite_utils.Database) -> None:
    """Sessions say which flow they belong to; the spine's sessions were all issuances."""
    db.table("sessions").add_column("flow", str, not_null_default="issuance")
    db.table("sessions").create_index(["flow", "finished_at"])


@migrations()
def m003_sync_state(db: sqlite_utils.Database) -> None:
    """What the sync daemon last saw: last success, last error (for ``python -m sync status``)."""
    db.table("sync_state").create({"name": str, "value": str, "at": str}, pk="name")


DIR_MODE = 0o700     # the data directory: holders' personal data, the kiosk's data key
FILE_MODE = 0o600    # kiosk.db and its -wal and -shm, kiosk.key
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def secure_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable by the kiosk alone; tighten it if it exists."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


def load_or_create_key(path: Path, database: Path | None = None) -> bytes:
    """The kiosk's data key (Fernet), created with mode 0600 on first use.

    Refuses to create a new key beside an existing ``database``: its stored SO PINs would become
    unreadable.  The technician restores the key file from the kiosk's backup instead.
    """
    if path.exists():
        key = path.read_bytes().strip()
        try:
            Fernet(key)
        except ValueError as err:
            raise ConfigError(f"{path} is not a valid key file", setting="store.key_file") from err
        os.chmod(path, FILE_MODE)
        return key
    if database is not None and database.exists():
        raise ConfigError(f"{path} is missing but {database} exists: restore the key file from the kiosk's "
                          "backup (a new key could not read the stored eToken SO PINs)", setting="store.key_file")
    secure_dir(path.parent)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


class KioskStore:
    """Implements :class:`kiosk.ports.SessionStore` over one SQLite file."""

    def __init__(self, path: Path | str, key: bytes) -> None:
        self.path = Path(path)
        secure_dir(self.path.parent)
        self._lock = threading.RLock()
        if not self.path.exists():      # created owner-only; SQLite gives -wal and -shm the database's mode
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        self._restrict_files()
        # check_same_thread=False: the UI thread and device workers share it under self._lock.
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL never corrupts, but a power cut may roll back the last commits; commits that
        # precede a side effect outside the kiosk (an SO PIN about to be set, the key id about to be
        # used) are made durable one by one (see _durable).  A synced commit also makes every earlier one durable.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._fernet = Fernet(key)
        with self._lock:
            migrations.apply(self.db)
        self.audit = AuditLog(self.db, self._lock)     # every transition appends to it in its own transaction
        self.clerks = ClerkTable(self.db, self._lock)
        self.orders = OrderCache(self.db, self._lock)   # the office's orders, for offline lookups
        self._restrict_files()

    def _restrict_files(self) -> None:
        for suffix in DB_SUFFIXES:
            file = self.path.with_name(self.path.name + suffix)
            if file.exists():
                os.chmod(file, FILE_MODE)

    @classmethod
    def open(cls, data_dir: Path) -> KioskStore:
        """The kiosk's store in ``data_dir``: ``kiosk.db`` with its data key ``kiosk.key``."""
        database = data_dir / "kiosk.db"
        return cls(database, load_or_create_key(data_dir / "kiosk.key", database))

    def close(self) -> None:
        self.db.close()

    # -- sessions ----------------------------------------------------------------------------------------
    @staticmethod
    def _state(row: dict[str, Any]) -> SessionState:
        return SessionState(id=row["id"], flow=row["flow"], step=row["step"], version=row["version"],
                            language=row["language"], data=json.loads(row["data"]), created_at=row["created_at"],
                            updated_at=row["updated_at"])

    def create(self, session_id: str, flow: str, step: str, language: str, data: dict[str, Any]) -> SessionState:
        now = _now()
        with self._lock, self.db.atomic():
            self.db.table("sessions").insert({
                "id": session_id, "flow": flow, "step": step, "version": 0, "language": language,
                "data": json.dumps(data, ensure_ascii=False), "created_at": now, "updated_at": now,
                "finished_at": None,
            })
            self.db.table("transitions").insert({"session_id": session_id, "from_step": None, "to_step": step,
                                           "version": 0, "at": now,
                                           "event": json.dumps({"kind": EventKind.CREATED.value, "flow": flow})})
            self.audit.append(EventKind.CREATED.value, {"flow": flow, "to": step}, session_id, now)
        return self.load(session_id)

    def load(self, session_id: str) -> SessionState:
        with self._lock:
            rows = list(self.db.table("sessions").rows_where("id = ?", [session_id]))
        if not rows:
            raise KeyError(session_id)
        return self._state(rows[0])

    def unfinished(self) -> list[SessionState]:
        with self._lock:
            rows = list(self.db.table("sessions").rows_where("finished_at is null", order_by="created_at"))
        return [self._state(r) for r in rows]

    def awaiting_central(self) -> list[SessionState]:
        """Finished sessions that still have a call for the central (``kiosk.engine.AWAITS_CENTRAL``)."""
        with self._lock:
            rows = list(self.db.table("sessions").rows_where(
                "finished_at is not null and json_extract(data, ?) = 1", [f"$.{AWAITS_CENTRAL}"],
                order_by="created_at"))
        return [self._state(r) for r in rows]

    def sessions_since(self, since: dt.datetime) -> list[SessionState]:
        """Sessions created or moved on at or after ``since``, oldest first (the clerk's day list)."""
        moment = since.astimezone(dt.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            rows = list(self.db.table("sessions").rows_where("updated_at >= ?", [moment], order_by="created_at"))
        return [self._state(r) for r in rows]

    @contextmanager
    def _durable(self, durable: bool = True) -> Iterator[None]:
        """One transaction, fsynced at commit when ``durable`` (synchronous=FULL for it alone)."""
        with self._lock:
            if durable:
                self.db.execute("PRAGMA synchronous=FULL")
            try:
                with self.db.atomic():
                    yield
            finally:
                if durable:
                    self.db.execute("PRAGMA synchronous=NORMAL")

    def transition(self, state: SessionState, to_step: str, data: dict[str, Any],
                   event: dict[str, Any], durable: bool = False) -> SessionState:
        now = _now()
        version = state.version + 1
        finished = now if event.get("final") else None
        with self._durable(durable):
            cursor = self.db.execute(
                "update sessions set step = ?, version = ?, data = ?, updated_at = ?, "
                "finished_at = coalesce(?, finished_at) where id = ? and version = ?",
                [to_step, version, json.dumps(data, ensure_ascii=False), now, finished, state.id, state.version],
            )
            if cursor.rowcount != 1:
                raise StaleSession(session_id=state.id, expected_version=state.version)
            body = json.dumps(event, ensure_ascii=False, sort_keys=True)
            self.db.table("transitions").insert({"session_id": state.id, "from_step": state.step, "to_step": to_step,
                                           "version": version, "at": now, "event": body})
            self.db.table("outbox").insert({"session_id": state.id, "kind": event.get("kind", f"step.{to_step}"),
                                      "payload": body,
                                      "created_at": now, "sent_at": None})
            self.audit.append_step(state.id, state.step, to_step, event, now)
        return SessionState(id=state.id, flow=state.flow, step=to_step, version=version, language=state.language,
                            data=data, created_at=state.created_at, updated_at=now)

    def journal(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.table("transitions").rows_where("session_id = ?", [session_id], order_by="version"))

    def outbox(self, unsent_only: bool = True) -> list[dict[str, Any]]:
        where = "sent_at is null" if unsent_only else None
        with self._lock:
            return list(self.db.table("outbox").rows_where(where, order_by="id"))

    # -- sync --------------------------------------------------------------------------------------------
    def outbox_batch(self, limit: int) -> list[dict[str, Any]]:
        """The oldest unsent outbox rows, in order (id, session_id, kind, payload, created_at)."""
        with self._lock:
            return list(self.db.query("select id, session_id, kind, payload, created_at from outbox "
                                      "where sent_at is null order by id limit ?", [limit]))

    def mark_sent(self, ids: list[int]) -> None:
        """The central acknowledged these outbox rows."""
        now = _now()
        with self._lock, self.db.atomic():
            self.db.execute("update outbox set sent_at = ? where sent_at is null and id in "
                            "(select value from json_each(?))", [now, json.dumps(ids)])

    def set_sync_state(self, name: str, value: str) -> None:
        with self._lock, self.db.atomic():
            self.db.table("sync_state").upsert({"name": name, "value": value, "at": _now()}, pk="name")

    def sync_state_value(self, name: str) -> str | None:
        with self._lock:
            row = self.db.execute("select value from sync_state where name = ?", [name]).fetchone()
        return row[0] if row else None

    def sync_status(self) -> dict[str, Any]:
        """Queue length, the oldest unsent event's time, and the last success and error with their times."""
        with self._lock:
            count, oldest = self.db.execute("select count(*), min(created_at) from outbox where sent_at is null"
                                            ).fetchone()
            state = {r["name"]: (r["value"], r["at"]) for r in self.db.table("sync_state").rows}
            (audit_unsent,) = self.db.execute("select count(*) from audit where sent_at is null").fetchone()
        return {"queued": count, "oldest_unsent_at": oldest, "last_success_at": state.get("success", ("", None))[1],
                "last_error": state.get("error", (None, None))[0], "last_error_at": state.get("error", (None, None))[1],
                "audit_unsent": audit_unsent, "audit_error": state.get("audit_error", ("", None))[0] or None,
                "orders_feed_at": state.get("feed.orders", ("", None))[1],
                "certificates_feed_at": state.get("feed.certificates", ("", None))[1],
                "trust_feed_at": state.get("feed.trust", ("", None))[1],
                "orders_cached": self.orders.count()}

    def purge_finished(self, older_than: dt.timedelta) -> int:
        """Delete personal data of sessions finished before now − ``older_than`` whose events were sent and
        which await nothing more from the central (a holder agreement still unsent keeps its session)."""
        cutoff = (dt.datetime.now(dt.UTC) - older_than).isoformat(timespec="milliseconds")
        with self._lock, self.db.atomic():
            ids = [r["id"] for r in self.db.query(
                "select id from sessions where finished_at is not null and finished_at < ? and not exists "
                "(select 1 from outbox o where o.session_id = sessions.id and o.sent_at is null) and "
                "coalesce(json_extract(data, ?), 0) != 1", [cutoff, f"$.{AWAITS_CENTRAL}"])]
            for table in ("transitions", "receipts", "outbox"):
                self.db.execute(f"delete from {table} where session_id in (select value from json_each(?))",  # noqa: S608
                                [json.dumps(ids)])
            # a session's other receipts are kept as "<session id>:<which>" (e.g. the pending receipt)
            self.db.execute("delete from receipts where substr(session_id, 1, instr(session_id || ':', ':') - 1) "
                            "in (select value from json_each(?))", [json.dumps(ids)])
            self.db.execute("delete from sessions where id in (select value from json_each(?))", [json.dumps(ids)])
        self.orders.purge(older_than)     # cached issued or cancelled orders: the same retention
        return len(ids)

    # -- token secrets -----------------------------------------------------------------------------------
    def save_token_secret(self, token_serial: str, so_pin: SoPin) -> None:
        with self._durable():
            self.db.table("token_secrets").upsert({"token_serial": token_serial,
                                             "so_pin": self._fernet.encrypt(so_pin.reveal().encode()),
                                             "created_at": _now()}, pk="token_serial")

    def token_secret(self, token_serial: str) -> SoPin | None:
        with self._lock:
            rows = list(self.db.table("token_secrets").rows_where("token_serial = ?", [token_serial]))
        if not rows:
            return None
        try:
            return SoPin(self._fernet.decrypt(rows[0]["so_pin"]).decode())
        except InvalidToken as err:
            raise ConfigError("the kiosk key cannot decrypt a stored token secret",
                              setting="store.key_file") from err

    # -- receipts ----------------------------------------------------------------------------------------
    def keep_receipt(self, session_id: str, receipt: Receipt, printed: bool) -> None:
        """Keep the receipt; durable when not yet printed (it precedes the print, a side effect on paper)."""
        now = _now()
        with self._durable(not printed):
            rows = list(self.db.table("receipts").rows_where("session_id = ?", [session_id]))
            attempts = (rows[0]["attempts"] if rows else 0) + 1
            self.db.table("receipts").upsert({
                "session_id": session_id, "language": receipt.language,
                "payload": json.dumps(receipt.to_dict(), ensure_ascii=False),
                "printed_at": now if printed else None, "attempts": attempts,
                "created_at": rows[0]["created_at"] if rows else now,
            }, pk="session_id")

    def pending_receipts(self) -> list[tuple[str, Receipt]]:
        with self._lock:
            rows = list(self.db.table("receipts").rows_where("printed_at is null", order_by="created_at"))
        return [(r["session_id"], Receipt.from_dict(json.loads(r["payload"]))) for r in rows]

    def receipt_status(self, session_id: str) -> str | None:
        with self._lock:
            rows = list(self.db.table("receipts").rows_where("session_id = ?", [session_id]))
        if not rows:
            return None
        return "printed" if rows[0]["printed_at"] else "pending"
