"""A private pcscd with two vpcd readers, for tests, benchmarks and the demo.

pcscd's socket path (/run/pcscd/pcscd.comm) is compiled in, so the private instance runs in its
own mount namespace with ``workdir/run`` bind-mounted over /run; clients reach it through
``PCSCLITE_CSOCK_NAME`` (see :attr:`PrivatePcscd.env`), which libpcsclite reads ONCE per process:
set it before the first pyscard call, or run the client in a subprocess with ``env``.

    with PrivatePcscd(tmp_path) as pcscd:
        os.environ.update(pcscd.env)
        card = VirtualPivCard(personalisation, pcscd.vpcd_port).insert()

vpcd listens on all interfaces on ``vpcd_port`` (reader "… 00 00") and ``vpcd_port + 1``
(reader "… 00 01").  pcscd's output goes to ``workdir/pcscd.log``; APDU logging stays off (PINs).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
FRIENDLY_NAME = "Virtual PCD"
_PORT_RANGE = (20000, 60000)
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"
_START_TIMEOUT = 5.0

_READERS_PROBE = """
import sys, time
from smartcard.scard import (SCARD_S_SUCCESS, SCARD_SCOPE_USER, SCardEstablishContext,
                             SCardListReaders, SCardReleaseContext)
deadline = time.monotonic() + float(sys.argv[1])
wanted = int(sys.argv[2])
while True:
    rv, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
    names = []
    if rv == SCARD_S_SUCCESS:
        rv, names = SCardListReaders(ctx, [])
        SCardReleaseContext(ctx)
    if rv == SCARD_S_SUCCESS and len(names) >= wanted:
        print("\\n".join(names))
        sys.exit(0)
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.02)
"""


class PcscdError(RuntimeError):
    """The private pcscd did not come up (log in ``workdir/pcscd.log``)."""


def _tcp_sockets() -> Iterator[list[str]]:
    """The fields of every row of /proc/net/tcp{,6} (local address is field 1, state 3, inode 9)."""
    for table in _TCP_TABLES:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and ":" in fields[1]:
                yield fields


def _local_port(fields: list[str]) -> int:
    return int(fields[1].rsplit(":", 1)[1], 16)


def _ports_in_use() -> set[int]:
    """Local TCP ports with any socket (any state), from /proc/net/tcp{,6}; never connects."""
    return {_local_port(fields) for fields in _tcp_sockets()}


def _listening_inodes(port: int) -> set[str]:
    return {f[9] for f in _tcp_sockets() if f[3] == _LISTEN and _local_port(f) == port}


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def free_port_pair(exclude: set[int] | None = None) -> int:
    """A port P with P and P+1 unused right now (races are caught when pcscd starts)."""
    used = _ports_in_use() | (exclude or set())
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(_PORT_RANGE[0], _PORT_RANGE[1], 2)
        if port not in used and port + 1 not in used:
            return port
    raise PcscdError("no free port pair for vpcd")


class PrivatePcscd:
    """pcscd in its own mount namespace with two vpcd readers on ``vpcd_port`` and ``vpcd_port + 1``."""

    def __init__(self, workdir: Path, port: int | None = None, *, debug: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self._requested_port = port
        self.debug = debug
        self.vpcd_port = port or 0
        self.reader_names: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "pcscd" / "pcscd.comm"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pcscd.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this pcscd (pyscard, OpenSC, pcsc_scan)."""
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> PrivatePcscd:
        """Start pcscd and wait until both readers are listed.  Raises PcscdError."""
        if self._process is not None:
            return self
        if not VPCD_DRIVER.exists():
            raise PcscdError(f"vpcd driver not found: {VPCD_DRIVER} (install vsmartcard-vpcd)")
        started = time.monotonic()
        tried: set[int] = set()
        last_error = ""
        for _ in range(1 if self._requested_port else 5):
            port = self._requested_port or free_port_pair(tried)
            tried.update((port, port + 1))
            try:
                self._launch(port)
                self._wait_ready(port)
            except PcscdError as err:
                last_error = str(err)
                self.stop()
                continue
            self.start_seconds = time.monotonic() - started
            return self
        raise PcscdError(last_error)

    def _launch(self, port: int) -> None:
        self.vpcd_port = port
        self.run_dir.mkdir(parents=True, exist_ok=True)
        conf_dir = self.workdir / "reader.conf.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
            f"DEVICENAME   /dev/null:{port}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {port}\n"
        )
        self.socket_path.unlink(missing_ok=True)
        if os.geteuid() == 0:
            namespace = ["unshare", "--mount", "--propagation", "private"]
        else:
            namespace = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
        pcscd = ["pcscd", "--foreground", "-c", str(conf_dir)] + (["--debug"] if self.debug else [])
        script = 'mount --bind "$1" /run && shift && exec "$@"'
        command = [*namespace, "--", "/bin/sh", "-c", script, "sh", str(self.run_dir), *pcscd]
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        atexit.register(self.stop)

    def _wait_ready(self, port: int) -> None:
        process = self._process
        if process is None:
            raise PcscdError("pcscd was not launched")
        deadline = time.monotonic() + _START_TIMEOUT
        delay = 0.005
        while True:
            if process.poll() is not None:
                raise PcscdError(f"pcscd exited with {process.returncode}; see {self.log_path}")
            if "Address already in use" in self._log_tail():
                raise PcscdError(f"vpcd port {port} already in use")
            if self.socket_path.exists() and self._owns_ports(process.pid, port):
                break
            if time.monotonic() > deadline:
                raise PcscdError(f"pcscd not ready after {_START_TIMEOUT} s; see {self.log_path}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        probe = subprocess.run(
            [sys.executable, "-c", _READERS_PROBE, str(max(0.1, deadline - time.monotonic())), "2"],
            env={**os.environ, **self.env}, capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            raise PcscdError(f"readers did not appear; see {self.log_path}")
        self.reader_names = [n for n in probe.stdout.splitlines() if n.strip()]

    @staticmethod
    def _owns_ports(pid: int, port: int) -> bool:
        """Both vpcd ports are LISTENing on sockets held by our pcscd."""
        mine = _socket_inodes(pid)
        return all(_listening_inodes(p) & mine for p in (port, port + 1))

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                size = log_file.tell()
                log_file.seek(max(0, size - 8192))
                return log_file.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate pcscd, then kill whatever is left of its process group."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=3)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=3)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> PrivatePcscd:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

