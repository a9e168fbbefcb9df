"""The flow engine over in-memory fakes (tests/fakes.py): every flow, every branch, in milliseconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devices.certificates import X509Reader
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.flows import ALL_FLOWS, FlowAccess
from kiosk.pin import Pin
from tests.fakes import CARD_PIN, FACTORY_SO, NOW, FakeCentral, FakeIdCard, FakePrinter, FakeToken, MemoryStore

TOKEN_PIN = "482916"


@dataclass
class Rig(FlowAccess):
    store: MemoryStore = field(default_factory=MemoryStore)
    central: FakeCentral = field(default_factory=FakeCentral)
    idcard: FakeIdCard = field(default_factory=FakeIdCard)
    token: FakeToken = field(default_factory=FakeToken)
    printer: FakePrinter = field(default_factory=FakePrinter)
    now: dt.datetime = NOW
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new kiosk process over the same store and devices: nothing in memory survives."""
        services = Services(self.store, self.central, self.idcard, self.token, self.printer, X509Reader())
        policy = KioskPolicy(office="Test office", factory_so_pin=FACTORY_SO)
        self.engine = Engine(services, policy, ALL_FLOWS, clock=lambda: self.now)

    def refresh_calendar(self) -> bool:
        """As the shell's kiosk: no central calendar is kept here."""
        return False

    def to_token_step(self, invoice: str = "147314016754") -> str:
        f = self.issuance
        sid = f.begin("mn").session_id
        f.consent(sid, True)
        f.find_order(sid, invoice)
        f.read_card(sid)
        f.verify_card_pin(sid, Pin(CARD_PIN))
        r = f.approve(sid, "clerk-1", f.current(sid).view.documents, False)
        assert r.step.value == "token"
        return sid

    def to_enrollment_step(self, invoice: str = "147314016754") -> str:
        sid = self.to_token_step(invoice)
        self.issuance.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
        assert self.issuance.generate_key(sid).step.value == "enrollment"
        return sid

    def issue(self, invoice: str = "147314016754") -> str:
        f = self.issuance
        sid = self.to_token_step(invoice)
        f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
        f.generate_key(sid)
        r = f.enroll(sid)
        assert r.error is None, r.error
        f.install(sid)
        r = f.print_receipt(sid)
        assert r.step.value == "done"
        return sid

    def data(self, sid: str) -> dict[str, Any]:
        return self.store.load(sid).data


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.engine.close()
