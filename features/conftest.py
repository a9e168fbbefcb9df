"""Step definitions for the issuance features: thin, over a ``KioskDriver`` on the simulated stack.

Every scenario gets its own SoftHSM token store, printer emulator, kiosk database and central
service (a copy of a central initialised once per test session); the private pcscd is shared by
the whole test process (libpcsclite fixes its socket at the first PC/SC call).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pytest_bdd import given, parsers, then, when

from central.runner import CentralServer
from devices.sim import faults as sim_faults
from devices.sim.faults import PullableToken
from devices.sim.national_ca import CardHolder
from devices.sim.pcscd import PrivatePcscd
from devices.sim.stack import CARD_PIN, SimulatedStack, apply_env
from devices.token import Pkcs11Token
from kiosk.engine import StepResult
from kiosk.errors import KioskError
from kiosk.flows.issuance import IssuanceStep
from kiosk.i18n import Translator
from kiosk.pin import Pin
from kiosk.ports import Receipt
from kiosk.shell import app, config
from kiosk.shell import log as kiosk_log

HOLDERS = {"Ариун": CardHolder("Ариун", "Баатар", "НЭ80000000"),
           "Эрдэнэ": CardHolder("Эрдэнэ", "Дорж", "ШУ78787878")}
INS_VERIFY = 0x20


class PowerCut(BaseException):
    """Raised by the crash-injecting store: nothing after it runs, as when the power goes."""


class CrashingStore:
    """Wraps the kiosk store; the transition recording ``crash_on`` never happens (power cut)."""

    def __init__(self, inner: Any, crash_on: str) -> None:
        self._inner = inner
        self._crash_on = crash_on

    def transition(self, state: Any, to_step: str, data: dict[str, Any], event: dict[str, Any],
                   durable: bool = False) -> Any:
        if event.get("kind") == self._crash_on:
            raise PowerCut(self._crash_on)
        return self._inner.transition(state, to_step, data, event, durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)



def as_written(text: str) -> str:
    """``text`` with CLDR's no-break spaces (``88,000\u00a0₮``) as the plain ones a feature file shows."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")

@dataclass
class KioskDriver:
    stack: SimulatedStack
    kiosk: app.Kiosk
    token: PullableToken
    logs: io.StringIO
    language: str = "mn"
    session_id: str = ""
    result: StepResult | None = None
    error: KioskError | None = None
    pins_used: set[str] = field(default_factory=set)
    token_pin_value: str = ""     # the eToken PIN the applicant chose last

    @property
    def flow(self) -> Any:
        return self.kiosk.issuance

    def do(self, action: str, *args: Any, **kwargs: Any) -> None:
        """Call a workflow step; keep its result, or the KioskError it raised (as the screen would)."""
        self.error = None
        try:
            self.result = getattr(self.flow, action)(self.session_id, *args, **kwargs)
        except KioskError as err:
            self.error = err

    def message(self) -> str:
        err = self.error or (self.result.error if self.result else None)
        assert err is not None, "no message shown"
        return as_written(Translator(self.language).error(err))

    def money(self, amount: int) -> str:
        """``amount`` in the applicant's language as a feature file writes it (``88,000 ₮``)."""
        return as_written(Translator(self.language).money(amount))

    def date(self, day: dt.date) -> str:
        """``day`` in the applicant's language as a feature file writes it (``2026 оны 12-р сарын 1``)."""
        return as_written(Translator(self.language).date(day))

    def pin(self, value: str) -> Pin:
        self.pins_used.add(value)
        return Pin(value)

    def begin(self) -> None:
        self.result = self.flow.begin(self.language)
        self.session_id = self.result.session_id

    def restart(self, clock: Any = None, config_path: Path | None = None) -> None:
        """A new kiosk process over the same configuration and database (or ``config_path``'s); the old one
        is gone.  ``clock`` replaces the kiosk's wall clock (a later day)."""
        self.kiosk.close()
        self.kiosk = app.start(config.load(config_path or self.stack.config_path), token=self.token, clock=clock)

    def step(self) -> str:
        return self.kiosk.store.load(self.session_id).step

    def token_pin(self) -> Pin:
        return Pin(self.token_pin_value)

    def crash_store_on(self, kind: str) -> None:
        """From now on, the transition recording ``kind`` is cut off by a power cut (this process only)."""
        engine = self.kiosk.engine
        engine.services = dataclasses.replace(engine.services, store=CrashingStore(self.kiosk.store, kind))


@pytest.fixture(scope="session")
def central_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A central data dir with its CA hierarchy and demo orders, made once and copied per scenario."""
    path = tmp_path_factory.mktemp("central-template")
    with CentralServer(path):
        pass
    for name in ("central.log",):
        (path / name).unlink(missing_ok=True)
    return path


@pytest.fixture
def driver(tmp_path: Path, private_pcscd: PrivatePcscd, central_template: Path) -> Iterator[KioskDriver]:
    stack = SimulatedStack(tmp_path / "stack", central_template=central_template)
    stack.start(pcscd=private_pcscd)
    apply_env(stack)
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(kiosk_log.JsonFormatter())
    # Everything the kiosk process logs, its libraries included; not the test harness's own step log.
    handler.addFilter(lambda record: not record.name.startswith("pytest_bdd"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    cfg = config.load(stack.config_path)
    pkcs11 = Pkcs11Token(str(cfg.token.module), rescan=True)
    pkcs11.reload()   # this scenario's SOFTHSM2_CONF
    token = PullableToken(pkcs11)
    kiosk = app.start(cfg, token=token)
    drv = KioskDriver(stack, kiosk, token, logs)
    try:
        yield drv
    finally:
        drv.kiosk.close()
        root.removeHandler(handler)
        root.setLevel(old_level)
        stack.stop()
        shutil.rmtree(tmp_path / "stack" / "softhsm", ignore_errors=True)


# --- Given -------------------------------------------------------------------------------------------
@given("the kiosk runs on simulated devices against the central service")
def _kiosk_runs(driver: KioskDriver) -> None:
    assert driver.kiosk.central.find_order("invoice", "147314016754").invoice == "147314016754"


@given("a blank eToken is in the token slot")
def _blank_token(driver: KioskDriver) -> None:
    info = driver.token.present()
    assert info.label == "eToken" and info.serial in driver.stack.token_serials


@given(parsers.parse("{name}'s ID card with register number \"{register}\" is in the reader"))
def _card_in_reader(driver: KioskDriver, name: str, register: str) -> None:
    holder = HOLDERS[name]
    assert holder.register_number == register
    driver.stack.insert_card(holder)


@given(parsers.parse('the applicant chose the language "{language}"'))
def _language(driver: KioskDriver, language: str) -> None:
    driver.language = language


@given("the printer is out of paper")
def _paper_out(driver: KioskDriver) -> None:
    assert driver.stack.printer is not None
    driver.stack.printer.paper = "out"


@given(parsers.parse('the applicant has been verified and approved with invoice "{invoice}"'))
def _verified_and_approved(driver: KioskDriver, invoice: str) -> None:
    driver.begin()
    for action, args in (("consent", (True,)), ("find_order", (invoice,)), ("read_card", ()),
                         ("verify_card_pin", (driver.pin(CARD_PIN),))):
        driver.do(action, *args)
        assert driver.error is None, driver.error
    driver.do("approve", "clerk-1", driver.result.view.documents, False)  # type: ignore[union-attr]
    assert driver.error is None and driver.step() == "token"


@given(parsers.parse('the applicant chose the eToken PIN "{pin}"'))
def _chose_token_pin(driver: KioskDriver, pin: str) -> None:
    driver.token_pin_value = pin
    driver.do("prepare_token", driver.pin(pin), Pin(pin))
    assert driver.error is None, driver.error


# --- When --------------------------------------------------------------------------------------------
@when("the applicant accepts the terms")
def _accepts(driver: KioskDriver) -> None:
    driver.begin()
    driver.do("consent", True)
    assert driver.error is None


@when(parsers.parse('the applicant enters invoice "{invoice}"'))
def _enters_invoice(driver: KioskDriver, invoice: str) -> None:
    driver.do("find_order", invoice)


@when("the applicant enters the register number of the unconfirmed order")
def _enters_unconfirmed(driver: KioskDriver) -> None:
    driver.do("find_order", "НН80101010")   # Цэцэг: paid, not confirmed (central/demo_orders.json)


@when("the kiosk reads the ID card")
def _reads_card(driver: KioskDriver) -> None:
    driver.do("read_card")


@when(parsers.parse('the applicant enters the ID-card PIN "{pin}"'))
def _card_pin(driver: KioskDriver, pin: str) -> None:
    if driver.step() == "identity" and "card" not in driver.kiosk.store.load(driver.session_id).data:
        driver.do("read_card")
        assert driver.error is None, driver.error
    driver.do("verify_card_pin", driver.pin(pin))


@when("the clerk ticks every document and approves")
def _approves(driver: KioskDriver) -> None:
    assert driver.result is not None
    driver.do("approve", "clerk-1", driver.result.view.documents, False)
    assert driver.error is None, driver.error


@when(parsers.parse('the applicant chooses the eToken PIN "{pin}" twice'))
def _chooses_pin(driver: KioskDriver, pin: str) -> None:
    driver.token_pin_value = pin
    driver.do("prepare_token", driver.pin(pin), Pin(pin))
    assert driver.error is None, driver.error


@when(parsers.parse('the applicant enters the eToken PIN "{pin}"'))
def _token_pin_again(driver: KioskDriver, pin: str) -> None:
    driver.pending_pin = driver.pin(pin)  # type: ignore[attr-defined]


@when("the kiosk generates the key")
def _generates(driver: KioskDriver) -> None:
    driver.do("generate_key", getattr(driver, "pending_pin", None))


@when("the kiosk generates the key, has the certificate issued and installs it")
def _generate_enroll_install(driver: KioskDriver) -> None:
    for action, args in (("generate_key", (getattr(driver, "pending_pin", None),)), ("enroll", ()),
                         ("install", ()), ("print_receipt", ())):
        driver.do(action, *args)
        assert driver.error is None, f"{action}: {driver.error!r} {driver.error.data if driver.error else ''}"


@when(parsers.parse('the applicant goes through the whole issuance with invoice "{invoice}"'))
def _whole_issuance(driver: KioskDriver, invoice: str) -> None:
    _verified_and_approved(driver, invoice)
    _chose_token_pin(driver, "482916")
    _generate_enroll_install(driver)


@when("the eToken is pulled just before the key pair is generated")
def _pull_before_keygen(driver: KioskDriver) -> None:
    driver.token.pull_before = "generate_key_pair"


@when("the eToken is pulled just before the certificate request is signed")
def _pull_before_csr(driver: KioskDriver) -> None:
    driver.token.pull_before = "sign_csr"


@when("the eToken reports its PIN blocked")
def _lock_pin(driver: KioskDriver) -> None:
    driver.token.lock_pin = True


@when("the eToken works again")
def _unlock_pin(driver: KioskDriver) -> None:
    driver.token.lock_pin = False


@when(parsers.parse("{name}'s ID card is put in the reader instead"))
def _swap_card(driver: KioskDriver, name: str) -> None:
    driver.stack.insert_card(HOLDERS[name])


@when("the order is cancelled at the central service")
def _cancel_at_central(driver: KioskDriver) -> None:
    assert driver.stack.central is not None
    invoice = driver.kiosk.store.load(driver.session_id).data["order"]["invoice"]
    driver.stack.central.manage("cancel", invoice)


@when("the eToken is inserted again")
def _insert_token(driver: KioskDriver) -> None:
    driver.token.insert()


@when("the kiosk loses power right after the key pair is generated on the eToken")
def _power_cut(driver: KioskDriver) -> None:
    driver.crash_store_on("key.generated")
    with pytest.raises(PowerCut):
        driver.flow.generate_key(driver.session_id)


@when("the kiosk loses power after the eToken stored the public key and before the private key")
def _power_cut_in_keygen(driver: KioskDriver) -> None:
    driver.token.crash_keygen_half = True
    with pytest.raises(sim_faults.PowerCut):
        driver.flow.generate_key(driver.session_id)


@when("the kiosk loses power inside the eToken's initialisation")
def _power_cut_in_init(driver: KioskDriver) -> None:
    driver.token_pin_value = "482916"
    driver.token.crash_init_token = True
    with pytest.raises(sim_faults.PowerCut):
        driver.flow.prepare_token(driver.session_id, driver.pin("482916"), Pin("482916"))
    assert not driver.token.present().initialised or driver.token.present().serial not in driver.stack.token_serials


@when("the clerk ends the visit with the certificate pending")
def _defer(driver: KioskDriver) -> None:
    driver.do("defer")
    assert driver.error is None and driver.step() == "pending", driver.error


@then("a receipt saying the certificate is pending was printed")
def _pending_receipt(driver: KioskDriver) -> None:
    assert driver.stack.printer is not None and driver.stack.printer.wait_for_jobs(1)
    assert driver.kiosk.store.receipt_status(f"{driver.session_id}:pending") == "printed"
    assert driver.kiosk.store.receipt_status(driver.session_id) is None


@when(parsers.parse('the applicant inserts the eToken again and enters the eToken PIN "{pin}"'))
def _insert_again(driver: KioskDriver, pin: str) -> None:
    serial = driver.token.present().serial
    (waiting,) = driver.flow.waiting_for_token(serial)
    assert waiting.session_id == driver.session_id
    for action, args in (("fetch_certificate", ()), ("install", (driver.pin(pin),)), ("print_receipt", ())):
        driver.do(action, *args)
        assert driver.error is None, (action, driver.error)


@when("the kiosk restarts")
def _restart(driver: KioskDriver) -> None:
    driver.restart()


@when("paper is loaded and the clerk reprints the receipt")
def _reprint(driver: KioskDriver) -> None:
    assert driver.stack.printer is not None
    driver.stack.printer.paper = "ok"
    driver.flow.reprint(driver.session_id)


# --- Then --------------------------------------------------------------------------------------------
@then(parsers.parse('the kiosk shows the order as paid with total "{total}"'))
def _shows_paid(driver: KioskDriver, total: str) -> None:
    assert driver.error is None, driver.error
    assert driver.result is not None
    order = driver.result.view.order
    assert order is not None
    t = Translator(driver.language)
    fees = {line.item.value: line.amount_mnt for line in order.fees}
    assert as_written(t.money(fees["total"])) == total == as_written(t.money(order.total_mnt))
    assert order.paid_mnt >= fees["total"]
    assert driver.result.step is IssuanceStep.IDENTITY


@then("the identity is verified")
def _verified(driver: KioskDriver) -> None:
    assert driver.error is None, driver.error
    assert driver.result is not None and driver.result.step is IssuanceStep.APPROVAL
    assert driver.result.view.card is not None and driver.result.view.card.verified is True


@then(parsers.parse('the kiosk refuses with "{text}"'))
def _refuses(driver: KioskDriver, text: str) -> None:
    """A refusal raised by the step, or an outcome the step ended the session with (e.g. cancelled at central)."""
    refused = driver.error or (driver.result.error if driver.result else None)
    assert refused is not None, "the kiosk did not refuse"
    assert text in driver.message()


@then(parsers.parse('the kiosk says "{text}"'))
def _says(driver: KioskDriver, text: str) -> None:
    assert text in driver.message()


@then(parsers.parse("the session is still at the {step} step"))
def _still_at(driver: KioskDriver, step: str) -> None:
    assert driver.step() == step


@then("no PIN was asked of the card")
def _no_verify(driver: KioskDriver) -> None:
    assert driver.stack.card is not None
    assert all(ins != INS_VERIFY for ins, _ in driver.stack.card.apdu_log)


@then("the issuance is done")
def _done(driver: KioskDriver) -> None:
    assert driver.step() == "done"


def _token_session(driver: KioskDriver) -> Any:
    state = driver.kiosk.store.load(driver.session_id)
    return driver.token.inner.session(state.data["token"]["serial"], driver.token_pin()), state


@then("the eToken holds a sensitive, never-extractable key and a certificate with the same ID")
def _token_holds(driver: KioskDriver) -> None:
    session, state = _token_session(driver)
    key_id = bytes.fromhex(state.data["key_id"])
    with session as s:
        assert s.key_ids() == [key_id]
        assert s.key_attributes(key_id) == {"sensitive": True, "extractable": False,
                                            "never_extractable": True, "always_sensitive": True}
        assert any(cid == key_id for cid, _ in s.certificates())


@then("the eToken holds exactly one key pair")
def _one_key(driver: KioskDriver) -> None:
    session, state = _token_session(driver)
    with session as s:
        assert s.key_ids() == [bytes.fromhex(state.data["key_id"])]


@then("the certificate chains to the central CA and names the order's holder")
def _chains(driver: KioskDriver) -> None:
    state = driver.kiosk.store.load(driver.session_id)
    cert = x509.load_pem_x509_certificate(state.data["certificate"]["pem"].encode())
    issuing, root = (x509.load_pem_x509_certificate(p.encode()) for p in state.data["certificate"]["chain"])
    cert.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    serial = cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value
    assert serial == "PNOMN-NE80000000"
    assert cert.subject.get_attributes_for_oid(x509.NameOID.GIVEN_NAME)[0].value == "Ариун"


@then(parsers.parse('a receipt in Mongolian was printed with the certificate serial and "{amount}"'))
def _receipt_mn(driver: KioskDriver, amount: str) -> None:
    assert driver.stack.printer is not None
    jobs = driver.stack.printer.wait_for_jobs(1)
    assert jobs, "nothing printed"
    _, receipt = _last_receipt(driver)
    text = as_written("\n".join(receipt.text()))
    serial = driver.kiosk.store.load(driver.session_id).data["certificate"]["serial"]
    assert serial[:4] in text and "ТООН ГАРЫН ҮСГИЙН ГЭРЧИЛГЭЭ" in text and amount in text
    assert receipt.language == "mn"


def _last_receipt(driver: KioskDriver) -> Any:
    rows = list(driver.kiosk.store.db.query("select payload from receipts where session_id = ?",
                                            [driver.session_id]))
    return rows, Receipt.from_dict(json.loads(rows[0]["payload"]))


@then(parsers.parse('a receipt titled "{title}" was printed'))
def _receipt_title(driver: KioskDriver, title: str) -> None:
    assert driver.stack.printer is not None and driver.stack.printer.wait_for_jobs(1)
    _, receipt = _last_receipt(driver)
    assert receipt.lines[0].text == title
    assert receipt.language == driver.language


@then("the receipt is kept for a reprint")
def _kept(driver: KioskDriver) -> None:
    assert driver.kiosk.store.receipt_status(driver.session_id) == "pending"
    assert driver.stack.printer is not None and driver.stack.printer.jobs == []
    assert driver.kiosk.store.load(driver.session_id).data["receipt_pending"] is True


@then("no receipt is waiting for a reprint")
def _none_pending(driver: KioskDriver) -> None:
    assert driver.kiosk.store.pending_receipts() == []


@then("no PIN appears in the database, the logs or the receipt")
def _no_pin_anywhere(driver: KioskDriver) -> None:
    db_dir = driver.kiosk.config.kiosk.data_dir
    blobs = {p.name: p.read_bytes() for p in db_dir.iterdir() if p.is_file()}
    _, receipt = _last_receipt(driver)
    receipt_text = "\n".join(receipt.text())
    logs = driver.logs.getvalue()
    assert logs, "the kiosk logged nothing"
    for pin in driver.pins_used:
        for name, blob in blobs.items():
            assert pin.encode() not in blob, f"PIN found in {name}"
        assert pin not in logs
        assert pin not in receipt_text


@then("the restarted kiosk resumes the session at the keygen step and asks for the eToken PIN")
def _resumes(driver: KioskDriver) -> None:
    unfinished = driver.flow.unfinished()
    assert [r.session_id for r in unfinished] == [driver.session_id]
    assert unfinished[0].step is IssuanceStep.KEYGEN
    assert unfinished[0].view.pin_needed is True
    assert driver.flow.resume_step(driver.session_id) is None   # it cannot go on without the PIN


@when("the central service goes down")
def _central_down(driver: KioskDriver) -> None:
    central = driver.stack.central
    assert central is not None
    central.port = int(central.url.rsplit(":", 1)[1])   # come back on the same address
    central.stop()


@when("the central service is back")
def _central_back(driver: KioskDriver) -> None:
    assert driver.stack.central is not None
    driver.stack.central.start()


@when("the kiosk asks the central service to issue the certificate")
def _enroll(driver: KioskDriver) -> None:
    driver.do("enroll")


@when("the kiosk installs the certificate and prints the receipt")
def _install_and_print(driver: KioskDriver) -> None:
    for action in ("install", "print_receipt"):
        driver.do(action)
        assert driver.error is None, f"{action}: {driver.error!r}"


@then("the kiosk asks for the eToken PIN again")
def _asks_pin_again(driver: KioskDriver) -> None:
    assert driver.flow.current(driver.session_id).view.pin_needed is True
    assert driver.flow.resume_step(driver.session_id) is None
    driver.pending_pin = None  # type: ignore[attr-defined]


@then("the clerk cannot cancel a session whose certificate was issued")
def _no_cancel_after_issue(driver: KioskDriver) -> None:
    from kiosk.errors import CannotCancel

    other = driver.flow.begin("mn")
    state = driver.kiosk.store.create("issued-session", "issuance", "install", "mn", {})
    with pytest.raises(CannotCancel):
        driver.flow.cancel(state.id, "applicant left")
    assert driver.flow.cancel(other.session_id, "applicant left").step is IssuanceStep.CANCELLED
