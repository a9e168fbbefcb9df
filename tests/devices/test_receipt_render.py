"""Receipt rendering with Pillow + Noto Sans: every Mongolian/Kazakh/Kyrgyz letter and ₮ ₸, layout, speed."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import shutil
from pathlib import Path

import pytest
import qrcode
import qrcode.constants
from PIL import Image, ImageChops

from devices import receipt_render
from devices.receipt_render import (
    BOLD_FONT,
    DEFAULT_FONT_DIR,
    MARGIN_PX,
    REGULAR_FONT,
    load_font,
    missing_glyphs,
    receipt_png,
    render_receipt,
)
from kiosk.errors import ConfigError
from kiosk.i18n import Translator
from kiosk.ports import Receipt, ReceiptLine, ReceiptLineStyle
from kiosk.receipt import build_receipt

S = ReceiptLineStyle

# Letters beyond Russian Cyrillic used by Mongolian (Ө Ү), Kazakh (Ә Ғ Қ Ң Ө Ұ Ү Һ І) and Kyrgyz (Ң Ө Ү),
# the tögrög and tenge signs, and the Russian letters most likely to be forgotten.
REQUIRED = "ӨөҮүӘәҒғҚқҢңҰұҺһІі₮₸ЁёЙйЪъЫыЬьЭэЮюЯя"

pytestmark = pytest.mark.skipif(not (DEFAULT_FONT_DIR / REGULAR_FONT).is_file(),
                                reason="fonts-noto-core not installed")


def sample_receipt(extra: int = 0) -> Receipt:
    lines = [
        ReceiptLine(S.TITLE, "Тамга — гэрчилгээ олгосон баримт"),
        ReceiptLine(S.NOTE, "Улаанбаатар, Бүртгэлийн газар №3"),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, "Өргөдөл гаргагч"),
        ReceiptLine(S.PAIR, "Овог нэр", "Өлзийсайхан Батбаяр"),
        ReceiptLine(S.PAIR, "Регистрийн дугаар", "УБ80000000"),
        ReceiptLine(S.TEXT, "Қазақша: электрондық қолтаңба сертификаты берілді. Әл Ғ Ң Ұ Һ І."),
        ReceiptLine(S.TEXT, "Кыргызча: электрондук кол тамга сертификаты берилди. Өң Үй."),
        ReceiptLine(S.RULE),
        ReceiptLine(S.PAIR, "Үнэ", Translator("mn").money(45_000)),
        ReceiptLine(S.PAIR, "Бағасы", Translator("kk", "KZT").money(6_500)),
        ReceiptLine(S.TOTAL, "Нийт", Translator("mn").money(45_000)),
        ReceiptLine(S.QR, "Шалгах", "https://tamga.example.mn/v/5A3F0011"),
        ReceiptLine(S.NOTE, "Баярлалаа! Рахмет! Ырахмат!"),
    ]
    lines += [ReceiptLine(S.PAIR, f"Мөр {i}: Ұлттық куәлік", f"{i} ₸") for i in range(extra)]
    return Receipt("mn", tuple(lines))


def ink_box(img: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the black pixels."""
    return ImageChops.invert(img.convert("L")).getbbox()


# --- glyphs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bold", [False, True], ids=["regular", "bold"])
@pytest.mark.parametrize("char", list(REQUIRED))
def test_required_glyph_is_not_notdef(char: str, bold: bool) -> None:
    font = load_font(bold, 24)
    assert missing_glyphs(char, font) == set(), f"U+{ord(char):04X} {char} renders as tofu"


def test_notdef_detection_finds_a_glyph_noto_lacks() -> None:
    # The som sign (U+20C0) is in no Noto font yet: the check must be able to say "missing".
    assert missing_glyphs("a\u20c0", load_font(False, 24)) == {"\u20c0"}


@pytest.mark.parametrize("char", list("ӨҮӘҒҚҢҰҺІ₮₸"))
def test_glyph_in_rendered_receipt_differs_from_tofu(char: str) -> None:
    def text(s: str) -> Image.Image:
        return render_receipt(Receipt("kk", (ReceiptLine(S.TEXT, s),)))

    tofu = text("\ue000")
    glyph = text(char)
    assert ink_box(glyph) is not None
    assert ImageChops.difference(glyph.convert("L"), tofu.convert("L")).getbbox() is not None


# --- layout --------------------------------------------------------------------------------------------
def test_image_is_1bit_and_as_wide_as_asked() -> None:
    img = render_receipt(sample_receipt())
    assert img.mode == "1"
    assert img.width == 576
    assert render_receipt(sample_receipt(), width_px=384).width == 384


def test_text_stays_inside_the_margins() -> None:
    img = render_receipt(sample_receipt())
    left, _top, right, _bottom = ink_box(img) or (0, 0, 0, 0)
    assert left >= MARGIN_PX - 1
    assert right <= img.width - MARGIN_PX + 1


def test_title_is_centred() -> None:
    img = render_receipt(Receipt("mn", (ReceiptLine(S.TITLE, "Баримт"),)))
    left, _, right, _ = ink_box(img) or (0, 0, 0, 0)
    assert abs(left - (img.width - right)) <= 4


def test_pair_value_is_right_aligned_and_label_left() -> None:
    img = render_receipt(Receipt("mn", (ReceiptLine(S.PAIR, "Үнэ", "45 000 ₮"),)))
    left, _, right, _ = ink_box(img) or (0, 0, 0, 0)
    assert left <= MARGIN_PX + 3
    assert right >= img.width - MARGIN_PX - 6   # less the glyph's side bearing
    one_row = img.height
    long_label = "Гэрчилгээний серийн дугаар бол маш урт нэртэй талбар бөгөөд нэг мөрөнд багтахгүй"
    wrapped = render_receipt(Receipt("mn", (ReceiptLine(S.PAIR, long_label, "5A:3F:00:11"),)))
    assert wrapped.height > one_row * 1.5       # the label wrapped
    # the value stays on the first row, right-aligned
    first_row = wrapped.crop((wrapped.width // 2, 0, wrapped.width, one_row))
    assert (ink_box(first_row) or (0, 0, 0, 0))[2] >= first_row.width - MARGIN_PX - 6


def test_long_text_wraps_and_long_words_break() -> None:
    short = render_receipt(Receipt("ky", (ReceiptLine(S.TEXT, "Өкмөт"),)))
    long = render_receipt(Receipt("ky", (ReceiptLine(S.TEXT, "Өкмөт " * 40 + "Ы" * 80),)))
    assert long.height > short.height * 5
    assert (ink_box(long) or (0, 0, 0, 0))[2] <= long.width - MARGIN_PX + 1


def test_an_amount_and_a_date_as_cldr_writes_them_never_break_across_rows() -> None:
    """CLDR's no-break spaces (``88 000 ₸``, ``3 дек. 2026 г.``) hold; the plain spaces around them wrap."""
    font = receipt_render._font(False, 24, None)
    amount = Translator("kk", "KZT").money(1_088_000)
    assert "\u00a0" in amount
    rows = receipt_render._wrap(f"Барлығы {amount} {amount}", font, int(font.length(f"Барлығы {amount}")) + 2)
    assert rows == [f"Барлығы {amount}", amount]
    assert "\u202f" in Translator("ru").datetime(dt.datetime(2026, 12, 3, 14, 5))
    assert 0 < font.length("\u202f") < font.length("\u00a0") == font.length(" ")   # Noto spaces them, narrow and full


def test_total_is_bold() -> None:
    def ink(style: ReceiptLineStyle) -> int:
        img = render_receipt(Receipt("mn", (ReceiptLine(style, "Нийт", "45 000 ₮"),)))
        return img.convert("L").histogram()[0]

    assert ink(S.TOTAL) > ink(S.PAIR) * 1.3


def test_rule_is_dashed() -> None:
    img = render_receipt(Receipt("mn", (ReceiptLine(S.RULE),))).convert("L")
    _, top, _, _ = ink_box(img) or (0, 0, 0, 0)
    row = [img.getpixel((x, top)) for x in range(img.width)]
    runs = sum(1 for a, b in itertools.pairwise(row) if a != 0 and b == 0)
    assert runs > 20


def test_note_is_smaller_than_text() -> None:
    note = render_receipt(Receipt("mn", (ReceiptLine(S.NOTE, "Баярлалаа"),)))
    text = render_receipt(Receipt("mn", (ReceiptLine(S.TEXT, "Баярлалаа"),)))
    assert note.height < text.height
    left, _, right, _ = ink_box(note) or (0, 0, 0, 0)
    assert abs(left - (note.width - right)) <= 4


def test_qr_code_carries_the_value_and_is_centred() -> None:
    value = "https://tamga.example.mn/v/5A3F0011"
    img = render_receipt(Receipt("mn", (ReceiptLine(S.QR, "", value),))).convert("L")
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(value)
    code.make(fit=True)
    matrix = code.get_matrix()
    left, top, right, bottom = ink_box(img) or (0, 0, 0, 0)
    n = len(matrix)
    module = (right - left) / n
    assert module >= 2 and module == int(module)
    assert abs(left - (img.width - right)) <= 1
    assert (bottom - top) == (right - left)
    sampled = [[img.getpixel((int(left + (c + 0.5) * module), int(top + (r + 0.5) * module))) == 0
                for c in range(n)] for r in range(n)]
    assert sampled == matrix


def test_empty_receipt_renders() -> None:
    img = render_receipt(Receipt("en", ()))
    assert img.width == 576 and img.height > 0


# --- fonts ---------------------------------------------------------------------------------------------
def test_fonts_are_cached() -> None:
    assert load_font(True, 28) is load_font(True, 28)


def test_missing_font_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_FONT_DIR / REGULAR_FONT, tmp_path / REGULAR_FONT)   # regular present, bold missing
    render_receipt(Receipt("mn", (ReceiptLine(S.TEXT, "Өө"),)), font_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        render_receipt(Receipt("mn", (ReceiptLine(S.HEADING, "Өө"),)), font_dir=tmp_path)
    assert BOLD_FONT in str(info.value)
    assert info.value.data["file"] == str(tmp_path / BOLD_FONT)


def test_font_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(receipt_render.FONT_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=REGULAR_FONT):
        render_receipt(Receipt("mn", (ReceiptLine(S.TEXT, "x"),)))


# --- PNG and speed ---------------------------------------------------------------------------------------
def test_png_round_trips_pixel_for_pixel() -> None:
    img = render_receipt(sample_receipt())
    data = receipt_png(img)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    back = Image.open(io.BytesIO(data))
    assert back.size == img.size
    assert ImageChops.difference(back.convert("L"), img.convert("L")).getbbox() is None


@pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbar-tools is not installed (apt-get install zbar-tools)")
@pytest.mark.parametrize("language", ["mn", "kk", "ky", "ru", "en"])
def test_a_qr_decoder_nobody_here_wrote_reads_the_issuance_receipts_https_link(language: str, tmp_path: Path) -> None:
    from kiosk.shell.demo_verification import read_qr
    from tests.unit.test_receipt import facts

    link = "https://pki.tamga.mn:8443/verify/39D9EE5FA85A36DF2C0E2AA27BA5ACB10BEE9374"
    printed = tmp_path / "receipt.png"
    render_receipt(build_receipt(facts(link), language)).save(printed)
    assert read_qr(printed) == link
