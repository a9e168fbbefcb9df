"""Register numbers: exact holder match, an injective ASCII form, the neighbours' formats."""

from __future__ import annotations

import itertools

import pytest

from kiosk import register

# The Mongolian Cyrillic alphabet: the 33 Russian letters and Ө, Ү.
MONGOLIAN_ALPHABET = "АБВГДЕЁЖЗИЙКЛМНОӨПРСТУҮФХЦЧШЩЪЫЬЭЮЯ"
DIGITS = "80000000"


def test_the_alphabet_is_the_35_mongolian_letters() -> None:
    assert len(MONGOLIAN_ALPHABET) == len(set(MONGOLIAN_ALPHABET)) == 35


@pytest.mark.parametrize(("first", "second"), [
    ("УБ80000000", "ҮБ80000000"),
    ("УБ80000000", "ӨБ80000000"),
    ("ОБ80000000", "ӨБ80000000"),
    ("ИБ80000000", "ЙБ80000000"),
    ("ЪБ80000000", "ЬБ80000000"),
    ("ШБ80000000", "ЩБ80000000"),
    ("ЙА80000000", "ИЯ80000000"),
])
def test_numbers_differing_in_one_letter_are_not_the_same_person(first: str, second: str) -> None:
    assert not register.same_person(first, register.certificate_serial_number(second, "MN"))
    assert not register.same_person(second, register.certificate_serial_number(first, "MN"))
    assert register.certificate_serial_number(first, "MN") != register.certificate_serial_number(second, "MN")
    assert register.same_person(first, register.certificate_serial_number(first, "MN"))
    assert register.same_person(second, register.certificate_serial_number(second, "MN"))


def test_the_ascii_form_is_injective_over_every_pair_of_letters() -> None:
    """Every 2-letter prefix of the 35 letters (1225 numbers) has its own ASCII form, which maps back."""
    seen: dict[str, str] = {}
    for first, second in itertools.product(MONGOLIAN_ALPHABET, repeat=2):
        number = first + second + DIGITS
        ascii_form = register.to_ascii(number)
        assert ascii_form not in seen, f"{number} and {seen[ascii_form]} both become {ascii_form}"
        seen[ascii_form] = number
        serial = register.certificate_serial_number(number, "MN")
        assert serial.isascii() and serial.isprintable()
        assert register.from_ascii(ascii_form) == number
        assert register.same_person(number, serial)
    assert len(seen) == 35 * 35


def test_only_the_matching_number_is_the_same_person_over_every_pair() -> None:
    """Each card's serialNumber names exactly one of the 1225 numbers."""
    numbers = [a + b + DIGITS for a, b in itertools.product(MONGOLIAN_ALPHABET, repeat=2)]
    by_ascii = {register.to_ascii(n): n for n in numbers}
    for number in numbers:
        serial = register.certificate_serial_number(number, "MN")
        matches = [other for other in (by_ascii.get(register.from_certificate_serial_number(serial)),) if other]
        assert matches == [number]
        assert register.holder_number(serial) == number


@pytest.mark.parametrize(("number", "ascii_form"), [
    # unambiguous letters keep the form issued certificates and demo data carry
    ("НЭ80000000", "NE80000000"),
    ("ШУ78787878", "SHU78787878"),
    ("УБ80000000", "UB80000000"),
    ("ЖЖ12345678", "JJ12345678"),
    ("ЧД85020202", "CHD85020202"),
    ("ХЦ80000000", "KHTS80000000"),
    ("ЕЁ80000000", "YEYO80000000"),
    ("ЮЯ80000000", "YUYA80000000"),
    # letters that shared a spelling get their own, marked with Q (which begins no spelling)
    ("ӨБ80000000", "OQB80000000"),
    ("ҮБ80000000", "UQB80000000"),
    ("ЙБ80000000", "IQB80000000"),
    ("ЪБ80000000", "IQQB80000000"),
    ("ЬБ80000000", "IQQQB80000000"),
    ("ЩБ80000000", "SHQB80000000"),
])
def test_ascii_forms(number: str, ascii_form: str) -> None:
    assert register.to_ascii(number) == ascii_form


@pytest.mark.parametrize(("typed", "canonical"), [
    ("нэ80000000", "НЭ80000000"),
    ("НЭ 8000 0000", "НЭ80000000"),
    ("НЭ-80000000", "НЭ80000000"),
    ("НЭ\u00a080000000", "НЭ80000000"),           # no-break space
    ("НЭ\u201080000000", "НЭ80000000"),           # hyphen
    ("HЭ80000000", "НЭ80000000"),                 # Latin H
    ("yb80000000", "УВ80000000"),                 # Latin y, b look like у, в
    ("OP80000000", "ОР80000000"),                 # Latin O, P
    ("8801 0130 0010", "880101300010"),
])
def test_normalisation_users_need(typed: str, canonical: str) -> None:
    assert register.canonical(typed) == canonical
    assert register.is_valid(typed)


@pytest.mark.parametrize("typed", [
    "НЭ８０００００００",                # full-width digits
    "НЭ٨٠٠٠٠٠٠٠",                      # Arabic-Indic digits
    "НЭ8000000０",
    "８８０１０１３０００１０",
    "NE80000000",                       # N has no Cyrillic look-alike: an ASCII form, not a typed number
    "НЭ8000000",
    "НЭ800000000",
    "Н80000000",
    "НЭЭ80000000",
    "ӘБ80000000",                       # a Kazakh letter
    "",
])
def test_refused(typed: str) -> None:
    assert not register.is_valid(typed)
    with pytest.raises(ValueError):
        register.to_ascii(typed)


def test_canonical_never_turns_other_digits_into_ascii() -> None:
    assert register.canonical("НЭ８０００００００") == "НЭ８０００００００"
    assert not register.same_person("НЭ８０００００００", "PNOMN-NE80000000")


def _iin(first_eleven: str) -> str:
    digits = [int(c) for c in first_eleven]
    check = sum(w * d for w, d in zip(range(1, 12), digits, strict=True)) % 11
    if check == 10:
        check = sum(w * d for w, d in zip([*range(3, 12), 1, 2], digits, strict=True)) % 11
    assert check != 10
    return first_eleven + str(check)


@pytest.mark.parametrize("iin", ["880101300010", _iin("90020545012"), _iin("00010150001")])
def test_kazakh_iin_with_its_check_digit(iin: str) -> None:
    assert register.is_valid(iin)
    assert register.certificate_serial_number(iin, "KZ") == f"PNOKZ-{iin}"
    assert register.same_person(iin, f"PNOKZ-{iin}")
    assert register.same_person(iin, f"IINKZ-{iin}")
    wrong = iin[:-1] + str((int(iin[-1]) + 1) % 10)
    assert not register.is_valid(wrong)


def test_kazakh_iin_second_weights_when_the_first_sum_gives_ten() -> None:
    # 123456789012: the first weights give 10, the second 3, so the check digit is 3
    assert register.is_valid("123456789013")
    assert not register.is_valid("123456789012")


def test_kyrgyz_pin() -> None:
    assert register.is_valid("21012199500123")
    assert register.same_person("21012199500123", "PNOKG-21012199500123")
    assert not register.is_valid("2101219950012")
    assert not register.same_person("21012199500123", "PNOKG-21012199500124")


@pytest.mark.parametrize(("order_register", "card_serial", "same"), [
    ("НЭ80000000", "PNOMN-NE80000000", True),
    ("нэ 80000000", "PNOMN-NE80000000", True),
    ("НЭ80000000", "NE80000000", True),
    ("НЭ80000000", "pnomn-ne80000000", True),
    ("НЭ80000000", "PNOMN-НЭ80000000", True),       # a card carrying the Cyrillic number
    ("НЭ80000000", "PNOKZ-NE80000000", False),      # another country's number
    ("НЭ80000000", "PNOMN-NE80000001", False),
    ("ШУ78787878", "PNOMN-SHU78787878", True),
    ("ШУ78787878", "PNOMN-SHQU78787878", False),
    ("ЩУ78787878", "PNOMN-SHU78787878", False),
    ("УБ80000000", "PNOMN-UB80000000", True),
    ("ҮБ80000000", "PNOMN-UB80000000", False),
    ("ҮБ80000000", "PNOMN-UQB80000000", True),
    ("НЭ８０００００００", "PNOMN-NE80000000", False),
    ("НЭ80000000", "PNOMN-NE８０００００００", False),
    ("НЭ80000000", "PNOMN-HE80000000", False),      # ASCII on a card is never folded as typed text
    ("НЭ80000000", "", False),
    ("", "", False),
])
def test_same_person(order_register: str, card_serial: str, same: bool) -> None:
    assert register.same_person(order_register, card_serial) is same


@pytest.mark.parametrize(("order_register", "card_serial", "same"), [
    ("880101300010", "IIN880101300010", True),        # as NCA RK writes it: no country, no dash
    ("880101300010", "iin880101300010", True),
    ("880101300010", "IIN880101300011", False),
    ("НЭ80000000", "IINNE80000000", False),
    ("21012199500123", "IIN21012199500123", False),   # IIN is Kazakh and 12 digits
])
def test_kazakh_certificates_carry_iin_without_a_dash(order_register: str, card_serial: str, same: bool) -> None:
    assert register.same_person(order_register, card_serial) is same
