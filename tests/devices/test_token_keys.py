"""Key pairs on the eToken (SoftHSM2): at most one pair per CKA_ID, half pairs are no pair.

A power cut inside C_GenerateKeyPair after the public key object is stored and before the private
one leaves a lone public key under the key id.  The retry must not add a second pair beside it,
and the CSR must carry the pair's own public key.  Half pairs are made here with OpenSC's
``pkcs11-tool`` (a third-party tool), which also checks the objects the token ends up with.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm
from tests.devices.test_token import _issue

needs_pkcs11_tool = pytest.mark.skipif(shutil.which("pkcs11-tool") is None, reason="needs OpenSC's pkcs11-tool")

USER_PIN = Pin("482916")
LABEL = "TAMGA NE80000000"
KEY_ID = bytes.fromhex("5eed0fa11ed0c0ffee")


def pkcs11_tool(softhsm: SoftHsmStore, *args: str) -> str:
    """Run OpenSC's pkcs11-tool on the token labelled LABEL, logged in as the user."""
    out = subprocess.run(
        ["pkcs11-tool", "--module", softhsm.module, "--token-label", LABEL, "--login", "--pin", USER_PIN.reveal(),
         *args],
        check=True, capture_output=True, text=True, env={**os.environ, **softhsm.env}, timeout=60)
    return out.stdout


def objects_by_id(softhsm: SoftHsmStore) -> list[tuple[str, str]]:
    """(kind, hex CKA_ID) of every object ``pkcs11-tool -O`` lists; kind is 'private', 'public' or 'certificate'."""
    found: list[tuple[str, str]] = []
    kind = ""
    for line in pkcs11_tool(softhsm, "-O").splitlines():
        head = re.match(r"(Private Key|Public Key|Certificate) Object", line)
        if head:
            kind = {"Private Key": "private", "Public Key": "public", "Certificate": "certificate"}[head.group(1)]
        m = re.match(r"\s+ID:\s+([0-9a-f]+)", line)
        if m and kind:
            found.append((kind, m.group(1)))
            kind = ""
    return found


def delete_object(softhsm: SoftHsmStore, kind: str, key_id: bytes) -> None:
    pkcs11_tool(softhsm, "--delete-object", "--type", kind, "--id", key_id.hex())


def write_foreign_public_key(softhsm: SoftHsmStore, tmp_path: Path, key_id: bytes, algorithm: KeyAlgorithm) -> bytes:
    """A public key object (not generated on the token) under ``key_id``; returns its SPKI DER."""
    key = (rsa.generate_private_key(65537, 2048) if algorithm is KeyAlgorithm.RSA2048
           else ec.generate_private_key(ec.SECP256R1()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "stray.der"
    path.write_bytes(spki)
    pkcs11_tool(softhsm, "--write-object", str(path), "--type", "pubkey", "--id", key_id.hex())
    return spki


def csr_key(csr_der: bytes) -> bytes:
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    return csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_key(a: bytes, b: bytes) -> bool:
    def norm(d: bytes) -> bytes:
        return serialization.load_der_public_key(d).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return norm(a) == norm(b)


@pytest.fixture
def token(softhsm: SoftHsmStore, token_adapter: Pkcs11Token) -> str:
    serial = softhsm.add_blank_token()
    token_adapter.initialise(serial, SoPin(FACTORY_SO_PIN), SoPin("5f1e9c0d2a7b4e33"), LABEL, USER_PIN)
    return serial


def assert_one_pair(softhsm: SoftHsmStore, key_id: bytes) -> None:
    mine = sorted(kind for kind, hexid in objects_by_id(softhsm) if hexid == key_id.hex())
    assert mine in (["private", "public"], ["certificate", "private", "public"]), mine


@needs_pkcs11_tool
@pytest.mark.parametrize("algorithm", [KeyAlgorithm.P256, KeyAlgorithm.RSA2048])
def test_lone_public_key_from_a_crashed_keygen_is_replaced(
        token_adapter: Pkcs11Token, softhsm: SoftHsmStore, token: str, algorithm: KeyAlgorithm) -> None:
    """Keygen crashed after storing the public key: no pair; the retry leaves exactly one pair."""
    with token_adapter.session(token, USER_PIN) as s:
        stray = s.generate_key_pair(KEY_ID, "Tamga signing key", algorithm)
    delete_object(softhsm, "privkey", KEY_ID)      # the private key was never stored
    assert objects_by_id(softhsm) == [("public", KEY_ID.hex())]
    with token_adapter.session(token, USER_PIN) as s:
        assert s.find_public_key(KEY_ID) is None
        spki = s.generate_key_pair(KEY_ID, "Tamga signing key", algorithm)
        assert not same_key(spki, stray)
        assert s.find_public_key(KEY_ID) == spki
        assert same_key(csr_key(s.sign_csr(KEY_ID, "NE80000000")), spki)
    assert_one_pair(softhsm, KEY_ID)


@needs_pkcs11_tool
def test_foreign_public_key_under_the_id_is_not_used(
        token_adapter: Pkcs11Token, softhsm: SoftHsmStore, token: str, tmp_path: Path) -> None:
    stray = write_foreign_public_key(softhsm, tmp_path, KEY_ID, KeyAlgorithm.P256)
    with token_adapter.session(token, USER_PIN) as s:
        assert s.find_public_key(KEY_ID) is None
        spki = s.generate_key_pair(KEY_ID, "k", KeyAlgorithm.P256)
        assert not same_key(spki, stray)
        assert same_key(csr_key(s.sign_csr(KEY_ID, "NE80000000")), spki)
    assert_one_pair(softhsm, KEY_ID)


@needs_pkcs11_tool
def test_lone_private_key_is_no_pair_and_is_replaced(
        token_adapter: Pkcs11Token, softhsm: SoftHsmStore, token: str) -> None:
    with token_adapter.session(token, USER_PIN) as s:
        s.generate_key_pair(KEY_ID, "k", KeyAlgorithm.P256)
    delete_object(softhsm, "pubkey", KEY_ID)
    with token_adapter.session(token, USER_PIN) as s:
        assert s.find_public_key(KEY_ID) is None
        spki = s.generate_key_pair(KEY_ID, "k", KeyAlgorithm.P256)
        assert s.find_public_key(KEY_ID) == spki
    assert_one_pair(softhsm, KEY_ID)


@needs_pkcs11_tool
@pytest.mark.parametrize("algorithm", [KeyAlgorithm.P256, KeyAlgorithm.RSA2048])
def test_stray_public_key_beside_a_pair_is_never_the_pairs_key(
        token_adapter: Pkcs11Token, softhsm: SoftHsmStore, token: str, tmp_path: Path,
        algorithm: KeyAlgorithm) -> None:
    """A token personalised before the fix: a stray public key beside the retried pair, same CKA_ID."""
    with token_adapter.session(token, USER_PIN) as s:
        spki = s.generate_key_pair(KEY_ID, "k", algorithm)
    write_foreign_public_key(softhsm, tmp_path, KEY_ID, algorithm)
    with token_adapter.session(token, USER_PIN) as s:
        for _ in range(3):
            assert s.find_public_key(KEY_ID) == spki
            assert same_key(csr_key(s.sign_csr(KEY_ID, "NE80000000")), spki)
        cert_der, ca_der = _issue(s.sign_csr(KEY_ID, "NE80000000"))
        s.install_certificate(KEY_ID, "Tamga signing certificate", cert_der, [ca_der])
        assert (KEY_ID, cert_der) in s.certificates()
    assert_one_pair(softhsm, KEY_ID)      # installing the certificate removed the stray


@needs_pkcs11_tool
def test_generate_refuses_to_add_a_second_pair(token_adapter: Pkcs11Token, softhsm: SoftHsmStore, token: str) -> None:
    from kiosk.errors import TokenError

    with token_adapter.session(token, USER_PIN) as s:
        spki = s.generate_key_pair(KEY_ID, "k", KeyAlgorithm.P256)
        with pytest.raises(TokenError) as err:
            s.generate_key_pair(KEY_ID, "k", KeyAlgorithm.P256)
        assert err.value.data["reason"] == "key_exists"
        assert s.find_public_key(KEY_ID) == spki
    assert_one_pair(softhsm, KEY_ID)


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.RSA2048, KeyAlgorithm.P256])
def test_public_key_is_the_canonical_spki_certificates_carry(
        token_adapter: Pkcs11Token, token: str, algorithm: KeyAlgorithm) -> None:
    """Byte for byte (the kiosk compares SHA-256 digests): RSA needs its NULL algorithm parameters."""
    with token_adapter.session(token, USER_PIN) as s:
        spki = s.generate_key_pair(KEY_ID, "k", algorithm)
        csr_der = s.sign_csr(KEY_ID, "NE80000000")
        cert_der, _ = _issue(csr_der)
        assert s.find_public_key(KEY_ID) == spki
    canonical = serialization.load_der_public_key(spki).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == canonical
    from asn1crypto import csr as asn1_csr
    assert asn1_csr.CertificationRequest.load(csr_der)["certification_request_info"]["subject_pk_info"].dump() == spki
    cert_spki = x509.load_der_x509_certificate(cert_der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert_spki == spki
