"""The ESC/POS command interpreter of the printer emulator: one connection's byte stream to page images.

It parses the stream the way a receipt printer does: modes (ESC @, ESC a, ESC E, GS !), feeds (LF,
ESC d, ESC J), cuts (GS V), raster images (GS v 0), graphics (GS ( L / GS 8 L store + print), column
bit images (ESC *) and text, and answers the real-time status requests (DLE EOT 1..4, GS r) from the
printer's state (:class:`PrinterState`, the emulator in :mod:`devices.sim.printer_emulator`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Protocol

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("devices.sim.printer_emulator")


class PrinterState(Protocol):
    """What a session reads of its printer and reports to it."""

    width_px: int

    @property
    def paper(self) -> str: ...

    def status_byte(self, n: int) -> int: ...

    def paper_sensor_byte(self) -> int: ...

    def count(self, name: str, n: int = 1) -> None: ...

    def save(self, image: Image.Image) -> None: ...


ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C

DEFAULT_LINE_SPACING = 30     # dots; ESC 2
TEXT_SIZE_PX = 20             # Noto at 20 px: about a 12x24 "Font A" cell, 28 px with descenders
MAX_RASTER_WIDTH_BYTES = 128  # GS v 0 limits from the ESC/POS reference
MAX_RASTER_HEIGHT = 4095
MAX_BLOCK_BYTES = 4 << 20     # GS 8 L: larger declared lengths are treated as garbage

_CODEPAGES = {0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252",
              17: "cp866", 18: "cp852", 19: "cp858", 46: "cp1251"}

# ESC commands with a fixed number of parameter bytes (after ESC and the command byte).
_ESC_FIXED = {
    0x20: 1, 0x21: 1, 0x24: 2, 0x25: 1, 0x2D: 1, 0x32: 0, 0x33: 1, 0x3C: 0, 0x3D: 1, 0x3F: 1,
    0x45: 1, 0x47: 1, 0x4A: 1, 0x4C: 0, 0x4D: 1, 0x52: 1, 0x53: 0, 0x54: 1, 0x55: 1, 0x56: 1,
    0x57: 8, 0x5C: 2, 0x61: 1, 0x63: 2, 0x64: 1, 0x65: 1, 0x69: 0, 0x6D: 0, 0x70: 3, 0x72: 1,
    0x74: 1, 0x75: 1, 0x76: 0, 0x7B: 1,
}
# GS commands with a fixed number of parameter bytes.
_GS_FIXED = {
    0x21: 1, 0x24: 2, 0x2F: 1, 0x3A: 0, 0x42: 1, 0x45: 1, 0x48: 1, 0x49: 1, 0x4C: 2, 0x50: 2,
    0x54: 1, 0x57: 2, 0x5C: 2, 0x5E: 3, 0x61: 1, 0x62: 1, 0x63: 0, 0x66: 1, 0x67: 2, 0x68: 1,
    0x72: 1, 0x77: 1,
}
# FS commands with a fixed number of parameter bytes.
_FS_FIXED = {0x21: 1, 0x26: 0, 0x2D: 1, 0x2E: 0, 0x43: 1, 0x53: 2, 0x57: 1, 0x70: 2}


class _NeedMore(Exception):
    """The buffer ends inside a command; wait for more bytes."""


@dataclass
class _Modes:
    align: int = 0            # 0 left, 1 centre, 2 right
    bold: bool = False
    width_mult: int = 1
    height_mult: int = 1
    line_spacing: int = DEFAULT_LINE_SPACING
    codepage: str = "cp437"


@dataclass
class _Line:
    text: str = ""                                            # decoded with the code page in force
    bands: list[Image.Image] = field(default_factory=list)   # ESC * bit-image bands on this line
    modes: _Modes | None = None                               # modes when the line was started

    def empty(self) -> bool:
        return not self.text and not self.bands


class _Page:
    """What has been printed since the last cut: image blocks and blank feeds, top to bottom."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.blocks: list[tuple[Image.Image | None, int, int]] = []   # (image|None, height, align)
        self.has_content = False

    def add_image(self, img: Image.Image, align: int) -> None:
        self.blocks.append((img, img.height, align))
        self.has_content = True

    def feed(self, dots: int) -> None:
        if dots > 0:
            self.blocks.append((None, dots, 0))

    def to_image(self) -> Image.Image:
        height = max(1, sum(h for _, h, _ in self.blocks))
        page = Image.new("1", (self.width, height), 1)
        y = 0
        for img, h, align in self.blocks:
            if img is not None:
                x = 0
                if align == 1:
                    x = max(0, (self.width - img.width) // 2)
                elif align == 2:
                    x = max(0, self.width - img.width)
                page.paste(img.crop((0, 0, min(img.width, self.width - x), img.height)), (x, y))
            y += h
        return page


def _font(bold: bool, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        from devices.receipt_render import load_font
        return load_font(bold, size)
    except Exception:   # a missing Noto font must not stop the emulator; text is a side feature
        return ImageFont.load_default(size)


def _raster(data: bytes | bytearray, width_bytes: int, height: int) -> Image.Image:
    """ESC/POS raster bytes (MSB first, 1 = black) as a mode "1" image (0 = black)."""
    return Image.frombytes("1", (width_bytes * 8, height), bytes(data), "raw", "1;I")


def _scaled(img: Image.Image, sx: int, sy: int) -> Image.Image:
    if sx == 1 and sy == 1:
        return img
    return img.resize((img.width * sx, img.height * sy), Image.Resampling.NEAREST)


class EscPosSession:
    """Parser state for one connection.  ``feed`` returns the bytes to send back (status answers)."""

    def __init__(self, emulator: PrinterState) -> None:
        self.emu = emulator
        self.buf = bytearray()
        self.modes = _Modes()
        self.line = _Line()
        self.page = _Page(emulator.width_px)
        self.graphics: Image.Image | None = None          # GS ( L stored graphics
        self.discarded = False
        self._garbage = bytearray()

    # --- stream ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        self.buf += data
        replies = bytearray()
        pos = 0
        buf = self.buf
        while pos < len(buf):
            try:
                pos = self._command(buf, pos, replies)
            except _NeedMore:
                break
        del buf[:pos]
        self._flush_garbage_log()
        return bytes(replies)

    def finish(self) -> None:
        """The connection closed: drop a half-received command, save what was printed."""
        if self.buf:
            self.emu.count("incomplete_commands")
            log.warning("connection closed inside a command; dropped %d bytes starting %s",
                        len(self.buf), bytes(self.buf[:8]).hex(" "))
            self.buf.clear()
        self._flush_line(feed=False)
        self._end_job(cut=False)

    def _garbage_byte(self, b: int) -> None:
        self._garbage.append(b)
        self.emu.count("garbage_bytes")

    def _flush_garbage_log(self) -> None:
        if self._garbage:
            log.info("skipped %d unknown byte(s): %s", len(self._garbage), bytes(self._garbage[:32]).hex(" "))
            self._garbage.clear()

    @staticmethod
    def _need(buf: bytearray, pos: int, n: int) -> None:
        if pos + n > len(buf):
            raise _NeedMore

    def _command(self, buf: bytearray, pos: int, replies: bytearray) -> int:
        """Handle the command at ``pos``; return the position after it.  Raises _NeedMore."""
        b = buf[pos]
        if b >= 0x20:
            end = pos
            while end < len(buf) and buf[end] >= 0x20:
                end += 1
            self._text(buf[pos:end])
            return end
        if b == LF:
            self._data()
            self._flush_line(feed=True)
            return pos + 1
        if b == CR:
            return pos + 1
        if b == HT:
            self._text(b"    ")
            return pos + 1
        if b == FF:
            self._data()
            self._flush_line(feed=True)
            return pos + 1
        if b == DLE:
            return self._dle(buf, pos, replies)
        if b in (ESC, GS, FS):
            self._need(buf, pos, 2)
            handler = {ESC: self._esc, GS: self._gs, FS: self._fs}[b]
            return handler(buf, pos, replies)
        self._garbage_byte(b)
        return pos + 1

    def _data(self) -> None:
        self.emu.count("data_bytes")

    # --- real-time commands ------------------------------------------------------------------------
    def _dle(self, buf: bytearray, pos: int, replies: bytearray) -> int:
        self._need(buf, pos, 2)
        cmd = buf[pos + 1]
        if cmd == 0x04:                       # DLE EOT n
            self._need(buf, pos, 3)
            n = buf[pos + 2]
            if n in (1, 2, 3, 4):
                replies.append(self.emu.status_byte(n))
                self.emu.count("status_requests")
                return pos + 3
            if n in (7, 8):                   # ink status: one more byte, no ink here
                self._need(buf, pos, 4)
                return pos + 4
            self._garbage_byte(DLE)
            return pos + 1
        if cmd == 0x05:                       # DLE ENQ n
            self._need(buf, pos, 3)
            return pos + 3
        if cmd == 0x14:                       # DLE DC4 fn ...
            self._need(buf, pos, 3)
            length = {1: 5, 2: 5, 7: 4, 8: 10}.get(buf[pos + 2], 3)
            self._need(buf, pos, length)
            return pos + length
        self._garbage_byte(DLE)
        return pos + 1

    # --- ESC ------------------------------------------------------------------------------------------
    def _esc(self, buf: bytearray, pos: int, _replies: bytearray) -> int:
        cmd = buf[pos + 1]
        if cmd == 0x40:                       # ESC @: clear the print buffer, reset modes
            self.line = _Line()
            self.modes = _Modes()
            return pos + 2
        if cmd == 0x2A:                       # ESC * m nL nH d1..dk
            return self._esc_bit_image(buf, pos)
        if cmd == 0x44:                       # ESC D n1 .. NUL (tab stops)
            end = buf.find(b"\x00", pos + 2, pos + 2 + 33)
            if end < 0:
                if len(buf) - pos < 2 + 33:
                    raise _NeedMore
                self._garbage_byte(ESC)
                return pos + 1
            return end + 1
        if cmd not in _ESC_FIXED:
            self._garbage_byte(ESC)
            self._garbage_byte(cmd)
            return pos + 2
        nargs = _ESC_FIXED[cmd]
        self._need(buf, pos, 2 + nargs)
        arg = buf[pos + 2] if nargs else 0
        m = self.modes
        if cmd == 0x61:                       # ESC a n: justification
            m.align = arg % 48 if arg >= 48 else arg
            m.align = m.align if m.align in (0, 1, 2) else 0
        elif cmd == 0x45:                     # ESC E n: emphasis
            m.bold = bool(arg & 1)
        elif cmd == 0x21:                     # ESC ! n: print mode
            m.bold = bool(arg & 0x08)
            m.height_mult = 2 if arg & 0x10 else 1
            m.width_mult = 2 if arg & 0x20 else 1
        elif cmd == 0x32:                     # ESC 2
            m.line_spacing = DEFAULT_LINE_SPACING
        elif cmd == 0x33:                     # ESC 3 n
            m.line_spacing = arg
        elif cmd == 0x74:                     # ESC t n: code page
            m.codepage = _CODEPAGES.get(arg, "cp437")
        elif cmd == 0x64:                     # ESC d n: print the line buffer and feed n lines
            self._data()
            self._flush_line(feed=False)
            self._feed(arg * m.line_spacing)
        elif cmd == 0x4A:                     # ESC J n: print and feed n dots
            self._data()
            self._flush_line(feed=False)
            self._feed(arg)
        elif cmd == 0x69 or cmd == 0x6D:      # ESC i / ESC m: cut
            self._data()
            self._cut(0)
        return pos + 2 + nargs

    def _esc_bit_image(self, buf: bytearray, pos: int) -> int:
        self._need(buf, pos, 5)
        m, n = buf[pos + 2], buf[pos + 3] | buf[pos + 4] << 8
        if m not in (0, 1, 32, 33) or not 1 <= n <= 2400:
            self._garbage_byte(ESC)
            return pos + 1
        dots = 24 if m >= 32 else 8
        k = n * dots // 8
        self._need(buf, pos, 5 + k)
        self._data()
        # Column format: each column is dots/8 bytes, MSB at the top.
        cols = Image.frombytes("1", (dots, n), bytes(buf[pos + 5:pos + 5 + k]), "raw", "1;I")
        band = cols.transpose(Image.Transpose.TRANSPOSE)
        band = _scaled(band, 1 if m & 1 else 2, 1 if m >= 32 else 3)
        if self.line.modes is None:
            self.line.modes = replace(self.modes)
        self.line.bands.append(band)
        return pos + 5 + k

    # --- GS -------------------------------------------------------------------------------------------
    def _gs(self, buf: bytearray, pos: int, replies: bytearray) -> int:
        cmd = buf[pos + 1]
        if cmd == 0x56:                       # GS V m [n]: cut
            self._need(buf, pos, 3)
            m = buf[pos + 2]
            if m in (0, 1, 48, 49):
                self._data()
                self._cut(0)
                return pos + 3
            if m in (65, 66, 97, 98, 103, 104):
                self._need(buf, pos, 4)
                self._data()
                self._cut(buf[pos + 3])
                return pos + 4
            self._garbage_byte(GS)
            return pos + 1
        if cmd == 0x76:                       # GS v 0 m xL xH yL yH d1..dk
            return self._gs_raster(buf, pos)
        if cmd == 0x28:                       # GS ( fn pL pH ...
            self._need(buf, pos, 5)
            size = buf[pos + 3] | buf[pos + 4] << 8
            self._need(buf, pos, 5 + size)
            if buf[pos + 2] == 0x4C:          # GS ( L: graphics
                self._graphics(bytes(buf[pos + 5:pos + 5 + size]))
            return pos + 5 + size
        if cmd == 0x38:                       # GS 8 L p1..p4 m fn ...
            self._need(buf, pos, 7)
            size = int.from_bytes(buf[pos + 3:pos + 7], "little")
            if buf[pos + 2] != 0x4C or size > MAX_BLOCK_BYTES:
                self._garbage_byte(GS)
                return pos + 1
            self._need(buf, pos, 7 + size)
            self._graphics(bytes(buf[pos + 7:pos + 7 + size]))
            return pos + 7 + size
        if cmd == 0x6B:                       # GS k: barcode, not drawn
            return self._gs_barcode(buf, pos)
        if cmd == 0x2A:                       # GS * x y d..: define downloaded bit image
            self._need(buf, pos, 4)
            size = buf[pos + 2] * buf[pos + 3] * 8
            self._need(buf, pos, 4 + size)
            return pos + 4 + size
        if cmd not in _GS_FIXED:
            self._garbage_byte(GS)
            self._garbage_byte(cmd)
            return pos + 2
        nargs = _GS_FIXED[cmd]
        self._need(buf, pos, 2 + nargs)
        arg = buf[pos + 2] if nargs else 0
        if cmd == 0x21:                       # GS ! n: character size
            self.modes.width_mult = (arg >> 4 & 7) + 1
            self.modes.height_mult = (arg & 7) + 1
        elif cmd == 0x72:                     # GS r n: transmit status
            if arg in (1, 49):
                replies.append(self.emu.paper_sensor_byte())
            elif arg in (2, 50):
                replies.append(0x00)
        elif cmd == 0x49:                     # GS I n: printer ID
            replies += {1: b"\x20", 2: b"\x02", 3: b"\x64"}.get(arg, b"_TAMGA-EMU\x00")
        return pos + 2 + nargs

    def _gs_raster(self, buf: bytearray, pos: int) -> int:
        self._need(buf, pos, 8)
        m = buf[pos + 3]
        xb = buf[pos + 4] | buf[pos + 5] << 8
        y = buf[pos + 6] | buf[pos + 7] << 8
        if (buf[pos + 2] not in (0x00, 0x30) or m not in (0, 1, 2, 3, 48, 49, 50, 51)
                or not 1 <= xb <= MAX_RASTER_WIDTH_BYTES or not 1 <= y <= MAX_RASTER_HEIGHT):
            self._garbage_byte(GS)
            return pos + 1
        k = xb * y
        self._need(buf, pos, 8 + k)
        self._data()
        img = _raster(buf[pos + 8:pos + 8 + k], xb, y)
        m &= 3
        self._flush_line(feed=False)
        self._print_image(_scaled(img, 2 if m & 1 else 1, 2 if m & 2 else 1))
        return pos + 8 + k

    def _gs_barcode(self, buf: bytearray, pos: int) -> int:
        self._need(buf, pos, 3)
        m = buf[pos + 2]
        if m <= 6:
            end = buf.find(b"\x00", pos + 3, pos + 3 + 256)
            if end < 0:
                if len(buf) - pos < 3 + 256:
                    raise _NeedMore
                self._garbage_byte(GS)
                return pos + 1
            return end + 1
        self._need(buf, pos, 4)
        n = buf[pos + 3]
        self._need(buf, pos, 4 + n)
        return pos + 4 + n

    def _graphics(self, block: bytes) -> None:
        """GS ( L / GS 8 L body: m fn [params]."""
        if len(block) < 2:
            return
        fn = block[1]
        if fn in (0x70, 112) and len(block) >= 10:        # store raster graphics
            _tone, bx, by, _color = block[2:6]
            x = block[6] | block[7] << 8
            y = block[8] | block[9] << 8
            width_bytes = (x + 7) // 8
            data = block[10:10 + width_bytes * y]
            if x == 0 or y == 0 or len(data) < width_bytes * y:
                self._garbage_byte(GS)
                return
            self._data()
            img = _raster(data, width_bytes, y).crop((0, 0, x, y))
            self.graphics = _scaled(img, 2 if bx == 2 else 1, 2 if by == 2 else 1)
        elif fn in (0x32, 50, 0x02):                      # print stored graphics
            self._data()
            if self.graphics is not None:
                self._flush_line(feed=False)
                self._print_image(self.graphics)
                self.graphics = None

    def _fs(self, buf: bytearray, pos: int, _replies: bytearray) -> int:
        cmd = buf[pos + 1]
        if cmd == 0x28:                       # FS ( fn pL pH ...
            self._need(buf, pos, 5)
            size = buf[pos + 3] | buf[pos + 4] << 8
            self._need(buf, pos, 5 + size)
            return pos + 5 + size
        if cmd not in _FS_FIXED:
            self._garbage_byte(FS)
            self._garbage_byte(cmd)
            return pos + 2
        nargs = _FS_FIXED[cmd]
        self._need(buf, pos, 2 + nargs)
        return pos + 2 + nargs

    # --- printing --------------------------------------------------------------------------------------
    def _printing(self) -> bool:
        if self.emu.paper == "out":
            self.discarded = True
            return False
        return True

    def _text(self, chunk: bytes | bytearray) -> None:
        self.emu.count("data_bytes", len(chunk))
        if self.line.modes is None:
            self.line.modes = replace(self.modes)
        self.line.text += bytes(chunk).decode(self.modes.codepage, errors="replace")

    def _print_image(self, img: Image.Image) -> None:
        if self._printing():
            self.page.add_image(img, self.modes.align)

    def _feed(self, dots: int) -> None:
        if self._printing():
            self.page.feed(dots)

    def _flush_line(self, feed: bool) -> None:
        """Print the line buffer; ``feed`` advances by the line spacing even when it is empty."""
        line, self.line = self.line, _Line()
        modes = line.modes or self.modes
        if line.empty():
            if feed:
                self._feed(self.modes.line_spacing)
            return
        if not self._printing():
            return
        if line.bands:
            width = sum(b.width for b in line.bands)
            height = max(b.height for b in line.bands)
            img = Image.new("1", (width, height), 1)
            x = 0
            for band in line.bands:
                img.paste(band, (x, 0))
                x += band.width
            self.page.add_image(img, modes.align)
            if feed:
                self.page.feed(max(0, modes.line_spacing - height))
        if line.text:
            text = self._text_image(line.text, modes)
            self.page.add_image(text, modes.align)
            if feed:
                self.page.feed(max(0, modes.line_spacing - text.height))

    def _text_image(self, text: str, modes: _Modes) -> Image.Image:
        font = _font(modes.bold, TEXT_SIZE_PX * modes.height_mult)
        height = 24 * modes.height_mult
        if isinstance(font, ImageFont.FreeTypeFont):
            ascent, descent = font.getmetrics()
            height = int(ascent + descent)
        width = min(self.page.width, max(1, int(ImageDraw.Draw(Image.new("1", (1, 1))).textlength(text, font=font))))
        img = Image.new("L", (width, height), 255)
        ImageDraw.Draw(img).text((0, 0), text, font=font, fill=0)
        if modes.width_mult > 1:
            img = img.resize((min(self.page.width, width * modes.width_mult), height))
        return img.point(lambda v: 255 if v >= 128 else 0, mode="1")

    def _cut(self, feed_dots: int) -> None:
        self._flush_line(feed=False)
        self._feed(feed_dots)
        self._end_job(cut=True)

    def _end_job(self, cut: bool) -> None:
        page, self.page = self.page, _Page(self.emu.width_px)
        discarded, self.discarded = self.discarded, False
        if page.has_content:
            self.emu.save(page.to_image())
        elif discarded:
            self.emu.count("discarded_jobs")
            log.info("paper out: discarded a job (%s)", "cut" if cut else "connection closed")
