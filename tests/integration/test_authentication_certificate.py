"""A separate authentication certificate where the holder's profile wants one (Kazakhstan, as NCA RK).

The kiosk sends a second CSR, for a second key on the same token, with the enrollment; the central
issues both in one request under one idempotency key.  The authentication certificate is linted by
pkilint 0.13 (RFC 5280 and ETSI NCP natural person) like the signing one; Mongolia stays single.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc3739

from central.runner import CentralServer
from devices.certificates import X509Reader
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.errors import CentralRejected
from kiosk.i18n import catalogue
from kiosk.order import compute_fees
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm
from kiosk.token_certificates import current_certificate, pem_to_der
from kiosk.token_steps import AUTHENTICATION_LABEL, authentication_key_id
from sync.central_client import CentralClient
from tests.integration.test_central import NewOrder, find, make_csr, make_key
from tests.integration.test_central_renewal import sign
from tests.integration.test_qualified_profiles import (
    ETSI_TYPE,
    HOLDERS,
    QC_STATEMENTS,
    QCP_N_QSCD,
    check_findings,
    lint,
)
from tests.integration.test_revocation_services import Issued, openssl_crl, openssl_ocsp, revoke
from tests.integration.test_verify_page_browser import Browser, browser  # noqa: F401 (the fixture)

NCP_PLUS = x509.ObjectIdentifier("0.4.0.2042.1.2")
KZ_AUTHENTICATION_POLICY = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.4.2")
ETSI_AUTHENTICATION_TYPE = "NCP-NATURAL-PERSON-CERTIFICATE"
USER_PIN = Pin("482916")


def pem_csr(kind: str = "p256") -> str:
    der = make_csr(make_key(kind))
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM).decode()


def post_enrollment(server: CentralServer, order_id: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{server.url}/api/v1/orders/{order_id}/enrollments", json=body, **server.tls, timeout=30)


def order_of(server: CentralServer, client: CentralClient, new_order: NewOrder, country: str) -> tuple[dict[str, Any],
                                                                                                     dict[str, Any]]:
    """A fresh paid order of a ``country`` holder and the order body the kiosk gets."""
    placed = new_order(holder={"register_number": HOLDERS[country]()})
    order_id = find(client, placed["invoice"]).id
    body = requests.get(f"{server.url}/api/v1/orders", params={"invoice": placed["invoice"]}, **server.tls,
                        timeout=10).json()
    assert body["id"] == order_id
    return placed, body


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_a_kazakh_order_gets_an_authentication_certificate_beside_the_signing_one(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, tmp_path: Path) -> None:
    placed, order = order_of(central_server, central_client, new_order, "KZ")
    assert order["authentication_certificate"] is True
    body = {"csr": pem_csr(), "authentication_csr": pem_csr("rsa2048"), "idempotency_key": f"auth-{uuid.uuid4()}"}
    response = post_enrollment(central_server, order["id"], body)
    assert response.status_code == 201, response.text
    answer = response.json()
    signing, authentication = load(answer["certificate"]), load(answer["authentication"]["certificate"])
    assert answer["authentication"]["serial"] == f"{authentication.serial_number:X}" != answer["serial"]
    assert authentication.subject == signing.subject and authentication.issuer == signing.issuer
    assert authentication.not_valid_after_utc == signing.not_valid_after_utc

    # Signing: nonRepudiation alone, QCP-n-qscd (as every profile); authentication: digitalSignature, clientAuth.
    assert signing.extensions.get_extension_for_class(x509.KeyUsage).value.content_commitment
    key_usage = authentication.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature and not key_usage.value.content_commitment
    assert list(authentication.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    policies = [p.policy_identifier for p in
                authentication.extensions.get_extension_for_class(x509.CertificatePolicies).value]
    assert policies == [KZ_AUTHENTICATION_POLICY, NCP_PLUS] and QCP_N_QSCD not in policies
    raw = authentication.extensions.get_extension_for_oid(QC_STATEMENTS).value
    statements, _ = decoder.decode(raw.value, asn1Spec=rfc3739.QCStatements())   # type: ignore[attr-defined]
    assert [str(s["statementId"]) for s in statements] == ["1.3.6.1.5.5.7.11.2"]   # no QcCompliance, no esign
    assert {ad.access_method._name for ad in authentication.extensions.get_extension_for_class(
        x509.AuthorityInformationAccess).value} == {"OCSP", "caIssuers"}

    for name, pem, etsi_type in (("signing", answer["certificate"], ETSI_TYPE),
                                 ("authentication", answer["authentication"]["certificate"], ETSI_AUTHENTICATION_TYPE)):
        path = tmp_path / f"{name}.pem"
        path.write_text(pem, encoding="ascii")
        check_findings(lint("lint_pkix_cert", path), f"KZ {name} RFC 5280")
        check_findings(lint("lint_etsi_cert", path, "-t", etsi_type), f"KZ {name} ETSI {etsi_type}")

    again = post_enrollment(central_server, order["id"], body)        # a retry: the same two certificates
    assert again.status_code == 200 and again.json() == answer
    other_key = post_enrollment(central_server, order["id"], {**body, "authentication_csr": pem_csr()})
    assert other_key.status_code == 409 and other_key.json()["error"] == "idempotency_conflict"
    reused = post_enrollment(central_server, order["id"], {**body, "idempotency_key": f"a-{uuid.uuid4()}"})
    assert reused.status_code == 200 and reused.json() == answer     # the same keys again: the same certificates

    # Revoking the signing certificate (a lost token) revokes the authentication certificate with it.
    revoke(central_server, answer["serial"], placed["holder"]["register_number"])
    issued = Issued(tmp_path, answer["authentication"]["certificate"], answer["chain"])
    text, _, _ = openssl_ocsp(issued)
    assert ": revoked" in text
    _, crl, _ = openssl_crl(issued)
    assert crl.get_revoked_certificate_by_serial_number(authentication.serial_number) is not None


def test_the_authentication_key_is_certified_once_never_as_a_signing_key_and_never_left_out(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    _, first = order_of(central_server, central_client, new_order, "KZ")
    authentication_csr = pem_csr()
    one = post_enrollment(central_server, first["id"], {"csr": pem_csr(), "authentication_csr": authentication_csr,
                                                        "idempotency_key": f"auth-{uuid.uuid4()}"})
    assert one.status_code == 201, one.text
    _, second = order_of(central_server, central_client, new_order, "KZ")
    for body in ({"csr": authentication_csr, "authentication_csr": pem_csr()},
                 {"csr": pem_csr(), "authentication_csr": authentication_csr}):
        reused = post_enrollment(central_server, second["id"], {**body, "idempotency_key": f"auth-{uuid.uuid4()}"})
        assert reused.status_code == 409 and reused.json()["error"] == "key_reused", reused.text
    same = pem_csr()
    twice = post_enrollment(central_server, second["id"], {"csr": same, "authentication_csr": same,
                                                           "idempotency_key": f"auth-{uuid.uuid4()}"})
    assert twice.status_code == 400 and twice.json()["field"] == "authentication_csr"
    alone = post_enrollment(central_server, second["id"], {"csr": pem_csr(), "idempotency_key": f"a-{uuid.uuid4()}"})
    assert alone.status_code == 400 and alone.json()["field"] == "authentication_csr", alone.text


@pytest.mark.parametrize("country", ["MN", "KG"])
def test_a_single_certificate_profile_refuses_an_authentication_csr(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, country: str) -> None:
    _, order = order_of(central_server, central_client, new_order, country)
    assert order["authentication_certificate"] is False
    body = {"csr": pem_csr(), "authentication_csr": pem_csr(), "idempotency_key": f"auth-{uuid.uuid4()}"}
    refused = post_enrollment(central_server, order["id"], body)
    assert refused.status_code == 400 and refused.json()["field"] == "authentication_csr", refused.text
    single = post_enrollment(central_server, order["id"], {"csr": body["csr"], "idempotency_key": f"a-{uuid.uuid4()}"})
    assert single.status_code == 201 and "authentication" not in single.json()


def test_both_certificates_are_written_to_a_softhsm_token_beside_their_keys(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kiosk's adapters on the real stack: keys on SoftHSM2, the kiosk's client, the token read back."""
    monkeypatch.setenv("SOFTHSM2_CONF", str(tmp_path / "softhsm" / "softhsm2.conf"))
    softhsm = SoftHsmStore(tmp_path / "softhsm")
    blank = softhsm.add_blank_token()
    token = Pkcs11Token(softhsm.module, rescan=True)
    token.reload()
    try:
        serial = token.initialise(blank, SoPin(FACTORY_SO_PIN), SoPin("73195502"), "TAMGA IIN", USER_PIN).serial
        signing_id = bytes.fromhex("0a" * 16)
        authentication_id = authentication_key_id(signing_id)
        with token.session(serial, USER_PIN) as session:
            session.generate_key_pair(signing_id, "TAMGA IIN", KeyAlgorithm.P256)
            session.generate_key_pair(authentication_id, AUTHENTICATION_LABEL.format(label="TAMGA IIN"),
                                      KeyAlgorithm.P256)
            csrs = session.sign_csr(signing_id, "IIN"), session.sign_csr(authentication_id, "IIN")
        placed, _ = order_of(central_server, central_client, new_order, "KZ")
        issued = central_client.enroll(find(central_client, placed["invoice"]).id, csrs[0], f"auth-{uuid.uuid4()}",
                                       token_serial=serial, authentication_csr_der=csrs[1])
        assert issued.authentication is not None and issued.authentication.chain_pem == issued.chain_pem
        chain = [pem_to_der(p) for p in issued.chain_pem]
        with token.session(serial, USER_PIN) as session:
            session.install_certificate(signing_id, "TAMGA IIN", pem_to_der(issued.certificate_pem), chain)
            session.install_certificate(authentication_id, AUTHENTICATION_LABEL.format(label="TAMGA IIN"),
                                        pem_to_der(issued.authentication.certificate_pem), chain)
        on_token = dict(token.public_certificates(serial))
        assert pem_to_der(issued.authentication.certificate_pem) == on_token[authentication_id]
        reader = X509Reader()
        assert reader.describe(on_token[authentication_id]).authentication_only
        assert not reader.describe(on_token[signing_id]).authentication_only
        _, current = current_certificate(token, reader)              # what check, renewal and unblock read
        assert current.key_id == signing_id and current.facts.serial_hex == issued.serial_hex

        listed = subprocess.run(["pkcs11-tool", "--module", str(softhsm.module), "--token-label", "TAMGA IIN",
                                 "--login", "--pin", USER_PIN.reveal(), "-O"], capture_output=True, text=True,
                                check=True, timeout=30, env={**os.environ}).stdout
        assert listed.count("Private Key Object") == 2 and listed.count("Certificate Object") >= 2
        assert "TAMGA IIN AUTH" in listed
    finally:
        token.reload()


@pytest.mark.parametrize("language", ["kk", "ru", "en"])
def test_the_verification_page_shows_the_authentication_certificate_beside_the_signing_one(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, language: str) -> None:
    _, order = order_of(central_server, central_client, new_order, "KZ")
    answer = post_enrollment(central_server, order["id"], {"csr": pem_csr(), "authentication_csr": pem_csr(),
                                                           "idempotency_key": f"auth-{uuid.uuid4()}"}).json()
    page = requests.get(f"{central_server.public_url}/verify/{answer['serial']}", params={"lang": language},
                        timeout=10).text
    words = catalogue(language)
    row = re.search(r'<dd id="authentication-serial" data-status="good">([0-9A-F]+)\s+\(([^)]+)\)</dd>', page)
    assert row is not None and row.groups() == (answer["authentication"]["serial"], words["check.status.good"])
    assert words["receipt.authentication_serial"] in page


def test_a_single_certificate_page_has_no_authentication_row(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    _, order = order_of(central_server, central_client, new_order, "MN")
    answer = post_enrollment(central_server, order["id"], {"csr": pem_csr(), "idempotency_key": f"a-{uuid.uuid4()}"})
    page = requests.get(f"{central_server.public_url}/verify/{answer.json()['serial']}", timeout=10).text
    assert 'id="serial"' in page and "authentication-serial" not in page


def test_a_voided_enrollment_revokes_both_certificates(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, tmp_path: Path) -> None:
    """The kiosk cancelled the visit after the central had issued (its answer lost): nothing stays valid."""
    _, order = order_of(central_server, central_client, new_order, "KZ")
    key = f"auth-{uuid.uuid4()}"
    answer = post_enrollment(central_server, order["id"], {"csr": pem_csr(), "authentication_csr": pem_csr(),
                                                           "idempotency_key": key}).json()
    assert central_client.void_enrollment(key) == answer["serial"]
    for name in ("signing", "authentication"):
        pem = answer["certificate"] if name == "signing" else answer["authentication"]["certificate"]
        (tmp_path / name).mkdir()
        text, _, _ = openssl_ocsp(Issued(tmp_path / name, pem, answer["chain"]))
        assert ": revoked" in text and "Reason: cessationOfOperation" in text, (name, text)


def test_the_two_certificates_fit_a_phone_screen_in_a_real_browser(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder, tmp_path: Path,
        browser: Browser) -> None:  # noqa: F811 (the fixture imported above)
    from selenium.webdriver.common.by import By

    _, order = order_of(central_server, central_client, new_order, "KZ")
    answer = post_enrollment(central_server, order["id"], {"csr": pem_csr(), "authentication_csr": pem_csr(),
                                                           "idempotency_key": f"auth-{uuid.uuid4()}"}).json()
    driver = browser("kk")
    driver.get(f"{central_server.public_url}/verify/{answer['serial']}")
    row = driver.find_element(By.ID, "authentication-serial")
    assert row.get_attribute("data-status") == "good" and answer["authentication"]["serial"] in row.text
    widths = driver.execute_cdp_cmd("Runtime.evaluate", {
        "expression": "[document.documentElement.scrollWidth, window.innerWidth]", "returnByValue": True})
    scroll_width, inner_width = widths["result"]["value"]
    assert inner_width == 390 and scroll_width <= inner_width        # no sideways scrolling on a phone
    driver.save_screenshot(str(tmp_path / "verify-kk-two-certificates.png"))


def _renewal_application(serial: str, placed: dict[str, Any]) -> bytes:
    return json.dumps({
        "type": "tamga.renewal-application/1", "certificate_serial": serial,
        "holder": {"name": "Баатар Ариун", "register_number": placed["holder"]["register_number"]},
        "organisation": {"name": placed["organisation"]["name"], "register": placed["organisation"]["register"]},
        "term_years": 1, "fee_mnt": compute_fees(1, etoken=False).total, "details_unchanged": True,
        "requested_at": dt.datetime.now(ZoneInfo("Asia/Ulaanbaatar")).isoformat(timespec="seconds"),
    }, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def test_a_kazakh_renewal_renews_the_authentication_certificate_too(
        central_client: CentralClient, new_order: NewOrder, tmp_path: Path) -> None:
    placed = new_order(organisation_balance=200_000, validity_days=20, holder={"register_number": HOLDERS["KZ"]()})
    key = make_key("p256")
    first = central_client.enroll(find(central_client, placed["invoice"]).id, make_csr(key), f"auth-{uuid.uuid4()}",
                                  authentication_csr_der=make_csr(make_key("p256")))
    assert first.authentication is not None
    application = _renewal_application(first.serial_hex, placed)
    renew_key = f"renew-{uuid.uuid4()}"
    csrs = make_csr(make_key("p256")), make_csr(make_key("rsa2048"))
    renewed = central_client.renew(first.serial_hex, application, sign(key, application), csrs[0], renew_key,
                                   authentication_csr_der=csrs[1])
    assert renewed.authentication is not None
    assert renewed.authentication.serial_hex not in (first.authentication.serial_hex, renewed.serial_hex)
    assert renewed.authentication.not_after == renewed.not_after
    path = tmp_path / "renewed-authentication.pem"
    path.write_text(renewed.authentication.certificate_pem, encoding="ascii")
    check_findings(lint("lint_pkix_cert", path), "KZ renewed authentication RFC 5280")
    check_findings(lint("lint_etsi_cert", path, "-t", ETSI_AUTHENTICATION_TYPE), "KZ renewed authentication ETSI")
    again = central_client.renew(first.serial_hex, application, sign(key, application), csrs[0], renew_key,
                                 authentication_csr_der=csrs[1])
    assert again == renewed                                              # a retry: the same two certificates


def test_a_mongolian_renewal_refuses_an_authentication_csr(central_client: CentralClient,
                                                           new_order: NewOrder) -> None:
    placed = new_order(organisation_balance=200_000, validity_days=20)
    key = make_key("p256")
    first = central_client.enroll(find(central_client, placed["invoice"]).id, make_csr(key), f"a-{uuid.uuid4()}")
    application = _renewal_application(first.serial_hex, placed)
    with pytest.raises(CentralRejected) as refused:
        central_client.renew(first.serial_hex, application, sign(key, application), make_csr(make_key("p256")),
                             f"renew-{uuid.uuid4()}", authentication_csr_der=make_csr(make_key("p256")))
    assert refused.value.data["reason"] == "invalid_request" and refused.value.data["field"] == "authentication_csr"
