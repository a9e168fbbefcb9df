from __future__ import annotations

import pytest

from kiosk.errors import OrderNotPayable
from kiosk.order import (
    FeeItem,
    Holder,
    Order,
    OrderStatus,
    QueryKind,
    check_may_proceed,
    classify_query,
    compute_fees,
)


def make_order(**changes: object) -> Order:
    fields: dict[str, object] = dict(
        id="1", invoice="147314016754", status=OrderStatus.PAID,
        holder=Holder("Боржигон", "Баатар", "Ариун", "НЭ80000000", "ariun@example.mn"),
        organisation="АЗ ХХК", organisation_register="1234567", department="Захиргаа", position="Нягтлан",
        term_years=1, etoken=True, confirmed=True, paid_mnt=88_000,
    )
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("term", "etoken", "subtotal", "vat", "total"), [
    (1, True, 80_000, 8_000, 88_000),      # the seed's worked example
    (1, False, 40_000, 4_000, 44_000),
    (2, True, 120_000, 12_000, 132_000),
    (2, False, 80_000, 8_000, 88_000),
])
def test_fees(term: int, etoken: bool, subtotal: int, vat: int, total: int) -> None:
    fees = compute_fees(term, etoken)
    assert (fees.subtotal, fees.vat, fees.total) == (subtotal, vat, total)
    items = [line.item for line in fees.lines]
    assert (FeeItem.ETOKEN in items) is etoken
    cert = fees.lines[0]
    assert (cert.item, cert.quantity, cert.unit_mnt, cert.amount_mnt) == (FeeItem.CERTIFICATE, term, 40_000,
                                                                         40_000 * term)


@pytest.mark.parametrize("term", [0, 3, -1])
def test_term_must_be_one_or_two_years(term: int) -> None:
    with pytest.raises(OrderNotPayable) as err:
        compute_fees(term, True)
    assert err.value.data["reason"] == "invalid_term"


def test_paid_confirmed_order_proceeds() -> None:
    assert check_may_proceed(make_order()).total == 88_000


@pytest.mark.parametrize(("changes", "reason"), [
    ({"paid_mnt": 0, "status": OrderStatus.NEW}, "unpaid"),
    ({"paid_mnt": 44_000}, "underpaid"),
    ({"confirmed": False}, "not_confirmed"),
    ({"status": OrderStatus.AWAITING_CONFIRMATION}, "not_confirmed"),
    ({"status": OrderStatus.ISSUED}, "already_issued"),
    ({"status": OrderStatus.CANCELLED}, "cancelled"),
])
def test_refusals(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(OrderNotPayable) as err:
        check_may_proceed(make_order(**changes))
    assert err.value.data["reason"] == reason
    assert not err.value.recoverable


def test_underpaid_says_how_much_is_due() -> None:
    with pytest.raises(OrderNotPayable) as err:
        check_may_proceed(make_order(paid_mnt=80_000))
    assert err.value.data["due"] == 8_000


def test_order_round_trips_through_json_shape() -> None:
    order = make_order()
    assert Order.from_dict(order.to_dict()) == order


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("147314016754", QueryKind.INVOICE, "147314016754"),
    (" 1473 1401 6754 ", QueryKind.INVOICE, "147314016754"),
    ("TAMGA:INV:147314016754", QueryKind.INVOICE, "147314016754"),
    ("нэ80000000", QueryKind.REGISTER, "НЭ80000000"),
    ("НЭ 80000000", QueryKind.REGISTER, "НЭ80000000"),
])
def test_classify_query(text: str, kind: QueryKind, value: str) -> None:
    assert classify_query(text) == (kind, value)


@pytest.mark.parametrize("text", ["", "12345", "hello", "1473140167541"])
def test_classify_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        classify_query(text)


@pytest.mark.parametrize(("changes", "field"), [
    ({"position": "Ерөнхий нягтлан бодогч " * 4}, "position"),
    ({"organisation": "А" * 65}, "organisation"),
    ({"holder": Holder("Б", "Баатар" * 6, "Ариун" * 6, "НЭ80000000")}, "name"),
    ({"holder": Holder("Б", "Баатар", "Ариун", "ΩΩ80000000")}, "register_number"),
])
def test_order_that_cannot_go_into_a_certificate_is_refused_before_any_token_work(
        changes: dict[str, object], field: str) -> None:
    with pytest.raises(OrderNotPayable) as err:
        check_may_proceed(make_order(**changes))
    assert (err.value.data["reason"], err.value.data["field"]) == ("invalid_data", field)
