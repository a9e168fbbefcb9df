"""Every certificate the central issues, per country profile and key algorithm, and its CA certificates,
linted by pkilint 0.13 (RFC 5280 and ETSI QCP-n-qscd): no ERROR or FATAL finding.

Certificates are issued through the API for CSRs made by cryptography.  WARNINGs are collected and
must be the ones ``central/README.md`` lists and justifies.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc3739

from central.runner import CentralServer
from kiosk import register
from kiosk.order import compute_fees
from sync.central_client import CentralClient
from tests.integration.test_central import NewOrder, find

FINDING = re.compile(r"^\s+(\S+) \((FATAL|ERROR|WARNING|NOTICE|INFO|DEBUG)\)", re.MULTILINE)
BIN = Path(sys.executable).parent
ETSI_TYPE = "QCP-N-QSCD-NON-EIDAS-FINAL-CERTIFICATE"
QC_STATEMENTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")
QCP_N_QSCD = x509.ObjectIdentifier("0.4.0.194112.1.2")
# WARNINGs the README justifies (finding code → why it is accepted); anything else fails.
ACCEPTED_WARNINGS: set[str] = set()

pytestmark = pytest.mark.skipif(shutil.which("lint_pkix_cert", path=str(BIN)) is None,
                                reason="pkilint is not installed (pip install -e '.[dev]')")


def kazakh_iin() -> str:
    while True:
        number = f"8601013{secrets.randbelow(10**4):04d}"
        for check in range(10):
            if register.country_of(number + str(check)) == "KZ":
                return number + str(check)


HOLDERS: dict[str, Any] = {
    "MN": lambda: f"НЭ{secrets.randbelow(10**8):08d}",
    "KZ": kazakh_iin,
    "KG": lambda: f"2{secrets.randbelow(10**13):013d}",
}


def make_csr(algorithm: str) -> bytes:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "rsa2048"
           else ec.generate_private_key(ec.SECP256R1()))
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def lint(tool: str, path: Path, *args: str) -> list[tuple[str, str]]:
    """(severity, finding code) of every WARNING or worse that ``tool lint`` reports for ``path``."""
    result = subprocess.run([str(BIN / tool), "lint", "-s", "WARNING", *args, str(path)],
                            capture_output=True, text=True, check=False, timeout=60)
    findings = [(m.group(2), m.group(1)) for m in FINDING.finditer(result.stdout)]
    assert result.returncode in (0, 1, 2), result.stdout + result.stderr
    return findings


def issue(client: CentralClient, new_order: NewOrder, country: str, algorithm: str) -> tuple[Any, x509.Certificate]:
    placed = new_order(holder={"register_number": HOLDERS[country]()})
    order = find(client, placed["invoice"])
    authentication = make_csr(algorithm) if order.authentication_certificate else None    # Kazakhstan
    issued = client.enroll(order.id, make_csr(algorithm), f"lint-{uuid.uuid4()}", authentication_csr_der=authentication)
    return issued, x509.load_pem_x509_certificate(issued.certificate_pem.encode())


def check_findings(findings: list[tuple[str, str]], what: str) -> None:
    errors = [f for f in findings if f[0] in ("ERROR", "FATAL")]
    assert not errors, f"{what}: {errors}"
    unexplained = [code for severity, code in findings if severity == "WARNING" and code not in ACCEPTED_WARNINGS]
    assert not unexplained, f"{what}: WARNINGs not justified in central/README.md: {unexplained}"


@pytest.mark.parametrize("algorithm", ["rsa2048", "p256"])
@pytest.mark.parametrize("country", ["MN", "KZ", "KG"])
def test_issued_certificate_passes_pkilint(central_client: CentralClient, new_order: NewOrder,
                                           tmp_path: Path, country: str, algorithm: str) -> None:
    issued, _ = issue(central_client, new_order, country, algorithm)
    path = tmp_path / f"{country}-{algorithm}.pem"
    path.write_text(issued.certificate_pem, encoding="ascii")
    check_findings(lint("lint_pkix_cert", path), f"{country} {algorithm} RFC 5280")
    check_findings(lint("lint_etsi_cert", path, "-t", ETSI_TYPE), f"{country} {algorithm} ETSI")


@pytest.mark.parametrize("country", ["MN", "KZ", "KG"])
def test_profile_subject_policies_and_qc_statements(central_client: CentralClient, new_order: NewOrder,
                                                    country: str) -> None:
    _, cert = issue(central_client, new_order, country, "p256")
    subject = {attr.oid: attr.value for attr in cert.subject}
    serial_number = subject[NameOID.SERIAL_NUMBER]
    expected_prefix = {"MN": "PNOMN-", "KZ": "IIN", "KG": "PNOKG-"}[country]
    assert serial_number.startswith(expected_prefix) and serial_number.isascii()
    assert subject[NameOID.COUNTRY_NAME] == country
    assert subject[NameOID.ORGANIZATION_IDENTIFIER] == f"NTR{country}-1234567"
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.content_commitment and not key_usage.value.digital_signature
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    policies = [p.policy_identifier for p in cert.extensions.get_extension_for_class(x509.CertificatePolicies).value]
    assert QCP_N_QSCD in policies and len(policies) == 2

    raw = cert.extensions.get_extension_for_oid(QC_STATEMENTS).value
    assert isinstance(raw, x509.UnrecognizedExtension)
    statements, rest = decoder.decode(raw.value, asn1Spec=rfc3739.QCStatements())
    assert rest == b""
    ids = [str(s["statementId"]) for s in statements]
    assert ids == ["1.3.6.1.5.5.7.11.2", "0.4.0.1862.1.1", "0.4.0.1862.1.4", "0.4.0.1862.1.6", "0.4.0.1862.1.5",
                   "0.4.0.1862.1.7"]
    assert b"https://" in raw.value and b"\x13\x02en" in raw.value     # QcPDS: an https URL in English

    crl = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert str(crl[0].full_name[0].value).startswith("http://")
    assert {ad.access_method._name for ad in aia} == {"OCSP", "caIssuers"}


def test_validity_follows_the_order_term(central_client: CentralClient, new_order: NewOrder) -> None:
    for term in (1, 2):
        placed = new_order(term_years=term, paid_mnt=compute_fees(term, True).total)
        order = find(central_client, placed["invoice"])
        issued = central_client.enroll(order.id, make_csr("p256"), f"lint-{uuid.uuid4()}")
        days = (issued.not_after - issued.not_before).days
        assert 365 * term - 1 <= days <= 366 * term + 1


def test_ca_certificates_pass_pkilint(central_server: CentralServer, tmp_path: Path) -> None:
    pems = central_server.ca_chain_path.read_text(encoding="ascii").split("-----END CERTIFICATE-----")
    chain = [p.strip() + "\n-----END CERTIFICATE-----\n" for p in pems if p.strip()]
    assert len(chain) == 2
    issuing = x509.load_pem_x509_certificate(chain[0].encode())
    assert issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert {ad.access_method._name
            for ad in issuing.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value} \
        == {"OCSP", "caIssuers"}
    for name, pem in zip(("issuing", "root"), chain, strict=True):
        path = tmp_path / f"{name}.pem"
        path.write_text(pem, encoding="ascii")
        check_findings(lint("lint_pkix_cert", path), f"{name} CA")
