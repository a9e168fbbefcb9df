"""The verification page behind the receipt's QR code: ``GET /verify/{serial}``, server-rendered HTML.

It shows what the receipt shows and nothing more: whether the certificate is valid, revoked or
expired, its validity, its issuer, the holder's display name (``Б.Ариун``) and masked register
number (``НЭ******00``), and, where the profile issued one beside it, the authentication certificate's
serial and status (both are on the receipt).  Five languages (mn, kk, ky, ru, en): ``?lang=`` first, then the browser's
Accept-Language, else Mongolian; the words come from the kiosk's catalogues (``kiosk/locale``) where the kiosk has
them.  No JavaScript.  An unknown serial is a calm 404 page; more than
``TAMGA_VERIFY_RATE_PER_MINUTE`` requests a minute from one client address get a 429 page.

The page's form (``POST /verify/{serial}/agreement`` with ``token_serial``) gives the holder the
agreement they signed on the token (``central/orders/agreements.py``), as a PDF download.  A wrong
token serial, an unknown certificate and a missing agreement get the same calm 404 page; one client
address may try ``TAMGA_VERIFY_RATE_PER_MINUTE // 3`` times a minute (at least 3).
"""

from __future__ import annotations

import threading
import time
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.x509.oid import NameOID
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from central.orders import agreements, certificates
from central.orders.errors import ApiError
from central.orders.models import AuthenticationCertificate
from kiosk import register
from kiosk.i18n import Translator, catalogue

LANGUAGES = ("mn", "kk", "ky", "ru", "en")
DEFAULT_LANGUAGE = "mn"
LOCAL_ZONE = ZoneInfo("Asia/Ulaanbaatar")
_KIOSK_KEYS = ("receipt.qr_caption", "receipt.holder", "receipt.register", "receipt.valid_from",
               "receipt.valid_until", "receipt.certificate_serial", "receipt.authentication_serial",
               "check.status.good", "check.status.revoked",
               "check.status.expired", "language.name", "agreement.verify.heading", "agreement.verify.hint",
               "agreement.verify.token_serial", "agreement.verify.download", "agreement.verify.refused",
               "agreement.verify.back")
# Words the kiosk never needed; the rest of the page's vocabulary is the kiosk's.
_EXTRA: dict[str, dict[str, str]] = {
    "issuer": {"mn": "Олгосон байгууллага", "kk": "Берген орган", "ky": "Берген мекеме", "ru": "Издатель",
               "en": "Issuer"},
    "status": {"mn": "Төлөв", "kk": "Күйі", "ky": "Абалы", "ru": "Статус", "en": "Status"},
    "revoked_at": {"mn": "Хүчингүй болгосон огноо", "kk": "Кері қайтарылған күні", "ky": "Жокко чыгарылган күнү",
                   "ru": "Дата отзыва", "en": "Revoked on"},
    "not_found": {"mn": "Ийм гэрчилгээ олдсонгүй. Баримт дээрх дугаарыг шалгана уу.",
                  "kk": "Мұндай сертификат табылмады. Түбіртектегі нөмірді тексеріңіз.",
                  "ky": "Мындай сертификат табылган жок. Дүмүрчөктөгү номерди текшериңиз.",
                  "ru": "Такой сертификат не найден. Проверьте номер на квитанции.",
                  "en": "No such certificate was found. Please check the number on the receipt."},
    "too_many": {"mn": "Хэт олон хүсэлт ирлээ. Нэг минутын дараа дахин оролдоно уу.",
                 "kk": "Сұраулар тым көп. Бір минуттан кейін қайталап көріңіз.",
                 "ky": "Суроолор өтө көп. Бир мүнөттөн кийин кайра аракет кылыңыз.",
                 "ru": "Слишком много запросов. Повторите через минуту.",
                 "en": "Too many requests. Please try again in a minute."},
}
RATE_WINDOW_S = 60.0


@cache
def vocabulary(language: str) -> dict[str, str]:
    """The page's words in ``language``: the kiosk's (``receipt.holder`` → ``receipt_holder``) and the extras."""
    kiosk = catalogue(language)
    words = {key.replace(".", "_"): kiosk[key] for key in _KIOSK_KEYS}
    words.update({key: texts[language] for key, texts in _EXTRA.items()})
    return words


def choose_language(request: HttpRequest) -> str:
    asked = request.GET.get("lang", "")
    if asked in LANGUAGES:
        return asked
    weighted = []
    for index, part in enumerate(request.headers.get("Accept-Language", "")[:500].split(",")):
        tag, _, params = part.strip().partition(";")
        try:
            quality = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            weighted.append((-quality, index, primary))
    return min(weighted)[2] if weighted else DEFAULT_LANGUAGE


class RateLimiter:
    """At most ``limit`` requests per client address in each ``window_s`` (a fixed window, in memory)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def allow(self, address: str, limit: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._counts) > 10_000:      # forget finished windows rather than grow without bound
                self._counts = {a: v for a, v in self._counts.items() if now - v[0] < self.window_s}
            started, count = self._counts.get(address, (now, 0))
            if now - started >= self.window_s:
                started, count = now, 0
            self._counts[address] = (started, count + 1)
            return count < limit


LIMITER = RateLimiter()
AGREEMENT_LIMITER = RateLimiter()


def _date(value: Any, language: str) -> str:
    """The moment in Ulaanbaatar time as ``language`` writes it (CLDR, as the kiosk's receipt does)."""
    return Translator(language).datetime(value.astimezone(LOCAL_ZONE))


def _context(language: str, serial: str) -> dict[str, Any]:
    return {"language": language, "t": vocabulary(language), "serial": serial,
            "languages": [(code, vocabulary(code)["language_name"]) for code in LANGUAGES]}


def page(request: HttpRequest, serial: str) -> HttpResponse:
    language = choose_language(request)
    shown = serial[:64]
    context = _context(language, shown)
    if not LIMITER.allow(request.META.get("REMOTE_ADDR", ""), settings.TAMGA_VERIFY_RATE_PER_MINUTE):
        response = render(request, "verify/message.html", {**context, "message": context["t"]["too_many"]},
                          status=429)
        response["Retry-After"] = str(int(RATE_WINDOW_S))
        return _headers(response, language)
    try:
        enrollment = certificates.find_enrollment(serial)
    except ApiError:
        return _headers(render(request, "verify/message.html", {**context, "message": context["t"]["not_found"]},
                               status=404), language)
    certificate = enrollment.certificate
    loaded = certificate.pub.loaded
    status = certificates.status_of(certificate)
    issuer = loaded.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    holder = enrollment.order.to_kiosk().holder
    context.update({
        "serial": enrollment.certificate_serial,
        "status": status,
        "status_text": context["t"][f"check_status_{'good' if status == 'good' else status}"],
        "not_before": _date(loaded.not_valid_before_utc, language),
        "not_after": _date(loaded.not_valid_after_utc, language),
        "revoked_at": (_date(certificate.revoked_date, language)
                       if status == "revoked" and certificate.revoked_date else ""),
        "issuer": issuer[0].value if issuer else loaded.issuer.rfc4514_string(),
        "holder": holder.display_name,
        "register": register.masked(holder.register_number),
    })
    authentication = AuthenticationCertificate.objects.select_related("certificate").filter(
        enrollment=enrollment).first()
    if authentication is not None:
        other = certificates.status_of(authentication.certificate)
        context.update({"authentication_serial": authentication.certificate_serial, "authentication_status": other,
                        "authentication_status_text": context["t"][f"check_status_{other}"]})
    return _headers(render(request, "verify/certificate.html", context), language)


def agreement(request: HttpRequest, serial: str) -> HttpResponse:
    """``POST /verify/{serial}/agreement``: the signed agreement PDF if ``token_serial`` is the token's."""
    language = choose_language(request)
    context = _context(language, serial[:64])
    if request.method != "POST":
        # The refusal page's language links (?lang=…) and a reload land here: back to the page.
        return _headers(HttpResponseRedirect(f"{reverse('verify', args=[serial[:64]])}?lang={language}"), language)
    limit = max(3, settings.TAMGA_VERIFY_RATE_PER_MINUTE // 3)
    if not AGREEMENT_LIMITER.allow(request.META.get("REMOTE_ADDR", ""), limit):
        response = render(request, "verify/message.html", {**context, "message": context["t"]["too_many"]},
                          status=429)
        response["Retry-After"] = str(int(RATE_WINDOW_S))
        return _headers(response, language)
    pdf = agreements.for_holder(serial, str(request.POST.get("token_serial", "")))
    if pdf is None:
        return _headers(render(request, "verify/message.html",
                               {**context, "message": context["t"]["agreement_verify_refused"], "back": True},
                               status=404), language)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="agreement-{certificates.normalise_serial(serial)}.pdf"'
    return _headers(response, language)


def _headers(response: HttpResponse, language: str) -> HttpResponse:
    response["Content-Language"] = language
    response["Cache-Control"] = "no-store"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Vary"] = "Accept-Language"
    return response
