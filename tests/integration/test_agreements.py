"""The signed holder agreement at the central, and the PDS documents the certificates point to.

A real central (django-ca on loopback) issues certificates for keys generated on a SoftHSM2 token;
the agreement is signed PAdES on that token (``devices/agreement.py``) and sent with the kiosk's
client.  The central keeps a good one (0600, once per serial) and refuses a tampered PDF, another
key's signature and a foreign certificate for the same key.  The holder downloads it from the
verification page by typing the token's serial, in headless chromium (no JavaScript).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from central.runner import CentralServer
from devices.agreement import Pkcs11AgreementSigner, render_pdf
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.errors import CentralRejected
from kiosk.i18n import catalogue
from kiosk.pin import Pin, SoPin
from kiosk.ports import AgreementFacts, AgreementKey, KeyAlgorithm
from sync.central_client import CentralClient
from tests.integration.test_central import find

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
USER_PIN = Pin("482916")
QC_STATEMENTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")
needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs Debian poppler-utils")


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _order(register_number: str) -> dict[str, Any]:
    return {"invoice": f"9{secrets.randbelow(10**11):011d}",
            "holder": {"surname": "Боржигон", "father_name": "Баатар", "given_name": "Ариун",
                       "register_number": register_number, "gender": "female", "email": "ariun@example.mn",
                       "phone": "99000000"},
            "organisation": {"name": "АЗ ХХК", "register": "1234567", "department": "Захиргаа"},
            "position": "Нягтлан", "term_years": 1, "etoken": True, "consent_accepted": True, "confirmed": True,
            "paid_mnt": 88_000}


@dataclass
class Issued:
    key: AgreementKey
    facts: AgreementFacts


class Holder:
    """One SoftHSM token whose two keys the central certified (``a``, ``b``), and a Kazakh holder's certificate.

    Made once for the module: loading orders and enrolling cost seconds each on a busy machine.
    """

    def __init__(self, server: CentralServer, client: CentralClient, directory: Path) -> None:
        self.client = client
        orders = [_order(f"НЭ{secrets.randbelow(10**8):08d}"), _order(f"НЭ{secrets.randbelow(10**8):08d}"),
                  _order("880101300010")]
        path = directory / "orders.json"
        path.write_text(json.dumps({"organisations": [], "orders": orders}, ensure_ascii=False), encoding="utf-8")
        assert server.manage("load-orders", str(path)).split() == [o["invoice"] for o in orders]
        softhsm = SoftHsmStore(directory / "softhsm")
        blank = softhsm.add_blank_token()
        self.token = Pkcs11Token(softhsm.module, rescan=True)
        self.token.reload()
        self.serial = self.token.initialise(blank, SoPin(FACTORY_SO_PIN), SoPin("73195502"), "TAMGA AGREEMENT",
                                            USER_PIN).serial
        self.signer = Pkcs11AgreementSigner(self.token)
        self.a = self._issue(b"\x0a\x01", orders[0])
        self.b = self._issue(b"\x0a\x02", orders[1])
        signing, authentication = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
                                   .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
                                   .public_bytes(serialization.Encoding.DER) for _ in range(2))
        kazakh = client.enroll(find(client, orders[2]["invoice"]).id, signing, f"pds-{uuid.uuid4()}",
                               authentication_csr_der=authentication)     # the Kazakh profile's second key
        self.kazakh_pem = kazakh.certificate_pem

    def _issue(self, key_id: bytes, order: dict[str, Any]) -> Issued:
        with self.token.session(self.serial, USER_PIN) as session:
            session.generate_key_pair(key_id, "agreement", KeyAlgorithm.P256)
            csr = session.sign_csr(key_id, "ignored")
        issued = self.client.enroll(find(self.client, order["invoice"]).id, csr, f"agr-{uuid.uuid4()}",
                                    token_serial=self.serial)
        key = AgreementKey(self.serial, key_id, _der(issued.certificate_pem), tuple(_der(p) for p in issued.chain_pem))
        facts = AgreementFacts(country="MN", language="mn", holder_name="Боржигон Баатар Ариун",
                               register_number=order["holder"]["register_number"],
                               certificate_serial=issued.serial_hex, token_serial=self.serial,
                               signed_on=dt.date.today(), office="Улаанбаатар", paid="88,000 ₮")
        return Issued(key, facts)

    def sign(self, facts: AgreementFacts, key: AgreementKey) -> bytes:
        return self.signer.sign(facts, key, USER_PIN)


@pytest.fixture(scope="module")
def holder(central_server: CentralServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Holder]:
    directory = tmp_path_factory.mktemp("agreements")
    with pytest.MonkeyPatch.context() as env, central_server.client(timeout_s=10.0) as client:
        env.setenv("SOFTHSM2_CONF", str(directory / "softhsm" / "softhsm2.conf"))
        made = Holder(central_server, client, directory)
        yield made
        made.token.reload()


def kept_agreement(holder: Holder, server: CentralServer) -> bytes:
    """A's agreement as the central keeps it (sent now unless an earlier test sent one)."""
    serial = holder.a.facts.certificate_serial
    try:
        holder.client.submit_agreement(serial, holder.sign(holder.a.facts, holder.a.key))
    except CentralRejected as err:
        assert err.data["reason"] == "agreement_exists"
    return (server.data_dir / "agreements" / f"{serial}.pdf").read_bytes()


def refusal(client: CentralClient, serial: str, pdf: bytes) -> str:
    with pytest.raises(CentralRejected) as caught:
        client.submit_agreement(serial, pdf)
    return str(caught.value.data["reason"])


def test_a_good_agreement_is_kept_once_0600(holder: Holder, central_server: CentralServer) -> None:
    key, facts = holder.a.key, holder.a.facts
    pdf = holder.sign(facts, key)
    digest = holder.client.submit_agreement(facts.certificate_serial, pdf)
    assert holder.client.submit_agreement(facts.certificate_serial, pdf) == digest     # idempotent: 200
    kept = central_server.data_dir / "agreements" / f"{facts.certificate_serial}.pdf"
    assert kept.read_bytes() == pdf
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    # A second, different signature of the same agreement does not replace the first.
    assert refusal(holder.client, facts.certificate_serial, holder.sign(facts, key)) == "agreement_exists"


def test_tampered_unsigned_and_wrong_documents_are_refused(holder: Holder) -> None:
    key, facts = holder.a.key, holder.a.facts
    pdf = holder.sign(facts, key)
    at = pdf.index(b"/Author")                     # inside the signed byte range
    tampered = pdf[:at] + b"/Authos" + pdf[at + 7:]
    assert refusal(holder.client, facts.certificate_serial, tampered) == "agreement_signature_invalid"
    appended = pdf + b"\n% appended after signing\n"
    assert refusal(holder.client, facts.certificate_serial, appended) == "agreement_signature_invalid"
    assert refusal(holder.client, facts.certificate_serial, render_pdf(facts)) == "agreement_unsigned"
    assert refusal(holder.client, facts.certificate_serial, b"not a pdf at all") == "agreement_not_pdf"
    assert refusal(holder.client, "ABCDEF0123", pdf) == "certificate_not_found"


def test_another_keys_signature_is_refused(holder: Holder) -> None:
    # B's certificate (issued by this central, so trusted) signs A's agreement.
    assert refusal(holder.client, holder.a.facts.certificate_serial, holder.sign(holder.a.facts, holder.b.key)) == \
        "agreement_signer_mismatch"


def test_a_foreign_certificate_for_the_same_key_is_refused(holder: Holder) -> None:
    key, facts = holder.a.key, holder.a.facts
    issued = x509.load_der_x509_certificate(key.certificate_der)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    foreign_ca = (x509.CertificateBuilder().subject_name(issued.issuer).issuer_name(issued.issuer)
                  .public_key(ca_key.public_key()).serial_number(7).not_valid_before(now)
                  .not_valid_after(now + dt.timedelta(days=30))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                  .sign(ca_key, hashes.SHA256()))
    foreign = (x509.CertificateBuilder().subject_name(issued.subject).issuer_name(issued.issuer)
               .public_key(issued.public_key()).serial_number(issued.serial_number)   # type: ignore[arg-type]
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False), True)
               .sign(ca_key, hashes.SHA256()))
    der = serialization.Encoding.DER
    forged = AgreementKey(key.token_serial, key.key_id, foreign.public_bytes(der), (foreign_ca.public_bytes(der),))
    assert refusal(holder.client, facts.certificate_serial, holder.sign(facts, forged)) == \
        "agreement_certificate_foreign"


def post_form(server: CentralServer, serial: str, token_serial: str) -> requests.Response:
    return requests.post(f"{server.public_url}/verify/{serial}/agreement?lang=en", data={"token_serial": token_serial},
                         timeout=10)


def test_the_form_refuses_alike_and_reveals_nothing(holder: Holder, central_server: CentralServer) -> None:
    a, b = holder.a.facts.certificate_serial, holder.b.facts.certificate_serial
    kept = kept_agreement(holder, central_server)
    unsent = post_form(central_server, b, holder.serial)                           # right token, none kept
    wrong = post_form(central_server, a, "0000000000000000")
    unknown = post_form(central_server, "ABCDEF0123", holder.serial)
    bodies = {r.text.replace(b, "S").replace(a, "S").replace("ABCDEF0123", "S") for r in (unsent, wrong, unknown)}
    assert [r.status_code for r in (unsent, wrong, unknown)] == [404, 404, 404] and len(bodies) == 1
    assert catalogue("en")["agreement.verify.refused"] in wrong.text
    assert holder.serial not in wrong.text + unknown.text
    right = post_form(central_server, a, holder.serial)
    assert right.status_code == 200 and right.headers["Content-Type"] == "application/pdf"
    assert right.content == kept and "attachment" in right.headers["Content-Disposition"]
    # The refusal page's language links (GET ?lang=) lead back to the certificate's page in that language.
    back = requests.get(f"{central_server.public_url}/verify/{a}/agreement?lang=ru", allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"] == f"/verify/{a}?lang=ru"


# --- the holder downloads it in a real browser ----------------------------------------------------------
@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-gpu", "--window-size=390,844",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "intl.accept_languages": "kk", "profile.managed_default_content_settings.javascript": 2,
        "download.prompt_for_download": False, "download.default_directory": str(tmp_path / "downloads")})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow",
                                                           "downloadPath": str(tmp_path / "downloads")})
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_holder_downloads_the_agreement_with_the_token_serial(holder: Holder, central_server: CentralServer,
                                                              chromium: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    serial = holder.a.facts.certificate_serial
    pdf = kept_agreement(holder, central_server)
    words = catalogue("kk")

    chromium.get(f"{central_server.public_url}/verify/{serial}")
    assert chromium.find_element(By.TAG_NAME, "h2").text == words["agreement.verify.heading"]
    chromium.save_screenshot(str(tmp_path / "agreement-form.png"))
    chromium.find_element(By.ID, "token-serial").send_keys("WRONG-SERIAL")
    chromium.find_element(By.ID, "agreement-download").click()
    assert chromium.find_element(By.ID, "message").text == words["agreement.verify.refused"]
    chromium.save_screenshot(str(tmp_path / "agreement-refused.png"))
    chromium.find_element(By.ID, "back").click()

    chromium.find_element(By.ID, "token-serial").send_keys(holder.serial)
    chromium.find_element(By.ID, "agreement-download").click()
    target = tmp_path / "downloads" / f"agreement-{serial}.pdf"
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_bytes() == pdf


# --- PDS: the URL written into an issued certificate serves the document in its language ------------------
def pds_urls(certificate_pem: str) -> list[tuple[str, str]]:
    """(url, language) of the certificate's QcPDS statement (its DER holds IA5 URL + PrintableString language)."""
    ext = x509.load_pem_x509_certificate(certificate_pem.encode()).extensions.get_extension_for_oid(QC_STATEMENTS)
    der = ext.value.value                                                       # type: ignore[attr-defined]
    return [(m.group(1).decode(), m.group(2).decode())
            for m in re.finditer(rb"\x16.(https://[\x21-\x7e]+?\.pdf)\x13\x02([a-z]{2})", der)]


@needs_poppler
@pytest.mark.parametrize("country", ["MN", "KZ"])
def test_the_pds_urls_in_a_certificate_serve_the_document_in_their_language(
        holder: Holder, central_server: CentralServer, tmp_path: Path, country: str) -> None:
    pem = holder.kazakh_pem if country == "KZ" else x509.load_der_x509_certificate(
        holder.a.key.certificate_der).public_bytes(serialization.Encoding.PEM).decode()
    urls = pds_urls(pem)
    assert [lang for _, lang in urls] == {"MN": ["mn", "en"], "KZ": ["kk", "ru", "en"]}[country]
    texts = Path(__file__).resolve().parents[2] / "central" / "pds"
    for url, language in urls:
        assert url.startswith("https://") and url.endswith(f"/{country}/{language}.pdf")
        # The public host is TAMGA_PDS_BASE_URL's; on loopback the central serves the same path.
        response = requests.get(f"{central_server.public_url}{urlparse(url).path}", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/pdf"
        assert response.headers["Content-Language"] == language
        path = tmp_path / f"{country}-{language}.pdf"
        path.write_bytes(response.content)
        text = " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                                       check=True, timeout=60).stdout.split())
        title = (texts / f"{language}.txt").read_text("utf-8").splitlines()[0].removeprefix("# ")
        assert " ".join(title.split()) in text
    assert requests.get(f"{central_server.public_url}/pds/XX/en.pdf", timeout=10).status_code == 404
    assert requests.get(f"{central_server.public_url}/pds/{country}/de.pdf", timeout=10).status_code == 404


def test_the_form_is_rate_limited(central_server: CentralServer) -> None:
    """Last in the module: it uses up this address's form window (the page and the API have their own)."""
    codes: list[int] = []
    while 429 not in codes and len(codes) < 25:          # 30 // 3 = 10 a minute; earlier tests used a few
        codes.append(post_form(central_server, "ABCDEF", "0000").status_code)
    refused = post_form(central_server, "ABCDEF", "0000")
    assert set(codes[:-1]) == {404} and codes[-1] == 429 and refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert requests.get(f"{central_server.public_url}/verify/ABCDEF", timeout=10).status_code == 404
