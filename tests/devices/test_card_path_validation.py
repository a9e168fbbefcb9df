"""The ID card's certification path through cryptography's x509.verification client verifier: unknown
critical extensions, extended key usage, and the card bound by the SHA-256 of its certificate."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from devices.idcard import IdCardReader, validate_chain
from devices.piv import INS_VERIFY
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardChanged, CertificateInvalid
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
NOW = dt.datetime.now(dt.UTC)
UNKNOWN = ObjectIdentifier("1.3.6.1.4.1.99999.1")


def _leaf(ca: NationalIdCa, extra: list[tuple[x509.ExtensionType, bool]], *,
          eku: list[ObjectIdentifier] | tuple[ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
          key: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Дорж Бат"),
                         x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, "PNOMN-NE80000000")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.issuing.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                              critical=True))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca._issuing_key, hashes.SHA384())


def test_a_good_card_certificate_validates(national_ca: NationalIdCa) -> None:
    path = validate_chain(_leaf(national_ca, []), national_ca.trust_anchors, national_ca.intermediates, NOW)
    assert [c.subject for c in path[1:]] == [national_ca.issuing.subject, national_ca.trust_anchors[0].subject]


def test_an_unknown_critical_extension_is_refused(national_ca: NationalIdCa) -> None:
    leaf = _leaf(national_ca, [(x509.UnrecognizedExtension(UNKNOWN, b"\x05\x00"), True)])
    with pytest.raises(CertificateInvalid) as caught:
        validate_chain(leaf, national_ca.trust_anchors, national_ca.intermediates, NOW)
    assert caught.value.data["reason"] == "critical_extension"


def test_an_unknown_non_critical_extension_is_ignored(national_ca: NationalIdCa) -> None:
    leaf = _leaf(national_ca, [(x509.UnrecognizedExtension(UNKNOWN, b"\x05\x00"), False)])
    validate_chain(leaf, national_ca.trust_anchors, national_ca.intermediates, NOW)


@pytest.mark.parametrize(("eku", "accepted"), [
    ([ExtendedKeyUsageOID.CLIENT_AUTH], True),
    ([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION], True),
    ([ExtendedKeyUsageOID.SMARTCARD_LOGON], True),
    (None, True),                                             # no EKU: any use its key usage allows
    ([ExtendedKeyUsageOID.SERVER_AUTH], False),
    ([ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION], False),
], ids=["client", "client+email", "smartcard-logon", "none", "server", "code+email"])
def test_extended_key_usage_must_allow_authentication(national_ca: NationalIdCa,
                                                      eku: list[ObjectIdentifier] | None, accepted: bool) -> None:
    leaf = _leaf(national_ca, [], eku=eku)
    if accepted:
        validate_chain(leaf, national_ca.trust_anchors, national_ca.intermediates, NOW)
        return
    with pytest.raises(CertificateInvalid) as caught:
        validate_chain(leaf, national_ca.trust_anchors, national_ca.intermediates, NOW)
    assert caught.value.data["reason"] == "extended_key_usage"


def test_a_card_with_an_unknown_critical_extension_is_refused_by_the_reader(
        id_reader: IdCardReader, insert_card: InsertCard, national_ca: NationalIdCa, holder: CardHolder) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf(national_ca, [(x509.UnrecognizedExtension(UNKNOWN, b"\x05\x00"), True)], key=key)
    card = insert_card(CardPersonalisation(holder, "p256", key, leaf, os.urandom(16)))
    with pytest.raises(CertificateInvalid) as caught:
        id_reader.read_identity()
    assert caught.value.data["reason"] == "critical_extension"
    with pytest.raises(CertificateInvalid):
        id_reader.authenticate(Pin("123456"), b"c" * 32)
    assert INS_VERIFY not in [ins for ins, _ in card.apdu_log]


def test_the_card_is_bound_by_the_sha256_of_its_certificate(
        id_reader: IdCardReader, insert_card: InsertCard, p256_card: CardPersonalisation) -> None:
    card = insert_card(p256_card)
    identity = id_reader.read_identity()
    fingerprint = hashlib.sha256(identity.certificate_der).hexdigest()

    with pytest.raises(CardChanged):
        id_reader.authenticate(Pin("123456"), b"c" * 32, expected_sha256="00" * 32)
    assert INS_VERIFY not in [ins for ins, _ in card.apdu_log]

    id_reader.authenticate(Pin("123456"), b"c" * 32, expected_sha256=fingerprint)
