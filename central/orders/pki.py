"""The test CA hierarchy (root → qualified issuing CA) kept by django-ca, and the Tamga policy arc.

Both CAs are created with a public host (``CA_DEFAULT_HOSTNAME`` or ``ensure_hierarchy(host)``): the
issuing CA's certificate then carries the root's CRL distribution point and AIA (CA issuers; OCSP
at the root's CA responder), and every certificate the issuing CA signs gets its CRL, OCSP and
issuer URLs (django-ca's ``sign_*`` values, added with the profile's ``add_*_url``).  django-ca also
makes each CA's delegated OCSP responder certificate at creation.

The OIDs below sit under a TEST arc (``1.3.6.1.4.1.55555``) chosen for this reference service;
a production CA uses its own registered arc and its published certificate policy.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django_ca.models import CertificateAuthority

ROOT_NAME = "Tamga Test Root CA"
ISSUING_NAME = "Tamga Qualified Issuing CA"
ROOT_SUBJECT = "C=MN,O=Tamga Test PKI,CN=Tamga Test Root CA"
ISSUING_SUBJECT = "C=MN,O=Tamga Test PKI,CN=Tamga Qualified Issuing CA"

TAMGA_TEST_ARC = "1.3.6.1.4.1.55555"
POLICY_CLASS3 = x509.ObjectIdentifier(f"{TAMGA_TEST_ARC}.1.3")
"""Certificate policy of the Class-3 employee signature certificate (seed 000: «/Class-3/»)."""
POLICY_CLASS3_NOTICE = "Tamga TEST Class-3 signature certificate. Not for production use."

ROOT_VALIDITY_DAYS = 20 * 365
ISSUING_VALIDITY_DAYS = 10 * 365
_KEY_ARGS = ("--key-type", "EC", "--elliptic-curve", "secp384r1", "--algorithm", "SHA-384")


def issuing_policies() -> list[str]:
    """The issuing CA's certificate policies: every profile's own policies, QCP-n-qscd and, when a
    profile issues authentication certificates, NCP+."""
    from central.orders import profiles

    oids = [POLICY_CLASS3.dotted_string]
    for profile in profiles.all_profiles().values():
        for policy in (profile.policy, profile.authentication_policy):
            if policy is not None and policy.dotted_string not in oids:
                oids.append(policy.dotted_string)
    oids.append(profiles.QCP_N_QSCD.dotted_string)
    if any(p.separate_authentication for p in profiles.all_profiles().values()):
        oids.append(profiles.NCP_PLUS.dotted_string)
    return oids


def _host_args(host: str | None) -> tuple[str, ...]:
    host = host or settings.CA_DEFAULT_HOSTNAME
    return ("--default-hostname", host) if host else ("--no-default-hostname",)


def ensure_hierarchy(host: str | None = None) -> tuple[CertificateAuthority, CertificateAuthority]:
    """The (root, issuing) CAs, created with django-ca's ``init_ca`` on first use (≈1 s each).

    ``host`` (``host[:port]``, else ``CA_DEFAULT_HOSTNAME``) is written into the CRL, OCSP and CA
    issuer URLs; a hierarchy created earlier keeps the URLs it was created with.
    """
    with transaction.atomic():
        root = CertificateAuthority.objects.filter(name=ROOT_NAME).first()
        if root is None:
            call_command("init_ca", ROOT_NAME, ROOT_SUBJECT, *_KEY_ARGS,
                         "--expires", str(ROOT_VALIDITY_DAYS), "--path-length", "1",
                         *_host_args(host), "--output-format", "none")
            root = CertificateAuthority.objects.get(name=ROOT_NAME)
        issuing = CertificateAuthority.objects.filter(name=ISSUING_NAME).first()
        if issuing is None:
            call_command("init_ca", ISSUING_NAME, ISSUING_SUBJECT, *_KEY_ARGS,
                         "--parent", root.serial,
                         "--expires", str(ISSUING_VALIDITY_DAYS), "--path-length", "0",
                         *(arg for oid in issuing_policies() for arg in ("--policy-identifier", oid)),
                         *_host_args(host), "--output-format", "none")
            issuing = CertificateAuthority.objects.get(name=ISSUING_NAME)
    return root, issuing


def issuing_ca() -> CertificateAuthority:
    return CertificateAuthority.objects.get(name=ISSUING_NAME)


def chain_pem(issuing: CertificateAuthority) -> list[str]:
    """PEM certificates from the issuing CA up to and including the root."""
    return [ca.pub.pem for ca in issuing.bundle]


def write_chain(path: Path, issuing: CertificateAuthority) -> None:
    """Write issuing + root PEM to ``path`` atomically (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(chain_pem(issuing)), encoding="ascii")
    os.replace(tmp, path)
