"""Printing a flow's receipt exactly once, and marked as a reprint whenever it may be a second copy.

The receipt is kept (durably) before the printer is asked, and marked printed after.  A kept
receipt that is not marked printed means a print was attempted and its outcome is unknown (paper
out, or a power cut between the paper and the mark): any later print of it says REPRINT, so no
second receipt ever looks like an original.  Rendering can start ahead, on a worker thread, while
the flow still talks to the token (no device I/O in there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from kiosk.errors import DeviceNotReady, KioskError, PaperOut, PrinterError
from kiosk.ports import PrinterPort, Receipt, SessionStore

log = logging.getLogger("tamga.printing")

ReceiptFactory = Callable[[bool], Receipt]     # reprint -> receipt


class ReceiptDesk:
    def __init__(self, store: SessionStore, printer: PrinterPort) -> None:
        self.store = store
        self.printer = printer
        self._renderer: ThreadPoolExecutor | None = None
        self._prepared: dict[str, Future[object]] = {}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.shutdown(wait=True, cancel_futures=True)
            self._renderer = None

    def prepare(self, session_id: str, receipt: Receipt) -> None:
        """Start rendering ``receipt`` now; :meth:`print` uses it if it is still the one to print."""
        if self._renderer is None:
            self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tamga-receipt")
        self._prepared[session_id] = self._renderer.submit(self.printer.prepare, receipt)

    def drop(self, session_id: str) -> None:
        self._prepared.pop(session_id, None)

    def _take_prepared(self, session_id: str) -> object | None:
        future = self._prepared.pop(session_id, None)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:   # any failure: printing renders again and reports the error where it belongs
            log.warning("receipt pre-render failed; rendering again to print", exc_info=True)
            return None

    def print(self, session_id: str, make: ReceiptFactory) -> KioskError | None:
        """Print the session's receipt unless it was printed; return the printer fault, if any."""
        status = self.store.receipt_status(session_id)
        if status == "printed":
            self.drop(session_id)
            return None
        reprint = status == "pending"         # attempted before: it may be on paper already
        receipt = make(reprint)
        prepared = None if reprint else self._take_prepared(session_id)
        self.store.keep_receipt(session_id, receipt, printed=False)
        try:
            self.printer.print_receipt(receipt, prepared)
        except (PaperOut, PrinterError, DeviceNotReady) as err:
            return err
        self.store.keep_receipt(session_id, receipt, printed=True)
        return None

    def reprint(self, session_id: str, make: ReceiptFactory) -> bytes:
        """Print a kept receipt again, marked as a reprint; returns the rendered PNG."""
        receipt = make(True)
        png = self.printer.print_receipt(receipt)
        self.store.keep_receipt(session_id, receipt, printed=True)
        return png

