"""The office's orders cached from the central's order feed, for lookups while the central is unreachable.

A row per order, found by invoice (the order QR code ``TAMGA:INV:<invoice>`` carries it), by the
holder's register number (canonical, as :func:`kiosk.register.canonical` writes it: the newest open
order) or by the central's order id.  ``synced_at`` says when the row was last confirmed by the
central, which the screen shows ("as of …").  The rows hold personal data: they live in the kiosk's
store (0600) and :meth:`OrderCache.purge` deletes issued and cancelled orders after the retention period.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import sqlite_utils
from sqlite_utils.migrations import Migrations

from kiosk import register
from kiosk.order import Order, OrderStatus

migrations = Migrations("tamga-kiosk-orders")

OPEN_STATUSES = (OrderStatus.AWAITING_CONFIRMATION.value, OrderStatus.NEW.value, OrderStatus.PAID.value)
FINISHED_STATUSES = (OrderStatus.ISSUED.value, OrderStatus.CANCELLED.value)


@migrations()
def m001_cached_orders(db: sqlite_utils.Database) -> None:
    db.table("cached_orders").create({
        "invoice": str, "order_id": str, "register_number": str, "status": str, "body": str, "seq": int,
        "synced_at": str,
    }, pk="invoice", not_null={"order_id", "register_number", "status", "body", "synced_at"})
    db.table("cached_orders").create_index(["register_number", "seq"])
    db.table("cached_orders").create_index(["order_id"])
    db.table("cached_orders").create_index(["status", "synced_at"])


@dataclass(frozen=True)
class CachedOrder:
    order: Order
    synced_at: dt.datetime      # when the central last confirmed this row


def _row(order: Order, seq: int, synced_at: dt.datetime) -> tuple[str, str, str, str, str, int, str]:
    return (order.invoice, order.id, register.canonical(order.holder.register_number), order.status.value,
            json.dumps(order.to_dict(), ensure_ascii=False), seq, synced_at.astimezone(dt.UTC).isoformat())


_UPSERT = ("insert into cached_orders (invoice, order_id, register_number, status, body, seq, synced_at) "
           "values (?, ?, ?, ?, ?, ?, ?) on conflict(invoice) do update set order_id = excluded.order_id, "
           "register_number = excluded.register_number, status = excluded.status, body = excluded.body, "
           "seq = max(cached_orders.seq, excluded.seq), synced_at = excluded.synced_at")


class OrderCache:
    """The ``cached_orders`` table of the kiosk store."""

    def __init__(self, db: sqlite_utils.Database, lock: threading.RLock) -> None:
        self.db = db
        self._lock = lock
        with self._lock:
            migrations.apply(db)

    def put_many(self, orders: Iterable[tuple[int, Order]], synced_at: dt.datetime) -> int:
        """Upsert ``(seq, order)`` pairs in one transaction (executemany); return how many."""
        count = 0

        def rows() -> Iterator[tuple[str, str, str, str, str, int, str]]:
            nonlocal count
            for seq, order in orders:
                count += 1
                yield _row(order, seq, synced_at)

        with self._lock, self.db.atomic():
            self.db.conn.executemany(_UPSERT, rows())
        return count

    def put(self, order: Order, synced_at: dt.datetime, seq: int = 0) -> None:
        """Refresh one row from a live answer of the central (its feed position is kept)."""
        self.put_many([(seq, order)], synced_at)

    def find(self, kind: str, value: str) -> CachedOrder | None:
        """By ``invoice`` (12 digits), ``register`` (the newest open order) or ``order_id``."""
        if kind == "invoice":
            sql, args = "select body, synced_at from cached_orders where invoice = ?", [value]
        elif kind == "register":
            sql = ("select body, synced_at from cached_orders where register_number = ? and status in (?, ?, ?) "
                   "order by seq desc limit 1")
            args = [register.canonical(value), *OPEN_STATUSES]
        elif kind == "order_id":
            sql, args = "select body, synced_at from cached_orders where order_id = ?", [value]
        else:
            raise ValueError(f"kind must be invoice, register or order_id, not {kind!r}")
        with self._lock:
            row = self.db.execute(sql, args).fetchone()
        if row is None:
            return None
        return CachedOrder(Order.from_dict(json.loads(row[0])), dt.datetime.fromisoformat(row[1]))

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("select count(*) from cached_orders").fetchone()[0])

    def purge(self, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
        """Delete issued and cancelled orders not confirmed by the central for ``older_than``; return how many."""
        cutoff = ((now or dt.datetime.now(dt.UTC)) - older_than).astimezone(dt.UTC).isoformat()
        with self._lock, self.db.atomic():
            cursor = self.db.execute("delete from cached_orders where status in (?, ?) and synced_at < ?",
                                     [*FINISHED_STATUSES, cutoff])
        return int(cursor.rowcount)
