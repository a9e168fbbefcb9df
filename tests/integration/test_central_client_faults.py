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
    "authentication serial mismatch": lambda b: b.update(authentication={**authentication_of(), "serial": "0ABC"}),
    "authentication truncated": lambda b: b.update(authentication={
        **(a := authentication_of()), "certificate": _truncate(a["certificate"])}),
    "authentication without its validity": lambda b: b.update(authentication={
        k: v for k, v in authentication_of().items() if k != "not_after"}),
    "authentication a string": lambda b: b.update(authentication="-----BEGIN CERTIFICATE-----"),
}


def authentication_of() -> dict[str, Any]:
    """An ``authentication`` member as the central sends it (the enrollment's chain is its chain)."""
    body, _ = good_enrollment()
    return {key: body[key] for key in ("certificate", "serial", "not_before", "not_after")}


@pytest.mark.parametrize("garbling", sorted(GARBLINGS))
def test_fault_injected_garbled_enrollment_is_malformed_response(
        faulty_central: tuple[str, type[FaultyCentral]], garbling: str) -> None:
    url, handler = faulty_central
    body, _ = good_enrollment()
    GARBLINGS[garbling](body)
    handler.answer = staticmethod(lambda m, p, b: (201, body))
    with CentralClient(url, None) as client, pytest.raises(CentralUnavailable) as info:
        client.enroll("1", b"csr", "key-1")
    assert info.value.data == {"status": 201, "cause": "malformed_response"}
    assert info.value.recoverable


def test_fault_injected_good_enrollment_gives_the_public_key_digest(
        faulty_central: tuple[str, type[FaultyCentral]]) -> None:
    url, handler = faulty_central
    body, leaf = good_enrollment()
    body["serial"] = body["serial"].lower()          # hex case is not a mismatch
    handler.answer = staticmethod(lambda m, p, b: (201, body))
    with CentralClient(url, None) as client:
        issued = client.enroll("1", b"csr", "key-1")
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert issued.public_key_sha256 == hashlib.sha256(spki).hexdigest()
    assert issued.serial_hex == f"{leaf.serial_number:X}"
    assert issued.not_after == leaf.not_valid_after_utc
    assert len(issued.chain_pem) == 2


def test_fault_injected_authentication_certificate_comes_back_checked_with_the_enrollments_chain(
        faulty_central: tuple[str, type[FaultyCentral]]) -> None:
    url, handler = faulty_central
    body, _ = good_enrollment()
    body["authentication"] = authentication_of()
    handler.answer = staticmethod(lambda m, p, b: (201, body))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    with CentralClient(url, None) as client:
        issued = client.enroll("1", csr, "key-1", authentication_csr_der=csr)
    assert issued.authentication is not None and issued.authentication.authentication is None
    second = x509.load_pem_x509_certificate(body["authentication"]["certificate"].encode())
    assert issued.authentication.serial_hex == f"{second.serial_number:X}" != issued.serial_hex
    assert issued.authentication.chain_pem == issued.chain_pem
    assert issued.authentication.public_key_sha256 == hashlib.sha256(second.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    sent = json.loads(handler.requests[-1][2])
    assert sent["authentication_csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")


def _escrow_key_body() -> tuple[dict[str, Any], Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"public_key": public.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
            "key_id": hashlib.sha256(spki).hexdigest(), "algorithm": "RSA-OAEP-SHA256"}, key


def test_fault_injected_escrow_key_is_fetched_once_and_again_when_the_central_changed_it(
        faulty_central: tuple[str, type[FaultyCentral]]) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric import padding

    from kiosk.pin import SoPin

    url, handler = faulty_central
    keys = [_escrow_key_body(), _escrow_key_body()]
    enrollment, _ = good_enrollment()
    state = {"key": 0, "refused": False}

    def answer(method: str, path: str, body: bytes) -> Answer:
        if path.endswith("/escrow-key"):
            return 200, keys[state["key"]][0]
        sent = json.loads(body)
        if sent["escrow_key_id"] != keys[1][0]["key_id"] and state["key"] == 1:
            return 409, {"error": "escrow_key_changed", "message": "fetch again"}
        private = keys[state["key"]][1]
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        assert private.decrypt(base64.b64decode(sent["so_pin_escrow"]), oaep) == b"0123456789abcdef"
        assert sent["token_serial"] == "TK1"
        return 201, enrollment

    handler.answer = staticmethod(answer)
    with CentralClient(url, None) as client:
        client.enroll("1", b"csr", "k1", token_serial="TK1", so_pin=SoPin("0123456789abcdef"))
        client.enroll("1", b"csr", "k2", token_serial="TK1", so_pin=SoPin("0123456789abcdef"))
        assert [p for _, p, _ in handler.requests].count("/api/v1/escrow-key") == 1
        state["key"] = 1            # the central rotated its escrow key
        client.enroll("1", b"csr", "k3", token_serial="TK1", so_pin=SoPin("0123456789abcdef"))
    assert [p for _, p, _ in handler.requests].count("/api/v1/escrow-key") == 2
    assert all(b"0123456789abcdef" not in body for _, _, body in handler.requests)


@pytest.mark.parametrize("which", ["escrow key", "record", "so pin", "terms", "revocation", "void"])
def test_fault_injected_garbled_answers_to_the_other_calls_are_malformed_response(
        faulty_central: tuple[str, type[FaultyCentral]], which: str) -> None:
    from kiosk.pin import SoPin
    from kiosk.ports import RevocationReason

    url, handler = faulty_central
    enrollment, _ = good_enrollment()
    answers: dict[str, Any] = {
        "escrow key": {"public_key": "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n", "key_id": "x"},
        "record": {"serial": enrollment["serial"], "status": "good", "certificate": enrollment["chain"][0],
                   "not_before": enrollment["not_before"], "not_after": enrollment["not_after"],
                   "register_number": "НЭ80000000", "holder_name": "x", "organisation": "x", "invoice": "1",
                   "token_serial": "", "revoked_at": None, "revocation_reason": None},
        "so pin": {"ciphertext": "bm90IGVuY3J5cHRlZA=="},
        "terms": {"certificate_serial": "AB", "not_after": enrollment["not_after"], "last_request_day": "soon",
                  "organisation": {"name": "x", "register": "1"}, "balance_mnt": 1, "term_years": 1,
                  "fees": {"lines": []}},
        "revocation": {"serial": "AB", "revoked_at": "2026-01-01T00:00:00+00:00", "reason": "unspecified"},
        "void": {"revoked_serial": 17},
    }
    handler.answer = staticmethod(lambda m, p, b: (200, answers[which]))
    calls = {
        "escrow key": lambda c: c.enroll("1", b"csr", "k", token_serial="T", so_pin=SoPin("1234")),
        "record": lambda c: c.certificate("AB"),
        "so pin": lambda c: c.escrowed_so_pin("T", "AB", "НЭ80000000"),
        "terms": lambda c: c.renewal_terms("AB", 1),
        "revocation": lambda c: c.revoke("AB", RevocationReason.SUPERSEDED, "НЭ80000000", "k"),
        "void": lambda c: c.void_enrollment("k"),
    }
    with CentralClient(url, None) as client, pytest.raises(CentralUnavailable) as info:
        calls[which](client)
    assert info.value.data == {"status": 200, "cause": "malformed_response"}
