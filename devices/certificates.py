"""X.509 parsing and signature checks for the flows (cryptography), behind ``kiosk.ports.CertificateReader``."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.errors import InvalidInput
from kiosk.ports import CertificateFacts


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    value = values[0].value if values else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _authentication_only(cert: x509.Certificate) -> bool:
    """EKU clientAuth and a key usage without nonRepudiation (contentCommitment): not for signing documents."""
    try:
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in purposes and not usage.content_commitment


class X509Reader:
    """Implements :class:`kiosk.ports.CertificateReader`."""

    def describe(self, certificate_der: bytes) -> CertificateFacts:
        cert = self._load(certificate_der)
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        subject = cert.subject
        return CertificateFacts(
            serial_hex=format(cert.serial_number, "X"),
            subject_serial_number=_attribute(subject, NameOID.SERIAL_NUMBER),
            common_name=_attribute(subject, NameOID.COMMON_NAME),
            given_name=_attribute(subject, NameOID.GIVEN_NAME),
            surname=_attribute(subject, NameOID.SURNAME),
            organisation=_attribute(subject, NameOID.ORGANIZATION_NAME),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            is_ca=is_ca,
            public_key_sha256=hashlib.sha256(spki).hexdigest(),
            authentication_only=_authentication_only(cert),
        )

    def verify(self, certificate_der: bytes, data: bytes, signature: bytes) -> bool:
        key = self._load(certificate_der).public_key()
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                return False
        except (InvalidSignature, ValueError):
            return False
        return True

    @staticmethod
    def _load(der: bytes) -> x509.Certificate:
        try:
            return x509.load_der_x509_certificate(der)
        except ValueError as err:
            raise InvalidInput("not a DER X.509 certificate", field="certificate") from err
