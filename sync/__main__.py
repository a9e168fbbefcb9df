"""``python -m sync``: the kiosk's sync with the central service.

``once``   one round: push the journal, send queued requests, purge what retention allows; exit 1 if
           the central could not be reached.
``run``    rounds every ``--interval`` seconds, with backoff after failures (the systemd service).
``status`` queue length, the oldest unsynced event's age, last success, last error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from kiosk.errors import ConfigError
from kiosk.shell import config
from kiosk.shell import log as kiosk_log


def _age(at: str | None) -> str:
    if not at:
        return "-"
    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(at)).total_seconds()
    return f"{seconds:.0f} s ago ({at})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync", description="Tamga kiosk sync with the central service")
    parser.add_argument("--config", type=Path, help="kiosk.toml (default: $TAMGA_CONFIG, /etc/tamga/kiosk.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("once", help="one round: push, send queued requests, purge")
    run = sub.add_parser("run", help="rounds until stopped")
    run.add_argument("--interval", type=float, default=30.0, help="seconds between rounds (default 30)")
    sub.add_parser("status", help="queue length, oldest unsynced event, last success and error")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except ConfigError as err:
        print(f"configuration error: {err.detail} (setting {err.data.get('setting')})", file=sys.stderr)
        return 2
    kiosk_log.setup(cfg.log_level)
    from kiosk.shell import app
    from sync.daemon import SyncDaemon

    kiosk = app.build(cfg)
    try:
        if args.command == "status":
            status = kiosk.store.sync_status()
            print(f"queued           {status['queued']}")
            print(f"oldest unsynced  {_age(status['oldest_unsent_at'])}")
            print(f"last success     {_age(status['last_success_at'])}")
            print(f"last error       {status['last_error'] or '-'} {_age(status['last_error_at'])}")
            print(f"orders feed      {_age(status['orders_feed_at'])} ({status['orders_cached']} orders cached)")
            print(f"certificate feed {_age(status['certificates_feed_at'])}")
            return 0
        daemon = SyncDaemon(kiosk.store, kiosk.central, cfg.kiosk.id, kiosk.engine, feeds=kiosk.central,
                            retention=dt.timedelta(days=cfg.kiosk.retention_days))
        if args.command == "run":
            daemon.run(args.interval)
            return 0
        report = daemon.once()
        print(f"pushed {report.pushed}, queued requests sent {report.queued_sent}, "
              f"audit entries {report.audit_sent}, orders pulled {report.orders_pulled}, "
              f"certificate events {report.certificate_events}, purged {report.purged}"
              + (f", error {report.error.key} {report.error.data}" if report.error else ""))
        return 1 if report.error else 0
    finally:
        kiosk.close()


if __name__ == "__main__":
    sys.exit(main())
