"""The kiosk's order cache (sync.order_cache) and the CentralPort decorator that falls back to it
(sync.offline_central): lookups by invoice, register number and QR, "as of", cancelled, the purge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
from pathlib import Path
from typing import Any, cast

import pytest

from kiosk.errors import CentralRejected, CentralUnavailable, OrderNotFound
from kiosk.order import Order, OrderStatus, classify_query
from kiosk.ports import CentralPort
from kiosk.views import OrderView
from sync.offline_central import OfflineCentral
from sync.store import KioskStore, load_or_create_key
from tests.fakes import demo_order
from tests.unit.conftest import Rig

SYNCED = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> KioskStore:
    return KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))


def test_orders_are_found_by_invoice_register_number_and_qr(store: KioskStore) -> None:
    store.orders.put_many([(1, demo_order()), (2, demo_order("147314048627", register_number="НЭ70101010"))],
                          SYNCED)
    assert store.orders.find("invoice", "147314016754").order.holder.given_name == "Ариун"  # type: ignore[union-attr]
    # typed with Latin look-alikes and spaces, normalised as kiosk.register does
    assert store.orders.find("register", "нэ 8000-0000").order.invoice == "147314016754"  # type: ignore[union-attr]
    kind, value = classify_query("TAMGA:INV:147314048627")
    found = store.orders.find(kind.value, value)
    assert found is not None and found.order.invoice == "147314048627" and found.synced_at == SYNCED
    assert store.orders.find("invoice", "999999999999") is None


def test_register_lookup_gives_the_newest_open_order_and_a_feed_change_replaces_the_row(store: KioskStore) -> None:
    store.orders.put_many([(1, demo_order("147314000001")), (2, demo_order("147314000002"))], SYNCED)
    assert store.orders.find("register", "НЭ80000000").order.invoice == "147314000002"  # type: ignore[union-attr]
    store.orders.put_many([(3, demo_order("147314000002", status=OrderStatus.CANCELLED))], SYNCED)
    assert store.orders.find("register", "НЭ80000000").order.invoice == "147314000001"  # type: ignore[union-attr]
    assert store.orders.count() == 2


def test_purge_deletes_only_finished_orders_past_retention_and_files_stay_private(store: KioskStore,
                                                                                tmp_path: Path) -> None:
    old = SYNCED - dt.timedelta(days=40)
    store.orders.put_many([(1, demo_order("147314000001", status=OrderStatus.ISSUED)),
                           (2, demo_order("147314000002", status=OrderStatus.CANCELLED)),
                           (3, demo_order("147314000003"))], old)
    store.orders.put_many([(4, demo_order("147314000004", status=OrderStatus.ISSUED))], SYNCED)
    assert store.orders.purge(dt.timedelta(days=30), now=SYNCED) == 2
    assert {i for i in ("147314000001", "147314000002", "147314000003", "147314000004")
            if store.orders.find("invoice", i)} == {"147314000003", "147314000004"}
    assert stat.S_IMODE(os.stat(tmp_path / "kiosk.db").st_mode) == 0o600


class Central:
    """A central that answers, or is unreachable."""

    def __init__(self, order: Order | None = None) -> None:
        self.order = order
        self.reachable = True

    def find_order(self, kind: str, value: str) -> Order:
        if not self.reachable:
            raise CentralUnavailable("down", status=None, cause="connection")
        if self.order is None:
            raise OrderNotFound(kind=kind)
        return self.order

    def enroll(self, *args: Any, **kwargs: Any) -> Any:
        raise CentralUnavailable("down", status=None, cause="connection")

    def escrow_key(self) -> str:
        return "delegated"


def test_the_decorator_refreshes_the_cache_online_and_answers_from_it_offline(store: KioskStore) -> None:
    central = Central(demo_order())
    lookup = OfflineCentral(central, store.orders)    # type: ignore[arg-type]
    online = lookup.find_order("invoice", "147314016754")
    assert online.as_of is None and store.orders.count() == 1
    central.reachable = False
    offline = lookup.find_order("invoice", "147314016754")
    assert offline == online and offline.as_of is not None
    view = OrderView.of(Order.from_dict(offline.to_dict()))     # as the flow keeps it in the session
    assert view.as_of == offline.as_of
    with pytest.raises(OrderNotFound):
        lookup.find_order("invoice", "999999999999")
    assert lookup.escrow_key() == "delegated"


def test_offline_with_an_empty_cache_is_unavailable_not_unknown(store: KioskStore) -> None:
    central = Central(demo_order())
    central.reachable = False
    with pytest.raises(CentralUnavailable):
        OfflineCentral(central, store.orders).find_order("invoice", "147314016754")  # type: ignore[arg-type]


def test_a_cancelled_order_from_the_feed_stops_an_offline_enrollment_with_the_reason(store: KioskStore) -> None:
    store.orders.put_many([(5, demo_order(status=OrderStatus.CANCELLED))], SYNCED)
    lookup = OfflineCentral(Central(), store.orders)    # type: ignore[arg-type]
    with pytest.raises(CentralRejected) as refused:
        lookup.enroll("6754", b"csr", "key-1")
    assert (refused.value.data["reason"], refused.value.data["refusal"]) == ("order_not_payable", "cancelled")
    store.orders.put_many([(6, demo_order())], SYNCED)
    with pytest.raises(CentralUnavailable):         # a paid order: the flow defers as before
        lookup.enroll("6754", b"csr", "key-1")


def test_an_order_the_feed_changed_since_the_check_stops_an_offline_enrollment(store: KioskStore) -> None:
    checked = demo_order()
    changed = dataclasses.replace(checked, position="Захирал")
    store.orders.put_many([(5, changed)], SYNCED)
    lookup = OfflineCentral(Central(), store.orders)    # type: ignore[arg-type]
    with pytest.raises(CentralRejected) as refused:
        lookup.enroll("6754", b"csr", "key-1", order_digest=checked.checked_digest)
    assert refused.value.data["reason"] == "order_changed"
    with pytest.raises(CentralUnavailable):         # checked as it now is: the flow defers as before
        lookup.enroll("6754", b"csr", "key-1", order_digest=changed.checked_digest)


def test_an_offline_visit_of_an_order_the_feed_cancelled_ends_at_enrollment_with_the_reason(
        store: KioskStore) -> None:
    rig = Rig()
    lookup = OfflineCentral(rig.central, store.orders)
    rig.engine.services = dataclasses.replace(rig.engine.services, central=cast(CentralPort, lookup))
    sid = rig.to_enrollment_step()          # online: the lookup cached the order
    store.orders.put_many([(9, demo_order(status=OrderStatus.CANCELLED))], SYNCED)   # then the feed said so
    rig.central.down = True
    result = rig.issuance.enroll(sid)
    assert result.step.value == "cancelled"
    assert isinstance(result.error, CentralRejected) and result.error.data["refusal"] == "cancelled"
