"""The certificate-holder agreement as a PDF, signed PAdES on the eToken (:class:`kiosk.ports.AgreementSigner`).

The text is per language in ``devices/agreement_texts/<lang>.txt`` (``# title``, ``## heading``,
paragraphs; ``{holder_name}``, ``{register_number}``, ``{certificate_serial}``, ``{token_serial}``,
``{date}``, ``{office}``, ``{paid}``, ``{ca}``, ``{law}``), the country's party and law in ``countries.toml``.
reportlab lays it out in Noto Sans (Debian ``fonts-noto-core``), embedded as a subset, so Ө Ү Ә Ғ Қ Ң Ұ Һ
and ₮ ₸ print as they are.

pyHanko's PKCS#11 signer signs it (PAdES baseline B-B: ``ETSI.CAdES.detached``, signing certificate
attribute, the certificate and its chain embedded).  There is no time-stamping authority at hand, so
not B-T.  The private key is used where it is, on the token, through the session
:meth:`devices.token.Pkcs11Token.session` opens (its process-wide lock held throughout; pyHanko's
executor thread is the only one calling the module meanwhile).  ECDSA keys are signed with the raw
mechanism (SoftHSM 2.6 has no CKM_ECDSA_SHA256).
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asn1crypto import x509 as asn1_x509
from babel.dates import format_date

from devices.receipt_render import BOLD_FONT, DEFAULT_FONT_DIR, REGULAR_FONT
from devices.token import Pkcs11Token
from kiosk.errors import ConfigError, TokenError
from kiosk.pin import Pin
from kiosk.ports import AgreementFacts, AgreementKey

TEXTS_DIR = Path(__file__).resolve().parent / "agreement_texts"
LANGUAGES = ("mn", "kk", "ky", "ru", "en")
SIGNATURE_FIELD = "HolderSignature"
_BABEL_LOCALES = {"mn": "mn_MN", "kk": "kk_KZ", "ky": "ky_KG", "ru": "ru_RU", "en": "en_GB"}


class AgreementText:
    """The agreement's texts as files hold them; ``fill`` gives one filled in (title, [(kind, text)])."""

    def __init__(self, directory: Path = TEXTS_DIR) -> None:
        self.directory = directory
        try:
            self.countries: dict[str, Any] = tomllib.loads((directory / "countries.toml").read_text("utf-8"))
            self.texts = {lang: (directory / f"{lang}.txt").read_text("utf-8") for lang in LANGUAGES}
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"agreement texts in {directory}: {err}", setting="agreement_texts") from err

    def fill(self, facts: AgreementFacts) -> tuple[str, list[tuple[str, str]]]:
        try:
            country: Mapping[str, str] = self.countries[facts.country][facts.language]
            template = self.texts[facts.language]
        except KeyError as err:
            raise ConfigError(f"no agreement text for {facts.country}/{facts.language}",
                              setting="agreement_texts") from err
        values = {
            "holder_name": facts.holder_name, "register_number": facts.register_number,
            "certificate_serial": facts.certificate_serial.upper(), "token_serial": facts.token_serial,
            "office": facts.office, "paid": facts.paid, "ca": country["ca"], "law": country["law"],
            "date": format_date(facts.signed_on, format="long", locale=_BABEL_LOCALES[facts.language]),
        }
        return parse_document(template, values)


def parse_document(template: str, values: Mapping[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """``# title``, ``## heading`` and paragraph lines, ``{field}`` filled from ``values``: (title, blocks)."""
    title, blocks = "", []
    for raw in template.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("## "):
            blocks.append(("heading", line[3:].format(**values)))
        elif line.startswith("# "):
            title = line[2:].format(**values)
        else:
            blocks.append(("text", line.format(**values)))
    return title, blocks


def render_pdf(facts: AgreementFacts, text: AgreementText | None = None, font_dir: Path = DEFAULT_FONT_DIR) -> bytes:
    """The unsigned agreement PDF (A4, Noto Sans embedded)."""
    title, blocks = (text or AgreementText()).fill(facts)
    return layout_pdf(title, blocks, language=facts.language, author=facts.holder_name,
                      subject=facts.certificate_serial.upper(), font_dir=font_dir)


def layout_pdf(title: str, blocks: list[tuple[str, str]], language: str, author: str, subject: str,
               font_dir: Path = DEFAULT_FONT_DIR) -> bytes:
    """A4 PDF of a title and (heading | text) blocks in Noto Sans, embedded; ``subject`` in its Info."""
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    try:
        pdfmetrics.registerFont(TTFont("TamgaNotoSans", str(font_dir / REGULAR_FONT)))
        pdfmetrics.registerFont(TTFont("TamgaNotoSans-Bold", str(font_dir / BOLD_FONT)))
    except Exception as err:   # reportlab raises TTFError (and others) for a missing or broken font file
        raise ConfigError(f"agreement font in {font_dir}: {err}", setting="fonts") from err
    body = ParagraphStyle("body", fontName="TamgaNotoSans", fontSize=10.5, leading=14.5, spaceAfter=6)
    heading = ParagraphStyle("heading", parent=body, fontName="TamgaNotoSans-Bold", fontSize=11.5, spaceBefore=6)
    title_style = ParagraphStyle("title", parent=body, fontName="TamgaNotoSans-Bold", fontSize=14, leading=18,
                                 alignment=1, spaceAfter=12)
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=20 * mm,
                            bottomMargin=20 * mm, title=title, author=author, subject=subject,
                            lang=language, invariant=1,
                            initialFontName="TamgaNotoSans")
    story: list[Any] = [Paragraph(escape(title), title_style)]
    for kind, line in blocks:
        story.append(Paragraph(escape(line), heading if kind == "heading" else body))
    story.append(Spacer(1, 8 * mm))
    doc.build(story)
    return out.getvalue()


class Pkcs11AgreementSigner:
    """Renders the agreement and signs it PAdES B-B with the token's key ``key.key_id``."""

    def __init__(self, token: Pkcs11Token, text: AgreementText | None = None,
                 font_dir: Path = DEFAULT_FONT_DIR) -> None:
        self.token = token
        self.text = text or AgreementText()
        self.font_dir = font_dir

    def sign(self, facts: AgreementFacts, key: AgreementKey, pin: Pin) -> bytes:
        pdf = render_pdf(facts, self.text, self.font_dir)
        return self.sign_pdf(pdf, key, pin, reason=self.text.fill(facts)[0])

    def sign_pdf(self, pdf: bytes, key: AgreementKey, pin: Pin, reason: str = "") -> bytes:
        """Add a PAdES B-B signature by the token's key to ``pdf`` (an incremental update)."""
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers
        from pyhanko.sign.general import SigningError
        from pyhanko.sign.pkcs11 import PKCS11Signer

        cert = asn1_x509.Certificate.load(key.certificate_der)
        chain = [asn1_x509.Certificate.load(der) for der in key.chain_der]
        meta = signers.PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
            reason=reason or None, use_pades_lta=False, embed_validation_info=False)
        with self.token.session(key.token_serial, pin) as session:
            raw_session = session._s     # the logged-in python-pkcs11 session (lock held)
            if not session.find_public_key(key.key_id):
                raise TokenError("no key pair with this CKA_ID", reason="key_missing")
            signer = PKCS11Signer(raw_session, key_id=key.key_id, signing_cert=cert, ca_chain=chain,
                                  use_raw_mechanism=cert.public_key.algorithm == "ec", embed_roots=True)
            try:
                out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=signer)
            except SigningError as err:
                raise TokenError(f"signing the agreement failed: {err}", reason="sign_failed") from err
        return out.getvalue()

