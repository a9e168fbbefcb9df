"""Wiring: the kiosk configuration turned into adapters and the flow engine over them.

This module (with ``config``, ``log``, ``demo``) is the app shell, allowed to import the adapters;
the workflow modules beside it stay pure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography import x509

from devices.agreement import Pkcs11AgreementSigner
from devices.certificates import X509Reader
from devices.idcard import IdCardVerifier
from devices.idcard_auto import id_card_reader_for
from devices.printer import EscPosPrinter, PrinterTarget
from devices.revocation import RevocationChecker, RevocationMode, RevocationPolicy
from devices.token import Pkcs11Token
from kiosk.clerk_desk import ClerkDesk
from kiosk.clerks import ClerkSignIn
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.errors import ConfigError
from kiosk.flows import ALL_FLOWS, FlowAccess
from kiosk.ports import CentralPort, TokenPort
from kiosk.shell.config import Config
from sync.central_calendar import CalendarFile, merged
from sync.central_client import CentralClient
from sync.offline_central import OfflineCentral
from sync.store import KioskStore
from sync.trust_material import TrustMaterial, TrustSource

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


def pkcs11_token_of(token: TokenPort) -> Pkcs11Token:
    """The PKCS#11 token the holder agreement is signed on: ``token``, or the one it wraps (``inner``, as the
    fault-injecting :class:`devices.sim.faults.PullableToken` does).  Raises ConfigError when there is none:
    ``[token] holder_agreement`` is never skipped without a word."""
    seen: TokenPort | None = token
    while seen is not None and not isinstance(seen, Pkcs11Token):
        seen = getattr(seen, "inner", None)
    if seen is None:
        raise ConfigError("token.holder_agreement needs the eToken through PKCS#11 (pyHanko signs on it)",
                          setting="token.holder_agreement")
    return seen


@dataclass
class Kiosk(FlowAccess):
    """The kiosk's adapters and the flow engine over them."""

    config: Config
    store: KioskStore
    central: CentralClient
    idcard: IdCardVerifier
    token: TokenPort
    printer: EscPosPrinter
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    engine: Engine = field(init=False)
    clerk_desk: ClerkDesk = field(init=False)
    calendar_file: CalendarFile = field(init=False)
    _calendar_seen: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        cfg = self.config
        policy = KioskPolicy(
            office=cfg.kiosk.office, country=cfg.kiosk.country, currency=cfg.kiosk.currency,
            key_algorithm=cfg.token.key_algorithm, factory_so_pin=cfg.token.factory_so_pin(),
            token_label_prefix=cfg.token.label_prefix, qr_template=cfg.qr_template, timezone=cfg.tz,
            calendar=cfg.calendar, renewal_notice_days=cfg.renewal_notice_days,
            holder_agreement=cfg.token.holder_agreement,
        )
        # Order lookups fall back to the cached office orders when the central is unreachable.
        lookup = cast(CentralPort, OfflineCentral(self.central, self.store.orders))
        # The holder agreement is signed through the token's own PKCS#11 session (pyHanko).
        agreement = Pkcs11AgreementSigner(pkcs11_token_of(self.token)) if cfg.token.holder_agreement else None
        services = Services(self.store, lookup, self.idcard, self.token, self.printer, X509Reader(),
                            agreement=agreement)
        self.engine = Engine(services, policy, ALL_FLOWS, clock=self.clock)
        self.calendar_file = CalendarFile.in_data_dir(cfg.kiosk.data_dir)
        self.refresh_calendar()
        audit = self.store.audit
        sign_in = ClerkSignIn(self.store.clerks, audit=lambda kind, fields: audit.append(kind, fields))
        self.clerk_desk = ClerkDesk(self.engine, sign_in, self.store,
                                    lambda kind, fields, session_id: audit.append(kind, fields, session_id))


    def refresh_calendar(self) -> bool:
        """Count working days with the central's calendar as the sync daemon (another process) last kept it,
        beside ``[calendar]``; whether it changed.  Cheap when it did not (one stat)."""
        written = self.calendar_file.mtime_ns()
        if written == self._calendar_seen:
            return False
        self._calendar_seen = written
        calendar = merged(self.config.calendar, self.calendar_file.load())
        self.engine.policy = dataclasses.replace(self.engine.policy, calendar=calendar)
        return True

    def housekeeping(self) -> int:
        """Audit a changed configuration, then delete finished sessions' personal data past the retention
        period; returns how many sessions were purged."""
        self.audit_configuration()
        purged = self.store.purge_finished(dt.timedelta(days=self.config.kiosk.retention_days))
        if purged:
            log.info("purged finished sessions", extra={"count": purged})
        return purged

    def audit_configuration(self) -> list[str]:
        """Append ``config.changed`` to the audit chain, naming the settings that differ from the last start.

        The chain holds the settings' names and a digest of all of them, never their values (a path may
        name a person's file, a URL an internal host); returns the names.
        """
        digests = setting_digests(self.config)
        before = json.loads(self.store.sync_state_value(CONFIG_DIGESTS) or "{}")
        changed = sorted(name for name in digests.keys() | before.keys() if digests.get(name) != before.get(name))
        if changed:
            whole = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
            self.store.audit.append("config.changed", {"setting": changed, "body_sha256": whole})
            self.store.set_sync_state(CONFIG_DIGESTS, json.dumps(digests, sort_keys=True))
            log.info("configuration changed", extra={"settings": changed})
        return changed

    def close(self) -> None:
        self.engine.close()
        self.idcard.close()
        self.central.close()
        self.store.close()


CONFIG_DIGESTS = "config_digests"
AUDITED_SECTIONS = ("kiosk", "central", "idcard", "identity", "token", "printer")


def setting_digests(cfg: Config) -> dict[str, str]:
    """``section.key`` → SHA-256 of the setting's value as loaded (secrets are file paths, never read here)."""
    return {f"{section}.{key}": hashlib.sha256(repr(value).encode()).hexdigest()
            for section in AUDITED_SECTIONS for key, value in sorted(vars(getattr(cfg, section)).items())}


def trust_material(cfg: Config, crls: RevocationChecker | None = None) -> TrustMaterial:
    """The national ID trust material the sync daemon keeps in the data dir (the central's trust feed, CRLs)."""
    return TrustMaterial(cfg.kiosk.data_dir / "trust-anchors", crls)


def trust_source(cfg: Config) -> TrustSource:
    """The accepted country profiles' trust anchors and intermediates: the configured ones and the synced ones."""
    anchors = load_certificates(cfg.idcard.trust_anchors, "idcard.trust_anchors")
    anchors += load_certificates(cfg.identity.anchors(), "identity.trust_anchors")
    return TrustSource(trust_material(cfg), cfg.identity.countries, anchors,
                       load_certificates(cfg.idcard.intermediates, "idcard.intermediates"))


def _trust(cfg: Config) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(trust anchors of the accepted country profiles, intermediates): configured and synced."""
    return trust_source(cfg)()


def revocation_checker(cfg: Config) -> RevocationChecker:
    """The ID-card revocation checker, its CRL cache in the data dir: ``refresh()`` is what the sync daemon
    calls to fetch again the cached CRLs past their nextUpdate."""
    anchors, intermediates = _trust(cfg)
    policy = RevocationPolicy(RevocationMode(cfg.identity.revocation), dt.timedelta(days=cfg.identity.crl_grace_days),
                              cfg.identity.ocsp_timeout_s)
    return RevocationChecker(cfg.kiosk.data_dir / "crl-cache", policy, issuers=[*intermediates, *anchors])


def id_card_reader(cfg: Config) -> IdCardVerifier:
    """The ID-card reader of ``[idcard] profile`` (piv, opensc or auto) with the trust anchors of the accepted
    country profiles and the revocation checker."""
    source = trust_source(cfg)
    anchors, intermediates = source()
    return id_card_reader_for(cfg.idcard.profile, cfg.idcard.reader, anchors, intermediates,
                              card_timeout=cfg.idcard.wait_s, revocation=revocation_checker(cfg),
                              rsa_padding=cfg.identity.rsa_padding, opensc_conf=cfg.kiosk.data_dir / "opensc.conf",
                              trust_source=source)


def build(cfg: Config, token: TokenPort | None = None,
          clock: Callable[[], dt.datetime] | None = None) -> Kiosk:
    """Adapters from the configuration; changes nothing (the app calls ``housekeeping`` at start).

    ``token`` replaces the PKCS#11 adapter (fault injection); ``clock`` the wall clock (tests).
    """
    data_dir = cfg.kiosk.data_dir
    store = KioskStore.open(data_dir)
    central = CentralClient(cfg.central.url, cfg.central.identity(), cfg.central.timeout_s)
    idcard = id_card_reader(cfg)
    adapter: TokenPort = token if token is not None else Pkcs11Token(str(cfg.token.module), rescan=cfg.token.rescan)
    printer = EscPosPrinter(printer_target(cfg), width_px=cfg.printer.width_px)
    if clock is None:
        return Kiosk(cfg, store, central, idcard, adapter, printer)
    return Kiosk(cfg, store, central, idcard, adapter, printer, clock)


def start(cfg: Config, token: TokenPort | None = None,
          clock: Callable[[], dt.datetime] | None = None) -> Kiosk:
    """Build the kiosk and do its start-up housekeeping (the retention purge): what the app and demo run."""
    kiosk = build(cfg, token, clock)
    kiosk.housekeeping()     # at every start: personal data is kept only as long as needed
    return kiosk
