"""Certificate profiles per country: subject attributes, policies, qcStatements and key usage.

The central's settings hold one profile per country (``TAMGA_CERTIFICATE_PROFILES``: Mongolia,
Kazakhstan, Kyrgyzstan); an order is issued under the profile of its holder's register number
(``kiosk.register.country_of``), else under the central's default (``TAMGA_CERTIFICATE_PROFILE``).

A profile's signing certificate follows ETSI EN 319 412-2/-5 for QCP-n-qscd: key usage
nonRepudiation (contentCommitment) alone and critical, no extended key usage, the CA's own policy
plus QCP-n-qscd (0.4.0.194112.1.2), and qcStatements (QcCompliance, QcSSCD, QcType esign,
QcPDS, QcCClegislation, and the pkixQCSyntax-v2 semantics identifier of the serialNumber).
Neither cryptography nor django-ca models qcStatements: its DER is built here with pyasn1 and
passed as an unrecognised extension.

A profile with an ``authentication_policy`` (Kazakhstan: NCA issues separate AUTH and signing keys)
also issues an authentication certificate for a second key on the same token, with the same
subject and validity (ETSI EN 319 412-2 §4.3.2): key usage digitalSignature alone and critical,
extended key usage clientAuth, the profile's authentication policy plus NCP+ (0.4.0.2042.1.2, the
key is on a secure device), and of the qcStatements only the serialNumber's semantics identifier:
it is no qualified signature certificate (no QcCompliance, no QcType esign).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from pyasn1.codec.der import encoder
from pyasn1.type import char, constraint, namedtype, univ
from pyasn1_modules import rfc3739

from central.orders.errors import ApiError
from kiosk import register
from kiosk.order import X520_MAX_LENGTH

QC_STATEMENTS_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")
QCP_N_QSCD = x509.ObjectIdentifier("0.4.0.194112.1.2")
NCP_PLUS = x509.ObjectIdentifier("0.4.0.2042.1.2")
"""ETSI EN 319 411-1 NCP+: the normalised policy for a key on a secure cryptographic device."""
QC_COMPLIANCE = "0.4.0.1862.1.1"
QC_SSCD = "0.4.0.1862.1.4"
QC_PDS = "0.4.0.1862.1.5"
QC_TYPE = "0.4.0.1862.1.6"
QC_TYPE_ESIGN = "0.4.0.1862.1.6.1"
QC_CC_LEGISLATION = "0.4.0.1862.1.7"
QCS_PKIX_SYNTAX_V2 = "1.3.6.1.5.5.7.11.2"
SEMANTICS_ID_NATURAL = "0.4.0.194121.1.1"
"""ETSI EN 319 412-1 natural-person semantics: serialNumber is ``PNO`` + country + ``-`` + number."""

# X.680 PrintableString; cryptography encodes countryName and serialNumber as that type by default.
_PRINTABLE_STRING = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]+$")


class _PdsLocation(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("url", char.IA5String()),
        namedtype.NamedType("language", char.PrintableString().subtype(
            subtypeSpec=constraint.ValueSizeConstraint(2, 2))),
    )


class _PdsLocations(univ.SequenceOf):
    componentType = _PdsLocation()


class _QcType(univ.SequenceOf):
    componentType = univ.ObjectIdentifier()


class _QcCClegislation(univ.SequenceOf):
    componentType = char.PrintableString().subtype(subtypeSpec=constraint.ValueSizeConstraint(2, 2))


def pds_url(country: str, language: str) -> str:
    """Where the central serves the profile's PKI disclosure statement in ``language`` (``central/orders/pds.py``)."""
    return f"{settings.TAMGA_PDS_BASE_URL}/{country}/{language}.pdf"


@dataclass(frozen=True)
class Pds:
    """One PKI disclosure statement: an https URL and its ISO 639-1 language."""

    url: str
    language: str


@dataclass(frozen=True)
class CertificateProfile:
    """What a country's qualified signature certificate carries (one entry of ``TAMGA_CERTIFICATE_PROFILES``).

    ``serial_number`` is ``"PNO"`` (ETSI natural-person form ``PNOMN-NE80000000``, semantics
    0.4.0.194121.1.1) or a national prefix written before the number without a dash (``"IIN"`` →
    ``IIN860101300125``, semantics ``semantics_oid``, the CA's own definition).
    """

    country: str
    serial_number: str
    policy: x509.ObjectIdentifier
    policy_notice: str
    pds: tuple[Pds, ...]
    semantics_oid: str = SEMANTICS_ID_NATURAL
    organisation_identifier: str = "NTR"
    term_years: tuple[int, ...] = (1, 2)
    authentication_policy: x509.ObjectIdentifier | None = None

    @property
    def separate_authentication(self) -> bool:
        """Whether the token gets an authentication certificate for a second key beside the signing one."""
        return self.authentication_policy is not None

    @classmethod
    def from_settings(cls, country: str, data: Mapping[str, Any]) -> CertificateProfile:
        pds = tuple(Pds(pds_url(country, str(language)), str(language)) for language in data["pds"])
        if not pds or any(not p.url.startswith("https://") or len(p.language) != 2 for p in pds):
            raise ValueError(f"TAMGA_CERTIFICATE_PROFILES[{country!r}]: pds are 2-letter languages and "
                             "TAMGA_PDS_BASE_URL an https URL")
        if not any(p.language == "en" for p in pds):
            raise ValueError(f"TAMGA_CERTIFICATE_PROFILES[{country!r}]: one PDS must be in English")
        return cls(country=country, serial_number=str(data["serial_number"]),
                   policy=x509.ObjectIdentifier(str(data["policy"])), policy_notice=str(data["policy_notice"]),
                   pds=pds, semantics_oid=str(data.get("semantics_oid", SEMANTICS_ID_NATURAL)),
                   organisation_identifier=str(data.get("organisation_identifier", "NTR")),
                   term_years=tuple(int(t) for t in data.get("term_years", (1, 2))),
                   authentication_policy=(x509.ObjectIdentifier(str(data["authentication_policy"]))
                                          if data.get("authentication_policy") else None))

    # --- subject ------------------------------------------------------------------------------------
    def holder_serial_number(self, register_number: str) -> str:
        """The subject serialNumber (PrintableString); ApiError 409 ``order_invalid`` if it cannot be written."""
        try:
            if self.serial_number == register.SEMANTICS_PREFIX:
                value = register.certificate_serial_number(register_number, self.country)
            else:
                value = self.serial_number + register.to_ascii(register_number)
        except ValueError:
            value = ""
        if not _PRINTABLE_STRING.match(value):
            raise ApiError(409, "order_invalid", "the order's register number cannot be written to a certificate",
                           field="register_number")
        return value

    def subject(self, *, given_name: str, surname: str, register_number: str, organisation: str,
                organisation_register: str, department: str, position: str) -> x509.Name:
        """C, O, organizationIdentifier, OU, title, CN, givenName, surname, serialNumber."""
        full_name = " ".join(part for part in (surname, given_name) if part)
        serial_number = self.holder_serial_number(register_number)
        for field, value in (("name", full_name), ("organisation", organisation),
                             ("department", department), ("position", position)):
            if len(value) > X520_MAX_LENGTH:     # cryptography would refuse it: a 409, not a 500
                raise ApiError(409, "order_invalid", f"the order's {field} is longer than a certificate allows",
                               field=field)
        attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, self.country)]
        if organisation:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
        if organisation and organisation_register and _PRINTABLE_STRING.match(organisation_register):
            attributes.append(x509.NameAttribute(
                NameOID.ORGANIZATION_IDENTIFIER,
                f"{self.organisation_identifier}{self.country}-{organisation_register}"))
        if department:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, department))
        if position:
            attributes.append(x509.NameAttribute(NameOID.TITLE, position))
        attributes += [
            x509.NameAttribute(NameOID.COMMON_NAME, full_name),
            x509.NameAttribute(NameOID.GIVEN_NAME, given_name),
            x509.NameAttribute(NameOID.SURNAME, surname),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number),
        ]
        return x509.Name(attributes)

    # --- extensions ---------------------------------------------------------------------------------
    def qc_statements_der(self, *, qualified: bool = True) -> bytes:
        """DER of the qcStatements extension value (RFC 3739, ETSI EN 319 412-5).

        ``qualified=False`` (the authentication certificate): the semantics identifier alone.
        """
        statements = rfc3739.QCStatements()
        semantics = rfc3739.SemanticsInformation()
        semantics["semanticsIndentifier"] = univ.ObjectIdentifier(self.semantics_oid)  # sic, pyasn1-modules
        if not qualified:
            statement = rfc3739.QCStatement()
            statement["statementId"] = univ.ObjectIdentifier(QCS_PKIX_SYNTAX_V2)
            statement["statementInfo"] = univ.Any(encoder.encode(semantics))
            statements.append(statement)
            return bytes(encoder.encode(statements))
        qc_type = _QcType()
        qc_type.append(univ.ObjectIdentifier(QC_TYPE_ESIGN))
        locations = _PdsLocations()
        for pds in self.pds:
            location = _PdsLocation()
            location["url"] = pds.url
            location["language"] = pds.language
            locations.append(location)
        legislation = _QcCClegislation()
        legislation.append(self.country)
        for oid, info in ((QCS_PKIX_SYNTAX_V2, semantics), (QC_COMPLIANCE, None), (QC_SSCD, None),
                          (QC_TYPE, qc_type), (QC_PDS, locations), (QC_CC_LEGISLATION, legislation)):
            statement = rfc3739.QCStatement()
            statement["statementId"] = univ.ObjectIdentifier(oid)
            if info is not None:
                statement["statementInfo"] = univ.Any(encoder.encode(info))
            statements.append(statement)
        return bytes(encoder.encode(statements))

    def extensions(self, email: str = "") -> list[x509.Extension[Any]]:
        """Key usage nonRepudiation (critical), the policies, qcStatements and, if ASCII, the e-mail as rfc822Name.

        CRL distribution point and AIA come from the issuing CA (django-ca's ``add_*_url``).
        """
        key_usage = x509.KeyUsage(
            digital_signature=False, content_commitment=True, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
        extensions: list[x509.Extension[Any]] = [
            x509.Extension(x509.KeyUsage.oid, True, key_usage),
            x509.Extension(x509.CertificatePolicies.oid, False, x509.CertificatePolicies([
                x509.PolicyInformation(self.policy, [x509.UserNotice(None, self.policy_notice)]),
                x509.PolicyInformation(QCP_N_QSCD, None),
            ])),
            x509.Extension(QC_STATEMENTS_OID, False,
                           x509.UnrecognizedExtension(QC_STATEMENTS_OID, self.qc_statements_der())),
        ]
        return extensions + _email_name(email)

    def authentication_extensions(self, email: str = "") -> list[x509.Extension[Any]]:
        """Key usage digitalSignature (critical), EKU clientAuth, the authentication policy and NCP+,
        the semantics identifier, the ASCII e-mail.  ValueError if the profile has no such certificate."""
        if self.authentication_policy is None:
            raise ValueError(f"the {self.country} profile issues no authentication certificate")
        key_usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
        extensions: list[x509.Extension[Any]] = [
            x509.Extension(x509.KeyUsage.oid, True, key_usage),
            x509.Extension(x509.ExtendedKeyUsage.oid, False, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])),
            x509.Extension(x509.CertificatePolicies.oid, False, x509.CertificatePolicies([
                x509.PolicyInformation(self.authentication_policy, None),
                x509.PolicyInformation(NCP_PLUS, None),
            ])),
            x509.Extension(QC_STATEMENTS_OID, False,
                           x509.UnrecognizedExtension(QC_STATEMENTS_OID, self.qc_statements_der(qualified=False))),
        ]
        return extensions + _email_name(email)


def _email_name(email: str) -> list[x509.Extension[Any]]:
    """The holder's e-mail as rfc822Name, if ASCII (rfc822Name is IA5String; SmtpUTF8Mailbox is not offered)."""
    if not email or not email.isascii():
        return []
    return [x509.Extension(x509.SubjectAlternativeName.oid, False,
                           x509.SubjectAlternativeName([x509.RFC822Name(email)]))]


def all_profiles() -> dict[str, CertificateProfile]:
    return {country: CertificateProfile.from_settings(country, data)
            for country, data in settings.TAMGA_CERTIFICATE_PROFILES.items()}


def profile_for(register_number: str) -> CertificateProfile:
    """The profile of the holder's country if the central has one, else the central's default profile."""
    profiles = all_profiles()
    country = register.country_of(register_number)
    if country in profiles:
        return profiles[country]
    return profiles[settings.TAMGA_CERTIFICATE_PROFILE]
