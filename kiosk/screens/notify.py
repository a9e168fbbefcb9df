"""systemd's notify protocol without a library: ``READY=1`` after the first frame, ``WATCHDOG=1`` from the UI loop.

The datagrams go to ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``).
The watchdog is fed by a Kivy Clock callback, so it is the UI loop itself that proves it is alive:
a frozen UI stops feeding it and systemd restarts the kiosk after ``WatchdogSec``.  Outside systemd
(no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("tamga.screens.notify")


def socket_address(env: Mapping[str, str]) -> str | None:
    """The address of ``$NOTIFY_SOCKET`` as ``socket.sendto`` takes it, or None when unset."""
    name = env.get("NOTIFY_SOCKET", "")
    if not name:
        return None
    return "\0" + name[1:] if name.startswith("@") else name


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one state line (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``); False outside systemd."""
    address = socket_address(os.environ if env is None else env)
    if address is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as err:
            log.warning("cannot notify systemd: %s", err.strerror)
            return False
    return True


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (when it is meant for this process), or None."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def start_feeding(env: Mapping[str, str] | None = None) -> float | None:
    """Send READY=1 now and schedule WATCHDOG=1 on the Kivy clock; returns the interval (or None)."""
    from kivy.clock import Clock

    notify("READY=1", env)
    interval = watchdog_interval_s(env)
    if interval is not None:
        Clock.schedule_interval(lambda _dt: notify("WATCHDOG=1", env), interval)
    return interval
