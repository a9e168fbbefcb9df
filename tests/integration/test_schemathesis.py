"""Schemathesis generates requests for the newer endpoints from ``central/openapi.yaml`` and sends them to
the running central: no answer may be a 500, every answer must be JSON, documented and valid.

Path parameters are pointed at a real certificate, token and order, so the generated bodies reach the
checks behind the lookups instead of stopping at 404.  Skipped when schemathesis is not installed.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (hypothesis comes with schemathesis)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from central.runner import CentralServer  # noqa: E402
from kiosk.pin import SoPin  # noqa: E402
from sync.central_client import CentralClient  # noqa: E402
from tests.integration.test_central import NewOrder, find, idem, make_csr, make_key  # noqa: E402

SPEC = Path(__file__).resolve().parents[2] / "central" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SPEC)).include(
    path_regex=r"^/api/v1/(certificates|tokens|enrollments|escrow-key|orders/\{order_id\}/enrollments|feeds|holder)")
_TARGET: dict[str, str] = {}


@pytest.fixture
def fuzz_target(central_client: CentralClient, new_order: NewOrder) -> dict[str, str]:
    """One issued certificate (on a token, SO PIN escrowed) for the whole module's examples."""
    if not _TARGET:
        placed = new_order(organisation_balance=100_000, validity_days=20)
        order = find(central_client, placed["invoice"])
        token = f"TKFUZZ{secrets.token_hex(3)}"
        issued = central_client.enroll(order.id, make_csr(make_key("p256")), idem(), token_serial=token,
                                       so_pin=SoPin.generate())
        _TARGET.update(serial=issued.serial_hex, token_serial=token, order_id=order.id)
    return _TARGET


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_generated_requests_get_documented_json_answers(case: Any, central_server: CentralServer,
                                                        fuzz_target: dict[str, str]) -> None:
    for name in ("serial", "token_serial", "order_id"):
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = fuzz_target[name]
    response = case.call(base_url=central_server.url, timeout=20, **central_server.tls)   # as the demo kiosk
    assert response.status_code < 500, response.content[:500]
    assert response.headers["content-type"][0].startswith("application/json"), response.content[:200]
    # Not "positive data accepted": a schema cannot say what a valid CSR or signature is.
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance, response_schema_conformance])
