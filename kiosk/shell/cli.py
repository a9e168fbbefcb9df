"""``python -m kiosk``: the touchscreen app (``run``) and the technician commands for a kiosk.

``run``    the touchscreen app on the configured devices (``--size 800x480|1024x600``, ``--fullscreen``).
``check``  load the configuration and ask every device and the central service whether it is ready.
``config`` print the effective configuration (defaults merged with the kiosk's file).
``diagnose`` write one archive for support (no personal data, no secret).
``audit verify`` check the hash-chained audit trail and name the first broken link.
``clerk add|list|disable`` the kiosk's clerks (personal PINs, kept only as scrypt hashes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kiosk.errors import ConfigError, KioskError
from kiosk.shell import audit_cli, clerk_cli, config, diagnose


def cmd_config(path: Path | None) -> int:
    cfg = config.load(path, check_files=False)
    print(f"# {cfg.source}")
    for section in ("kiosk", "central", "idcard", "token", "printer", "ui"):
        print(f"[{section}]")
        for key, value in vars(getattr(cfg, section)).items():
            print(f"{key} = {value!r}")
    return 0


def cmd_check(path: Path | None) -> int:
    """One line per part: ``ok`` or ``FAIL`` with the error key; exit 1 when anything failed."""
    from kiosk.ports import PrinterStatus
    from kiosk.shell import app

    cfg = config.load(path)
    kiosk = app.build(cfg)

    def central() -> str:
        try:
            kiosk.central.find_order("invoice", "000000000000")
        except KioskError as err:
            if err.key != "error.order_not_found":    # any other answer means it is not usable
                raise
        return cfg.central.url

    def reader() -> str:
        kiosk.idcard.wait_for_card(0.5)
        return f"{cfg.idcard.reader or 'first reader'}: card present (profile {cfg.idcard.profile})"

    def token() -> str:
        info = kiosk.token.present()
        return f"{info.model} {info.serial} {info.label!r}"

    def printer() -> str:
        status = kiosk.printer.status()
        if status in (PrinterStatus.PAPER_OUT, PrinterStatus.OFFLINE):
            raise PrinterNotReady(status.value)
        return status.value

    failures = 0
    try:
        for name, check in (("central", central), ("reader", reader), ("token", token), ("printer", printer)):
            try:
                print(f"{name:8} ok     {check()}")
            except (KioskError, PrinterNotReady) as err:
                failures += 1
                detail = f"{err.key} {err.data or ''} {err.detail}" if isinstance(err, KioskError) else str(err)
                print(f"{name:8} FAIL   {detail}".rstrip())
    finally:
        kiosk.close()
    return 1 if failures else 0


class PrinterNotReady(Exception):
    """The printer answered, but cannot print now (paper out, offline)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk", description="Tamga kiosk technician commands")
    parser.add_argument("--config", type=Path, help="kiosk.toml (default: $TAMGA_CONFIG, /etc/tamga/kiosk.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check the configuration, the devices and the central service")
    sub.add_parser("config", help="print the effective configuration")
    run = sub.add_parser("run", help="the touchscreen app on the configured devices")
    run.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="kiosk.toml (as before the command)")
    run.add_argument("--size", choices=("800x480", "1024x600"), help="window size (default: ui.size)")
    run.add_argument("--fullscreen", action="store_true", default=None,
                     help="full screen, no cursor, no decorations (default: ui.fullscreen)")
    diagnose.add_parser(sub)
    audit_cli.add_parser(sub)
    clerk_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "diagnose":
            return diagnose.run(args)
        if args.command == "audit":
            return audit_cli.run(args.config)
        if args.command == "clerk":
            return clerk_cli.run(args)
        if args.command == "run":
            from kiosk.screens import launch

            return launch.run(args.config, args.size, args.fullscreen)
        return cmd_check(args.config) if args.command == "check" else cmd_config(args.config)
    except ConfigError as err:
        print(f"configuration error: {err.detail} (setting {err.data.get('setting')})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
