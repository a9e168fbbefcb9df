"""Receipt printing timings against the loopback ESC/POS emulator.

Prints the median render time and write time of a typical receipt over ``--runs`` prints, and the
write time as a ratio of a plain ``socket.sendall`` of the same job bytes, measured in the same run
after the same connect and status exchange (the cost python-escpos and the adapter add over the
wire itself).  The emulator runs in this process, on its own threads.

    .venv/bin/python bench/bench_printer.py [--runs 20]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.printer import EscPosPrinter, PrinterTarget
from devices.receipt_render import render_receipt
from devices.sim.printer_emulator import PrinterEmulator
from kiosk.ports import Receipt, ReceiptLine, ReceiptLineStyle

S = ReceiptLineStyle


def typical_receipt() -> Receipt:
    """What the kiosk prints after an issuance: 30 lines in Mongolian with a QR code."""
    lines = [
        ReceiptLine(S.TITLE, "Тамга — гэрчилгээ олгосон баримт"),
        ReceiptLine(S.NOTE, "Улаанбаатар, Бүртгэлийн газар №3, киоск K-07"),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, "Өргөдөл гаргагч"),
        ReceiptLine(S.PAIR, "Овог нэр", "Өлзийсайхан Батбаяр"),
        ReceiptLine(S.PAIR, "Регистрийн дугаар", "УБ80000000"),
        ReceiptLine(S.PAIR, "Иргэний үнэмлэх", "PNOMN-UB80000000"),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, "Гэрчилгээ"),
        ReceiptLine(S.PAIR, "Төрөл", "Тоон гарын үсгийн шаардлага хангасан гэрчилгээ"),
        ReceiptLine(S.PAIR, "Серийн дугаар", "5A:3F:00:11:C2:9B"),
        ReceiptLine(S.PAIR, "Хүчинтэй эхлэх", "2025-11-22"),
        ReceiptLine(S.PAIR, "Хүчинтэй дуусах", "2028-11-21"),
        ReceiptLine(S.PAIR, "eToken", "SafeNet 5110 · 0A1B2C3D"),
        ReceiptLine(S.TEXT, "Таны хувийн түлхүүр зөвхөн eToken дээр хадгалагдсан бөгөөд хуулбарлах боломжгүй."),
        ReceiptLine(S.RULE),
        ReceiptLine(S.HEADING, "Төлбөр"),
        ReceiptLine(S.PAIR, "Нэхэмжлэх", "INV-2025-004211"),
        ReceiptLine(S.PAIR, "Гэрчилгээний үнэ", "40 000 ₮"),
        ReceiptLine(S.PAIR, "eToken", "5 000 ₮"),
        ReceiptLine(S.TOTAL, "Нийт", "45 000 ₮"),
        ReceiptLine(S.RULE),
        ReceiptLine(S.TEXT, "PIN кодоо хэнд ч бүү хэл. Гурван удаа буруу оруулбал eToken түгжигдэнэ."),
        ReceiptLine(S.TEXT, "Қазақша: сертификат берілді. Кыргызча: сертификат берилди."),
        ReceiptLine(S.QR, "Гэрчилгээг шалгах", "https://tamga.example.mn/v/5A3F0011C29B"),
        ReceiptLine(S.RULE),
        ReceiptLine(S.NOTE, "Асуулт байвал: 1800-0000"),
        ReceiptLine(S.NOTE, "Огноо 2025-11-22 14:03  ·  Ажилтан Д. Сүрэн"),
        ReceiptLine(S.NOTE, "Баярлалаа! Рахмет! Ырахмат!"),
        ReceiptLine(S.NOTE, "Баримт № 000421"),
    ]
    return Receipt("mn", tuple(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    receipt = typical_receipt()

    render_only, render, write, raw, status = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, PrinterEmulator(Path(tmp)) as emu:
        printer = EscPosPrinter(PrinterTarget("network", host="127.0.0.1", port=emu.port))
        printer.print_receipt(receipt)            # warm up: imports, fonts, glyph advances
        printed = 1
        for _ in range(args.runs):
            started = time.perf_counter()
            render_receipt(receipt)
            render_only.append(time.perf_counter() - started)

            started = time.perf_counter()
            printer.status()
            status.append(time.perf_counter() - started)

            printer.print_receipt(receipt)
            printed += 1
            emu.wait_for_jobs(printed)
            assert printer.render_seconds is not None and printer.write_seconds is not None
            render.append(printer.render_seconds)
            write.append(printer.write_seconds)

            # The same wire sequence as the adapter (connect, DLE EOT 1 and 4, job), timing only the send.
            job = printer.last_job
            with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for n in (1, 4):
                    sock.sendall(b"\x10\x04" + bytes((n,)))
                    sock.recv(16)
                started = time.perf_counter()
                sock.sendall(job)
                raw.append(time.perf_counter() - started)
            printed += 1
            emu.wait_for_jobs(printed)

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    image = render_receipt(receipt)
    print(f"receipt: {len(receipt.lines)} lines, {image.width}x{image.height} px, "
          f"job {len(printer.last_job) / 1024:.0f} KiB, median of {args.runs}")
    print(f"render_receipt         {ms(render_only):8.2f} ms")
    print(f"render (+PNG, ESC/POS) {ms(render):8.2f} ms")
    print(f"status()               {ms(status):8.2f} ms  (connect, DLE EOT 1 and 4, close)")
    print(f"write (python-escpos)  {ms(write):8.3f} ms")
    print(f"raw socket send        {ms(raw):8.3f} ms")
    print(f"write / raw send       {statistics.median(write) / statistics.median(raw):8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
