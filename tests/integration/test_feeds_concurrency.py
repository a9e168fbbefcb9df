"""The order feed never skips a change that commits late with a lower change number — on the embedded
SQLite and on PostgreSQL, where writers really run side by side.

A writer takes change number n the way ``central.orders.models.next_change`` does and holds its
transaction open; a second writer (``python -m central cancel``) must wait for the counter's row
lock and get n+1; a reader in between sees neither; afterwards both, n first.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import requests

from central.runner import CentralServer

HOLD_S = 1.5


def load_order(server: CentralServer, directory: Path) -> str:
    invoice = f"8{secrets.randbelow(10**11):011d}"
    order = {"invoice": invoice,
             "holder": {"father_name": "Баатар", "given_name": "Ариун",
                        "register_number": f"НЭ{secrets.randbelow(10**8):08d}"},
             "term_years": 1, "etoken": True, "consent_accepted": True, "confirmed": True, "paid_mnt": 88_000}
    path = directory / f"{invoice}.json"
    path.write_text(json.dumps([order], ensure_ascii=False), encoding="utf-8")
    assert server.manage("load-orders", str(path)).split() == [invoice]
    return invoice


def feed(server: CentralServer, after: str) -> dict[str, Any]:
    with server.client(timeout_s=10.0) as client:
        page = client.order_feed(after, 500)
    return {"cursor": page.cursor, "items": [(seq, order.invoice) for seq, order in page.items]}


def test_a_late_commit_with_a_lower_number_is_not_skipped(either_central: CentralServer, tmp_path: Path) -> None:
    early, late = load_order(either_central, tmp_path), load_order(either_central, tmp_path)
    cursor = "0"
    while (page := feed(either_central, cursor))["items"]:
        cursor = page["cursor"]
    if either_central.database_url is None:
        connection: Any = sqlite3.connect(either_central.data_dir / "central.sqlite3", timeout=20,
                                          isolation_level=None)
        mark = "?"
        connection.execute("BEGIN IMMEDIATE")
    else:
        connection = psycopg.connect(either_central.database_url)   # a transaction opens at the first statement
        mark = "%s"
    try:
        connection.execute("UPDATE orders_changecounter SET value = value + 1 WHERE name = 'feeds'")
        (number,) = connection.execute("SELECT value FROM orders_changecounter WHERE name = 'feeds'").fetchone()
        connection.execute(f"UPDATE orders_order SET status = 'cancelled', change_seq = {mark} "
                           f"WHERE invoice = {mark}", (number, early))
        other = threading.Thread(target=either_central.manage, args=("cancel", late))
        other.start()
        other.join(timeout=HOLD_S)
        assert other.is_alive(), "the second writer did not wait for the counter"
        assert feed(either_central, cursor)["items"] == []
        if either_central.database_url is None:
            connection.execute("COMMIT")
        else:
            connection.commit()
        other.join(timeout=60)
        assert not other.is_alive()
    finally:
        connection.close()
    assert feed(either_central, cursor)["items"] == [(number, early), (number + 1, late)]


def test_a_cursor_beyond_the_centrals_changes_is_refused_with_its_head(central_server: CentralServer) -> None:
    """A central restored from an older backup: the kiosk's cursor is ahead; it is told to read from 0."""
    with central_server.client(timeout_s=10.0) as client:
        head = client.order_feed("0", 1).cursor
        answer = requests.get(f"{central_server.url}/api/v1/feeds/orders", params={"after": str(10**12)},
                              timeout=10, **central_server.tls)
    assert (answer.status_code, answer.json()["error"]) == (409, "cursor_ahead")
    assert int(answer.json()["head"]) >= int(head)
