"""The test CA hierarchy (root → qualified issuing CA) kept by django-ca, and the Tamga policy arc.

The OIDs below sit under a TEST arc (``1.3.6.1.4.1.55555``) chosen for this reference service;
a production CA uses its own registered arc and its published certificate policy.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
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


def ensure_hierarchy() -> tuple[CertificateAuthority, CertificateAuthority]:
    """The (root, issuing) CAs, created with django-ca's ``init_ca`` on first use (≈1 s each)."""
    with transaction.atomic():
        root = CertificateAuthority.objects.filter(name=ROOT_NAME).first()
        if root is None:
            call_command("init_ca", ROOT_NAME, ROOT_SUBJECT, *_KEY_ARGS,
                         "--expires", str(ROOT_VALIDITY_DAYS), "--path-length", "1",
                         "--no-default-hostname", "--output-format", "none")
            root = CertificateAuthority.objects.get(name=ROOT_NAME)
        issuing = CertificateAuthority.objects.filter(name=ISSUING_NAME).first()
        if issuing is None:
            call_command("init_ca", ISSUING_NAME, ISSUING_SUBJECT, *_KEY_ARGS,
                         "--parent", root.serial,
                         "--expires", str(ISSUING_VALIDITY_DAYS), "--path-length", "0",
                         "--policy-identifier", POLICY_CLASS3.dotted_string,
                         "--no-default-hostname", "--output-format", "none")
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
