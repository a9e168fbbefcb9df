"""Render a :class:`~kiosk.ports.Receipt` to a 1-bit raster image for an 80 mm thermal printer.

Printer code pages cannot print Ө Ү Ә Ғ Қ Ң Ұ Һ ₮ ₸ (python-escpos' MagicEncode prints '?'), so the
whole receipt is drawn with Pillow and Noto Sans and sent as a raster image; the same image is the
on-screen preview and the PNG kept with the session.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw, ImageFont

from kiosk.errors import ConfigError
from kiosk.ports import Receipt, ReceiptLine, ReceiptLineStyle

#: 80 mm paper, 72 mm printable at 203 dpi.
DEFAULT_WIDTH_PX = 576
DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/noto")
#: Overrides the default font directory (the kiosk's config may pass ``font_dir`` instead).
FONT_DIR_ENV = "TAMGA_FONT_DIR"
REGULAR_FONT = "NotoSans-Regular.ttf"
BOLD_FONT = "NotoSans-Bold.ttf"

MARGIN_PX = 8           # left/right, inside the printable width
TOP_PX = 8
BOTTOM_PX = 8
LINE_GAP_PX = 4         # between wrapped lines of one receipt line
BLOCK_GAP_PX = 6        # between receipt lines
PAIR_GAP_PX = 16        # between a pair's label and value
THRESHOLD = 128         # grey level below which a pixel prints black


@dataclass(frozen=True)
class _Face:
    bold: bool
    size: int


#: Size (px at 203 dpi) and weight of each style's text.
_FACES: dict[ReceiptLineStyle, _Face] = {
    ReceiptLineStyle.TITLE: _Face(bold=True, size=38),
    ReceiptLineStyle.HEADING: _Face(bold=True, size=28),
    ReceiptLineStyle.TEXT: _Face(bold=False, size=24),
    ReceiptLineStyle.PAIR: _Face(bold=False, size=24),
    ReceiptLineStyle.TOTAL: _Face(bold=True, size=28),
    ReceiptLineStyle.RULE: _Face(bold=False, size=24),
    ReceiptLineStyle.NOTE: _Face(bold=False, size=20),
    ReceiptLineStyle.QR: _Face(bold=False, size=20),
}


def resolve_font_dir(font_dir: str | os.PathLike[str] | None = None) -> Path:
    """``font_dir`` if given, else ``$TAMGA_FONT_DIR``, else the Debian fonts-noto-core directory."""
    if font_dir is not None:
        return Path(font_dir)
    env = os.environ.get(FONT_DIR_ENV)
    return Path(env) if env else DEFAULT_FONT_DIR


class _Font:
    """A loaded font with per-character advance and glyph caches.

    With Pillow's BASIC layout (Noto's kerning is GPOS-only, so none; hinted integer advances) a
    string is its characters side by side.  FreeType hints every glyph on every call (getlength
    ~0.25 ms, drawing a row ~0.6 ms), so each glyph is measured and rasterised once per size.
    """

    def __init__(self, pil: ImageFont.FreeTypeFont) -> None:
        self.pil = pil
        self._advance: dict[str, float] = {}
        self._glyphs: dict[str, tuple[Image.Image, int, int] | None] = {}
        ascent, descent = pil.getmetrics()
        self.line_height = int(ascent + descent)

    def advance(self, ch: str) -> float:
        width = self._advance.get(ch)
        if width is None:
            width = self._advance[ch] = self.pil.getlength(ch)
        return width

    def length(self, text: str) -> int:
        return int(sum(self.advance(ch) for ch in text) + 0.5)

    def glyph(self, ch: str) -> tuple[Image.Image, int, int] | None:
        """The glyph's coverage mask and its offset from the pen position (top of the ascender)."""
        if ch in self._glyphs:
            return self._glyphs[ch]
        left, top, right, bottom = (int(v) for v in self.pil.getbbox(ch, anchor="la"))
        entry = None
        if right > left and bottom > top:
            mask = Image.new("L", (right - left, bottom - top), 0)
            ImageDraw.Draw(mask).text((-left, -top), ch, font=self.pil, fill=255, anchor="la")
            entry = (mask, left, top)
        self._glyphs[ch] = entry
        return entry

    def draw(self, img: Image.Image, x: int, y: int, text: str) -> None:
        """Draw ``text`` in black on the "L" image with the pen starting at (x, y), y at the ascender."""
        pen = 0.0
        for ch in text:
            glyph = self.glyph(ch)
            if glyph is not None:
                mask, dx, dy = glyph
                img.paste(0, (x + int(pen + 0.5) + dx, y + dy), mask)
            pen += self.advance(ch)


@lru_cache(maxsize=64)
def _load_font(path: Path, size: int) -> _Font:
    if not path.is_file():
        raise ConfigError(f"receipt font file missing: {path} (install fonts-noto-core or set the font dir)",
                          setting="printer.font_dir", file=str(path))
    try:
        # BASIC layout: identical output with or without libraqm, and faster for Cyrillic.
        pil = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    except OSError as err:
        raise ConfigError(f"receipt font file unreadable: {path}: {err}",
                          setting="printer.font_dir", file=str(path)) from err
    return _Font(pil)


def _font(bold: bool, size: int, font_dir: str | os.PathLike[str] | None) -> _Font:
    return _load_font(resolve_font_dir(font_dir) / (BOLD_FONT if bold else REGULAR_FONT), size)


def load_font(bold: bool, size: int, font_dir: str | os.PathLike[str] | None = None) -> ImageFont.FreeTypeFont:
    """Noto Sans (Bold) at ``size`` px, cached.  Raises ConfigError naming the missing font file."""
    return _font(bold, size, font_dir).pil


def missing_glyphs(text: str, font: ImageFont.FreeTypeFont) -> set[str]:
    """The characters of ``text`` that ``font`` would draw as the .notdef box (tofu)."""
    notdef = _mask_signature(font, "\ue000")   # private use: no Noto font maps it
    return {ch for ch in set(text) if not ch.isspace() and _mask_signature(font, ch) == notdef}


def _mask_signature(font: ImageFont.FreeTypeFont, ch: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


# --- layout ------------------------------------------------------------------------------------------
Op = Callable[[Image.Image, ImageDraw.ImageDraw, int], None]   # draws at vertical offset y


def _wrap(text: str, font: _Font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` px at plain spaces (never at CLDR's no-break ones: ``88 000 ₸``);
    words longer than a line are broken between characters."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in filter(None, paragraph.split(" ")):
            candidate = f"{current} {word}" if current else word
            if font.length(candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = ""
            while font.length(word) > width:
                cut = _fit_chars(word, font, width)
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        lines.append(current)
    return lines


def _fit_chars(word: str, font: _Font, width: int) -> int:
    lo, hi = 1, len(word)
    while lo < hi:                       # largest prefix that fits, at least one character
        mid = (lo + hi + 1) // 2
        if font.length(word[:mid]) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Layout:
    """Collects draw operations top to bottom, then paints them on an image of the exact height."""

    def __init__(self, width: int, font_dir: str | os.PathLike[str] | None) -> None:
        self.width = width
        self.left = MARGIN_PX
        self.right = width - MARGIN_PX
        self.inner = self.right - self.left
        self.font_dir = font_dir
        self.y = TOP_PX
        self.ops: list[tuple[int, Op]] = []

    def font(self, style: ReceiptLineStyle) -> _Font:
        face = _FACES[style]
        return _font(face.bold, face.size, self.font_dir)

    def text_rows(self, rows: Iterable[str], font: _Font, align: str) -> None:
        step = font.line_height + LINE_GAP_PX
        for row in rows:
            x = self.left
            if align == "center":
                x = self.left + (self.inner - font.length(row)) // 2
            elif align == "right":
                x = self.right - font.length(row)
            self.add_text(x, row, font)
            self.y += step
        self.y -= LINE_GAP_PX

    def add_text(self, x: int, text: str, font: _Font) -> None:
        def op(img: Image.Image, _draw: ImageDraw.ImageDraw, y: int) -> None:
            font.draw(img, x, y, text)
        self.ops.append((self.y, op))

    def block(self, line: ReceiptLine) -> None:
        style = line.style
        font = self.font(style)
        if style is ReceiptLineStyle.TITLE:
            self.text_rows(_wrap(_join(line), font, self.inner), font, "center")
        elif style in (ReceiptLineStyle.HEADING, ReceiptLineStyle.TEXT):
            self.text_rows(_wrap(_join(line), font, self.inner), font, "left")
        elif style is ReceiptLineStyle.NOTE:
            self.text_rows(_wrap(_join(line), font, self.inner), font, "center")
        elif style in (ReceiptLineStyle.PAIR, ReceiptLineStyle.TOTAL):
            self.pair(line.text, line.value, font)
        elif style is ReceiptLineStyle.RULE:
            self.rule()
        elif style is ReceiptLineStyle.QR:
            self.qr(line.value or line.text, line.text if line.value else "", font)
        self.y += BLOCK_GAP_PX

    def pair(self, label: str, value: str, font: _Font) -> None:
        value_w = font.length(value)
        label_w = font.length(label)
        if label_w + PAIR_GAP_PX + value_w <= self.inner:
            self.add_text(self.left, label, font)
            self.add_text(self.right - value_w, value, font)
            self.y += font.line_height
            return
        if value_w <= self.inner * 3 // 5:
            # Value stays right on the first row; the label wraps in the space left of it.
            self.add_text(self.right - value_w, value, font)
            rows = _wrap(label, font, self.inner - value_w - PAIR_GAP_PX)
            self.text_rows(rows, font, "left")
            return
        # A value too long to share a row: label rows, then the value right-aligned below.
        self.text_rows(_wrap(label, font, self.inner), font, "left")
        self.y += LINE_GAP_PX
        self.text_rows(_wrap(value, font, self.inner), font, "right")

    def rule(self, dash: int = 10, gap: int = 6, thickness: int = 2) -> None:
        self.y += 6
        left, right = self.left, self.right

        def op(_img: Image.Image, draw: ImageDraw.ImageDraw, y: int) -> None:
            for x in range(left, right, dash + gap):
                draw.rectangle((x, y, min(x + dash, right) - 1, y + thickness - 1), fill=0)
        self.ops.append((self.y, op))
        self.y += thickness + 6

    def qr(self, data: str, caption: str, caption_font: _Font) -> None:
        if not data:
            return
        qr_img = _qr_image(data, max_px=min(self.inner, 264))
        x = (self.width - qr_img.width) // 2

        def op(img: Image.Image, _draw: ImageDraw.ImageDraw, y: int) -> None:
            img.paste(qr_img, (x, y))
        self.ops.append((self.y, op))
        self.y += qr_img.height
        if caption:
            self.y += LINE_GAP_PX
            self.text_rows(_wrap(caption, caption_font, self.inner), caption_font, "center")

    def paint(self) -> Image.Image:
        height = max(self.y - BLOCK_GAP_PX + BOTTOM_PX, TOP_PX + BOTTOM_PX)
        img = Image.new("L", (self.width, height), 255)
        draw = ImageDraw.Draw(img)
        for y, op in self.ops:
            op(img, draw, y)
        return img.point(lambda v: 255 if v >= THRESHOLD else 0, mode="1")


def _join(line: ReceiptLine) -> str:
    return f"{line.text} {line.value}".strip()


def _qr_image(data: str, max_px: int) -> Image.Image:
    """A QR code (ECC M, 4-module quiet zone) scaled by a whole number of pixels per module."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()
    n = len(matrix)
    scale = max(1, min(8, max_px // n))
    small = Image.new("L", (n, n), 255)
    small.putdata([0 if cell else 255 for row in matrix for cell in row])
    return small.resize((n * scale, n * scale), Image.Resampling.NEAREST)


# --- public ------------------------------------------------------------------------------------------
def render_receipt(receipt: Receipt, width_px: int = DEFAULT_WIDTH_PX, *,
                   font_dir: str | os.PathLike[str] | None = None) -> Image.Image:
    """Draw ``receipt`` as a mode "1" image ``width_px`` wide (576 = 72 mm at 203 dpi).

    Raises ConfigError (``data['file']``) when a Noto font file is missing from the font directory.
    """
    if width_px < 8 * MARGIN_PX:
        raise ValueError(f"width_px too small: {width_px}")
    layout = _Layout(width_px, font_dir)
    for line in receipt.lines:
        layout.block(line)
    return layout.paint()


def receipt_png(image: Image.Image) -> bytes:
    """The image as PNG bytes (the preview shown on screen and kept with the session)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
