"""``python -m sync``: the kiosk's sync with the central service.

``once``   one round: push the journal, send queued requests, purge what retention allows; exit 1 if
           the central could not be reached.
``run``    rounds every ``--interval`` seconds, with backoff after failures (the systemd service).
``status`` queue length, the oldest unsynced event's age, last success, last error, the audit chain's
           unsent entries and the central's refusal of it (a fork: ``tamga-provision audit-rejoin``).
``enroll`` make this kiosk's key, exchange it and the one-time code of ``python -m central add-kiosk``
           for its client certificate (``[central] client_certificate``/``client_key``, mode 0600).

``once`` and ``run`` renew the kiosk's certificate when less than a third of its validity is left.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

from kiosk.errors import ConfigError, KioskError
from kiosk.shell import config
from kiosk.shell import log as kiosk_log
from sync.central_calendar import CalendarFile

log = logging.getLogger("tamga.sync")


def _age(at: str | None) -> str:
    if not at:
        return "-"
    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(at)).total_seconds()
    return f"{seconds:.0f} s ago ({at})"


def status_lines(status: dict[str, Any]) -> list[str]:
    """What ``status`` prints of :meth:`sync.store.KioskStore.sync_status`."""
    refused = status["audit_error"]
    return [f"queued           {status['queued']}",
            f"oldest unsynced  {_age(status['oldest_unsent_at'])}",
            f"last success     {_age(status['last_success_at'])}",
            f"last error       {status['last_error'] or '-'} {_age(status['last_error_at'])}",
            f"orders feed      {_age(status['orders_feed_at'])} ({status['orders_cached']} orders cached)",
            f"certificate feed {_age(status['certificates_feed_at'])}",
            f"trust feed       {_age(status['trust_feed_at'])}",
            f"audit chain      {status['audit_unsent']} unsent" + (f"; REFUSED: {refused}" if refused else "")
            + ("; a store restored from an old backup? tamga-provision audit-rejoin --reason … --technician …"
               if refused and "audit_fork" in refused else "")]


def calendar_line(kept: CalendarFile) -> str:
    """Which of the central's renewal calendars the kiosk keeps (``GET /api/v1/config``)."""
    calendar, written = kept.load(), kept.mtime_ns()
    if calendar is None:
        return "central calendar -  (not fetched yet: the kiosk's own [calendar] only)"
    at = dt.datetime.fromtimestamp(written / 1e9, dt.UTC).isoformat(timespec="seconds")
    return (f"central calendar {calendar.country} version {calendar.version[:12]}, "
            f"{len(calendar.dated_holidays)} dated holidays, kept {_age(at)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync", description="Tamga kiosk sync with the central service")
    parser.add_argument("--config", type=Path, help="kiosk.toml (default: $TAMGA_CONFIG, /etc/tamga/kiosk.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("once", help="one round: push, send queued requests, purge")
    run = sub.add_parser("run", help="rounds until stopped")
    run.add_argument("--interval", type=float, default=30.0, help="seconds between rounds (default 30)")
    sub.add_parser("status", help="queue length, oldest unsynced event, last success and error, the audit chain")
    enroll = sub.add_parser("enroll", help="get this kiosk's client certificate with a one-time code")
    enroll.add_argument("--code", required=True, help="the code python -m central add-kiosk printed")
    enroll.add_argument("--office", required=True, help="the office code the kiosk belongs to (e.g. main)")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except ConfigError as err:
        print(f"configuration error: {err.detail} (setting {err.data.get('setting')})", file=sys.stderr)
        return 2
    kiosk_log.setup(cfg.log_level)
    if args.command == "enroll":
        return _enroll(cfg, args.code, args.office)
    from kiosk.clerk_desk import refusal_text
    from kiosk.i18n import Translator
    from kiosk.shell import app
    from sync.daemon import SyncDaemon
    from sync.kiosk_identity import renew_if_due

    kiosk = app.build(cfg)
    try:
        if args.command == "status":
            print("\n".join(status_lines(kiosk.store.sync_status())))
            print(f"trust material   {len(app.trust_material(cfg).version())} national ID CA certificates kept, "
                  f"{len(app.revocation_checker(cfg).cached_urls())} ID-card CRLs cached")
            print(calendar_line(CalendarFile.in_data_dir(cfg.kiosk.data_dir)))
            t = Translator(cfg.kiosk.language)
            for line in kiosk.clerk_desk.refused():      # kept requests the central refused: said in words
                print(f"refused          {refusal_text(t, line, kiosk.engine.policy.timezone)}")
            return 0
        identity = cfg.central.identity()

        def renew_identity() -> None:
            try:
                if renew_if_due(kiosk.central, identity):
                    log.info("kiosk certificate renewed", extra={"not_after": str(
                        identity.load_certificate().not_valid_after_utc)})
            except KioskError as err:      # the current certificate stays in use; tried again next round
                log.warning("kiosk certificate renewal failed", extra={"reason": err.key, **err.data})

        daemon = SyncDaemon(kiosk.store, kiosk.central, cfg.kiosk.id, kiosk.engine, feeds=kiosk.central,
                            retention=dt.timedelta(days=cfg.kiosk.retention_days), before_round=renew_identity,
                            trust=app.trust_material(cfg, app.revocation_checker(cfg)),
                            calendar=CalendarFile.in_data_dir(cfg.kiosk.data_dir))
        if args.command == "run":
            daemon.run(args.interval)
            return 0
        report = daemon.once()
        print(f"pushed {report.pushed}, queued requests sent {report.queued_sent}, "
              f"audit entries {report.audit_sent}, orders pulled {report.orders_pulled}, "
              f"certificate events {report.certificate_events}, trust feed items {report.trust_items}, "
              f"CRLs fetched {sum(1 for v in report.crls.values() if v == 'fetched')}/{len(report.crls)}, "
              f"purged {report.purged}"
              + (f", error {report.error.key} {report.error.data}" if report.error else ""))
        return 1 if report.error else 0
    finally:
        kiosk.close()


def _enroll(cfg: config.Config, code: str, office: str) -> int:
    """Enroll and say what happened in the kiosk's language (exit 1 with what to check)."""
    from kiosk.i18n import Translator
    from sync.kiosk_identity import enroll

    identity = cfg.central.identity()
    try:
        certificate = enroll(cfg.central.url, code, office, identity, kiosk_id=cfg.kiosk.id,
                             timeout_s=cfg.central.timeout_s)
    except KioskError as err:
        t = Translator(cfg.kiosk.language)
        print(f"enrollment failed ({err.data.get('reason', err.key)}): {t(err.key, **err.data)}", file=sys.stderr)
        return 1
    print(f"enrolled: {certificate.subject.rfc4514_string()}, serial {certificate.serial_number:X}, "
          f"valid until {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    print(f"certificate {identity.certificate}, key {identity.key} (mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
