"""``python -m kiosk check``, the technician's self-test, against the simulated devices and central."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.sim.pcscd import PrivatePcscd
from devices.sim.stack import SimulatedStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path: Path, private_pcscd: PrivatePcscd) -> Iterator[SimulatedStack]:
    running = SimulatedStack(tmp_path / "stack").start(pcscd=private_pcscd)
    try:
        yield running
    finally:
        running.stop()


def check(stack: SimulatedStack, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    args = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "kiosk", *args, "check"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120, check=False)


def test_everything_ready(stack: SimulatedStack) -> None:
    stack.insert_card()
    out = check(stack)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["central"].startswith("ok")
    assert "card present" in lines["reader"]
    assert "SoftHSM" in lines["token"] and "eToken" in lines["token"]
    assert lines["printer"].split() == ["ok", "ready"]


def test_a_kiosk_reading_id_cards_through_opensc_checks_the_reader_through_opensc(
        stack: SimulatedStack, tmp_path: Path) -> None:
    stack.insert_card()
    opensc = tmp_path / "opensc.toml"
    opensc.write_text(stack.config_path.read_text().replace("[idcard]\n", '[idcard]\nprofile = "opensc"\n', 1))
    out = check(stack, opensc)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["reader"].startswith("ok") and "card present (profile opensc)" in lines["reader"]


def test_no_card_and_no_paper_fail_with_their_reasons(stack: SimulatedStack) -> None:
    assert stack.printer is not None
    stack.printer.paper = "out"
    out = check(stack)
    assert out.returncode == 1
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["reader"].startswith("FAIL") and "error.device_not_ready" in lines["reader"]
    assert lines["printer"].split() == ["FAIL", "paper_out"]
    assert lines["token"].startswith("ok")


def test_wrong_setting_stops_with_its_name(stack: SimulatedStack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(stack.config_path.read_text().replace('kind = "network"', 'kind = "serial"'))
    out = check(stack, bad)
    assert out.returncode == 2
    assert "printer.kind" in out.stderr
