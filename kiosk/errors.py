"""One error base for the kiosk; every error carries a stable key the UI translates.

Nothing above ``devices/`` and ``sync/`` sees a vendor exception: the adapters translate
pyscard, pkcs11, escpos and requests errors into these.  The tree says what the screen needs:

* :class:`InputRefused` — what the person typed or chose cannot be used; they correct it;
* :class:`RequestRefused` — the request is refused for a reason (``data['reason']`` or the class);
* :class:`DeviceNotReady` — a device is absent or was pulled; put it back and go on;
* :class:`CentralUnavailable` — the central service cannot be reached now; try again later;
* :class:`StaleSession` / :class:`WrongStep` / :class:`SessionNotFound` — the screen is out of
  date with the session (another writer moved on, or a button of an old screen): reload it.

A step either refuses (raises, and the session's step is unchanged; it may journal the attempt)
or moves the session on and returns the outcome as a value — never both.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KioskError(Exception):
    """Base error.  ``key`` names a message in ``kiosk/locale/<lang>/*.po``; ``data`` fills its fields.

    ``recoverable``: the same step may be tried again once the person fixes the cause (re-types,
    re-inserts a card, loads paper, waits for the network); the session stays where it is.  An
    unrecoverable error means trying the same again cannot succeed: the session must take another
    way (a clerk, another card, a new order) or end.
    """

    key: ClassVar[str] = "error.unexpected"
    recoverable: ClassVar[bool] = False

    def __init__(self, detail: str = "", **data: Any) -> None:
        super().__init__(detail or self.key)
        self.detail = detail
        self.data: dict[str, Any] = data

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "recoverable": self.recoverable, "data": dict(self.data)}


class InputRefused(KioskError):
    """What the person entered cannot be used; they may correct it and try again."""

    key = "error.invalid_input"
    recoverable = True


class RequestRefused(KioskError):
    """The request is refused for a reason the person can be told; trying again will not change it."""

    key = "error.request_refused"


# --- configuration -------------------------------------------------------------------------------------
class ConfigError(KioskError):
    """A setting is missing or wrong; ``data['setting']`` names it."""

    key = "error.config"


# --- order ---------------------------------------------------------------------------------------------
class OrderNotFound(InputRefused):
    key = "error.order_not_found"
    recoverable = True


class OrderNotPayable(RequestRefused):
    """The order may not proceed; ``data['reason']`` is one of the ``OrderRefusal`` values."""

    key = "error.order_refused"


# --- identity ------------------------------------------------------------------------------------------
class CardError(KioskError):
    """The ID card answered something the profile does not accept (bad status word, malformed data)."""

    key = "error.card"
    recoverable = True


class CardChanged(CardError):
    """Another card than the one read for this session is in the reader; its PIN was not asked."""

    key = "error.card_changed"


class CardNotSupported(KioskError):
    key = "error.card_not_supported"
    recoverable = True


class InvalidPin(InputRefused):
    """Wrong PIN; ``data['attempts_remaining']`` is the count the device reported (None if unknown)."""

    key = "error.invalid_pin"
    recoverable = True


class PinBlocked(RequestRefused):
    key = "error.pin_blocked"


class PinPolicyViolation(InputRefused):
    """The chosen PIN breaks the policy; ``data['rule']`` names the rule."""

    key = "error.pin_policy"
    recoverable = True


class CertificateInvalid(RequestRefused):
    """The ID card's certificate does not chain to a national trust anchor, or is out of validity."""

    key = "error.certificate_invalid"


class CardExpired(CertificateInvalid):
    """The ID card's certificate is out of its validity period (``reason`` expired or not_yet_valid)."""

    key = "error.card_expired"


class CardIssuerUnknown(CertificateInvalid):
    """The ID card was not issued by a national CA this kiosk trusts for its country profile."""

    key = "error.card_issuer_unknown"


class CardWrongUsage(CertificateInvalid):
    """The ID card's certificate may not be used to authenticate its holder (key usage, EKU, a CA)."""

    key = "error.card_wrong_usage"


class CardRevoked(CertificateInvalid):
    """The ID card's certificate is revoked (``data['method']`` ocsp or crl, ``revoked_at``)."""

    key = "error.card_revoked"


class RevocationUnknown(CertificateInvalid):
    """Whether the ID card is revoked cannot be told now (``data['reason']``: no answer, a bad answer,
    a CRL older than the grace); the kiosk does not take such a card."""

    key = "error.card_status_unknown"


class CardAlgorithmRefused(CardNotSupported):
    """The card's key or signature algorithm is not on the allow-list (``data['algorithm']``)."""

    key = "error.card_algorithm_refused"
    recoverable = False


class CardAuthenticationFailed(RequestRefused):
    """The card's signature over our challenge does not verify with its certificate."""

    key = "error.card_auth_failed"


class HolderMismatch(RequestRefused):
    key = "error.holder_mismatch"


# --- devices -------------------------------------------------------------------------------------------
class DeviceNotReady(KioskError):
    """A device is absent or was pulled; ``data['device']`` is 'reader', 'card', 'token' or 'printer'."""

    key = "error.device_not_ready"
    recoverable = True


class TokenError(KioskError):
    key = "error.token"
    recoverable = True


class TokenSoPinUnknown(TokenError):
    """The eToken's SO PIN is neither the factory one nor one this kiosk set: the clerk must reset it."""

    key = "error.token_so_pin_unknown"
    recoverable = False


class KeyMismatch(RequestRefused):
    """The issued certificate's public key is not the token's key."""

    key = "error.key_mismatch"


class PaperOut(KioskError):
    key = "error.paper_out"
    recoverable = True


class PrinterError(KioskError):
    key = "error.printer"
    recoverable = True


# --- central -------------------------------------------------------------------------------------------
class CentralUnavailable(KioskError):
    """The central service did not answer, or answered 5xx; try again later."""

    key = "error.central_unavailable"
    recoverable = True


class CentralRejected(RequestRefused):
    """The central service refused the request; ``data['reason']`` is its stable reason code."""

    key = "error.central_rejected"


# --- workflow ------------------------------------------------------------------------------------------
class WrongStep(KioskError):
    """The session is not at the step this call belongs to (a button of an old screen): show its step.

    ``data``: ``session_id``, ``expected`` (the step the call needs), ``actual`` (the session's step).
    """

    key = "error.wrong_step"


class StaleSession(KioskError):
    """Another writer moved the session on since it was loaded (``data['expected_version']``): reload it."""

    key = "error.stale_session"


class CannotCancel(RequestRefused):
    """The session may not be cancelled at its step (``data['step']``), e.g. a certificate was issued."""

    key = "error.cannot_cancel"


class ApprovalIncomplete(InputRefused):
    """The clerk has not ticked every required document; ``data['missing']`` lists them."""

    key = "error.documents_missing"


class ApplicationRejected(RequestRefused):
    """The clerk rejected the application at approval; ``data['reason']`` is a RejectReason value."""

    key = "error.application_rejected"


class ConsentRequired(InputRefused):
    key = "error.consent_required"


class PinRequired(InputRefused):
    """The step needs the token's user PIN again (the kiosk never stores PINs, e.g. after a restart)."""

    key = "error.pin_required"


class TokenWiped(TokenError):
    """The eToken came back blank (a power cut inside its PIN write): its key and certificate are gone,
    so the certificate must be revoked and a new one issued; ``data['serial']`` is the token it was."""

    key = "error.token_wiped"
    recoverable = False


class WrongToken(TokenError):
    """Another eToken than the one this session prepared is in the slot; ``data['serial']`` is the right one."""

    key = "error.wrong_token"


class InvalidInput(InputRefused):
    """Input the workflow cannot use (an unknown document code, untransliterable letters); ``data['field']``."""

    key = "error.invalid_input"


class SessionNotFound(KioskError):
    key = "error.session_not_found"


class TokenPinBlockedRestart(RequestRefused):
    """The eToken's user PIN got blocked before any certificate was issued: the token is prepared again."""

    key = "error.token_pin_blocked_restart"


class RenewalNotPossible(RequestRefused):
    """Renewal is refused; ``data['reason']``: ``too_late`` (``last_request_day``), ``insufficient_balance``
    (``balance``, ``due``), ``not_renewable`` (revoked or expired), ``details_changed``."""

    key = "error.renewal_not_possible"


class NoCertificateOnToken(RequestRefused):
    """The eToken holds no certificate of ours (a blank or foreign token)."""

    key = "error.no_certificate_on_token"
