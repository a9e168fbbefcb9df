"""Is the ID card's certificate revoked?  OCSP first (hard-fail on any bad answer), then a cached CRL.

Policy (``[identity]`` in the kiosk configuration):

* ``ocsp-then-crl``: ask the responder named in the certificate's AIA.  Its answer decides, and any
  answer that cannot be trusted refuses the card: an unknown status, a signature that does not verify
  with the issuer or its delegated responder (id-kp-OCSPSigning), a ``thisUpdate`` in the future or
  older than ``ocsp_max_age``, a passed ``nextUpdate``, a missing or different nonce.  Only when the
  responder cannot be reached (no connection, timeout, HTTP error, ``tryLater``) is the CRL used;
* the CRL is fetched from the certificate's distribution point, checked (issuer, signature, never an
  older CRL number than the cached one) and kept in ``cache_dir`` (0700, files 0600).  It is fetched
  again once its ``nextUpdate`` has passed.  A CRL past ``nextUpdate`` that cannot be refreshed still
  decides within ``crl_grace`` after it — but only when OCSP gave no answer — and the outcome says the
  grace was used; beyond it (or with a grace of 0) the status is unknown and the card refused;
* ``ocsp`` (no CRL), ``crl`` (no OCSP), ``none`` (no revocation check: test benches only).

:meth:`RevocationChecker.refresh` re-fetches the cached CRLs that are due: the sync daemon calls it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, unique
from pathlib import Path

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from kiosk.errors import CardRevoked, RevocationUnknown
from kiosk.ports import RevocationStatus

log = logging.getLogger("tamga.revocation")

_MAX_DOWNLOAD = 8 * 1024 * 1024


@unique
class RevocationMode(Enum):
    OCSP_THEN_CRL = "ocsp-then-crl"
    OCSP = "ocsp"
    CRL = "crl"
    NONE = "none"


@dataclass(frozen=True)
class RevocationPolicy:
    mode: RevocationMode = RevocationMode.OCSP_THEN_CRL
    crl_grace: dt.timedelta = dt.timedelta(days=3)
    timeout_s: float = 3.0
    ocsp_max_age: dt.timedelta = dt.timedelta(hours=24)
    clock_skew: dt.timedelta = dt.timedelta(minutes=5)


class _Unreachable(Exception):
    """The OCSP responder or CRL distribution point gave no answer (the network, not the CA)."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _uris(values: Sequence[x509.GeneralName]) -> list[str]:
    return [v.value for v in values if isinstance(v, x509.UniformResourceIdentifier)
            and v.value.startswith(("http://", "https://"))]


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return _uris([d.access_location for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP])


def crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [uri for point in points for uri in _uris(point.full_name or [])]


def verify_signature(key: object, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None) -> None:
    """Check an OCSP/CRL signature made by an RSA (PKCS#1 v1.5) or ECDSA key.  Raises InvalidSignature."""
    if algorithm is None:
        raise InvalidSignature("no hash algorithm")
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        raise InvalidSignature("unsupported signer key")


@dataclass
class RevocationChecker:
    """Checks one certificate at a time against its issuer's OCSP responder and CRL."""

    cache_dir: Path
    policy: RevocationPolicy = field(default_factory=RevocationPolicy)
    clock: Callable[[], dt.datetime] = _utc_now
    issuers: list[x509.Certificate] = field(default_factory=list)   # who may sign the CRLs refresh() fetches
    http: requests.Session = field(default_factory=requests.Session)

    def check(self, cert: x509.Certificate, issuer: x509.Certificate) -> RevocationStatus:
        """The certificate's revocation status, or a refusal.  Raises CardRevoked, RevocationUnknown."""
        now = self.clock()
        mode = self.policy.mode
        if mode is RevocationMode.NONE:
            return RevocationStatus("none", now)
        if issuer not in self.issuers:
            self.issuers.append(issuer)
        if mode in (RevocationMode.OCSP_THEN_CRL, RevocationMode.OCSP):
            urls = ocsp_urls(cert)
            if urls:
                try:
                    return self._ocsp(cert, issuer, urls[0], now)
                except _Unreachable as err:
                    log.warning("OCSP responder unreachable", extra={"url": urls[0], "error": str(err)})
                    if mode is RevocationMode.OCSP:
                        raise RevocationUnknown("OCSP responder unreachable", reason="ocsp_unreachable") from err
            elif mode is RevocationMode.OCSP:
                raise RevocationUnknown("certificate names no OCSP responder", reason="no_ocsp_url")
        return self._crl_decision(cert, issuer, now)

    # -- OCSP -----------------------------------------------------------------------------------------
    def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str, now: dt.datetime,
              ) -> RevocationStatus:
        nonce = secrets.token_bytes(32)
        # SHA-1 names the certificate in the CertID (RFC 6960/5019: what every responder supports);
        # it is not a signature, and the nonce and the responder's signature carry the security.
        request = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303
                   .add_extension(x509.OCSPNonce(nonce), critical=False).build())
        body = self._post(url, request.public_bytes(serialization.Encoding.DER))
        try:
            response = ocsp.load_der_ocsp_response(body)
        except ValueError as err:
            raise RevocationUnknown("OCSP answer does not parse", reason="ocsp_malformed") from err
        status = response.response_status
        if status in (ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.INTERNAL_ERROR):
            raise _Unreachable(f"responder answered {status.name}")
        if status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise RevocationUnknown("OCSP request refused", reason="ocsp_refused", status=status.name.lower())
        signer = self._ocsp_signer(response, issuer, now)
        try:
            verify_signature(signer.public_key(), response.signature, response.tbs_response_bytes,
                             response.signature_hash_algorithm)
        except (InvalidSignature, UnsupportedAlgorithm) as err:
            raise RevocationUnknown("OCSP signature does not verify", reason="ocsp_bad_signature") from err
        single = next((r for r in response.responses if r.serial_number == cert.serial_number
                       and r.issuer_key_hash == request.issuer_key_hash
                       and r.issuer_name_hash == request.issuer_name_hash), None)
        if single is None:
            raise RevocationUnknown("OCSP answer is about another certificate", reason="ocsp_wrong_certificate")
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            echoed = b""
        if not hmac.compare_digest(echoed, nonce):
            raise RevocationUnknown("OCSP nonce missing or different", reason="ocsp_nonce_mismatch")
        skew = self.policy.clock_skew
        if single.this_update_utc > now + skew:
            raise RevocationUnknown("OCSP thisUpdate in the future", reason="ocsp_future",
                                    this_update=single.this_update_utc.isoformat())
        if (now - single.this_update_utc > self.policy.ocsp_max_age
                or (single.next_update_utc is not None and now > single.next_update_utc + skew)):
            raise RevocationUnknown("OCSP answer is stale", reason="ocsp_stale",
                                    this_update=single.this_update_utc.isoformat())
        if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            revoked_at = single.revocation_time_utc
            raise CardRevoked("the card's certificate is revoked", method="ocsp",
                              revoked_at=revoked_at.isoformat() if revoked_at else "",
                              revocation_reason=single.revocation_reason.value if single.revocation_reason else "")
        if single.certificate_status is not ocsp.OCSPCertStatus.GOOD:
            raise RevocationUnknown("OCSP responder does not know the certificate", reason="ocsp_unknown")
        return RevocationStatus("ocsp", now, ocsp_response=body, ocsp_url=url)

    def _ocsp_signer(self, response: ocsp.OCSPResponse, issuer: x509.Certificate,
                     now: dt.datetime) -> x509.Certificate:
        """The issuer itself, or a responder it delegated (id-kp-OCSPSigning, valid now, directly issued)."""
        if self._is_responder(issuer, response):
            return issuer
        for candidate in response.certificates:
            if not self._is_responder(candidate, response):
                continue
            try:
                candidate.verify_directly_issued_by(issuer)
                usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm, x509.ExtensionNotFound):
                continue
            if (ExtendedKeyUsageOID.OCSP_SIGNING in usage
                    and candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc):
                return candidate
        raise RevocationUnknown("OCSP responder not authorised by the card's issuer",
                                reason="ocsp_responder_untrusted")

    @staticmethod
    def _is_responder(cert: x509.Certificate, response: ocsp.OCSPResponse) -> bool:
        if response.responder_name is not None:
            return cert.subject == response.responder_name
        key_hash = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest   # SHA-1 of the key
        return response.responder_key_hash == key_hash

    def _post(self, url: str, body: bytes) -> bytes:
        try:
            answer = self.http.post(url, data=body, timeout=self.policy.timeout_s,
                                    headers={"Content-Type": "application/ocsp-request"})
        except requests.RequestException as err:
            raise _Unreachable(type(err).__name__) from err
        if answer.status_code != 200:
            raise _Unreachable(f"HTTP {answer.status_code}")
        return answer.content

    # -- CRL ------------------------------------------------------------------------------------------
    def _crl_decision(self, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime) -> RevocationStatus:
        urls = crl_urls(cert)
        if not urls:
            raise RevocationUnknown("certificate names no CRL", reason="no_crl_url")
        url = urls[0]
        crl = self._current_crl(url, [issuer], now)
        if crl is None:
            raise RevocationUnknown("no CRL could be fetched", reason="crl_unavailable")
        next_update = crl.next_update_utc
        grace_used = False
        if next_update is None or now > next_update:
            if next_update is None or now > next_update + self.policy.crl_grace or not self.policy.crl_grace:
                raise RevocationUnknown("the cached CRL is too old", reason="crl_stale",
                                        next_update=next_update.isoformat() if next_update else "")
            grace_used = True
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise CardRevoked("the card's certificate is on the CRL", method="crl",
                              revoked_at=entry.revocation_date_utc.isoformat())
        return RevocationStatus("crl", now, crl_number=_crl_number(crl), crl_this_update=crl.last_update_utc,
                                crl_next_update=next_update, grace_used=grace_used)

    def _current_crl(self, url: str, issuers: Sequence[x509.Certificate], now: dt.datetime,
                     ) -> x509.CertificateRevocationList | None:
        """The cached CRL for ``url``, fetched again when missing or past nextUpdate (fetch failures logged)."""
        cached = self._load_cached(url, issuers)
        if cached is not None and cached.next_update_utc is not None and now <= cached.next_update_utc:
            return cached
        try:
            return self._fetch(url, issuers, cached, now)
        except (_Unreachable, RevocationUnknown) as err:
            log.warning("CRL not refreshed", extra={"url": url, "error": str(err)})
            return cached

    def _fetch(self, url: str, issuers: Sequence[x509.Certificate],
               cached: x509.CertificateRevocationList | None, now: dt.datetime) -> x509.CertificateRevocationList:
        body = b""
        try:
            with self.http.get(url, timeout=self.policy.timeout_s, stream=True) as answer:
                if answer.status_code != 200:
                    raise _Unreachable(f"HTTP {answer.status_code}")
                for chunk in answer.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > _MAX_DOWNLOAD:
                        raise _Unreachable("CRL larger than 8 MiB")
        except requests.RequestException as err:
            raise _Unreachable(type(err).__name__) from err
        if not body:
            raise _Unreachable("empty CRL")
        crl = self._verified_crl(body, issuers)
        if crl is None:
            raise RevocationUnknown("CRL does not verify with its issuer", reason="crl_bad_signature")
        if crl.last_update_utc > now + self.policy.clock_skew:
            raise RevocationUnknown("CRL thisUpdate in the future", reason="crl_future")
        if cached is not None and _crl_number(crl) < _crl_number(cached):
            raise RevocationUnknown("CRL older than the cached one", reason="crl_rollback")
        self._store(url, crl.public_bytes(serialization.Encoding.DER))
        return crl

    @staticmethod
    def _verified_crl(der: bytes, issuers: Sequence[x509.Certificate]) -> x509.CertificateRevocationList | None:
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError:
            return None
        for issuer in issuers:
            try:
                usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
                key = issuer.public_key()
                if (crl.issuer == issuer.subject and usage.crl_sign
                        and isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
                        and crl.is_signature_valid(key)):
                    return crl
            except (x509.ExtensionNotFound, ValueError, TypeError, UnsupportedAlgorithm):
                continue
        return None

    # -- the cache ------------------------------------------------------------------------------------
    def _path(self, url: str) -> Path:
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".crl")

    def _load_cached(self, url: str, issuers: Sequence[x509.Certificate]) -> x509.CertificateRevocationList | None:
        try:
            der = self._path(url).read_bytes()
        except OSError:
            return None
        return self._verified_crl(der, issuers)        # a cache edited on disk is not trusted

    def _store(self, url: str, der: bytes) -> None:
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.cache_dir.chmod(0o700)
        path = self._path(url)
        for target, data in ((path.with_suffix(".url"), url.encode()), (path, der)):
            tmp = target.with_suffix(target.suffix + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            tmp.replace(target)

    def cached_urls(self) -> list[str]:
        if not self.cache_dir.is_dir():
            return []
        return sorted(p.read_text(encoding="utf-8") for p in self.cache_dir.glob("*.url"))

    def refresh(self, force: bool = False) -> dict[str, str]:
        """Fetch again every cached CRL past its nextUpdate (all with ``force``); url → ``fresh``,
        ``fetched`` or ``failed: <why>``.  Never raises for one bad distribution point."""
        now = self.clock()
        outcome: dict[str, str] = {}
        for url in self.cached_urls():
            cached = self._load_cached(url, self.issuers)
            if not force and cached is not None and cached.next_update_utc is not None \
                    and now <= cached.next_update_utc:
                outcome[url] = "fresh"
                continue
            try:
                self._fetch(url, self.issuers, cached, now)
                outcome[url] = "fetched"
            except (_Unreachable, RevocationUnknown) as err:
                outcome[url] = f"failed: {err}"
        return outcome


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1
