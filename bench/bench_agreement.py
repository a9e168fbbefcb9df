"""The holder agreement on SoftHSM2: render, PAdES-sign on the token, validate as the central does.

Prints the medians over ``--runs`` of rendering the PDF (reportlab, Noto embedded), signing it on the
token through pyHanko's PKCS#11 signer (login, render, sign, logout), and validating it with pyHanko
against its root (what ``POST /api/v1/agreements`` does), each as a ratio of a plain token signature
of 32 bytes with login and logout (``TokenSession.sign``), measured in the same run.  A real eToken
signs in ~0.1-0.5 s rather than SoftHSM's ~1 ms, so on a kiosk the token's own time adds to these.

    .venv/bin/python bench/bench_agreement.py [--runs 10] [--key-algorithm rsa2048|p256]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devices.agreement import Pkcs11AgreementSigner, render_pdf
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.pin import Pin, SoPin
from kiosk.ports import AgreementFacts, AgreementKey, KeyAlgorithm

PIN = Pin("482916")
KEY_ID = b"\x0b\x01"


def certify(csr_der: bytes) -> tuple[bytes, bytes]:
    """A throwaway CA's signing certificate (contentCommitment) for the CSR's key, and the CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    csr = x509.load_der_x509_csr(csr_der)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(name).public_key(csr.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    der = serialization.Encoding.DER
    return cert.public_bytes(der), ca.public_bytes(der)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--key-algorithm", choices=[a.value for a in KeyAlgorithm], default="p256")
    args = parser.parse_args(argv)
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    with tempfile.TemporaryDirectory() as tmp:
        store = SoftHsmStore(Path(tmp))
        os.environ["SOFTHSM2_CONF"] = str(store.conf_path)
        blank = store.add_blank_token()
        token = Pkcs11Token(store.module, rescan=True)
        token.reload()
        serial = token.initialise(blank, SoPin(FACTORY_SO_PIN), SoPin("73195502"), "TAMGA BENCH", PIN).serial
        with token.session(serial, PIN) as session:
            session.generate_key_pair(KEY_ID, "bench", KeyAlgorithm(args.key_algorithm))
            cert, ca = certify(session.sign_csr(KEY_ID, "Баатар Ариун"))
        key = AgreementKey(serial, KEY_ID, cert, (ca,))
        facts = AgreementFacts("MN", "mn", "Боржигон Баатар Ариун", "НЭ80000000", "5A3F0011C29B", serial,
                               dt.date.today(), "Улаанбаатар", "88,000 ₮")
        signer = Pkcs11AgreementSigner(token)
        signer.sign(facts, key, PIN)                              # warm up: imports, fonts

        def plain_signature() -> None:
            with token.session(serial, PIN) as session:
                session.sign(KEY_ID, b"\x00" * 32)

        signed = signer.sign(facts, key, PIN)
        roots = [asn1_x509.Certificate.load(ca)]

        def validate() -> None:
            sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
            status = validate_pdf_signature(sig, ValidationContext(trust_roots=roots))
            assert status.intact and status.valid and status.trusted

        baseline = median_ms(plain_signature, args.runs)
        figures = {"render": median_ms(lambda: render_pdf(facts), args.runs),
                   "render+sign": median_ms(lambda: signer.sign(facts, key, PIN), args.runs),
                   "validate": median_ms(validate, args.runs)}
        token.reload()
    print(f"agreement ({args.key_algorithm}, SoftHSM2, {args.runs} runs, {len(signed)} bytes signed): "
          f"baseline plain token signature {baseline:.1f} ms")
    for name, ms in figures.items():
        print(f"  {name:<12} {ms:8.1f} ms  = {ms / baseline:6.1f} x baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
