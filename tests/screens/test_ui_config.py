"""The [ui] settings: defaults, a kiosk's own values, refusals that name the setting; the rest stays as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.errors import ConfigError
from kiosk.shell import config


def _load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path, check_files=False)


def test_ui_defaults_and_the_printer_width_is_still_a_number(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "")
    assert (cfg.ui.idle_timeout_s, cfg.ui.size, cfg.ui.fullscreen, cfg.ui.large_text) == (60.0, "800x480", True, False)
    assert cfg.printer.width_px == 576          # [ui] size parsing must not touch the printer's width


def test_a_kiosk_sets_its_own_ui(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[ui]\nidle_timeout_s = 90\nsize = "1024x600"\nfullscreen = false\nlarge_text = true\n')
    assert (cfg.ui.idle_timeout_s, cfg.ui.size, cfg.ui.fullscreen, cfg.ui.large_text) == (90.0, "1024x600", False, True)


@pytest.mark.parametrize(("text", "setting"), [
    ("[ui]\nidle_timeout_s = 1\n", "ui.idle_timeout_s"),
    ('[ui]\nsize = "big"\n', "ui.size"),
    ('[ui]\nfullscreen = "yes"\n', "ui.fullscreen"),
])
def test_a_wrong_ui_setting_is_named(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.data["setting"] == setting
