"""Office scoping on the real central: a kiosk of office main finds nothing of office B's orders and
certificates (the same 404 as for something unknown) and cannot enroll B's order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from central.runner import CentralServer
from kiosk.errors import CentralRejected, OrderNotFound
from kiosk.ports import IssuedCertificate, RevocationReason
from sync.central_client import CentralClient
from tests.integration.conftest import OFFICE_B
from tests.integration.test_central import NewOrder, idem, make_csr, make_key, spki

UNKNOWN_INVOICE = "999999999999"


def get(server: CentralServer, path: str, **params: str) -> requests.Response:
    """GET as the demo kiosk (office main)."""
    return requests.get(f"{server.url}/api/v1/{path}", params=params, timeout=10, **server.tls)


@dataclass(frozen=True)
class Issued:
    order: dict[str, Any]
    certificate: IssuedCertificate
    token_serial: str
    public_key_sha256: str


@pytest.fixture
def b_issued(office_b_client: CentralClient, new_order: NewOrder) -> Issued:
    """An order of office B with a certificate on token ``B-…`` that B's kiosk enrolled."""
    order = new_order(office=OFFICE_B)
    found = office_b_client.find_order("invoice", order["invoice"])
    key = make_key("p256")
    token_serial = f"B-{idem()[-12:]}"
    issued = office_b_client.enroll(found.id, make_csr(key), idem(), token_serial=token_serial)
    return Issued(order, issued, token_serial, hashlib.sha256(spki(key)).hexdigest())


def test_another_offices_order_is_not_found_by_invoice_or_register(
        central_client: CentralClient, office_b_client: CentralClient, new_order: NewOrder) -> None:
    order = new_order(office=OFFICE_B)
    assert office_b_client.find_order("invoice", order["invoice"]).invoice == order["invoice"]
    with pytest.raises(OrderNotFound):
        central_client.find_order("invoice", order["invoice"])
    with pytest.raises(OrderNotFound):
        central_client.find_order("register", order["holder"]["register_number"])
    mine = new_order()
    with pytest.raises(OrderNotFound):
        office_b_client.find_order("invoice", mine["invoice"])


def test_another_offices_order_answers_exactly_as_an_unknown_one(
        central_server: CentralServer, new_order: NewOrder) -> None:
    order = new_order(office=OFFICE_B)
    theirs = get(central_server, "orders", invoice=order["invoice"])
    unknown = get(central_server, "orders", invoice=UNKNOWN_INVOICE)
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json()) == (
        404, {"error": "order_not_found", "message": "no such order"})


def test_another_offices_order_cannot_be_enrolled(central_client: CentralClient,
                                                   office_b_client: CentralClient, new_order: NewOrder) -> None:
    order = new_order(office=OFFICE_B)
    order_id = office_b_client.find_order("invoice", order["invoice"]).id
    with pytest.raises(CentralRejected) as refused:
        central_client.enroll(order_id, make_csr(make_key("p256")), idem())
    assert refused.value.data["reason"] == "order_not_found"
    # B's own kiosk can still enroll it afterwards: nothing was consumed.
    assert office_b_client.enroll(order_id, make_csr(make_key("p256")), idem()).serial_hex


def test_another_offices_certificates_are_not_found(
        central_server: CentralServer, central_client: CentralClient, office_b_client: CentralClient,
        b_issued: Issued) -> None:
    order, issued = b_issued.order, b_issued.certificate
    register_number = order["holder"]["register_number"]
    assert [c.serial_hex for c in office_b_client.certificates(register_number)] == [issued.serial_hex]
    assert central_client.certificates(register_number) == []
    for path, params in ((f"certificates/{issued.serial_hex}", {}),
                         (f"certificates/{issued.serial_hex}/renewal", {"term_years": "1"}),
                         (f"tokens/{b_issued.token_serial}/certificate", {})):
        answer = get(central_server, path, **params)
        assert (answer.status_code, answer.json()["error"]) == (404, "certificate_not_found"), path
    with pytest.raises(CentralRejected) as refused:
        central_client.revoke(issued.serial_hex, RevocationReason.KEY_COMPROMISE, register_number, idem())
    assert refused.value.data["reason"] == "certificate_not_found"
    assert office_b_client.certificate(issued.serial_hex).status.value == "good"   # not revoked


def test_another_offices_token_so_pin_is_not_released(
        central_server: CentralServer, b_issued: Issued) -> None:
    order, issued = b_issued.order, b_issued.certificate
    answer = requests.post(
        f"{central_server.url}/api/v1/tokens/{b_issued.token_serial}/so-pin",
        json={"certificate_serial": issued.serial_hex, "register_number": order["holder"]["register_number"],
              "public_key": "x"},
        **central_server.tls, timeout=10)
    assert (answer.status_code, answer.json()["error"]) == (404, "certificate_not_found")

