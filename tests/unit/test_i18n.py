"""Message catalogues (gettext PO, merged per language), plural forms, and CLDR numbers, money and dates."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kiosk import errors
from kiosk.i18n import LANGUAGES, CatalogueError, Translator, catalogue, load, money, read_catalogue
from kiosk.order import OrderRefusal, compute_fees
from kiosk.receipt import ReceiptFacts, build_receipt
from tests.fakes import demo_order

PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: Texts a language may write as English does: the token's brand name.
SAME_AS_ENGLISH = {"device.token"}      # "eToken" (kk, ky, ru; mn writes Э-Токен)
#: Languages whose nouns change after a number (1 попытка / 2 попытки / 5 попыток; 1 try / 2 tries).
INFLECTING = ("ru", "en")
NBSP = "\u00a0"
NNBSP = "\u202f"          # CLDR's narrow no-break space: "2026 г.", "2:05 PM"


def _placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_has_every_key_with_the_same_placeholders(lang: str) -> None:
    english, own = load("en"), load(lang)
    assert own.texts.keys() == english.texts.keys()
    assert own.plurals.keys() == english.plurals.keys()
    assert set(own.sources) == own.texts.keys() | own.plurals.keys()      # nothing fuzzy or left empty
    for key, text in own.texts.items():
        assert text.strip(), key
        assert _placeholders(text) == _placeholders(english.texts[key]), key
    for key, forms in own.plurals.items():
        for form in forms:
            assert form.strip(), key
            assert _placeholders(form) == _placeholders(english.plurals[key][-1]), key


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_every_text_is_written_in_its_language(lang: str) -> None:
    english, own = load("en"), load(lang)
    same = {k for k, v in own.texts.items() if v == english.texts[k]}
    same |= {k for k, v in own.plurals.items() if set(v) & set(english.plurals[k])}
    assert same <= SAME_AS_ENGLISH


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plural_entries_have_the_forms_the_header_declares_counted_by_one_of_their_fields(lang: str) -> None:
    own, english = load(lang), load("en")
    assert own.plurals, "no plural entries"
    for key, forms in own.plurals.items():
        assert len(forms) == own.num_plurals, key
        assert own.counted_by.get(key) == english.counted_by.get(key), key
        if key in own.counted_by:
            assert all(own.counted_by[key] in _placeholders(f) for f in forms), key
        if lang in INFLECTING:
            assert len(set(forms)) == len(forms), (key, "forms that must differ are equal")
    assert {"nplurals": own.num_plurals} == {"nplurals": {"ru": 3}.get(lang, 2)}


@pytest.mark.parametrize(("count", "word"), [(1, "попытка"), (2, "попытки"), (5, "попыток"), (11, "попыток"),
                                             (21, "попытка"), (22, "попытки"), (25, "попыток")])
def test_russian_tries_left_agree_with_the_number(count: int, word: str) -> None:
    text = Translator("ru").error(errors.InvalidPin(attempts_remaining=count))
    assert re.search(rf"\b{count} {word}\.$", text), text


@pytest.mark.parametrize(("lang", "one", "two"), [
    ("mn", "ПИН код буруу. Үлдсэн оролдлого: 1", "ПИН код буруу. Үлдсэн оролдлого: 2"),
    ("kk", "PIN-код қате. Қалған әрекет саны: 1", "PIN-код қате. Қалған әрекет саны: 2"),
    ("ky", "PIN-код туура эмес. Калган аракет: 1", "PIN-код туура эмес. Калган аракет: 2"),
    ("ru", "Неверный PIN-код. Осталась 1 попытка.", "Неверный PIN-код. Осталось 2 попытки."),
    ("en", "Wrong PIN. 1 try left.", "Wrong PIN. 2 tries left."),
])
def test_wrong_pin_shows_tries_left(lang: str, one: str, two: str) -> None:
    t = Translator(lang)
    assert t.error(errors.InvalidPin(attempts_remaining=1)) == one
    assert t.error(errors.InvalidPin(attempts_remaining=2)) == two


@pytest.mark.parametrize(("lang", "texts"), [
    ("ru", ("остался 1 день", "осталось 3 дня", "осталось 5 дней", "остался 31 день")),
    ("en", ("1 day left", "3 days left", "5 days left", "31 days left")),
    ("kk", ("1 күн қалды", "3 күн қалды", "5 күн қалды", "31 күн қалды")),
])
def test_days_left_by_its_counting_field_or_by_count(lang: str, texts: tuple[str, ...]) -> None:
    t = Translator(lang)
    assert tuple(t("check.days_left", days=n) for n in (1, 3, 5, 31)) == texts
    assert tuple(t("check.days_left", count=n) for n in (1, 3, 5, 31)) == texts


def test_a_plural_message_without_its_number_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"check\.days_left"):
        Translator("ru")("check.days_left")


def test_a_refusal_with_two_counts_chooses_each_form_by_its_own_number() -> None:
    text = Translator("ru").error(errors.OrderNotPayable(reason="not_yet", days_left=41, notice_days=30))
    assert "ещё 41 день;" in text and "за 30 дней до окончания" in text
    text = Translator("en").error(errors.OrderNotPayable(reason="not_yet", days_left=1, notice_days=21))
    assert "valid for 1 more day;" in text and "opens 21 days before" in text


def test_the_certificate_term_on_the_fee_line_agrees_with_the_years() -> None:
    t = Translator("ru")
    assert [t("fee.certificate", years=n).rsplit(" ", 1)[1] for n in (1, 2, 5)] == ["год", "года", "лет"]
    assert Translator("mn")("fee.certificate", years=1).endswith("/Class-3/ 1 жил")      # as on seed 000


def test_every_error_key_and_refusal_is_translated() -> None:
    keys = {cls.key for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.KioskError)}
    keys |= {f"refusal.{r.value}" for r in OrderRefusal}
    t = Translator("en")
    assert {k for k in keys if not t.has(k)} == set()


def test_unpaid_refusal_names_the_amount() -> None:
    msg = Translator("mn").error(errors.OrderNotPayable(reason="unpaid", total=88_000))
    assert "төлөгдөөгүй" in msg and f"(88,000{NBSP}₮)" in msg


def test_a_refusal_names_its_last_day_as_the_language_writes_dates() -> None:
    msg = Translator("ru").error(errors.RenewalNotPossible(reason="too_late", last_request_day="2026-12-01"))
    assert f"(последний день 1 дек. 2026{NNBSP}г.)" in msg


@pytest.mark.parametrize(("lang", "currency", "text"), [
    ("mn", "MNT", f"88,000{NBSP}₮"),               # the sign after the amount, as on MonPass invoices
    ("en", "MNT", "₮88,000"),
    ("ru", "MNT", f"88{NBSP}000{NBSP}₮"),
    ("kk", "KZT", f"88{NBSP}000{NBSP}₸"),
    ("ky", "KGS", f"88{NBSP}000{NBSP}сом"),
    ("en", "KGS", f"сом{NBSP}88,000"),              # CLDR currency spacing: a word is set apart from digits
])
def test_money_per_locale(lang: str, currency: str, text: str) -> None:
    assert money(88_000, currency, lang) == text == Translator(lang, currency).money(88_000)


@pytest.mark.parametrize(("lang", "number", "day", "moment"), [
    ("mn", "1,234,567", f"2026{NNBSP}оны 12-р сарын 3", f"2026{NNBSP}оны 12-р сарын 3 14:05"),
    ("kk", f"1{NBSP}234{NBSP}567", f"2026{NNBSP}ж. 03 жел.", f"2026{NNBSP}ж. 03 жел., 14:05"),
    ("ky", f"1{NBSP}234{NBSP}567", "2026-ж., 3-дек.", "2026-ж., 3-дек. 14:05"),
    ("ru", f"1{NBSP}234{NBSP}567", f"3 дек. 2026{NNBSP}г.", f"3 дек. 2026{NNBSP}г., 14:05"),
    ("en", "1,234,567", "Dec 3, 2026", f"Dec 3, 2026, 2:05{NNBSP}PM"),
])
def test_numbers_and_dates_per_locale(lang: str, number: str, day: str, moment: str) -> None:
    t = Translator(lang)
    assert t.number(1_234_567) == number
    assert t.date(dt.date(2026, 12, 3)) == day
    at = dt.datetime(2026, 12, 3, 14, 5, tzinfo=ZoneInfo("Asia/Ulaanbaatar"))
    assert t.datetime(at) == moment                                    # in the moment's own zone, not UTC


@pytest.mark.parametrize(("lang", "currency", "issued", "until", "total", "term"), [
    ("mn", "MNT", f"2026{NNBSP}оны 12-р сарын 3 14:05", f"2029{NNBSP}оны 12-р сарын 2", f"88,000{NBSP}₮",
     "/Class-3/ 1 жил"),
    ("ru", "MNT", f"3 дек. 2026{NNBSP}г., 14:05", f"2 дек. 2029{NNBSP}г.", f"88{NBSP}000{NBSP}₮", "/Class-3/ 1 год"),
    ("kk", "KZT", f"2026{NNBSP}ж. 03 жел., 14:05", f"2029{NNBSP}ж. 02 жел.", f"88{NBSP}000{NBSP}₸", "/Class-3/ 1 жыл"),
    ("en", "MNT", "Dec 3, 2026, 2:05\u202fPM", "Dec 2, 2029", "₮88,000", "/Class-3/ 1 year"),
])
def test_the_receipt_writes_dates_amounts_and_the_term_as_its_language_does(
        lang: str, currency: str, issued: str, until: str, total: str, term: str) -> None:
    zone = ZoneInfo("Asia/Ulaanbaatar")
    order = demo_order()
    facts = ReceiptFacts(office="УБ-1", issued_at=dt.datetime(2026, 12, 3, 14, 5, tzinfo=zone), order=order,
                         fees=compute_fees(1, True), certificate_serial="5a3f0011",
                         valid_from=dt.datetime(2026, 12, 3, tzinfo=zone),
                         valid_until=dt.datetime(2029, 12, 2, tzinfo=zone),
                         token_serial="0A1B2C", qr_payload="https://tamga.example.mn/v/5A3F0011")
    t = Translator(lang, currency)
    pairs = {line.text: line.value for line in build_receipt(facts, lang, currency).lines if line.value}
    assert pairs[t("receipt.date")] == issued
    assert pairs[t("receipt.valid_until")] == until
    assert pairs[t("fee.total")] == total == pairs[t("receipt.paid")]
    assert any(label.endswith(term) for label in pairs)


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError):
        Translator("de")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_card_at_its_last_try_sends_the_applicant_to_its_issuer(lang: str) -> None:
    text = Translator(lang).error(errors.PinBlocked(device="card", reason="last_try", attempts_remaining=1))
    assert text == catalogue(lang)["error.pin_last_try"]


LOCALE = Path(str(resources.files("kiosk").joinpath("locale")))
PO_FILES = sorted(LOCALE.glob("*/*.po"))
HEADER = """msgid ""
msgstr ""
"Language: {lang}\\n"
"Content-Type: text/plain; charset=utf-8\\n"
"Plural-Forms: {forms}\\n"

"""


def test_every_language_directory_has_the_core_domain() -> None:
    assert {p.parent.name for p in LOCALE.glob("*/core.po")} == set(LANGUAGES)
    assert not list(LOCALE.glob("*.json"))


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext is not installed (apt-get install gettext)")
@pytest.mark.parametrize("po", PO_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_gnu_msgfmt_accepts_the_catalogue(po: Path, tmp_path: Path) -> None:
    run = subprocess.run(["msgfmt", "--check-format", "-c", "-o", str(tmp_path / "out.mo"), str(po)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert not run.stderr, run.stderr


def test_a_key_in_two_domain_files_of_one_language_is_refused(tmp_path: Path) -> None:
    forms = "nplurals=2; plural=(n != 1);"
    (tmp_path / "core.po").write_text(HEADER.format(lang="en", forms=forms) + 'msgid "done.title"\nmsgstr "Done"\n')
    (tmp_path / "clerk.po").write_text(HEADER.format(lang="en", forms=forms) + 'msgid "done.title"\nmsgstr "Ready"\n')
    with pytest.raises(CatalogueError, match=r"done\.title is defined in both clerk\.po and core\.po"):
        read_catalogue("en", [tmp_path / "core.po", tmp_path / "clerk.po"])


def test_domain_files_are_merged_and_a_hand_written_plural_rule_is_accepted(tmp_path: Path) -> None:
    forms = "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);"
    (tmp_path / "core.po").write_text(HEADER.format(lang="ru", forms=forms) + 'msgid "a"\nmsgstr "А"\n',
                                      encoding="utf-8")
    (tmp_path / "clerk.po").write_text(HEADER.format(lang="ru", forms=forms) + 'msgid "b"\nmsgstr "Б"\n',
                                       encoding="utf-8")
    merged = read_catalogue("ru", [tmp_path / "core.po", tmp_path / "clerk.po"])
    assert dict(merged.texts) == {"a": "А", "b": "Б"}
    assert merged.sources == {"a": "core.po", "b": "clerk.po"}


def test_a_plural_rule_other_than_cldr_is_refused(tmp_path: Path) -> None:
    (tmp_path / "core.po").write_text(HEADER.format(lang="ru", forms="nplurals=2; plural=(n != 1);"), encoding="utf-8")
    with pytest.raises(CatalogueError, match="Plural-Forms"):
        read_catalogue("ru", [tmp_path / "core.po"])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_key_is_defined_in_two_domain_files_and_every_file_is_read(lang: str) -> None:
    sources = load(lang).sources        # loading raises CatalogueError on a key in two files
    assert set(sources.values()) == {p.name for p in (LOCALE / lang).glob("*.po")}


def test_the_language_names_the_welcome_screen_shows_are_each_catalogue_own() -> None:
    from kiosk.i18n import LANGUAGE_NAMES

    assert tuple(LANGUAGE_NAMES) == LANGUAGES
    assert all(Translator(lang)("language.name") == name for lang, name in LANGUAGE_NAMES.items())
