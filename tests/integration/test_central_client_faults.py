"""Fault-injecting: a tiny loopback HTTP server plays a central that answers garbled enrollments.

The client must check what it is given (every PEM parses, the serial is the certificate's) and turn
anything else into ``CentralUnavailable(cause="malformed_response")`` — never a raw
binascii.Error or ValueError reaching the kiosk core.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.errors import CentralUnavailable
from sync.central_client import CentralClient

Answer = tuple[int, Any]


class FaultyCentral(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``answer(method, path, body)`` → (status, JSON-able or bytes)."""

    answer: Callable[[str, str, bytes], Answer] = staticmethod(lambda m, p, b: (500, {"error": "x"}))
    requests: list[tuple[str, str, bytes]]

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).requests.append((self.command, self.path, body))
        status, payload = type(self).answer(self.command, self.path, body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def faulty_central() -> Iterator[tuple[str, type[FaultyCentral]]]:
    handler = type("Handler", (FaultyCentral,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def self_signed(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    return cert, key


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def good_enrollment() -> tuple[dict[str, Any], x509.Certificate]:
    leaf, _ = self_signed("leaf")
    issuing, _ = self_signed("issuing")
    root, _ = self_signed("root")
    return {"certificate": pem(leaf), "chain": [pem(issuing), pem(root)],
            "serial": f"{leaf.serial_number:X}",
            "not_before": leaf.not_valid_before_utc.isoformat(),
            "not_after": leaf.not_valid_after_utc.isoformat()}, leaf


def _garble_base64(text: str) -> str:
    lines = text.splitlines()
    lines[1] = "!!!" + lines[1][3:]          # not base64 at all: binascii.Error inside cryptography
    return "\n".join(lines) + "\n"


def _truncate(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:2] + lines[-1:]) + "\n"   # valid base64, not a certificate


GARBLINGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "certificate base64": lambda b: b.update(certificate=_garble_base64(b["certificate"])),
    "certificate truncated": lambda b: b.update(certificate=_truncate(b["certificate"])),
    "certificate not pem": lambda b: b.update(certificate="BEGIN CERTIFICATE but nothing else"),
    "certificate a number": lambda b: b.update(certificate=42),
    "chain element base64": lambda b: b["chain"].__setitem__(0, _garble_base64(b["chain"][0])),
    "chain element truncated": lambda b: b["chain"].__setitem__(1, _truncate(b["chain"][1])),
    "chain not a list": lambda b: b.update(chain="-----BEGIN CERTIFICATE-----"),
    "chain empty": lambda b: b.update(chain=[]),
    "serial mismatch": lambda b: b.update(serial="0123ABCD"),
    "serial not hex": lambda b: b.update(serial="zz"),
    "not_after other than the certificate's": lambda b: b.update(
        not_after=(dt.datetime.fromisoformat(b["not_after"]) + dt.timedelta(days=1)).isoformat()),
    "not_before garbage": lambda b: b.update(not_before="yesterday"),
}


@pytest.mark.parametrize("garbling", sorted(GARBLINGS))
def test_fault_injected_garbled_enrollment_is_malformed_response(
        faulty_central: tuple[str, type[FaultyCentral]], garbling: str) -> None:
    url, handler = faulty_central
    body, _ = good_enrollment()
    GARBLINGS[garbling](body)
    handler.answer = staticmethod(lambda m, p, b: (201, body))
    with CentralClient(url, "token") as client, pytest.raises(CentralUnavailable) as info:
        client.enroll("1", b"csr", "key-1")
    assert info.value.data == {"status": 201, "cause": "malformed_response"}
    assert info.value.recoverable


def test_fault_injected_good_enrollment_gives_the_public_key_digest(
        faulty_central: tuple[str, type[FaultyCentral]]) -> None:
    url, handler = faulty_central
    body, leaf = good_enrollment()
    body["serial"] = body["serial"].lower()          # hex case is not a mismatch
    handler.answer = staticmethod(lambda m, p, b: (201, body))
    with CentralClient(url, "token") as client:
        issued = client.enroll("1", b"csr", "key-1")
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert issued.public_key_sha256 == hashlib.sha256(spki).hexdigest()
    assert issued.serial_hex == f"{leaf.serial_number:X}"
    assert issued.not_after == leaf.not_valid_after_utc
    assert len(issued.chain_pem) == 2
