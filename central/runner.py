"""Run the central service in a subprocess for tests and the demo.

::

    with CentralServer(tmp_path / "central") as central:
        client = central.client()          # HTTPS as the enrolled demo kiosk
        central.manage("mark-paid", "147314048627")

The server binds 127.0.0.1 on ports it picks itself (``--port 0 --public-port 0``: HTTPS for the
kiosks, plain HTTP for the public pages) and reports them in its ready line, so two runners never
race for a port; a restart comes back on the same public port, which the certificates' CRL and OCSP
URLs name.  With the demo data the runner enrolls the demo kiosk as a kiosk would
(:func:`sync.kiosk_identity.enroll`, key made here) into ``DATA_DIR/demo-kiosk/``.  Its output goes
to ``DATA_DIR/central.log``.  It watches its stdin: if this process dies without calling
:meth:`CentralServer.stop`, the server exits on its own instead of staying behind.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.central_client import CentralClient
    from sync.kiosk_identity import KioskIdentity

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PATTERN = re.compile(r"^central ready on (https://\S+) public (http://\S+)$")
DEMO_KIOSK_ID = "demo-kiosk"
DEMO_OFFICE = "main"
LOG_FILE = "central.log"
DEMO_PUBLIC_HOST = "pki.tamga.mn:{port}"
"""The host written into the CRL/OCSP/CA-issuer URLs of a runner's CA (``serve --public-host``).

A loopback address there is an ETSI lint ERROR (``etsi.internal_domain_name``), so the demo and the
tests name a host under a public suffix and reach it on 127.0.0.1 with an explicit ``Host`` header
(``curl --resolve``).  ``$TAMGA_CENTRAL_PUBLIC_HOST`` overrides it.
"""


class CentralStartError(RuntimeError):
    """The server did not print its ready line in time or exited; the message has its log tail."""


class CentralCommandError(RuntimeError):
    """A ``python -m central …`` command failed; the message has its output."""


def _environment(database_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CentralServer:
    """``python -m central serve`` on a free loopback port, as a context manager."""

    def __init__(self, data_dir: Path, port: int | None = None, demo_data: bool = True,
                 startup_timeout_s: float = 60.0, public_host: str | None = None,
                 database_url: str | None = None, crl_refresh_s: float | None = None) -> None:
        """``database_url``: a PostgreSQL URL for this server and its commands (else its SQLite file);
        ``crl_refresh_s``: ``serve --crl-refresh-s`` (else its default)."""
        self.database_url = database_url
        self.crl_refresh_s = crl_refresh_s
        self.public_host = public_host or os.environ.get("TAMGA_CENTRAL_PUBLIC_HOST") or DEMO_PUBLIC_HOST
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.public_port: int | None = None
        self.demo_data = demo_data
        self.startup_timeout_s = startup_timeout_s
        self.url = ""
        """The kiosks' HTTPS base URL (API and public pages)."""
        self.public_url = ""
        """The plain HTTP base URL of the public pages (CRLs, OCSP, CA certificates, verification)."""
        self.startup_seconds = 0.0
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._tail: deque[str] = deque(maxlen=200)
        self._log_changed = threading.Condition()

    # --- paths and credentials ----------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def ca_chain_path(self) -> Path:
        """Issuing CA then root, PEM."""
        return self.data_dir / "ca-chain.pem"

    @property
    def tls_ca_path(self) -> Path:
        """The kiosk identity CA (``DIR/tls-ca.pem``): the central's HTTPS certificate chains to it."""
        return self.data_dir / "tls-ca.pem"

    @property
    def identity(self) -> KioskIdentity:
        """The demo kiosk's identity (enrolled at start with the demo data)."""
        from sync.kiosk_identity import KioskIdentity

        return KioskIdentity.in_directory(self.data_dir / DEMO_KIOSK_ID, self.tls_ca_path)

    @property
    def tls(self) -> dict[str, Any]:
        """``requests`` options to call the API as the demo kiosk: ``requests.get(url, **central.tls)``."""
        return self.identity.requests_options()

    @property
    def verify(self) -> str:
        """``requests``' ``verify=`` for a caller without a client certificate."""
        return str(self.tls_ca_path)

    def client(self, timeout_s: float = 10.0, identity: KioskIdentity | None = None) -> CentralClient:
        """A :class:`CentralClient` of the demo kiosk (or of ``identity``) on this server."""
        from sync.central_client import CentralClient

        return CentralClient(self.url, identity or self.identity, timeout_s=timeout_s)

    def enroll_kiosk(self, kiosk_id: str, office: str = DEMO_OFFICE, directory: Path | None = None) -> KioskIdentity:
        """``add-kiosk`` then enroll it as the kiosk would; its identity files go to ``directory``."""
        from sync.kiosk_identity import KioskIdentity, enroll

        code = self.manage("add-kiosk", kiosk_id, "--office", office).strip()
        identity = KioskIdentity.in_directory(directory or self.data_dir / kiosk_id, self.tls_ca_path)
        enroll(self.url, code, office, identity, kiosk_id=kiosk_id)
        return identity

    @property
    def public_https_url(self) -> str:
        """The kiosks' HTTPS listener under the public host name (``https://pki.tamga.mn:PORT``).

        The receipt's QR code opens the verification page there; its TLS certificate names the public
        host, so a client on this machine resolves that name to 127.0.0.1 (``curl --resolve``).
        """
        host = self.public_host.rsplit("]", 1)[0] + "]" if self.public_host.startswith("[") \
            else self.public_host.rsplit(":", 1)[0]
        return f"https://{host}:{self.url.rsplit(':', 1)[1]}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # --- life cycle ---------------------------------------------------------------------------------
    def start(self) -> CentralServer:
        if self._process is not None:
            raise RuntimeError("already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Concrete ports, never 0: cheroot sets SO_REUSEADDR only on a fixed port, and without it a
        # restart on the same address fails while a kiosk's connection to the old process lingers in
        # FIN-WAIT-2 (the offline demo and the central-down scenarios restart it so).
        self.port = self.port or _free_port()
        self.public_port = self.public_port or _free_port()
        command = [sys.executable, "-m", "central", "serve", "--data-dir", str(self.data_dir),
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--public-port", str(self.public_port), "--exit-on-stdin-eof",
                   "--public-host", self.public_host]
        if self.demo_data:
            command.append("--demo-data")
        if self.crl_refresh_s is not None:
            command += ["--crl-refresh-s", str(self.crl_refresh_s)]
        self._ready.clear()
        started = time.perf_counter()
        self._process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=_environment(self.database_url), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read_output, name="central-log", daemon=True)
        self._reader.start()
        deadline = started + self.startup_timeout_s
        while not self._ready.wait(timeout=0.05):
            if self._process.poll() is not None or time.perf_counter() > deadline:
                exited = self._process.poll()
                self.stop()
                what = f"exited with {exited}" if exited is not None else \
                    f"not ready after {self.startup_timeout_s:.0f} s"
                raise CentralStartError(f"central server {what}; log:\n" + "\n".join(self._tail))
        self.public_port = int(self.public_url.rsplit(":", 1)[1])
        self._enroll_demo_kiosk()
        self.startup_seconds = time.perf_counter() - started
        return self

    def _enroll_demo_kiosk(self) -> None:
        """Enroll the demo kiosk with the code ``serve`` left for it, if it did (first start, or expired)."""
        from sync.kiosk_identity import enroll

        code_path = self.data_dir / "demo-enrollment-code"
        if not code_path.exists():
            return
        enroll(self.url, code_path.read_text(encoding="ascii").strip(), DEMO_OFFICE, self.identity,
               kiosk_id=DEMO_KIOSK_ID)
        code_path.unlink()

    def _read_output(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        with open(self.log_path, "a", encoding="utf-8") as log:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                log.flush()
                with self._log_changed:
                    self._tail.append(line)
                    self._log_changed.notify_all()
                match = READY_PATTERN.match(line)
                if match and not self._ready.is_set():
                    self.url, self.public_url = match.group(1), match.group(2)
                    self._ready.set()

    def wait_for_log(self, text: str, timeout_s: float = 5.0) -> bool:
        """Whether ``text`` appears in the server's output within ``timeout_s``."""
        deadline = time.perf_counter() + timeout_s
        with self._log_changed:
            while not any(text in line for line in self._tail):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return False
                self._log_changed.wait(remaining)
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout_s``) and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.returncode = process.returncode
        if process.stdin is not None:
            process.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=timeout_s)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> CentralServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- clerk commands -----------------------------------------------------------------------------
    def manage(self, *args: str, timeout_s: float = 60.0) -> str:
        """Run ``python -m central ARGS --data-dir DIR`` against this server's data; return its stdout."""
        command = [sys.executable, "-m", "central", *args, "--data-dir", str(self.data_dir)]
        result = subprocess.run(command, cwd=REPO_ROOT, env=_environment(self.database_url), capture_output=True,
                                text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise CentralCommandError(
                f"{' '.join(args)} exited with {result.returncode}:\n{result.stdout}{result.stderr}")
        return result.stdout
