"""The sync daemon pulls the office's feeds after each push: pages from the cursor kept in the store,
orders into the order cache; a central lost mid-feed resumes at the last page it answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kiosk.errors import CentralRejected, CentralUnavailable
from kiosk.order import Order, OrderStatus
from sync.central_client import FeedPage
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key
from tests.fakes import demo_order


class Feeds:
    """A central's feeds over lists, with the journal inbox of a central that applies everything;
    ``fail_after`` pages it answers, then it is unreachable (a fault-injecting fake)."""

    def __init__(self, orders: list[tuple[int, Order]], certificates: list[dict[str, Any]]) -> None:
        self.orders, self.certificates = orders, certificates
        self.asked: list[tuple[str, str]] = []
        self.fail_after: int | None = None

    def _page(self, name: str, items: list[Any], seq: Any, after: str, limit: int) -> FeedPage:
        if self.fail_after is not None and len(self.asked) >= self.fail_after:
            raise CentralUnavailable("down (fake)", status=None, cause="connection")
        self.asked.append((name, after))
        page = [item for item in items if seq(item) > int(after)][:limit]
        return FeedPage(tuple(page), str(seq(page[-1])) if page else after, len(page) == limit)

    def order_feed(self, after: str = "0", limit: int = 100) -> FeedPage:
        return self._page("orders", self.orders, lambda item: item[0], after, limit)

    def certificate_feed(self, after: str = "0", limit: int = 100) -> FeedPage:
        return self._page("certificates", self.certificates, lambda item: item["seq"], after, limit)

    def push_events(self, events: list[dict[str, Any]]) -> set[str]:
        return {e["key"] for e in events}

    def push_audit(self, entries: list[dict[str, Any]]) -> int:
        return entries[-1]["seq"] if entries else 0


@pytest.fixture
def store(tmp_path: Path) -> KioskStore:
    return KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))


def orders(n: int) -> list[tuple[int, Order]]:
    return [(2 * i + 1, demo_order(f"1473140{i:05d}", register_number=f"НЭ{i:08d}")) for i in range(n)]


def test_the_daemon_pulls_both_feeds_in_pages_from_its_cursors(store: KioskStore) -> None:
    feeds = Feeds(orders(5), [{"seq": 4, "event": "issued", "serial": "AB"}])
    daemon = SyncDaemon(store, feeds, "k1", feeds=feeds, batch=2)
    report = daemon.once()
    assert (report.error, report.orders_pulled, report.certificate_events) == (None, 5, 1)
    assert store.orders.count() == 5
    assert feeds.asked == [("orders", "0"), ("orders", "3"), ("orders", "7"), ("certificates", "0")]
    status = store.sync_status()
    assert status["orders_feed_at"] and status["certificates_feed_at"] and status["orders_cached"] == 5
    # the next round asks only after the kept cursors
    feeds.orders.append((11, demo_order("147314000005", status=OrderStatus.CANCELLED)))
    feeds.asked.clear()
    assert daemon.once().orders_pulled == 1
    assert feeds.asked == [("orders", "9"), ("certificates", "4")]
    assert store.orders.find("invoice", "147314000005").order.status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_a_central_lost_mid_feed_resumes_after_the_last_page_it_answered(store: KioskStore) -> None:
    feeds = Feeds(orders(6), [])
    feeds.fail_after = 2
    daemon = SyncDaemon(store, feeds, "k1", feeds=feeds, batch=2)
    report = daemon.once()
    assert isinstance(report.error, CentralUnavailable) and store.orders.count() == 4
    assert store.sync_status()["orders_feed_at"] is None
    feeds.fail_after = None
    feeds.asked.clear()
    assert daemon.once().orders_pulled == 2
    assert feeds.asked[0] == ("orders", "7") and store.orders.count() == 6


def test_a_central_behind_the_kept_cursor_is_read_again_from_the_start(store: KioskStore) -> None:
    """The central's database was restored: its change numbers start below the kiosk's cursor (409 cursor_ahead)."""
    feeds = Feeds(orders(2), [])
    store.set_sync_state("feed.orders.cursor", "900")
    real = feeds.order_feed

    def restored(after: str = "0", limit: int = 100) -> FeedPage:
        if int(after) > 3:
            raise CentralRejected("ahead (fake)", reason="cursor_ahead", status=409)
        return real(after, limit)

    feeds.order_feed = restored  # type: ignore[method-assign]
    report = SyncDaemon(store, feeds, "k1", feeds=feeds).once()
    assert (report.error, report.orders_pulled) == (None, 2)
    assert store.sync_state_value("feed.orders.cursor") == "3"
