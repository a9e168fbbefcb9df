"""The central's renewal calendar reaches the kiosk (``GET /api/v1/config``), on the real central over mutual
TLS: as OpenAPI says, the same as the central counts with, kept by a sync round in the data dir (0600) and
written again only when its version changes; a client without a kiosk certificate gets nothing."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from central.runner import CentralServer
from kiosk.workdays import default_calendar
from sync.central_calendar import CalendarFile
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.store import KioskStore
from tests.integration.test_openapi import check


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KioskStore]:
    store = KioskStore.open(tmp_path / "kiosk-data")
    yield store
    store.close()


def test_the_config_is_the_central_calendar_as_openapi_says(central_server: CentralServer,
                                                             central_client: CentralClient) -> None:
    answer = requests.get(f"{central_server.url}/api/v1/config", timeout=10, **central_server.tls)
    body = check("GET", "/api/v1/config", answer)
    mongolia = default_calendar("MN")          # the test central has no TAMGA_EXTRA_HOLIDAYS
    assert body["calendar"]["country"] == "MN"
    assert body["calendar"]["holidays"] == sorted(f"{m:02d}-{d:02d}" for m, d in mongolia.annual)
    assert body["calendar"]["dated_holidays"] == sorted(day.isoformat() for day in mongolia.dated)
    calendar = central_client.calendar()
    assert calendar.version == body["version"] and calendar.work_calendar() == mongolia


def test_without_a_kiosk_certificate_there_is_no_config(central_server: CentralServer) -> None:
    answer = requests.get(f"{central_server.url}/api/v1/config", timeout=10, verify=central_server.verify)
    assert check("GET", "/api/v1/config", answer)["error"] and answer.status_code == 401


def test_a_sync_round_keeps_the_calendar_once_per_version(central_client: CentralClient, store: KioskStore,
                                                          tmp_path: Path) -> None:
    kept = CalendarFile.in_data_dir(tmp_path / "kiosk-data")
    daemon = SyncDaemon(store, central_client, "kiosk-calendar", feeds=central_client, calendar=kept)
    first = daemon.once()
    assert first.error is None and first.calendar_changed
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600
    calendar = kept.load()
    assert calendar is not None and calendar.version == central_client.calendar().version
    written = kept.mtime_ns()
    assert not daemon.once().calendar_changed and kept.mtime_ns() == written
