"""₮ and ₸ render as themselves with the registered Noto font, not as the .notdef box Kivy's Roboto shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_RENDER = r"""
import json, sys
from kiosk.screens.launch import configure_kivy
configure_kivy((320, 240), fullscreen=False, home=__import__("pathlib").Path(sys.argv[1]), offscreen=True)
from kivy.core.window import Window
from kivy.core.text import Label as CoreLabel
from kiosk.screens.theme import NOTO_REGULAR, register_fonts

import os, kivy
ROBOTO = os.path.join(kivy.kivy_data_dir, "fonts", "Roboto-Regular.ttf")   # Kivy's bundled default font

def pixels(text, font):
    label = CoreLabel(text=text, font_size=48, font_name=font)
    label.refresh()
    return label.texture.pixels.hex(), list(label.texture.size)

register_fonts()
notdef = "\u0378"                                       # unassigned: every font draws its .notdef
out = {}
for name, font in (("noto", str(NOTO_REGULAR)), ("roboto", ROBOTO), ("default", "Roboto")):
    box = pixels(notdef, font)
    out[name] = {ch: pixels(ch, font) != box for ch in ("₮", "₸", "Ө", "Ү", "Ә", "Ғ", "Қ", "Ң", "Ұ", "Һ")}
print(json.dumps(out))
"""


def test_tugrik_and_tenge_are_glyphs_not_boxes(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _RENDER, str(tmp_path)], capture_output=True, text=True,
                            timeout=60, check=False, env={**os.environ, "KIVY_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(drawn["noto"].values()), drawn["noto"]
    assert all(drawn["default"].values()), drawn["default"]     # the default font name now draws Noto
    assert not drawn["roboto"]["₮"] and not drawn["roboto"]["₸"]   # the check sees a box when there is one
    assert drawn["roboto"]["Ө"] and drawn["roboto"]["Қ"]
