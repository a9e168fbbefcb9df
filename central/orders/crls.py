"""CRL and OCSP freshness: full CRLs regenerated within a minute of any revocation and before they
expire; the delegated OCSP responder certificates renewed before they expire.

A revocation through the API regenerates its CA's CRLs at once (:mod:`central.orders.certificates`).
A revocation by another path (django-ca's ``revoke_cert`` command, the admin) is caught by
:class:`CrlRefresher`, a thread of ``serve`` that every ``interval_s`` regenerates the CRLs of a CA
with a certificate (or sub-CA) revoked after its newest CRL, and lets django-ca renew CRLs that
near their nextUpdate (``CA_CRL_PROFILES``) and OCSP responder certificates that near their notAfter
(``CA_OCSP_RESPONDER_CERTIFICATE_RENEWAL``): without Celery nothing else runs django-ca's periodic tasks.
"""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections
from django.db.models import Max
from django_ca.models import Certificate, CertificateAuthority, CertificateRevocationList

from central import CRL_REFRESH_S

log = logging.getLogger("central.crls")


def is_stale(ca: CertificateAuthority) -> bool:
    """Whether ``ca`` revoked a certificate or sub-CA after its newest CRL (or has no CRL)."""
    newest = CertificateRevocationList.objects.filter(ca=ca, data__isnull=False).aggregate(
        last=Max("last_update"))["last"]
    if newest is None:
        return True
    return (Certificate.objects.filter(ca=ca, revoked=True, revoked_date__gte=newest).exists()
            or CertificateAuthority.objects.filter(parent=ca, revoked=True, revoked_date__gte=newest).exists())


def refresh(force: bool = False) -> list[str]:
    """Regenerate stale CRLs (all with ``force``), renew those near expiry; return the CAs regenerated."""
    regenerated = []
    for ca in CertificateAuthority.objects.filter(enabled=True):
        options = ca.key_backend.get_use_private_key_options(ca, {})
        if force or is_stale(ca):
            ca.generate_crls(options, force=True)
            regenerated.append(ca.serial)
        else:
            ca.generate_crls(options)            # django-ca renews only CRLs close to their nextUpdate
        ca.generate_ocsp_key(options)            # … and only responder certificates close to expiry
    return regenerated


class CrlRefresher(threading.Thread):
    """Calls :func:`refresh` every ``interval_s`` until :meth:`stop`; an error is logged, never fatal."""

    def __init__(self, interval_s: float = CRL_REFRESH_S) -> None:
        super().__init__(name="crl-refresher", daemon=True)
        self.interval_s = interval_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                for serial in refresh():
                    log.info("regenerated the CRLs of CA %s", serial)
            except Exception:
                log.exception("CRL refresh failed; retrying in %.0f s", self.interval_s)
            finally:
                close_old_connections()

    def stop(self) -> None:
        self._stopped.set()
