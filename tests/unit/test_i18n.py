from __future__ import annotations

import re

import pytest

from kiosk import errors
from kiosk.i18n import LANGUAGES, Translator, catalogue, money
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
