"""Clerk sign-in: scrypt PIN hashes, wrong-PIN count, lockout on an injected clock, rehash."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kiosk.clerks import (
    ClerkRecord,
    ClerkSignIn,
    PinHash,
    ScryptCost,
    hash_pin,
    needs_rehash,
    verify_pin,
)
from kiosk.errors import InputRefused, InvalidPin, PinBlocked, PinPolicyViolation
from kiosk.pin import Pin

CHEAP = ScryptCost(n=2 ** 4, r=1, p=1)
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
GOOD = "482915"


class MemoryClerkDirectory:
    def __init__(self) -> None:
        self.records: dict[str, ClerkRecord] = {}

    def get(self, clerk_id: str) -> ClerkRecord | None:
        return self.records.get(clerk_id)

    def put(self, record: ClerkRecord) -> None:
        self.records[record.clerk_id] = record


@pytest.fixture
def directory() -> MemoryClerkDirectory:
    return MemoryClerkDirectory()


@pytest.fixture
def desk(directory: MemoryClerkDirectory) -> ClerkSignIn:
    service = ClerkSignIn(directory, cost=CHEAP)
    service.add("c1", "Bolormaa", Pin(GOOD))
    return service


def test_right_pin_signs_in_for_eight_hours_by_default(desk: ClerkSignIn) -> None:
    clerk = desk.sign_in("c1", Pin(GOOD), T0)
    assert (clerk.clerk_id, clerk.name) == ("c1", "Bolormaa")
    assert clerk.expires_at == T0 + timedelta(hours=8)
    assert clerk.is_valid(T0 + timedelta(hours=7, minutes=59))
    assert not clerk.is_valid(T0 + timedelta(hours=8))


def test_session_length_is_configurable(directory: MemoryClerkDirectory) -> None:
    service = ClerkSignIn(directory, cost=CHEAP, session_length=timedelta(hours=1))
    service.add("c2", "Aigerim", Pin("730184"))
    assert service.sign_in("c2", Pin("730184"), T0).expires_at == T0 + timedelta(hours=1)


def test_wrong_pins_are_counted_and_a_right_one_resets_the_count(
        desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    for expected in (1, 2, 3):
        with pytest.raises(InvalidPin):
            desk.sign_in("c1", Pin("111222"), T0)
        assert directory.records["c1"].failed_attempts == expected
    desk.sign_in("c1", Pin(GOOD), T0)
    assert directory.records["c1"].failed_attempts == 0


def test_fifth_wrong_pin_locks_out_even_the_right_pin_until_the_lockout_ends(
        desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    for _ in range(4):
        with pytest.raises(InvalidPin):
            desk.sign_in("c1", Pin("111222"), T0)
    with pytest.raises(PinBlocked) as locked:
        desk.sign_in("c1", Pin("111222"), T0)
    assert locked.value.data["until"] == (T0 + timedelta(minutes=15)).isoformat()
    with pytest.raises(PinBlocked):
        desk.sign_in("c1", Pin(GOOD), T0 + timedelta(minutes=14, seconds=59))
    assert desk.sign_in("c1", Pin(GOOD), T0 + timedelta(minutes=15)).clerk_id == "c1"
    assert directory.records["c1"].locked_until is None


def test_lockout_count_and_length_are_configurable(directory: MemoryClerkDirectory) -> None:
    service = ClerkSignIn(directory, cost=CHEAP, max_failures=2, lockout=timedelta(minutes=1))
    service.add("c3", "Nurlan", Pin("905316"))
    with pytest.raises(InvalidPin):
        service.sign_in("c3", Pin("111222"), T0)
    with pytest.raises(PinBlocked):
        service.sign_in("c3", Pin("111222"), T0)
    assert service.sign_in("c3", Pin("905316"), T0 + timedelta(minutes=1)).clerk_id == "c3"


def test_unknown_and_disabled_clerks_get_the_same_error_as_a_wrong_pin(
        desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    with pytest.raises(InvalidPin) as wrong:
        desk.sign_in("c1", Pin("111222"), T0)
    with pytest.raises(InvalidPin) as unknown:
        desk.sign_in("nobody", Pin(GOOD), T0)
    desk.disable("c1")
    with pytest.raises(InvalidPin) as disabled:
        desk.sign_in("c1", Pin(GOOD), T0)
    assert wrong.value.to_dict() == unknown.value.to_dict() == disabled.value.to_dict()
    assert str(wrong.value) == str(unknown.value) == str(disabled.value)
    assert "nobody" not in directory.records


def test_unknown_clerk_costs_the_same_scrypt_work_as_a_known_one(
        desk: ClerkSignIn, monkeypatch: pytest.MonkeyPatch) -> None:
    import kiosk.clerks as clerks
    costs: list[ScryptCost] = []
    real = clerks._scrypt

    def counting(pin: Pin, salt: bytes, cost: ScryptCost, length: int) -> bytes:
        costs.append(cost)
        return real(pin, salt, cost, length)

    monkeypatch.setattr(clerks, "_scrypt", counting)
    for clerk_id in ("c1", "nobody"):
        with pytest.raises(InvalidPin):
            desk.sign_in(clerk_id, Pin("111222"), T0)
    assert costs == [CHEAP, CHEAP]


def test_raised_parameters_rehash_the_pin_at_the_next_good_sign_in(
        desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    stronger = ScryptCost(n=2 ** 5, r=1, p=1)
    old_hash = directory.records["c1"].pin_hash
    assert needs_rehash(old_hash, stronger) and not needs_rehash(old_hash, CHEAP)
    ClerkSignIn(directory, cost=stronger).sign_in("c1", Pin(GOOD), T0)
    new_hash = directory.records["c1"].pin_hash
    assert PinHash.parse(new_hash).cost == stronger
    assert verify_pin(Pin(GOOD), new_hash) and not verify_pin(Pin("111222"), new_hash)


def test_hash_format_is_self_describing_with_a_fresh_16_byte_salt() -> None:
    text = hash_pin(Pin(GOOD), CHEAP)
    scheme, n, r, p, _salt, _digest = text.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16", "1", "1")
    parsed = PinHash.parse(text)
    assert len(parsed.salt) == 16 and len(parsed.digest) == 32
    assert parsed.format() == text
    assert PinHash.parse(hash_pin(Pin(GOOD), CHEAP)).salt != parsed.salt
    for bad in ("", "bcrypt$16$1$1$AA==$AA==", "scrypt$15$1$1$AA==$AA==", "scrypt$16$1$1$!!$AA==",
                "scrypt$16$1$1$AA==", "scrypt$x$1$1$AA==$AA=="):
        with pytest.raises(ValueError):
            PinHash.parse(bad)


def test_default_cost_is_the_slow_one() -> None:
    assert ScryptCost() == ScryptCost(n=2 ** 14, r=8, p=1)


def test_no_pin_or_hash_in_any_repr_or_str(desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    record = directory.records["c1"]
    parsed = PinHash.parse(record.pin_hash)
    texts = [repr(record), str(record), repr(parsed), str(parsed),
             repr(desk.sign_in("c1", Pin(GOOD), T0)), repr(desk), f"{Pin(GOOD)}"]
    for clerk_id, pin in (("c1", "111222"), ("nobody", GOOD)):
        with pytest.raises(InvalidPin) as caught:
            desk.sign_in(clerk_id, Pin(pin), T0)
        texts += [repr(caught.value), str(caught.value), repr(caught.value.to_dict())]
    salt_digest = record.pin_hash.split("$")[-2:]
    for text in texts:
        assert GOOD not in text and "111222" not in text
        assert all(part not in text for part in salt_digest), text


@pytest.mark.parametrize(("pin", "rule"), [("12345", "length"), ("123456789", "length"), ("48a915", "digits_only"),
                                           ("777777", "repeated"), ("345678", "sequence")])
def test_pin_policy_refuses_a_weak_clerk_pin(directory: MemoryClerkDirectory, pin: str, rule: str) -> None:
    service = ClerkSignIn(directory, cost=CHEAP)
    with pytest.raises(PinPolicyViolation) as refused:
        service.add("c9", "Aibek", Pin(pin))
    assert refused.value.data["rule"] == rule
    assert "c9" not in directory.records


def test_a_clerk_id_is_added_once(desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    with pytest.raises(InputRefused):
        desk.add("c1", "Someone else", Pin("730184"))
    assert directory.records["c1"].name == "Bolormaa"


def test_lockout_state_survives_a_new_service_on_the_same_directory(
        desk: ClerkSignIn, directory: MemoryClerkDirectory) -> None:
    directory.put(replace(directory.records["c1"], locked_until=T0 + timedelta(minutes=5)))
    with pytest.raises(PinBlocked):
        ClerkSignIn(directory, cost=CHEAP).sign_in("c1", Pin(GOOD), T0)
