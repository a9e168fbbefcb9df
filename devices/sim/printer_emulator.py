"""A loopback ESC/POS network printer (port 9100 style) that saves each printed receipt as a PNG.

Each connection's byte stream goes through the ESC/POS interpreter (:mod:`devices.sim.escpos_interpreter`:
modes, feeds, cuts, raster images, graphics, column bit images, text), which answers the real-time
status requests DLE EOT 1..4 and GS r with real status bytes for the settable ``paper`` and
``online`` state here.  Unknown bytes are
skipped and logged; a command cut short by the connection closing is dropped.  With paper out it
discards print data, as a real printer does.  Each cut (or a connection closing after printed
content) writes ``receipt-0001.png``, ``receipt-0002.png`` … into ``out_dir``.

Run ``python -m devices.sim.printer_emulator --port 9100 --out DIR``; it binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Literal

from PIL import Image

from devices.sim.escpos_interpreter import EscPosSession

log = logging.getLogger(__name__)

PaperState = Literal["ok", "near_end", "out"]
PAPER_STATES: tuple[PaperState, ...] = ("ok", "near_end", "out")

# Real-time status bytes (Epson ESC/POS, DLE EOT n).  Bits 1 and 4 are always set, 0 and 7 clear.
STATUS_FIXED = 0x12
STATUS_DRAWER_PIN3 = 0x04     # n=1: drawer kick-out connector pin 3 high
STATUS_OFFLINE = 0x08         # n=1
STATUS_COVER_OPEN = 0x04      # n=2
STATUS_PAPER_STOP = 0x20      # n=2: printing stopped at paper end
STATUS_NEAR_END = 0x0C        # n=4: paper roll near-end sensor
STATUS_PAPER_END = 0x60       # n=4: paper roll end sensor


class PrinterEmulator:
    """A threaded ESC/POS printer on loopback TCP.

    ``paper`` ("ok" | "near_end" | "out") and ``online`` may be changed at any time.  With
    ``answer_status=False`` it ignores status requests, like a printer with status replies turned off.
    Counters: ``data_bytes`` (print data parsed), ``status_requests``, ``garbage_bytes``,
    ``incomplete_commands``, ``discarded_jobs``, ``connections``, ``connections_closed`` (after the
    connection's receipt, if any, was saved).
    """

    def __init__(self, out_dir: Path, host: str = "127.0.0.1", port: int = 0, *,
                 paper: PaperState = "ok", online: bool = True, answer_status: bool = True,
                 width_px: int = 576) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the printer emulator binds loopback only, not {host!r}")
        self.out_dir = Path(out_dir)
        self.host = host
        self._requested_port = port
        self.paper = paper
        self.online = online
        self.answer_status = answer_status
        self.width_px = width_px
        self.jobs: list[Path] = []
        self.data_bytes = 0
        self.status_requests = 0
        self.garbage_bytes = 0
        self.incomplete_commands = 0
        self.discarded_jobs = 0
        self.connections = 0
        self.connections_closed = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []    # connection threads

    # --- state ---------------------------------------------------------------------------------------
    @property
    def paper(self) -> PaperState:
        return self._paper

    @paper.setter
    def paper(self, value: PaperState) -> None:
        if value not in PAPER_STATES:
            raise ValueError(f"paper must be one of {PAPER_STATES}, not {value!r}")
        self._paper = value

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        if self._listener is not None:
            return int(self._listener.getsockname()[1])
        return self._requested_port

    def status_byte(self, n: int) -> int:
        """The answer to DLE EOT ``n`` (1..4) for the current state."""
        paper_out = self.paper == "out"
        if n == 1:
            offline = paper_out or not self.online
            return STATUS_FIXED | STATUS_DRAWER_PIN3 | (STATUS_OFFLINE if offline else 0)
        if n == 2:
            return STATUS_FIXED | (STATUS_PAPER_STOP if paper_out else 0)
        if n == 4:
            if paper_out:
                return STATUS_FIXED | STATUS_NEAR_END | STATUS_PAPER_END
            return STATUS_FIXED | (STATUS_NEAR_END if self.paper == "near_end" else 0)
        return STATUS_FIXED

    def paper_sensor_byte(self) -> int:
        """The answer to GS r 1: bits 0-1 near end, bits 2-3 paper end."""
        return {"ok": 0x00, "near_end": 0x03, "out": 0x0F}[self.paper]

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def save(self, image: Image.Image) -> None:
        with self._lock:
            path = self.out_dir / f"receipt-{len(self.jobs) + 1:04d}.png"
            image.save(path)
            self.jobs.append(path)
            self._changed.notify_all()
        log.info("printed %s (%dx%d)", path.name, image.width, image.height)

    def wait_for_jobs(self, count: int, timeout: float = 5.0) -> list[Path]:
        """Block until ``count`` receipts were saved; return the job paths.  Raises TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.jobs) >= count, timeout):
                raise TimeoutError(f"{len(self.jobs)} of {count} receipts printed after {timeout} s")
            return list(self.jobs)

    # --- server --------------------------------------------------------------------------------------
    def start(self) -> PrinterEmulator:
        if self._listener is not None:
            raise RuntimeError("emulator already started")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        family = socket.AF_INET6 if self.host == "::1" else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self._requested_port))
            listener.listen(4)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.05)
        self._stop.clear()
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(listener,),
                                               name="printer-emulator-accept", daemon=True)
        self._accept_thread.start()
        log.info("ESC/POS printer emulator on %s:%d, receipts in %s", self.host, self.port, self.out_dir)
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections (saving their content) and join every thread."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> PrinterEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.count("connections")
            thread = threading.Thread(target=self._serve, args=(conn,), name="printer-emulator-conn", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        session = EscPosSession(self)
        conn.settimeout(0.05)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError as err:
                    log.info("connection error: %s", err)
                    break
                if not data:
                    break
                try:
                    replies = session.feed(data)
                except Exception:   # the emulator must survive anything a client sends
                    log.exception("parser error; dropping %d buffered bytes", len(session.buf))
                    session.buf.clear()
                    continue
                if replies and self.answer_status:
                    try:
                        conn.sendall(replies)
                    except OSError:
                        break
            session.finish()
        except Exception:
            log.exception("printer emulator connection failed")
        finally:
            conn.close()
            self.count("connections_closed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devices.sim.printer_emulator",
                                     description="ESC/POS network printer emulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="TCP port (0 = any free port)")
    parser.add_argument("--out", type=Path, required=True, help="directory for receipt-NNNN.png")
    parser.add_argument("--paper", choices=PAPER_STATES, default="ok", help="paper sensor state")
    parser.add_argument("--offline", action="store_true", help="report the printer offline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    done = threading.Event()

    def on_signal(_signo: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with PrinterEmulator(args.out, port=args.port, paper=args.paper, online=not args.offline) as emu:
        print(f"listening on 127.0.0.1:{emu.port}, receipts in {args.out}", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
