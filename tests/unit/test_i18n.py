from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from kiosk import errors
from kiosk.i18n import LANGUAGES, CatalogueError, Translator, catalogue, load, money, read_catalogue
from kiosk.order import OrderRefusal

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_every_language_has_every_key_with_the_same_placeholders() -> None:
    reference = catalogue("en")
    for lang in LANGUAGES:
        texts = catalogue(lang)
        assert texts.keys() == reference.keys(), lang
        for key, text in texts.items():
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(reference[key])), (lang, key)
            assert text.strip(), (lang, key)


def test_every_error_key_and_refusal_is_translated() -> None:
    keys = {cls.key for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.KioskError)}
    keys |= {f"refusal.{r.value}" for r in OrderRefusal}
    assert keys <= catalogue("en").keys()


@pytest.mark.parametrize(("lang", "text"), [
    ("mn", "Үлдсэн оролдлого: 2"), ("kk", "Қалған әрекет саны: 2"), ("ky", "Калган аракет: 2"),
    ("ru", "Осталось попыток: 2"), ("en", "Tries left: 2"),
])
def test_wrong_pin_shows_tries_left(lang: str, text: str) -> None:
    assert text in Translator(lang).error(errors.InvalidPin(attempts_remaining=2))


def test_unpaid_refusal_names_the_amount() -> None:
    msg = Translator("mn").error(errors.OrderNotPayable(reason="unpaid", total=88_000))
    assert "төлөгдөөгүй" in msg and "88,000 ₮" in msg


def test_money_formats() -> None:
    assert money(88_000) == "88,000 ₮"
    assert money(88_000, "KZT", "kk") == "88\u202f000 ₸"


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
