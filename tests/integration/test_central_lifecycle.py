"""After issuance, against the real central over HTTP: SO PIN escrow and release, enrollment void,
the holder's certificates, revocation (seen in the CA's CRL at once)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import stat
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from central.runner import CentralServer
from kiosk import register
from kiosk.errors import CentralRejected
from kiosk.order import OrderStatus
from kiosk.pin import SoPin
from kiosk.ports import CertificateStatus, IssuedCertificate, RevocationReason
from sync.central_client import CentralClient, csr_pem
from tests.integration.test_central import NewOrder, find, idem, make_csr, make_key


def token_serial() -> str:
    return f"TK{secrets.token_hex(6).upper()}"


def issue(client: CentralClient, new_order: NewOrder, token: str = "", so_pin: SoPin | None = None,
          **order: Any) -> tuple[dict[str, Any], IssuedCertificate, str]:
    placed = new_order(**order)
    key_id = idem()
    issued = client.enroll(find(client, placed["invoice"]).id, make_csr(make_key("p256")), key_id,
                           token_serial=token, so_pin=so_pin)
    return placed, issued, key_id


# --- SO PIN escrow -----------------------------------------------------------------------------------
def test_escrow_key_is_published_and_kept_owner_only(central_server: CentralServer) -> None:
    response = requests.get(f"{central_server.url}/api/v1/escrow-key", **central_server.tls, timeout=10)
    assert response.status_code == 200
    body = response.json()
    key = serialization.load_pem_public_key(body["public_key"].encode())
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 3072
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert body == {"public_key": body["public_key"], "key_id": hashlib.sha256(spki).hexdigest(),
                    "algorithm": "RSA-OAEP-SHA256"}
    path = central_server.data_dir / "escrow-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert requests.get(f"{central_server.url}/api/v1/escrow-key", timeout=10,
                        verify=central_server.verify).status_code == 401


def test_escrowed_so_pin_is_released_to_the_holder_of_a_certificate_on_that_token(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    token, so_pin = token_serial(), SoPin.generate()
    placed, issued, _ = issue(central_client, new_order, token, so_pin)
    number = placed["holder"]["register_number"]

    released = central_client.escrowed_so_pin(token, issued.serial_hex, number)
    assert released == so_pin
    # The ID card's form of the register number is as good (the kiosk reads it from the card).
    ascii_form = register.certificate_serial_number(number, "MN")
    assert central_client.escrowed_so_pin(token, issued.serial_hex, ascii_form) == so_pin
    record = central_client.certificate(issued.serial_hex)
    assert record.token_serial == token
    # Never the PIN, nor its ciphertext, in the central's log; each release is logged.
    assert central_server.wait_for_log(f"SO PIN of token {token} released to kiosk demo-kiosk")
    log = central_server.log_path.read_text(encoding="utf-8")
    assert so_pin.reveal() not in log


def test_so_pin_answer_is_encrypted_to_the_kiosks_key(central_server: CentralServer,
                                                      central_client: CentralClient, new_order: NewOrder) -> None:
    token, so_pin = token_serial(), SoPin.generate()
    placed, issued, _ = issue(central_client, new_order, token, so_pin)
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = mine.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    response = requests.post(f"{central_server.url}/api/v1/tokens/{token}/so-pin", **central_server.tls,
                             json={"certificate_serial": issued.serial_hex,
                                   "register_number": placed["holder"]["register_number"], "public_key": pem},
                             timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token_serial", "ciphertext", "algorithm"}
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert mine.decrypt(base64.b64decode(body["ciphertext"]), oaep).decode() == so_pin.reveal()


def test_so_pin_refusals(central_server: CentralServer, central_client: CentralClient,
                         new_order: NewOrder) -> None:
    token = token_serial()
    placed, issued, _ = issue(central_client, new_order, token, SoPin.generate())
    number = placed["holder"]["register_number"]
    other, other_issued, _ = issue(central_client, new_order, token_serial(), SoPin.generate())
    without_escrow, plain, _ = issue(central_client, new_order, token_serial())

    def refusal(*args: str) -> dict[str, Any]:
        with pytest.raises(CentralRejected) as info:
            central_client.escrowed_so_pin(*args)
        return info.value.data

    assert refusal(token, issued.serial_hex, other["holder"]["register_number"]) == \
        {"reason": "holder_mismatch", "status": 409}
    assert refusal(token, other_issued.serial_hex, other["holder"]["register_number"]) == \
        {"reason": "holder_mismatch", "status": 409}          # that certificate is on another token
    assert refusal(without_escrow_token(central_client, plain), plain.serial_hex,
                   without_escrow["holder"]["register_number"]) == {"reason": "so_pin_not_escrowed", "status": 404}
    assert refusal(token, "ABCDEF0123", number) == {"reason": "certificate_not_found", "status": 404}
    response = requests.post(f"{central_server.url}/api/v1/tokens/{token}/so-pin", **central_server.tls,
                             json={"certificate_serial": issued.serial_hex, "register_number": number,
                                   "public_key": "not a key"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    response = requests.post(f"{central_server.url}/api/v1/tokens/{token}/so-pin", **central_server.tls,
                             json={"certificate_serial": issued.serial_hex, "register_number": number,
                                   "public_key": small}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "key_unsupported"


def without_escrow_token(client: CentralClient, issued: IssuedCertificate) -> str:
    return client.certificate(issued.serial_hex).token_serial


def test_a_garbled_escrow_is_refused_and_nothing_issued(central_server: CentralServer,
                                                        central_client: CentralClient, new_order: NewOrder) -> None:
    order = find(central_client, new_order()["invoice"])
    request = {"csr": csr_pem(make_csr(make_key("p256"))), "idempotency_key": idem(), "token_serial": "TK1",
               "so_pin_escrow": base64.b64encode(b"\x00" * 384).decode()}
    url = f"{central_server.url}/api/v1/orders/{order.id}/enrollments"
    response = requests.post(url, json=request, **central_server.tls, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "so_pin_escrow_invalid"
    response = requests.post(url, json={**request, "escrow_key_id": "00" * 32}, **central_server.tls,
                             timeout=10)
    assert response.status_code == 409 and response.json()["error"] == "escrow_key_changed"
    response = requests.post(url, json={**request, "token_serial": ""}, **central_server.tls, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert find(central_client, order.invoice).status is OrderStatus.PAID


# --- void ----------------------------------------------------------------------------------------------
def test_void_revokes_what_was_issued_and_the_order_can_be_issued_again(
        central_client: CentralClient, new_order: NewOrder) -> None:
    placed, issued, key_id = issue(central_client, new_order)
    assert find(central_client, placed["invoice"]).status is OrderStatus.ISSUED

    assert central_client.void_enrollment(key_id) == issued.serial_hex
    assert central_client.void_enrollment(key_id) == issued.serial_hex          # idempotent
    record = central_client.certificate(issued.serial_hex)
    assert record.status is CertificateStatus.REVOKED
    assert record.revocation_reason == "cessation_of_operation"
    order = find(central_client, placed["invoice"])
    assert order.status is OrderStatus.PAID

    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(make_key("p256")), key_id)
    assert info.value.data == {"reason": "enrollment_void", "status": 409}
    again = central_client.enroll(order.id, make_csr(make_key("p256")), idem())
    assert again.serial_hex != issued.serial_hex
    assert find(central_client, placed["invoice"]).status is OrderStatus.ISSUED


def test_void_of_an_unused_key_blocks_it(central_client: CentralClient, new_order: NewOrder) -> None:
    order = find(central_client, new_order()["invoice"])
    key_id = idem()
    assert central_client.void_enrollment(key_id) is None
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(make_key("p256")), key_id)
    assert info.value.data["reason"] == "enrollment_void"
    assert find(central_client, order.invoice).status is OrderStatus.PAID


def test_a_voided_key_pair_is_not_certified_again(central_client: CentralClient, new_order: NewOrder) -> None:
    placed = new_order()
    order = find(central_client, placed["invoice"])
    key = make_key("p256")
    key_id = idem()
    central_client.enroll(order.id, make_csr(key), key_id)
    central_client.void_enrollment(key_id)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(key), idem())
    assert info.value.data["reason"] == "key_reused"


# --- certificates --------------------------------------------------------------------------------------
def test_holder_certificates_newest_first(central_client: CentralClient, new_order: NewOrder) -> None:
    first, issued_first, key_id = issue(central_client, new_order, token="TKA")
    number = first["holder"]["register_number"]
    central_client.void_enrollment(key_id)
    second = find(central_client, first["invoice"])
    issued_second = central_client.enroll(second.id, make_csr(make_key("rsa2048")), idem(), token_serial="TKB")

    records = central_client.certificates(number)
    assert [r.serial_hex for r in records] == [issued_second.serial_hex, issued_first.serial_hex]
    newest, oldest = records
    assert newest.status is CertificateStatus.GOOD and oldest.status is CertificateStatus.REVOKED
    assert (newest.register_number, newest.holder_name, newest.organisation, newest.invoice) == \
        (register.canonical(number), "Баатар Ариун", "АЗ ХХК", first["invoice"])
    assert (newest.token_serial, oldest.token_serial) == ("TKB", "TKA")
    assert newest.certificate_pem == issued_second.certificate_pem
    assert newest.not_after == issued_second.not_after and newest.not_before == issued_second.not_before
    assert newest.revoked_at is None and newest.revocation_reason is None
    assert oldest.revoked_at is not None
    # By the ID card's ASCII form too.
    assert [r.serial_hex for r in central_client.certificates(register.certificate_serial_number(number, "MN"))] \
        == [issued_second.serial_hex, issued_first.serial_hex]
    assert central_client.certificates("ЖЖ00000001") == []


def test_certificate_lookup_and_refusals(central_server: CentralServer, central_client: CentralClient,
                                         new_order: NewOrder) -> None:
    _, issued, _ = issue(central_client, new_order)
    assert central_client.certificate(issued.serial_hex.lower()).serial_hex == issued.serial_hex
    for serial in ("ABCDEF0123456789", "not-hex"):
        with pytest.raises(CentralRejected) as info:
            central_client.certificate(serial)
        assert info.value.data == {"reason": "certificate_not_found", "status": 404}
    response = requests.get(f"{central_server.url}/api/v1/certificates", **central_server.tls,
                            params={"register": "x"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_query"
    response = requests.get(f"{central_server.url}/api/v1/certificates", **central_server.tls, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_query"


def test_a_pilot_order_certificate_is_valid_validity_days(central_client: CentralClient,
                                                          new_order: NewOrder) -> None:
    _, issued, _ = issue(central_client, new_order, validity_days=1)
    record = central_client.certificate(issued.serial_hex)
    assert record.status is CertificateStatus.GOOD
    assert abs((record.not_after - record.not_before).total_seconds() - 86400) < 120


# --- revocation ----------------------------------------------------------------------------------------
def crl_serials(central_server: CentralServer) -> set[int]:
    chain = central_server.ca_chain_path.read_text(encoding="ascii")
    issuing = x509.load_pem_x509_certificates(chain.encode())[0]
    response = requests.get(f"{central_server.public_url}/ca/crl/{issuing.serial_number:X}/", timeout=10)
    assert response.status_code == 200, response.text[:200]
    crl = x509.load_der_x509_crl(response.content) if not response.content.startswith(b"-----") \
        else x509.load_pem_x509_crl(response.content)
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    return {revoked.serial_number for revoked in crl}


@pytest.mark.parametrize("reason", list(RevocationReason))
def test_revocation_is_in_the_crl_at_once(central_server: CentralServer, central_client: CentralClient,
                                          new_order: NewOrder, reason: RevocationReason) -> None:
    placed, issued, _ = issue(central_client, new_order)
    number = placed["holder"]["register_number"]
    key_id = idem()
    done = central_client.revoke(issued.serial_hex, reason, number, key_id)
    assert (done.certificate_serial, done.reason) == (issued.serial_hex, reason)
    assert int(issued.serial_hex, 16) in crl_serials(central_server)
    record = central_client.certificate(issued.serial_hex)
    assert record.status is CertificateStatus.REVOKED
    assert (record.revoked_at, record.revocation_reason) == (done.revoked_at, reason.value)
    # The same key, and another key for a revoked certificate, give the same answer.
    assert central_client.revoke(issued.serial_hex, reason, number, key_id) == done
    other = RevocationReason.SUPERSEDED if reason is not RevocationReason.SUPERSEDED else \
        RevocationReason.KEY_COMPROMISE
    assert central_client.revoke(issued.serial_hex, other, number, idem()) == done


def test_revocation_refusals(central_server: CentralServer, central_client: CentralClient,
                             new_order: NewOrder) -> None:
    placed, issued, _ = issue(central_client, new_order)
    other, other_issued, _ = issue(central_client, new_order)
    number = placed["holder"]["register_number"]
    with pytest.raises(CentralRejected) as info:
        central_client.revoke(issued.serial_hex, RevocationReason.KEY_COMPROMISE,
                              other["holder"]["register_number"], idem())
    assert info.value.data == {"reason": "holder_mismatch", "status": 409}
    assert central_client.certificate(issued.serial_hex).status is CertificateStatus.GOOD
    with pytest.raises(CentralRejected) as info:
        central_client.revoke("ABCDEF0123", RevocationReason.KEY_COMPROMISE, number, idem())
    assert info.value.data == {"reason": "certificate_not_found", "status": 404}
    key_id = idem()
    central_client.revoke(issued.serial_hex, RevocationReason.SUPERSEDED, number, key_id)
    with pytest.raises(CentralRejected) as info:
        central_client.revoke(other_issued.serial_hex, RevocationReason.SUPERSEDED,
                              other["holder"]["register_number"], key_id)
    assert info.value.data == {"reason": "idempotency_conflict", "status": 409}
    url = f"{central_server.url}/api/v1/certificates/{issued.serial_hex}/revocation"
    for body in ({"reason": "unspecified", "register_number": number, "idempotency_key": idem()},
                 {"reason": "superseded", "register_number": "nobody", "idempotency_key": idem()},
                 {"reason": "superseded", "register_number": number}):
        response = requests.post(url, json=body, **central_server.tls, timeout=10)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request", body


def test_a_token_initialised_again_for_someone_else_releases_only_to_the_new_holder(
        central_client: CentralClient, new_order: NewOrder) -> None:
    """The old holder's certificate was on that token once; the SO PIN escrowed since is not theirs."""
    token = token_serial()
    first_pin, second_pin = SoPin.generate(), SoPin.generate()
    first, first_issued, _ = issue(central_client, new_order, token, first_pin)
    second, second_issued, _ = issue(central_client, new_order, token, second_pin)
    with pytest.raises(CentralRejected) as info:
        central_client.escrowed_so_pin(token, first_issued.serial_hex, first["holder"]["register_number"])
    assert info.value.data == {"reason": "holder_mismatch", "status": 409}
    assert central_client.escrowed_so_pin(token, second_issued.serial_hex,
                                          second["holder"]["register_number"]) == second_pin


def test_voiding_the_first_issuance_after_a_renewal_keeps_the_order_issued(
        central_client: CentralClient, new_order: NewOrder) -> None:
    from tests.integration.test_central_renewal import Holder

    holder = Holder(central_client, new_order)
    renewed = holder.renew()
    assert central_client.void_enrollment(holder.idempotency_key) == holder.serial
    assert find(central_client, holder.order["invoice"]).status is OrderStatus.ISSUED
    assert central_client.certificate(renewed.serial_hex).status is CertificateStatus.GOOD
