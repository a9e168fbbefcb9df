"""Starting the touchscreen app: Kivy configured before its window exists, the kiosk wired, systemd told.

``python -m kiosk run`` calls :func:`run`.  On the appliance (``fullscreen``) the window has no
decorations and no cursor, and touches come from one input provider only (Kivy's ``hidinput`` over
the touchscreen's evdev device: mtdev, hidinput and SDL2 side by side give double touches); on a
desktop it is a window of the configured size with the mouse.  Kivy reads no command line
(``KIVY_NO_ARGS``) and keeps its files in a private home (``KIVY_HOME``), never in the service's $HOME.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

SIZES = ("800x480", "1024x600")


def parse_size(text: str) -> tuple[int, int]:
    """``"800x480"`` → (800, 480); ValueError for anything else."""
    width, sep, height = text.partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 320 or int(height) < 240:
        raise ValueError(f"a window size is WIDTHxHEIGHT (e.g. 800x480), not {text!r}")
    return int(width), int(height)


def configure_kivy(size: tuple[int, int], fullscreen: bool, home: Path | None = None,
                   offscreen: bool = False) -> None:
    """Set Kivy's environment and configuration; must run before ``kivy.core.window`` is imported."""
    kivy_home = home or Path(tempfile.mkdtemp(prefix="tamga-kivy-"))
    kivy_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ.setdefault("KIVY_HOME", str(kivy_home))
    for name, value in (("KIVY_NO_ARGS", "1"), ("KIVY_NO_FILELOG", "1"), ("KIVY_LOG_MODE", "PYTHON"),
                        ("KIVY_NO_CONSOLELOG", "1"), ("KIVY_CLIPBOARD", "dummy")):
        os.environ.setdefault(name, value)
    if offscreen:
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
        os.environ.setdefault("MESA_SHADER_CACHE_DISABLE", "true")
    from kivy.config import Config

    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    Config.set("graphics", "resizable", "0")
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("graphics", "borderless", "1" if fullscreen else "0")
    Config.set("graphics", "show_cursor", "0" if fullscreen else "1")
    # No multisampling: flat rectangles and text need no antialiasing of edges, and a 2x multisampled
    # framebuffer costs memory and fill rate (12 MB of RSS on Mesa's llvmpipe, measured).
    Config.set("graphics", "multisamples", "0")
    Config.set("kivy", "keyboard_mode", "system")       # our own on-screen keyboards; a scanner is a keyboard
    Config.set("kivy", "exit_on_escape", "0")
    for option in Config.options("input"):
        Config.remove_option("input", option)
    if fullscreen:
        Config.set("input", "touchscreen", "probesysfs,provider=hidinput")
    else:
        Config.set("input", "mouse", "mouse,disable_multitouch")


def ui_options(cfg: Any) -> Any:
    """The app's options from a loaded kiosk configuration."""
    from kiosk.screens.app import UiOptions

    return UiOptions(idle_timeout_s=cfg.ui.idle_timeout_s, large_text=cfg.ui.large_text,
                     languages=cfg.kiosk.languages, language=cfg.kiosk.language, currency=cfg.kiosk.currency,
                     retention_days=cfg.kiosk.retention_days)


def run(config_path: Path | None, size: str | None = None, fullscreen: bool | None = None) -> int:
    """``python -m kiosk run``: the app on the configured devices until it is stopped."""
    from kiosk.shell import app as wiring
    from kiosk.shell import config

    cfg = config.load(config_path)
    full = cfg.ui.fullscreen if fullscreen is None else fullscreen
    configure_kivy(parse_size(size or cfg.ui.size), full)
    from kiosk.screens.app import KioskApp
    from kiosk.screens.notify import start_feeding

    kiosk = wiring.start(cfg)
    app = KioskApp(kiosk, ui_options(cfg))
    app.when_first_frame(start_feeding)
    try:
        app.run()
    finally:
        kiosk.close()
    return 0
