"""Integration fixtures: the reference central service (django-ca) on loopback for the session, over real TLS.

``central_client`` is the demo kiosk, enrolled with a one-time code when the server started; other
kiosks enroll the same way (``CentralServer.enroll_kiosk``)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from central.runner import CentralServer
from sync.central_client import CentralClient
from sync.kiosk_identity import KioskIdentity
from tests.pgcluster import cluster

# The suite's tests send deliberate wrong enrollment codes from one address (127.0.0.1) to the centrals they share:
# the guessing limit is tested on a central of its own (test_enrollment_guessing.py).
os.environ.setdefault("TAMGA_ENROLL_FAILURES_PER_MINUTE", "1000")


@pytest.fixture(scope="session")
def central_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    """``python -m central serve --demo-data`` in a temporary data directory; stopped after the session.

    Its CRL refresher looks every 5 s (the product's 20 s would keep the test of a revocation made
    outside the API waiting for it)."""
    with CentralServer(tmp_path_factory.mktemp("central"), crl_refresh_s=5.0) as server:
        yield server


@pytest.fixture
def central_client(central_server: CentralServer) -> Iterator[CentralClient]:
    with central_server.client(timeout_s=10.0) as client:
        yield client


NewOrder = Callable[..., dict[str, Any]]


@pytest.fixture
def new_order(central_server: CentralServer, tmp_path: Path) -> NewOrder:
    """Add a fresh order (paid and confirmed unless told otherwise); return it as loaded.

    ``organisation_balance=N`` gives the order a fresh organisation account holding N MNT (its
    register and name are in the returned order's ``organisation``), so balance checks do not
    depend on other tests.
    """

    def make(organisation_balance: int | None = None, **overrides: Any) -> dict[str, Any]:
        order: dict[str, Any] = {
            "invoice": f"9{secrets.randbelow(10**11):011d}",
            "holder": {"surname": "Боржигон", "father_name": "Баатар", "given_name": "Ариун",
                       "register_number": f"НЭ{secrets.randbelow(10**8):08d}", "gender": "female",
                       "email": "ariun@example.mn", "phone": "99000000"},
            "organisation": {"name": "АЗ ХХК", "register": "1234567", "department": "Захиргаа"},
            "position": "Нягтлан",
            "term_years": 1, "etoken": True, "consent_accepted": True,
            "confirmed": True, "paid_mnt": 88_000,
        }
        holder = overrides.pop("holder", {})
        order.update(overrides)
        order["holder"] = {**order["holder"], **holder}
        organisations = []
        if organisation_balance is not None:
            number = f"{secrets.randbelow(10**7):07d}"
            order["organisation"] = {**order["organisation"], "register": number, "name": f"Тест {number} ХХК"}
            organisations.append({"register": number, "name": order["organisation"]["name"],
                                  "balance_mnt": organisation_balance})
        path = tmp_path / f"order-{order['invoice']}.json"
        path.write_text(json.dumps({"organisations": organisations, "orders": [order]}, ensure_ascii=False),
                        encoding="utf-8")
        assert central_server.manage("load-orders", str(path)).split() == [order["invoice"]]
        return order

    return make


OFFICE_B = "office-b"


@pytest.fixture(scope="session")
def office_b_identity(central_server: CentralServer) -> KioskIdentity:
    """The enrolled identity of a kiosk of a second office (the demo kiosk is in office ``main``)."""
    central_server.manage("add-office", OFFICE_B, "Сэлэнгэ салбар")
    return central_server.enroll_kiosk("kiosk-office-b", OFFICE_B)


@pytest.fixture
def office_b_client(central_server: CentralServer, office_b_identity: KioskIdentity) -> Iterator[CentralClient]:
    with central_server.client(timeout_s=10.0, identity=office_b_identity) as client:
        yield client


@pytest.fixture(scope="session")
def central_postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    """A central on a throwaway PostgreSQL cluster (``tests/pgcluster.py``), one per test process."""
    with cluster() as url, CentralServer(tmp_path_factory.mktemp("central-pg"), database_url=url) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def either_central(request: pytest.FixtureRequest) -> CentralServer:
    """The test runs twice: on the session's SQLite ``central_server`` and on ``central_postgresql``."""
    name = "central_server" if request.param == "sqlite" else "central_postgresql"
    server: CentralServer = request.getfixturevalue(name)
    return server
