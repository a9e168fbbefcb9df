"""A loopback TCP proxy that breaks connections the way office networks do, on a seeded schedule.

It sits between a kiosk and the central and relays bytes (so TLS passes through it untouched).
Each accepted connection gets a :class:`Fault` from the ``plan`` callable:

- ``drop_request``: the kiosk's bytes are swallowed and the connection closed before anything reaches
  the central (the request was never applied);
- ``reset_after``: the central's answer is cut after that many bytes with a TCP reset (the request
  was applied, the kiosk never learns it: the case that makes "exactly once" hard);
- ``delay_s``: each chunk of the answer waits that long (a slow link; with a short client timeout
  it becomes a timeout after the central applied the request).

``counts`` says how many connections got each kind of fault, so a test can assert that the faults
it relies on really happened.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Fault:
    drop_request: bool = False
    reset_after: int | None = None
    delay_s: float = 0.0

    @property
    def kind(self) -> str:
        if self.drop_request:
            return "drop_request"
        if self.reset_after is not None:
            return "reset_mid_response"
        return "delay" if self.delay_s else "pass"


PASS = Fault()


def random_plan(seed: int, drop: float = 0.15, delay: float = 0.1, delay_s: float = 0.05,
                lifetime: int = 30_000, first: tuple[Fault, ...] = ()) -> Callable[[int], Fault]:
    """Faults drawn from a seeded generator: the same seed breaks the same connections.

    A client keeps its connection alive across requests, so a connection is not dropped once and then
    trusted: each one that is not dropped outright is reset after a random number of answer bytes
    (up to ``lifetime``: the TLS handshake, about 4 KB, and a few answers), somewhere inside an answer or
    the handshake, and the client's next connection draws again.  ``first``: the faults of the first
    connections, before the draws (so a short run is sure to meet each kind).
    """
    rng = random.Random(seed)
    lock = threading.Lock()

    def plan(number: int) -> Fault:
        if number < len(first):
            return first[number]
        with lock:
            if rng.random() < drop:
                return Fault(drop_request=True)
            return Fault(reset_after=rng.randrange(1, lifetime),
                         delay_s=delay_s if rng.random() < delay else 0.0)

    return plan


def slow_plan(delay_s: float) -> Callable[[int], Fault]:
    """Every answer chunk waits ``delay_s``: a slow link, nothing lost."""
    return lambda _: Fault(delay_s=delay_s)


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN (SO_LINGER on, zero timeout)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """``FaultProxy(upstream_port, plan)`` listening on 127.0.0.1:``port``; a context manager."""

    def __init__(self, upstream_port: int, plan: Callable[[int], Fault] = lambda _: PASS,
                 scheme: str = "https") -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.scheme = scheme
        self.plan = plan
        self.counts: Counter[str] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._accepted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The proxy's URL; TLS passes through, so the central's certificate (for 127.0.0.1) still matches."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)     # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                number = self._accepted
                self._accepted += 1
                fault = self.plan(number)
                self.counts[fault.kind] += 1
            threading.Thread(target=self._serve, args=(client, fault), daemon=True).start()

    def _serve(self, client: socket.socket, fault: Fault) -> None:
        if fault.drop_request:
            try:
                client.settimeout(2.0)
                client.recv(65536)
            except OSError:
                pass
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            _reset(client)
            return
        upward = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
        upward.start()
        sent = 0
        try:
            while chunk := upstream.recv(65536):
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                if fault.reset_after is not None and sent + len(chunk) >= fault.reset_after:
                    client.sendall(chunk[:max(0, fault.reset_after - sent)])
                    # The other pump blocks in client.recv, keeping the socket open: wake it first, or
                    # close() sends nothing and the client waits for its timeout instead of a reset.
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_RD)
                    upward.join(timeout=2)
                    _reset(client)
                    upstream.close()
                    return
                client.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass
