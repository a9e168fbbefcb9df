"""The worker runs calls off the calling thread and hands every outcome back through ``post`` (the Kivy clock
in the app): a value to ``on_done``, a KioskError to ``on_error``, anything else to the top-level handler."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from kiosk.errors import InvalidPin, KioskError
from kiosk.screens.worker import Worker


class Ui:
    """Stands for the UI thread: what the worker posts waits here until the test runs it."""

    def __init__(self) -> None:
        self.posted: queue.Queue[Callable[[], None]] = queue.Queue()
        self.seen: list[tuple[str, object]] = []
        self.unexpected: list[BaseException] = []

    def run_next(self) -> None:
        self.posted.get(timeout=5)()


def _worker(ui: Ui) -> Worker:
    return Worker(ui.unexpected.append, post=ui.posted.put)


def test_a_value_comes_back_on_the_ui_thread_and_the_call_ran_on_another() -> None:
    ui = Ui()
    worker = _worker(ui)
    caller = threading.get_ident()
    worker.submit(threading.get_ident, lambda v: ui.seen.append(("done", v)), lambda e: ui.seen.append(("error", e)))
    assert worker.busy
    ui.run_next()
    assert ui.seen[0][0] == "done" and ui.seen[0][1] != caller
    assert not worker.busy
    worker.stop()


def test_a_kiosk_error_goes_to_on_error_with_its_data() -> None:
    ui = Ui()
    worker = _worker(ui)

    def wrong_pin() -> None:
        raise InvalidPin(attempts_remaining=2)

    errors: list[KioskError] = []
    worker.submit(wrong_pin, lambda v: None, errors.append)
    ui.run_next()
    assert errors[0].key == "error.invalid_pin" and errors[0].data == {"attempts_remaining": 2}
    assert not ui.unexpected
    worker.stop()


def test_an_unexpected_exception_goes_to_the_top_level_handler_and_the_worker_goes_on() -> None:
    ui = Ui()
    worker = _worker(ui)
    worker.submit(lambda: 1 / 0, lambda v: None, lambda e: None)
    worker.submit(lambda: "next", lambda v: ui.seen.append(("done", v)), lambda e: None)
    ui.run_next()
    ui.run_next()
    assert isinstance(ui.unexpected[0], ZeroDivisionError)
    assert ui.seen == [("done", "next")]
    worker.stop()


def test_calls_run_one_after_the_other_in_order() -> None:
    ui = Ui()
    worker = _worker(ui)
    order: list[int] = []
    gate = threading.Event()
    def first() -> None:
        gate.wait(5)
        order.append(1)

    worker.submit(first, lambda v: None, lambda e: None)
    worker.submit(lambda: order.append(2), lambda v: None, lambda e: None)
    gate.set()
    ui.run_next()
    ui.run_next()
    assert order == [1, 2]
    assert worker.wait_idle(1)
    worker.stop()
