"""Every command-line entry point has help, and the README names it (sqlite-utils' test_docs habit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [
    ("kiosk", "python -m kiosk"),
    ("kiosk.demo", "python -m kiosk.demo"),
    ("devices.sim", "python -m devices.sim"),
    ("central", "python -m central"),
    ("sync", "python -m sync"),
    ("provisioning", "python -m provisioning"),
]


@pytest.mark.parametrize(("module", "shown"), COMMANDS)
def test_command_has_help_and_is_documented(module: str, shown: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
    readme = (ROOT / "README.md").read_text()
    assert shown in readme
