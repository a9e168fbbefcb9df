"""Device and central calls off the UI thread; results come back on it through the Kivy clock.

One worker thread runs the calls one after the other, in the order they were submitted: the engine
drives one session from one caller, and PC/SC and PKCS#11 sessions must not be used from two
threads at once.  A screen never calls a flow, a device or the central directly::

    self.app.worker.submit(lambda: flow.read_card(sid), on_done=self.app.show_result,
                           on_error=self.app.show_error)

``on_done(value)`` runs on the UI thread with what the call returned; ``on_error(err)`` with the
:class:`~kiosk.errors.KioskError` it raised.  Any other exception is a bug: it goes to
``on_unexpected`` (the app's top-level handler: a calm screen and a log line).  The UI thread is never
blocked; :attr:`Worker.busy` tells the idle timeout that something is running.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiosk.errors import KioskError

log = logging.getLogger("tamga.screens.worker")

Post = Callable[[Callable[[], None]], None]


def post_on_kivy_clock(callback: Callable[[], None]) -> None:
    """Run ``callback`` on the UI thread at the next frame."""
    from kivy.clock import Clock

    Clock.schedule_once(lambda _dt: callback(), 0)


@dataclass
class _Job:
    call: Callable[[], Any]
    on_done: Callable[[Any], None]
    on_error: Callable[[KioskError], None]
    label: str


class Worker:
    """A single background thread for blocking calls; ``post`` hands results to the UI thread."""

    def __init__(self, on_unexpected: Callable[[BaseException], None], post: Post = post_on_kivy_clock) -> None:
        self._on_unexpected = on_unexpected
        self._post = post
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._running = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="tamga-worker", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A call is queued or running (its result not yet handed to the UI thread)."""
        with self._lock:
            return self._running > 0

    def submit(self, call: Callable[[], Any], on_done: Callable[[Any], None],
               on_error: Callable[[KioskError], None], label: str = "") -> None:
        """Queue ``call``; exactly one of the callbacks later runs on the UI thread."""
        with self._lock:
            self._running += 1
        self._jobs.put(_Job(call, on_done, on_error, label or getattr(call, "__name__", "call")))

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (tests and shutdown; never from the UI thread)."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._run(job)

    def _run(self, job: _Job) -> None:
        started = time.perf_counter()
        try:
            value = job.call()
        except KioskError as err:
            log.info("%s refused: %s", job.label, err.key, extra={"error": err.key, "recoverable": err.recoverable})
            self._hand_over(lambda refused=err: job.on_error(refused))   # type: ignore[misc]
        except Exception as exc:
            self._hand_over(lambda failed=exc: self._on_unexpected(failed))   # type: ignore[misc]
        else:
            self._hand_over(lambda: job.on_done(value))
        finally:
            log.debug("%s took %.0f ms", job.label, (time.perf_counter() - started) * 1000)

    def _hand_over(self, callback: Callable[[], None]) -> None:
        def done() -> None:
            try:
                callback()
            finally:
                with self._lock:
                    self._running -= 1
        self._post(done)
