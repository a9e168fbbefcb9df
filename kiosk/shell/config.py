"""The kiosk configuration: one TOML file over documented defaults (``kiosk/defaults.toml``).

Loading checks every setting; a wrong or missing one raises :class:`ConfigError` whose
``data['setting']`` names it (``printer.address``), so start-up stops with a message a technician
can act on.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.errors import ConfigError
from kiosk.i18n import LANGUAGES
from kiosk.pin import SoPin
from kiosk.ports import KeyAlgorithm
from kiosk.workdays import WorkCalendar, default_calendar

DEFAULT_PATH = Path("/etc/tamga/kiosk.toml")


if TYPE_CHECKING:
    from sync.kiosk_identity import KioskIdentity


@dataclass(frozen=True)
class KioskSettings:
    id: str
    office: str
    language: str
    languages: tuple[str, ...]
    data_dir: Path
    timezone: str
    country: str
    currency: str
    retention_days: int


@dataclass(frozen=True)
class CentralSettings:
    url: str
    ca_chain: Path
    client_certificate: Path
    client_key: Path
    timeout_s: float

    def identity(self) -> KioskIdentity:
        """The kiosk's TLS identity: the CA chain it trusts, its certificate and key (``python -m sync enroll``)."""
        from sync.kiosk_identity import KioskIdentity

        return KioskIdentity(ca_chain=self.ca_chain, certificate=self.client_certificate, key=self.client_key)


@dataclass(frozen=True)
class IdCardSettings:
    reader: str
    profile: str
    trust_anchors: tuple[Path, ...]
    intermediates: tuple[Path, ...]
    wait_s: float


COUNTRY_PROFILES = ("MN", "KZ", "KG")
REVOCATION_MODES = ("ocsp-then-crl", "ocsp", "crl", "none")


@dataclass(frozen=True)
class IdentitySettings:
    """How the ID card is trusted: anchors per country profile, revocation policy, RSA challenge padding."""

    revocation: str                      # ocsp-then-crl, ocsp, crl or none
    crl_grace_days: float                # a cached CRL past nextUpdate decides this long when OCSP is down
    ocsp_timeout_s: float
    rsa_padding: str                     # pkcs1v15 or pss
    countries: tuple[str, ...]           # ID card country profiles this kiosk accepts
    trust_anchors: dict[str, tuple[Path, ...]]   # country profile → root certificates (PEM)

    def anchors(self) -> tuple[Path, ...]:
        """The trust anchors of the accepted country profiles."""
        return tuple(path for country in self.countries for path in self.trust_anchors[country])


@dataclass(frozen=True)
class TokenSettings:
    module: Path
    factory_so_pin_file: Path
    key_algorithm: KeyAlgorithm
    label_prefix: str
    rescan: bool
    holder_agreement: bool = True

    def factory_so_pin(self) -> SoPin | None:
        try:
            value = self.factory_so_pin_file.read_text().strip()
        except OSError as err:
            raise ConfigError(f"cannot read {self.factory_so_pin_file}: {err.strerror}",
                              setting="token.factory_so_pin_file") from err
        return SoPin(value) if value else None


@dataclass(frozen=True)
class PrinterSettings:
    kind: str
    address: str
    usb_vendor: int
    usb_product: int
    path: Path
    width_px: int
    timeout_s: float

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host, int(port)


@dataclass(frozen=True)
class UiSettings:
    idle_timeout_s: float
    size: str
    fullscreen: bool
    large_text: bool


@dataclass(frozen=True)
class Config:
    source: Path | None
    kiosk: KioskSettings
    central: CentralSettings
    idcard: IdCardSettings
    identity: IdentitySettings
    token: TokenSettings
    printer: PrinterSettings
    qr_template: str
    log_level: str
    calendar: WorkCalendar
    renewal_notice_days: int
    ui: UiSettings

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.kiosk.timezone)


def defaults() -> dict[str, Any]:
    return tomllib.loads(resources.files("kiosk").joinpath("defaults.toml").read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], override: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown setting {name}", setting=name)
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a table", setting=name)
            out[key] = _merge(base[key], value, f"{name}.")
        else:
            out[key] = value
    return out


class _Reader:
    def __init__(self, raw: dict[str, Any], base_dir: Path) -> None:
        self.raw = raw
        self.base_dir = base_dir

    def get(self, name: str, kind: type | tuple[type, ...]) -> Any:
        section, key = name.split(".")
        value = self.raw[section][key]
        if isinstance(value, bool) and kind is not bool:
            raise ConfigError(f"{name} must be {_kind_name(kind)}, not a boolean", setting=name)
        if not isinstance(value, kind):
            raise ConfigError(f"{name} must be {_kind_name(kind)}, not {value!r}", setting=name)
        return value

    def text(self, name: str, allow_empty: bool = False) -> str:
        value = self.get(name, str)
        if not allow_empty and not value.strip():
            raise ConfigError(f"{name} must not be empty", setting=name)
        return str(value)

    def path(self, name: str, must_exist: bool = False) -> Path:
        return self._path(self.text(name), name, must_exist)

    def _path(self, value: str, name: str, must_exist: bool) -> Path:
        path = Path(value)
        if not path.is_absolute():
            path = (self.base_dir / path).resolve()
        if must_exist and not path.exists():
            raise ConfigError(f"{name}: {path} does not exist", setting=name, path=str(path))
        return path

    def paths(self, name: str, must_exist: bool) -> tuple[Path, ...]:
        values = self.get(name, list)
        return tuple(self._path(v, name, must_exist) for v in values)

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        value = self.text(name)
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, not {value!r}", setting=name)
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load(path: Path | str | None = None, check_files: bool = True) -> Config:
    """Load the configuration from ``path``, else ``$TAMGA_CONFIG``, else /etc/tamga/kiosk.toml.

    ``check_files``: also require that the files it names exist (trust anchors, module, token file).
    """
    source = Path(path) if path else Path(os.environ.get("TAMGA_CONFIG", DEFAULT_PATH))
    try:
        override = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"configuration file {source} not found", setting="TAMGA_CONFIG") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: {err}", setting=str(source)) from err
    return from_dict(override, base_dir=source.resolve().parent, source=source, check_files=check_files)


def from_dict(override: dict[str, Any], base_dir: Path, source: Path | None = None,
              check_files: bool = True) -> Config:
    r = _Reader(_merge(defaults(), override), base_dir)
    language = r.choice("kiosk.language", LANGUAGES)
    languages = tuple(r.get("kiosk.languages", list))
    for lang in languages:
        if lang not in LANGUAGES:
            raise ConfigError(f"kiosk.languages: unsupported language {lang!r}", setting="kiosk.languages")
    if language not in languages:
        raise ConfigError("kiosk.language must be one of kiosk.languages", setting="kiosk.language")
    timezone = r.text("kiosk.timezone")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"kiosk.timezone: unknown time zone {timezone!r}", setting="kiosk.timezone") from err
    retention = r.get("kiosk.retention_days", int)
    if retention < 1:
        raise ConfigError("kiosk.retention_days must be at least 1", setting="kiosk.retention_days")
    url = r.text("central.url")
    if not url.startswith("https://"):
        raise ConfigError(f"central.url must be an https URL (mutual TLS), not {url!r}", setting="central.url")
    printer_kind = r.choice("printer.kind", ("network", "usb", "file"))
    address = r.text("printer.address")
    host, _, port = address.rpartition(":")
    if printer_kind == "network" and (not host or not port.isdigit() or not 0 < int(port) < 65536):
        raise ConfigError(f"printer.address must be host:port, not {address!r}", setting="printer.address")
    width = r.get("printer.width_px", int)
    if width % 8 or not 256 <= width <= 832:
        raise ConfigError("printer.width_px must be a multiple of 8 between 256 and 832", setting="printer.width_px")
    # {central}: the central's HTTPS listener serves the verification page to a phone without a
    # client certificate; a central whose kiosk address phones cannot reach names its public one here.
    qr = r.text("receipt.qr_template").replace("{central}", url.rstrip("/"))
    try:
        qr.format(serial="00", invoice="000000000000")
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"receipt.qr_template: {err}", setting="receipt.qr_template") from err
    country = r.text("kiosk.country").upper()
    annual, dated = r.get("calendar.holidays", list), r.get("calendar.dated_holidays", list)
    try:
        base = default_calendar(country)
        extra = WorkCalendar.from_config(country, annual, dated)
    except ValueError as err:
        raise ConfigError(f"calendar: {err}", setting="calendar.holidays") from err
    calendar = base.with_holidays_of(extra)
    notice_days = r.get("calendar.renewal_notice_days", int)
    if not 1 <= notice_days <= 90:
        raise ConfigError("calendar.renewal_notice_days must be 1 to 90", setting="calendar.renewal_notice_days")
    idle = float(r.get("ui.idle_timeout_s", (int, float)))
    if not 10 <= idle <= 3600:
        raise ConfigError("ui.idle_timeout_s must be 10 to 3600 seconds", setting="ui.idle_timeout_s")
    size = r.text("ui.size")
    ui_width, sep, ui_height = size.partition("x")
    if not (sep and ui_width.isdigit() and ui_height.isdigit()):
        raise ConfigError(f"ui.size must be WIDTHxHEIGHT (800x480), not {size!r}", setting="ui.size")
    identity = _identity_settings(r, country, check_files)
    return Config(
        source=source,
        kiosk=KioskSettings(
            id=r.text("kiosk.id"), office=r.text("kiosk.office"), language=language, languages=languages,
            data_dir=r.path("kiosk.data_dir"), timezone=timezone, country=country,
            currency=r.choice("kiosk.currency", ("MNT", "KZT", "KGS")), retention_days=retention,
        ),
        central=CentralSettings(url=url.rstrip("/"), ca_chain=r.path("central.ca_chain", check_files),
                                client_certificate=r.path("central.client_certificate"),
                                client_key=r.path("central.client_key"),
                                timeout_s=float(r.get("central.timeout_s", (int, float)))),
        idcard=IdCardSettings(
            reader=r.text("idcard.reader", allow_empty=True),
            profile=r.choice("idcard.profile", ("piv", "opensc", "auto")),
            trust_anchors=r.paths("idcard.trust_anchors", check_files),
            intermediates=r.paths("idcard.intermediates", check_files),
            wait_s=float(r.get("idcard.wait_s", (int, float))),
        ),
        identity=identity,
        token=TokenSettings(
            module=r.path("token.module", check_files),
            factory_so_pin_file=r.path("token.factory_so_pin_file", check_files),
            key_algorithm=KeyAlgorithm(r.choice("token.key_algorithm", tuple(a.value for a in KeyAlgorithm))),
            label_prefix=r.text("token.label_prefix"), rescan=r.get("token.rescan", bool),
            holder_agreement=r.get("token.holder_agreement", bool),
        ),
        printer=PrinterSettings(
            kind=printer_kind, address=address, usb_vendor=r.get("printer.usb_vendor", int),
            usb_product=r.get("printer.usb_product", int), path=r.path("printer.path"), width_px=width,
            timeout_s=float(r.get("printer.timeout_s", (int, float))),
        ),
        qr_template=qr,
        log_level=r.choice("log.level", ("DEBUG", "INFO", "WARNING", "ERROR")),
        calendar=calendar,
        renewal_notice_days=notice_days,
        ui=UiSettings(idle_timeout_s=idle, size=size, fullscreen=r.get("ui.fullscreen", bool),
                      large_text=r.get("ui.large_text", bool)),
    )


def _identity_settings(r: _Reader, kiosk_country: str, check_files: bool) -> IdentitySettings:
    grace = float(r.get("identity.crl_grace_days", (int, float)))
    if not 0 <= grace <= 30:
        raise ConfigError("identity.crl_grace_days must be 0 to 30", setting="identity.crl_grace_days")
    countries = tuple(str(c).upper() for c in r.get("identity.countries", list)) or (kiosk_country,)
    for country in countries:
        if country not in COUNTRY_PROFILES:
            raise ConfigError(f"identity.countries: unknown country profile {country!r}", setting="identity.countries")
    return IdentitySettings(
        revocation=r.choice("identity.revocation", REVOCATION_MODES), crl_grace_days=grace,
        ocsp_timeout_s=float(r.get("identity.ocsp_timeout_s", (int, float))),
        rsa_padding=r.choice("identity.rsa_padding", ("pkcs1v15", "pss")), countries=countries,
        trust_anchors={c: r.paths(f"identity.trust_anchors_{c.lower()}", check_files) for c in COUNTRY_PROFILES},
    )
