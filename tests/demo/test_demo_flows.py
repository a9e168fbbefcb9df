"""``python -m kiosk.demo --flow …``: each flow runs headless on the simulated stack and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from kiosk.i18n import catalogue

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["issuance", "renewal", "revocation", "unblock", "check"])
def test_demo_runs_the_flow(flow: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PCSCLITE_CSOCK_NAME", "SOFTHSM2_CONF", "TAMGA_CONFIG")}
    run = subprocess.run([sys.executable, "-m", "kiosk.demo", "--flow", flow, "--out", str(out)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=110, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((out / f"{flow}.json").read_text())
    assert (out / "receipt.png").stat().st_size > 1000
    issued = result.get("issuance", result)
    assert issued["certificate_serial"] and issued["receipt_printed"]
    # The product's default: the holder signed the agreement on the token and the central took it.
    assert issued["agreement"]["sent"] is True and len(issued["agreement"]["sha256"]) == 64
    if flow == "renewal":
        assert result["new_certificate_serial"] != result["old_certificate_serial"] and result["fee_mnt"] == 44000
    elif flow == "revocation":
        assert result["certificate_serial"] == issued["certificate_serial"] and result["revoked_at"]
    elif flow == "unblock":
        assert result["so_pin_source"] == "central"
    elif flow == "check":
        assert result["signature_ok"] and result["status"] == "good"
    assert_scanned_receipt_opens_the_page(result, out, "revoked" if flow == "revocation" else "good")


def assert_scanned_receipt_opens_the_page(result: dict[str, object], out: Path, status: str) -> None:
    """zbar read an https link from the printed receipt; chromium, trusting the central's CA, showed it."""
    issued = result.get("issuance", result)
    assert isinstance(issued, dict)
    url = str(result["verification_page"])
    assert url.startswith("https://pki.tamga.mn:") and url.endswith(f"/verify/{issued['certificate_serial']}")
    assert result["verification_status"] == status
    assert str(result["verification_status_text"]).endswith(catalogue("mn")[f"check.status.{status}"])
    assert (out / "verify.png").stat().st_size > 10_000
    # What relying parties fetch stays on plain http (RFC 5280, RFC 6960): only the page is https.
    cert = x509.load_pem_x509_certificate(str(issued["certificate_pem"]).encode())
    crl = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    aia = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    fetched = [name.value for point in crl for name in point.full_name or ()]
    fetched += [d.access_location.value for d in aia if d.access_method in (
        AuthorityInformationAccessOID.OCSP, AuthorityInformationAccessOID.CA_ISSUERS)]
    assert len(fetched) >= 3 and all(u.startswith("http://pki.tamga.mn:") for u in fetched), fetched


@pytest.mark.slow
def test_offline_demo_prints_a_pending_receipt_then_installs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PCSCLITE_CSOCK_NAME", "SOFTHSM2_CONF", "TAMGA_CONFIG")}
    run = subprocess.run([sys.executable, "-m", "kiosk.demo", "--offline", "--out", str(out)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=110, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((out / "issuance.json").read_text())
    assert result["offline"] and result["certificate_serial"] and result["receipt_printed"]
    assert result["agreement"]["sent"] is True                     # signed once the certificate was on the token
    assert (out / "receipt-pending.png").stat().st_size > 1000
    assert_scanned_receipt_opens_the_page(result, out, "good")      # the receipt printed once it was issued
