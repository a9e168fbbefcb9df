"""The feeds with cursors on the real central: the office's order changes and certificate events,
paging, a late-committing writer never skipped; a token's certificate for its kiosk and its holder."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from typing import Any

import pytest
import requests

from central.runner import CentralServer
from kiosk.errors import CentralRejected
from kiosk.order import OrderStatus
from kiosk.ports import RevocationReason
from sync.central_client import CentralClient
from tests.integration.conftest import OFFICE_B
from tests.integration.test_central import NewOrder, idem, make_csr, make_key, spki


def head(client: CentralClient, feed: str = "orders") -> str:
    """Read a feed to its end; return the cursor."""
    cursor = "0"
    while True:
        page = client.order_feed(cursor, 500) if feed == "orders" else client.certificate_feed(cursor, 500)
        cursor = page.cursor
        if not page.more:
            return cursor


def order_changes(client: CentralClient, after: str) -> list[tuple[str, OrderStatus]]:
    page = client.order_feed(after, 500)
    assert not page.more
    return [(order.invoice, order.status) for _, order in page.items]


def test_order_feed_carries_this_offices_new_and_cancelled_orders_once(
        central_server: CentralServer, central_client: CentralClient, office_b_client: CentralClient,
        new_order: NewOrder) -> None:
    mine_from, theirs_from = head(central_client), head(office_b_client)
    mine, theirs = new_order(), new_order(office=OFFICE_B)
    assert order_changes(central_client, mine_from) == [(mine["invoice"], OrderStatus.PAID)]
    assert order_changes(office_b_client, theirs_from) == [(theirs["invoice"], OrderStatus.PAID)]
    cursor = head(central_client)
    central_server.manage("cancel", mine["invoice"])
    assert order_changes(central_client, cursor) == [(mine["invoice"], OrderStatus.CANCELLED)]
    # From the first cursor the order appears once, in its current state.
    assert order_changes(central_client, mine_from) == [(mine["invoice"], OrderStatus.CANCELLED)]


def test_feed_pages_follow_the_cursor(central_client: CentralClient, new_order: NewOrder) -> None:
    cursor = head(central_client)
    invoices = [new_order()["invoice"] for _ in range(3)]
    seen, seqs = [], []
    while True:
        page = central_client.order_feed(cursor, 1)
        seen += [order.invoice for _, order in page.items]
        seqs += [seq for seq, _ in page.items]
        cursor = page.cursor
        if not page.items:
            break
        assert page.more and cursor == str(seqs[-1])
    assert seen == invoices and seqs == sorted(seqs)


@pytest.mark.parametrize(("query", "field"), [({"after": "-1"}, "after"), ({"after": "x"}, "after"),
                                               ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"),
                                               ({"after": "9" * 20}, "after")])
def test_bad_feed_queries_get_a_reason(central_server: CentralServer, query: dict[str, str], field: str) -> None:
    answer = requests.get(f"{central_server.url}/api/v1/feeds/orders", params=query,
                          **central_server.tls, timeout=10)
    assert (answer.status_code, answer.json()["error"], answer.json()["field"]) == (400, "invalid_query", field)


def test_a_change_committed_late_with_a_lower_number_is_not_skipped(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    """A writer takes change number n and commits after another writer's n+1 was requested: the reader
    that looked in between sees neither, and afterwards both, n first (the counter's write lock)."""
    early, late = new_order(), new_order()
    cursor = head(central_client)
    slow = sqlite3.connect(central_server.data_dir / "central.sqlite3", timeout=20, isolation_level=None)
    try:
        # What central.orders.models.next_change and Order.save do, held open: number n, not committed.
        slow.execute("BEGIN IMMEDIATE")
        slow.execute("UPDATE orders_changecounter SET value = value + 1 WHERE name = 'feeds'")
        (number,) = slow.execute("SELECT value FROM orders_changecounter WHERE name = 'feeds'").fetchone()
        slow.execute("UPDATE orders_order SET status = 'cancelled', change_seq = ? WHERE invoice = ?",
                     (number, early["invoice"]))
        other = threading.Thread(target=central_server.manage, args=("cancel", late["invoice"]))
        other.start()                       # blocks on the counter until the slow writer commits
        other.join(timeout=1.5)
        assert other.is_alive()
        assert order_changes(central_client, cursor) == []   # nothing half-seen
        slow.execute("COMMIT")
        other.join(timeout=30)
    finally:
        slow.close()
    page = central_client.order_feed(cursor, 500)
    assert [(seq, order.invoice) for seq, order in page.items] == [
        (number, early["invoice"]), (number + 1, late["invoice"])]


def enroll(client: CentralClient, invoice: str, token_serial: str = "") -> tuple[Any, str]:
    key = make_key("p256")
    order = client.find_order("invoice", invoice)
    issued = client.enroll(order.id, make_csr(key), idem(), token_serial=token_serial)
    return issued, hashlib.sha256(spki(key)).hexdigest()


def test_certificate_feed_issued_revoked_and_expiring(
        central_client: CentralClient, office_b_client: CentralClient, new_order: NewOrder) -> None:
    cursor, theirs_from = head(central_client, "certificates"), head(office_b_client, "certificates")
    year = new_order()
    issued, _ = enroll(central_client, year["invoice"], token_serial="TKFEED1")
    pilot = new_order(validity_days=20)
    expiring, _ = enroll(central_client, pilot["invoice"])
    enroll(office_b_client, new_order(office=OFFICE_B)["invoice"])
    page = central_client.certificate_feed(cursor)
    assert [(item["serial"], item["event"]) for item in page.items] == [
        (issued.serial_hex, "issued"), (expiring.serial_hex, "expiring")]
    assert page.items[0]["token_serial"] == "TKFEED1" and page.items[0]["invoice"] == year["invoice"]
    cursor = page.cursor
    assert central_client.certificate_feed(cursor).items == ()      # a notice is carried once
    central_client.revoke(issued.serial_hex, RevocationReason.KEY_COMPROMISE, year["holder"]["register_number"],
                          idem())
    events = central_client.certificate_feed(cursor).items
    assert [(item["serial"], item["event"], item["revocation_reason"]) for item in events] == [
        (issued.serial_hex, "revoked", "key_compromise")]
    assert len(office_b_client.certificate_feed(theirs_from).items) == 1


def test_a_tokens_certificate_for_its_offices_kiosk_and_for_its_holder(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    token_serial = f"TKPEND{idem()[-8:]}"
    issued, digest = enroll(central_client, new_order()["invoice"], token_serial=token_serial)
    assert central_client.token_certificate(token_serial).certificate.serial_hex == issued.serial_hex
    with pytest.raises(CentralRejected) as unknown:
        central_client.token_certificate("TKNOSUCH")
    assert unknown.value.data["reason"] == "certificate_not_found"

    def holder(serial: str, key_digest: str) -> requests.Response:
        return requests.get(f"{central_server.url}/api/v1/holder/tokens/{serial}/certificate",
                            params={"public_key_sha256": key_digest}, timeout=10, verify=central_server.verify)

    answer = holder(token_serial, digest)
    assert answer.status_code == 200 and answer.json()["serial"] == issued.serial_hex
    wrong_key, wrong_token = holder(token_serial, "0" * 64), holder("TKNOSUCH", digest)
    assert (wrong_key.status_code, wrong_key.json()) == (wrong_token.status_code, wrong_token.json())
    assert wrong_key.status_code == 404
    assert holder(token_serial, "A" * 64).json()["error"] == "invalid_query"
    statuses = [holder(token_serial, digest).status_code for _ in range(12)]
    assert statuses[-1] == 429 and 200 in statuses
