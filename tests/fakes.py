"""In-memory fakes of every port, so each branch of each flow runs in milliseconds.

They behave as the real adapters do at the seam (the same errors, the same idempotency), with
real keys and certificates made by ``cryptography`` (EC P-256, fast) so signatures really verify.
The real stacks prove the adapters; these prove the flows.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk import register
from kiosk.errors import (
    CardChanged,
    CentralRejected,
    CentralUnavailable,
    DeviceNotReady,
    InvalidPin,
    KeyMismatch,
    OrderNotFound,
    PaperOut,
    PinBlocked,
    StaleSession,
    TokenError,
)
from kiosk.order import Holder, Order, OrderStatus, compute_fees
from kiosk.pin import Pin, SoPin
from kiosk.ports import (
    AgreementFacts,
    AgreementKey,
    CardIdentity,
    CertificateRecord,
    CertificateStatus,
    ChallengeSignature,
    IssuedCertificate,
    KeyAlgorithm,
    PrinterStatus,
    Receipt,
    RefusedKey,
    RenewalTerms,
    Revocation,
    RevocationReason,
    RevocationStatus,
    SessionState,
    TokenCertificate,
    TokenInfo,
)
from kiosk.workdays import default_calendar

NOW = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)
CARD_PIN = "730419"
FACTORY_SO = SoPin("010203040506070801020304")


class PowerCut(BaseException):
    """Nothing after it runs, as when the power goes."""


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- store --------------------------------------------------------------------------------------------
class MemoryStore:
    """:class:`kiosk.ports.SessionStore` in memory; ``crash_on`` cuts off the transition of that event kind."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionState] = {}
        self.finished: set[str] = set()
        self.journal: list[tuple[str, str, dict[str, Any]]] = []
        self.secrets: dict[str, str] = {}
        self.receipts: dict[str, tuple[Receipt, bool]] = {}
        self.crash_on: str | None = None

    def create(self, session_id: str, flow: str, step: str, language: str, data: dict[str, Any]) -> SessionState:
        state = SessionState(session_id, flow, step, 0, language, copy.deepcopy(data))
        self.sessions[session_id] = state
        self.journal.append((session_id, step, {"kind": "session.created"}))
        return state

    def load(self, session_id: str) -> SessionState:
        state = self.sessions[session_id]
        return replace(state, data=copy.deepcopy(state.data))

    def unfinished(self) -> list[SessionState]:
        return [self.load(sid) for sid in self.sessions if sid not in self.finished]

    def awaiting_central(self) -> list[SessionState]:
        return [self.load(sid) for sid in self.sessions
                if sid in self.finished and self.sessions[sid].data.get("awaits_central")]

    def transition(self, state: SessionState, to_step: str, data: dict[str, Any], event: dict[str, Any],
                   durable: bool = False) -> SessionState:
        if event.get("kind") == self.crash_on:
            raise PowerCut(event["kind"])
        current = self.sessions[state.id]
        if current.version != state.version:
            raise StaleSession(session_id=state.id, expected_version=state.version)
        json.dumps(data)          # what the real store must be able to write
        json.dumps(event)
        new = replace(current, step=to_step, version=state.version + 1, data=copy.deepcopy(data))
        self.sessions[state.id] = new
        if event.get("final"):
            self.finished.add(state.id)
        self.journal.append((state.id, to_step, dict(event)))
        return replace(new, data=data)

    def events(self, session_id: str) -> list[str]:
        return [e["kind"] for sid, _, e in self.journal if sid == session_id]

    def save_token_secret(self, token_serial: str, so_pin: SoPin) -> None:
        self.secrets[token_serial] = so_pin.reveal()

    def token_secret(self, token_serial: str) -> SoPin | None:
        value = self.secrets.get(token_serial)
        return SoPin(value) if value is not None else None

    def keep_receipt(self, session_id: str, receipt: Receipt, printed: bool) -> None:
        self.receipts[session_id] = (receipt, printed)

    def pending_receipts(self) -> list[tuple[str, Receipt]]:
        return [(sid, r) for sid, (r, printed) in self.receipts.items() if not printed]

    def receipt_status(self, session_id: str) -> str | None:
        if session_id not in self.receipts:
            return None
        return "printed" if self.receipts[session_id][1] else "pending"


# --- eToken -------------------------------------------------------------------------------------------
@dataclass
class _Object:
    private: ec.EllipticCurvePrivateKey | None = None
    public: ec.EllipticCurvePublicKey | None = None
    certificates: list[bytes] = field(default_factory=list)


@dataclass
class FakeTokenState:
    serial: str
    initialised: bool = False
    label: str = ""
    so_pin: str = FACTORY_SO.reveal()
    user_pin: str = ""
    tries_left: int = 3
    objects: dict[bytes, _Object] = field(default_factory=dict)

    @property
    def locked(self) -> bool:
        return self.tries_left <= 0


class FakeTokenSession:
    def __init__(self, token: FakeTokenState, fake: FakeToken) -> None:
        self.t = token
        self.fake = fake

    def find_public_key(self, key_id: bytes) -> bytes | None:
        obj = self.t.objects.get(key_id)
        if obj is None or obj.private is None or obj.public is None:
            return None
        return _spki(obj.public)

    def generate_key_pair(self, key_id: bytes, label: str, algorithm: KeyAlgorithm) -> bytes:
        self.fake.calls.append("generate_key_pair")
        if self.fake.before_keygen is not None:
            self.fake.before_keygen()
        key = ec.generate_private_key(ec.SECP256R1())
        self.t.objects[key_id] = _Object(key, key.public_key())
        return _spki(key.public_key())

    def sign_csr(self, key_id: bytes, subject_cn: str) -> bytes:
        obj = self.t.objects.get(key_id)
        if obj is None or obj.private is None:
            raise TokenError("no key pair with this id", reason="key_missing")
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])).sign(obj.private, hashes.SHA256())
        return csr.public_bytes(serialization.Encoding.DER)

    def install_certificate(self, key_id: bytes, label: str, certificate_der: bytes,
                            chain_der: Sequence[bytes]) -> None:
        obj = self.t.objects.get(key_id)
        if obj is None or obj.public is None:
            raise TokenError("no key pair with this id", reason="key_missing")
        cert = x509.load_der_x509_certificate(certificate_der)
        if _spki(cert.public_key()) != _spki(obj.public):  # type: ignore[arg-type]
            raise KeyMismatch()
        if certificate_der not in obj.certificates:
            obj.certificates.append(certificate_der)
        for ca in chain_der:
            ca_id = hashlib.sha1(ca).digest()
            self.t.objects.setdefault(ca_id, _Object()).certificates[:] = [ca]

    def certificates(self) -> list[tuple[bytes, bytes]]:
        return [(kid, der) for kid, obj in self.t.objects.items() for der in obj.certificates]

    def sign(self, key_id: bytes, data: bytes) -> bytes:
        obj = self.t.objects.get(key_id)
        if obj is None or obj.private is None:
            raise TokenError("no key pair with this id", reason="key_missing")
        return obj.private.sign(data, ec.ECDSA(hashes.SHA256()))

    def remove_key(self, key_id: bytes) -> None:
        self.t.objects.pop(key_id, None)

    def key_ids(self) -> list[bytes]:
        return list(self.t.objects)

    def set_pin(self, old_pin: Pin, new_pin: Pin) -> None:
        self.fake.calls.append("set_pin")
        if old_pin.reveal() != self.t.user_pin:
            raise InvalidPin(device="token", attempts_remaining=self.t.tries_left)
        self.t.user_pin = new_pin.reveal()


class FakeToken:
    """:class:`kiosk.ports.TokenPort` with one slot; ``pulled`` makes every call fail as a pulled token."""

    def __init__(self, serial: str = "TK0001") -> None:
        self.slot: FakeTokenState | None = FakeTokenState(serial)
        self.pulled = False
        self.crash_inside_init = False
        self.calls: list[str] = []
        self.before_keygen: Callable[[], None] | None = None    # runs inside generate_key_pair (a slow token)

    def _token(self, serial: str | None = None) -> FakeTokenState:
        if self.pulled or self.slot is None or (serial is not None and serial != self.slot.serial):
            raise DeviceNotReady("no token", device="token")
        return self.slot

    def present(self) -> TokenInfo:
        t = self._token()
        return TokenInfo(t.serial, t.label, "FakeToken", "Tamga tests", t.initialised, bool(t.user_pin), t.locked)

    def initialise(self, serial: str, current_so_pin: SoPin, new_so_pin: SoPin, label: str,
                   user_pin: Pin) -> TokenInfo:
        t = self._token(serial)
        self.calls.append("initialise")
        if t.initialised and current_so_pin.reveal() != t.so_pin:
            raise TokenError("SO PIN refused", reason="so_pin_incorrect", serial=serial)
        if self.crash_inside_init:
            self.crash_inside_init = False
            t.initialised, t.objects = False, {}
            raise PowerCut("inside C_InitToken")
        t.initialised, t.label, t.objects = True, label, {}
        t.so_pin, t.user_pin, t.tries_left = new_so_pin.reveal(), user_pin.reveal(), 3
        return self.present()

    def public_certificates(self, serial: str) -> list[tuple[bytes, bytes]]:
        t = self._token(serial)
        return [(kid, der) for kid, obj in t.objects.items() for der in obj.certificates]

    def unblock(self, serial: str, so_pin: SoPin, new_user_pin: Pin) -> None:
        t = self._token(serial)
        if so_pin.reveal() != t.so_pin:
            raise TokenError("SO PIN refused", reason="so_pin_incorrect", serial=serial)
        t.user_pin, t.tries_left = new_user_pin.reveal(), 3

    @contextmanager
    def session(self, serial: str, user_pin: Pin) -> Iterator[FakeTokenSession]:
        t = self._token(serial)
        if t.locked:
            raise PinBlocked(device="token", serial=serial)
        if user_pin.reveal() != t.user_pin:
            t.tries_left -= 1
            if t.locked:
                raise PinBlocked(device="token", serial=serial)
            raise InvalidPin(device="token", attempts_remaining=t.tries_left)
        t.tries_left = 3
        yield FakeTokenSession(t, self)


# --- ID card ------------------------------------------------------------------------------------------
class FakeIdCard:
    def __init__(self, given: str = "Ариун", surname: str = "Баатар", register_number: str = "НЭ80000000",
                 serial: int = 0x1001) -> None:
        self.insert(given, surname, register_number, serial)
        self.verifies = 0

    def insert(self, given: str, surname: str, register_number: str, serial: int) -> None:
        der = b"DER" + serial.to_bytes(8, "big")
        self.identity = CardIdentity(f"{surname} {given}", given, surname,
                                     register.certificate_serial_number(register_number, "MN"), der,
                                     serial, NOW + dt.timedelta(days=900), "CN=Test National ID CA",
                                     certificate_sha256=hashlib.sha256(der).hexdigest(),
                                     revocation=RevocationStatus("ocsp", NOW, b"OCSP", "http://ocsp.test"))
        self.tries_left = 3

    def read_identity(self) -> CardIdentity:
        return self.identity

    def authenticate(self, pin: Pin, challenge: bytes, expected_sha256: str | None = None) -> ChallengeSignature:
        if expected_sha256 is not None and expected_sha256 != self.identity.certificate_sha256:
            raise CardChanged()
        self.verifies += 1
        if pin.reveal() != CARD_PIN:
            self.tries_left -= 1
            if self.tries_left <= 0:
                raise PinBlocked(device="card")
            raise InvalidPin(device="card", attempts_remaining=self.tries_left)
        return ChallengeSignature(hashlib.sha256(b"fake card" + challenge).digest(), "ecdsa-p256-sha256")


# --- printer ------------------------------------------------------------------------------------------
class FakePrinter:
    def __init__(self) -> None:
        self.paper = True
        self.crash_after_print = False
        self.printed: list[Receipt] = []

    def status(self) -> PrinterStatus:
        return PrinterStatus.READY if self.paper else PrinterStatus.PAPER_OUT

    def prepare(self, receipt: Receipt) -> object:
        return receipt

    def print_receipt(self, receipt: Receipt, prepared: object | None = None) -> bytes:
        if not self.paper:
            raise PaperOut()
        self.printed.append(receipt)
        if self.crash_after_print:
            self.crash_after_print = False
            raise PowerCut("after the paper, before the mark")
        return b"PNG"


# --- central ------------------------------------------------------------------------------------------
def demo_order(invoice: str = "147314016754", paid: int = 88000, register_number: str = "НЭ80000000",
               given: str = "Ариун", father: str = "Баатар", status: OrderStatus = OrderStatus.PAID) -> Order:
    return Order(id=invoice[-4:], invoice=invoice, status=status,
                 holder=Holder("Боржигон", father, given, register_number, "a@b.mn", "99"),
                 organisation="АЗ ХХК", organisation_register="1234567", department="Захиргаа",
                 position="Нягтлан", term_years=1, etoken=True, confirmed=True, paid_mnt=paid)


@dataclass
class _Issued:
    cert: x509.Certificate
    order: Order
    token_serial: str
    revoked: RevocationReason | None = None
    revoked_at: dt.datetime | None = None


class FakeCentral:
    """:class:`kiosk.ports.CentralPort` with its own EC CA.  ``down`` makes every call unavailable;
    ``lose_next_reply`` issues and then loses the answer (a timeout after the CA signed)."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake Issuing CA")])
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self.ca_key.public_key()).serial_number(1)
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        self.orders: dict[str, Order] = {}
        self.by_key: dict[str, _Issued] = {}
        self.by_serial: dict[str, _Issued] = {}
        self.authentication: dict[str, _Issued] = {}      # by the signing certificate's serial
        self.voided: set[str] = set()
        self.escrow: dict[str, str] = {}
        self.balance: dict[str, int] = {"1234567": 500_000}
        self.validity = dt.timedelta(days=365)
        self.down = False
        self.lose_next_reply = False
        self.wrong_key_next = False
        self.calls: list[str] = []
        self._serials = itertools.count(0x5A000001)
        self.agreements: dict[str, bytes] = {}  # certificate serial -> signed PDF
        self.refused: list[tuple[str, RefusedKey]] = []     # (token serial, key) as other kiosks journalled them
        self.add_order(demo_order())

    def add_order(self, order: Order) -> Order:
        self.orders[order.invoice] = order
        return order

    def _up(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise CentralUnavailable("down (fake)", status=None, cause="connection")

    def find_order(self, kind: str, value: str) -> Order:
        self._up("find_order")
        for order in self.orders.values():
            if (kind == "invoice" and order.invoice == value) or \
                    (kind == "register" and order.holder.register_number == value):
                return order
        raise OrderNotFound(kind=kind)

    def _certify(self, csr_der: bytes, order: Order, token_serial: str, validity: dt.timedelta,
                 authentication: bool = False) -> _Issued:
        csr = x509.load_der_x509_csr(csr_der)
        key = csr.public_key()
        if self.wrong_key_next:
            self.wrong_key_next = False
            key = ec.generate_private_key(ec.SECP256R1()).public_key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, order.holder.full_name),
            x509.NameAttribute(NameOID.GIVEN_NAME, order.holder.given_name),
            x509.NameAttribute(NameOID.SURNAME, order.holder.father_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, order.organisation),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, register.certificate_serial_number(
                order.holder.register_number, "MN")),
        ])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.ca.subject).public_key(key)
                   .serial_number(next(self._serials)).not_valid_before(self.now - dt.timedelta(minutes=1))
                   .not_valid_after(self.now + validity))
        if authentication:      # as the central's authentication profile: digitalSignature, clientAuth
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                            critical=True)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        issued = _Issued(cert, order, token_serial)
        if not authentication:      # the central lists and revokes the signing certificate
            self.by_serial[format(cert.serial_number, "X")] = issued
        return issued

    def _answer(self, issued: _Issued) -> IssuedCertificate:
        cert = issued.cert
        authentication = self.authentication.get(format(cert.serial_number, "X"))
        return IssuedCertificate(_pem(cert), (_pem(self.ca),), format(cert.serial_number, "X"),
                                 cert.not_valid_before_utc, cert.not_valid_after_utc,
                                 hashlib.sha256(_spki(cert.public_key())).hexdigest(),  # type: ignore[arg-type]
                                 authentication=self._answer(authentication) if authentication else None)

    def enroll(self, order_id: str, csr_der: bytes, idempotency_key: str, token_serial: str = "",
               so_pin: SoPin | None = None, authentication_csr_der: bytes | None = None,
               order_digest: str = "") -> IssuedCertificate:
        self._up("enroll")
        if idempotency_key in self.voided:
            raise CentralRejected(reason="enrollment_void", status=409)
        order = next(o for o in self.orders.values() if o.id == order_id)
        if order.status is OrderStatus.CANCELLED:
            raise CentralRejected(reason="order_not_payable", refusal="cancelled", status=409)
        if idempotency_key not in self.by_key and order_digest and order_digest != order.checked_digest:
            raise CentralRejected(reason="order_changed", status=409)
        if so_pin is not None:
            self.escrow[token_serial] = so_pin.reveal()
        if authentication_csr_der is not None and not order.authentication_certificate:
            raise CentralRejected(reason="invalid_request", field="authentication_csr", status=400)
        if idempotency_key not in self.by_key:
            self.by_key[idempotency_key] = issued = self._certify(csr_der, order, token_serial, self.validity)
            if authentication_csr_der is not None:
                self.authentication[format(issued.cert.serial_number, "X")] = self._certify(
                    authentication_csr_der, order, token_serial, self.validity, authentication=True)
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise CentralUnavailable("timeout (fake)", status=None, cause="timeout")
        return self._answer(self.by_key[idempotency_key])

    def refused_keys(self, token_serial: str) -> list[RefusedKey]:
        """What the office's kiosks journalled refused for the token (``refused``) and not removed since."""
        self._up("refused_keys")
        return [key for serial, key in self.refused if serial == token_serial]

    def token_certificate(self, token_serial: str) -> TokenCertificate:
        self._up("token_certificate")
        issued = [i for i in self.by_key.values() if i.token_serial == token_serial and i.revoked is None]
        if not issued:
            raise CentralRejected(reason="certificate_not_found", status=404)
        return TokenCertificate(self._answer(issued[-1]), issued[-1].order.id, issued[-1].order.invoice, token_serial)

    def void_enrollment(self, idempotency_key: str) -> str | None:
        self._up("void_enrollment")
        self.voided.add(idempotency_key)
        issued = self.by_key.get(idempotency_key)
        if issued is None:
            return None
        if issued.revoked is None:
            issued.revoked, issued.revoked_at = RevocationReason.CESSATION_OF_OPERATION, self.now
        return format(issued.cert.serial_number, "X")

    def _record(self, serial: str, issued: _Issued) -> CertificateRecord:
        cert = issued.cert
        status = CertificateStatus.REVOKED if issued.revoked else (
            CertificateStatus.EXPIRED if cert.not_valid_after_utc <= self.now else CertificateStatus.GOOD)
        return CertificateRecord(serial, status, cert.not_valid_before_utc, cert.not_valid_after_utc,
                                 issued.order.holder.register_number, issued.order.holder.full_name,
                                 issued.order.organisation, issued.order.invoice, issued.token_serial, _pem(cert),
                                 issued.revoked_at, issued.revoked.value if issued.revoked else None)

    def certificates(self, register_number: str) -> list[CertificateRecord]:
        self._up("certificates")
        return [self._record(s, i) for s, i in reversed(self.by_serial.items())
                if register_number in (i.order.holder.register_number,
                                       register.certificate_serial_number(i.order.holder.register_number, "MN"))]

    def certificate(self, serial_hex: str) -> CertificateRecord:
        self._up("certificate")
        issued = self.by_serial.get(serial_hex.upper())
        if issued is None:
            raise CentralRejected(reason="certificate_not_found", status=404)
        return self._record(serial_hex.upper(), issued)

    def revoke(self, serial_hex: str, reason: RevocationReason, register_number: str,
               idempotency_key: str) -> Revocation:
        self._up("revoke")
        issued = self.by_serial[serial_hex]
        if register_number not in (issued.order.holder.register_number, register.certificate_serial_number(
                issued.order.holder.register_number, "MN")):
            raise CentralRejected(reason="holder_mismatch", status=409)
        if issued.revoked is None:
            issued.revoked, issued.revoked_at = reason, self.now
        assert issued.revoked_at is not None
        return Revocation(serial_hex, issued.revoked_at, issued.revoked)

    def renewal_terms(self, serial_hex: str, term_years: int) -> RenewalTerms:
        self._up("renewal_terms")
        issued = self.by_serial[serial_hex]
        not_after = issued.cert.not_valid_after_utc
        last = default_calendar("MN").last_request_day(not_after.date())
        return RenewalTerms(serial_hex, not_after, last, issued.order.organisation,
                            issued.order.organisation_register, self.balance[issued.order.organisation_register],
                            term_years, compute_fees(term_years, etoken=False))

    def renew(self, serial_hex: str, application: bytes, signature: bytes, csr_der: bytes,
              idempotency_key: str, authentication_csr_der: bytes | None = None) -> IssuedCertificate:
        self._up("renew")
        issued = self.by_serial[serial_hex]
        key = issued.cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        try:
            key.verify(signature, application, ec.ECDSA(hashes.SHA256()))
        except Exception:
            raise CentralRejected(reason="signature_invalid", status=400) from None
        body = json.loads(application)
        fee = compute_fees(body["term_years"], etoken=False).total
        register_no = issued.order.organisation_register
        if idempotency_key not in self.by_key:
            if self.balance[register_no] < fee:
                raise CentralRejected(reason="insufficient_balance", status=409)
            self.balance[register_no] -= fee
            validity = dt.timedelta(days=365 * body["term_years"])
            self.by_key[idempotency_key] = new = self._certify(csr_der, issued.order, issued.token_serial, validity)
            if authentication_csr_der is not None:
                self.authentication[format(new.cert.serial_number, "X")] = self._certify(
                    authentication_csr_der, issued.order, issued.token_serial, validity, authentication=True)
        return self._answer(self.by_key[idempotency_key])

    def escrowed_so_pin(self, token_serial: str, certificate_serial: str, register_number: str) -> SoPin:
        self._up("escrowed_so_pin")
        if token_serial not in self.escrow:
            raise CentralRejected(reason="so_pin_not_escrowed", status=404)
        return SoPin(self.escrow[token_serial])

    def submit_agreement(self, certificate_serial: str, pdf: bytes) -> str:
        """Keep the first agreement per serial (FakeAgreementSigner's bytes are checked, not PAdES)."""
        self._up("submit_agreement")
        if certificate_serial.upper() not in self.by_serial:
            raise CentralRejected(reason="certificate_not_found", status=404)
        if not pdf.startswith(FakeAgreementSigner.MAGIC):
            raise CentralRejected(reason="agreement_not_pdf", status=422)
        kept = self.agreements.setdefault(certificate_serial.upper(), pdf)
        if kept != pdf:
            raise CentralRejected(reason="agreement_exists", status=409)
        return hashlib.sha256(pdf).hexdigest()


# --- holder agreement ---------------------------------------------------------------------------------
class FakeAgreementSigner:
    """:class:`kiosk.ports.AgreementSigner` over a FakeToken: logs in with the PIN, signs the facts with the key.

    Its "PDF" is ``MAGIC`` + the facts as JSON + the token's signature over them (not PAdES: the real
    one is ``devices/agreement.py``, tested on SoftHSM).  ``signed`` lists the facts it signed.
    """

    MAGIC = b"%PDF-fake-agreement\n"

    def __init__(self, token: FakeToken) -> None:
        self.token = token
        self.signed: list[AgreementFacts] = []

    def sign(self, facts: AgreementFacts, key: AgreementKey, pin: Pin) -> bytes:
        body = json.dumps({**facts.__dict__, "signed_on": facts.signed_on.isoformat()},
                          ensure_ascii=False, sort_keys=True).encode()
        with self.token.session(key.token_serial, pin) as session:
            signature = session.sign(key.key_id, body)
        self.signed.append(facts)
        return self.MAGIC + body + b"\n" + signature.hex().encode()
