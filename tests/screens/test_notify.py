"""systemd notify without a library: READY=1 and WATCHDOG=1 as datagrams to a real AF_UNIX socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from kiosk.screens.notify import notify, socket_address, watchdog_interval_s


def test_ready_and_watchdog_reach_a_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        env = {"NOTIFY_SOCKET": str(path)}
        assert notify("READY=1", env) and notify("WATCHDOG=1", env)
        assert server.recv(64) == b"READY=1"
        assert server.recv(64) == b"WATCHDOG=1"


def test_an_abstract_socket_name_starts_with_an_at_sign() -> None:
    name = f"tamga-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert server.recv(64) == b"READY=1"
    assert socket_address({"NOTIFY_SOCKET": "@x"}) == "\0x"


def test_outside_systemd_nothing_is_sent_and_a_gone_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})


def test_the_watchdog_is_fed_at_half_its_interval_when_it_is_meant_for_this_process() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
