"""Steps for features/after_issuance.feature: renewal, revocation, unblock and token check.

Thin over the ``driver`` of features/conftest.py (the kiosk on the simulated stack, a fresh central per
scenario).  SoftHSM never locks a PIN: "the eToken's PIN is blocked" uses the fault-injecting token
adapter (devices/sim/faults.py), which blocks it as a real token would until an SO unblock.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING, Any

from pytest_bdd import given, parsers, scenarios, then, when

from devices.sim.stack import CARD_PIN
from kiosk.errors import KioskError, RenewalNotPossible
from kiosk.pin import Pin
from kiosk.ports import RevocationReason
from kiosk.workdays import default_calendar

if TYPE_CHECKING:
    from features.conftest import KioskDriver

scenarios("after_issuance.feature")

TOKEN_PIN = "482916"


def _run(driver: KioskDriver, flow: Any, action: str, *args: Any, **kwargs: Any) -> Any:
    """Call a step; keep its result or the KioskError it raised, as the screen would."""
    driver.error = None
    try:
        driver.result = getattr(flow, action)(driver.session_id, *args, **kwargs)
    except KioskError as err:
        driver.error = err
    return driver.result


def _begin(driver: KioskDriver, flow: Any) -> None:
    driver.result = flow.begin(driver.language)
    driver.session_id = driver.result.session_id


def _later(days: float) -> Any:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return lambda: at


# --- Given ---------------------------------------------------------------------------------------------
@given(parsers.parse('{name} has an eToken issued with invoice "{invoice}" that expires in {days:d} days'))
@given(parsers.parse('{name} has an eToken issued with invoice "{invoice}"'))
def _issued(driver: KioskDriver, name: str, invoice: str, days: int | None = None) -> None:
    f = driver.kiosk.issuance
    _begin(driver, f)
    steps: list[tuple[str, tuple[Any, ...]]] = [
        ("consent", (True,)), ("find_order", (invoice,)), ("read_card", ()), ("verify_card_pin", (Pin(CARD_PIN),))]
    for action, args in steps:
        _run(driver, f, action, *args)
        assert driver.error is None, (action, driver.error)
    _run(driver, f, "approve", "clerk-1", driver.result.view.documents, False)
    driver.token_pin_value = TOKEN_PIN
    driver.pins_used.add(TOKEN_PIN)
    for action, args in (("prepare_token", (Pin(TOKEN_PIN), Pin(TOKEN_PIN))), ("generate_key", ()),
                         ("enroll", ()), ("install", ()), ("print_receipt", ())):
        _run(driver, f, action, *args)
        assert driver.error is None and driver.result.error is None, (action, driver.error, driver.result.error)
    data = driver.kiosk.store.load(driver.session_id).data
    driver.issued = data  # type: ignore[attr-defined]
    if days is not None:
        not_after = dt.datetime.fromisoformat(data["certificate"]["not_after"])
        assert abs((not_after - dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)) < dt.timedelta(hours=1)


@given("the kiosk's date is the last day renewal would be on time without holidays")
def _last_day(driver: KioskDriver) -> None:
    not_after = dt.datetime.fromisoformat(driver.issued["certificate"]["not_after"])  # type: ignore[attr-defined]
    tz = driver.kiosk.config.tz
    expiry = not_after.astimezone(tz).date()
    plain = default_calendar("MN")
    last = plain.last_request_day(expiry)
    driver.kiosk_day = last  # type: ignore[attr-defined]
    driver.between = [d for d in (last + dt.timedelta(days=i) for i in range(1, (expiry - last).days))  # type: ignore[attr-defined]
                      if plain.is_working_day(d)]
    assert len(driver.between) == 3  # type: ignore[attr-defined]


@given("a public holiday falls between that day and the expiry")
def _holiday(driver: KioskDriver) -> None:
    holiday = driver.between[1]  # type: ignore[attr-defined]
    with driver.stack.config_path.open("a", encoding="utf-8") as fh:
        fh.write(f'\n[calendar]\ndated_holidays = ["{holiday.isoformat()}"]\n')
    noon = dt.datetime.combine(driver.kiosk_day, dt.time(12), driver.kiosk.config.tz)  # type: ignore[attr-defined]
    driver.restart(clock=lambda: noon)


@given(parsers.parse('the organisation "{register}" has a balance of {amount:d}'))
def _balance(driver: KioskDriver, register: str, amount: int) -> None:
    assert driver.stack.central is not None
    driver.stack.central.manage("set-balance", register, str(amount))


@given("the holder renewed the certificate on the eToken")
def _renewed(driver: KioskDriver) -> None:
    _asks_renewal(driver)
    assert driver.error is None, driver.error
    _confirms_renewal(driver)
    assert driver.error is None and driver.result.error is None, (driver.error, driver.result.error)
    driver.renewed = driver.kiosk.store.load(driver.session_id).data  # type: ignore[attr-defined]


@given("the eToken is lost")
def _lost(driver: KioskDriver) -> None:
    driver.token.pull()


@given("the eToken's PIN is blocked")
def _blocked(driver: KioskDriver) -> None:
    driver.token.lock_pin = True


@given("the holder goes to another kiosk of the office")
def _other_kiosk(driver: KioskDriver) -> None:
    path = driver.stack.config_path
    other_data = path.parent / "other-kiosk-data"
    text = path.read_text(encoding="utf-8")
    lines = [f'data_dir = "{other_data}"' if ln.startswith("data_dir =") else ln for ln in text.splitlines()]
    other = path.with_name("kiosk-2.toml")
    other.write_text("\n".join(lines) + "\n", encoding="utf-8")
    driver.restart(config_path=other)
    assert driver.kiosk.store.token_secret(driver.issued["token"]["serial"]) is None  # type: ignore[attr-defined]


@given("the certificate was revoked at the central")
def _revoked_at_central(driver: KioskDriver) -> None:
    serial = driver.issued["certificate"]["serial"]  # type: ignore[attr-defined]
    driver.kiosk.central.revoke(serial, RevocationReason.KEY_COMPROMISE,
                                driver.issued["card"]["serial_number"], uuid.uuid4().hex)  # type: ignore[attr-defined]


# --- When ----------------------------------------------------------------------------------------------
@when("the holder asks to renew the certificate on the eToken")
def _asks_renewal(driver: KioskDriver) -> None:
    _begin(driver, driver.kiosk.renewal)
    _run(driver, driver.kiosk.renewal, "read_token")


@when("the holder confirms the details are unchanged and signs the application with the eToken PIN")
def _confirms_renewal(driver: KioskDriver) -> None:
    f = driver.kiosk.renewal
    _run(driver, f, "confirm", details_unchanged=True, pin=Pin(TOKEN_PIN))
    assert driver.error is None and driver.result.error is None, (driver.error, driver.result.error)
    for action in ("install", "print_receipt"):
        _run(driver, f, action)
        assert driver.error is None, (action, driver.error)


@when("the holder checks the eToken before the old certificate expires")
def _check_before(driver: KioskDriver) -> None:
    _check(driver, TOKEN_PIN)


@when("the holder checks the eToken the day after the old certificate expired")
def _check_after(driver: KioskDriver) -> None:
    old_not_after = dt.datetime.fromisoformat(driver.renewed["certificate"]["not_after"])  # type: ignore[attr-defined]
    later = old_not_after + dt.timedelta(days=1)
    driver.restart(clock=lambda: later)
    _check(driver, TOKEN_PIN)


@when(parsers.parse('the holder checks the eToken with the PIN "{pin}"'))
def _check(driver: KioskDriver, pin: str) -> None:
    f = driver.kiosk.check
    _begin(driver, f)
    _run(driver, f, "read_token")
    assert driver.error is None, driver.error
    _run(driver, f, "check", Pin(pin))
    assert driver.error is None, driver.error


@when(parsers.parse('the holder asks to revoke a certificate and proves who they are with the ID-card PIN "{pin}"'))
def _revocation_identity(driver: KioskDriver, pin: str) -> None:
    f = driver.kiosk.revocation
    _begin(driver, f)
    for action, args in (("consent", (True,)), ("read_card", ()), ("verify_card_pin", (Pin(pin),))):
        _run(driver, f, action, *args)
        assert driver.error is None, (action, driver.error)


@when(parsers.parse('the holder picks the certificate and the reason "{reason}" and the clerk confirms'))
def _revocation_choice(driver: KioskDriver, reason: str) -> None:
    f = driver.kiosk.revocation
    serial = driver.issued["certificate"]["serial"]  # type: ignore[attr-defined]
    assert serial in [c.serial for c in driver.result.view.certificates]
    for action, args in (("choose", (serial, reason)), ("confirm", ("clerk-1",)), ("print_receipt", ())):
        _run(driver, f, action, *args)
        assert driver.error is None and driver.result.error is None, (action, driver.error, driver.result.error)


@when("the holder asks to unblock the eToken PIN and proves who they are with the ID-card PIN \"730419\"")
def _unblock_identity(driver: KioskDriver) -> None:
    _unblock_start(driver)
    for action, args in (("read_card", ()), ("verify_card_pin", (Pin(CARD_PIN),))):
        _run(driver, driver.kiosk.unblock, action, *args)
        assert driver.error is None, (action, driver.error)


@when("the holder asks to unblock the eToken PIN")
def _unblock_start(driver: KioskDriver) -> None:
    f = driver.kiosk.unblock
    _begin(driver, f)
    for action, args in (("consent", (True,)), ("read_token", ())):
        _run(driver, f, action, *args)
        assert driver.error is None, (action, driver.error)
    _run(driver, f, "read_card")


@when(parsers.parse('the holder chooses the new eToken PIN "{pin}" twice'))
def _new_pin(driver: KioskDriver, pin: str) -> None:
    driver.pins_used.add(pin)
    _run(driver, driver.kiosk.unblock, "set_pin", Pin(pin), Pin(pin))
    assert driver.error is None, driver.error


# --- Then ----------------------------------------------------------------------------------------------
@then(parsers.parse('the kiosk offers renewal with {days:d} days left and a fee of "{fee}"'))
def _offers(driver: KioskDriver, days: int, fee: str) -> None:
    assert driver.error is None, driver.error
    offer = driver.result.view.renewal
    assert offer is not None and offer.days_left in (days - 1, days)
    assert driver.money(offer.fee_mnt) == fee


@then("the new certificate is installed beside the old one")
def _beside(driver: KioskDriver) -> None:
    data = driver.kiosk.store.load(driver.session_id).data
    assert driver.kiosk.store.load(driver.session_id).step == "done"
    with driver.token.inner.session(data["token"]["serial"], Pin(TOKEN_PIN)) as s:
        ids = set(s.key_ids())
        certs = {kid for kid, _ in s.certificates()}
    assert ids == {bytes.fromhex(data["certificate"]["key_id"]), bytes.fromhex(data["new_key_id"])}
    assert ids <= certs


@then(parsers.parse("the organisation's balance went down by {amount:d}"))
def _balance_down(driver: KioskDriver, amount: int) -> None:
    assert driver.stack.central is not None
    shown = json.loads(driver.stack.central.manage("show-organisation", "1234567"))
    assert shown["balance_mnt"] == 500_000 - amount


@then("a renewal receipt was printed")
def _renewal_receipt(driver: KioskDriver) -> None:
    assert driver.kiosk.store.receipt_status(driver.session_id) == "printed"
    assert driver.stack.printer is not None and len(driver.stack.printer.wait_for_jobs(2)) >= 2


@then("the kiosk refuses renewal as too late, naming the last day")
def _too_late(driver: KioskDriver) -> None:
    assert isinstance(driver.error, RenewalNotPossible) and driver.error.data["reason"] == "too_late"
    last = dt.date.fromisoformat(driver.error.data["last_request_day"])
    assert last < driver.kiosk_day  # type: ignore[attr-defined]
    assert driver.date(last) in driver.message()       # as the applicant's language writes dates


@then("no renewal request reached the central")
def _no_request(driver: KioskDriver) -> None:
    assert driver.stack.central is not None
    shown = json.loads(driver.stack.central.manage("show-organisation", "1234567"))
    assert shown["balance_mnt"] in (500_000, 10_000)
    events = [json.loads(j["event"])["kind"] for j in driver.kiosk.store.journal(driver.session_id)]
    assert "renewal.refused" in events and "renewal.confirmed" not in events


@then(parsers.parse("the eToken holds {count:d} key pairs"))
@then(parsers.parse("the eToken holds {count:d} key pair"))
def _pairs(driver: KioskDriver, count: int) -> None:
    with driver.token.inner.session(driver.issued["token"]["serial"], Pin(TOKEN_PIN)) as s:  # type: ignore[attr-defined]
        assert len(s.key_ids()) == count


@then("the signature works")
def _works(driver: KioskDriver) -> None:
    check = driver.result.view.check
    assert check is not None and check.signature_ok


@then(parsers.parse('the kiosk shows the certificate as "{status}"'))
def _status(driver: KioskDriver, status: str) -> None:
    assert driver.result.view.certificate.status == status


@then("the central lists the certificate as revoked")
def _central_revoked(driver: KioskDriver) -> None:
    record = driver.kiosk.central.certificate(driver.issued["certificate"]["serial"])  # type: ignore[attr-defined]
    assert record.status.value == "revoked"


@then("a revocation receipt was printed")
def _revocation_receipt(driver: KioskDriver) -> None:
    assert driver.kiosk.store.receipt_status(driver.session_id) == "printed"
    assert driver.stack.printer is not None and len(driver.stack.printer.wait_for_jobs(2)) >= 2


@then("the eToken PIN is unblocked with the SO PIN from the central")
def _from_central(driver: KioskDriver) -> None:
    assert driver.kiosk.store.load(driver.session_id).step == "done"
    last = json.loads(driver.kiosk.store.journal(driver.session_id)[-1]["event"])
    assert last["so_pin_source"] == "central"


@then(parsers.parse('the eToken accepts the PIN "{pin}"'))
def _accepts(driver: KioskDriver, pin: str) -> None:
    assert not driver.token.lock_pin
    with driver.token.session(driver.issued["token"]["serial"], Pin(pin)):  # type: ignore[attr-defined]
        pass

