"""Offline lookup against a real central that is then stopped: the sync daemon pulls the office's order
feed into the kiosk store, and with the central gone the issuance flow still finds the paid order,
its view saying the data is as of the last sync; a cancelled or unpaid order is still refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import cast

import pytest

from central.runner import CentralServer
from devices.certificates import X509Reader
from kiosk.engine import Engine, FlowKind, KioskPolicy, Services
from kiosk.errors import CentralUnavailable, OrderNotPayable
from kiosk.flows import ALL_FLOWS
from kiosk.flows.issuance import IssuanceFlow
from kiosk.i18n import Translator
from kiosk.ports import CentralPort
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.offline_central import OfflineCentral
from sync.store import KioskStore, load_or_create_key
from tests.fakes import FACTORY_SO, FakeIdCard, FakePrinter, FakeToken
from tests.integration.test_central import ARIUN_INVOICE, CANCELLED_INVOICE, UNPAID_INVOICE

DARKHAN_INVOICE = "147314200031"     # demo_orders.json: another office's order


def issuance(engine: Engine) -> IssuanceFlow:
    return cast(IssuanceFlow, engine.flow(FlowKind.ISSUANCE))


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KioskStore, CentralClient, dt.datetime]]:
    """A kiosk store synced from its own central, which is stopped before the kiosk is used."""
    tmp_path = tmp_path_factory.mktemp("offline")
    store = KioskStore(tmp_path / "kiosk" / "kiosk.db", load_or_create_key(tmp_path / "kiosk" / "kiosk.key"))
    central = CentralServer(tmp_path / "central").start()
    client = CentralClient(central.url, central.identity, timeout_s=5.0)
    try:
        report = SyncDaemon(store, client, "demo-kiosk", feeds=client).once()
        assert report.error is None and report.orders_pulled == store.orders.count() > 0
        synced_at = dt.datetime.now(dt.UTC)
    finally:
        central.stop()
    with pytest.raises(CentralUnavailable):
        client.find_order("invoice", ARIUN_INVOICE)
    try:
        yield store, client, synced_at
    finally:
        client.close()
        store.close()


@pytest.fixture
def offline_kiosk(synced: tuple[KioskStore, CentralClient, dt.datetime]) -> Iterator[
        tuple[Engine, KioskStore, dt.datetime]]:
    store, client, synced_at = synced
    services = Services(store, cast(CentralPort, OfflineCentral(client, store.orders)), FakeIdCard(), FakeToken(),
                        FakePrinter(), X509Reader())
    engine = Engine(services, KioskPolicy(office="Test office", factory_so_pin=FACTORY_SO), ALL_FLOWS)
    try:
        yield engine, store, synced_at
    finally:
        engine.close()


def test_a_paid_order_is_found_with_the_central_stopped_and_the_view_says_as_of(
        offline_kiosk: tuple[Engine, KioskStore, dt.datetime]) -> None:
    engine, store, synced = offline_kiosk
    flow = issuance(engine)
    sid = flow.begin("mn").session_id
    flow.consent(sid, True)
    result = flow.find_order(sid, f"TAMGA:INV:{ARIUN_INVOICE}")
    assert result.step.value == "identity"
    view = flow.current(sid).view.order
    assert view is not None and view.invoice == ARIUN_INVOICE and view.as_of is not None
    assert view.as_of <= synced
    t = Translator("mn")
    shown = t("sync.order.as_of", time=t.datetime(view.as_of))
    assert t.datetime(view.as_of) in shown and shown.startswith("Мэдээллийн огноо")
    assert store.sync_status()["orders_feed_at"] is not None


@pytest.mark.parametrize(("invoice", "reason"), [(CANCELLED_INVOICE, "cancelled"), (UNPAID_INVOICE, "unpaid")])
def test_only_paid_orders_proceed_offline(offline_kiosk: tuple[Engine, KioskStore, dt.datetime],
                                          invoice: str, reason: str) -> None:
    engine, _, _ = offline_kiosk
    flow = issuance(engine)
    sid = flow.begin("ru").session_id
    flow.consent(sid, True)
    with pytest.raises(OrderNotPayable) as refused:
        flow.find_order(sid, invoice)
    assert refused.value.data["reason"] == reason


def test_another_offices_order_was_never_cached(offline_kiosk: tuple[Engine, KioskStore, dt.datetime]) -> None:
    _, store, _ = offline_kiosk
    assert store.orders.find("invoice", DARKHAN_INVOICE) is None
    assert store.orders.find("invoice", ARIUN_INVOICE) is not None
