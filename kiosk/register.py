"""Personal register numbers: normalising, comparing, and the ASCII form written into certificates.

Mongolian register numbers are two Cyrillic letters and eight digits (``НЭ80000000``).  X.520
serialNumber is a PrintableString, so certificates carry an ASCII form with an ETSI EN 319 412-1
semantics prefix: ``PNOMN-NE80000000`` (PNO = national personal number, MN = country).
Kazakhstan's IIN (12 digits, the last a check digit) and Kyrgyzstan's PIN (14 digits) are digits only.

The ASCII form is injective: two register numbers never share one (a test walks every pair of the
35 letters).  Letters whose spelling is unambiguous keep the MNS 5217:2012 form issued certificates
carry (``НЭ`` → ``NE``, ``ШУ`` → ``SHU``, ``УБ`` → ``UB``).  Letters that used to share a spelling
with a more common one get it followed by ``Q``, which begins no spelling: ``Ө`` → ``OQ``,
``Ү`` → ``UQ``, ``Й`` → ``IQ``, ``Ъ`` → ``IQQ``, ``Ь`` → ``IQQQ``, ``Щ`` → ``SHQ``.

Identity is never decided on a lossy form: :func:`same_person` compares canonical Cyrillic with
canonical Cyrillic, decoding a card's ASCII back with :func:`from_ascii`.  Only ASCII digits count:
full-width or other scripts' digits are refused, never converted.
"""

from __future__ import annotations

import re
from functools import cache

_TRANSLIT = {
    "А": "A", "Б": "B", "В": "V", "Г": "G", "Д": "D", "Е": "YE", "Ё": "YO", "Ж": "J", "З": "Z",
    "И": "I", "Й": "IQ", "К": "K", "Л": "L", "М": "M", "Н": "N", "О": "O", "Ө": "OQ", "П": "P",
    "Р": "R", "С": "S", "Т": "T", "У": "U", "Ү": "UQ", "Ф": "F", "Х": "KH", "Ц": "TS", "Ч": "CH",
    "Ш": "SH", "Щ": "SHQ", "Ъ": "IQQ", "Ы": "Y", "Ь": "IQQQ", "Э": "E", "Ю": "YU", "Я": "YA",
}
MONGOLIAN_LETTERS = "".join(_TRANSLIT)
# Latin letters a clerk may type for the Cyrillic ones they look like (after upper-casing).
_LATIN_TO_CYRILLIC_LOOKALIKE = str.maketrans("ABEKMHOPCTYX", "АВЕКМНОРСТУХ")
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]")

_MN_PATTERN = re.compile(f"[{MONGOLIAN_LETTERS}]{{2}}[0-9]{{8}}")
_KZ_PATTERN = re.compile(r"[0-9]{12}")
_KG_PATTERN = re.compile(r"[0-9]{14}")
_ASCII_MN_PATTERN = re.compile(r"([A-Z]{2,8})([0-9]{8})")
_CERTIFICATE_PREFIX = re.compile(r"(?:PNO|IDC|PAS|TIN|IIN)([A-Z]{2})-(.+)")
_NCA_RK_PREFIX = re.compile(r"IIN([0-9]{12})")        # Kazakh cards: IIN + the 12 digits, no country or dash
SEMANTICS_PREFIX = "PNO"

_IIN_WEIGHTS = (tuple(range(1, 12)), (*range(3, 12), 1, 2))


def canonical(register_number: str) -> str:
    """Upper-case, strip spaces and dashes, fold Latin look-alike letters typed by mistake into Cyrillic.

    Digits are left as they are: ``is_valid`` refuses anything but ASCII digits.
    """
    text = _SEPARATORS.sub("", register_number).upper()
    letters, digits = text[:2], text[2:]
    if digits.isascii() and digits.isdigit() and not (letters.isascii() and letters.isdigit()):
        letters = letters.translate(_LATIN_TO_CYRILLIC_LOOKALIKE)
    return letters + digits


def _iin_check_digit_ok(iin: str) -> bool:
    """Kazakh IIN: weights 1..11 mod 11, or 3..11,1,2 when that gives 10; 10 again means invalid."""
    digits = [int(c) for c in iin]
    for weights in _IIN_WEIGHTS:
        check = sum(w * d for w, d in zip(weights, digits[:11], strict=True)) % 11
        if check != 10:
            return check == digits[11]
    return False


def country_of(register_number: str) -> str | None:
    """``MN``, ``KZ`` or ``KG`` for a valid number (canonical or as typed), else None."""
    value = canonical(register_number)
    if _MN_PATTERN.fullmatch(value):
        return "MN"
    if _KZ_PATTERN.fullmatch(value):
        return "KZ" if _iin_check_digit_ok(value) else None
    if _KG_PATTERN.fullmatch(value):
        return "KG"
    return None


def is_valid(register_number: str) -> bool:
    return country_of(register_number) is not None


def to_ascii(register_number: str) -> str:
    """The injective ASCII form (``НЭ80000000`` → ``NE80000000``).  Raises ValueError when not valid."""
    value = canonical(register_number)
    if not is_valid(value):
        raise ValueError("not a register number")
    if value.isdigit():
        return value
    return "".join(_TRANSLIT[ch] for ch in value[:2]) + value[2:]


@cache
def _prefixes_by_ascii() -> dict[str, str]:
    table: dict[str, str] = {}
    for first in MONGOLIAN_LETTERS:
        for second in MONGOLIAN_LETTERS:
            spelled = _TRANSLIT[first] + _TRANSLIT[second]
            if spelled in table:            # the unit test proves this never happens
                raise AssertionError(f"{first}{second} and {table[spelled]} share {spelled}")
            table[spelled] = first + second
    return table


def from_ascii(ascii_form: str) -> str | None:
    """The canonical register number whose ASCII form is ``ascii_form`` (upper or lower case), or None."""
    value = ascii_form.strip().upper()
    if not value.isascii():
        return None
    if _KZ_PATTERN.fullmatch(value) or _KG_PATTERN.fullmatch(value):
        return value if is_valid(value) else None
    match = _ASCII_MN_PATTERN.fullmatch(value)
    if match is None:
        return None
    letters = _prefixes_by_ascii().get(match.group(1))
    return None if letters is None else letters + match.group(2)


def certificate_serial_number(register_number: str, country: str) -> str:
    """The subject serialNumber value: ``PNO`` + country + ``-`` + ASCII register number."""
    return f"{SEMANTICS_PREFIX}{country.upper()}-{to_ascii(register_number)}"


def from_certificate_serial_number(value: str) -> str:
    """Strip an ETSI semantics prefix (``PNOMN-``) if present; the rest is the ASCII register number."""
    text = value.strip().upper()
    match = _CERTIFICATE_PREFIX.fullmatch(text) or _NCA_RK_PREFIX.fullmatch(text)
    return match.group(match.lastindex or 0) if match else text


def holder_number(card_serial_number: str) -> str | None:
    """The canonical register number a certificate's serialNumber names, or None.

    ASCII (``PNOMN-UQB80000000``) is decoded exactly, never folded as typed text; a Cyrillic
    value (``PNOMN-ҮБ80000000``) is taken canonical; ``IIN`` + 12 digits is a Kazakh IIN.  A prefix
    naming another country than the number's is refused.
    """
    text = card_serial_number.strip().upper()
    match = _CERTIFICATE_PREFIX.fullmatch(text)
    nca_rk = _NCA_RK_PREFIX.fullmatch(text)
    if match:
        country, number = match.group(1), match.group(2)
    elif nca_rk:
        country, number = "KZ", nca_rk.group(1)
    else:
        country, number = None, text
    if number.isascii():
        found = from_ascii(number)
    else:
        found = canonical(number) if _MN_PATTERN.fullmatch(canonical(number)) else None
    if found is None or (country is not None and country_of(found) != country):
        return None
    return found


def same_person(order_register: str, card_serial_number: str) -> bool:
    """Whether a card's serialNumber names exactly the order's register number.

    Both sides become canonical register numbers (the card's ASCII decoded with :func:`from_ascii`)
    and are compared as such; anything invalid on either side is not a match.
    """
    if not is_valid(order_register):
        return False
    return holder_number(card_serial_number) == canonical(order_register)


def masked(register_number: str) -> str:
    """For receipts and logs: ``НЭ80000000`` → ``НЭ******00``."""
    value = canonical(register_number)
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
