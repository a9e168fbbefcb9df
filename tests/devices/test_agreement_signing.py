"""The holder agreement signed PAdES on the eToken (SoftHSM2): pyHanko validates it, poppler's pdfsig agrees.

The key pair is generated on the token and never extracted; the certificate comes from a throwaway
CA with the key usage a qualified signing certificate has (contentCommitment alone).
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devices.agreement import SIGNATURE_FIELD, AgreementText, Pkcs11AgreementSigner, render_pdf
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.errors import InvalidPin, TokenError
from kiosk.pin import Pin, SoPin
from kiosk.ports import AgreementFacts, AgreementKey, KeyAlgorithm

USER_PIN = Pin("482916")
KEY_ID = bytes.fromhex("a9eeae01")
needs_poppler = pytest.mark.skipif(shutil.which("pdfsig") is None or shutil.which("pdftotext") is None,
                                   reason="needs Debian poppler-utils (pdfsig, pdftotext)")


def facts(language: str = "mn", country: str = "MN", serial: str = "5A3F00112233") -> AgreementFacts:
    return AgreementFacts(country=country, language=language, holder_name="Баатар Ариун",
                          register_number="НЭ80000000", certificate_serial=serial, token_serial="tok",
                          signed_on=dt.date(2026, 12, 3), office="Улаанбаатар, БЗД 13-р хороолол",
                          paid="88,000 ₮" if country == "MN" else "88 000 ₸")


def issue(csr_der: bytes) -> tuple[bytes, bytes]:
    """A throwaway CA issues a signing certificate (contentCommitment) for the CSR's key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Agreement Test CA")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    csr = x509.load_der_x509_csr(csr_der)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name).public_key(csr.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(False, True, False, False, False, False, False, False, False),
                           critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), ca.public_bytes(serialization.Encoding.DER)


def personalise(softhsm: SoftHsmStore, token: Pkcs11Token, algorithm: KeyAlgorithm) -> AgreementKey:
    blank = softhsm.add_blank_token()
    token.reload()
    info = token.initialise(blank, SoPin(FACTORY_SO_PIN), SoPin("73195502"), "TAMGA NE80000000", USER_PIN)
    with token.session(info.serial, USER_PIN) as session:
        session.generate_key_pair(KEY_ID, "agreement test", algorithm)
        cert, ca = issue(session.sign_csr(KEY_ID, "Баатар Ариун"))
    return AgreementKey(info.serial, KEY_ID, cert, (ca,))


def validate(pdf: bytes, root_der: bytes) -> object:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    signatures = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert [s.field_name for s in signatures] == [SIGNATURE_FIELD]
    return validate_pdf_signature(signatures[0], ValidationContext(trust_roots=[asn1_x509.Certificate.load(root_der)]))


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.RSA2048, KeyAlgorithm.P256])
def test_agreement_signed_on_the_token_validates_with_pyhanko(softhsm: SoftHsmStore, token_adapter: Pkcs11Token,
                                                              algorithm: KeyAlgorithm) -> None:
    key = personalise(softhsm, token_adapter, algorithm)
    pdf = Pkcs11AgreementSigner(token_adapter).sign(facts(), key, USER_PIN)

    status = validate(pdf, key.chain_der[-1])
    assert status.intact and status.valid and status.trusted      # type: ignore[attr-defined]
    assert status.coverage.name == "ENTIRE_FILE"                   # type: ignore[attr-defined]
    assert status.signing_cert.dump() == key.certificate_der       # type: ignore[attr-defined]
    assert status.pkcs7_signature_mechanism in ("sha256_rsa", "rsassa_pkcs1v15", "sha256_ecdsa", "ecdsa")  # type: ignore[attr-defined]
    # PAdES: the ETSI subfilter, and the certificate and its chain travel inside the signature.
    assert b"/ETSI.CAdES.detached" in pdf
    embedded = {c.dump() for c in status.validation_path}          # type: ignore[attr-defined]
    assert key.certificate_der in embedded and key.chain_der[0] in embedded
    # PAdES baseline B-B (ETSI EN 319 142-1 §5.2): the signing-certificate-v2 attribute binds the certificate;
    # no CMS signing-time (the time is the signature dictionary's /M).
    from pyhanko.pdf_utils.reader import PdfFileReader

    signer_info = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0].signer_info
    attributes = {a["type"].native for a in signer_info["signed_attrs"]}
    assert {"content_type", "message_digest", "signing_certificate_v2"} <= attributes
    assert "signing_time" not in attributes
    assert USER_PIN.reveal().encode() not in pdf
    with token_adapter.session(key.token_serial, USER_PIN) as session:
        assert session.key_attributes(KEY_ID)["extractable"] is False


@needs_poppler
def test_poppler_pdfsig_agrees_and_the_text_is_the_holders(softhsm: SoftHsmStore, token_adapter: Pkcs11Token,
                                                          tmp_path: Path) -> None:
    key = personalise(softhsm, token_adapter, KeyAlgorithm.P256)
    path = tmp_path / "agreement-kk.pdf"
    path.write_bytes(Pkcs11AgreementSigner(token_adapter).sign(facts("kk", "KZ", "0AB1C2"), key, USER_PIN))

    out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60).stdout
    assert f"Signature Field Name: {SIGNATURE_FIELD}" in out
    assert "Signature Type: ETSI.CAdES.detached" in out
    assert "Signature is Valid." in out
    assert "Total document signed" in out
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, timeout=60).stdout
    for needle in ("ЭЛЕКТРОНДЫҚ ЦИФРЛЫҚ ҚОЛТАҢБА", "Баатар Ариун", "НЭ80000000", "0AB1C2", "88 000 ₸",
                   "«Электрондық құжат және электрондық цифрлық қолтаңба туралы»"):
        assert needle in " ".join(text.split()), needle
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, timeout=60).stdout
    rows = [line.split() for line in fonts.splitlines()[2:]]
    assert rows and all(row[-5] == "yes" for row in rows), fonts      # every font embedded


def test_a_tampered_agreement_no_longer_validates(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    key = personalise(softhsm, token_adapter, KeyAlgorithm.P256)
    pdf = Pkcs11AgreementSigner(token_adapter).sign(facts(), key, USER_PIN)
    at = pdf.index(b"/Author")
    tampered = pdf[:at] + b"/Authos" + pdf[at + 7:]
    status = validate(tampered, key.chain_der[-1])
    assert not status.intact                                       # type: ignore[attr-defined]


def test_wrong_pin_signs_nothing(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    key = personalise(softhsm, token_adapter, KeyAlgorithm.P256)
    with pytest.raises(InvalidPin):
        Pkcs11AgreementSigner(token_adapter).sign(facts(), key, Pin("000000"))


def test_no_key_under_the_id_is_key_missing(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> None:
    key = personalise(softhsm, token_adapter, KeyAlgorithm.P256)
    other = AgreementKey(key.token_serial, b"\x00\x01", key.certificate_der, key.chain_der)
    with pytest.raises(TokenError) as caught:
        Pkcs11AgreementSigner(token_adapter).sign(facts(), other, USER_PIN)
    assert caught.value.data["reason"] == "key_missing"


@pytest.mark.parametrize("country", ["MN", "KZ", "KG"])
@pytest.mark.parametrize("language", ["mn", "kk", "ky", "ru", "en"])
def test_every_country_and_language_has_its_text(country: str, language: str) -> None:
    title, blocks = AgreementText().fill(facts(language, country))
    text = " ".join(line for _, line in blocks)
    assert title and "{" not in title + text
    assert "Баатар Ариун" in text and "НЭ80000000" in text and "5A3F00112233" in text


def test_render_is_a_pdf_with_the_fonts_embedded() -> None:
    pdf = render_pdf(facts("ky", "KG"))
    assert pdf.startswith(b"%PDF-") and b"/FontFile2" in pdf
    assert b"/Helvetica" not in pdf
