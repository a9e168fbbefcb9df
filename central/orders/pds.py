"""The PKI disclosure statements the certificates' QcPDS point to: ``GET /pds/{country}/{language}.pdf``.

One per certificate profile (``TAMGA_CERTIFICATE_PROFILES``) in each of the five languages: the
text in ``central/pds/<language>.txt``, the profile's CA, country and law in
``central/pds/countries.toml``, its policy OID from the profile.  Laid out as the holder agreement
is (``devices.agreement.layout_pdf``: Noto Sans embedded) once per process, public, cacheable.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse

from central.orders import profiles
from devices.agreement import layout_pdf, parse_document

TEXTS_DIR = Path(__file__).resolve().parent.parent / "pds"
LANGUAGES = ("mn", "kk", "ky", "ru", "en")


@cache
def render(country: str, language: str) -> bytes:
    """The PDS of ``country``'s profile in ``language`` as a PDF; KeyError when there is no such profile."""
    profile = profiles.all_profiles()[country]
    parts = tomllib.loads((TEXTS_DIR / "countries.toml").read_text("utf-8"))[country][language]
    template = (TEXTS_DIR / f"{language}.txt").read_text("utf-8")
    title, blocks = parse_document(template, {**parts, "policy": profile.policy.dotted_string})
    return layout_pdf(title, blocks, language=language, author=parts["ca"], subject=f"PDS {country} {language}")


def document(request: HttpRequest, country: str, language: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse(status=405)
        response["Allow"] = "GET, HEAD"
        return response
    if language not in LANGUAGES:
        raise Http404("no such PDS")
    try:
        pdf = render(country, language)
    except KeyError:
        raise Http404("no such PDS") from None
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Language"] = language
    response["Content-Disposition"] = f'inline; filename="pds-{country}-{language}.pdf"'
    response["Cache-Control"] = "public, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
