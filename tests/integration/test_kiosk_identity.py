"""The kiosk's identity over real TLS on loopback: mutual TLS with per-kiosk certificates from one-time codes.

The central's HTTPS listener (cheroot) asks for a client certificate of the kiosk identity CA and
checks it against the database on each request; a kiosk enrolls with a code from ``add-kiosk``.
curl and openssl s_client are the third-party checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from central.runner import CentralServer
from kiosk.errors import CentralRejected, CentralUnavailable
from kiosk.i18n import Translator
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.kiosk_identity import (
    CentralNotTrusted,
    CentralUnreachable,
    CodeExpired,
    CodeUnknown,
    CodeUsed,
    KioskIdentity,
    WrongOffice,
    enroll,
    renew_if_due,
    renewal_due,
)
from sync.store import KioskStore, load_or_create_key

ARIUN_INVOICE = "147314016754"
LANGUAGES = ("mn", "kk", "ky", "ru", "en")


def kiosk_name() -> str:
    return f"kiosk-{uuid.uuid4().hex[:8]}"


def new_identity(central: CentralServer, tmp_path: Path) -> KioskIdentity:
    return KioskIdentity.in_directory(tmp_path / "identity", central.tls_ca_path)


CODES = ("enroll", "used", "replaced-old", "replaced-new", "expired", "not-chain", "wrong-office", "revoked",
         "renewal", "cli", "daemon")
KIOSK_IDS = {name: kiosk_name() for name in CODES if not name.startswith("replaced")} | dict.fromkeys(
    ("replaced-old", "replaced-new"), kiosk_name())


@pytest.fixture(scope="module")
def codes(central_server: CentralServer) -> dict[str, str]:
    """One-time codes of office main, one kiosk per test (``KIOSK_IDS``), made by one ``add-kiosk`` command
    (each costs seconds).  ``replaced-old`` and ``replaced-new`` are two codes of one kiosk, the newer second."""
    output = central_server.manage("add-kiosk", *(KIOSK_IDS[name] for name in CODES))
    return dict(zip(CODES, output.split(), strict=True))


def code_digest(code: str) -> str:
    """As the central stores a code (``central.orders.kiosk_identity.code_digest``)."""
    return hashlib.sha256(code.replace("-", "").upper().encode("ascii")).hexdigest()


def orders(central: CentralServer, **options: object) -> requests.Response:
    return requests.get(f"{central.url}/api/v1/orders", params={"invoice": ARIUN_INVOICE}, timeout=10,
                        **options)  # type: ignore[arg-type]


# --- the central refuses ---------------------------------------------------------------------------------
def test_no_client_certificate_is_refused_with_a_reason(central_server: CentralServer) -> None:
    response = orders(central_server, verify=central_server.verify)
    assert response.status_code == 401
    assert response.json()["error"] == "kiosk_certificate_required"
    # the public pages stay reachable without one, over HTTPS and plain HTTP
    assert requests.get(f"{central_server.url}/api/v1/health", verify=central_server.verify,
                        timeout=10).status_code == 200
    assert requests.get(f"{central_server.public_url}/api/v1/health", timeout=10).status_code == 200


def test_the_plain_http_listener_serves_no_api(central_server: CentralServer) -> None:
    response = requests.get(f"{central_server.public_url}/api/v1/orders", params={"invoice": ARIUN_INVOICE},
                            timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "kiosk_certificate_required"


def _foreign_identity(tmp_path: Path, central: CentralServer) -> KioskIdentity:
    """A client certificate with clientAuth for CN=demo-kiosk, signed by a key the central never saw under
    the name of its own CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tamga Kiosk Identity CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "demo-kiosk")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    identity = new_identity(central, tmp_path)
    identity.certificate.parent.mkdir(parents=True)
    identity.certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    identity.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return identity


def test_a_certificate_of_another_ca_is_refused_in_the_handshake(central_server: CentralServer,
                                                                 tmp_path: Path) -> None:
    foreign = _foreign_identity(tmp_path, central_server)
    with pytest.raises(requests.exceptions.ConnectionError):      # SSLError is one
        orders(central_server, **foreign.requests_options())
    with central_server.client(identity=foreign) as client, pytest.raises(CentralUnavailable):
        client.find_order("invoice", ARIUN_INVOICE)


def test_a_revoked_kiosk_is_refused_at_its_next_request(central_server: CentralServer, codes: dict[str, str],
                                                         tmp_path: Path) -> None:
    kiosk_id, identity = KIOSK_IDS["revoked"], new_identity(central_server, tmp_path)
    enroll(central_server.url, codes["revoked"], "main", identity)
    with central_server.client(identity=identity) as client:
        assert client.find_order("invoice", ARIUN_INVOICE).invoice == ARIUN_INVOICE
        central_server.manage("revoke-kiosk", kiosk_id)
        with pytest.raises(CentralRejected) as refused:          # same client, maybe the same TLS connection
            client.find_order("invoice", ARIUN_INVOICE)
    assert refused.value.data == {"reason": "kiosk_certificate_refused", "status": 401}


# --- enrollment ---------------------------------------------------------------------------------------------
def test_enrollment_writes_the_kiosks_own_key_and_a_short_client_certificate(
        central_server: CentralServer, codes: dict[str, str], tmp_path: Path) -> None:
    code = codes["enroll"]
    assert len(code.replace("-", "")) == 20
    identity = new_identity(central_server, tmp_path)
    certificate = enroll(central_server.url, code, "main", identity)
    kiosk_id = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(kiosk_id).startswith("kiosk-")
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "main"
    for path in (identity.key, identity.certificate):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert dt.timedelta(days=89) < validity <= dt.timedelta(days=90, minutes=1)
    key = serialization.load_pem_private_key(identity.key.read_bytes(), password=None)
    assert certificate.public_key() == key.public_key()
    # the central keeps no key and no code in clear
    database = (central_server.data_dir / "central.sqlite3").read_bytes()
    assert code.encode() not in database and code.replace("-", "").encode() not in database


def test_a_used_code_is_refused(central_server: CentralServer, codes: dict[str, str], tmp_path: Path) -> None:
    code = codes["used"]
    enroll(central_server.url, code, "main", new_identity(central_server, tmp_path / "a"))
    with pytest.raises(CodeUsed) as refused:
        enroll(central_server.url, code, "main", new_identity(central_server, tmp_path / "b"))
    assert refused.value.data["reason"] == "code_used"
    assert not (tmp_path / "b" / "identity").exists()


def test_a_code_is_replaced_by_a_newer_one(central_server: CentralServer, codes: dict[str, str],
                                           tmp_path: Path) -> None:
    old, new = codes["replaced-old"], codes["replaced-new"]
    with pytest.raises(CodeUsed):
        enroll(central_server.url, old, "main", new_identity(central_server, tmp_path))
    enroll(central_server.url, new, "main", new_identity(central_server, tmp_path))


def test_an_expired_code_is_refused(central_server: CentralServer, codes: dict[str, str], tmp_path: Path) -> None:
    """The code's expiry is moved into the past in the database (a clock cannot be wound on)."""
    code = codes["expired"]
    with sqlite3.connect(central_server.data_dir / "central.sqlite3", timeout=20) as db:
        db.execute("update orders_enrollmentcode set expires_at = '2026-01-01 00:00:00' where code_sha256 = ?",
                   (code_digest(code),))
    with pytest.raises(CodeExpired) as refused:
        enroll(central_server.url, code, "main", new_identity(central_server, tmp_path))
    assert refused.value.data["reason"] == "code_expired"


def test_a_code_of_another_office_is_refused(central_server: CentralServer, codes: dict[str, str],
                                             tmp_path: Path) -> None:
    code = codes["wrong-office"]
    with pytest.raises(WrongOffice) as refused:
        enroll(central_server.url, code, "office-w", new_identity(central_server, tmp_path))
    assert refused.value.data == {"reason": "wrong_office", "office": "office-w", "code_office": "main"}
    enroll(central_server.url, code, "main", new_identity(central_server, tmp_path))   # not used up


def test_an_unknown_code_is_refused(central_server: CentralServer, tmp_path: Path) -> None:
    with pytest.raises(CodeUnknown):
        enroll(central_server.url, "AAAA-BBBB-CCCC-DDDD-EEEE", "main", new_identity(central_server, tmp_path))


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_refusal_tells_the_technician_what_to_check(language: str) -> None:
    t = Translator(language)
    errors = [CodeExpired(reason="code_expired"), CodeUsed(reason="code_used"), CodeUnknown(reason="code_unknown"),
              WrongOffice(reason="wrong_office", office="main", code_office="office-w"),
              CentralUnreachable(url="https://central.example:8750"),
              CentralNotTrusted(url="https://central.example:8750", ca_chain="/etc/tamga/central-ca.pem")]
    texts = [t(err.key, **err.data) for err in errors]
    assert all(t.has(err.key) for err in errors)
    assert len(set(texts)) == len(texts)
    assert "office-w" in texts[3] and "main" in texts[3]
    assert "https://central.example:8750" in texts[4] and "/etc/tamga/central-ca.pem" in texts[5]
    assert not any("{" in text for text in texts)


def test_python_m_sync_enroll_as_the_technician_runs_it(central_server: CentralServer, codes: dict[str, str],
                                                        tmp_path: Path) -> None:
    (tmp_path / "so-pin").write_text("87654321\n")
    config = tmp_path / "kiosk.toml"
    config.write_text(f"""[kiosk]
id = "{KIOSK_IDS['cli']}"
language = "ru"
data_dir = "{tmp_path / 'data'}"
[central]
url = "{central_server.url}"
ca_chain = "{central_server.tls_ca_path}"
client_certificate = "{tmp_path / 'data' / 'kiosk-identity.pem'}"
client_key = "{tmp_path / 'data' / 'kiosk-identity.key'}"
[idcard]
trust_anchors = ["{central_server.ca_chain_path}"]
[token]
factory_so_pin_file = "{tmp_path / 'so-pin'}"
""")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sync", "--config", str(config), "enroll", *args],
                              capture_output=True, text=True, timeout=120, check=False)

    wrong = run("--code", codes["cli"], "--office", "office-x")
    assert wrong.returncode == 1
    assert "wrong_office" in wrong.stderr and "office-x" in wrong.stderr
    assert "Код выдан для отделения main" in wrong.stderr          # the kiosk's language (ru)
    done = run("--code", codes["cli"], "--office", "main")
    assert done.returncode == 0, done.stderr
    assert f"CN={KIOSK_IDS['cli']}" in done.stdout
    assert stat.S_IMODE((tmp_path / "data" / "kiosk-identity.key").stat().st_mode) == 0o600
    again = run("--code", codes["cli"], "--office", "main")
    assert again.returncode == 1 and "code_used" in again.stderr


# --- the kiosk refuses -------------------------------------------------------------------------------------
def test_the_client_refuses_a_central_whose_certificate_does_not_chain(
        central_server: CentralServer, codes: dict[str, str], tmp_path: Path) -> None:
    wrong = KioskIdentity(ca_chain=central_server.ca_chain_path,     # the qualified CA chain, not the TLS CA
                          certificate=central_server.identity.certificate, key=central_server.identity.key)
    with CentralClient(central_server.url, wrong) as client, pytest.raises(CentralUnavailable) as refused:
        client.find_order("invoice", ARIUN_INVOICE)
    assert refused.value.data["cause"] == "central_not_trusted"
    code = codes["not-chain"]
    with pytest.raises(CentralNotTrusted):
        enroll(central_server.url, code, "main", KioskIdentity.in_directory(tmp_path, central_server.ca_chain_path))
    enroll(central_server.url, code, "main", new_identity(central_server, tmp_path))    # the code is not used up


def test_a_kiosk_not_yet_enrolled_works_offline(central_server: CentralServer, tmp_path: Path) -> None:
    with CentralClient(central_server.url, new_identity(central_server, tmp_path)) as client, \
            pytest.raises(CentralUnavailable) as unavailable:
        client.find_order("invoice", ARIUN_INVOICE)
    assert unavailable.value.data["cause"] == "identity_missing"


def test_an_unreachable_central_says_so(central_server: CentralServer, tmp_path: Path) -> None:
    with pytest.raises(CentralUnreachable) as refused:
        enroll("https://127.0.0.1:9", "AAAA-BBBB-CCCC-DDDD-EEEE", "main", new_identity(central_server, tmp_path),
               timeout_s=2)
    assert refused.value.data["url"] == "https://127.0.0.1:9"


# --- renewal ---------------------------------------------------------------------------------------------------
def test_renewal_when_a_third_of_the_validity_is_left(central_server: CentralServer, codes: dict[str, str],
                                                       tmp_path: Path) -> None:
    identity = new_identity(central_server, tmp_path)
    enroll(central_server.url, codes["renewal"], "main", identity)
    first = identity.load_certificate()
    old_copy = KioskIdentity.in_directory(tmp_path / "old", identity.ca_chain)
    old_copy.certificate.parent.mkdir()
    shutil.copy(identity.certificate, old_copy.certificate)
    shutil.copy(identity.key, old_copy.key)
    with central_server.client(identity=identity) as client:
        assert not renew_if_due(client, identity)                  # fresh: nothing to do
        late = first.not_valid_after_utc - dt.timedelta(days=29)
        assert renewal_due(first, late)
        assert renew_if_due(client, identity, now=late)
    second = identity.load_certificate()
    assert second.serial_number != first.serial_number and second.public_key() != first.public_key()
    assert stat.S_IMODE(identity.key.stat().st_mode) == 0o600
    for which in (identity, old_copy):          # the old one stays valid until it ends
        with central_server.client(identity=which) as client:
            assert client.find_order("invoice", ARIUN_INVOICE).invoice == ARIUN_INVOICE


def test_the_sync_daemon_renews_before_its_round(central_server: CentralServer, codes: dict[str, str],
                                                 tmp_path: Path) -> None:
    identity = new_identity(central_server, tmp_path)
    first = enroll(central_server.url, codes["daemon"], "main", identity)
    late = first.not_valid_after_utc - dt.timedelta(days=10)
    store = KioskStore(tmp_path / "kiosk.db", load_or_create_key(tmp_path / "kiosk.key"))
    with central_server.client(identity=identity) as client:
        daemon = SyncDaemon(store, client, KIOSK_IDS["daemon"],
                            before_round=lambda: renew_if_due(client, identity, now=late))
        report = daemon.once()
    store.close()
    assert report.error is None
    assert identity.load_certificate().serial_number != first.serial_number


def test_renewal_needs_a_client_certificate(central_server: CentralServer) -> None:
    response = requests.post(f"{central_server.url}/api/v1/kiosks/renew", json={"csr": "x"},
                             verify=central_server.verify, timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "kiosk_certificate_required"


# --- third-party tools -----------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None, reason="curl/openssl missing")
def test_curl_and_openssl_see_mutual_tls(central_server: CentralServer) -> None:
    identity = central_server.identity
    url = f"{central_server.url}/api/v1/orders?invoice={ARIUN_INVOICE}"
    base = ["curl", "-sS", "--cacert", str(identity.ca_chain), "-o", "/dev/null", "-w", "%{http_code}"]
    with_cert = subprocess.run([*base, "--cert", str(identity.certificate), "--key", str(identity.key), url],
                               capture_output=True, text=True, timeout=30, check=True)
    assert with_cert.stdout == "200"
    without = subprocess.run([*base, url], capture_output=True, text=True, timeout=30, check=True)
    assert without.stdout == "401"
    host, port = central_server.url.removeprefix("https://").rsplit(":", 1)
    s_client = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", str(identity.ca_chain),
                               "-verify_return_error", "-brief"], input="", capture_output=True, text=True,
                              timeout=30, check=False)
    assert "Verification: OK" in s_client.stderr + s_client.stdout, s_client.stderr


def test_a_silent_client_holds_the_others_up_only_for_the_handshake_timeout(central_server: CentralServer) -> None:
    """cheroot does the TLS handshake in its accept loop: a connection that sends nothing delays the next
    client until the handshake times out (3 s; it was the 30 s socket timeout)."""
    host, port = central_server.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10):
        time.sleep(0.2)
        started = time.perf_counter()
        answer = requests.get(f"{central_server.url}/api/v1/health", verify=central_server.verify, timeout=30)
        waited = time.perf_counter() - started
    assert answer.status_code == 200 and waited < 8, waited


def test_python_ssl_checks_the_server_name(central_server: CentralServer) -> None:
    context = ssl.create_default_context(cafile=str(central_server.tls_ca_path))
    host, port = central_server.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError), context.wrap_socket(raw, server_hostname="central.other"):
        pass
