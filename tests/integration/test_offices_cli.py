"""The office commands of ``python -m central``: a malformed or unknown office is refused with its reason
and nothing is added; an order file's own ``office`` wins over ``--office``."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from central.runner import CentralCommandError, CentralServer
from kiosk.errors import OrderNotFound
from sync.central_client import CentralClient
from tests.integration.conftest import OFFICE_B


def order_file(directory: Path, **extra: str) -> tuple[Path, str]:
    invoice = f"7{secrets.randbelow(10**11):011d}"
    order = {"invoice": invoice, **extra,
             "holder": {"father_name": "Дорж", "given_name": "Цэцэг",
                        "register_number": f"НН{secrets.randbelow(10**8):08d}"},
             "term_years": 1, "etoken": True, "consent_accepted": True, "confirmed": True, "paid_mnt": 88_000}
    path = directory / f"{invoice}.json"
    path.write_text(json.dumps([order], ensure_ascii=False), encoding="utf-8")
    return path, invoice


@pytest.mark.parametrize(("code", "why"), [("Darkhan Office", "an office code is"), ("ub_1", "an office code is")])
def test_a_malformed_office_code_is_refused(central_server: CentralServer, code: str, why: str) -> None:
    with pytest.raises(CentralCommandError, match=why):
        central_server.manage("add-office", code, "Дархан")


def test_orders_of_an_unknown_office_are_refused_and_nothing_is_added(
        central_server: CentralServer, central_client: CentralClient, tmp_path: Path) -> None:
    path, invoice = order_file(tmp_path)
    with pytest.raises(CentralCommandError, match="no such office"):
        central_server.manage("load-orders", str(path), "--office", "nowhere")
    with pytest.raises(OrderNotFound):
        central_client.find_order("invoice", invoice)


def test_an_orders_own_office_wins_over_the_command_line(
        central_server: CentralServer, central_client: CentralClient, office_b_client: CentralClient,
        tmp_path: Path) -> None:
    path, invoice = order_file(tmp_path, office=OFFICE_B)
    assert central_server.manage("load-orders", str(path), "--office", "main").split() == [invoice]
    assert office_b_client.find_order("invoice", invoice).invoice == invoice
    with pytest.raises(OrderNotFound):
        central_client.find_order("invoice", invoice)
