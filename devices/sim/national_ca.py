"""A test "national ID" PKI: root CA → issuing CA → one authentication certificate per card.

For tests and the demo only: CA keys are written unencrypted next to their certificates.

    ca = NationalIdCa.create(tmp_path / "pki")
    card = ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"), key_type="p256")
    VirtualPivCard(card, port).insert()
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from kiosk.register import certificate_serial_number

KeyType = Literal["rsa2048", "p256", "p384"]
CardPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

ROOT_NAME = "Test National ID Root"
ISSUING_NAME = "Test National ID Issuing CA"
COUNTRY = "MN"
ORGANIZATION = "Test General Authority for State Registration"

_ROOT_CERT, _ROOT_KEY = "root-ca.pem", "root-ca.key"
_ISSUING_CERT, _ISSUING_KEY = "issuing-ca.pem", "issuing-ca.key"
_RESPONDER_CERT, _RESPONDER_KEY = "ocsp-responder.pem", "ocsp-responder.key"
CRL_PATH = "/crl/issuing.crl"
OCSP_PATH = "/ocsp"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class CardHolder:
    """The person on the card.  ``surname`` is the father's name; CN is "<surname> <given_name>"."""

    given_name: str
    surname: str
    register_number: str          # Cyrillic, e.g. "НЭ80000000"
    country: str = COUNTRY

    @property
    def common_name(self) -> str:
        return f"{self.surname} {self.given_name}"

    @property
    def serial_number(self) -> str:
        return certificate_serial_number(self.register_number, self.country)


@dataclass(frozen=True)
class CardPersonalisation:
    """Everything a virtual PIV card holds.  ``pin``/``puk`` are the card's reference data."""

    holder: CardHolder
    key_type: KeyType
    private_key: CardPrivateKey = field(repr=False)
    certificate: x509.Certificate
    chuid_uuid: bytes                 # 16 bytes, the CHUID GUID
    pin: str = field(default="123456", repr=False)
    puk: str = field(default="12345678", repr=False)
    pin_tries: int = 3
    puk_tries: int = 3

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def card_uuid(self) -> str:
        return self.chuid_uuid.hex()


def _new_key(key_type: KeyType) -> CardPrivateKey:
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key type {key_type!r}")


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _holder_name(holder: CardHolder) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, holder.country),
        x509.NameAttribute(NameOID.SURNAME, holder.surname),
        x509.NameAttribute(NameOID.GIVEN_NAME, holder.given_name),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, holder.serial_number),
        x509.NameAttribute(NameOID.COMMON_NAME, holder.common_name),
    ])


def _ca_certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                    issuer_key: ec.EllipticCurvePrivateKey, path_length: int | None,
                    not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer_key is not key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pem(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class NationalIdCa:
    """Root and issuing CA of the test national ID scheme, stored as PEM files in ``directory``."""

    def __init__(self, directory: Path, root: x509.Certificate, issuing: x509.Certificate,
                 issuing_key: ec.EllipticCurvePrivateKey) -> None:
        self.directory = directory
        self.root = root
        self.issuing = issuing
        self._issuing_key = issuing_key
        # Where the revocation services answer (``http://127.0.0.1:PORT``); written into the cards
        # issued while it is set (national_ca_services.NationalIdServices sets it).
        self.services_url = ""
        self._lock = threading.Lock()
        self._revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags]] = {}
        self._crl_number = 0

    @classmethod
    def create(cls, directory: Path, *, root_name: str = ROOT_NAME) -> NationalIdCa:
        """Load the CA from ``directory``, creating (and writing) what is missing."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / n for n in (_ROOT_CERT, _ROOT_KEY, _ISSUING_CERT, _ISSUING_KEY)]
        if all(p.exists() for p in paths):
            root = x509.load_pem_x509_certificate(paths[0].read_bytes())
            issuing = x509.load_pem_x509_certificate(paths[2].read_bytes())
            key = serialization.load_pem_private_key(paths[3].read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("issuing CA key is not an EC key")
            return cls(directory, root, issuing, key)
        now = _now()
        root_key = ec.generate_private_key(ec.SECP384R1())
        root_subject = _ca_name(root_name)
        root = _ca_certificate(root_subject, root_key, root_subject, root_key, 1,
                               now - dt.timedelta(days=1), now + dt.timedelta(days=3650))
        issuing_key = ec.generate_private_key(ec.SECP384R1())
        issuing = _ca_certificate(_ca_name(f"{ISSUING_NAME} ({root_name})" if root_name != ROOT_NAME
                                           else ISSUING_NAME),
                                  issuing_key, root_subject, root_key, 0,
                                  now - dt.timedelta(days=1), now + dt.timedelta(days=1825))
        _write_pem(paths[1], _key_pem(root_key))
        _write_pem(paths[3], _key_pem(issuing_key))
        _write_pem(paths[2], issuing.public_bytes(serialization.Encoding.PEM))
        _write_pem(paths[0], root.public_bytes(serialization.Encoding.PEM))
        return cls(directory, root, issuing, issuing_key)

    @property
    def trust_anchor_paths(self) -> list[Path]:
        """The root certificate(s) a kiosk trusts."""
        return [self.directory / _ROOT_CERT]

    @property
    def intermediate_paths(self) -> list[Path]:
        return [self.directory / _ISSUING_CERT]

    @property
    def trust_anchors(self) -> list[x509.Certificate]:
        return [self.root]

    @property
    def intermediates(self) -> list[x509.Certificate]:
        return [self.issuing]

    def issue_card(self, holder: CardHolder, key_type: KeyType = "rsa2048", *,
                   not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                   pin: str = "123456", puk: str = "12345678", pin_tries: int = 3,
                   ) -> CardPersonalisation:
        """A new card key and its authentication certificate from the issuing CA."""
        now = _now()
        key = _new_key(key_type)
        start = not_before or now - dt.timedelta(days=1)
        end = not_after or now + dt.timedelta(days=3 * 365)
        certificate = self._leaf(holder, key, start, end, self.issuing.subject, self._issuing_key,
                                 self.services_url)
        return CardPersonalisation(holder, key_type, key, certificate, uuid.uuid4().bytes,
                                   pin=pin, puk=puk, pin_tries=pin_tries)

    def issue_expired_card(self, holder: CardHolder, key_type: KeyType = "rsa2048") -> CardPersonalisation:
        now = _now()
        return self.issue_card(holder, key_type, not_before=now - dt.timedelta(days=400),
                               not_after=now - dt.timedelta(days=35))

    @staticmethod
    def issue_self_signed_card(holder: CardHolder, key_type: KeyType = "rsa2048", *,
                               forge_issuer: bool = False) -> CardPersonalisation:
        """A card whose certificate is signed by its own key (not issued by any national CA).

        With ``forge_issuer`` the certificate names the national issuing CA as its issuer, so only
        the signature check can tell it apart.
        """
        now = _now()
        key = _new_key(key_type)
        issuer = _ca_name(ISSUING_NAME) if forge_issuer else _holder_name(holder)
        certificate = NationalIdCa._leaf(holder, key, now - dt.timedelta(days=1),
                                         now + dt.timedelta(days=365), issuer, key)
        return CardPersonalisation(holder, key_type, key, certificate, uuid.uuid4().bytes)

    @staticmethod
    def _leaf(holder: CardHolder, key: CardPrivateKey, not_before: dt.datetime, not_after: dt.datetime,
              issuer: x509.Name, issuer_key: CertificateIssuerPrivateKeyTypes,
              services_url: str = "") -> x509.Certificate:
        public = key.public_key()
        builder = x509.CertificateBuilder()
        if services_url:
            builder = (
                builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                    [x509.UniformResourceIdentifier(services_url + CRL_PATH)], None, None, None)]),
                    critical=False)
                .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(services_url + OCSP_PATH))]),
                    critical=False))
        return (
            builder
            .subject_name(_holder_name(holder)).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(issuer_key, hashes.SHA256())
        )

    # -- revocation --------------------------------------------------------------------------------------
    def revoke(self, certificate: x509.Certificate, reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
               at: dt.datetime | None = None) -> None:
        """Revoke a card's certificate: the next CRL lists it and OCSP answers ``revoked``."""
        with self._lock:
            self._revoked[certificate.serial_number] = (at or _now(), reason)

    def revocation_of(self, serial: int) -> tuple[dt.datetime, x509.ReasonFlags] | None:
        with self._lock:
            return self._revoked.get(serial)

    def crl(self, this_update: dt.datetime, next_update: dt.datetime) -> x509.CertificateRevocationList:
        """A new CRL of the issuing CA (the CRL number grows with every call)."""
        with self._lock:
            self._crl_number += 1
            number, revoked = self._crl_number, dict(self._revoked)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuing.subject).last_update(this_update).next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuing_key.public_key()),
                           critical=False)
        )
        for serial, (when, reason) in sorted(revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
                .add_extension(x509.CRLReason(reason), critical=False).build())
        return builder.sign(self._issuing_key, hashes.SHA256())

    def ocsp_responder(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The delegated OCSP responder (id-kp-OCSPSigning, ocsp-nocheck) issued by the issuing CA."""
        cert_path, key_path = self.directory / _RESPONDER_CERT, self.directory / _RESPONDER_KEY
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError("OCSP responder key is not an EC key")
            return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
        now = _now()
        key = ec.generate_private_key(ec.SECP256R1())
        usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_ca_name("Test National ID OCSP Responder")).issuer_name(self.issuing.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuing_key.public_key()),
                           critical=False)
            .sign(self._issuing_key, hashes.SHA256())
        )
        _write_pem(key_path, _key_pem(key))
        _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key
