"""Hostile requests get a JSON refusal with a reason, never a 500 or a server's plain-text page.

Each case goes over real HTTPS to the running central (cheroot + Django), as a kiosk or an attacker
would send it.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509

from central.runner import CentralServer
from kiosk.errors import CentralRejected
from sync.central_client import CentralClient

ARIUN_INVOICE = "147314016754"
SECP112R1 = "1.3.132.0.6"
SM2 = "1.2.156.10197.1.301"


def csr_on_curve(curve_oid: str, point_len: int = 29) -> bytes:
    """A DER CSR whose EC key claims a named curve cryptography does not support (signature garbage)."""
    public_key = asn1_keys.PublicKeyInfo({
        "algorithm": {"algorithm": "ec",
                      "parameters": asn1_keys.ECDomainParameters(name="named", value=curve_oid)},
        "public_key": b"\x04" + b"\x01" * (point_len - 1),
    })
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1", "subject": asn1_x509.Name.build({"common_name": "x"}),
        "subject_pk_info": public_key, "attributes": []})
    return bytes(asn1_csr.CertificationRequest({
        "certification_request_info": info, "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": b"\x30\x06\x02\x01\x01\x02\x01\x01"}).dump())


def assert_json_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("curve", [SECP112R1, SM2])
def test_csr_on_an_unsupported_curve_is_key_unsupported(central_server: CentralServer,
                                                         central_client: CentralClient, curve: str) -> None:
    order = central_client.find_order("invoice", ARIUN_INVOICE)
    with pytest.raises(CentralRejected) as info:
        central_client.enroll(order.id, csr_on_curve(curve), f"test-{uuid.uuid4()}")
    assert info.value.data == {"reason": "key_unsupported", "status": 400}


def test_deeply_nested_json_is_invalid_request(central_server: CentralServer) -> None:
    order_id = "1"
    response = requests.post(f"{central_server.url}/api/v1/orders/{order_id}/enrollments",
                             data="[" * 1000, headers={"Content-Type": "application/json"}, timeout=10,
                             **central_server.tls)
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize("size", [300 * 1024, 3 * 1024 * 1024, 24 * 1024 * 1024])
def test_a_too_large_body_is_a_json_413(central_server: CentralServer, size: int) -> None:
    """Above Django's limit Django refuses it; far above, cheroot refuses it — both as JSON.

    The client is still sending when the refusal is written; the server reads the rest before it
    closes (24 MiB is more than loopback's socket buffers hold), or the client gets a reset, not the 413.
    """
    response = requests.post(f"{central_server.url}/api/v1/orders/1/enrollments",
                             data=b'{"csr": "' + b"A" * size + b'"}',
                             headers={"Content-Type": "application/json"}, timeout=30, **central_server.tls)
    assert_json_error(response, 413, "request_too_large")


def _raw(url: str, request: bytes, server: CentralServer) -> bytes:
    """Send ``request`` as it is; over HTTPS with the demo kiosk's certificate."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as plain:
        sock = plain
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=server.verify)
            context.load_cert_chain(str(server.identity.certificate), str(server.identity.key))
            sock = context.wrap_socket(plain, server_hostname=parts.hostname)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(("listener", "request_bytes", "status", "code"), [
    ("url", b"POST /api/v1/orders/1/enrollments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n0\r\n\r\n", b"400", b"bad_request"),
    ("public_url", b"NOT A REQUEST LINE\r\n\r\n", b"400", b"bad_request"),
    ("url", b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
     b"413", b"request_too_large"),
])
def test_a_malformed_http_request_is_answered_as_json(central_server: CentralServer, listener: str,
                                                      request_bytes: bytes, status: bytes, code: bytes) -> None:
    """cheroot's own refusals (a broken chunked body, a bad request line, oversize headers) are JSON too."""
    answer = _raw(getattr(central_server, listener), request_bytes, central_server)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert b'"error": "' + code + b'"' in body
