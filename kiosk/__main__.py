"""``python -m kiosk``: technician commands for a kiosk (the touchscreen app comes with its own issue).

``check``  load the configuration and ask every device and the central service whether it is ready.
``config`` print the effective configuration (defaults merged with the kiosk's file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kiosk import config
from kiosk.errors import ConfigError, KioskError


def cmd_config(path: Path | None) -> int:
    cfg = config.load(path, check_files=False)
    print(f"# {cfg.source}")
    for section in ("kiosk", "central", "idcard", "token", "printer"):
        print(f"[{section}]")
        for key, value in vars(getattr(cfg, section)).items():
            print(f"{key} = {value!r}")
    return 0


def cmd_check(path: Path | None) -> int:
    from kiosk import app

    cfg = config.load(path)
    kiosk = app.build(cfg)
    failures = 0
    checks = {
        "central": lambda: kiosk.central.find_order("invoice", "000000000000"),
        "reader": lambda: kiosk.idcard.wait_for_card(0.5),
        "token": lambda: (lambda t: f"{t.model} {t.serial} {t.label!r}")(kiosk.token.present()),
        "printer": lambda: kiosk.printer.status().value,
    }
    try:
        for name, check in checks.items():
            try:
                result = check()
                print(f"{name:8} ok     {result if isinstance(result, str) else ''}".rstrip())
            except KioskError as err:
                ok = name == "central" and err.key == "error.order_not_found"   # it answered
                failures += 0 if ok else 1
                print(f"{name:8} {'ok' if ok else 'FAIL':6} {err.key} {err.data or ''} {err.detail}".rstrip())
    finally:
        kiosk.close()
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk", description="Tamga kiosk technician commands")
    parser.add_argument("--config", type=Path, help="kiosk.toml (default: $TAMGA_CONFIG, /etc/tamga/kiosk.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check the configuration, the devices and the central service")
    sub.add_parser("config", help="print the effective configuration")
    args = parser.parse_args(argv)
    try:
        return cmd_check(args.config) if args.command == "check" else cmd_config(args.config)
    except ConfigError as err:
        print(f"configuration error: {err.detail} (setting {err.data.get('setting')})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
