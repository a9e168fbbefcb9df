"""An order changed at the central after the kiosk checked it against the holder's ID card is not issued from:
the enrollment carries the order's digest as checked (``kiosk.order.Order.checked_digest``) and the
central answers ``409 order_changed`` when its order no longer has it; a repeated request still gets what
was issued.  Real central over mutual TLS."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from central.runner import REPO_ROOT, CentralServer
from kiosk.errors import CentralRejected
from sync.central_client import CentralClient, csr_pem
from tests.integration.test_central import NewOrder, find, make_csr, make_key


def change_at_the_central(server: CentralServer, invoice: str, **fields: str) -> None:
    """What the central's operator (or the holder's online order page) does: edit the order in place."""
    script = ("import django; django.setup(); from central.orders.models import Order; "
              f"Order.objects.filter(invoice={invoice!r}).update(**{fields!r})")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "central.settings", "TAMGA_CENTRAL_DATA_DIR": str(server.data_dir)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60, cwd=REPO_ROOT)


def test_an_order_changed_after_the_check_is_refused_and_issued_once_looked_up_again(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    placed = new_order()
    checked = find(central_client, placed["invoice"])
    change_at_the_central(central_server, placed["invoice"], given_name="Болд")
    with pytest.raises(CentralRejected) as refused:
        central_client.enroll(checked.id, make_csr(make_key("p256")), f"chg-{uuid.uuid4()}",
                              order_digest=checked.checked_digest)
    assert refused.value.data == {"reason": "order_changed", "status": 409}

    again = find(central_client, placed["invoice"])             # looked up again, checked against the card again
    assert again.holder.given_name == "Болд" and again.checked_digest != checked.checked_digest
    issued = central_client.enroll(again.id, make_csr(make_key("p256")), f"chg-{uuid.uuid4()}",
                                   order_digest=again.checked_digest)
    subject = x509.load_pem_x509_certificate(issued.certificate_pem.encode()).subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.GIVEN_NAME)] == ["Болд"]


def test_a_repeated_request_gets_what_was_issued_though_the_order_changed_since(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    placed = new_order()
    checked = find(central_client, placed["invoice"])
    csr, key = make_csr(make_key("rsa2048")), f"chg-{uuid.uuid4()}"
    first = central_client.enroll(checked.id, csr, key, order_digest=checked.checked_digest)
    change_at_the_central(central_server, placed["invoice"], position="Захирал")
    repeated = central_client.enroll(checked.id, csr, key, order_digest=checked.checked_digest)   # the lost answer
    assert repeated.serial_hex == first.serial_hex


@pytest.mark.parametrize("digest", ["", "ABC", "0" * 63, "G" * 64, 12])
def test_a_malformed_order_digest_is_a_400(central_server: CentralServer, central_client: CentralClient,
                                           new_order: NewOrder, digest: object) -> None:
    checked = find(central_client, new_order()["invoice"])
    body = {"csr": csr_pem(make_csr(make_key("p256"))), "idempotency_key": f"chg-{uuid.uuid4()}",
            "order_digest": digest}
    response = requests.post(f"{central_server.url}/api/v1/orders/{checked.id}/enrollments", json=body,
                             timeout=10, **central_server.tls)
    assert response.status_code == 400 and response.json()["field"] == "order_digest"
