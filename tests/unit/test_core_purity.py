"""The core imports no device, storage, network or UI library (STYLE.md: a pure core).

The core is every module of the ``kiosk`` package outside ``kiosk/shell/`` and the touchscreen app
``kiosk/screens/`` (Kivy; it drives the core, never the other way round); its imports are
followed transitively, so a core module cannot reach a vendor library through another one.  The
two entry points (``kiosk/__main__.py``, ``kiosk/demo.py``) may only hand over to the shell.
"""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"kivy", "smartcard", "pkcs11", "escpos", "sqlite_utils", "sqlite3", "requests", "django",
             "devices", "sync", "central", "PIL", "cryptography", "asn1crypto", "qrcode", "socket", "subprocess"}
KIOSK = Path(__file__).resolve().parents[2] / "kiosk"
ENTRY_POINTS = {"__main__.py", "demo.py"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "kiosk":
        return None
    base = KIOSK.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _core_files() -> list[Path]:
    return [p for p in KIOSK.rglob("*.py")
            if not {"shell", "screens"} & set(p.relative_to(KIOSK).parts)
            and not (p.parent == KIOSK and p.name in ENTRY_POINTS)]


def test_the_whole_core_imports_no_vendor_library_even_indirectly() -> None:
    files = _core_files()
    assert {p.name for p in files} >= {"engine.py", "issuance.py", "renewal.py", "order.py", "ports.py", "pin.py"}
    for start in files:
        seen: set[Path] = set()
        todo = [start]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            for name in _imports(path):
                assert name.split(".")[0] not in FORBIDDEN, f"{start.name} reaches {name} via {path.name}"
                assert not name.startswith(("kiosk.shell", "kiosk.screens")), \
                    f"{start.name} reaches the shell or the screens via {path.name}"
                target = _module_file(name)
                if target is not None:
                    todo.append(target)


def test_entry_points_only_hand_over_to_the_shell() -> None:
    for name in ENTRY_POINTS:
        imports = _imports(KIOSK / name) - {"sys"}
        assert imports and all(i.startswith("kiosk.shell") for i in imports), (name, imports)
