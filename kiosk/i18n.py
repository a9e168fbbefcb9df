"""Messages in the applicant's language: mn (default), kk, ky, ru, en.

Catalogues are ``kiosk/locale/<lang>.json``, one flat key → text map each, with ``{field}``
placeholders filled from an error's data.  Every language has every key (a test checks it).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from kiosk.errors import KioskError

LANGUAGES = ("mn", "kk", "ky", "ru", "en")
DEFAULT_LANGUAGE = "mn"
CURRENCY_SIGNS = {"MNT": "₮", "KZT": "₸", "KGS": "сом", "RUB": "₽"}


@cache
def catalogue(language: str) -> dict[str, str]:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; choose one of {', '.join(LANGUAGES)}")
    text = resources.files("kiosk").joinpath("locale", f"{language}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def money(amount: int, currency: str = "MNT", language: str = DEFAULT_LANGUAGE) -> str:
    """``88,000 ₮`` (mn, en: comma thousands as on MonPass invoices); ``88 000 ₮`` (kk, ky, ru)."""
    digits = f"{amount:,}"
    if language in ("kk", "ky", "ru"):
        digits = digits.replace(",", "\u202f")
    return f"{digits} {CURRENCY_SIGNS.get(currency, currency)}"


class Translator:
    def __init__(self, language: str = DEFAULT_LANGUAGE, currency: str = "MNT") -> None:
        self.language = language
        self.currency = currency
        self._texts = catalogue(language)

    def __call__(self, key: str, **data: Any) -> str:
        template = self._texts.get(key)
        if template is None:
            template = catalogue("en").get(key, key)
        return template.format_map(_Blank(data))

    def money(self, amount: int) -> str:
        return money(amount, self.currency, self.language)

    def _refusal(self, reason: str, data: dict[str, Any]) -> str:
        fields = {k: self.money(v) if k in ("total", "paid", "due", "balance") and isinstance(v, int) else v
                  for k, v in data.items()}
        return self(f"refusal.{reason}", **fields)

    def error(self, err: KioskError) -> str:
        """The error's message for the person at the kiosk, with its data spelled out."""
        data = dict(err.data)
        key = err.key
        if key == "error.invalid_pin" and data.get("attempts_remaining") is None:
            key = "error.invalid_pin_unknown"
        if key == "error.pin_blocked" and data.get("reason") == "last_try":
            key = "error.pin_last_try"       # never tried: the applicant goes to the card's issuer
        if key == "error.order_not_found" and data.get("reason") == "bad_query":
            key = "order.bad_query"
        if key == "error.central_rejected" and f"refusal.{data.get('refusal')}" in self._texts:
            data["reason"] = self._refusal(data["refusal"], data)    # the order changed at central: say how
        if "reason" in data and f"refusal.{data['reason']}" in self._texts:
            data["reason_text"] = self._refusal(data["reason"], data)
            if key == "error.central_rejected" and "refusal" not in data:
                data["reason"] = data["reason_text"]
        if "why" in data:
            data["why_text"] = self(f"cancel.why.{data['why']}")
        if "rule" in data:
            data["rule_text"] = self(f"pin.rule.{data['rule']}", **data)
        if "device" in data:
            data["device_text"] = self(f"device.{data['device']}")
        if "missing" in data:
            data["missing_text"] = "; ".join(self(f"doc.{d}") for d in data["missing"])
        return self(key, **data)
