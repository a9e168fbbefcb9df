"""The receipt printer: :class:`kiosk.ports.PrinterPort` over python-escpos (network, USB or file).

The receipt is rendered to a raster image (see :mod:`devices.receipt_render`) and sent as
``GS v 0`` bit images, because code-page text cannot print Mongolian/Kazakh letters or ₮ ₸.
Status comes from the real-time requests DLE EOT 1 (printer) and DLE EOT 4 (paper roll sensor),
read by this module itself: python-escpos' ``paper_status()`` reports "no answer" as "paper OK"
and ``is_online()`` reports it as offline.

Every operation opens its own connection and closes it before returning; escpos, socket and
pyusb errors are translated to :mod:`kiosk.errors` here and never escape.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from escpos.exceptions import Error as EscposError
from PIL import Image

from devices.receipt_render import DEFAULT_WIDTH_PX, receipt_png, render_receipt
from kiosk.errors import ConfigError, DeviceNotReady, PaperOut, PrinterError
from kiosk.ports import PrinterStatus, Receipt

if TYPE_CHECKING:
    from escpos.escpos import Escpos

log = logging.getLogger(__name__)

PrinterKind = Literal["network", "usb", "file"]

# --- ESC/POS bytes ---------------------------------------------------------------------------------
ESC = b"\x1b"
GS = b"\x1d"
DLE_EOT = b"\x10\x04"
INITIALIZE = ESC + b"@"
STATUS_PRINTER = 1           # DLE EOT 1: printer status
STATUS_PAPER = 4             # DLE EOT 4: paper roll sensor status

STATUS_FIXED_MASK = 0x93     # bits 0, 1, 4, 7 of every real-time status byte ...
STATUS_FIXED_BITS = 0x12     # ... are 0, 1, 1, 0
STATUS_OFFLINE = 0x08        # DLE EOT 1, bit 3
STATUS_NEAR_END = 0x0C       # DLE EOT 4, bits 2-3: roll near-end sensor
STATUS_PAPER_END = 0x60      # DLE EOT 4, bits 5-6: roll end sensor

RASTER_FRAGMENT_ROWS = 256   # rows per GS v 0 command; printers buffer a limited amount


@dataclass(frozen=True)
class PrinterTarget:
    """Where the printer is: ``kind`` network (``host``, ``port``), usb (``usb_vendor``, ``usb_product``) or file.

    ``timeout_s`` bounds connecting and sending a job; ``status_timeout_s`` bounds the wait for a
    status answer, after which the status is UNKNOWN (some printers have status replies turned off).
    """

    kind: PrinterKind
    host: str = ""
    port: int = 9100
    usb_vendor: int | None = None
    usb_product: int | None = None
    path: str = ""
    timeout_s: float = 10.0
    status_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        problem = ""
        if self.kind == "network" and not self.host:
            problem = "a network printer needs a host"
        elif self.kind == "usb" and (self.usb_vendor is None or self.usb_product is None):
            problem = "a USB printer needs usb_vendor and usb_product"
        elif self.kind == "file" and not self.path:
            problem = "a file printer needs a path"
        elif self.kind not in ("network", "usb", "file"):
            problem = f"unknown printer kind {self.kind!r}"
        elif self.timeout_s <= 0 or self.status_timeout_s <= 0:
            problem = "printer timeouts must be positive"
        if problem:
            raise ConfigError(problem, setting="printer")

    @classmethod
    def parse(cls, spec: str, timeout_s: float = 10.0) -> PrinterTarget:
        """``tcp://host[:port]``, ``usb://VVVV:PPPP`` (hex ids) or ``file:///dev/usb/lp0``.  Raises ConfigError."""
        url = urlsplit(spec)
        try:
            if url.scheme == "tcp":
                return cls("network", host=url.hostname or "", port=url.port or 9100, timeout_s=timeout_s)
            if url.scheme == "usb":
                vendor, product = url.netloc.split(":")
                return cls("usb", usb_vendor=int(vendor, 16), usb_product=int(product, 16), timeout_s=timeout_s)
            if url.scheme == "file":
                return cls("file", path=url.path, timeout_s=timeout_s)
        except ValueError as err:
            raise ConfigError(f"bad printer address {spec!r}: {err}", setting="printer") from err
        raise ConfigError(f"bad printer address {spec!r}: use tcp://, usb:// or file://", setting="printer")


# --- pure helpers ----------------------------------------------------------------------------------
def decode_status(printer: int | None, paper: int | None) -> PrinterStatus:
    """Map DLE EOT 1 and DLE EOT 4 answers (None = no valid answer) to a PrinterStatus.

    Paper end wins over offline (a printer goes offline when its paper runs out); a missing answer
    is UNKNOWN, never "paper out".
    """
    if paper is not None and paper & STATUS_PAPER_END:
        return PrinterStatus.PAPER_OUT
    if printer is not None and printer & STATUS_OFFLINE:
        return PrinterStatus.OFFLINE
    if printer is None or paper is None:
        return PrinterStatus.UNKNOWN
    if paper & STATUS_NEAR_END:
        return PrinterStatus.PAPER_NEAR_END
    return PrinterStatus.READY


def _valid_status_byte(answer: bytes) -> int | None:
    if not answer:
        return None
    value = answer[-1]                     # the newest byte, should stale ones precede it
    return value if value & STATUS_FIXED_MASK == STATUS_FIXED_BITS else None


def raster_commands(image: Image.Image, fragment_rows: int = RASTER_FRAGMENT_ROWS) -> bytes:
    """``image`` as GS v 0 raster bit-image commands of at most ``fragment_rows`` rows each."""
    img = image if image.mode == "1" else image.convert("L").point(lambda v: 255 if v >= 128 else 0, mode="1")
    width_bytes = (img.width + 7) // 8
    if img.width % 8:
        padded = Image.new("1", (width_bytes * 8, img.height), 1)
        padded.paste(img, (0, 0))
        img = padded
    data = img.tobytes("raw", "1;I")       # MSB first, 1 = black, rows byte-aligned
    out = bytearray()
    for top in range(0, img.height, fragment_rows):
        rows = min(fragment_rows, img.height - top)
        out += GS + b"v0\x00" + width_bytes.to_bytes(2, "little") + rows.to_bytes(2, "little")
        out += data[top * width_bytes:(top + rows) * width_bytes]
    return bytes(out)


def job_bytes(image: Image.Image, feed_lines: int = 2) -> bytes:
    """The whole print job: initialise, the raster image, feed ``feed_lines``, feed to the cutter and part-cut."""
    return (INITIALIZE + raster_commands(image)
            + ESC + b"d" + bytes((feed_lines,))
            + GS + b"V" + bytes((66, 0)))      # GS V 66 0: feed to cutting position, partial cut


@dataclass(frozen=True)
class PreparedReceipt:
    """A receipt rendered ahead of printing: its PNG preview and the ESC/POS job."""

    receipt: Receipt
    png: bytes
    job: bytes
    render_seconds: float


# --- the adapter -----------------------------------------------------------------------------------
class EscPosPrinter:
    """An ESC/POS receipt printer.  Thread-safe; each call uses its own short connection.

    After each print ``render_seconds`` (render + PNG + ESC/POS encoding) and ``write_seconds``
    (sending the job to the backend) hold the timings, and ``last_job`` the bytes sent.
    """

    def __init__(self, target: PrinterTarget, *, width_px: int = DEFAULT_WIDTH_PX,
                 font_dir: str | os.PathLike[str] | None = None, feed_lines: int = 2) -> None:
        if target.kind == "usb":
            from escpos.printer.usb import Usb
            if not Usb.is_usable():
                raise ConfigError("USB printers need pyusb: pip install 'python-escpos[usb]'",
                                  setting="printer")
        self.target = target
        self.width_px = width_px
        self.font_dir = font_dir
        self.feed_lines = feed_lines
        self.render_seconds: float | None = None
        self.write_seconds: float | None = None
        self.io_seconds: float | None = None      # connect + status + send + close of the last print
        self.last_job: bytes = b""
        self._lock = threading.Lock()

    # --- PrinterPort ---------------------------------------------------------------------------
    def status(self) -> PrinterStatus:
        """READY, PAPER_NEAR_END, PAPER_OUT, OFFLINE (unreachable or reporting offline) or UNKNOWN.

        UNKNOWN means the printer cannot answer (a file printer) or did not answer in time.
        """
        if self.target.kind == "file":
            return PrinterStatus.UNKNOWN
        with self._lock:
            try:
                backend = self._open()
            except DeviceNotReady:
                return PrinterStatus.OFFLINE
            try:
                return self._query_status(backend)
            except DeviceNotReady:
                return PrinterStatus.OFFLINE
            finally:
                self._close(backend)

    def prepare(self, receipt: Receipt) -> PreparedReceipt:
        """Render the receipt and encode its job (no printer I/O; safe to run beside other work)."""
        started = time.perf_counter()
        image = render_receipt(receipt, self.width_px, font_dir=self.font_dir)
        png = receipt_png(image)
        job = job_bytes(image, self.feed_lines)
        return PreparedReceipt(receipt, png, job, time.perf_counter() - started)

    def print_receipt(self, receipt: Receipt, prepared: object | None = None) -> bytes:
        """Render, check the status, send the raster job and cut, confirm; return the rendered PNG.

        Raises PaperOut (nothing sent; with stage 'confirm': the paper ran out during the job),
        DeviceNotReady(device='printer') when unreachable or offline, PrinterError when sending fails
        part-way (stage write) or the printer is gone or offline after the job (stage confirm: what
        was printed is unknown), ConfigError when a font is missing.
        An UNKNOWN status (no status channel, or no answer in time) does not stop printing.
        """
        # Render before connecting: the connection (printers serve one at a time) is held only
        # for the status check and the send, and the status is as fresh as it can be.
        if not (isinstance(prepared, PreparedReceipt) and prepared.receipt == receipt):
            prepared = self.prepare(receipt)
        png, job, render_seconds = prepared.png, prepared.job, prepared.render_seconds
        with self._lock:

            io_started = time.perf_counter()
            backend = self._open()
            try:
                status = PrinterStatus.UNKNOWN if self.target.kind == "file" else self._query_status(backend)
                if status is PrinterStatus.PAPER_OUT:
                    raise PaperOut("printer reports paper out", device="printer")
                if status is PrinterStatus.OFFLINE:
                    raise DeviceNotReady("printer reports offline", device="printer", reason="offline")
                if status is PrinterStatus.UNKNOWN:
                    log.info("printer status unknown (%s); printing anyway", self.target.kind)

                self.render_seconds = render_seconds
                started = time.perf_counter()
                self._send(backend, job)
                if self.target.kind == "network":
                    self._confirm(backend)
                self.write_seconds = time.perf_counter() - started
                self.last_job = job
                return png
            finally:
                self._close(backend)
                self.io_seconds = time.perf_counter() - io_started

    # --- backend -------------------------------------------------------------------------------
    def _backend(self) -> Escpos:
        t = self.target
        if t.kind == "network":
            from escpos.printer.network import Network
            return Network(t.host, t.port, timeout=t.timeout_s)
        if t.kind == "file":
            from escpos.printer.file import File
            return File(t.path, auto_flush=False)
        from escpos.printer.usb import Usb
        return Usb(t.usb_vendor, t.usb_product, timeout=int(t.timeout_s * 1000))

    def _open(self) -> Escpos:
        """Open a connection.  Raises DeviceNotReady(device='printer') when nothing answers."""
        backend = self._backend()
        try:
            backend.open()
            if self.target.kind == "network":
                sock = backend.device
                if isinstance(sock, socket.socket):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (EscposError, OSError, RuntimeError, ValueError) as err:   # ValueError: pyusb's NoBackendError
            self._close(backend)
            raise DeviceNotReady(f"printer unreachable: {self._where()}: {err}",
                                 device="printer", reason="unreachable") from err
        return backend

    def _query_status(self, backend: Escpos) -> PrinterStatus:
        """DLE EOT 1, then DLE EOT 4.  Raises DeviceNotReady when the connection drops."""
        printer = self._ask(backend, STATUS_PRINTER)
        if printer is None:                 # no answer: a late one must not be read as the paper byte
            return PrinterStatus.UNKNOWN
        paper = self._ask(backend, STATUS_PAPER)
        status = decode_status(printer, paper)
        log.debug("printer status 0x%02x paper %s -> %s", printer,
                  "none" if paper is None else f"0x{paper:02x}", status.value)
        return status

    def _ask(self, backend: Escpos, n: int) -> int | None:
        """Send DLE EOT ``n`` and read one status byte; None when there is no (valid) answer in time."""
        sock = backend.device if self.target.kind == "network" else None
        try:
            if isinstance(sock, socket.socket):
                sock.settimeout(self.target.status_timeout_s)
            backend._raw(DLE_EOT + bytes((n,)))
            answer = bytes(backend._read())
        except TimeoutError:
            log.info("printer did not answer DLE EOT %d within %.1f s", n, self.target.status_timeout_s)
            return None
        except (EscposError, OSError, NotImplementedError) as err:
            if self.target.kind == "usb":   # no IN endpoint, or pyusb's read timeout
                log.info("printer status read failed: %s", err)
                return None
            raise DeviceNotReady(f"printer connection lost: {self._where()}: {err}",
                                 device="printer", reason="disconnected") from err
        finally:
            if isinstance(sock, socket.socket):
                sock.settimeout(self.target.timeout_s)
        if not answer and self.target.kind == "network":
            raise DeviceNotReady(f"printer closed the connection: {self._where()}",
                                 device="printer", reason="disconnected")
        value = _valid_status_byte(answer)
        if value is None:
            log.warning("printer sent an invalid status answer to DLE EOT %d: %s", n, answer.hex(" "))
        return value

    def _send(self, backend: Escpos, job: bytes) -> None:
        try:
            backend._raw(job)
            if self.target.kind == "file":
                backend.flush()     # type: ignore[attr-defined]
        except (EscposError, OSError) as err:
            raise PrinterError(f"sending the receipt failed: {self._where()}: {err}",
                               device="printer", stage="write") from err

    def _confirm(self, backend: Escpos) -> None:
        """Ask the status again after the job: a ``send`` that returned only put the bytes in the
        kernel's buffers, and a printer that reset or lost power after taking them printed nothing.
        Raises PrinterError(stage='confirm'); no answer in time is not an error (a busy printer)."""
        try:
            status = self._query_status(backend)
        except DeviceNotReady as err:
            raise PrinterError(f"the printer did not confirm the receipt: {self._where()}",
                               device="printer", stage="confirm") from err
        if status is PrinterStatus.PAPER_OUT:      # ran out during the job: the receipt is cut short
            raise PaperOut("paper ran out during the receipt", device="printer", stage="confirm")
        if status is PrinterStatus.OFFLINE:
            raise PrinterError(f"the printer went offline during the receipt: {self._where()}",
                               device="printer", stage="confirm", reason="offline")

    def _close(self, backend: Escpos) -> None:
        """Close; unread bytes (a late status answer) are drained first so the close is not a reset."""
        sock = getattr(backend, "_device", None)     # not .device: that property reopens
        if isinstance(sock, socket.socket):
            try:
                sock.setblocking(False)
                while sock.recv(64):
                    pass
            except OSError:
                pass
        try:
            backend.close()
        except (EscposError, OSError) as err:
            log.info("closing the printer connection failed: %s", err)

    def _where(self) -> str:
        t = self.target
        if t.kind == "network":
            return f"{t.host}:{t.port}"
        if t.kind == "usb":
            return f"usb {t.usb_vendor or 0:04x}:{t.usb_product or 0:04x}"
        return t.path

