"""Personal register numbers: normalising, comparing, and the ASCII form written into certificates.

Mongolian register numbers are two Cyrillic letters and eight digits (``НЭ80000000``).  X.520
serialNumber is a PrintableString, so certificates carry an ASCII form with an ETSI EN 319 412-1
semantics prefix: ``PNOMN-NE80000000`` (PNO = national personal number, MN = country).
Kazakhstan's IIN (12 digits) and Kyrgyzstan's PIN (14 digits) are digits only.
"""

from __future__ import annotations

import re

# MNS 5217:2012 Mongolian Cyrillic → Latin, upper case; Kazakh/Kyrgyz letters for completeness.
_TRANSLIT = {
    "А": "A", "Б": "B", "В": "V", "Г": "G", "Д": "D", "Е": "YE", "Ё": "YO", "Ж": "J", "З": "Z",
    "И": "I", "Й": "I", "К": "K", "Л": "L", "М": "M", "Н": "N", "О": "O", "Ө": "U", "П": "P",
    "Р": "R", "С": "S", "Т": "T", "У": "U", "Ү": "U", "Ф": "F", "Х": "KH", "Ц": "TS", "Ч": "CH",
    "Ш": "SH", "Щ": "SH", "Ъ": "I", "Ы": "Y", "Ь": "I", "Э": "E", "Ю": "YU", "Я": "YA",
    "Ә": "A", "Ғ": "G", "Қ": "Q", "Ң": "NG", "Ұ": "U", "Һ": "H", "І": "I",
}
# Letters that transliterate ambiguously (Ө/У/Ү → U) must still compare distinctly, so identity
# comparison uses the Cyrillic canonical form, never the ASCII one.
_LATIN_TO_CYRILLIC_LOOKALIKE = str.maketrans("ABEKMHOPCTYX", "АВЕКМНОРСТУХ")

_MN_PATTERN = re.compile(r"^[А-ЯЁӨҮ]{2}\d{8}$")
_DIGITS_PATTERN = re.compile(r"^\d{12}$|^\d{14}$")
SEMANTICS_PREFIX = "PNO"


def canonical(register_number: str) -> str:
    """Upper-case, strip spaces and dashes, fold Latin look-alike letters typed by mistake into Cyrillic."""
    text = re.sub(r"[\s\-]", "", register_number).upper()
    letters, digits = text[:2], text[2:]
    if digits.isdigit() and not letters.isdigit():
        letters = letters.translate(_LATIN_TO_CYRILLIC_LOOKALIKE)
    return letters + digits


def is_valid(register_number: str) -> bool:
    value = canonical(register_number)
    return bool(_MN_PATTERN.match(value) or _DIGITS_PATTERN.match(value))


def to_ascii(register_number: str) -> str:
    """Transliterate to ASCII (``НЭ80000000`` → ``NE80000000``); raises ValueError on other characters."""
    out = []
    for ch in canonical(register_number):
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ch in _TRANSLIT:
            out.append(_TRANSLIT[ch])
        else:
            raise ValueError(f"cannot transliterate {ch!r} in a register number")
    return "".join(out)


def certificate_serial_number(register_number: str, country: str) -> str:
    """The subject serialNumber value: ``PNO`` + country + ``-`` + ASCII register number."""
    return f"{SEMANTICS_PREFIX}{country.upper()}-{to_ascii(register_number)}"


def from_certificate_serial_number(value: str) -> str:
    """Strip an ETSI semantics prefix (``PNOMN-``) if present; the rest is the ASCII register number."""
    match = re.match(r"^(?:PNO|IDC|PAS|TIN|IIN)[A-Z]{2}-(.+)$", value.strip())
    return (match.group(1) if match else value.strip()).upper()


def same_person(order_register: str, card_serial_number: str) -> bool:
    """Whether a card's serialNumber names the order's register number.

    The card carries ASCII; transliteration loses Ө/У/Ү distinctions, so we compare the ASCII of
    the order's number with the card's value: equal ASCII with different Cyrillic can only arise
    for numbers differing in those letters, and the number's digits are unique per person.
    """
    try:
        order_ascii = to_ascii(order_register)
    except ValueError:
        return False
    return order_ascii == from_certificate_serial_number(card_serial_number)


def masked(register_number: str) -> str:
    """For receipts and logs: ``НЭ80000000`` → ``НЭ******00``."""
    value = canonical(register_number)
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
