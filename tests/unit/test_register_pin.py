from __future__ import annotations

import logging
import pickle

import pytest

from kiosk import register
from kiosk.errors import PinPolicyViolation
from kiosk.pin import Pin, PinPolicy


@pytest.mark.parametrize(("value", "ascii_"), [
    ("НЭ80000000", "NE80000000"),
    ("ШУ78787878", "SHU78787878"),
    ("УП12345678", "UP12345678"),
    ("ӨҮ01010101", "OQUQ01010101"),   # Ө and Ү no longer both become U
    ("123456789013", "123456789013"),   # a Kazakh IIN with its check digit
])
def test_to_ascii(value: str, ascii_: str) -> None:
    assert register.to_ascii(value) == ascii_


def test_certificate_serial_number_is_printable_ascii() -> None:
    value = register.certificate_serial_number("НЭ80000000", "mn")
    assert value == "PNOMN-NE80000000"
    assert value.isascii()


@pytest.mark.parametrize(("order_reg", "card_serial", "same"), [
    ("НЭ80000000", "PNOMN-NE80000000", True),
    ("нэ80000000", "PNOMN-NE80000000", True),
    ("НЭ80000000", "NE80000000", True),
    ("НЭ80000000", "PNOMN-NE80000001", False),
    ("ШУ78787878", "PNOMN-NE80000000", False),
])
def test_same_person(order_reg: str, card_serial: str, same: bool) -> None:
    assert register.same_person(order_reg, card_serial) is same


def test_latin_lookalikes_typed_by_mistake_are_folded() -> None:
    assert register.canonical("HЭ80000000") == "НЭ80000000"   # Latin H
    assert register.is_valid("HЭ80000000")


def test_masked() -> None:
    assert register.masked("НЭ80000000") == "НЭ******00"


def test_pin_never_shows_itself(caplog: pytest.LogCaptureFixture) -> None:
    pin = Pin("482916")
    logging.getLogger("t").warning("pin=%s %r %s", pin, pin, f"{pin}")
    assert "482916" not in caplog.text
    assert "482916" not in repr({"pin": pin})
    with pytest.raises(TypeError):
        pickle.dumps(pin)
    assert pin.reveal() == "482916"


@pytest.mark.parametrize(("pin", "rule"), [
    ("12a456", "digits_only"),
    ("１２３４５６", "digits_only"),     # full-width digits are not PIN-pad digits
    ("12345", "length"),
    ("1" * 17, "length"),
    ("777777", "repeated"),
    ("123456", "sequence"),
    ("987654", "sequence"),
])
def test_pin_policy_rejects(pin: str, rule: str) -> None:
    with pytest.raises(PinPolicyViolation) as err:
        PinPolicy().check(Pin(pin))
    assert err.value.data["rule"] == rule


def test_pin_policy_accepts_and_checks_confirmation() -> None:
    PinPolicy().check(Pin("482916"), Pin("482916"))
    with pytest.raises(PinPolicyViolation) as err:
        PinPolicy().check(Pin("482916"), Pin("482917"))
    assert err.value.data["rule"] == "mismatch"
