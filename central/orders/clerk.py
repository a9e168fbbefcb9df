"""What the CA's clerks (and tests) do to orders: load them, confirm them, record a payment.

Loading takes the same shape the API serves (``holder``/``organisation`` objects) with extra
``gender``/``foreign`` holder fields and a ``consent_accepted`` flag; ``status`` is derived
unless given (only ``cancelled`` or ``issued`` need saying).  An order's ``office`` (a code)
says which office's kiosks see it; without one it goes to the office the loader is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from central.orders import offices
from central.orders.models import DEFAULT_OFFICE, INVOICE_VALIDATOR, Gender, Office, Order, OrderStatus, Organisation
from kiosk import register


class ClerkError(Exception):
    """A clerk command cannot be carried out; the message says why."""


def derived_status(order: Order) -> str:
    if not order.confirmed:
        return str(OrderStatus.AWAITING_CONFIRMATION)
    return str(OrderStatus.PAID if order.paid_mnt >= order.fees.total else OrderStatus.NEW)


def _order_from_dict(d: dict[str, Any], office: Office) -> Order:
    holder = d["holder"]
    organisation = d.get("organisation") or {}
    if not register.is_valid(holder["register_number"]):
        raise ClerkError(f"{d['invoice']}: not a register number: {holder['register_number']!r}")
    if int(d.get("term_years", 1)) not in (1, 2):
        raise ClerkError(f"{d['invoice']}: term_years is 1 or 2")
    if not d.get("consent_accepted", False):
        raise ClerkError(f"{d['invoice']}: the holder has not accepted the agreement (consent_accepted)")
    gender = holder.get("gender", "")
    if gender not in ("", *Gender.values):
        raise ClerkError(f"{d['invoice']}: gender is one of {Gender.values}")
    order = Order(
        office=office,
        invoice=str(d["invoice"]),
        surname=holder.get("surname", ""),
        father_name=holder["father_name"],
        given_name=holder["given_name"],
        register_number=register.canonical(holder["register_number"]),
        gender=gender,
        foreign=bool(holder.get("foreign", False)),
        email=holder.get("email", ""),
        phone=holder.get("phone", ""),
        organisation_name=organisation.get("name", ""),
        organisation_register=organisation.get("register", ""),
        department=organisation.get("department", ""),
        position=d.get("position", ""),
        term_years=int(d.get("term_years", 1)),
        validity_days=_validity_days(d),
        etoken=bool(d.get("etoken", True)),
        consent_accepted=True,
        confirmed_at=timezone.now() if d.get("confirmed", False) else None,
        paid_mnt=int(d.get("paid_mnt", 0)),
    )
    order.status = d.get("status") or derived_status(order)
    if order.status not in OrderStatus.values:
        raise ClerkError(f"{d['invoice']}: unknown status {order.status!r}")
    try:
        INVOICE_VALIDATOR(order.invoice)
    except ValidationError as err:
        raise ClerkError(f"{order.invoice!r}: an invoice number is 12 digits") from err
    return order


def _validity_days(d: dict[str, Any]) -> int | None:
    value = d.get("validity_days")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3650:
        raise ClerkError(f"{d['invoice']}: validity_days is a number of days from 1 to 3650")
    return value


def load_organisations(items: list[dict[str, Any]]) -> list[str]:
    """Add the organisation accounts not known yet (a known one keeps its balance); return the registers added."""
    added = []
    with transaction.atomic():
        for item in items:
            try:
                register_number, name = str(item["register"]), str(item["name"])
                balance = int(item.get("balance_mnt", 0))
            except (KeyError, TypeError, ValueError) as err:
                raise ClerkError(f"malformed organisation {item!r}: {err!r}") from err
            if not register_number or balance < 0:
                raise ClerkError(f"organisation {register_number!r}: a register and a balance ≥ 0 are needed")
            _, created = Organisation.objects.get_or_create(
                register=register_number, defaults={"name": name, "balance_mnt": balance})
            if created:
                added.append(register_number)
    return added


def set_balance(register_number: str, balance_mnt: int, name: str | None = None) -> Organisation:
    """Set an organisation's balance (creating the account when ``name`` is given)."""
    if balance_mnt < 0:
        raise ClerkError("a balance is not negative")
    with transaction.atomic():
        organisation = Organisation.objects.select_for_update().filter(register=register_number).first()
        if organisation is None:
            if not name:
                raise ClerkError(f"{register_number}: no such organisation (give --name to create it)")
            organisation = Organisation(register=register_number, name=name)
        organisation.balance_mnt = balance_mnt
        organisation.save()
    return organisation


def load_orders(items: list[dict[str, Any]], office: str = DEFAULT_OFFICE) -> list[str]:
    """Add the orders whose invoice is not known yet, to their own ``office`` or to ``office``;
    return the invoices added."""
    added = []
    known: dict[str, Office] = {}
    with transaction.atomic():
        for item in items:
            try:
                code = str(item.get("office") or office)
                if code not in known:
                    known[code] = offices.by_code(code)
                order = _order_from_dict(item, known[code])
            except offices.OfficeError as err:
                raise ClerkError(f"order {item.get('invoice', '?')}: {err}") from err
            except (KeyError, TypeError, ValueError) as err:
                raise ClerkError(f"malformed order {item.get('invoice', '?')}: {err!r}") from err
            if Order.objects.filter(invoice=order.invoice).exists():
                continue
            order.save()
            added.append(order.invoice)
    return added


def load_orders_file(path: Path, office: str = DEFAULT_OFFICE) -> list[str]:
    items = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(items, dict):
        for item in items.get("offices", []):
            offices.add(str(item["code"]), str(item["name"]))
        organisations = items.get("organisations", [])
        if not isinstance(organisations, list):
            raise ClerkError(f"{path}: 'organisations' is a list")
        load_organisations(organisations)
        items = items.get("orders", [])
    if not isinstance(items, list):
        raise ClerkError(f"{path}: expected a list of orders or {{'orders': [...]}}")
    return load_orders(items, office)


def _open_order(invoice: str) -> Order:
    order = Order.objects.filter(invoice=invoice).first()
    if order is None:
        raise ClerkError(f"{invoice}: no such order")
    if order.status in (OrderStatus.ISSUED, OrderStatus.CANCELLED):
        raise ClerkError(f"{invoice}: the order is {order.status}")
    return order


def confirm(invoice: str) -> Order:
    """The holder clicked the e-mail link (seed 000, section 4): «Баталгаажуулах» → «Шинэ»."""
    with transaction.atomic():
        order = _open_order(invoice)
        if order.confirmed_at is None:
            order.confirmed_at = timezone.now()
        order.status = derived_status(order)
        order.save()
    return order


def mark_paid(invoice: str, amount_mnt: int | None = None) -> Order:
    """Record that the invoice was paid: ``amount_mnt`` in total, or the full fee when not given."""
    with transaction.atomic():
        order = _open_order(invoice)
        paid = order.fees.total if amount_mnt is None else amount_mnt
        if paid < 0:
            raise ClerkError("an amount is not negative")
        order.paid_mnt = paid
        order.status = derived_status(order)
        order.save()
    return order


def cancel(invoice: str) -> Order:
    with transaction.atomic():
        order = _open_order(invoice)
        order.status = OrderStatus.CANCELLED
        order.save()
    return order
