"""Django settings for the central service; everything lives under the data directory.

The data directory comes from the ``TAMGA_CENTRAL_DATA_DIR`` environment variable, which
``python -m central`` sets from ``--data-dir`` before Django starts.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from pathlib import Path

from central import DATA_DIR_ENV, database

DATA_DIR = Path(os.environ.get(DATA_DIR_ENV, "central-data")).resolve()


def _secret_key(path: Path) -> str:
    """The per-installation Django secret, created on first use (mode 0600)."""
    for _ in range(50):
        try:
            key = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(50)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key)
            try:
                os.link(tmp, path)       # atomic: the first process to start wins, whole file or none
            except FileExistsError:
                continue                 # another process won; read its key
            finally:
                tmp.unlink()
            return key
        if key:
            return key
        time.sleep(0.01)                 # an older installation writing in place: wait for it
    raise RuntimeError(f"{path} stays empty")


SECRET_KEY = _secret_key(DATA_DIR / "secret-key")
DEBUG = False
# The service binds loopback by default; --host adds its address (see central.__main__).
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]",
                 *os.environ.get("TAMGA_CENTRAL_ALLOWED_HOSTS", "").split()]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_ca",
    "central.orders",
]
MIDDLEWARE = [
    "central.orders.api.BodyLimitMiddleware",      # before anything reads the body
    "django.middleware.common.CommonMiddleware",  # validates the Host header against ALLOWED_HOSTS
    "central.orders.api.JsonErrorMiddleware",
]
MIGRATION_MODULES = {"orders": "central.migrations"}
ROOT_URLCONF = "central.urls"
APPEND_SLASH = False
# Only the verification page (central/templates/verify/) is HTML; the API is JSON.
TEMPLATES: list[dict[str, object]] = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [Path(__file__).resolve().parent / "templates"],
    "APP_DIRS": False,
    "OPTIONS": {"autoescape": True},
}]

# SQLite under the data directory, or PostgreSQL when DATABASE_URL names one (central/database.py).
DATABASES = {"default": database.from_environment(os.environ, DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A shared cache so that CRLs django-ca regenerates are seen by every process (field notes).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(DATA_DIR / "cache"),
    }
}
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "files")},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "django-ca": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": str(DATA_DIR / "ca-keys"),
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    },
}

USE_TZ = True
TIME_ZONE = "Asia/Ulaanbaatar"
LANGUAGE_CODE = "en"
USE_I18N = False
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024     # Django answers 413 JSON above this (cheroot: 1 MiB)

# Tamga: the central's country (working-day calendar, certificate C=), extra dated public holidays
# (YYYY-MM-DD, comma-separated; e.g. a holiday decreed at short notice), the SO PIN escrow key.
TAMGA_COUNTRY = "MN"
TAMGA_EXTRA_HOLIDAYS = [day.strip() for day in os.environ.get("TAMGA_EXTRA_HOLIDAYS", "").split(",")
                        if day.strip()]
for _day in TAMGA_EXTRA_HOLIDAYS:           # a typo stops start-up instead of failing renewals later
    try:
        dt.date.fromisoformat(_day)
    except ValueError as _err:
        raise ValueError(f"TAMGA_EXTRA_HOLIDAYS: {_day!r} is not YYYY-MM-DD") from _err
TAMGA_ESCROW_KEY_FILE = DATA_DIR / "escrow-key.pem"

# Certificate profiles per country (central/orders/profiles.py); an order is issued under its holder's
# country's profile, else under TAMGA_CERTIFICATE_PROFILE.  Policy OIDs sit under the TEST arc of
# central/orders/pki.py.  The PKI disclosure statements are published over https: the central serves each
# profile's at /pds/<country>/<language>.pdf (central/orders/pds.py), TAMGA_PDS_BASE_URL its public address.
TAMGA_PDS_BASE_URL = os.environ.get("TAMGA_PDS_BASE_URL", "https://pki.tamga.mn/pds").rstrip("/")
_NOTICE = "Tamga TEST qualified signature certificate (QCP-n-qscd). Not for production use."
TAMGA_CERTIFICATE_PROFILES: dict[str, dict[str, object]] = {
    "MN": {"serial_number": "PNO", "organisation_identifier": "NTR", "policy": "1.3.6.1.4.1.55555.1.3",
           "policy_notice": "Tamga TEST Class-3 signature certificate. Not for production use.",
           "pds": ["mn", "en"]},
    # Kazakhstan: serialNumber IIN + 12 digits as NCA RK writes it; its semantics are the CA's own OID.
    # As NCA RK does, a separate authentication certificate (AUTH key) beside the signing one.
    "KZ": {"serial_number": "IIN", "organisation_identifier": "NTR", "policy": "1.3.6.1.4.1.55555.1.4",
           "semantics_oid": "1.3.6.1.4.1.55555.2.1", "policy_notice": _NOTICE,
           "pds": ["kk", "ru", "en"], "authentication_policy": "1.3.6.1.4.1.55555.1.4.2"},
    # Kyrgyzstan: the 14-digit personal identification number in the ETSI form PNOKG-….
    "KG": {"serial_number": "PNO", "organisation_identifier": "NTR", "policy": "1.3.6.1.4.1.55555.1.5",
           "policy_notice": _NOTICE,
           "pds": ["ky", "ru", "en"]},
}
TAMGA_CERTIFICATE_PROFILE = os.environ.get("TAMGA_CERTIFICATE_PROFILE", TAMGA_COUNTRY)
if TAMGA_CERTIFICATE_PROFILE not in TAMGA_CERTIFICATE_PROFILES:
    raise ValueError(f"TAMGA_CERTIFICATE_PROFILE: {TAMGA_CERTIFICATE_PROFILE!r} is not one of "
                     f"{', '.join(TAMGA_CERTIFICATE_PROFILES)}")
# Requests per minute one client address may make to /verify/ (429 above it).
TAMGA_VERIFY_RATE_PER_MINUTE = int(os.environ.get("TAMGA_VERIFY_RATE_PER_MINUTE", "30"))

# django-ca: signing happens in-process through its Python API; no Celery, no ACME, no REST API.
CA_USE_CELERY = False
CA_ENABLE_ACME = False
CA_ENABLE_REST_API = False
# The host[:port] written into certificates for CRL, OCSP and CA issuers (http, as RFC 5280 expects);
# `serve` sets it from --public-host or the address it bound before the CA hierarchy is created.
CA_DEFAULT_HOSTNAME = os.environ.get("TAMGA_CENTRAL_PUBLIC_HOST") or None
CA_MIN_KEY_SIZE = 2048
CA_DEFAULT_PROFILE = "qualified"
CA_PROFILES = {
    # Only a label (field notes): key usage, EKU and policies are passed explicitly at signing.
    "qualified": {
        "description": "Tamga Class-3 signature certificate (subject from the order).",
        "subject": False,
        "add_crl_url": True,
        "add_ocsp_url": True,
        "add_issuer_url": True,
        "add_issuer_alternative_name": False,
    },
    # The kiosk identity CA's TLS certificates (central/orders/kiosk_identity.py): usages passed at signing.
    "kiosk-tls": {
        "description": "Tamga kiosk client or central server TLS certificate.",
        "subject": False,
        "add_crl_url": False,
        "add_ocsp_url": False,
        "add_issuer_url": False,
        "add_issuer_alternative_name": False,
    },
    # django-ca's delegated OCSP responder certificates: its default profile adds keyEncipherment, which an
    # EC key cannot use (pkilint ERROR pkix.prohibited_key_usage_value_present_for_ec); signing only.
    "ocsp": {
        "description": "A certificate for an OCSP responder.",
        "add_ocsp_url": False,
        "autogenerated": True,
        "subject": False,
        "extensions": {
            "key_usage": {"critical": True, "value": ["digitalSignature"]},
            "extended_key_usage": {"value": ["OCSPSigning"]},
            "ocsp_no_check": {},
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django_ca": {"level": "WARNING"},
        "cheroot": {"level": "WARNING"},
    },
}
