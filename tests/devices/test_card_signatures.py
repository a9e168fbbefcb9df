"""The challenge-response allow-list: RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and P-384 are accepted,
anything else is refused with its reason (issue 8, item 5).  PSS and P-384 on the real stack: a
virtual PIV card in pcscd + vpcd, one that signs only PSS blocks and one with a P-384 key."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from devices.cardprofiles import ChallengeScheme, pss_signature_block
from devices.idcard import IdCardReader, challenge_scheme, verify_challenge_signature
from devices.sim.national_ca import CardHolder, NationalIdCa
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardAlgorithmRefused, CardAuthenticationFailed, CardError
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
NOW = dt.datetime.now(dt.UTC)


def _certificate(key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Дорж Бат")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1)))
    return builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())


@pytest.mark.parametrize(("make_key", "padding", "scheme"), [
    (lambda: rsa.generate_private_key(65537, 2048), "pkcs1v15", ChallengeScheme.RSA_PKCS1V15_SHA256),
    (lambda: rsa.generate_private_key(65537, 3072), "pss", ChallengeScheme.RSA_PSS_SHA256),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "pss", ChallengeScheme.ECDSA_P256_SHA256),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "pkcs1v15", ChallengeScheme.ECDSA_P384_SHA384),
])
def test_the_allowed_keys_get_their_scheme(make_key: Callable[[], CertificateIssuerPrivateKeyTypes],
                                           padding: str, scheme: ChallengeScheme) -> None:
    assert challenge_scheme(_certificate(make_key()), padding) is scheme


@pytest.mark.parametrize(("make_key", "padding", "algorithm"), [
    (lambda: rsa.generate_private_key(65537, 1024), "pkcs1v15", "rsa1024"),
    (lambda: ec.generate_private_key(ec.SECP521R1()), "pkcs1v15", "secp521r1"),
    (lambda: ec.generate_private_key(ec.SECP256K1()), "pkcs1v15", "secp256k1"),
    (lambda: ed25519.Ed25519PrivateKey.generate(), "pkcs1v15", "Ed25519PublicKey"),
    (lambda: rsa.generate_private_key(65537, 2048), "raw", "raw"),
])
def test_anything_else_is_refused_with_its_algorithm(make_key: Callable[[], CertificateIssuerPrivateKeyTypes],
                                                     padding: str, algorithm: str) -> None:
    with pytest.raises(CardAlgorithmRefused) as refused:
        challenge_scheme(_certificate(make_key()), padding)
    assert refused.value.data["algorithm"] == algorithm
    assert refused.value.key == "error.card_algorithm_refused" and not refused.value.recoverable


def test_a_pss_block_verifies_with_cryptography_and_a_pkcs1_signature_is_not_a_pss_one() -> None:
    key = rsa.generate_private_key(65537, 2048)
    certificate = _certificate(key)
    challenge = os.urandom(32)
    block = int.from_bytes(pss_signature_block(challenge, 2048), "big")
    numbers = key.private_numbers()
    raw = pow(block, numbers.d, numbers.public_numbers.n).to_bytes(256, "big")
    signed = verify_challenge_signature(certificate, challenge, raw, ChallengeScheme.RSA_PSS_SHA256)
    assert signed.algorithm == "rsa-pss-sha256"
    with pytest.raises(CardAuthenticationFailed):
        verify_challenge_signature(certificate, challenge, raw, ChallengeScheme.RSA_PKCS1V15_SHA256)


@pytest.fixture(scope="module")
def holder() -> CardHolder:
    return CardHolder(given_name="Бат", surname="Дорж", register_number="НЭ80000000")


def test_a_p384_card_signs_the_challenge_with_sha384(reader_name: str, national_ca: NationalIdCa,
                                                     holder: CardHolder, insert_card: InsertCard) -> None:
    card = national_ca.issue_card(holder, key_type="p384")
    insert_card(card)
    with IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates) as reader:
        identity = reader.read_identity()
        signed = reader.authenticate(Pin(card.pin), os.urandom(32), expected_sha256=identity.certificate_sha256)
    assert signed.algorithm == "ecdsa-p384-sha384"


def test_a_card_that_signs_only_pss_is_verified_with_pss(reader_name: str, national_ca: NationalIdCa,
                                                         holder: CardHolder, insert_card: InsertCard) -> None:
    card = national_ca.issue_card(holder, key_type="rsa2048")
    insert_card(card, rsa_pss_only=True)
    with (IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates) as pkcs1,
          pytest.raises(CardError)):                       # the card refuses a PKCS#1 v1.5 block
        pkcs1.authenticate(Pin(card.pin), os.urandom(32))
    with IdCardReader(reader_name, national_ca.trust_anchors, national_ca.intermediates, rsa_padding="pss") as pss:
        signed = pss.authenticate(Pin(card.pin), os.urandom(32))
    assert signed.algorithm == "rsa-pss-sha256"
