"""Wiring: the kiosk configuration turned into adapters and the issuance workflow over them.

This module (with ``config``, ``log``, ``demo``) is the app shell, allowed to import the adapters;
the workflow modules beside it stay pure.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from devices.idcard import IdCardReader
from devices.printer import EscPosPrinter, PrinterTarget
from devices.token import Pkcs11Token
from kiosk.config import Config
from kiosk.errors import ConfigError
from kiosk.issuance import Issuance, IssuancePolicy
from kiosk.ports import TokenPort
from sync.central_client import CentralClient
from sync.store import KioskStore, load_or_create_key

log = logging.getLogger("tamga.app")


def load_certificates(paths: tuple[Path, ...], setting: str) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            certs += x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{setting}: cannot read certificates from {path}: {err}", setting=setting) from err
    return certs


def printer_target(cfg: Config) -> PrinterTarget:
    p = cfg.printer
    if p.kind == "network":
        host, port = p.host_port
        return PrinterTarget("network", host=host, port=port, timeout_s=p.timeout_s)
    if p.kind == "usb":
        return PrinterTarget("usb", usb_vendor=p.usb_vendor, usb_product=p.usb_product, timeout_s=p.timeout_s)
    return PrinterTarget("file", path=str(p.path), timeout_s=p.timeout_s)


@dataclass
class Kiosk:
    config: Config
    store: KioskStore
    central: CentralClient
    idcard: IdCardReader
    token: TokenPort
    printer: EscPosPrinter
    issuance: Issuance = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        policy = IssuancePolicy(
            office=cfg.kiosk.office, country=cfg.kiosk.country, currency=cfg.kiosk.currency,
            key_algorithm=cfg.token.key_algorithm, factory_so_pin=cfg.token.factory_so_pin(),
            token_label_prefix=cfg.token.label_prefix, qr_template=cfg.qr_template, timezone=cfg.tz,
        )
        self.issuance = Issuance(self.store, self.central, self.idcard, self.token, self.printer, policy)

    def housekeeping(self) -> int:
        """Delete finished sessions' personal data past the retention period; returns how many."""
        purged = self.store.purge_finished(dt.timedelta(days=self.config.kiosk.retention_days))
        if purged:
            log.info("purged finished sessions", extra={"count": purged})
        return purged

    def close(self) -> None:
        self.issuance.close()
        self.idcard.close()
        self.central.close()
        self.store.close()


def build(cfg: Config, token: TokenPort | None = None) -> Kiosk:
    """Adapters from the configuration.  ``token`` replaces the PKCS#11 adapter (fault injection)."""
    data_dir = cfg.kiosk.data_dir
    store = KioskStore(data_dir / "kiosk.db", load_or_create_key(data_dir / "kiosk.key"))
    central = CentralClient(cfg.central.url, cfg.central.token(), cfg.central.timeout_s)
    idcard = IdCardReader(cfg.idcard.reader, load_certificates(cfg.idcard.trust_anchors, "idcard.trust_anchors"),
                          load_certificates(cfg.idcard.intermediates, "idcard.intermediates"), cfg.idcard.profile,
                          card_timeout=cfg.idcard.wait_s)
    if token is None:
        token = Pkcs11Token(str(cfg.token.module), rescan=cfg.token.rescan)
    printer = EscPosPrinter(printer_target(cfg), width_px=cfg.printer.width_px)
    kiosk = Kiosk(cfg, store, central, idcard, token, printer)
    kiosk.housekeeping()     # at every start: personal data is kept only as long as needed
    return kiosk
