"""The real app driven offscreen with synthetic touches on the simulated stack: a full issuance and each
other flow, the error paths as screens, every screen inspected in all five languages (no clipped label,
no raw message key), a screenshot of each kept in the test's directory.

One Kivy Window per process, so the drive runs in a subprocess per size.  By default: 800×480, the
issuance (rejected from another desk first, then approved at the clerk's screens by taps, with the holder
agreement and a wrong eToken PIN at it, the printer out of paper and a reprint),
the idle timeout and the error screens, about 90 s.  ``TAMGA_UI_LONG=1`` adds the check, unblock and
revocation visits, renewal (a stack of its own) and 1024×600 (``make demo`` shoots them all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.sim.stack import CARD_PIN
from kiosk.errors import ApplicationRejected, InvalidPin
from kiosk.i18n import Translator
from kiosk.shell.demo import NEW_TOKEN_PIN, TOKEN_PIN

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("TAMGA_UI_LONG") == "1"
SIZES = ["800x480", "1024x600"] if LONG else ["800x480"]
VISITS = ["issuance", *(["check", "unblock", "revocation"] if LONG else []), "idle", "errors"]
#: Every screen a person meets on the way, by the flow that shows it.
EXPECTED = {
    "issuance": {"welcome", "consent", "order", "order_summary", "insert_card", "card_pin", "approval",
                 "error", "clerk", "clerk_review", "insert_token", "choose_pin", "agreement", "done"},
    "check": {"token_pin", "check_result"},
    "unblock": {"choose_pin", "done"},
    "revocation": {"card_pin", "revocation_choose", "approval", "clerk_revocation", "done"},
    "renewal": {"renewal_notice", "done"},
    "idle": set(),
    "errors": {"error", "order_summary"},
}


def _drive(out: Path, size: str, flows: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run = subprocess.run([sys.executable, "-m", "kiosk.screens.drive", "--out", str(out), "--size", size,
                          "--flows", flows], capture_output=True, text=True, timeout=400, cwd=ROOT, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    report: dict[str, Any] = json.loads((out / size / f"report-{flows.split(',')[0]}.json").read_text(encoding="utf-8"))
    return run, report


def _check(report: dict[str, Any], expected: dict[str, set[str]], out: Path) -> None:
    assert {flow: outcome["ok"] for flow, outcome in report["flows"].items()} == dict.fromkeys(expected, True), \
        report["flows"]
    assert report["problems"] == []
    for flow, screens in expected.items():
        assert screens <= {shot["screen"] for shot in report["shots"] if shot["flow"] == flow}, flow
    assert all((out / shot["file"]).stat().st_size > 2000 for shot in report["shots"])
    shown = [text for shot in report["shots"] for text in shot["texts"]]
    assert not [text for text in shown if CARD_PIN in text or TOKEN_PIN in text or NEW_TOKEN_PIN in text]


@pytest.mark.parametrize("size", SIZES)
def test_issuance_and_the_other_flows_through_the_real_app_with_no_clipped_or_untranslated_text(
        size: str, tmp_path: Path) -> None:
    run, report = _drive(tmp_path, size, ",".join(VISITS))
    _check(report, {flow: EXPECTED[flow] for flow in VISITS}, tmp_path / size)
    t = Translator("mn")
    said = {label: next(shot["texts"] for shot in report["shots"] if shot["file"].endswith(f"{label}.png"))
            for label in ("card_pin-wrong", "rejected", "agreement", "agreement-wrong", "central-down", "unpaid",
                          "offline", "paper-out", "reprinted")}
    assert t("screens.pin.tries_left", tries=2) in said["card_pin-wrong"]          # a wrong ID PIN: tries left
    # rejected at another desk: the approval screen says why and what to do next
    rejected = {t.error(ApplicationRejected(reason="documents_missing")), t("screens.next.come_back")}
    assert rejected <= set(said["rejected"])
    assert any("НЭ80000000" in text for text in said["agreement"])      # the agreement as signed, filled in
    assert t.error(InvalidPin()) in said["agreement-wrong"]     # a wrong eToken PIN keeps the step, says so
    assert t("screens.next.central") in said["central-down"]
    as_of = t("sync.order.as_of", time="\0").split("\0")[0]              # "Мэдээллийн огноо: " then the moment
    assert any(text.startswith(as_of) for text in said["offline"]), said["offline"]
    assert t("refusal.unpaid", total="").split("(")[0].strip() in " ".join(said["unpaid"])
    assert t("done.receipt_pending") in said["paper-out"] and t("screens.done.receipt_printed") in said["reprinted"]
    assert run.returncode == 0, run.stdout[-2000:]


@pytest.mark.skipif(not LONG, reason="TAMGA_UI_LONG=1: renewal needs a simulated stack of its own")
@pytest.mark.parametrize("size", SIZES)
def test_renewal_through_the_real_app(size: str, tmp_path: Path) -> None:
    run, report = _drive(tmp_path, size, "renewal")
    _check(report, {"renewal": EXPECTED["renewal"]}, tmp_path / size)
    notice = next(shot["texts"] for shot in report["shots"] if shot["screen"] == "renewal_notice")
    opening = Translator("mn")("renewal.notice", days=0).split("0")[0]      # "… {days} хоногийн дараа дуусна"
    assert any(text.startswith(opening) for text in notice), notice
    assert run.returncode == 0, run.stdout[-2000:]
