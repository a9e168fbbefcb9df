"""OCSP and CRLs on the URLs written into the certificates, checked with third-party tools.

The certificates name ``pki.tamga.mn:PORT`` (``central.runner.DEMO_PUBLIC_HOST``); the tests reach it on
127.0.0.1 with ``curl --resolve``, so the request goes to exactly the URL in the certificate.
``openssl ocsp`` / ``openssl crl`` verify the answers, cryptography parses them, pkilint lints them.
A revocation through the API must show on both within 60 s (it shows at once: measured below).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from central.runner import REPO_ROOT, CentralServer
from sync.central_client import CentralClient
from tests.integration.test_central import NewOrder, find, make_csr, make_key

BIN = Path(sys.executable).parent
VISIBLE_WITHIN_S = 60.0

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None,
                                reason="curl and openssl are needed")


def fetch(url: str, path: Path, request: Path | None = None) -> bytes:
    """GET (or POST an OCSP request to) ``url`` with its host resolved to 127.0.0.1."""
    parts = urlsplit(url)
    port = parts.port or 80
    command = ["curl", "-sf", "--max-time", "10", "--resolve", f"{parts.hostname}:{port}:127.0.0.1", "-o", str(path)]
    if request is not None:
        command += ["-H", "Content-Type: application/ocsp-request", "--data-binary", f"@{request}"]
    subprocess.run([*command, url], check=True, timeout=20)
    return path.read_bytes()


def ocsp_url(cert: x509.Certificate) -> str:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(str(ad.access_location.value) for ad in aia if ad.access_method == AuthorityInformationAccessOID.OCSP)


def crl_url(cert: x509.Certificate) -> str:
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return str(points[0].full_name[0].value)


class Issued:
    def __init__(self, tmp: Path, pem: str, chain: list[str]) -> None:
        self.cert = x509.load_pem_x509_certificate(pem.encode())
        self.issuer = x509.load_pem_x509_certificate(chain[0].encode())
        self.leaf_path, self.issuer_path, self.chain_path = tmp / "leaf.pem", tmp / "issuing.pem", tmp / "chain.pem"
        self.leaf_path.write_text(pem, encoding="ascii")
        self.issuer_path.write_text(chain[0], encoding="ascii")
        self.chain_path.write_text("".join(chain), encoding="ascii")
        self.tmp = tmp


def openssl_ocsp(issued: Issued) -> tuple[str, ocsp.OCSPResponse, Path]:
    """Ask the certificate's OCSP URL with ``openssl ocsp``; return its verified text and the parsed answer."""
    request, response = issued.tmp / "ocsp-req.der", issued.tmp / f"ocsp-{time.monotonic_ns()}.der"
    subprocess.run(["openssl", "ocsp", "-issuer", str(issued.issuer_path), "-cert", str(issued.leaf_path),
                    "-no_nonce", "-reqout", str(request)], check=True, capture_output=True, timeout=20)
    der = fetch(ocsp_url(issued.cert), response, request)
    checked = subprocess.run(
        ["openssl", "ocsp", "-respin", str(response), "-issuer", str(issued.issuer_path),
         "-cert", str(issued.leaf_path), "-CAfile", str(issued.chain_path), "-no_nonce"],
        capture_output=True, text=True, check=False, timeout=20)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Response verify OK" in checked.stderr + checked.stdout
    return checked.stdout, ocsp.load_der_ocsp_response(der), response


def openssl_crl(issued: Issued) -> tuple[str, x509.CertificateRevocationList, Path]:
    path = issued.tmp / f"crl-{time.monotonic_ns()}.der"
    der = fetch(crl_url(issued.cert), path)
    checked = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(path), "-CAfile",
                              str(issued.chain_path), "-noout", "-text"],
                             capture_output=True, text=True, check=False, timeout=20)
    assert checked.returncode == 0 and "verify OK" in checked.stderr + checked.stdout, checked.stderr
    return checked.stdout, x509.load_der_x509_crl(der), path


def revoke(server: CentralServer, serial: str, register_number: str) -> None:
    response = requests.post(f"{server.url}/api/v1/certificates/{serial}/revocation",
                             json={"reason": "key_compromise", "register_number": register_number,
                                   "idempotency_key": f"rev-{uuid.uuid4()}"},
                             **server.tls, timeout=20)
    assert response.status_code in (200, 201), response.text


def test_revocation_shows_in_ocsp_and_crl_within_a_minute(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    placed = new_order()
    order = find(central_client, placed["invoice"])
    enrolled = central_client.enroll(order.id, make_csr(make_key("p256")), f"rev-{uuid.uuid4()}")
    issued = Issued(tmp_path, enrolled.certificate_pem, enrolled.chain_pem)
    serial = issued.cert.serial_number

    text, answer, _ = openssl_ocsp(issued)
    assert ": good" in text
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    # A delegated responder: its own certificate, issued by the issuing CA for OCSP signing only.
    responder = answer.certificates[0]
    assert responder.issuer == issued.issuer.subject and responder.subject != issued.issuer.subject
    assert responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
    responder_path = tmp_path / "responder.pem"
    responder_path.write_bytes(responder.public_bytes(serialization.Encoding.PEM))
    if (BIN / "lint_pkix_cert").exists():        # the responder certificate is issued by the central too
        result = subprocess.run([str(BIN / "lint_pkix_cert"), "lint", "-s", "WARNING", str(responder_path)],
                                capture_output=True, text=True, check=False, timeout=60)
        assert "(ERROR)" not in result.stdout and "(FATAL)" not in result.stdout, result.stdout
    _, crl, _ = openssl_crl(issued)
    assert crl.get_revoked_certificate_by_serial_number(serial) is None
    assert crl.is_signature_valid(issued.issuer.public_key())  # type: ignore[arg-type]

    revoked_at = time.monotonic()
    revoke(central_server, enrolled.serial_hex, placed["holder"]["register_number"])
    ocsp_seen = crl_seen = None
    while (ocsp_seen is None or crl_seen is None) and time.monotonic() - revoked_at < VISIBLE_WITHIN_S:
        if ocsp_seen is None:
            text, answer, ocsp_path = openssl_ocsp(issued)
            if answer.certificate_status is ocsp.OCSPCertStatus.REVOKED:
                ocsp_seen = time.monotonic() - revoked_at
                assert ": revoked" in text and "Reason: keyCompromise" in text
        if crl_seen is None:
            crl_text, crl, crl_path = openssl_crl(issued)
            entry = crl.get_revoked_certificate_by_serial_number(serial)
            if entry is not None:
                crl_seen = time.monotonic() - revoked_at
                assert f"{serial:X}" in crl_text.replace(":", "").upper()
        time.sleep(0.5 if ocsp_seen is None or crl_seen is None else 0)
    assert ocsp_seen is not None and crl_seen is not None, "revocation not visible within 60 s"
    with capsys.disabled():
        print(f"\nrevocation visible: OCSP after {ocsp_seen * 1000:.0f} ms, CRL after {crl_seen * 1000:.0f} ms")

    # pkilint on what a relying party receives (RFC 5280 CRL, RFC 6960 OCSP response).
    if (BIN / "lint_crl").exists():
        for tool, args, path in (("lint_crl", ["-t", "CRL", "-p", "PKIX"], crl_path),
                                 ("lint_ocsp_response", [], ocsp_path)):
            result = subprocess.run([str(BIN / tool), "lint", "-s", "ERROR", *args, str(path)],
                                    capture_output=True, text=True, check=False, timeout=60)
            assert "(ERROR)" not in result.stdout and "(FATAL)" not in result.stdout, result.stdout


def test_the_issuing_ca_is_good_at_the_roots_responder_and_crl(central_server: CentralServer,
                                                               tmp_path: Path) -> None:
    chain = [p + "-----END CERTIFICATE-----\n"
             for p in central_server.ca_chain_path.read_text(encoding="ascii").split("-----END CERTIFICATE-----")
             if p.strip()]
    issued = Issued(tmp_path, chain[0].strip() + "\n", [chain[1].strip() + "\n"])
    issued.chain_path.write_text(chain[1], encoding="ascii")
    text, answer, _ = openssl_ocsp(issued)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD and ": good" in text
    _, crl, _ = openssl_crl(issued)
    assert crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is None
    issuer_url = next(str(ad.access_location.value)
                      for ad in issued.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
                      if ad.access_method == AuthorityInformationAccessOID.CA_ISSUERS)
    der = fetch(issuer_url, tmp_path / "root.der")
    assert x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode() == \
        chain[1].strip() + "\n"


def test_a_revocation_outside_the_api_reaches_the_crl_within_a_minute(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """django-ca revokes without regenerating the CRL (as its admin or ``revoke_cert`` would): the refresher does."""
    placed = new_order()
    order = find(central_client, placed["invoice"])
    enrolled = central_client.enroll(order.id, make_csr(make_key("p256")), f"rev-{uuid.uuid4()}")
    issued = Issued(tmp_path, enrolled.certificate_pem, enrolled.chain_pem)
    script = ("import django; django.setup(); from django_ca.models import Certificate; "
              f"Certificate.objects.get(serial={enrolled.serial_hex!r}).revoke()")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "central.settings",
           "TAMGA_CENTRAL_DATA_DIR": str(central_server.data_dir)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60, cwd=REPO_ROOT)
    revoked_at = time.monotonic()
    _, answer, _ = openssl_ocsp(issued)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED      # OCSP is live
    while time.monotonic() - revoked_at < VISIBLE_WITHIN_S:
        _, crl, _ = openssl_crl(issued)
        if crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is not None:
            break
        time.sleep(1)
    else:
        pytest.fail("the CRL did not list the revocation within 60 s")
    with capsys.disabled():
        print(f"\nrevocation outside the API in the CRL after {time.monotonic() - revoked_at:.1f} s")
