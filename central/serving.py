"""cheroot glue: the kiosks' HTTPS listener (mutual TLS) and the relying parties' plain HTTP listener.

The HTTPS listener asks every client for a certificate (``CERT_OPTIONAL``) and lets the TLS layer
verify it against the kiosk identity CA only (a certificate of any other CA ends the handshake);
cheroot's builtin adapter hands the verified leaf to the application as ``SSL_CLIENT_CERT`` (PEM),
and :mod:`central.orders.auth` checks it against the database on every API request.  A client
without a certificate still reaches the public pages and the enrollment endpoint.

The HTTP listener serves the same application for what certificates name by ``http://`` URL (CRLs,
OCSP, CA issuers, the verification page behind the receipt's QR code); an API request there has no
client certificate and is refused by the application like any other.

cheroot refuses some requests before the application sees them (malformed HTTP, an oversize header
or body) with a text/plain page; every answer of the API is JSON (``central/openapi.yaml``), so the
request class renders those refusals as ``{"error": code, "message": text}`` too.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

MAX_REQUEST_BODY = 1 << 20
"""cheroot's body limit; Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is lower and refuses first with 413 JSON."""
MAX_REQUEST_HEADER = 64 * 1024
SOCKET_TIMEOUT_S = 30
HANDSHAKE_TIMEOUT_S = 3
"""A kiosk's TLS handshake takes milliseconds (two round trips); a silent client is dropped after this."""
LINGER_S = 2.0
"""How long a refused body is read and dropped before the connection closes (nginx's lingering close).

Closing with unread bytes in the receive buffer makes the kernel send a reset, and a client still
sending its body then gets "connection reset" instead of the 413 written for it."""

_CODES = {400: "bad_request", 404: "not_found", 408: "request_timeout", 411: "length_required",
          413: "request_too_large", 414: "request_too_large", 431: "request_too_large",
          501: "not_implemented", 505: "http_version_not_supported"}


class JsonRefusalRequest(cheroot_server.HTTPRequest):  # type: ignore[misc]
    """cheroot's own refusals with a JSON body (its ``simple_response``, but application/json).

    A response that closes the connection on a body not yet read (a 413 from cheroot or Django) reads
    and drops the rest of it first, for at most :data:`LINGER_S`, so the client reads the refusal.
    """

    def respond(self) -> None:
        super().respond()
        if self.close_connection:
            self._linger(getattr(self.rfile, "remaining", 0) or 0)

    def _unread_declared_body(self) -> int:
        try:
            return max(int(self.inheaders.get(b"Content-Length", 0)), 0)
        except ValueError:
            return 0

    def _linger(self, unread: int) -> None:
        if unread <= 0:
            return
        deadline = time.monotonic() + LINGER_S
        try:
            self.conn.wfile.flush()
            while unread > 0 and (left := deadline - time.monotonic()) > 0:
                self.conn.socket.settimeout(left)
                chunk = self.conn.rfile.read1(min(unread, 1 << 16))
                if not chunk:
                    return
                unread -= len(chunk)
        except OSError:  # a timeout too
            return

    def simple_response(self, status: Any, msg: Any = "") -> None:
        status = str(status)
        text = msg.decode("iso-8859-1") if isinstance(msg, bytes) else str(msg)
        number = int(status[:3])
        code = _CODES.get(number, "bad_request" if number < 500 else "internal_error")
        body = json.dumps({"error": code, "message": text or status}).encode("utf-8")
        if number in (413, 414):
            self.close_connection = True
        head = (f"{self.server.protocol} {status}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/json\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        try:
            self.conn.wfile.write(head.encode("iso-8859-1") + b"\r\n" + body)
        except OSError as err:
            if err.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise
            return
        if number == 413 and not isinstance(self.rfile, cheroot_server.KnownLengthRFile):
            self._linger(self._unread_declared_body())


class JsonRefusalConnection(cheroot_server.HTTPConnection):  # type: ignore[misc]
    RequestHandlerClass = JsonRefusalRequest


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the HTTPS listener: its certificate and key, and the CA its clients must chain to."""

    certificate: Path
    key: Path
    client_ca: Path


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or later; a client certificate is asked for and, when sent, must chain to ``client_ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.certificate), str(files.key))
    context.load_verify_locations(cafile=str(files.client_ca))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _server(application: Any, host: str, port: int, threads: int) -> wsgi.Server:
    server = wsgi.Server((host, port), application, numthreads=threads, server_name="tamga-central",
                         timeout=SOCKET_TIMEOUT_S)
    server.max_request_body_size = MAX_REQUEST_BODY
    server.max_request_header_size = MAX_REQUEST_HEADER
    server.ConnectionClass = JsonRefusalConnection
    return server


class HandshakeTimeoutAdapter(BuiltinSSLAdapter):  # type: ignore[misc]
    """cheroot's builtin adapter with a short TLS handshake timeout.

    cheroot wraps each accepted socket in its accept loop, so a client that connects and sends nothing
    holds every other client up for as long as the handshake may take (measured: the socket timeout,
    30 s); here that is :data:`HANDSHAKE_TIMEOUT_S` (cheroot sets the normal timeout again after it).
    """

    def wrap(self, sock: Any) -> Any:
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        return super().wrap(sock)


def create_https_server(application: Any, host: str, port: int, threads: int, files: TlsFiles) -> wsgi.Server:
    """The kiosks' listener; call ``prepare()`` to bind (``bind_addr`` then has the port)."""
    server = _server(application, host, port, threads)
    adapter = HandshakeTimeoutAdapter(str(files.certificate), str(files.key))
    adapter.context = tls_context(files)
    server.ssl_adapter = adapter
    return server


def create_http_server(application: Any, host: str, port: int, threads: int) -> wsgi.Server:
    """The relying parties' listener (CRLs, OCSP, CA certificates, verification pages)."""
    return _server(application, host, port, threads)
