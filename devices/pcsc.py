"""The pyscard adapter: PC/SC readers and a :class:`~devices.apdu.SmartCardConnection` over them.

Every pyscard failure is translated here: an absent/pulled card → ``DeviceNotReady(device='card')``,
no reader or no PC/SC service → ``DeviceNotReady(device='reader')``, anything else → ``CardError``.
``PCSCLITE_CSOCK_NAME`` (a private pcscd) must be in the environment before the process's first
PC/SC call (importing is fine): libpcsclite reads it once per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import Enum, unique
from typing import Any

from smartcard import scard
from smartcard.CardConnection import CardConnection
from smartcard.CardRequest import CardRequest
from smartcard.Exceptions import (
    CardConnectionException,
    CardRequestTimeoutException,
    NoCardException,
    SmartcardException,
)
from smartcard.pcsc.PCSCCardConnection import PCSCCardConnection
from smartcard.pcsc.PCSCExceptions import BaseSCardException
from smartcard.System import readers as _pyscard_readers

from devices.apdu import ExtendedLengthUnsupported
from kiosk.errors import CardError, DeviceNotReady

_CARD_GONE = frozenset({
    scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_E_COMM_DATA_LOST,
    scard.SCARD_F_COMM_ERROR, scard.SCARD_E_PROTO_MISMATCH, scard.SCARD_E_SHARING_VIOLATION,
    scard.SCARD_W_RESET_CARD, scard.SCARD_E_INVALID_HANDLE, scard.SCARD_W_UNSUPPORTED_CARD,
})
_READER_GONE = frozenset({
    scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_NO_READERS_AVAILABLE,
    scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED,
})
# the handle is stale but a card may be there: connect again before giving up
_STALE_HANDLE = frozenset({scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_RESET_CARD, scard.SCARD_E_INVALID_HANDLE})
# SCardTransmit refusals that mean "this path cannot carry that APDU size"
_TOO_LONG = frozenset({scard.SCARD_E_INSUFFICIENT_BUFFER, scard.SCARD_E_INVALID_PARAMETER,
                       scard.SCARD_E_INVALID_VALUE, scard.SCARD_E_NOT_TRANSACTED})

# pyscard raises two unrelated hierarchies (smartcard.Exceptions and smartcard.pcsc.PCSCExceptions)
_PYSCARD_ERRORS = (SmartcardException, BaseSCardException)
_SCARD_PRESENT = 0x0004            # SCardStatus dwState bit (pcsclite.h); pyscard does not export it
_PROTOCOLS = CardConnection.T0_protocol | CardConnection.T1_protocol
# Measured (pcscd 2.0 + vpcd, pyscard 2.3): SCardTransmit to a card that never answers blocks until the
# card is pulled; SCardCancel does not end it, and SCardDisconnect or SCardConnect on that reader (any
# context) block as well, while SCardGetStatusChange still answers.  Removal ends the transmit at once.
DEFAULT_APDU_TIMEOUT = 10.0        # seconds; a real card's slowest APDU (RSA-2048 sign on T=0) is ~2 s


def _hresult(err: Exception) -> int:
    value = int(getattr(err, "hresult", -1))
    return value & 0xFFFFFFFF if value < 0 and value != -1 else value


def _code(value: int) -> str:
    return f"0x{value & 0xFFFFFFFF:08X}"


def translate_error(err: Exception, reader: str = "") -> Exception:
    """The kiosk error for a pyscard exception (the caller raises it ``from err``)."""
    if isinstance(err, NoCardException):
        return DeviceNotReady("no card in the reader", device="card", reader=reader)
    if isinstance(err, CardRequestTimeoutException):
        return DeviceNotReady("no card inserted in time", device="card", reader=reader)
    if isinstance(err, _PYSCARD_ERRORS):
        code = _hresult(err)
        if code in _CARD_GONE:
            return DeviceNotReady("card absent or not answering", device="card", reader=reader,
                                  pcsc=_code(code))
        if code in _READER_GONE:
            return DeviceNotReady("reader or PC/SC service unavailable", device="reader", reader=reader,
                                  pcsc=_code(code))
        return CardError("PC/SC failure", reader=reader, pcsc=_code(code) if code != -1 else "")
    return CardError("PC/SC failure", reader=reader)


def _status_error(code: int, reader: str) -> Exception:
    return translate_error(CardConnectionException("PC/SC call failed", hresult=code), reader)


# --- readers ----------------------------------------------------------------------------------------------
def list_readers() -> list[str]:
    """Names of the connected readers.  Raises DeviceNotReady(device='reader') without PC/SC service."""
    try:
        return [str(r) for r in _pyscard_readers()]
    except _PYSCARD_ERRORS as err:
        code = _hresult(err)
        if code == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        raise DeviceNotReady("PC/SC service unavailable", device="reader", pcsc=_code(code)) from err


def find_reader(name_part: str) -> str:
    """The first reader whose name contains ``name_part`` (case-insensitive).

    Raises DeviceNotReady(device='reader') when none does.
    """
    wanted = name_part.casefold()
    names = list_readers()
    for name in names:
        if wanted in name.casefold():
            return name
    raise DeviceNotReady("no such reader", device="reader", reader=name_part, readers=names)


def wait_for_card(reader_name: str, timeout: float) -> None:
    """Block until a card is in the reader named (or partly named) ``reader_name``; no polling sleeps.

    Raises DeviceNotReady(device='card') on timeout, DeviceNotReady(device='reader') without reader.
    """
    reader_name = find_reader(reader_name)
    try:
        with CardRequest(timeout=timeout, readers=[reader_name]) as request:
            service = request.waitforcard()
            if service is None:
                raise DeviceNotReady("no card inserted in time", device="card", reader=reader_name)
            # the service holds a PC/SC context of its own: release it now, not at garbage collection
            _release_quietly(service.connection)
    except _PYSCARD_ERRORS as err:
        raise translate_error(err, reader_name) from err


def wait_for_removal(reader_name: str, timeout: float) -> bool:
    """Block until ``reader_name`` is empty (PC/SC status change).  True when it is, False on timeout.

    Raises DeviceNotReady(device='reader') when the reader or the PC/SC service is gone.
    """
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if code != scard.SCARD_S_SUCCESS:
        raise _status_error(code, reader_name)
    try:
        deadline = time.monotonic() + timeout
        known = scard.SCARD_STATE_UNAWARE
        while True:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            code, states = scard.SCardGetStatusChange(context, remaining, [(reader_name, known)])
            if code == scard.SCARD_E_TIMEOUT:
                return False
            if code != scard.SCARD_S_SUCCESS:
                raise _status_error(code, reader_name)
            _name, event_state, _atr = states[0]
            if event_state & scard.SCARD_STATE_EMPTY:
                return True
            if remaining == 0:
                return False
            known = event_state & ~scard.SCARD_STATE_CHANGED
    finally:
        scard.SCardReleaseContext(context)


def next_reader_state(reader_name: str, known: int | None, timeout: float) -> int:
    """The reader's PC/SC state once it differs from ``known`` (None: the current state, at once).

    Returns the new state (event counter included), or ``known`` on timeout.  Raises
    DeviceNotReady(device='reader') when the reader or the PC/SC service is gone.
    """
    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if code != scard.SCARD_S_SUCCESS:
        raise _status_error(code, reader_name)
    try:
        current = scard.SCARD_STATE_UNAWARE if known is None else known
        wait_ms = 0 if known is None else max(0, int(timeout * 1000))
        code, states = scard.SCardGetStatusChange(context, wait_ms, [(reader_name, current)])
        if code == scard.SCARD_E_TIMEOUT:
            return current
        if code != scard.SCARD_S_SUCCESS:
            raise _status_error(code, reader_name)
        return int(states[0][1]) & ~scard.SCARD_STATE_CHANGED
    finally:
        scard.SCardReleaseContext(context)


def _release_quietly(obj: Any) -> None:
    with suppress(*_PYSCARD_ERRORS):
        obj.release()


# --- the connection ---------------------------------------------------------------------------------------
@unique
class CardSession(Enum):
    """What :meth:`PcscConnection.transaction` found: the same card session, a reset one, or a new card."""

    SAME = "same"          # volatile state (selected applet, PIN status) still holds
    RESET = "reset"        # same card, but reset by someone: select again
    NEW = "new"            # first connect, or the card was pulled and (re)inserted


class PcscConnection:
    """A card in one PC/SC reader; implements ``send_and_receive``.

    Connects lazily with T=0 or T=1 (whatever the card offers), shared mode unless ``exclusive``.
    ``apdu_count`` and ``apdu_seconds`` add up every exchange, for benchmarks.

    An APDU the card does not answer within ``apdu_timeout`` seconds raises
    DeviceNotReady(device='card', reason='not_answering'): PC/SC would wait until the card is pulled,
    so the transmit is left to a worker thread and the handle abandoned; until the card is pulled
    (which ends that transmit) every operation raises the same at once.  ``apdu_timeout`` 0: no bound.
    """

    def __init__(self, reader_name: str, *, exclusive: bool = False,
                 apdu_timeout: float = DEFAULT_APDU_TIMEOUT) -> None:
        self.reader_name = reader_name
        self.apdu_timeout = apdu_timeout
        self._hung: threading.Thread | None = None     # a transmit the card never answered
        self._mode = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        self._card: PCSCCardConnection | None = None
        self.apdu_count = 0
        self.apdu_seconds = 0.0
        self.connect_seconds = 0.0     # SCardListReaders/SCardConnect/SCardDisconnect, for benchmarks
        self._reset_on_drop = False
        self._reset_next_connect = False

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._card is not None

    def _check_not_hung(self) -> None:
        """Raise DeviceNotReady(reason='not_answering') while a transmit the card never answered is pending."""
        hung = self._hung
        if hung is None:
            return
        if hung.is_alive():
            raise DeviceNotReady("the card does not answer: take it out", device="card", reason="not_answering",
                                 reader=self.reader_name)
        self._hung = None

    def connect(self) -> None:
        """Connect to the card now in the reader.  Raises DeviceNotReady (card or reader)."""
        self._check_not_hung()
        self.disconnect()
        started = time.perf_counter()
        try:
            self._connect()
        finally:
            self.connect_seconds += time.perf_counter() - started

    def _connect(self) -> None:
        names = list_readers()
        if self.reader_name not in names:
            raise DeviceNotReady("no such reader", device="reader", reader=self.reader_name, readers=names)
        card: PCSCCardConnection | None = None
        try:
            card = PCSCCardConnection(self.reader_name)
            card.connect(protocol=_PROTOCOLS, mode=self._mode, disposition=scard.SCARD_RESET_CARD)
            if self._reset_next_connect:     # a PIN may still be verified from a dropped connection
                card.reconnect(protocol=_PROTOCOLS, mode=self._mode, disposition=scard.SCARD_RESET_CARD)
                self._reset_next_connect = False
        except _PYSCARD_ERRORS as err:
            if card is not None:
                _release_quietly(card)
            raise translate_error(err, self.reader_name) from err
        self._card = card

    def disconnect(self, reset: bool = True) -> None:
        """Leave the card (reset by default, which also drops a verified PIN)."""
        card, self._card = self._card, None
        if card is None:
            return
        card.disposition = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        started = time.perf_counter()
        _release_quietly(card)
        self.connect_seconds += time.perf_counter() - started

    close = disconnect

    @property
    def atr(self) -> bytes:
        card = self._require()
        try:
            return bytes(card.getATR())
        except _PYSCARD_ERRORS as err:
            self._drop()
            raise translate_error(err, self.reader_name) from err

    @property
    def protocol(self) -> str:
        """'T=0' or 'T=1'."""
        return "T=1" if self._require().getProtocol() == CardConnection.T1_protocol else "T=0"

    def _require(self) -> PCSCCardConnection:
        if self._card is None:
            raise DeviceNotReady("not connected to a card", device="card", reader=self.reader_name)
        return self._card

    def _drop(self) -> None:
        # Inside a reset_after transaction a PIN may be verified: the next connection resets the card
        # (resetting now could hit a card pcscd has not yet seen pulled, and wedge the reader).
        if self._reset_on_drop:
            self._reset_next_connect = True
        self.disconnect(reset=False)

    # -- transactions ---------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, reset_after: bool = False) -> Iterator[CardSession]:
        """Hold the card for one operation, connecting or reconnecting first as needed.

        Yields what happened to the card session since the last operation.  ``reset_after``
        resets the card when the transaction ends (drops the PIN's verified status).
        """
        self._check_not_hung()
        self._reset_on_drop = reset_after
        state = CardSession.SAME
        if self._card is None:
            self.connect()
            state = CardSession.NEW
        code = scard.SCardBeginTransaction(self._require().hcard)
        if code == scard.SCARD_W_RESET_CARD:
            state = CardSession.RESET          # reset by us (reset_after) or another process
            self._reconnect()
            code = scard.SCardBeginTransaction(self._require().hcard)
        if code in _STALE_HANDLE:
            state = CardSession.NEW            # pulled since the last operation, maybe reinserted
            self.connect()
            code = scard.SCardBeginTransaction(self._require().hcard)
        if code != scard.SCARD_S_SUCCESS:
            self._drop()
            raise _status_error(code, self.reader_name)
        try:
            yield state
        finally:
            card = self._card
            if card is not None:
                disposition = scard.SCARD_RESET_CARD if reset_after else scard.SCARD_LEAVE_CARD
                if scard.SCardEndTransaction(card.hcard, disposition) != scard.SCARD_S_SUCCESS:
                    self._drop()               # the next operation connects afresh
            self._reset_on_drop = False

    def _reconnect(self) -> None:
        """Acknowledge a reset on the same handle; falls back to a new connection."""
        card = self._require()
        try:
            card.reconnect(protocol=_PROTOCOLS, mode=self._mode, disposition=scard.SCARD_LEAVE_CARD)
        except _PYSCARD_ERRORS:
            self.connect()

    # -- the seam -------------------------------------------------------------------------------------
    def send_and_receive(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        """Transmit one command APDU; return (data, sw).

        Raises DeviceNotReady (card pulled / reader gone), ExtendedLengthUnsupported when the path
        refuses an extended APDU, CardError otherwise.
        """
        card = self._require()
        started = time.perf_counter()
        try:
            data, s1, s2 = self._transmit(card, apdu)
        except _PYSCARD_ERRORS as err:
            code = _hresult(err)
            if code in _TOO_LONG and _is_extended(apdu) and self._card_still_there():
                raise ExtendedLengthUnsupported(_code(code)) from err
            self._drop()
            if code == scard.SCARD_S_SUCCESS:         # pyscard: "Card returned no valid response"
                raise DeviceNotReady("card gave no response", device="card",
                                     reader=self.reader_name) from err
            raise translate_error(err, self.reader_name) from err
        finally:
            self.apdu_seconds += time.perf_counter() - started
            self.apdu_count += 1
        return bytes(data), (s1 << 8) | s2

    def _transmit(self, card: PCSCCardConnection, apdu: bytes | bytearray) -> tuple[list[int], int, int]:
        """``card.transmit``, waited on for at most ``apdu_timeout`` (in a worker thread)."""
        if self.apdu_timeout <= 0:
            return card.transmit(list(apdu))
        outcome: dict[str, Any] = {}
        done = threading.Event()
        abandoned = threading.Event()
        command = list(apdu)

        def run() -> None:
            try:
                outcome["response"] = card.transmit(command)
            except BaseException as err:     # handed to the caller's thread, raised there
                outcome["error"] = err
            finally:
                command.clear()
                done.set()
                if abandoned.is_set():       # answered (or pulled) after we gave up: let the handle go
                    _release_quietly(card)

        worker = threading.Thread(target=run, name=f"pcsc-transmit {self.reader_name}", daemon=True)
        worker.start()
        if not done.wait(self.apdu_timeout):
            abandoned.set()
            # Never disconnect a handle a transmit is blocked on (that blocks too): forget it instead.
            self._card = None
            if self._reset_on_drop:
                self._reset_next_connect = True
            self._hung = worker
            raise DeviceNotReady("the card does not answer", device="card", reason="not_answering",
                                 reader=self.reader_name, timeout_s=self.apdu_timeout)
        if "error" in outcome:
            raise outcome["error"]
        response: tuple[list[int], int, int] = outcome["response"]
        return response

    def _card_still_there(self) -> bool:
        card = self._card
        if card is None:
            return False
        code, _reader, state, _protocol, _atr = scard.SCardStatus(card.hcard)
        return code == scard.SCARD_S_SUCCESS and bool(state & _SCARD_PRESENT)

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


def _is_extended(apdu: bytes | bytearray) -> bool:
    """Whether a command APDU uses extended length fields (a 00 byte where a short Lc/Le would be)."""
    return len(apdu) > 5 and apdu[4] == 0
