"""Messages in the applicant's language: mn (default), kk, ky, ru, en; numbers, money and dates per locale.

Catalogues are gettext PO files, ``kiosk/locale/<lang>/<domain>.po`` (``core.po``, ``screens.po``, …);
every ``*.po`` of a language's directory is merged, and a key defined in two of them is a
``CatalogueError``.  An entry's msgid is the message key (``error.invalid_pin``), its msgstr the text,
with ``{field}`` placeholders filled from the caller's data (an unknown field prints ``?``).  A key
missing in a language falls back to English, then to the key itself.

Plurals: an entry with ``msgid_plural`` (the key again) has one ``msgstr[i]`` per form that its file's
``Plural-Forms`` header declares (CLDR's rule, as Babel writes it).  The number that chooses the form is
``t(key, count=n, **data)``'s ``count`` (also ``{count}`` in the text), or, when the entry carries the
extracted comment ``#. count: <field>``, that field of the data, so ``t("check.days_left", days=5)`` and
``t.error(InvalidPin(attempts_remaining=2))`` need no ``count``.  A plural entry without a number is a
``TypeError``.

Numbers, money and dates go through Babel (CLDR): ``t.number(n)``, ``t.money(amount)`` (whole units in
the kiosk's currency, with ₮, ₸ or "сом": no font has the new som sign U+20C0), ``t.date(d)`` and
``t.datetime(d)`` (shown in ``d``'s own time zone).  Mongolian money keeps the sign after the amount,
``88,000 ₮``, as MonPass invoices write it (seed 000; CLDR's mn pattern puts it first).
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from kiosk.errors import KioskError

LANGUAGES = ("mn", "kk", "ky", "ru", "en")
DEFAULT_LANGUAGE = "mn"
LANGUAGE_NAMES = {"mn": "Монгол", "kk": "Қазақша", "ky": "Кыргызча", "ru": "Русский", "en": "English"}
"""Each language's own name (its catalogue's ``language.name``, which a test keeps equal): the welcome
screen shows all five without reading four catalogues before its first frame."""
CURRENCY_SIGNS = {"MNT": "₮", "KZT": "₸", "KGS": "сом", "RUB": "₽"}
#: Where a language writes money otherwise than CLDR (see the module docstring).
MONEY_PATTERNS = {"mn": "#,##0\u00a0¤"}
COUNT_COMMENT = "count: "
_AMOUNT_FIELDS = ("total", "paid", "due", "balance")
_DATE_FIELDS = ("last_request_day",)


class CatalogueError(ValueError):
    """A language's PO files cannot be merged: a key in two files, or a Plural-Forms header not CLDR's."""


@dataclass(frozen=True)
class Catalogue:
    """One language's merged messages: singular texts, plural forms, and gettext's compiled lookup."""

    language: str
    texts: Mapping[str, str]                 # key → text, singular entries
    plurals: Mapping[str, tuple[str, ...]]   # key → one text per plural form
    counted_by: Mapping[str, str]            # plural key → the data field that chooses its form
    sources: Mapping[str, str]               # key → the PO file that defines it
    num_plurals: int
    translations: gettext.GNUTranslations


def _same_plural_rule(po: Catalog, num_plurals: int, expr: str) -> bool:
    """Whether ``po``'s Plural-Forms header chooses the same form as ``expr`` for 0…1000, however written."""
    return po.num_plurals == num_plurals and _same_forms(po.plural_expr, expr)


@cache
def _same_forms(theirs_expr: str, ours_expr: str) -> bool:
    """Compared once per pair of expressions: every PO file of a language has the same header (the
    touchscreen's first frame loads five languages' catalogues, eight files each)."""
    theirs, ours = gettext.c2py(theirs_expr), gettext.c2py(ours_expr)
    return all(theirs(n) == ours(n) for n in range(1001))


def read_catalogue(language: str, files: Iterable[Traversable]) -> Catalogue:
    """Merge ``files`` (PO, any order) into one catalogue; raises CatalogueError."""
    merged = Catalog(locale=language, domain="merged")
    expected = get_plural(language)
    texts: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    counted_by: dict[str, str] = {}
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
                counted_by.update((key, c.removeprefix(COUNT_COMMENT).strip())
                                  for c in message.auto_comments if c.startswith(COUNT_COMMENT))
            merged.add(message.id, message.string)
    compiled = io.BytesIO()
    write_mo(compiled, merged)
    compiled.seek(0)
    return Catalogue(language, texts, plurals, counted_by, sources, expected.num_plurals,
                     gettext.GNUTranslations(compiled))


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
    """``amount`` whole units of ``currency`` as ``language`` writes money: ``88,000 ₮`` (mn), ``88 000 ₸`` (kk)."""
    pattern = MONEY_PATTERNS.get(language) or Locale.parse(language).currency_formats["standard"].pattern
    pattern = pattern.split(";")[0].replace("0.00", "0")
    sign = CURRENCY_SIGNS.get(currency, currency)
    if unicodedata.category(sign[0]) != "Sc":        # CLDR's currency spacing: a word is set apart
        pattern = pattern.replace("¤#", "¤\u00a0#").replace("0¤", "0\u00a0¤")
    return format_decimal(amount, format=pattern.replace("¤", f"'{sign}'"), locale=language)


def number(value: float, language: str = DEFAULT_LANGUAGE) -> str:
    """``1,234,567`` (mn, en), ``1 234 567`` (kk, ky, ru)."""
    return format_decimal(value, locale=language)


def date(value: dt.date, language: str = DEFAULT_LANGUAGE) -> str:
    """CLDR's medium date: ``2026 оны 12-р сарын 3`` (mn), ``3 дек. 2026 г.`` (ru), ``Dec 3, 2026`` (en)."""
    return format_date(value, "medium", locale=language)


def datetime(value: dt.datetime, language: str = DEFAULT_LANGUAGE) -> str:
    """The medium date and the short time in ``value``'s own zone: ``2026 оны 12-р сарын 3 14:05`` (mn)."""
    time = format_time(value, "short", tzinfo=value.tzinfo, locale=language)
    return str(get_datetime_format("medium", locale=language)).format(time, date(value, language))


class Translator:
    def __init__(self, language: str = DEFAULT_LANGUAGE, currency: str = "MNT") -> None:
        self.language = language
        self.currency = currency
        self._catalogue = load(language)
        self._english = load("en")
        self._texts = self._catalogue.texts

    def has(self, key: str) -> bool:
        """Whether ``key`` is a message (singular or plural) of this language or of English."""
        return any(key in c.texts or key in c.plurals for c in (self._catalogue, self._english))

    def __call__(self, key: str, count: int | None = None, **data: Any) -> str:
        source = self._catalogue if key in self._catalogue.plurals or key in self._texts else self._english
        if key in source.plurals:
            field = source.counted_by.get(key, "count")
            if count is None:
                count = data.get(field)
            else:
                data.setdefault(field, count)
            if not isinstance(count, int):
                raise TypeError(f"{key} is a plural message: give count= (or its counting field)")
            template = source.translations.ngettext(key, key, count)
        else:
            template = source.texts.get(key, key)
        if count is not None:
            data["count"] = count
        return template.format_map(_Blank(data))

    def money(self, amount: int) -> str:
        return money(amount, self.currency, self.language)

    def number(self, value: float) -> str:
        return number(value, self.language)

    def date(self, value: dt.date) -> str:
        return date(value, self.language)

    def datetime(self, value: dt.datetime) -> str:
        return datetime(value, self.language)

    def _refusal(self, reason: str, data: dict[str, Any]) -> str:
        fields: dict[str, Any] = dict(data)
        for k, v in data.items():
            if k in _AMOUNT_FIELDS and isinstance(v, int):
                fields[k] = self.money(v)
            elif k in _DATE_FIELDS and isinstance(v, str):
                fields[k] = self.date(dt.date.fromisoformat(v))
        if isinstance(data.get("notice_days"), int):
            fields["opens_text"] = self("renewal.opens_before", notice_days=data["notice_days"])
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
        if key == "error.central_rejected" and self.has(f"refusal.{data.get('refusal')}"):
            data["reason"] = self._refusal(data["refusal"], data)    # the order changed at central: say how
        if "reason" in data and self.has(f"refusal.{data['reason']}"):
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
