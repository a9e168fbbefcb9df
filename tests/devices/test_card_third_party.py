"""The virtual card answers third-party clients as real PIV cards do (ISO 7816-4, SP 800-73-4)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from devices.apdu import SW_OK, split_response
from devices.piv import AID_PIV, PivApplicationInfo
from devices.sim.national_ca import CardPersonalisation
from devices.sim.pcscd import PrivatePcscd
from devices.sim.vcard import VirtualPivCard

InsertCard = Callable[..., VirtualPivCard]


@pytest.mark.parametrize("aid", [AID_PIV, AID_PIV + bytes.fromhex("0100")], ids=["truncated", "full"])
def test_select_without_le_gets_the_application_data_and_9000(rsa_card: CardPersonalisation, aid: bytes) -> None:
    """yubico-piv-tool sends SELECT without Le (case 3) and gives up on 61xx."""
    card = VirtualPivCard(rsa_card, port=0)
    data, sw = split_response(card.process_apdu(bytes((0x00, 0xA4, 0x04, 0x00, len(aid))) + aid))
    assert sw == SW_OK
    assert PivApplicationInfo.from_bytes(data).aid == bytes.fromhex("000010000100")


def test_get_data_without_le_gets_data(rsa_card: CardPersonalisation) -> None:
    card = VirtualPivCard(rsa_card, port=0)
    card.process_apdu(bytes.fromhex("00A4040009") + AID_PIV)
    data, sw = split_response(card.process_apdu(bytes.fromhex("00CB3FFF035C017E")))   # discovery, no Le
    assert sw == SW_OK and data.startswith(b"\x7e")


def _run(private_pcscd: PrivatePcscd, tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **private_pcscd.env, "HOME": str(tmp_path)}
    return subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("yubico-piv-tool") is None, reason="yubico-piv-tool not installed")
@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_yubico_piv_tool_status(private_pcscd: PrivatePcscd, reader_name: str, insert_card: InsertCard,
                                tmp_path: Path, rsa_card: CardPersonalisation, p256_card: CardPersonalisation,
                                key_type: str) -> None:
    personalisation = rsa_card if key_type == "rsa2048" else p256_card
    insert_card(personalisation)

    result = _run(private_pcscd, tmp_path, "yubico-piv-tool", "--reader", reader_name, "-a", "status")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Slot 9a" in result.stdout
    assert "PNOMN-NE80000000" in result.stdout
    assert "PIN tries left:\t3" in result.stdout


@pytest.mark.skipif(shutil.which("opensc-tool") is None, reason="OpenSC not installed")
def test_opensc_tool_sends_select_without_le(private_pcscd: PrivatePcscd, insert_card: InsertCard,
                                             tmp_path: Path, rsa_card: CardPersonalisation) -> None:
    insert_card(rsa_card)

    result = _run(private_pcscd, tmp_path, "opensc-tool", "--reader", "0", "--send-apdu",
                  "00:A4:04:00:09:" + ":".join(f"{b:02X}" for b in AID_PIV))

    assert result.returncode == 0, result.stderr
    assert "SW1=0x90, SW2=0x00" in result.stdout
    assert "61 " in result.stdout            # the application property template came back at once
