"""The national ID trust material the sync daemon keeps up to date: the central's trust anchors and the CRLs.

The central's ``feeds/trust`` hands out CA certificates per country profile (added or withdrawn);
:class:`TrustMaterial` keeps them in the kiosk's data directory (``trust-anchors/``, one PEM file per
certificate, ``<country>-<role>-<sha256>.pem``), each checked before it is written: the PEM parses,
its DER has the SHA-256 the feed names, it is a CA (basicConstraints cA, keyCertSign).  A withdrawn
one is deleted.  The anchors in the kiosk's configuration are not touched: the feed adds to them.

:meth:`TrustMaterial.load` is what the ID-card reader trusts: the configured certificates plus the
synced ones of the countries the kiosk accepts (``[identity] countries``).  :class:`TrustSource`
re-reads the directory when it changed, so a running kiosk trusts a new anchor at its next card.
:meth:`TrustMaterial.refresh_crls` fetches again the cached ID-card CRLs that are due
(:meth:`devices.revocation.RevocationChecker.refresh`), in the same files the kiosk reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("tamga.sync")

ROLES = ("anchor", "intermediate")
_NAME = re.compile(r"^(?P<country>[A-Z]{2})-(?P<role>anchor|intermediate)-(?P<sha256>[0-9a-f]{64})\.pem$")


class CrlRefresher(Protocol):
    def refresh(self, force: bool = False) -> dict[str, str]:
        ...


def _checked(item: Mapping[str, Any]) -> tuple[str, str, str, x509.Certificate | None]:
    """(country, role, sha256, certificate or None for a withdrawal) of one feed item.  Raises ValueError."""
    country, role, sha256, event = (str(item.get(k, "")) for k in ("country", "role", "sha256", "event"))
    if not re.fullmatch(r"[A-Z]{2}", country) or role not in ROLES or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError("country, role or sha256 malformed")
    if event == "withdrawn":
        return country, role, sha256, None
    if event != "added":
        raise ValueError(f"unknown event {event!r}")
    certificate = x509.load_pem_x509_certificate(str(item.get("certificate", "")).encode("ascii"))
    if hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest() != sha256:
        raise ValueError("the certificate is not the one its sha256 names")
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    if not constraints.ca or not usage.key_cert_sign:
        raise ValueError("not a CA certificate")
    return country, role, sha256, certificate


@dataclass
class TrustMaterial:
    """The synced trust anchors in ``directory`` and the CRL cache ``crls`` refreshes."""

    directory: Path
    crls: CrlRefresher | None = None

    def apply(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Write the added certificates, delete the withdrawn ones; returns how many changed anything.

        An item that does not check out is logged and skipped (the feed moves on; the central is told
        nothing, as for every feed).
        """
        self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        changed = 0
        for item in items:
            try:
                country, role, sha256, certificate = _checked(item)
            except (ValueError, UnicodeEncodeError, x509.ExtensionNotFound) as err:
                log.warning("trust feed item refused", extra={"seq": item.get("seq"), "error": str(err)[:200]})
                continue
            stale = [p for p in self.directory.glob(f"*-{sha256}.pem")]
            if certificate is None:
                for path in stale:
                    path.unlink(missing_ok=True)
                changed += bool(stale)
                continue
            target = self.directory / f"{country}-{role}-{sha256}.pem"
            for path in stale:
                if path != target:
                    path.unlink(missing_ok=True)      # the same certificate in another role or country
            if not target.exists():
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
                os.chmod(tmp, 0o644)
                tmp.replace(target)
                changed += 1
        return changed

    def version(self) -> tuple[str, ...]:
        """What is kept now (the file names: they carry the hashes); changes whenever the material does."""
        if not self.directory.is_dir():
            return ()
        return tuple(sorted(p.name for p in self.directory.glob("*.pem")))

    def load(self, countries: Sequence[str]) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
        """(anchors, intermediates) kept for ``countries``; a file that no longer parses is skipped."""
        anchors: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        for name in self.version():
            match = _NAME.match(name)
            if match is None or match["country"] not in countries:
                continue
            try:
                certificate = x509.load_pem_x509_certificate((self.directory / name).read_bytes())
            except (OSError, ValueError):
                log.warning("synced trust anchor unreadable", extra={"file": name})
                continue
            if hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest() != match["sha256"]:
                log.warning("synced trust anchor changed on disk: ignored", extra={"file": name})
                continue
            (anchors if match["role"] == "anchor" else intermediates).append(certificate)
        return anchors, intermediates

    def refresh_crls(self) -> dict[str, str]:
        """Fetch again the cached ID-card CRLs past their nextUpdate: url → fresh, fetched or failed: why."""
        return self.crls.refresh() if self.crls is not None else {}


@dataclass
class TrustSource:
    """The configured trust anchors and intermediates plus the synced ones, read again when they change."""

    material: TrustMaterial
    countries: tuple[str, ...]
    anchors: list[x509.Certificate]
    intermediates: list[x509.Certificate]
    _seen: tuple[str, ...] | None = field(default=None, init=False)
    _current: tuple[list[x509.Certificate], list[x509.Certificate]] = field(default=([], []), init=False)

    def __call__(self) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
        version = self.material.version()
        if version != self._seen:
            synced_anchors, synced_intermediates = self.material.load(self.countries)
            self._current = ([*self.anchors, *(c for c in synced_anchors if c not in self.anchors)],
                             [*self.intermediates, *(c for c in synced_intermediates if c not in self.intermediates)])
            self._seen = version
        return self._current
