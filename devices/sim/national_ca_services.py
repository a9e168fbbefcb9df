"""The test national ID CA's revocation services on loopback: its CRL over HTTP and an OCSP responder.

    services = NationalIdServices(ca).start()      # sets ca.services_url: cards issued now carry
    card = ca.issue_card(holder)                   # its CRL DP and AIA OCSP URLs
    ca.revoke(card.certificate)
    services.ocsp_mode = OcspMode.DOWN             # the responder stops answering (the CRL still does)

OCSP responses are signed by the CA's delegated responder (id-kp-OCSPSigning, ocsp-nocheck) and
echo the request's nonce.  The modes make the failures a real responder or network can show on
demand: no answer, ``unknown``, a forged signature, a stale or future ``thisUpdate``, a wrong nonce.
"""

from __future__ import annotations

import datetime as dt
import threading
from enum import Enum, unique
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from devices.sim.national_ca import CRL_PATH, OCSP_PATH, NationalIdCa

_MAX_REQUEST = 64 * 1024


@unique
class OcspMode(Enum):
    GOOD = "good"                  # answers truthfully (good, or revoked when the CA revoked the card)
    DOWN = "down"                  # closes the connection without an answer
    UNKNOWN = "unknown"            # certStatus unknown
    FORGED = "forged"              # signed by a responder of the same name whose key the CA never certified
    BAD_SIGNATURE = "bad_signature"  # the responder's answer with its signature altered
    STALE = "stale"                # thisUpdate two days old, nextUpdate passed
    FUTURE = "future"              # thisUpdate an hour ahead
    WRONG_NONCE = "wrong_nonce"    # another nonce than the request's
    TRY_LATER = "try_later"        # responseStatus tryLater (unsigned)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class NationalIdServices:
    """A tiny HTTP server: ``GET /crl/issuing.crl`` (DER CRL) and ``POST /ocsp`` (RFC 6960)."""

    def __init__(self, ca: NationalIdCa, host: str = "127.0.0.1", port: int = 0) -> None:
        self.ca = ca
        self.ocsp_mode = OcspMode.GOOD
        self.crl_available = True
        self.crl_age = dt.timedelta(0)              # how old thisUpdate of the CRL served is
        self.crl_lifetime = dt.timedelta(days=1)    # nextUpdate - thisUpdate
        self.crl_replay: bytes | None = None        # served instead of a new CRL: an attacker replaying an old one
        self.ocsp_requests = 0
        self.crl_requests = 0
        self._responder, self._responder_key = ca.ocsp_responder()
        self._forger_key = ec.generate_private_key(ec.SECP256R1())
        self._forger = self._forged_responder()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def crl_url(self) -> str:
        return self.url + CRL_PATH

    @property
    def ocsp_url(self) -> str:
        return self.url + OCSP_PATH

    @property
    def responder_certificate(self) -> x509.Certificate:
        return self._responder

    def start(self) -> NationalIdServices:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="national-id-services",
                                            daemon=True)
            self._thread.start()
        self.ca.services_url = self.url
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> NationalIdServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answers -------------------------------------------------------------------------------------
    def current_crl(self) -> bytes:
        this_update = _now() - self.crl_age
        crl = self.ca.crl(this_update, this_update + self.crl_lifetime)
        return crl.public_bytes(serialization.Encoding.DER)

    def ocsp_answer(self, body: bytes) -> bytes:
        """The DER OCSP response to a DER request (malformedRequest when it does not parse)."""
        try:
            request = ocsp.load_der_ocsp_request(body)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        mode = self.ocsp_mode
        if mode is OcspMode.TRY_LATER:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER)
        now = _now()
        this_update, next_update = now, now + dt.timedelta(hours=1)
        if mode is OcspMode.STALE:
            this_update, next_update = now - dt.timedelta(days=2), now - dt.timedelta(days=1)
        elif mode is OcspMode.FUTURE:
            this_update, next_update = now + dt.timedelta(hours=1), now + dt.timedelta(hours=2)
        revocation = self.ca.revocation_of(request.serial_number)
        status = ocsp.OCSPCertStatus.GOOD
        revoked_at: dt.datetime | None = None
        reason: x509.ReasonFlags | None = None
        if mode is OcspMode.UNKNOWN or request.issuer_key_hash != self._issuer_key_hash(request.hash_algorithm):
            status = ocsp.OCSPCertStatus.UNKNOWN
        elif revocation is not None:
            status, (revoked_at, reason) = ocsp.OCSPCertStatus.REVOKED, revocation
        responder, key = ((self._forger, self._forger_key) if mode is OcspMode.FORGED
                          else (self._responder, self._responder_key))
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(request.issuer_name_hash, request.issuer_key_hash, request.serial_number,
                                  request.hash_algorithm, status, this_update, next_update, revoked_at, reason)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
            .certificates([responder])
        )
        nonce = _request_nonce(request)
        if nonce is not None:
            echoed = bytes(reversed(nonce)) + b"x" if mode is OcspMode.WRONG_NONCE else nonce
            builder = builder.add_extension(x509.OCSPNonce(echoed), critical=False)
        response = builder.sign(key, hashes.SHA256())
        der = response.public_bytes(serialization.Encoding.DER)
        if mode is OcspMode.BAD_SIGNATURE:
            at = der.rindex(response.signature) + len(response.signature) - 1
            der = der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:]
        return der

    def _forged_responder(self) -> x509.Certificate:
        """A responder certificate copying the real one's names and EKU, signed by the forger's own key."""
        real = self._responder
        builder = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.issuer)
                   .public_key(self._forger_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(real.not_valid_before_utc).not_valid_after(real.not_valid_after_utc))
        for extension in real.extensions:
            if not isinstance(extension.value, x509.AuthorityKeyIdentifier):
                builder = builder.add_extension(extension.value, extension.critical)
        return builder.sign(self._forger_key, hashes.SHA256())

    def _issuer_key_hash(self, algorithm: hashes.HashAlgorithm) -> bytes:
        # the responder is issued by the issuing CA: a request for it carries the issuer's key hash
        probe = ocsp.OCSPRequestBuilder().add_certificate(self._responder, self.ca.issuing, algorithm).build()
        return probe.issuer_key_hash


def _request_nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _handler(services: NationalIdServices) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != CRL_PATH:
                self._send(404, "text/plain", b"not found")
                return
            services.crl_requests += 1
            if not services.crl_available:
                self.close_connection = True
                return
            self._send(200, "application/pkix-crl", services.crl_replay or services.current_crl())

        def do_POST(self) -> None:
            if self.path != OCSP_PATH:
                self._send(404, "text/plain", b"not found")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= _MAX_REQUEST:
                self._send(413 if length else 400, "text/plain", b"bad length")
                return
            body = self.rfile.read(length)
            services.ocsp_requests += 1
            if services.ocsp_mode is OcspMode.DOWN:
                self.close_connection = True
                return
            self._send(200, "application/ocsp-response", services.ocsp_answer(body))

    return Handler
