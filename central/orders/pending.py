"""A certificate issued for a token, served by the token's serial: to the office's kiosks, and to
the holder's own client (shared seed 000, step 8) when it proves it holds the token.

The holder's proof is the SHA-256 of the certificate's SubjectPublicKeyInfo (DER, hex).  The key
pair was generated on the token and the public key left it only inside the CSR the kiosk sent
here, so before the certificate is installed anywhere only the token (read by the holder's client)
can give it.  A guesser must find 256 bits per token serial; a wrong serial and a wrong digest get
the same 404, and every address is rate-limited (``TAMGA_HOLDER_RATE_PER_MINUTE``, default 10).
"""

from __future__ import annotations

import os
import re

from django.http import HttpRequest, HttpResponse

from central.orders.api import api_view, error_response, json_response, office_of
from central.orders.errors import ApiError
from central.orders.issuance import MAX_TOKEN_SERIAL, enrollment_body
from central.orders.models import Enrollment, InboxEvent, KioskCredential
from central.orders.verify import RATE_WINDOW_S, RateLimiter

HOLDER_LIMITER = RateLimiter()
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def holder_rate() -> int:
    return int(os.environ.get("TAMGA_HOLDER_RATE_PER_MINUTE", "10"))


def _not_found() -> ApiError:
    return ApiError(404, "certificate_not_found", "no certificate for this token")


def _valid_serial(token_serial: str) -> bool:
    return 0 < len(token_serial) <= MAX_TOKEN_SERIAL and token_serial.isprintable()


def latest_for_token(token_serial: str, **match: object) -> Enrollment:
    """The newest unvoided certificate issued on ``token_serial`` that also matches ``match``; else 404."""
    if not _valid_serial(token_serial):
        raise _not_found()
    enrollment = (Enrollment.objects.select_related("certificate", "certificate__ca", "order")
                  .filter(token_serial=token_serial, voided_at__isnull=True, **match)
                  .order_by("-created_at", "-id").first())
    if enrollment is None:
        raise _not_found()
    return enrollment


@api_view("GET")
def kiosk_token_certificate(request: HttpRequest, token_serial: str) -> HttpResponse:
    """``GET /api/v1/tokens/{token_serial}/certificate``: the token's newest valid certificate in this office,
    with its order (``TokenCertificate``): any kiosk of the office installs it at the token's next insertion."""
    enrollment = latest_for_token(token_serial, order__office_id=office_of(request), certificate__revoked=False)
    return json_response({**enrollment_body(enrollment), "order_id": str(enrollment.order_id),
                          "invoice": enrollment.order.invoice, "token_serial": enrollment.token_serial})


REFUSED_EVENT, REMOVED_EVENT = "enrollment.refused", "enrollment.unused_key_removed"   # kiosk/events.py


@api_view("GET")
def kiosk_token_refused_keys(request: HttpRequest, token_serial: str) -> HttpResponse:
    """``GET /api/v1/tokens/{token_serial}/refused-keys``: keys on the token whose kept request the central refused,
    as the office's kiosks journalled them, and that no kiosk has journalled removed since (``RefusedKeys``).

    Any kiosk of the office removes such a key at the token's next insertion, not only the one that kept the
    request: the refusing kiosk's journal (``/events``) says which key, the remover's says it is gone.
    """
    if not _valid_serial(token_serial):
        raise _not_found()
    kiosks = KioskCredential.objects.filter(office_id=office_of(request)).values("kiosk_id")
    events = (InboxEvent.objects.filter(kiosk_id__in=kiosks, kind__in=(REFUSED_EVENT, REMOVED_EVENT),
                                        payload__token_serial=token_serial).order_by("received_at", "id"))
    refused: dict[str, dict[str, object]] = {}
    for event in events:
        digest = event.payload.get("public_key_sha256")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            continue
        if event.kind == REMOVED_EVENT:
            refused.pop(digest, None)
            continue
        refused[digest] = {"public_key_sha256": digest, "kiosk_id": event.kiosk_id, "refused_at": event.created_at,
                           **{k: event.payload.get(k) for k in ("reason", "refusal", "invoice", "issued_by",
                                                                  "issued_at")}}
    return json_response({"token_serial": token_serial, "refused": list(refused.values())})


def holder_token_certificate(request: HttpRequest, token_serial: str) -> HttpResponse:
    """``GET /api/v1/holder/tokens/{token_serial}/certificate?public_key_sha256=…``: no kiosk credential."""
    if request.method != "GET":
        response = error_response(405, "method_not_allowed", "use GET")
        response["Allow"] = "GET"
        return response
    if not HOLDER_LIMITER.allow(request.META.get("REMOTE_ADDR", ""), holder_rate()):
        response = error_response(429, "too_many_requests", "too many requests; try again in a minute")
        response["Retry-After"] = str(int(RATE_WINDOW_S))
        return response
    digest = request.GET.get("public_key_sha256", "")
    if set(request.GET) != {"public_key_sha256"} or not _DIGEST.match(digest):
        return error_response(400, "invalid_query",
                              "give public_key_sha256: the SHA-256 (64 lower-case hex) of the token's public key",
                              field="public_key_sha256")
    try:
        enrollment = latest_for_token(token_serial, public_key_sha256=digest)
    except ApiError as err:
        return json_response(err.body(), status=err.status)
    return json_response(enrollment_body(enrollment))
