"""The national ID card in a PC/SC reader: implements :class:`kiosk.ports.IdCardPort`.

:class:`IdCardVerifier` is the one verification pipeline; :class:`IdCardReader` reaches the card
with APDUs (the native PIV fast path), ``devices.idcard_opensc`` through OpenSC's PKCS#11 module.
``read_identity`` reads the holder's authentication certificate and the card UUID (SELECT + two
GET DATA), then validates the certificate chain to the national trust anchors with cryptography.
``authenticate`` reads the PIN counter, verifies the PIN and has the card sign a challenge (VERIFY
without data, VERIFY, GENERAL AUTHENTICATE), then checks that signature with the certificate's key;
a card with one PIN try left gets no PIN (PinBlocked(reason='last_try')).  A first verification is
6 APDUs.  The connection stays open between calls; a card pulled and reinserted in between is
reconnected transparently (and, before a PIN is sent, checked to be the card that was read).
The card is reset after ``authenticate`` so the verified PIN does not outlive the call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devices.cardprofiles import CardProfile, ChallengeScheme, IdCardApplication, get_profile
from devices.pcsc import (
    DEFAULT_APDU_TIMEOUT,
    CardSession,
    PcscConnection,
    find_reader,
    next_reader_state,
    wait_for_card,
)
from devices.revocation import RevocationChecker
from kiosk.errors import (
    CardAlgorithmRefused,
    CardAuthenticationFailed,
    CardChanged,
    CardError,
    CardExpired,
    CardIssuerUnknown,
    CardWrongUsage,
    CertificateInvalid,
    DeviceNotReady,
)
from kiosk.pin import Pin
from kiosk.ports import CardIdentity, ChallengeSignature

_MAX_CHAIN_DEPTH = 6
# What cryptography raises for a certificate it cannot read, often only when a field is first used
# (found by fuzzing: InvalidVersion and DuplicateExtension are no ValueError).
_UNREADABLE = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
               x509.UnsupportedGeneralNameType)
# An EKU, when present, must allow authentication with a card; absent, key usage alone decides.
AUTHENTICATION_EKUS = frozenset({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SMARTCARD_LOGON,
                                 ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})
_WRONG_USAGE = frozenset({"key_usage", "extended_key_usage", "leaf_is_ca"})
_RSA_SIZES = frozenset({2048, 3072, 4096})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- certificate checks (pure) -----------------------------------------------------------------------------
def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _check_validity(cert: x509.Certificate, now: dt.datetime, role: str) -> None:
    refusal = CardExpired if role == "leaf" else CertificateInvalid
    if now < cert.not_valid_before_utc:
        raise refusal("certificate not yet valid", reason="not_yet_valid", role=role, subject=_subject(cert))
    if now > cert.not_valid_after_utc:
        raise refusal("certificate expired", reason="expired", role=role, subject=_subject(cert),
                      not_after=cert.not_valid_after_utc.isoformat())


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except _UNREADABLE as err:                     # duplicate or malformed extensions
        raise CertificateInvalid("malformed extensions", reason="malformed",
                                 subject=_subject(cert)) from err


def _check_issuer_constraints(ca: x509.Certificate, cas_below: int) -> None:
    constraints = _extension(ca, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise CertificateInvalid("issuer is not a CA", reason="issuer_not_ca", subject=_subject(ca))
    if constraints.path_length is not None and constraints.path_length < cas_below:
        raise CertificateInvalid("CA path length exceeded", reason="path_length", subject=_subject(ca))
    usage = _extension(ca, x509.KeyUsage)
    if not isinstance(usage, x509.KeyUsage) or not usage.key_cert_sign:
        raise CertificateInvalid("issuer may not sign certificates", reason="issuer_key_usage",
                                 subject=_subject(ca))


def _find_issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate],
                 ) -> tuple[x509.Certificate | None, bool]:
    """(issuer among ``candidates``, whether some candidate had the right name but a bad signature)."""
    name_matched = False
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        name_matched = True
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate, False
    return None, name_matched


def validate_chain(leaf: x509.Certificate, trust_anchors: Sequence[x509.Certificate],
                   intermediates: Sequence[x509.Certificate], now: dt.datetime) -> list[x509.Certificate]:
    """The path leaf → … → trust anchor, validated.  Raises CertificateInvalid(reason=…).

    The hand-written checks below name the reason a card is refused (``expired``, ``untrusted_issuer``,
    ``bad_signature``, ``key_usage``, ``leaf_is_ca``, …); cryptography's ``x509.verification`` client
    verifier then decides (RFC 5280 path validation with the Web PKI CA profile: name and policy
    constraints, key identifiers; unknown critical extensions refused as ``critical_extension``, an
    EKU without authentication as ``extended_key_usage``).  The path returned is the verifier's.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    _diagnose_chain(leaf, trust_anchors, intermediates, now)
    return _verify_path(leaf, trust_anchors, intermediates, now)


def _verify_path(leaf: x509.Certificate, trust_anchors: Sequence[x509.Certificate],
                 intermediates: Sequence[x509.Certificate], now: dt.datetime) -> list[x509.Certificate]:
    refusals: list[str] = []

    def key_usage(_policy: object, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
        if value is None or not value.digital_signature:
            refusals.append("key_usage")
            raise ValueError("keyUsage digitalSignature required")

    def basic_constraints(_policy: object, _cert: x509.Certificate, value: x509.BasicConstraints | None) -> None:
        if value is not None and value.ca:
            refusals.append("leaf_is_ca")
            raise ValueError("a CA certificate")

    def extended_key_usage(_policy: object, _cert: x509.Certificate,
                           value: x509.ExtendedKeyUsage | None) -> None:
        if value is not None and not AUTHENTICATION_EKUS.intersection(value):
            refusals.append("extended_key_usage")
            raise ValueError("extendedKeyUsage excludes authentication")

    # Not webpki_defaults_ee: national ID certificates carry neither subjectAltName nor always an AKI.
    # With a custom EE policy the client verifier no longer checks the EKU itself: extended_key_usage does.
    agnostic = verification.Criticality.AGNOSTIC
    ee_policy = (verification.ExtensionPolicy.permit_all()
                 .require_present(x509.KeyUsage, agnostic, key_usage)
                 .may_be_present(x509.BasicConstraints, agnostic, basic_constraints)
                 .may_be_present(x509.ExtendedKeyUsage, agnostic, extended_key_usage))
    verifier = (verification.PolicyBuilder().store(verification.Store(list(trust_anchors))).time(now)
                .max_chain_depth(_MAX_CHAIN_DEPTH)
                .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                    ee_policy=ee_policy)
                .build_client_verifier())
    try:
        verified = verifier.verify(leaf, list(intermediates))
    except verification.VerificationError as err:
        message = str(err)
        if refusals:
            reason = refusals[0]
        elif "unaccounted-for critical extensions" in message:
            reason = "critical_extension"
        else:
            reason = "path_invalid"
        refusal = CardWrongUsage if reason in _WRONG_USAGE else CertificateInvalid
        raise refusal("certification path does not validate", reason=reason,
                      subject=_subject(leaf), verifier=message[:300]) from err
    return list(verified.chain)


def _diagnose_chain(leaf: x509.Certificate, trust_anchors: Sequence[x509.Certificate],
                    intermediates: Sequence[x509.Certificate], now: dt.datetime) -> list[x509.Certificate]:
    """The hand-written path check: signatures, validity at ``now``, issuers are CAs with keyCertSign
    (basicConstraints, path length), the leaf has keyUsage digitalSignature and is no CA."""
    _check_validity(leaf, now, "leaf")
    usage = _extension(leaf, x509.KeyUsage)
    if not isinstance(usage, x509.KeyUsage) or not usage.digital_signature:
        raise CardWrongUsage("certificate may not be used for authentication", reason="key_usage",
                             subject=_subject(leaf))
    constraints = _extension(leaf, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise CardWrongUsage("a CA certificate is not a person's card", reason="leaf_is_ca",
                             subject=_subject(leaf))
    path = [leaf]
    current = leaf
    for _ in range(_MAX_CHAIN_DEPTH):
        anchor, anchor_name_matched = _find_issuer(current, trust_anchors)
        if anchor is not None:
            _check_validity(anchor, now, "trust_anchor")
            _check_issuer_constraints(anchor, len(path) - 1)
            path.append(anchor)
            return path
        pool = [c for c in intermediates if c not in path]
        issuer, name_matched = _find_issuer(current, pool)
        if issuer is None:
            bad_signature = anchor_name_matched or name_matched
            raise (CertificateInvalid if bad_signature else CardIssuerUnknown)(
                "certificate signature does not verify" if bad_signature else "issuer not trusted",
                reason="bad_signature" if bad_signature else "untrusted_issuer",
                subject=_subject(current), issuer=current.issuer.rfc4514_string())
        _check_validity(issuer, now, "intermediate")
        _check_issuer_constraints(issuer, len(path) - 1)
        path.append(issuer)
        current = issuer
    raise CertificateInvalid("certificate chain too long", reason="chain_too_long", subject=_subject(leaf))


def challenge_scheme(cert: x509.Certificate, rsa_padding: str = "pkcs1v15") -> ChallengeScheme:
    """How the card signs the challenge, from the allow-list: RSA 2048-4096 with PKCS#1 v1.5 or PSS
    (``rsa_padding``), ECDSA P-256/SHA-256, ECDSA P-384/SHA-384.  Raises CardAlgorithmRefused otherwise."""
    try:
        key = cert.public_key()
    except _UNREADABLE as err:
        raise CardAlgorithmRefused("card key does not parse", reason="key_algorithm", algorithm="unreadable") from err
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in _RSA_SIZES:
            raise CardAlgorithmRefused("RSA key size not allowed", reason="key_algorithm",
                                       algorithm=f"rsa{key.key_size}")
        if rsa_padding == "pss":
            return ChallengeScheme.RSA_PSS_SHA256
        if rsa_padding == "pkcs1v15":
            return ChallengeScheme.RSA_PKCS1V15_SHA256
        raise CardAlgorithmRefused("RSA padding not allowed", reason="signature_algorithm", algorithm=rsa_padding)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ChallengeScheme.ECDSA_P256_SHA256
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1):
        return ChallengeScheme.ECDSA_P384_SHA384
    name = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__.removeprefix("_")
    raise CardAlgorithmRefused("card key algorithm not allowed", reason="key_algorithm", algorithm=name)


def verify_challenge_signature(cert: x509.Certificate, challenge: bytes, signature: bytes,
                               scheme: ChallengeScheme | None = None) -> ChallengeSignature:
    """Check the card's signature over ``challenge`` with ``scheme`` (the certificate's default when
    None).  Raises CardAuthenticationFailed, CardAlgorithmRefused."""
    scheme = scheme or challenge_scheme(cert)
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and scheme.is_rsa:
            key.verify(signature, challenge, scheme.rsa_padding(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey) and not scheme.is_rsa:
            key.verify(_der_ecdsa(signature, key), challenge, ec.ECDSA(scheme.hash()))
        else:
            raise CardAuthenticationFailed("scheme does not fit the card's key", algorithm=scheme.value)
    except (InvalidSignature, ValueError) as err:
        raise CardAuthenticationFailed("signature does not verify with the card's certificate") from err
    return ChallengeSignature(signature, scheme.value)


def _der_ecdsa(signature: bytes, key: ec.EllipticCurvePublicKey) -> bytes:
    """Accept DER (PIV) and also plain r‖s, which some cards return."""
    size = (key.curve.key_size + 7) // 8
    if len(signature) == 2 * size:
        try:
            decode_dss_signature(signature)
        except ValueError:
            return encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                        int.from_bytes(signature[size:], "big"))
    return signature


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def identity_from_certificate(cert: x509.Certificate, card_uuid: str, profile: str) -> CardIdentity:
    """The CardIdentity a certificate states.  Raises CertificateInvalid without CN or serialNumber."""
    common_name = _attribute(cert.subject, NameOID.COMMON_NAME)
    serial_number = _attribute(cert.subject, NameOID.SERIAL_NUMBER)
    if not common_name or not serial_number:
        raise CertificateInvalid("certificate subject lacks CN or serialNumber", reason="subject_incomplete",
                                 subject=_subject(cert))
    return CardIdentity(
        common_name=common_name,
        given_name=_attribute(cert.subject, NameOID.GIVEN_NAME),
        surname=_attribute(cert.subject, NameOID.SURNAME),
        serial_number=serial_number,
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
        certificate_serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.rfc4514_string(),
        card_uuid=card_uuid,
        profile=profile,
        certificate_sha256=certificate_sha256(cert),
    )


def certificate_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER: what binds a card to a session (serials are
    unique only per issuer)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def card_identity(der: bytes, trust_anchors: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate],
                  now: dt.datetime, card_uuid: str = "", profile: str = "piv",
                  ) -> tuple[x509.Certificate, CardIdentity]:
    """Parse the card's certificate, validate its chain and say whose it is (pure; any bytes in).

    Raises CertificateInvalid (``reason='malformed'`` for bytes that are no usable certificate)
    and nothing else, whatever the card sent.
    """
    certificate = _load_certificate(der)
    try:
        validate_chain(certificate, trust_anchors, intermediates, now)
        return certificate, identity_from_certificate(certificate, card_uuid, profile)
    except _UNREADABLE as err:
        raise CertificateInvalid("certificate does not parse", reason="malformed") from err


CurrentTrust = Callable[[], tuple[Sequence[x509.Certificate], Sequence[x509.Certificate]]]


# --- the pipeline ---------------------------------------------------------------------------------------
class IdCardVerifier:
    """The one verification pipeline, whatever way reaches the card: path validation, revocation, the
    SHA-256 binding, the signature allow-list and the check of the challenge signature.

    A subclass only reaches the card: ``_read_card_waiting`` (the certificate DER and card UUID) and
    ``_verify_and_sign`` (PIN safety, VERIFY, the signature); :class:`IdCardReader` does it with APDUs
    over PC/SC, :class:`devices.idcard_opensc.OpenscIdCardReader` through OpenSC's PKCS#11 module.
    """

    profile_name = ""

    def __init__(self, trust_anchors: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate] = (),
                 clock: Callable[[], dt.datetime] = utc_now, *, revocation: RevocationChecker | None = None,
                 rsa_padding: str = "pkcs1v15") -> None:
        if not trust_anchors:
            raise ValueError("at least one trust anchor is required")
        self.trust_anchors = list(trust_anchors)
        self.intermediates = list(intermediates)
        self.clock = clock
        self.revocation = revocation          # None: no revocation check (device tests of the reader alone)
        self.rsa_padding = rsa_padding
        self.trust_source: CurrentTrust | None = None
        """Called before each card is read: the current (anchors, intermediates), e.g. with the synced ones."""
        self._lock = threading.RLock()
        self._certificate: x509.Certificate | None = None

    # -- how the card is reached (subclasses) ---------------------------------------------------------
    def _read_card_waiting(self) -> tuple[bytes, str]:
        """(DER of the authentication certificate, card UUID or ""), waiting ``card_timeout`` for a card."""
        raise NotImplementedError

    def _verify_and_sign(self, pin: Pin, challenge: bytes, scheme: ChallengeScheme, key_bits: int,
                         certificate: x509.Certificate) -> bytes:
        """On the card holding ``certificate`` (else CardChanged): read the PIN counter, refuse the last
        try, VERIFY ``pin`` and sign ``challenge`` by ``scheme``; the card's signature as it returns it."""
        raise NotImplementedError

    def wait_for_card(self, timeout: float) -> None:
        raise NotImplementedError

    def pin_attempts(self) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        with self._lock:
            self._certificate = None

    def __enter__(self) -> IdCardVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- IdCardPort -----------------------------------------------------------------------------------
    def read_identity(self) -> CardIdentity:
        """Read and validate the holder's certificate.  Raises CertificateInvalid, DeviceNotReady, CardError."""
        with self._lock:
            self._certificate = None
            if self.trust_source is not None:
                anchors, intermediates = self.trust_source()
                if anchors:
                    self.trust_anchors, self.intermediates = list(anchors), list(intermediates)
            der, card_uuid = self._read_card_waiting()
            certificate, identity = card_identity(der, self.trust_anchors, self.intermediates, self.clock(),
                                                  card_uuid, self.profile_name)
            if self.revocation is not None:
                issuer, _ = _find_issuer(certificate, [*self.intermediates, *self.trust_anchors])
                if issuer is None:                       # validate_chain found it: cannot happen
                    raise CertificateInvalid("issuer not found", reason="untrusted_issuer")
                identity = replace(identity, revocation=self.revocation.check(certificate, issuer))
            self._certificate = certificate
            return identity

    def authenticate(self, pin: Pin, challenge: bytes, expected_sha256: str | None = None) -> ChallengeSignature:
        """VERIFY ``pin`` on the card whose certificate's SHA-256 is ``expected_sha256``, have it sign ``challenge``.

        The PIN is sent only to that card (None: the card this reader read last; the workflow always
        names the card its session read, which may have been another process before a restart).
        The hash (hex, :func:`certificate_sha256`) binds the card exactly: serials are unique only
        per issuer.  Returns the verified signature and its allow-listed scheme.
        Raises InvalidPin(attempts_remaining=n), PinBlocked, CardAuthenticationFailed,
        CardAlgorithmRefused, DeviceNotReady; CardChanged when another card is in the reader.
        """
        if not challenge:
            raise ValueError("empty challenge")
        with self._lock:
            if self._certificate is None:
                self.read_identity()
            certificate = self._certificate
            if certificate is None:                          # read_identity raised otherwise
                raise CardError("no validated certificate")
            if expected_sha256 is not None and not hmac.compare_digest(
                    certificate_sha256(certificate), expected_sha256.strip().lower()):
                raise CardChanged("the card's certificate is not the one read for this session")
            scheme = challenge_scheme(certificate, self.rsa_padding)
            signature = self._verify_and_sign(pin, challenge, scheme, _key_bits(certificate), certificate)
            return verify_challenge_signature(certificate, challenge, signature, scheme)


# --- the reader ------------------------------------------------------------------------------------------
PCSCD_POLL_S = 0.5   # pcscd polls a reader without card-detect events every ~400 ms


class IdCardReader(IdCardVerifier):
    """The ID card in the reader whose name contains ``reader_name``, by APDUs over PC/SC (the fast path).
    Thread-safe; one card at a time.

    ``card_timeout`` > 0 makes an operation wait that long for a card instead of failing at once.
    A card that does not answer an APDU within ``apdu_timeout`` seconds raises
    DeviceNotReady(device='card', reason='not_answering') until it is pulled.
    """

    def __init__(self, reader_name: str, trust_anchors: Sequence[x509.Certificate],
                 intermediates: Sequence[x509.Certificate] = (), profile: str = "piv",
                 clock: Callable[[], dt.datetime] = utc_now, *, card_timeout: float = 0.0,
                 exclusive: bool = False, apdu_timeout: float = DEFAULT_APDU_TIMEOUT,
                 revocation: RevocationChecker | None = None, rsa_padding: str = "pkcs1v15") -> None:
        super().__init__(trust_anchors, intermediates, clock, revocation=revocation, rsa_padding=rsa_padding)
        self.reader_name = reader_name
        self.profile: CardProfile = get_profile(profile)
        self.profile_name = self.profile.name
        self.card_timeout = card_timeout
        self._exclusive = exclusive
        self.apdu_timeout = apdu_timeout
        self._connection: PcscConnection | None = None
        self._application: IdCardApplication | None = None

    # -- measurements ---------------------------------------------------------------------------------
    @property
    def apdu_count(self) -> int:
        return self._connection.apdu_count if self._connection is not None else 0

    @property
    def apdu_seconds(self) -> float:
        return self._connection.apdu_seconds if self._connection is not None else 0.0

    @property
    def io_seconds(self) -> float:
        """All time inside PC/SC so far: APDUs plus connecting to and releasing the card."""
        conn = self._connection
        return conn.apdu_seconds + conn.connect_seconds if conn is not None else 0.0

    # -- connection -----------------------------------------------------------------------------------
    def _connection_for_use(self) -> PcscConnection:
        if self._connection is None:
            self._connection = PcscConnection(find_reader(self.reader_name), exclusive=self._exclusive,
                                              apdu_timeout=self.apdu_timeout)
        return self._connection

    def wait_for_card(self, timeout: float) -> None:
        """Block until a card is in the reader.  Raises DeviceNotReady(device='card') on timeout."""
        wait_for_card(find_reader(self.reader_name), timeout)

    @contextmanager
    def _operation(self, reset_after: bool = False) -> Iterator[tuple[IdCardApplication, CardSession]]:
        """A PC/SC transaction with the profile's application opened (selected) when needed."""
        connection = self._connection_for_use()
        with ExitStack() as stack:
            try:
                state = stack.enter_context(connection.transaction(reset_after=reset_after))
            except DeviceNotReady as err:
                if self.card_timeout <= 0 or err.data.get("device") != "card":
                    raise
                wait_for_card(connection.reader_name, self.card_timeout)
                state = stack.enter_context(connection.transaction(reset_after=reset_after))
            if state is not CardSession.SAME or self._application is None:
                self._application = None
                self._application = self.profile.open(connection)
            yield self._application, state

    # -- the card ---------------------------------------------------------------------------------------
    def _read_card_waiting(self) -> tuple[bytes, str]:
        """Read; with ``card_timeout``, keep trying across reader state changes until it runs out.

        A card swapped faster than pcscd polls looks present until the first APDU fails; so does a
        card still being inserted.  Each failure waits for the reader's next state change (removal,
        insertion), for at most one pcscd poll period; the first retry is immediate.
        """
        deadline = time.monotonic() + self.card_timeout
        known: int | None = None
        while True:
            try:
                return self._read_card()
            except DeviceNotReady as err:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or err.data.get("device") != "card":
                    raise
                # At most one pcscd poll period: vpcd (and readers without a card-detect switch) can
                # swap cards within one poll without any state change being reported.
                known = next_reader_state(find_reader(self.reader_name), known, min(remaining, PCSCD_POLL_S))

    def _read_card(self) -> tuple[bytes, str]:
        with self._operation() as (application, _state):
            return application.read_certificate(), application.read_card_uuid()

    def _verify_and_sign(self, pin: Pin, challenge: bytes, scheme: ChallengeScheme, key_bits: int,
                         certificate: x509.Certificate) -> bytes:
        """VERIFY without data, VERIFY, GENERAL AUTHENTICATE; the card is reset afterwards so the
        verified PIN does not outlive the call."""
        with self._operation(reset_after=True) as (application, state):
            if state is CardSession.NEW:
                der = application.read_certificate()
                if der != certificate.public_bytes(serialization.Encoding.DER):
                    self._certificate = None
                    raise CardChanged("a different card is in the reader")
            application.verify_pin(pin)
            return application.sign_challenge(challenge, scheme, key_bits)

    def pin_attempts(self) -> int | None:
        """PIN tries left on the card in the reader, read without spending one (to show before typing).

        None when the card reports its PIN verified.  Raises DeviceNotReady, CardError.
        """
        with self._lock, self._operation() as (application, _state):
            return application.pin_attempts()

    def close(self) -> None:
        """Disconnect (resetting the card) and forget what was read."""
        with self._lock:
            connection, self._connection = self._connection, None
            self._application = None
            self._certificate = None
            if connection is not None:
                connection.disconnect()

    def __enter__(self) -> IdCardReader:
        return self


def _key_bits(cert: x509.Certificate) -> int:
    key = cert.public_key()
    return key.key_size if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else 0


def _load_certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except _UNREADABLE as err:
        raise CertificateInvalid("certificate does not parse", reason="malformed") from err
