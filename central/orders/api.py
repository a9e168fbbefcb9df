"""The kiosk JSON API under ``/api/v1/`` (``central/openapi.yaml``): kiosk client certificates, JSON in and out.

Every answer is JSON, errors included: ``{"error": code, "message": text, ...}``.  A server error
is ``500 {"error": "internal_error"}`` and is logged with its traceback, never shown.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from central.orders import auth, certificates, escrow, issuance, offices, renewal
from central.orders.errors import ApiError
from central.orders.models import OPEN_STATUSES, Order
from kiosk import register
from kiosk.order import INVOICE_PATTERN

log = logging.getLogger("central.api")

View = Callable[..., HttpResponse]


def error_response(status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    response = JsonResponse({"error": code, "message": message, **extra}, status=status,
                            json_dumps_params={"ensure_ascii": False})
    return response


def json_response(body: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})


def api_view(*methods: str, kiosk: bool = True) -> Callable[[View], View]:
    """Allow ``methods``, require a kiosk client certificate (unless not ``kiosk``), answer ApiError as JSON."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error_response(405, "method_not_allowed", f"use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            if kiosk:
                kiosk_id = auth.authenticate(request)
                if isinstance(kiosk_id, auth.Refusal):
                    return error_response(401, kiosk_id.code, kiosk_id.message)
                request.kiosk_id = kiosk_id  # type: ignore[attr-defined]
                request.office_id = offices.office_id_of(kiosk_id)  # type: ignore[attr-defined]
            try:
                return view(request, *args, **kwargs)
            except ApiError as err:
                if err.status >= 500:
                    log.error("%s %s: %s", request.method, request.path, err)
                return json_response(err.body(), status=err.status)

        return wrapper

    return decorate


def read_json(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; 400 ``invalid_request`` (also for absurd nesting), 413 if too big."""
    try:
        payload = json.loads(request.body)
    except RequestDataTooBig as err:
        raise ApiError(413, "request_too_large", "the request body is too large") from err
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, "invalid_request", "the body is not JSON") from err
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return payload


def read_batch(request: HttpRequest, name: str, limit: int) -> list[Any]:
    """The body's list ``name`` of at most ``limit`` items (a kiosk's pushed batch); 400 ``invalid_request``."""
    batch = read_json(request).get(name)
    if not isinstance(batch, list) or len(batch) > limit:
        raise ApiError(400, "invalid_request", f"{name} must be a list of at most {limit}", field=name)
    return batch


def short_text(value: Any, limit: int) -> bool:
    """1 to ``limit`` printable characters."""
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def office_of(request: HttpRequest) -> int:
    """The id of the authenticated kiosk's office (``offices.NO_OFFICE`` if it has none)."""
    return int(request.office_id)  # type: ignore[attr-defined]


def order_body(order: Order) -> dict[str, Any]:
    """The ``Order`` schema: ``kiosk.order.Order.from_dict`` reads it; ``fees`` as the invoice shows them."""
    fees = order.fees
    return {
        **order.to_api(),
        "fees": {
            "currency": "MNT",
            "lines": [{"item": line.item.value, "quantity": line.quantity, "unit_mnt": line.unit_mnt,
                       "amount_mnt": line.amount_mnt} for line in fees.lines],
            "subtotal_mnt": fees.subtotal,
            "vat_mnt": fees.vat,
            "total_mnt": fees.total,
        },
    }


@api_view("GET")
def orders(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/orders?invoice=…`` (any status) or ``?register=…`` (newest open order)."""
    invoice = request.GET.get("invoice")
    register_number = request.GET.get("register")
    if invoice is not None and register_number is None:
        if not INVOICE_PATTERN.match(invoice):
            raise ApiError(400, "invalid_query", "an invoice number is 12 digits")
        order = Order.objects.filter(invoice=invoice, office_id=office_of(request)).first()
    elif register_number is not None and invoice is None:
        if not register.is_valid(register_number):
            raise ApiError(400, "invalid_query", "not a register number")
        order = (Order.objects.filter(register_number=register.canonical(register_number),
                                      status__in=OPEN_STATUSES, office_id=office_of(request))
                 .order_by("-created_at", "-id").first())
    else:
        raise ApiError(400, "invalid_query", "give exactly one of invoice or register")
    if order is None:
        raise ApiError(404, "order_not_found", "no such order")
    return json_response(order_body(order))


@api_view("POST")
def enrollments(request: HttpRequest, order_id: str) -> HttpResponse:
    """``POST /api/v1/orders/{id}/enrollments`` with ``{"csr": PEM, "idempotency_key": str}``
    and optionally ``token_serial``, ``so_pin_escrow`` (base64 RSA-OAEP-SHA256), ``escrow_key_id`` and
    ``authentication_csr`` (PEM, another key: the authentication certificate where the profile issues one),
    ``order_digest`` (the order as the kiosk checked it: a changed order is 409 ``order_changed``).

    201 with the new certificate; 200 with the same certificate for a repeated request.
    """
    payload = read_json(request)
    csr = payload.get("csr")
    idempotency_key = payload.get("idempotency_key")
    if not isinstance(csr, str) or not isinstance(idempotency_key, str):
        raise ApiError(400, "invalid_request", "csr and idempotency_key are required strings")
    authentication_csr = payload.get("authentication_csr")
    if authentication_csr is not None and not isinstance(authentication_csr, str):
        raise ApiError(400, "invalid_request", "authentication_csr is a PEM string", field="authentication_csr")
    token_serial = issuance.check_token_serial(payload.get("token_serial", ""))
    ciphertext = escrow.check_escrow(payload, token_serial)
    kiosk_id: str = request.kiosk_id  # type: ignore[attr-defined]
    enrollment, created = issuance.enroll(order_id, csr, idempotency_key, kiosk_id, token_serial, ciphertext,
                                          office_id=office_of(request), authentication_csr_pem=authentication_csr,
                                          order_digest=payload.get("order_digest"))
    if created:
        log.info("issued %s for order %s (kiosk %s, token %s)", enrollment.certificate_serial, order_id,
                 kiosk_id, token_serial or "-")
    return json_response(issuance.enrollment_body(enrollment), status=201 if created else 200)


@api_view("POST")
def void_enrollment(request: HttpRequest, idempotency_key: str) -> HttpResponse:
    """``POST /api/v1/enrollments/{idempotency_key}/void``: the key is unusable, its certificate revoked."""
    return json_response(issuance.void(idempotency_key, request.kiosk_id))  # type: ignore[attr-defined]


@api_view("GET")
def escrow_key(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/escrow-key``: the public key kiosks encrypt SO PINs to."""
    return json_response(escrow.escrow_key_body())


@api_view("GET")
def certificate_list(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/certificates?register=…``: the holder's certificates, newest first."""
    register_number = request.GET.get("register")
    if register_number is None or set(request.GET) != {"register"}:
        raise ApiError(400, "invalid_query", "give register")
    found = certificates.holder_certificates(register_number)
    mine = offices.certificate_serials(office_of(request), [body["serial"] for body in found])
    return json_response({"certificates": [body for body in found if body["serial"] in mine]})


@api_view("GET")
def certificate(request: HttpRequest, serial: str) -> HttpResponse:
    """``GET /api/v1/certificates/{serial}``."""
    offices.require_certificate(serial, office_of(request))
    return json_response(certificates.certificate_body(certificates.find_enrollment(serial)))


@api_view("POST")
def revocation(request: HttpRequest, serial: str) -> HttpResponse:
    """``POST /api/v1/certificates/{serial}/revocation`` with ``{reason, register_number, idempotency_key}``."""
    offices.require_certificate(serial, office_of(request))
    body, created = certificates.revoke(serial, read_json(request), request.kiosk_id)  # type: ignore[attr-defined]
    return json_response(body, status=201 if created else 200)


@api_view("GET")
def renewal_terms(request: HttpRequest, serial: str) -> HttpResponse:
    """``GET /api/v1/certificates/{serial}/renewal?term_years=1|2``."""
    offices.require_certificate(serial, office_of(request))
    return json_response(renewal.terms(serial, request.GET.get("term_years")))


@api_view("POST")
def renewals(request: HttpRequest, serial: str) -> HttpResponse:
    """``POST /api/v1/certificates/{serial}/renewals`` with ``{application, signature, csr, idempotency_key}``."""
    offices.require_certificate(serial, office_of(request))
    enrollment, created = renewal.renew(serial, read_json(request), request.kiosk_id)  # type: ignore[attr-defined]
    return json_response(issuance.enrollment_body(enrollment), status=201 if created else 200)


@api_view("POST")
def so_pin(request: HttpRequest, token_serial: str) -> HttpResponse:
    """``POST /api/v1/tokens/{token_serial}/so-pin``: the escrowed SO PIN re-encrypted to the kiosk's key."""
    payload = read_json(request)
    if isinstance(payload.get("certificate_serial"), str):
        offices.require_certificate(payload["certificate_serial"], office_of(request))
    return json_response(escrow.release(token_serial, payload, request.kiosk_id))  # type: ignore[attr-defined]


def health(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/health``: no authentication, no database access."""
    if request.method != "GET":
        return error_response(405, "method_not_allowed", "use GET")
    return json_response({"status": "ok"})


# --- Django's error handlers and a last-resort middleware: JSON, never HTML ---------------------------
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(400, "bad_request", "the request could not be read")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(403, "forbidden", "not allowed")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(404, "not_found", "no such endpoint")


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(500, "internal_error", "the central service failed; try again later")


class BodyLimitMiddleware:
    """Refuse a body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` with ``413 request_too_large`` before reading it.

    cheroot's own limit (``central.serving``) is higher, so a body between the two gets this JSON answer.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "bad_request", "Content-Length is not a number")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            return error_response(413, "request_too_large", f"the request body exceeds {limit} bytes",
                                  limit=limit)
        return self.get_response(request)


class JsonErrorMiddleware:
    """Log any exception a view lets escape and answer ``500 internal_error`` as JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApiError):
            return json_response(exception.body(), status=exception.status)
        if isinstance(exception, RequestDataTooBig):
            return error_response(413, "request_too_large", "the request body is too large")
        if isinstance(exception, Http404 | PermissionDenied | SuspiciousOperation | BadRequest):
            return None  # Django answers these through the JSON handlers above
        log.exception("%s %s failed", request.method, request.path)
        return server_error(request)
