"""Messages in the applicant's language: mn (default), kk, ky, ru, en.

Catalogues are gettext PO files, ``kiosk/locale/<lang>/<domain>.po`` (``core.po``, ``screens.po``, …);
every ``*.po`` of a language's directory is merged, and a key defined in two of them is a
``CatalogueError``.  An entry's msgid is the message key (``error.invalid_pin``), its msgstr the text,
with ``{field}`` placeholders filled from the caller's data (an unknown field prints ``?``).  A key
missing in a language falls back to English, then to the key itself.

Plurals: an entry with ``msgid_plural`` (the key again) has one ``msgstr[i]`` per form that its file's
``Plural-Forms`` header declares (CLDR's rule, as Babel writes it).  Ask for it with
``t(key, count=n, **data)``: ``n`` chooses the form by gettext's rule and fills ``{count}``.  Asking for a
plural entry without ``count`` (or a singular one with it) is a ``TypeError``.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from kiosk.errors import KioskError

LANGUAGES = ("mn", "kk", "ky", "ru", "en")
DEFAULT_LANGUAGE = "mn"
CURRENCY_SIGNS = {"MNT": "₮", "KZT": "₸", "KGS": "сом", "RUB": "₽"}


class CatalogueError(ValueError):
    """A language's PO files cannot be merged: a key in two files, or a Plural-Forms header not CLDR's."""


@dataclass(frozen=True)
class Catalogue:
    """One language's merged messages: singular texts, plural forms, and gettext's compiled lookup."""

    language: str
    texts: Mapping[str, str]                 # key → text, singular entries
    plurals: Mapping[str, tuple[str, ...]]   # key → one text per plural form
    sources: Mapping[str, str]               # key → the PO file that defines it
    num_plurals: int
    translations: gettext.GNUTranslations


def _same_plural_rule(po: Catalog, num_plurals: int, expr: str) -> bool:
    """Whether ``po``'s Plural-Forms header chooses the same form as ``expr`` for 0…1000, however written."""
    theirs, ours = gettext.c2py(po.plural_expr), gettext.c2py(expr)
    return po.num_plurals == num_plurals and all(theirs(n) == ours(n) for n in range(1001))


def read_catalogue(language: str, files: Iterable[Traversable]) -> Catalogue:
    """Merge ``files`` (PO, any order) into one catalogue; raises CatalogueError."""
    merged = Catalog(locale=language, domain="merged")
    expected = get_plural(language)
    texts: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    for file in sorted(files, key=lambda f: f.name):
        with file.open("rb") as stream:
            po = read_po(stream, locale=language, domain=file.name.removesuffix(".po"))
        if not _same_plural_rule(po, expected.num_plurals, expected.plural_expr):
            raise CatalogueError(f"{language}/{file.name}: Plural-Forms {po.plural_forms!r}, "
                                 f"CLDR says {expected.plural_forms!r}")
        for message in po:
            if not message.id:
                continue                                     # the header
            key = message.id if isinstance(message.id, str) else message.id[0]
            if key in sources:
                raise CatalogueError(f"{language}: {key} is defined in both {sources[key]} and {file.name}")
            sources[key] = file.name
            if message.fuzzy:
                continue                                     # unsure: gettext would not use it either
            if isinstance(message.string, str):
                if message.string:
                    texts[key] = message.string
            elif message.string and all(message.string):
                plurals[key] = tuple(message.string)
            merged.add(message.id, message.string)
    compiled = io.BytesIO()
    write_mo(compiled, merged)
    compiled.seek(0)
    return Catalogue(language, texts, plurals, sources, expected.num_plurals, gettext.GNUTranslations(compiled))


@cache
def load(language: str) -> Catalogue:
    """The packaged catalogue of ``language`` (every ``kiosk/locale/<language>/*.po``)."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; choose one of {', '.join(LANGUAGES)}")
    directory = resources.files("kiosk").joinpath("locale", language)
    return read_catalogue(language, (f for f in directory.iterdir() if f.name.endswith(".po")))


def catalogue(language: str) -> Mapping[str, str]:
    """``language``'s singular messages, key → text (plural entries are in ``load(language).plurals``)."""
    return load(language).texts


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
        self._catalogue = load(language)
        self._english = load("en")
        self._texts = self._catalogue.texts

    def _is_plural(self, key: str) -> bool:
        return key in self._catalogue.plurals or (key not in self._texts and key in self._english.plurals)

    def __call__(self, key: str, count: int | None = None, **data: Any) -> str:
        if self._is_plural(key):
            if count is None:
                raise TypeError(f"{key} is a plural message: give count=")
            source = self._catalogue if key in self._catalogue.plurals else self._english
            template = source.translations.ngettext(key, key, count)
            data["count"] = count
        else:
            if count is not None:
                raise TypeError(f"{key} is not a plural message")
            template = self._texts.get(key) or self._english.texts.get(key, key)
        return template.format_map(_Blank(data))

    def money(self, amount: int) -> str:
        return money(amount, self.currency, self.language)

    def _refusal(self, reason: str, data: dict[str, Any]) -> str:
        amounts = ("total", "paid", "due", "balance")
        fields: dict[str, Any] = {k: self.money(v) if k in amounts and isinstance(v, int) else v
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
