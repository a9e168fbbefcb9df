"""The kiosk's client for the central registration service (``central/openapi.yaml``), over requests.

Implements :class:`kiosk.ports.CentralPort`.  Every failure leaves as a :mod:`kiosk.errors` error:

* no connection, a timeout, a 5xx or 429, or an answer that is not the expected JSON
  → :class:`CentralUnavailable` (``data['status']`` is the HTTP status, None without one);
* 404 ``order_not_found`` on a lookup → :class:`OrderNotFound`;
* any other 4xx with ``{"error": code}`` → :class:`CentralRejected` (``data['reason']`` = code,
  ``data['status']``, and for ``order_not_payable`` the order's ``refusal`` reason and amounts).

Both calls are idempotent (a lookup reads; an enrollment carries the kiosk's idempotency key and the
service returns the same certificate for it), so a connection error or timeout is retried once.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import textwrap
import time
from typing import Any
from urllib.parse import quote

import requests

from kiosk.errors import CentralRejected, CentralUnavailable, OrderNotFound
from kiosk.order import Order
from kiosk.ports import IssuedCertificate

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
LOOKUP_KINDS = ("invoice", "register")
_RETRYABLE = (requests.ConnectionError, requests.Timeout)
# Body fields of an error that are passed on in the error's data (``reason`` is renamed ``refusal``).
_ERROR_DETAIL_FIELDS = ("reason", "total", "paid", "due", "term_years", "field")


def csr_pem(csr_der: bytes) -> str:
    """PEM-armour a DER PKCS#10 request."""
    body = "\n".join(textwrap.wrap(base64.b64encode(csr_der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


class CentralClient:
    """:class:`kiosk.ports.CentralPort` over HTTP with a kiosk bearer token.

    ``call_count`` counts HTTP requests sent (a retry counts again) and ``call_seconds`` adds up
    their wall-clock time, for benchmarks.
    """

    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self.call_count = 0
        self.call_seconds = 0.0

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

    def enroll(self, order_id: str, csr_der: bytes, idempotency_key: str) -> IssuedCertificate:
        """Have the CA certify the CSR's key for the order; the same key returns the same certificate.

        Raises CentralRejected (``csr_signature_invalid``, ``order_not_payable``, ``key_reused``,
        ``idempotency_conflict``, …) or CentralUnavailable.
        """
        payload = {"csr": csr_pem(csr_der), "idempotency_key": idempotency_key}
        path = f"{API_PREFIX}/orders/{quote(order_id, safe='')}/enrollments"
        response = self._request("POST", path, idempotent=True, json=payload)
        body = self._expect(response, (200, 201))
        try:
            chain = body["chain"]
            if not isinstance(chain, list) or not all(isinstance(pem, str) for pem in chain):
                raise TypeError("chain is not a list of PEM strings")
            certificate = body["certificate"]
            if not isinstance(certificate, str) or "BEGIN CERTIFICATE" not in certificate:
                raise TypeError("certificate is not PEM")
            return IssuedCertificate(
                certificate_pem=certificate,
                chain_pem=tuple(chain),
                serial_hex=str(body["serial"]),
                not_before=_parse_time(body["not_before"]),
                not_after=_parse_time(body["not_after"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CentralUnavailable("malformed enrollment", status=response.status_code,
                                     cause="malformed_response") from err

    # --- HTTP --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> requests.Response:
        """Send once, and once more after a connection error or timeout if ``idempotent``."""
        attempts = 2 if idempotent else 1
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            self.call_count += 1
            try:
                return self._session.request(method, self.base_url + path, headers=headers,
                                             timeout=self.timeout_s, **kwargs)
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
            raise CentralUnavailable(f"central service answered {status}", status=status,
                                     cause=code if isinstance(code, str) else "http_error")
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


def _parse_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError("a time is an ISO 8601 string")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a time needs its UTC offset")
    return parsed
