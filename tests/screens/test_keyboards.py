"""On-screen keyboard layouts: well-formed, complete alphabets, register keys the register rules accept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiosk import register
from kiosk.screens.keyboards import LAYOUTS, layout_for, layout_path

_RUSSIAN = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
ALPHABETS = {
    "mongolian": _RUSSIAN + "өү",
    "kazakh": _RUSSIAN + "әғқңөұүһі",
    "kyrgyz": _RUSSIAN + "ңөү",
    "russian": _RUSSIAN,
    "latin": "abcdefghijklmnopqrstuvwxyz",
}


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(layout_path(name).read_text(encoding="utf-8"))
    return data


def _rows(layout: dict[str, Any], mode: str) -> list[list[list[Any]]]:
    return [layout[f"{mode}_{n}"] for n in range(1, layout["rows"] + 1)]


def _texts(layout: dict[str, Any]) -> set[str]:
    return {key[1] for mode in ("normal", "shift") for row in _rows(layout, mode) for key in row if key[1]}


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_is_well_formed(name: str) -> None:
    layout = _load(name)
    assert layout["title"] and layout["description"]
    row_keys = {key for key in layout if key.startswith(("normal_", "shift_", "special_"))}
    assert row_keys == {f"{mode}_{n}" for mode in ("normal", "shift") for n in range(1, layout["rows"] + 1)}
    for normal_row, shift_row in zip(_rows(layout, "normal"), _rows(layout, "shift"), strict=True):
        assert sum(key[3] for key in normal_row) <= layout["cols"]
        assert [key[3] for key in normal_row] == [key[3] for key in shift_row]
        assert [key[2] for key in normal_row] == [key[2] for key in shift_row]   # same key, other case
        for label, text, keycode, width in normal_row + shift_row:
            assert isinstance(label, str) and label
            assert text is None or isinstance(text, str)
            assert (text is not None) or keycode in {"backspace", "enter", "shift", "capslock"}
            assert width > 0
    assert {"backspace", "enter"} <= {key[2] for row in _rows(layout, "normal") for key in row}


@pytest.mark.parametrize("name", ALPHABETS)
def test_every_letter_upper_and_lower_is_on_its_layout(name: str) -> None:
    layout = _load(name)
    texts = _texts(layout)
    letters = ALPHABETS[name]
    assert set(letters) | set(letters.upper()) <= texts
    normal = {key[1] for row in _rows(layout, "normal") for key in row if key[1]}
    assert set(letters) <= normal and not set(letters.upper()) & normal
    assert set("0123456789") <= texts


def test_register_keyboard_offers_only_what_a_register_number_holds() -> None:
    texts = _texts(_load("register"))
    letters = {t for t in texts if not t.isdigit()}
    assert letters == set(register.MONGOLIAN_LETTERS)
    assert {t for t in texts if t.isdigit()} == set("0123456789")
    for letter in letters:
        assert register.is_valid(letter + "А80000000") and register.is_valid("А" + letter + "80000000")
    for digit in set("0123456789"):
        assert register.is_valid("НЭ" + digit * 8)


def test_numeric_keyboard_types_only_digits() -> None:
    assert _texts(_load("numeric")) == set("0123456789")
    assert register.is_valid("1" * 14)        # a Kyrgyz PIN typed on it


def test_layout_for_each_language_and_purpose() -> None:
    assert [layout_for(lang, "text") for lang in ("mn", "kk", "ky", "ru", "en")] == [
        "mongolian", "kazakh", "kyrgyz", "russian", "latin"]
    assert layout_for("mn", "register") == "register"
    assert layout_for("kk", "register") == layout_for("ky", "register") == "numeric"
    with pytest.raises(ValueError):
        layout_for("de", "text")
    with pytest.raises(ValueError):
        layout_for("mn", "password")
    with pytest.raises(ValueError):
        layout_path("dvorak")


_LOAD_IN_KIVY = """
import json, sys
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.uix.vkeyboard import VKeyboard
for path in sys.argv[1:]:
    keyboard = VKeyboard(layout=path)
    Window.add_widget(keyboard)
    Clock.tick()                                  # VKeyboard loads its layout on the next frame
    assert keyboard.layout == path, (keyboard.layout, path)   # not the qwerty fallback
    layout = keyboard.available_layouts[path]
    for mode in ("normal", "shift"):
        keyboard.layout_mode = mode
        keyboard.refresh(True)
        for row in range(1, layout["rows"] + 1):
            placed = keyboard.layout_geometry["LINE_%d" % row]
            assert len(placed) == len(layout["%s_%d" % (mode, row)]), (path, mode, row)
            assert all(size[0] > 0 and size[1] > 0 for _, size in placed), (path, mode, row)
    Window.remove_widget(keyboard)
    print("loaded", path)
"""


def test_every_layout_loads_into_a_real_kivy_vkeyboard(tmp_path: Path) -> None:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1", "KIVY_HOME": str(tmp_path),
           "KIVY_NO_FILELOG": "1", "KIVY_LOG_MODE": "PYTHON", "MESA_SHADER_CACHE_DISABLE": "true"}
    paths = [str(layout_path(name)) for name in LAYOUTS]
    result = subprocess.run([sys.executable, "-c", _LOAD_IN_KIVY, *paths], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [f"loaded {path}" for path in paths]
