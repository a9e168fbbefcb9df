"""On-screen keyboard layouts (Kivy VKeyboard JSON) for the kiosk's five languages and its number fields.

Kivy ships no Cyrillic layout, so these live here: ``mongolian`` (35 letters with Ө Ү), ``kazakh``
(42 letters with Ә Ғ Қ Ң Ө Ұ Ү Һ І), ``kyrgyz`` (36 letters with Ң Ө Ү), ``russian``, ``latin``
(QWERTY), ``register`` (only what a Mongolian register number can contain: its 35 capital letters and
digits) and ``numeric`` (digits: Kazakh IIN, Kyrgyz PIN, invoice numbers).  Each file has ``rows``
rows in ``normal`` and ``shift`` modes, keys ``[label, text, keycode, width]``.  This module only
names files; it imports no Kivy.
"""

from __future__ import annotations

from pathlib import Path

_DIRECTORY = Path(__file__).resolve().parent
LAYOUTS = ("mongolian", "kazakh", "kyrgyz", "russian", "latin", "register", "numeric")
_TEXT_LAYOUT = {"mn": "mongolian", "kk": "kazakh", "ky": "kyrgyz", "ru": "russian", "en": "latin"}
# Kazakh IIN and Kyrgyz PIN are digits only; a Mongolian register number has two Cyrillic letters.
_REGISTER_LAYOUT = {"mn": "register", "kk": "numeric", "ky": "numeric", "ru": "register", "en": "register"}


def layout_path(name: str) -> Path:
    """The JSON file of layout ``name`` (one of :data:`LAYOUTS`); ValueError for any other name."""
    if name not in LAYOUTS:
        raise ValueError(f"no keyboard layout {name!r}")
    return _DIRECTORY / f"{name}.json"


def layout_for(language: str, purpose: str) -> str:
    """The layout name for a field: ``purpose`` is ``"text"`` or ``"register"``.

    Text fields get the language's alphabet.  Register fields get the register-number keyboard, or
    the numeric one where the language's country uses a digits-only number (Kazakhstan, Kyrgyzstan).
    """
    table = {"text": _TEXT_LAYOUT, "register": _REGISTER_LAYOUT}.get(purpose)
    if table is None:
        raise ValueError(f"no keyboard for purpose {purpose!r}")
    if language not in table:
        raise ValueError(f"no keyboard for language {language!r}")
    return table[language]
