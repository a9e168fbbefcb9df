"""One error base for the kiosk; every error carries a stable key the UI translates.

Nothing above ``devices/`` and ``sync/`` sees a vendor exception: the adapters translate
pyscard, pkcs11, escpos and requests errors into these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KioskError(Exception):
    """Base error.  ``key`` names a message in ``kiosk/locale/*.json``; ``data`` fills its fields.

    ``recoverable`` says whether the same step may be tried again after the person fixes the
    cause (re-inserts a card, loads paper); an unrecoverable error ends the session.
    """

    key: ClassVar[str] = "error.unexpected"
    recoverable: ClassVar[bool] = False

    def __init__(self, detail: str = "", **data: Any) -> None:
        super().__init__(detail or self.key)
        self.detail = detail
        self.data: dict[str, Any] = data

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "recoverable": self.recoverable, "data": dict(self.data)}


# --- configuration -------------------------------------------------------------------------------------
class ConfigError(KioskError):
    """A setting is missing or wrong; ``data['setting']`` names it."""

    key = "error.config"


# --- order ---------------------------------------------------------------------------------------------
class OrderNotFound(KioskError):
    key = "error.order_not_found"
    recoverable = True


class OrderNotPayable(KioskError):
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


class InvalidPin(KioskError):
    """Wrong PIN; ``data['attempts_remaining']`` is the count the device reported (None if unknown)."""

    key = "error.invalid_pin"
    recoverable = True


class PinBlocked(KioskError):
    key = "error.pin_blocked"


class PinPolicyViolation(KioskError):
    """The chosen PIN breaks the policy; ``data['rule']`` names the rule."""

    key = "error.pin_policy"
    recoverable = True


class CertificateInvalid(KioskError):
    """The ID card's certificate does not chain to a national trust anchor, or is out of validity."""

    key = "error.certificate_invalid"


class CardAuthenticationFailed(KioskError):
    """The card's signature over our challenge does not verify with its certificate."""

    key = "error.card_auth_failed"


class HolderMismatch(KioskError):
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


class KeyMismatch(KioskError):
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


class CentralRejected(KioskError):
    """The central service refused the request; ``data['reason']`` is its stable reason code."""

    key = "error.central_rejected"


# --- workflow ------------------------------------------------------------------------------------------
class StepOutOfOrder(KioskError):
    key = "error.step_out_of_order"


class ApprovalIncomplete(KioskError):
    """The clerk has not ticked every required document; ``data['missing']`` lists them."""

    key = "error.documents_missing"
    recoverable = True


class ConsentRequired(KioskError):
    key = "error.consent_required"
    recoverable = True


class PinRequired(KioskError):
    """The step needs the token's user PIN again (the kiosk never stores PINs, e.g. after a restart)."""

    key = "error.pin_required"
    recoverable = True


class WrongToken(TokenError):
    """Another eToken than the one this issuance prepared is in the slot; ``data['serial']`` is the right one."""

    key = "error.wrong_token"


class InvalidInput(KioskError):
    """Input the workflow cannot use (an unknown document code, untransliterable letters); ``data['field']``."""

    key = "error.invalid_input"
    recoverable = True


class SessionNotFound(KioskError):
    key = "error.session_not_found"


class TokenPinBlockedRestart(KioskError):
    """The eToken's user PIN got blocked before any certificate was issued: the token is prepared again."""

    key = "error.token_pin_blocked_restart"
    recoverable = True
