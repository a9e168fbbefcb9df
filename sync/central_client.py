"""The kiosk's client for the central registration service (``central/openapi.yaml``), over requests.

Implements :class:`kiosk.ports.CentralPort`.  It speaks HTTPS with the kiosk's client certificate and
key (:class:`sync.kiosk_identity.KioskIdentity`) and trusts only the configured CA chain for the
central's certificate.  Every failure leaves as a :mod:`kiosk.errors` error:

* no connection, a timeout, a 5xx or 429, or an answer that is not the expected JSON
  → :class:`CentralUnavailable` (``data['status']`` is the HTTP status, None without one);
* a central whose certificate does not chain to the CA chain → ``CentralUnavailable(cause=
  "central_not_trusted")``, and a TLS handshake the central ends (our certificate refused)
  → ``cause="tls_refused"``; neither is retried; no certificate file yet → ``cause="identity_missing"``;
* 404 ``order_not_found`` on a lookup → :class:`OrderNotFound`;
* any other 4xx with ``{"error": code}`` → :class:`CentralRejected` (``data['reason']`` = code,
  ``data['status']``, and for ``order_not_payable`` the order's ``refusal`` reason and amounts).

Every call is idempotent (lookups read; enrollments, renewals, revocations and voids carry the kiosk's
idempotency key and the service answers the same for it; an SO PIN release only reads and logs), so a
connection error or timeout is retried once.

What the central returns is checked before it reaches the core: certificate and chain PEM must parse,
serials and validity must be the certificate's; anything else is ``CentralUnavailable(cause=
"malformed_response")``.  An SO PIN goes to the central only encrypted (RSA-OAEP-SHA256) to its escrow
key, and comes back only encrypted to a key pair this client makes for that one call.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import logging
import re
import textwrap
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kiosk.errors import CentralRejected, CentralUnavailable, OrderNotFound
from kiosk.order import FeeItem, FeeLine, Fees, Order
from kiosk.pin import SoPin
from kiosk.ports import (
    CertificateRecord,
    CertificateStatus,
    IssuedCertificate,
    RefusedKey,
    RenewalTerms,
    Revocation,
    RevocationReason,
    TokenCertificate,
)
from sync.central_calendar import CentralCalendar

if TYPE_CHECKING:
    from sync.kiosk_identity import KioskIdentity

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
LOOKUP_KINDS = ("invoice", "register")
_RETRYABLE = (requests.ConnectionError, requests.Timeout)
# Body fields of an error that are passed on in the error's data (``reason`` is renamed ``refusal``).
_ERROR_DETAIL_FIELDS = ("reason", "total", "paid", "due", "term_years", "field", "balance", "shortfall",
                        "last_request_day", "certificate_status", "renewed_by", "limit", "issued_by", "issued_at")
_HEX = re.compile(r"^[0-9A-Fa-f]{1,128}$")


@dataclass(frozen=True)
class FeedPage:
    """One page of a feed: its items in change order, the cursor to ask after next, and whether more wait."""

    items: tuple[Any, ...]
    cursor: str
    more: bool


def csr_pem(csr_der: bytes) -> str:
    """PEM-armour a DER PKCS#10 request."""
    body = "\n".join(textwrap.wrap(base64.b64encode(csr_der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


class CentralClient:
    """:class:`kiosk.ports.CentralPort` over HTTPS with the kiosk's client certificate.

    ``identity`` None sends no certificate and trusts the system's CAs (a test's canned server).
    ``call_count`` counts HTTP requests sent (a retry counts again) and ``call_seconds`` adds up
    their wall-clock time, for benchmarks.
    """

    def __init__(self, base_url: str, identity: KioskIdentity | None, timeout_s: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.identity = identity
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        # Per request, not on the session: requests lets $REQUESTS_CA_BUNDLE override a session's verify.
        self._tls: dict[str, Any] = identity.requests_options() if identity is not None else {}
        self.call_count = 0
        self.call_seconds = 0.0
        self._escrow: tuple[str, rsa.RSAPublicKey] | None = None

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._own_session:
            self._session.close()

    # --- CentralPort -------------------------------------------------------------------------------
    def find_order(self, kind: str, value: str) -> Order:
        """The order by 12-digit invoice or register number (the newest open one).

        Raises OrderNotFound, CentralRejected (e.g. ``invalid_query``), CentralUnavailable.
        """
        if kind not in LOOKUP_KINDS:
            raise ValueError(f"kind must be one of {LOOKUP_KINDS}, not {kind!r}")
        response = self._request("GET", f"{API_PREFIX}/orders", idempotent=True, params={kind: value})
        if response.status_code == 404:
            body = self._json_or_none(response)
            if body is not None and body.get("error") == "order_not_found":
                raise OrderNotFound(kind=kind)
        body = self._expect(response, (200,))
        try:
            return Order.from_dict(body)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CentralUnavailable("malformed order", status=response.status_code,
                                     cause="malformed_response") from err

    def enroll(self, order_id: str, csr_der: bytes, idempotency_key: str, token_serial: str = "",
               so_pin: SoPin | None = None, authentication_csr_der: bytes | None = None,
               order_digest: str = "") -> IssuedCertificate:
        """Have the CA certify the CSR's key for the order; the same key returns the same certificate.

        ``so_pin`` is encrypted to the central's escrow key (fetched once and cached) and escrowed
        under ``token_serial``.  Raises CentralRejected (``csr_signature_invalid``, ``order_not_payable``,
        ``key_reused``, ``idempotency_conflict``, ``enrollment_void``, ``order_changed``, …) or
        CentralUnavailable.
        """
        if so_pin is not None and not token_serial:
            raise ValueError("an escrowed SO PIN needs the token serial")
        path = f"{API_PREFIX}/orders/{quote(order_id, safe='')}/enrollments"
        for attempt in (1, 2):
            payload: dict[str, Any] = {"csr": csr_pem(csr_der), "idempotency_key": idempotency_key}
            if authentication_csr_der is not None:
                payload["authentication_csr"] = csr_pem(authentication_csr_der)
            if token_serial:
                payload["token_serial"] = token_serial
            if order_digest:
                payload["order_digest"] = order_digest
            if so_pin is not None:
                key_id, public_key = self._escrow_key()
                payload["so_pin_escrow"] = base64.b64encode(
                    public_key.encrypt(so_pin.reveal().encode("utf-8"), _oaep())).decode("ascii")
                payload["escrow_key_id"] = key_id
            response = self._request("POST", path, idempotent=True, json=payload)
            try:
                body = self._expect(response, (200, 201))
            except CentralRejected as err:
                if err.data.get("reason") == "escrow_key_changed" and attempt == 1:
                    self._escrow = None        # the central has a new escrow key: fetch it and resend
                    continue
                raise
            return _issued(body, response.status_code)
        raise AssertionError("unreachable")  # pragma: no cover

    def void_enrollment(self, idempotency_key: str) -> str | None:
        """Make the idempotency key unusable at the central; the serial it revoked, or None."""
        path = f"{API_PREFIX}/enrollments/{quote(idempotency_key, safe='')}/void"
        response = self._request("POST", path, idempotent=True, json={})
        body = self._expect(response, (200,))
        serial = body.get("revoked_serial")
        if serial is not None and not (isinstance(serial, str) and _is_hex(serial)):
            raise CentralUnavailable("malformed void answer", status=response.status_code,
                                     cause="malformed_response")
        return serial

    def certificates(self, register_number: str) -> list[CertificateRecord]:
        """The holder's certificates, newest first."""
        response = self._request("GET", f"{API_PREFIX}/certificates", idempotent=True,
                                 params={"register": register_number})
        body = self._expect(response, (200,))
        items = body.get("certificates")
        if not isinstance(items, list):
            raise CentralUnavailable("malformed certificate list", status=response.status_code,
                                     cause="malformed_response")
        return [_record(item, response.status_code) for item in items]

    def certificate(self, serial_hex: str) -> CertificateRecord:
        """One certificate's record.  Raises CentralRejected(reason='certificate_not_found')."""
        response = self._request("GET", f"{API_PREFIX}/certificates/{_serial_path(serial_hex)}", idempotent=True)
        return _record(self._expect(response, (200,)), response.status_code)

    def revoke(self, serial_hex: str, reason: RevocationReason, register_number: str,
               idempotency_key: str) -> Revocation:
        """Revoke the holder's certificate; the same key (or an already revoked certificate) answers the same."""
        payload = {"reason": reason.value, "register_number": register_number, "idempotency_key": idempotency_key}
        response = self._request("POST", f"{API_PREFIX}/certificates/{_serial_path(serial_hex)}/revocation",
                                 idempotent=True, json=payload)
        body = self._expect(response, (200, 201))
        try:
            return Revocation(certificate_serial=_hex(body["serial"]), revoked_at=_parse_time(body["revoked_at"]),
                              reason=RevocationReason(body["reason"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CentralUnavailable("malformed revocation", status=response.status_code,
                                     cause="malformed_response") from err

    def renewal_terms(self, serial_hex: str, term_years: int) -> RenewalTerms:
        """Fee, balance and deadline for renewing ``serial_hex`` for ``term_years``."""
        response = self._request("GET", f"{API_PREFIX}/certificates/{_serial_path(serial_hex)}/renewal",
                                 idempotent=True, params={"term_years": str(term_years)})
        body = self._expect(response, (200,))
        try:
            organisation = body["organisation"]
            balance, term = body["balance_mnt"], body["term_years"]
            if not isinstance(balance, int) or not isinstance(term, int) or not isinstance(organisation, dict):
                raise TypeError("balance_mnt and term_years are integers, organisation an object")
            return RenewalTerms(
                certificate_serial=_hex(body["certificate_serial"]),
                not_after=_parse_time(body["not_after"]),
                last_request_day=dt.date.fromisoformat(body["last_request_day"]),
                organisation=str(organisation["name"]),
                organisation_register=str(organisation["register"]),
                balance_mnt=balance,
                term_years=term,
                fees=_fees(body["fees"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CentralUnavailable("malformed renewal terms", status=response.status_code,
                                     cause="malformed_response") from err

    def renew(self, serial_hex: str, application: bytes, signature: bytes, csr_der: bytes,
              idempotency_key: str, authentication_csr_der: bytes | None = None) -> IssuedCertificate:
        """Send the signed renewal application and the new key's CSR; the same key returns the same certificate."""
        payload = {"application": base64.b64encode(application).decode("ascii"),
                   "signature": base64.b64encode(signature).decode("ascii"),
                   "csr": csr_pem(csr_der), "idempotency_key": idempotency_key}
        if authentication_csr_der is not None:
            payload["authentication_csr"] = csr_pem(authentication_csr_der)
        response = self._request("POST", f"{API_PREFIX}/certificates/{_serial_path(serial_hex)}/renewals",
                                 idempotent=True, json=payload)
        return _issued(self._expect(response, (200, 201)), response.status_code)

    def escrowed_so_pin(self, token_serial: str, certificate_serial: str, register_number: str) -> SoPin:
        """The token's escrowed SO PIN, sent re-encrypted to an ephemeral key made for this call."""
        ephemeral = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = ephemeral.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        payload = {"certificate_serial": certificate_serial, "register_number": register_number,
                   "public_key": public_pem}
        response = self._request("POST", f"{API_PREFIX}/tokens/{quote(token_serial, safe='')}/so-pin",
                                 idempotent=True, json=payload)
        body = self._expect(response, (200,))
        try:
            ciphertext = base64.b64decode(body["ciphertext"], validate=True)
            return SoPin(ephemeral.decrypt(ciphertext, _oaep()).decode("utf-8"))
        except (KeyError, TypeError, ValueError) as err:   # binascii.Error and UnicodeDecodeError are ValueErrors
            raise CentralUnavailable("malformed SO PIN answer", status=response.status_code,
                                     cause="malformed_response") from err

    # --- the outbox ---------------------------------------------------------------------------------
    def submit_agreement(self, certificate_serial: str, pdf: bytes) -> str:
        """Send the signed holder agreement; the central answers 201 (kept) or 200 (this one already kept)."""
        payload = {"certificate_serial": certificate_serial, "pdf": base64.b64encode(pdf).decode("ascii")}
        response = self._request("POST", f"{API_PREFIX}/agreements", idempotent=True, json=payload)
        body = self._expect(response, (200, 201))
        digest = body.get("sha256")
        if digest != hashlib.sha256(pdf).hexdigest():
            raise CentralUnavailable("the central kept another document", status=response.status_code,
                                     cause="malformed_response")
        return str(digest)

    def push_events(self, events: list[dict[str, Any]]) -> set[str]:
        """Send journal events (each with its ``key``) to the central's inbox; return the keys it holds now.

        The inbox applies a key once: a replayed batch is acknowledged again and applies nothing.
        """
        response = self._request("POST", f"{API_PREFIX}/events", idempotent=True, json={"events": events})
        body = self._expect(response, (200,))
        keys = body.get("acknowledged")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CentralUnavailable("malformed inbox answer", status=response.status_code,
                                     cause="malformed_response")
        return set(keys)

    def push_audit(self, entries: list[dict[str, Any]]) -> int:
        """Send audit entries (``kiosk.audit.AuditEntry.to_dict``); return the central's head sequence number.

        The central keeps the chain whole: a gap or a changed entry is refused (409 ``audit_gap`` /
        ``audit_fork``, a :class:`CentralRejected`); an entry it already holds is acknowledged again.
        """
        response = self._request("POST", f"{API_PREFIX}/audit", idempotent=True, json={"entries": entries})
        body = self._expect(response, (200,))
        head = body.get("head_seq")
        if not isinstance(head, int) or isinstance(head, bool) or head < 0:
            raise CentralUnavailable("malformed audit answer", status=response.status_code,
                                     cause="malformed_response")
        return head

    def audit_state(self) -> dict[str, Any]:
        """The central's view of this kiosk's chain: ``branch``, ``head_seq``, ``head_hash`` and the open ``fork``."""
        return self._expect(self._request("GET", f"{API_PREFIX}/audit", idempotent=True), (200,))

    def rejoin_audit(self, entry: dict[str, Any], signature: str) -> dict[str, Any]:
        """Send the kiosk's ``audit.rejoined`` entry and its signature by the kiosk's key (base64 DER ECDSA over
        ``kiosk.audit.rejoin_message``; ``central/orders/audit_chain.py``); the new branch's base."""
        response = self._request("POST", f"{API_PREFIX}/audit/rejoin", idempotent=True,
                                 json={"entry": entry, "signature": signature})
        return self._expect(response, (200,))

    # --- feeds and pending certificates -----------------------------------------------------------
    def order_feed(self, after: str = "0", limit: int = 100) -> FeedPage:
        """The office's orders changed after the cursor ``after``; each item is ``(seq, Order)``."""
        page = self._feed("orders", after, limit)
        try:
            orders = tuple((int(item["seq"]), Order.from_dict(item["order"])) for item in page.items)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CentralUnavailable("malformed order feed", status=200, cause="malformed_response") from err
        return FeedPage(orders, page.cursor, page.more)

    def certificate_feed(self, after: str = "0", limit: int = 100) -> FeedPage:
        """The office's certificate events (``issued``, ``revoked``, ``expiring``) after ``after``, as dicts."""
        return self._feed("certificates", after, limit)

    def trust_feed(self, after: str = "0", limit: int = 100) -> FeedPage:
        """National ID trust material added or withdrawn after ``after`` (``TrustEvent`` dicts)."""
        return self._feed("trust", after, limit)

    def token_certificate(self, token_serial: str) -> TokenCertificate:
        """The newest valid certificate the central issued on the token for this office, with its order;
        CentralRejected ``certificate_not_found`` when there is none."""
        response = self._request("GET", f"{API_PREFIX}/tokens/{quote(token_serial, safe='')}/certificate",
                                 idempotent=True)
        body = self._expect(response, (200,))
        order_id, invoice, serial = body.get("order_id"), body.get("invoice"), body.get("token_serial")
        if not (isinstance(order_id, str) and isinstance(invoice, str) and serial == token_serial):
            raise CentralUnavailable("malformed token certificate", status=response.status_code,
                                     cause="malformed_response")
        return TokenCertificate(_issued(body, response.status_code), order_id, invoice, serial)

    def refused_keys(self, token_serial: str) -> list[RefusedKey]:
        """Keys on the token whose kept request the central refused and that no kiosk of the office removed yet."""
        response = self._request("GET", f"{API_PREFIX}/tokens/{quote(token_serial, safe='')}/refused-keys",
                                 idempotent=True)
        body = self._expect(response, (200,))
        items = body.get("refused")
        try:
            if not isinstance(items, list):
                raise TypeError("refused is not a list")
            return [RefusedKey(str(item["public_key_sha256"]), str(item["kiosk_id"]),
                               {k: item[k] for k in ("reason", "refusal", "issued_by", "issued_at", "refused_at")
                                if item.get(k) is not None}, str(item.get("invoice") or ""))
                    for item in items]
        except (KeyError, TypeError) as err:
            raise CentralUnavailable("malformed refused keys", status=response.status_code,
                                     cause="malformed_response") from err

    def calendar(self) -> CentralCalendar:
        """The central's renewal calendar (``GET /api/v1/config``); CentralUnavailable when malformed."""
        response = self._request("GET", f"{API_PREFIX}/config", idempotent=True)
        try:
            return CentralCalendar.from_body(self._expect(response, (200,)))
        except ValueError as err:
            raise CentralUnavailable(f"malformed configuration: {err}", status=response.status_code,
                                     cause="malformed_response") from err

    def _feed(self, name: str, after: str, limit: int) -> FeedPage:
        response = self._request("GET", f"{API_PREFIX}/feeds/{name}", idempotent=True,
                                 params={"after": after, "limit": str(limit)})
        body = self._expect(response, (200,))
        items, cursor, more = body.get("items"), body.get("cursor"), body.get("more")
        if (not isinstance(items, list) or not all(isinstance(item, dict) for item in items)
                or not isinstance(cursor, str) or not cursor.isdigit() or not isinstance(more, bool)):
            raise CentralUnavailable(f"malformed {name} feed", status=response.status_code,
                                     cause="malformed_response")
        return FeedPage(tuple(items), cursor, more)

    # --- the kiosk's own certificate ---------------------------------------------------------------------
    def renew_identity(self, csr: str) -> dict[str, Any]:
        """A new client certificate for the key of ``csr`` (PEM), asked with the current one; the answer body."""
        response = self._request("POST", f"{API_PREFIX}/kiosks/renew", idempotent=False, json={"csr": csr})
        return self._expect(response, (201,))

    # --- escrow key --------------------------------------------------------------------------------
    def _escrow_key(self) -> tuple[str, rsa.RSAPublicKey]:
        """The central's escrow key (id, RSA public key), fetched once per client."""
        if self._escrow is None:
            response = self._request("GET", f"{API_PREFIX}/escrow-key", idempotent=True)
            body = self._expect(response, (200,))
            try:
                key = serialization.load_pem_public_key(str(body["public_key"]).encode("ascii"))
                if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
                    raise ValueError("the escrow key is not RSA of 2048 bits or more")
                spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
                key_id = hashlib.sha256(spki).hexdigest()
                if body.get("key_id", key_id) != key_id:
                    raise ValueError("key_id is not the key's digest")
            except (KeyError, TypeError, ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as err:
                raise CentralUnavailable("malformed escrow key", status=response.status_code,
                                         cause="malformed_response") from err
            self._escrow = (key_id, key)
        return self._escrow

    # --- HTTP --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> requests.Response:
        """Send once, and once more after a connection error or timeout if ``idempotent``."""
        attempts = 2 if idempotent else 1
        headers = {"Accept": "application/json"}
        if self.identity is not None and not (self.identity.certificate.is_file() and self.identity.key.is_file()):
            # not enrolled yet (python -m sync enroll): the kiosk works offline until it is
            raise CentralUnavailable("the kiosk has no client certificate", status=None, cause="identity_missing")
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            self.call_count += 1
            try:
                return self._session.request(method, self.base_url + path, headers=headers,
                                             timeout=self.timeout_s, **self._tls, **kwargs)
            except requests.exceptions.SSLError as err:
                cause = "central_not_trusted" if "CERTIFICATE_VERIFY_FAILED" in str(err) else "tls_refused"
                raise CentralUnavailable(f"central TLS: {cause}", status=None, cause=cause) from err
            except _RETRYABLE as err:
                cause = "timeout" if isinstance(err, requests.Timeout) else "connection"
                if attempt < attempts:
                    log.warning("central %s %s: %s, retrying once", method, path, cause)
                    continue
                raise CentralUnavailable(f"central service {cause}", status=None, cause=cause) from err
            except requests.RequestException as err:
                raise CentralUnavailable("central request failed", status=None, cause="request") from err
            finally:
                self.call_seconds += time.perf_counter() - started
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json_or_none(response: requests.Response) -> dict[str, Any] | None:
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _expect(self, response: requests.Response, ok: tuple[int, ...]) -> dict[str, Any]:
        """The JSON object of a successful answer; otherwise raise the matching kiosk error."""
        status = response.status_code
        body = self._json_or_none(response)
        if status in ok:
            if body is None:
                raise CentralUnavailable("answer is not a JSON object", status=status,
                                         cause="malformed_response")
            return body
        if status >= 500 or status == 429 or status < 400:
            code = body.get("error") if body else None
            retry_after = _retry_after(response.headers.get("Retry-After"))
            extra = {"retry_after": retry_after} if retry_after is not None else {}
            raise CentralUnavailable(f"central service answered {status}", status=status,
                                     cause=code if isinstance(code, str) else "http_error", **extra)
        code = body.get("error") if body else None
        if body is None or not isinstance(code, str) or not code:
            # Not our service answering (a proxy page, a wrong base URL): nothing to act on.
            raise CentralUnavailable(f"central service answered {status} without an error code",
                                     status=status, cause="malformed_response")
        data: dict[str, Any] = {"status": status}
        for field in _ERROR_DETAIL_FIELDS:
            if field in body:
                data["refusal" if field == "reason" else field] = body[field]
        raise CentralRejected(str(body.get("message", code)), reason=code, **data)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _is_hex(value: str) -> bool:
    return bool(_HEX.match(value))


def _hex(value: Any) -> str:
    """A serial as upper-case hex without leading zeros; ValueError otherwise."""
    if not isinstance(value, str) or not _is_hex(value):
        raise ValueError("a serial is hex")
    return f"{int(value, 16):X}"


def _serial_path(serial_hex: str) -> str:
    return quote(serial_hex.replace(":", ""), safe="")


def _certificate(pem: Any) -> x509.Certificate:
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise TypeError("not a PEM certificate")
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _issued(body: dict[str, Any], status: int, chain: list[str] | None = None) -> IssuedCertificate:
    """An ``Enrollment`` answer, checked: every PEM parses, serial and times are the certificate's.

    Its ``authentication`` certificate, if any, is checked the same way (with the same chain).
    """
    try:
        chain = body["chain"] if chain is None else chain
        if not isinstance(chain, list) or not chain:
            raise TypeError("chain is not a list of PEM certificates")
        for pem in chain:
            _certificate(pem)
        certificate = _certificate(body["certificate"])
        if _hex(body["serial"]) != f"{certificate.serial_number:X}":
            raise ValueError("serial is not the certificate's")
        not_before, not_after = _parse_time(body["not_before"]), _parse_time(body["not_after"])
        if (not_before, not_after) != (certificate.not_valid_before_utc, certificate.not_valid_after_utc):
            raise ValueError("validity is not the certificate's")
        spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return IssuedCertificate(
            certificate_pem=body["certificate"],
            chain_pem=tuple(chain),
            serial_hex=f"{certificate.serial_number:X}",
            not_before=not_before,
            not_after=not_after,
            public_key_sha256=hashlib.sha256(spki).hexdigest(),
            authentication=_issued(body["authentication"], status, chain) if body.get("authentication") else None,
        )
    except (KeyError, TypeError, ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as err:
        # binascii.Error (garbled base64 inside a PEM) is a ValueError
        raise CentralUnavailable("malformed enrollment", status=status, cause="malformed_response") from err


def _record(body: Any, status: int) -> CertificateRecord:
    """A ``Certificate`` answer, checked like an enrollment's certificate."""
    try:
        if not isinstance(body, dict):
            raise TypeError("a certificate record is an object")
        certificate = _certificate(body["certificate"])
        serial = _hex(body["serial"])
        if serial != f"{certificate.serial_number:X}":
            raise ValueError("serial is not the certificate's")
        revoked_at = body.get("revoked_at")
        reason = body.get("revocation_reason")
        if reason is not None and not isinstance(reason, str):
            raise TypeError("revocation_reason is a string")
        return CertificateRecord(
            serial_hex=serial,
            status=CertificateStatus(body["status"]),
            not_before=_parse_time(body["not_before"]),
            not_after=_parse_time(body["not_after"]),
            register_number=_text(body["register_number"]),
            holder_name=_text(body["holder_name"]),
            organisation=_text(body["organisation"]),
            invoice=_text(body["invoice"]),
            token_serial=_text(body.get("token_serial") or ""),
            certificate_pem=body["certificate"],
            revoked_at=_parse_time(revoked_at) if revoked_at is not None else None,
            revocation_reason=reason,
        )
    except (KeyError, TypeError, ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as err:
        raise CentralUnavailable("malformed certificate record", status=status,
                                 cause="malformed_response") from err


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _fees(body: Any) -> Fees:
    if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
        raise TypeError("fees has lines")
    lines = []
    for line in body["lines"]:
        values = (line["quantity"], line["unit_mnt"], line["amount_mnt"])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError("fee amounts are integers")
        lines.append(FeeLine(FeeItem(line["item"]), *values))
    fees = Fees(tuple(lines))
    if fees.total != body.get("total_mnt", fees.total):
        raise ValueError("total_mnt is not the total line")
    return fees


def _parse_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError("a time is an ISO 8601 string")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a time needs its UTC offset")
    return parsed
