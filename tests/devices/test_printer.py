"""EscPosPrinter (python-escpos) against the loopback ESC/POS emulator: pixels, status, faults, file backend."""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from escpos.printer import Network
from PIL import Image, ImageChops

from devices.printer import (
    EscPosPrinter,
    PrinterTarget,
    decode_status,
    job_bytes,
    raster_commands,
)
from devices.receipt_render import render_receipt
from devices.sim.printer_emulator import PrinterEmulator
from kiosk.errors import ConfigError, DeviceNotReady, PaperOut, PrinterError
from kiosk.ports import PrinterStatus, Receipt, ReceiptLine, ReceiptLineStyle

S = ReceiptLineStyle
ROOT = Path(__file__).resolve().parents[2]
TM_T20II = "TM-T20II"        # a python-escpos profile with a 576-dot, 203 dpi head


def receipt() -> Receipt:
    return Receipt("mn", (
        ReceiptLine(S.TITLE, "Тамга"),
        ReceiptLine(S.NOTE, "Бүртгэлийн газар №3"),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, "Өргөдөл гаргагч"),
        ReceiptLine(S.PAIR, "Овог нэр", "Өлзийсайхан Батбаяр"),
        ReceiptLine(S.TEXT, "Қазақша: қолтаңба сертификаты берілді — Әә Ғғ Ққ Ңң Өө Ұұ Үү Һһ Іі."),
        ReceiptLine(S.TEXT, "Кыргызча: электрондук кол тамга берилди — Ңң Өө Үү."),
        ReceiptLine(S.PAIR, "Үнэ", "45 000 ₮"),
        ReceiptLine(S.PAIR, "Бағасы", "6 500 ₸"),
        ReceiptLine(S.TOTAL, "Нийт", "45 000 ₮"),
        ReceiptLine(S.QR, "Шалгах", "https://tamga.example.mn/v/5A3F0011"),
    ))


def assert_printed_equals(printed: Path, preview: Image.Image) -> None:
    """The paper shows the preview at the top and nothing but blank feed below it."""
    paper = Image.open(printed).convert("L").point(lambda v: 255 if v >= 128 else 0)
    expected = preview.convert("L").point(lambda v: 255 if v >= 128 else 0)
    assert paper.width == expected.width
    assert paper.height >= expected.height
    top = paper.crop((0, 0, expected.width, expected.height))
    assert ImageChops.difference(top, expected).getbbox() is None, "printed pixels differ from the preview"
    below = paper.crop((0, expected.height, paper.width, paper.height))
    assert below.height == 0 or ImageChops.invert(below).getbbox() is None, "ink below the receipt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_send(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_stray_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        stray = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not stray:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left running: {stray}")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[PrinterEmulator]:
    with PrinterEmulator(tmp_path / "paper") as emu:
        yield emu


@pytest.fixture
def printer(emulator: PrinterEmulator) -> EscPosPrinter:
    return EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=emulator.port,
                                       timeout_s=5, status_timeout_s=0.5))


# --- printing -----------------------------------------------------------------------------------------
def test_receipt_prints_exactly_the_preview(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    png = printer.print_receipt(receipt())
    (printed,) = emulator.wait_for_jobs(1)
    preview = Image.open(io.BytesIO(png))
    assert_printed_equals(printed, preview)
    assert preview.width == 576
    assert emulator.garbage_bytes == 0 and emulator.incomplete_commands == 0
    assert printer.render_seconds is not None and printer.write_seconds is not None
    assert printer.last_job.startswith(b"\x1b@\x1dv0") and printer.last_job.endswith(b"\x1dV\x42\x00")


def test_tall_receipt_is_sent_in_chunks(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    tall = Receipt("ru", tuple(ReceiptLine(S.PAIR, f"Строка {i}", f"{i} ₽") for i in range(60)))
    png = printer.print_receipt(tall)
    preview = Image.open(io.BytesIO(png))
    assert preview.height > 1000
    assert printer.last_job.count(b"\x1dv0") == -(-preview.height // 256)
    assert_printed_equals(emulator.wait_for_jobs(1)[0], preview)


def test_two_receipts_make_two_files(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    printer.print_receipt(receipt())
    printer.print_receipt(Receipt("en", (ReceiptLine(S.TEXT, "Second"),)))
    jobs = emulator.wait_for_jobs(2)
    assert [p.name for p in jobs] == ["receipt-0001.png", "receipt-0002.png"]


# --- status --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("paper", "expected"), [
    ("ok", PrinterStatus.READY),
    ("near_end", PrinterStatus.PAPER_NEAR_END),
    ("out", PrinterStatus.PAPER_OUT),
])
def test_status_follows_the_paper_sensor(printer: EscPosPrinter, emulator: PrinterEmulator,
                                         paper: str, expected: PrinterStatus) -> None:
    emulator.paper = paper  # type: ignore[assignment]
    assert printer.status() is expected


def test_near_end_still_prints(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    emulator.paper = "near_end"
    printer.print_receipt(receipt())
    assert len(emulator.wait_for_jobs(1)) == 1


def test_paper_out_raises_and_sends_nothing(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    emulator.paper = "out"
    with pytest.raises(PaperOut) as info:
        printer.print_receipt(receipt())
    assert info.value.recoverable
    assert emulator.data_bytes == 0            # only the status requests reached the printer
    assert emulator.status_requests == 2
    assert emulator.jobs == []


def test_offline_printer_is_not_ready(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    emulator.online = False
    assert printer.status() is PrinterStatus.OFFLINE
    with pytest.raises(DeviceNotReady) as info:
        printer.print_receipt(receipt())
    assert info.value.data == {"device": "printer", "reason": "offline"}
    assert emulator.data_bytes == 0


def test_no_listener_is_offline_and_not_ready() -> None:
    printer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=free_port(), timeout_s=2))
    assert printer.status() is PrinterStatus.OFFLINE
    with pytest.raises(DeviceNotReady) as info:
        printer.print_receipt(receipt())
    assert info.value.data["device"] == "printer"
    assert info.value.__cause__ is not None


def test_silent_printer_is_unknown_not_paper_out(tmp_path: Path) -> None:
    with PrinterEmulator(tmp_path, answer_status=False) as emu:
        printer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=emu.port, status_timeout_s=0.2))
        started = time.monotonic()
        assert printer.status() is PrinterStatus.UNKNOWN
        assert time.monotonic() - started < 1.5
        printer.print_receipt(receipt())          # unknown status does not stop printing
        assert len(emu.wait_for_jobs(1)) == 1


def test_python_escpos_reads_the_emulator_status(emulator: PrinterEmulator) -> None:
    p = Network("127.0.0.1", emulator.port, timeout=2)
    try:
        p.open()
        assert p.is_online() and p.paper_status() == 2
        emulator.paper = "near_end"
        assert p.paper_status() == 1
        emulator.paper = "out"
        assert p.paper_status() == 0 and not p.is_online()
    finally:
        p.close()


@pytest.mark.parametrize(("printer_byte", "paper_byte", "expected"), [
    (0x16, 0x12, PrinterStatus.READY),
    (0x12, 0x1E, PrinterStatus.PAPER_NEAR_END),
    (0x1E, 0x72, PrinterStatus.PAPER_OUT),
    (0x1E, 0x12, PrinterStatus.OFFLINE),
    (None, None, PrinterStatus.UNKNOWN),
    (0x16, None, PrinterStatus.UNKNOWN),
    (None, 0x72, PrinterStatus.PAPER_OUT),
])
def test_decode_status(printer_byte: int | None, paper_byte: int | None, expected: PrinterStatus) -> None:
    assert decode_status(printer_byte, paper_byte) is expected


# --- faults --------------------------------------------------------------------------------------------
def test_emulator_survives_garbage(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    rng = random.Random(20251122)
    raw_send(emulator.port, bytes(rng.randrange(256) for _ in range(20_000)))
    raw_send(emulator.port, b"\x1b\xff\x1d\xfe\x10\x99\x1c\xee\x00\x01\x02")
    wait_until(lambda: emulator.connections_closed == 2)
    assert emulator.garbage_bytes > 0
    assert printer.status() is PrinterStatus.READY
    before = len(emulator.jobs)
    png = printer.print_receipt(receipt())
    printed = emulator.wait_for_jobs(before + 1)[-1]
    assert_printed_equals(printed, Image.open(io.BytesIO(png)))


def test_emulator_survives_a_half_sent_image(printer: EscPosPrinter, emulator: PrinterEmulator) -> None:
    job = job_bytes(render_receipt(receipt()))
    raw_send(emulator.port, job[: len(job) // 2])
    wait_until(lambda: emulator.connections_closed == 1)
    assert emulator.incomplete_commands == 1
    assert len(emulator.jobs) == 1          # the complete fragments before the break were printed
    png = printer.print_receipt(receipt())
    assert_printed_equals(emulator.wait_for_jobs(2)[-1], Image.open(io.BytesIO(png)))


def test_stop_with_a_client_stuck_mid_image(tmp_path: Path) -> None:
    emu = PrinterEmulator(tmp_path).start()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as s:
        s.sendall(b"\x1b@\x1dv0\x00\x48\x00\xff\x00" + b"\xff" * 100)
        time.sleep(0.1)
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 2
    assert emu.incomplete_commands == 1


def test_emulator_discards_print_data_when_paper_is_out(emulator: PrinterEmulator) -> None:
    emulator.paper = "out"
    raw_send(emulator.port, job_bytes(render_receipt(receipt())))
    wait_until(lambda: emulator.connections_closed == 1)
    assert emulator.discarded_jobs == 1
    assert emulator.jobs == []


def _resetting_printer(take_job_bytes: int,
                       after_job: tuple[bytes, ...] = ()) -> tuple[socket.socket, threading.Thread]:
    """A printer on loopback that answers the status, reads ``take_job_bytes`` of the job, answers the
    status queries after it with ``after_job``, then resets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for answer in (b"\x16", b"\x12"):
                conn.recv(3)
                conn.sendall(answer)
            taken = 0
            while taken < take_job_bytes and (chunk := conn.recv(min(65536, take_job_bytes - taken))):
                taken += len(chunk)
            for answer in after_job:
                conn.recv(3)
                conn.sendall(answer)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        listener.close()

    thread = threading.Thread(target=serve, name="reset-printer")
    thread.start()
    return listener, thread


@pytest.mark.parametrize("whole_job", [False, True], ids=["before-the-job", "after-the-whole-job"])
def test_a_printer_that_resets_the_connection_is_a_printer_error(whole_job: bool) -> None:
    """Reset before the job or after taking all of it: the kiosk never takes the receipt for printed.

    Bytes a dead printer never printed are in the kernel's buffers when ``send`` returns, so the
    status is asked again after the job; a reset while sending fails the send (stage write) or that
    status (stage confirm), whichever the reset reaches first.
    """
    renderer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=9, timeout_s=2))  # never opened
    big = Receipt("mn", tuple(ReceiptLine(S.TEXT, "Өө " * 30) for _ in range(80)))
    prepared = renderer.prepare(big)
    listener, thread = _resetting_printer(len(prepared.job) if whole_job else 0)
    try:
        printer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=listener.getsockname()[1],
                                              timeout_s=2))
        with pytest.raises(PrinterError) as info:
            printer.print_receipt(big, prepared)
        assert info.value.data["stage"] in ({"confirm"} if whole_job else {"write", "confirm"})
        assert isinstance(info.value.__cause__, OSError | DeviceNotReady)
    finally:
        thread.join(5)


def test_paper_that_runs_out_during_the_receipt_is_paper_out_after_it() -> None:
    """The status after the job says paper end: the receipt is cut short, the clerk is told to refill."""
    big = Receipt("mn", tuple(ReceiptLine(S.TEXT, "Өө " * 30) for _ in range(20)))
    prepared = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=9)).prepare(big)  # never opened
    listener, thread = _resetting_printer(len(prepared.job), after_job=(b"\x16", b"\x72"))
    try:
        printer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=listener.getsockname()[1],
                                              timeout_s=2))
        with pytest.raises(PaperOut) as info:
            printer.print_receipt(big, prepared)
        assert info.value.data["stage"] == "confirm"
    finally:
        thread.join(5)


# --- other backends and python-escpos' own image commands ------------------------------------------------
def test_file_printer_writes_the_job_and_status_is_unknown(tmp_path: Path, emulator: PrinterEmulator) -> None:
    out = tmp_path / "lp0"
    printer = EscPosPrinter(PrinterTarget("file", path=str(out)))
    assert printer.status() is PrinterStatus.UNKNOWN
    png = printer.print_receipt(receipt())
    data = out.read_bytes()
    assert data == printer.last_job
    # the file holds a complete, valid job: the emulator prints it as the preview
    raw_send(emulator.port, data)
    assert_printed_equals(emulator.wait_for_jobs(1)[0], Image.open(io.BytesIO(png)))


def test_file_printer_in_a_missing_directory_is_not_ready(tmp_path: Path) -> None:
    printer = EscPosPrinter(PrinterTarget("file", path=str(tmp_path / "no" / "lp0")))
    with pytest.raises(DeviceNotReady):
        printer.print_receipt(receipt())


@pytest.mark.parametrize("impl", ["bitImageRaster", "graphics", "bitImageColumn"])
def test_emulator_prints_python_escpos_images(emulator: PrinterEmulator, impl: str) -> None:
    preview = render_receipt(Receipt("kk", receipt().lines[:6]))
    p = Network("127.0.0.1", emulator.port, timeout=5, profile=TM_T20II)
    try:
        p.open()
        p.image(preview, impl=impl)
        p.cut()
    finally:
        p.close()
    assert_printed_equals(emulator.wait_for_jobs(1)[0], preview)


def test_emulator_prints_code_page_text(emulator: PrinterEmulator) -> None:
    p = Network("127.0.0.1", emulator.port, timeout=5)
    try:
        p.open()
        p.set(bold=True, align="center")
        p.text("Привет\n")
        p.cut()
    finally:
        p.close()
    img = Image.open(emulator.wait_for_jobs(1)[0]).convert("L")
    left, top, right, _ = ImageChops.invert(img).getbbox() or (0, 0, 0, 0)
    assert top < 30 and abs(left - (img.width - right)) <= 2


def test_raster_commands_pad_odd_widths() -> None:
    img = Image.new("1", (10, 3), 0)
    data = raster_commands(img)
    assert data[:8] == b"\x1dv0\x00\x02\x00\x03\x00"
    assert data[8:] == b"\xff\xc0" * 3


# --- configuration ---------------------------------------------------------------------------------------
def test_target_parse() -> None:
    assert PrinterTarget.parse("tcp://10.0.0.5") == PrinterTarget("network", host="10.0.0.5", port=9100)
    assert PrinterTarget.parse("tcp://printer:9101").port == 9101
    usb = PrinterTarget.parse("usb://04b8:0202")
    assert (usb.usb_vendor, usb.usb_product) == (0x04B8, 0x0202)
    assert PrinterTarget.parse("file:///dev/usb/lp0").path == "/dev/usb/lp0"
    for bad in ("lpt://1", "usb://zz", "tcp://"):
        with pytest.raises(ConfigError):
            PrinterTarget.parse(bad)


def test_usb_without_pyusb_is_a_config_error() -> None:
    pytest.importorskip("escpos")
    try:
        import usb.core  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pyusb"):
            EscPosPrinter(PrinterTarget("usb", usb_vendor=0x04B8, usb_product=0x0202))
    else:
        pytest.skip("pyusb is installed")


# --- the emulator as a program ---------------------------------------------------------------------------
def test_emulator_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "devices.sim.printer_emulator", "--port", "0",
                             "--out", str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.split(":")[1].split(",")[0])
        printer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=port))
        assert printer.status() is PrinterStatus.READY
        printer.print_receipt(receipt())
        deadline = time.monotonic() + 10     # the emulator saves the job once it has parsed the cut
        while not (tmp_path / "receipt-0001.png").is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert (tmp_path / "receipt-0001.png").is_file()


# --- a real printer, only when asked for ------------------------------------------------------------------
@pytest.mark.device
def test_real_printer(request: pytest.FixtureRequest) -> None:
    """``pytest --device tcp://192.168.1.50:9100`` (or usb://04b8:0202, file:///dev/usb/lp0) prints one receipt."""
    address = str(request.config.getoption("--device"))
    if not address.startswith(("tcp://", "usb://", "file://")):
        pytest.skip(f"--device {address!r} is not a printer address")
    printer = EscPosPrinter(PrinterTarget.parse(address))
    status = printer.status()
    assert status in (PrinterStatus.READY, PrinterStatus.PAPER_NEAR_END, PrinterStatus.UNKNOWN), status
    printer.print_receipt(receipt())
