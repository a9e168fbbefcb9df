"""Fonts, colours and sizes of the touchscreen: Noto as the default font, large targets, high contrast.

Kivy's bundled Roboto has every Mongolian, Kazakh and Kyrgyz Cyrillic letter but neither ₮ (U+20AE)
nor ₸ (U+20B8); Debian's ``fonts-noto-core`` NotoSans has both.  :func:`register_fonts` registers
NotoSans under Kivy's default font name, so every Label, Button and TextInput uses it without
naming a font.  :class:`Theme` holds the sizes in dp; ``large_text`` scales every text by
:data:`LARGE_TEXT_SCALE` (the larger-text option of the configuration and the welcome screen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kivy.core.text import DEFAULT_FONT, LabelBase
from kivy.metrics import dp

NOTO_DIR = Path("/usr/share/fonts/truetype/noto")
NOTO_REGULAR = NOTO_DIR / "NotoSans-Regular.ttf"
NOTO_BOLD = NOTO_DIR / "NotoSans-Bold.ttf"
LARGE_TEXT_SCALE = 1.25

RGBA = tuple[float, float, float, float]


def register_fonts() -> str:
    """Make NotoSans Kivy's default font (regular and bold); returns the font name.

    Raises FileNotFoundError naming the Debian package when the fonts are missing: without them
    amounts in tögrög and tenge would show as empty boxes.
    """
    for path in (NOTO_REGULAR, NOTO_BOLD):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: install the Debian package fonts-noto-core")
    LabelBase.register(DEFAULT_FONT, str(NOTO_REGULAR), fn_bold=str(NOTO_BOLD))
    return DEFAULT_FONT


@dataclass(frozen=True)
class Theme:
    """Colours (contrast of text on its background ≥ 7:1, WCAG AAA) and sizes in dp."""

    large_text: bool = False
    background: RGBA = (1.0, 1.0, 1.0, 1.0)
    text: RGBA = (0.07, 0.07, 0.07, 1.0)
    muted: RGBA = (0.25, 0.25, 0.28, 1.0)
    primary: RGBA = (0.05, 0.22, 0.50, 1.0)        # buttons: white text on dark blue
    primary_text: RGBA = (1.0, 1.0, 1.0, 1.0)
    secondary: RGBA = (0.86, 0.88, 0.92, 1.0)      # "back", "leave": dark text on light grey
    secondary_text: RGBA = (0.07, 0.07, 0.07, 1.0)
    danger: RGBA = (0.62, 0.07, 0.07, 1.0)
    ok: RGBA = (0.0, 0.40, 0.13, 1.0)
    status_background: RGBA = (0.12, 0.14, 0.18, 1.0)
    status_text: RGBA = (1.0, 1.0, 1.0, 1.0)

    @property
    def scale(self) -> float:
        return LARGE_TEXT_SCALE if self.large_text else 1.0

    @property
    def title_size(self) -> float:
        return float(dp(26) * self.scale)

    @property
    def body_size(self) -> float:
        return float(dp(18) * self.scale)

    @property
    def small_size(self) -> float:
        return float(dp(14) * self.scale)

    @property
    def button_size(self) -> float:
        return float(dp(19) * self.scale)

    @property
    def touch(self) -> float:
        """The smallest touch target's side: 56 dp (more than the 48 dp guidelines ask for)."""
        return float(dp(56) * self.scale)

    @property
    def spacing(self) -> float:
        return float(dp(10))

    @property
    def padding(self) -> float:
        return float(dp(16))
