"""The issuance core imports no device, storage, network or UI library (STYLE.md: a pure core)."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"kivy", "smartcard", "pkcs11", "escpos", "sqlite_utils", "sqlite3", "requests", "django",
             "devices", "sync", "central", "PIL", "cryptography", "asn1crypto"}
CORE = Path(__file__).resolve().parents[2] / "kiosk"
ADAPTER_MODULES = {"app.py", "config.py", "log.py", "demo.py", "bench.py", "__main__.py"}  # wiring, not core


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_vendor_library() -> None:
    core_files = [p for p in CORE.glob("*.py") if p.name not in ADAPTER_MODULES]
    assert {p.name for p in core_files} >= {"issuance.py", "order.py", "ports.py", "errors.py", "pin.py"}
    for path in core_files:
        bad = _imports(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {sorted(bad)}"
