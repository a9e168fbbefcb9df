"""The kiosk's central client against the reference central service (django-ca on loopback).

Read-only tests use the demo orders; every test that issues or changes an order makes its own
(``new_order``), so the tests do not depend on each other's order.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from asn1crypto import core as asn1_core
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from central.runner import CentralServer, CentralStartError
from kiosk import register
from kiosk.errors import CentralRejected, CentralUnavailable, OrderNotFound
from kiosk.order import Order, OrderRefusal, OrderStatus, compute_fees
from kiosk.ports import IssuedCertificate
from sync.central_client import CentralClient

POLICY_CLASS3 = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.3")
QCP_N_QSCD = x509.ObjectIdentifier("0.4.0.194112.1.2")
ARIUN_INVOICE = "147314016754"
UNPAID_INVOICE = "147314048627"
AWAITING_INVOICE = "147314052210"
UNDERPAID_INVOICE = "147314061385"
CANCELLED_INVOICE = "147314090007"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
NewOrder = Callable[..., dict[str, Any]]  # the ``new_order`` fixture (conftest.py)


def make_key(kind: str) -> PrivateKey:
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: PrivateKey) -> bytes:
    """A DER CSR whose subject claims someone else: the central service must ignore it."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Mallory"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, "PNOMN-XX00000000"),
    ])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def spki(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def find(client: CentralClient, invoice: str) -> Order:
    return client.find_order("invoice", invoice)


def idem() -> str:
    return f"test-{uuid.uuid4()}"


# --- lookups --------------------------------------------------------------------------------------
def test_find_order_by_invoice(central_client: CentralClient) -> None:
    order = find(central_client, ARIUN_INVOICE)
    assert order.invoice == ARIUN_INVOICE
    assert order.holder.surname == "Боржигон"
    assert order.holder.full_name == "Баатар Ариун"
    assert order.holder.register_number == "НЭ80000000"
    assert (order.organisation, order.department, order.position) == ("АЗ ХХК", "Захиргаа", "Нягтлан")
    assert (order.term_years, order.etoken, order.confirmed, order.paid_mnt) == (1, True, True, 88_000)
    assert order.fees.total == 88_000


def test_order_json_is_exactly_the_kiosk_shape_plus_fees(central_server: CentralServer) -> None:
    response = requests.get(f"{central_server.url}/api/v1/orders", params={"invoice": ARIUN_INVOICE},
                            **central_server.tls, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    fees = body.pop("fees")
    assert body == Order.from_dict(body).to_dict()
    expected = compute_fees(1, True)
    assert fees["lines"] == [{"item": line.item.value, "quantity": line.quantity, "unit_mnt": line.unit_mnt,
                              "amount_mnt": line.amount_mnt} for line in expected.lines]
    assert (fees["subtotal_mnt"], fees["vat_mnt"], fees["total_mnt"], fees["currency"]) == \
        (80_000, 8_000, 88_000, "MNT")


@pytest.mark.parametrize("typed", ["НЭ80000000", "нэ 80000000", "НЭ-80000000"])
def test_find_order_by_register_number(central_client: CentralClient, typed: str) -> None:
    order = central_client.find_order("register", typed)
    assert order.invoice == ARIUN_INVOICE


def test_register_lookup_returns_the_newest_open_order(central_client: CentralClient,
                                                       new_order: NewOrder) -> None:
    first = new_order()
    number = first["holder"]["register_number"]
    second = new_order(holder={"register_number": number}, paid_mnt=0)
    assert central_client.find_order("register", number).invoice == second["invoice"]


def test_register_lookup_skips_cancelled_orders(central_client: CentralClient) -> None:
    assert find(central_client, CANCELLED_INVOICE).status is OrderStatus.CANCELLED
    with pytest.raises(OrderNotFound):
        central_client.find_order("register", "НЭ88010101")


@pytest.mark.parametrize(("kind", "value"), [("invoice", "999999999999"), ("register", "ЖЖ12345678")])
def test_unknown_order_is_order_not_found(central_client: CentralClient, kind: str, value: str) -> None:
    with pytest.raises(OrderNotFound) as info:
        central_client.find_order(kind, value)
    assert info.value.recoverable


def test_malformed_query_is_rejected(central_client: CentralClient) -> None:
    with pytest.raises(CentralRejected) as info:
        central_client.find_order("invoice", "12345")
    assert info.value.data["reason"] == "invalid_query"


def test_no_client_certificate_is_401_json(central_server: CentralServer) -> None:
    response = requests.get(f"{central_server.url}/api/v1/orders", params={"invoice": ARIUN_INVOICE},
                            timeout=10, verify=central_server.verify)
    assert response.status_code == 401
    assert response.json()["error"] == "kiosk_certificate_required"


@pytest.mark.parametrize(("method", "path", "headers", "status", "code"), [
    ("GET", "/nowhere", {}, 404, "not_found"),
    ("DELETE", "/api/v1/orders", {}, 405, "method_not_allowed"),
    ("GET", "/api/v1/orders", {"Host": "evil.example"}, 400, "bad_request"),
])
def test_errors_are_json_never_html(central_server: CentralServer, method: str, path: str,
                                    headers: dict[str, str], status: int, code: str) -> None:
    response = requests.request(method, central_server.url + path, timeout=10, headers=headers,
                                **central_server.tls)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == code


def test_an_added_kiosk_enrolls_and_works(central_server: CentralServer, tmp_path: Path) -> None:
    identity = central_server.enroll_kiosk("kiosk-ub-01", directory=tmp_path)
    with central_server.client(identity=identity) as client:
        assert find(client, ARIUN_INVOICE).invoice == ARIUN_INVOICE


# --- enrollment -----------------------------------------------------------------------------------
def openssl_verify(central_server: CentralServer, certificate_pem: str, tmp_path: Path, *extra: str) -> str:
    path = tmp_path / "cert.pem"
    path.write_text(certificate_pem, encoding="ascii")
    result = subprocess.run(["openssl", "verify", "-CAfile", str(central_server.ca_chain_path), *extra,
                             str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(("key_kind", "term_years"), [("rsa2048", 1), ("p256", 2)])
def test_enrollment_issues_a_certificate_from_the_order(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder,
        tmp_path: Path, key_kind: str, term_years: int) -> None:
    placed = new_order(term_years=term_years, paid_mnt=compute_fees(term_years, True).total)
    order = find(central_client, placed["invoice"])
    key = make_key(key_kind)

    issued = central_client.enroll(order.id, make_csr(key), idem())

    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == spki(key)
    # The subject comes from the order; nothing of the CSR's subject survives.
    ascii_number = register.certificate_serial_number(order.holder.register_number, "MN")
    attrs = {attr.oid: attr.value for attr in cert.subject}
    assert attrs == {
        NameOID.COUNTRY_NAME: "MN",
        NameOID.ORGANIZATION_NAME: "АЗ ХХК",
        NameOID.ORGANIZATION_IDENTIFIER: "NTRMN-1234567",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "Захиргаа",
        NameOID.TITLE: "Нягтлан",
        NameOID.COMMON_NAME: "Баатар Ариун",
        NameOID.GIVEN_NAME: "Ариун",
        NameOID.SURNAME: "Баатар",
        NameOID.SERIAL_NUMBER: ascii_number,
    }
    assert ascii_number.startswith("PNOMN-NE") and ascii_number.isascii()
    # serialNumber and countryName are PrintableString (X.520), the names UTF8String.
    subject = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)).subject
    types = {atv["type"].native: atv["value"].name for rdn in subject.chosen for atv in rdn}
    assert types["serial_number"] == "printable_string"
    assert types["country_name"] == "printable_string"
    assert types["common_name"] == "utf8_string"

    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical
    # A signing certificate (ETSI EN 319 412-2): nonRepudiation alone, no TLS or e-mail EKU.
    assert key_usage.value.content_commitment and not key_usage.value.digital_signature
    assert not key_usage.value.key_encipherment and not key_usage.value.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [POLICY_CLASS3, QCP_N_QSCD]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(validity - dt.timedelta(days=365 * term_years)) <= dt.timedelta(days=1 + term_years // 2)
    assert issued.not_after == cert.not_valid_after_utc
    assert issued.not_before == cert.not_valid_before_utc
    assert int(issued.serial_hex, 16) == cert.serial_number

    assert len(issued.chain_pem) == 2
    assert "".join(issued.chain_pem) == central_server.ca_chain_path.read_text(encoding="ascii")
    issuing = x509.load_pem_x509_certificate(issued.chain_pem[0].encode())
    root = x509.load_pem_x509_certificate(issued.chain_pem[1].encode())
    assert cert.issuer == issuing.subject and issuing.issuer == root.subject == root.subject
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Tamga Test Root CA"
    issuing_cn = issuing.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert issuing_cn == "Tamga Qualified Issuing CA"
    assert openssl_verify(central_server, issued.certificate_pem, tmp_path).strip().endswith(": OK")
    # Stricter: only the root as trust anchor, the policy required, signing purpose.
    root_file = tmp_path / "root.pem"
    root_file.write_text(issued.chain_pem[1], encoding="ascii")
    issuing_file = tmp_path / "issuing.pem"
    issuing_file.write_text(issued.chain_pem[0], encoding="ascii")
    cert_file = tmp_path / "leaf.pem"
    cert_file.write_text(issued.certificate_pem, encoding="ascii")
    strict = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(root_file), "-untrusted", str(issuing_file),
         "-purpose", "smimesign", "-policy", POLICY_CLASS3.dotted_string, "-explicit_policy", str(cert_file)],
        capture_output=True, text=True, check=False)
    assert strict.returncode == 0, strict.stdout + strict.stderr

    assert find(central_client, placed["invoice"]).status is OrderStatus.ISSUED


def test_same_idempotency_key_returns_the_same_certificate(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    order = find(central_client, new_order()["invoice"])
    key = make_key("p256")
    csr = make_csr(key)
    key_id = idem()
    first = central_client.enroll(order.id, csr, key_id)
    again = central_client.enroll(order.id, csr, key_id)
    # The same key in a freshly signed CSR (ECDSA signatures differ each time) is the same request.
    resigned = central_client.enroll(order.id, make_csr(key), key_id)
    assert first == again == resigned

    pem = x509.load_der_x509_csr(csr).public_bytes(serialization.Encoding.PEM).decode()
    response = requests.post(f"{central_server.url}/api/v1/orders/{order.id}/enrollments",
                             json={"csr": pem, "idempotency_key": key_id},
                             **central_server.tls, timeout=10)
    assert response.status_code == 200
    assert response.json()["certificate"] == first.certificate_pem


def test_new_enrollment_answers_201(central_server: CentralServer, central_client: CentralClient,
                                    new_order: NewOrder) -> None:
    order = find(central_client, new_order()["invoice"])
    pem = x509.load_der_x509_csr(make_csr(make_key("p256"))).public_bytes(serialization.Encoding.PEM).decode()
    response = requests.post(f"{central_server.url}/api/v1/orders/{order.id}/enrollments",
                             json={"csr": pem, "idempotency_key": idem()},
                             **central_server.tls, timeout=10)
    assert response.status_code == 201
    assert set(response.json()) == {"certificate", "chain", "serial", "not_before", "not_after"}


def test_same_idempotency_key_with_another_key_is_a_conflict(
        central_client: CentralClient, new_order: NewOrder) -> None:
    order = find(central_client, new_order()["invoice"])
    key_id = idem()
    central_client.enroll(order.id, make_csr(make_key("p256")), key_id)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(make_key("p256")), key_id)
    assert info.value.data["reason"] == "idempotency_conflict"
    assert info.value.data["status"] == 409


def test_a_key_is_certified_once(central_client: CentralClient, new_order: NewOrder) -> None:
    first = find(central_client, new_order()["invoice"])
    second = find(central_client, new_order()["invoice"])
    key = make_key("rsa2048")
    central_client.enroll(first.id, make_csr(key), idem())
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(second.id, make_csr(key), idem())
    assert info.value.data["reason"] == "key_reused"
    assert find(central_client, second.invoice).status is OrderStatus.PAID


def test_issued_order_refuses_another_key_as_a_conflict_naming_the_kiosk_and_time(
        central_client: CentralClient, new_order: NewOrder) -> None:
    order = find(central_client, new_order()["invoice"])
    before = dt.datetime.now(dt.UTC)
    central_client.enroll(order.id, make_csr(make_key("p256")), idem())
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(make_key("p256")), idem())
    data = info.value.data
    assert (data["reason"], data["status"], data["issued_by"]) == ("enrollment_conflict", 409, "demo-kiosk")
    assert before - dt.timedelta(seconds=1) <= dt.datetime.fromisoformat(data["issued_at"]) <= dt.datetime.now(dt.UTC)


def token_style_csr(key: PrivateKey) -> bytes:
    """A CSR assembled with asn1crypto and signed over its DER, the way devices/token.py builds one."""
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": asn1_x509.Name.build({"common_name": "eToken key"}),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki(key)),
        "attributes": [],
    })
    tbs = info.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        signature, algorithm = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"
    else:
        signature, algorithm = key.sign(tbs, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
    return bytes(asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    }).dump())


@pytest.mark.parametrize("key_kind", ["rsa2048", "p256"])
def test_token_style_csr_is_accepted(central_client: CentralClient, new_order: NewOrder,
                                     key_kind: str) -> None:
    order = find(central_client, new_order()["invoice"])
    key = make_key(key_kind)
    issued = central_client.enroll(order.id, token_style_csr(key), idem())
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == spki(key)


def forge(csr_der: bytes, how: str) -> bytes:
    """Break a CSR with asn1crypto: flip a signature bit, or change the subject after signing."""
    request = asn1_csr.CertificationRequest.load(csr_der)
    if how == "signature":
        signature = bytearray(request["signature"].native)
        signature[-1] ^= 0x01
        request["signature"] = asn1_core.OctetBitString(bytes(signature))
    else:
        other = asn1_x509.Name.build({"common_name": "Someone Else"})
        request["certification_request_info"]["subject"] = other
    return request.dump(force=True)


@pytest.mark.parametrize("key_kind", ["rsa2048", "p256"])
@pytest.mark.parametrize("how", ["signature", "subject"])
def test_csr_with_a_bad_signature_is_refused(central_client: CentralClient, new_order: NewOrder,
                                             key_kind: str, how: str) -> None:
    order = find(central_client, new_order()["invoice"])
    key = make_key(key_kind)
    forged = forge(make_csr(key), how)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, forged, idem())
    assert info.value.data == {"reason": "csr_signature_invalid", "status": 400}
    # Nothing was issued: the same key in a proper CSR still gets its certificate.
    central_client.enroll(order.id, make_csr(key), idem())


def test_garbage_csr_is_refused(central_client: CentralClient) -> None:
    order = find(central_client, ARIUN_INVOICE)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, b"\x30\x03\x02\x01\x00", idem())
    assert info.value.data["reason"] == "csr_invalid"


def test_small_rsa_key_is_refused(central_client: CentralClient) -> None:
    order = find(central_client, ARIUN_INVOICE)
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(key), idem())
    assert info.value.data["reason"] == "key_unsupported"


@pytest.mark.parametrize(("invoice", "refusal", "extra"), [
    (UNPAID_INVOICE, "unpaid", {"total": 88_000}),
    (UNDERPAID_INVOICE, "underpaid", {"total": 88_000, "paid": 44_000, "due": 44_000}),
    (AWAITING_INVOICE, "not_confirmed", {}),
    (CANCELLED_INVOICE, "cancelled", {}),
])
def test_order_that_may_not_proceed_is_refused(central_client: CentralClient, invoice: str, refusal: str,
                                               extra: dict[str, Any]) -> None:
    order = find(central_client, invoice)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, make_csr(make_key("p256")), idem())
    assert info.value.data == {"reason": "order_not_payable", "status": 409, "refusal": refusal, **extra}
    assert not info.value.recoverable


def test_unpaid_order_is_issued_once_paid_and_confirmed(central_server: CentralServer,
                                                        central_client: CentralClient,
                                                        new_order: NewOrder) -> None:
    invoice = new_order(confirmed=False, paid_mnt=0)["invoice"]
    order = find(central_client, invoice)
    assert order.status is OrderStatus.AWAITING_CONFIRMATION
    csr = make_csr(make_key("p256"))
    key_id = idem()
    with pytest.raises(CentralRejected):
        central_client.enroll(order.id, csr, key_id)
    central_server.manage("confirm", invoice)
    assert find(central_client, invoice).status is OrderStatus.NEW
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, csr, key_id)
    assert info.value.data["refusal"] == "unpaid"
    central_server.manage("mark-paid", invoice)
    assert find(central_client, invoice).status is OrderStatus.PAID
    assert central_client.enroll(order.id, csr, key_id).certificate_pem.startswith("-----BEGIN CERTIFICATE")


def test_unknown_order_on_enroll_is_rejected(central_client: CentralClient) -> None:
    with pytest.raises(CentralRejected) as info:
        central_client.enroll("999999999", make_csr(make_key("p256")), idem())
    assert info.value.data == {"reason": "order_not_found", "status": 404}


def test_calls_are_counted(central_server: CentralServer) -> None:
    with CentralClient(central_server.url, central_server.identity) as client:
        find(client, ARIUN_INVOICE)
        find(client, ARIUN_INVOICE)
        assert client.call_count == 2
        assert 0 < client.call_seconds < 10


# --- a central that fails -------------------------------------------------------------------------
class _Canned(http.server.BaseHTTPRequestHandler):
    status = 500
    body = b'{"error": "internal_error"}'
    content_type = "application/json"
    delay_s = 0.0
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        time.sleep(self.delay_s)
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def canned_central() -> Iterator[type[_Canned]]:
    """A tiny HTTP server on 127.0.0.1 answering whatever the test sets on the handler class."""
    handler = type("Handler", (_Canned,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _call(client: CentralClient, which: str) -> object:
    if which == "find":
        return client.find_order("invoice", ARIUN_INVOICE)
    return client.enroll("1", make_csr(make_key("p256")), idem())


@pytest.mark.parametrize("which", ["find", "enroll"])
@pytest.mark.parametrize(("status", "body", "content_type", "cause"), [
    (500, b'{"error": "internal_error"}', "application/json", "internal_error"),
    (502, b"<html>Bad Gateway</html>", "text/html", "http_error"),
    (503, b"", "text/plain", "http_error"),
    (200, b"<html>not json</html>", "text/html", "malformed_response"),
    (200, b'{"id": 1}', "application/json", "malformed_response"),
    (404, b"<html>Not Found</html>", "text/html", "malformed_response"),
])
def test_failing_central_is_unavailable(canned_central: type[_Canned], which: str, status: int, body: bytes,
                                        content_type: str, cause: str) -> None:
    canned_central.status, canned_central.body, canned_central.content_type = status, body, content_type
    with CentralClient(canned_central.url, None) as client:  # type: ignore[attr-defined]
        with pytest.raises(CentralUnavailable) as info:
            _call(client, which)
        assert info.value.data == {"status": status, "cause": cause}
        assert info.value.recoverable
        assert client.call_count == 1  # an answer, even a bad one, is not retried


def test_timeout_is_retried_once_then_unavailable(canned_central: type[_Canned]) -> None:
    canned_central.delay_s = 1.0
    with CentralClient(canned_central.url, None, timeout_s=0.2) as client:  # type: ignore[attr-defined]
        started = time.perf_counter()
        with pytest.raises(CentralUnavailable) as info:
            client.find_order("invoice", ARIUN_INVOICE)
        assert time.perf_counter() - started < 1.0
    assert info.value.data == {"status": None, "cause": "timeout"}
    assert client.call_count == 2


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("which", ["find", "enroll"])
def test_central_not_running_is_unavailable(which: str) -> None:
    with CentralClient(f"https://127.0.0.1:{_closed_port()}", None, timeout_s=2) as client:
        with pytest.raises(CentralUnavailable) as info:
            _call(client, which)
        assert info.value.data == {"status": None, "cause": "connection"}
        assert client.call_count == 2  # retried once: both calls are idempotent


def test_enroll_retry_after_a_lost_answer_gets_the_same_certificate(
        central_client: CentralClient, new_order: NewOrder) -> None:
    """The kiosk may resend an enrollment whose answer it never saw; the CA does not issue twice."""
    order = find(central_client, new_order()["invoice"])
    csr, key_id = make_csr(make_key("p256")), idem()
    first: IssuedCertificate = central_client.enroll(order.id, csr, key_id)
    assert central_client.enroll(order.id, csr, key_id) == first


def test_server_stops_cleanly(tmp_path: Path) -> None:
    server = CentralServer(tmp_path / "central", demo_data=False)
    with server:
        pid = server.pid
        assert pid is not None
        assert server.ca_chain_path.read_text(encoding="ascii").count("BEGIN CERTIFICATE") == 2
        health = requests.get(f"{server.url}/api/v1/health", timeout=10, verify=server.verify)
        assert health.json() == {"status": "ok"}
    assert server.pid is None
    assert server.returncode == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/api/v1/health", timeout=2, verify=server.verify)
    # A second start reuses the CA hierarchy.
    chain = server.ca_chain_path.read_text(encoding="ascii")
    with CentralServer(tmp_path / "central", demo_data=False) as again:
        assert again.ca_chain_path.read_text(encoding="ascii") == chain


def test_start_failure_reports_the_server_log(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = CentralServer(tmp_path / "central", port=busy.getsockname()[1], demo_data=False)
        with pytest.raises(CentralStartError, match=r"(?s)exited with .*Address already in use"):
            server.start()
    assert server.pid is None


def test_a_real_server_error_is_a_json_500(tmp_path: Path) -> None:
    """The issuing CA's key goes missing: the service answers 500 JSON, the client CentralUnavailable."""
    with CentralServer(tmp_path / "central") as server, CentralClient(server.url, server.identity) as client:
        order = find(client, ARIUN_INVOICE)
        keys = server.data_dir / "ca-keys"
        keys.rename(tmp_path / "ca-keys-elsewhere")
        with pytest.raises(CentralUnavailable) as info:
            client.enroll(order.id, make_csr(make_key("p256")), idem())
        assert info.value.data == {"status": 500, "cause": "internal_error"}
        assert server.wait_for_log("Traceback")
        (tmp_path / "ca-keys-elsewhere").rename(keys)
        # Nothing was half-issued: the order can still be enrolled.
        assert find(client, ARIUN_INVOICE).status is OrderStatus.PAID
        client.enroll(order.id, make_csr(make_key("p256")), idem())


def test_order_json_round_trips_through_the_cli(central_server: CentralServer) -> None:
    body = json.loads(central_server.manage("show-order", ARIUN_INVOICE))
    assert body["invoice"] == ARIUN_INVOICE
    assert body["fees"]["total_mnt"] == 88_000


# --- the published contract -----------------------------------------------------------------------
def test_openapi_describes_what_the_service_answers(central_server: CentralServer,
                                                    central_client: CentralClient,
                                                    new_order: NewOrder) -> None:
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "central" / "openapi.yaml").read_text())
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) >= {"/api/v1/health", "/api/v1/orders", "/api/v1/orders/{order_id}/enrollments"}
    schemas = spec["components"]["schemas"]

    def keys(name: str) -> set[str]:
        assert set(schemas[name]["required"]) <= set(schemas[name]["properties"])
        return set(schemas[name]["properties"])

    order = requests.get(f"{central_server.url}/api/v1/orders", params={"invoice": ARIUN_INVOICE},
                         timeout=10, **central_server.tls).json()
    assert set(order) == keys("Order") == set(schemas["Order"]["required"])
    assert set(order["holder"]) == keys("Holder")
    assert set(order["organisation"]) == keys("Organisation")
    assert set(order["fees"]) == keys("Fees")
    assert set(order["fees"]["lines"][0]) == keys("FeeLine")
    assert order["status"] in schemas["Order"]["properties"]["status"]["enum"]

    placed = find(central_client, new_order()["invoice"])
    pem = x509.load_der_x509_csr(make_csr(make_key("p256"))).public_bytes(serialization.Encoding.PEM).decode()
    request = {"csr": pem, "idempotency_key": idem()}
    optional = {"token_serial", "so_pin_escrow", "escrow_key_id", "authentication_csr", "order_digest"}
    assert set(request) | optional == keys("EnrollmentRequest")
    enrollment = requests.post(f"{central_server.url}/api/v1/orders/{placed.id}/enrollments", json=request,
                               timeout=10, **central_server.tls).json()
    assert set(enrollment) | {"authentication"} == keys("Enrollment")    # a Mongolian order: one certificate

    codes = set(schemas["Error"]["properties"]["error"]["enum"])
    assert codes >= {"kiosk_certificate_required", "kiosk_certificate_refused", "invalid_query", "order_not_found",
                     "csr_signature_invalid", "order_not_payable", "key_reused", "idempotency_conflict",
                     "internal_error"}
    assert set(schemas["Error"]["properties"]["reason"]["enum"]) == {r.value for r in OrderRefusal}
