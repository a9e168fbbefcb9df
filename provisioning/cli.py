"""``python -m provisioning`` (``tamga-provision``): set up a kiosk, step by step, safe to run again.

Interactive by default (each question shows its default: Enter keeps it); ``--non-interactive``
takes flags and defaults only.  Defaults come from the kiosk's existing ``/etc/tamga/kiosk.toml``
when there is one, else from ``kiosk/defaults.toml``.  ``--root DIR`` installs under DIR instead
of / (every path in the written kiosk.toml then points inside DIR, so the kiosk runs from there:
tests, a trial on a workstation); users are created, secrets chowned and units enabled only when
installing into / as root on a running systemd.

Exit status: 0 provisioned, 1 a step failed (its message says what to check), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.errors import ConfigError, KioskError
from provisioning import central, discovery, install
from provisioning.steps import Progress, StepFailed, StepSkipped
from provisioning.trail import ProvisioningTrail

CONFIG = "/etc/tamga/kiosk.toml"
CENTRAL_CA = "/etc/tamga/central-ca.pem"
IDENTITY_CERTIFICATE = "/var/lib/tamga/kiosk-identity.pem"
IDENTITY_KEY = "/var/lib/tamga/kiosk-identity.key"
SO_PIN_FILE = "/etc/tamga/token-factory-so-pin"
NATIONAL_ROOTS = "/etc/tamga/national-id-root.pem"
NATIONAL_INTERMEDIATES = "/etc/tamga/national-id-intermediates.pem"
CA_CHAIN = "/etc/tamga/ca-chain.pem"
DATA_DIR = "/var/lib/tamga"
STEPS = 10
CONFIGURATION_STEP = 7     # nothing is written before it
MODULE_PREFERENCE = {"vendor": 0, "softhsm": 1, "opensc": 2}   # OpenSC also shows the ID card as a token
STATUS_NAMES = ("central", "reader", "token", "printer")
SELF_TEST_HINTS = {
    "central": "the network cable and the kiosk's certificate (step 5)",
    "reader": "insert an ID card (any) into the reader: the self-test reads it; the reader's USB cable",
    "token": "the eToken in its slot (a blank one is fine), its USB cable",
    "printer": "the printer's paper, cover and power",
}


class Asker:
    """Questions to the technician; with ``--non-interactive`` every question takes its default."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def text(self, question: str, default: str) -> str:
        if not self.interactive:
            return default
        answer = input(f"        {question} [{default}]: ").strip()
        return answer or default

    def choose(self, question: str, options: list[str], default: int = 0) -> int:
        if not self.interactive or len(options) < 2:
            return default
        for i, option in enumerate(options, 1):
            print(f"          {i}) {option}")
        while True:
            answer = input(f"        {question} [{default + 1}]: ").strip()
            if not answer:
                return default
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return int(answer) - 1
            print(f"        1 to {len(options)}, please")


@dataclass
class Plan:
    """What provisioning found and decided; turned into files in step 7."""

    root: Path
    existing: dict[str, Any]
    kiosk_id: str = ""
    office: str = ""
    language: str = ""
    central_url: str = ""
    central_ca: Path | None = None        # the central's tls-ca.pem as the technician brought it
    office_code: str = "main"             # the office at the central, as add-kiosk --office named it
    enrollment_code: str = ""
    reader: str = ""
    module: Path | None = None
    module_kind: str = ""
    printer: dict[str, Any] = field(default_factory=dict)
    credential: central.Credential | None = None
    national_roots: str = ""          # PEM to write, "" = keep the file in place
    national_intermediates: str | None = None
    ca_chain: str = ""
    so_pin: str | None = None         # factory SO PIN to write, None = keep the file in place

    def path(self, field_path: str) -> Path:
        return install.target(self.root, field_path)


def _existing_config(root: Path) -> dict[str, Any]:
    path = install.target(root, CONFIG)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _default(plan: Plan, name: str) -> Any:
    from kiosk.shell import config

    section, key = name.split(".")
    if key in plan.existing.get(section, {}):
        return plan.existing[section][key]
    return config.defaults()[section][key]


# --- steps -------------------------------------------------------------------------------------------
def step_readers(plan: Plan, args: argparse.Namespace, ask: Asker, progress: Progress) -> str:
    try:
        readers = discovery.list_readers()
    except KioskError as err:
        raise StepFailed(f"pcscd does not answer ({err.data.get('pcsc', err.detail)})",
                         "that pcscd is installed and running: `systemctl status pcscd.socket`") from err
    if not readers:
        raise StepFailed("no card reader found", "the reader's USB cable (plug it in again); `pcsc_scan -n` lists "
                         "what pcscd sees; a reader needs a CCID driver (libccid)")
    for name in readers:
        progress.note(f"reader: {name}{' (card inserted)' if discovery.card_present(name) else ''}")
    wanted = args.reader if args.reader is not None else str(_default(plan, "idcard.reader"))
    if wanted:
        matching = [r for r in readers if wanted.casefold() in r.casefold()]
        if not matching:
            raise StepFailed(f"no reader named like {wanted!r} (found: {', '.join(readers)})",
                             "the name given with --reader (a part of it is enough), the reader's cable")
        plan.reader = wanted
        return f"{len(readers)} reader(s); the kiosk uses {matching[0]}"
    chosen = ask.choose("the ID-card reader", readers)
    plan.reader = "" if chosen == 0 else readers[chosen]
    return f"{len(readers)} reader(s); the kiosk uses {readers[chosen]}"


def _describe(probe: discovery.ModuleProbe) -> str:
    if probe.token is None:
        return f"{probe.module}: {probe.error}"
    t = probe.token
    state = "initialised" if t.initialised else "blank"
    return f"{probe.module}: {t.model} {t.serial or '(no serial)'} {t.label!r} ({state})"


def step_token(plan: Plan, args: argparse.Namespace, ask: Asker, progress: Progress) -> str:
    found = discovery.find_modules()
    given = args.module if args.module is not None else plan.existing.get("token", {}).get("module")
    if given is not None:           # given, or the module of the configuration in place (a re-run)
        module = Path(given)
        if not module.is_file():
            listed = ", ".join(str(m) for m in found) or "none"
            raise StepFailed(f"the token module {module} does not exist",
                             f"the path given with --module (modules found here: {listed}); "
                             "or install the token vendor's package")
        probes = [discovery.probe_module(module)]
    else:
        if not found:
            raise StepFailed("no PKCS#11 module found in /usr/lib, /usr/lib/*/, /usr/local/lib",
                             "install the eToken vendor's package (or softhsm2 / opensc) or give --module PATH")
        probes = [discovery.probe_module(m) for m in found]
    for probe in probes:
        progress.note(_describe(probe))
    usable = sorted((p for p in probes if p.token is not None),
                    key=lambda p: MODULE_PREFERENCE[discovery.module_kind(p.module)])
    if not usable:
        probe = probes[0]
        if probe.reason == "error.device_not_ready" and "no token" in probe.error:
            raise StepFailed(f"no token in the slot of {probe.module}",
                             "insert the eToken (a blank one is fine); its USB cable; that the module is "
                             "the one for this token model")
        raise StepFailed(f"{probe.module} cannot be used: {probe.error}",
                         f"the module path; that it is built for this machine (`ldd {probe.module}` shows "
                         "missing libraries); pcscd for tokens behind a reader")
    choice = usable[ask.choose("the eToken's module", [_describe(p) for p in usable])]
    plan.module = choice.module
    plan.module_kind = discovery.module_kind(choice.module)
    assert choice.token is not None
    return f"{choice.module} ({plan.module_kind}): {choice.token.model} {choice.token.serial or ''}".rstrip()


def _printer_spec(plan: Plan) -> str:
    p = plan.existing.get("printer", {})
    kind = p.get("kind", "network")
    if kind == "usb":
        return f"usb://{p.get('usb_vendor', 0):04x}:{p.get('usb_product', 0):04x}"
    if kind == "file":
        return f"file://{p.get('path', '/dev/usb/lp0')}"
    return f"tcp://{p.get('address', _default(plan, 'printer.address'))}"


def step_printer(plan: Plan, args: argparse.Namespace, ask: Asker, progress: Progress) -> str:
    from devices.printer import EscPosPrinter, PrinterTarget
    from kiosk.ports import PrinterStatus

    lp = discovery.usb_line_printers()
    by_id = discovery.usb_printers_by_id()
    for dev in lp:
        progress.note(f"USB printer (usblp): {dev}")
    for _, _, name in by_id:
        progress.note(f"USB printer (pyusb): {name}")
    spec = args.printer
    if spec is None:
        options = [_printer_spec(plan)] + [f"file://{d}" for d in lp] + [f"usb://{n}" for _, _, n in by_id]
        options = list(dict.fromkeys(options))
        spec = options[ask.choose("the receipt printer", options)]
        spec = ask.text("printer (tcp://HOST:PORT, usb://VVVV:PPPP or file:///dev/usb/lp0)", spec)
    if "://" not in spec:
        spec = f"tcp://{spec}"
    try:
        target = PrinterTarget.parse(spec, timeout_s=5.0)
    except ConfigError as err:
        raise StepFailed(err.detail, "the printer address: tcp://HOST:PORT, usb://VVVV:PPPP (hex) or "
                         "file:///dev/usb/lp0") from err
    if target.kind == "network":
        status = EscPosPrinter(target).status()
        plan.printer = {"kind": "network", "address": f"{target.host}:{target.port}"}
        if status is PrinterStatus.OFFLINE:
            raise StepFailed(f"no printer answers at {target.host}:{target.port}",
                             "that the printer is on, its network cable, its IP address (print its "
                             "self-test page: hold FEED while switching it on)")
        if status is PrinterStatus.PAPER_OUT:
            raise StepFailed("the printer reports paper out", "load a paper roll and close the cover")
        note = {PrinterStatus.PAPER_NEAR_END: " (paper near its end: load a new roll soon)",
                PrinterStatus.UNKNOWN: " (it does not answer status requests)"}.get(status, "")
        return f"network printer {target.host}:{target.port}: {status.value}{note}"
    if target.kind == "usb":
        ids = {(v, p) for v, p, _ in by_id}
        plan.printer = {"kind": "usb", "usb_vendor": target.usb_vendor, "usb_product": target.usb_product}
        if (target.usb_vendor, target.usb_product) not in ids:
            raise StepFailed(f"no USB printer {target.usb_vendor:04x}:{target.usb_product:04x}",
                             "the printer's USB cable and power; `lsusb` shows its ids; pyusb is needed: "
                             "pip install 'python-escpos[usb]'")
        return f"USB printer {target.usb_vendor:04x}:{target.usb_product:04x}"
    path = Path(target.path)
    plan.printer = {"kind": "file", "path": str(path)}
    if not path.exists() or not os.access(path, os.W_OK):
        raise StepFailed(f"cannot write to {path}", "the printer's USB cable and power; the usblp driver "
                         "(`lsmod | grep usblp`); the device's group (lp)")
    return f"printer device {path}"


def step_central(plan: Plan) -> str:
    assert plan.central_ca is not None
    if not plan.central_ca.is_file():
        raise StepFailed(f"no central CA file {plan.central_ca}", "the central's tls-ca.pem, copied from the "
                         "central (--central-ca FILE)")
    return central.health(plan.central_url, plan.central_ca)


def step_enroll(plan: Plan) -> str:
    assert plan.central_ca is not None
    if not plan.enrollment_code and plan.path(IDENTITY_CERTIFICATE).is_file() and plan.path(IDENTITY_KEY).is_file():
        raise StepSkipped("already enrolled: the kiosk's certificate is kept (give --enrollment-code to enroll again)")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tamga-enroll-") as tmp:
        plan.credential = central.enroll(plan.central_url, plan.kiosk_id, plan.office_code, plan.enrollment_code,
                                         plan.central_ca, Path(tmp))
    return f"the central enrolled kiosk {plan.kiosk_id} of office {plan.office_code}: {plan.credential.subject}, " \
           f"valid until {plan.credential.not_after:%Y-%m-%d} (escrow key {plan.credential.escrow_key_id[:16]}…)"


def step_trust(plan: Plan, args: argparse.Namespace, progress: Progress) -> str:
    parts = []
    if args.national_id_root:
        roots = [c for src in args.national_id_root
                 for c in central.load_certificates(src, "national ID root", plan.central_ca)]
        central.check_ca_certificates(roots, "national ID root", chain=False)
        plan.national_roots = central.pem(roots)
        parts.append(f"{len(roots)} national ID root(s)")
    elif plan.path(NATIONAL_ROOTS).is_file():
        parts.append("national ID roots kept")
    else:
        raise StepFailed("no national ID root certificate", "pass --national-id-root FILE (the national ID "
                         "authority's root CA, PEM, as the registration office received it)")
    if args.national_id_intermediate:
        inters = [c for src in args.national_id_intermediate
                  for c in central.load_certificates(src, "national ID intermediate", plan.central_ca)]
        central.check_ca_certificates(inters, "national ID intermediate", chain=False)
        plan.national_intermediates = central.pem(inters)
        parts.append(f"{len(inters)} intermediate(s)")
    if args.ca_chain:
        assert plan.central_ca is not None
        chain = central.load_certificates(args.ca_chain, "central CA chain", plan.central_ca)
        central.check_ca_certificates(chain, "central CA chain", chain=True)
        confirmed = central.confirm_at_central(plan.central_url, chain, plan.central_ca)
        for cert in chain:
            progress.note(f"central CA: {cert.subject.rfc4514_string()} (serial {cert.serial_number:X})")
        plan.ca_chain = central.pem(chain)
        parts.append(f"central CA chain of {len(chain)}, {confirmed} confirmed by the central")
    elif plan.path(CA_CHAIN).is_file():
        parts.append("central CA chain kept")
    else:
        parts.append("no central CA chain (--ca-chain; the kiosk API has no endpoint for it yet)")
    return ", ".join(parts)


def _render_toml(doc: dict[str, dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return install.toml_string(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} to TOML")

    lines = ["# Written by tamga-provision; run it again to change these, `python -m kiosk config` shows every",
             "# setting with its default (kiosk/defaults.toml).  Secrets are in the files named here."]
    for section, settings in doc.items():
        lines += ["", f"[{section}]"] + [f"{k} = {value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def planned_files(plan: Plan) -> tuple[list[install.PlannedFile], str]:
    """Every file of the configuration (kiosk.toml last) and the kiosk.toml text."""
    assert plan.module is not None and plan.central_ca is not None
    files: list[install.PlannedFile] = []
    if plan.central_ca != plan.path(CENTRAL_CA):
        files.append(install.PlannedFile(plan.path(CENTRAL_CA), plan.central_ca.read_bytes(), 0o644))
    if plan.so_pin is not None:
        files.append(install.PlannedFile(plan.path(SO_PIN_FILE), (plan.so_pin + "\n").encode("utf-8"), 0o600,
                                         secret=True))
    if plan.national_roots:
        files.append(install.PlannedFile(plan.path(NATIONAL_ROOTS), plan.national_roots.encode("ascii"), 0o644))
    if plan.national_intermediates is not None:
        files.append(install.PlannedFile(plan.path(NATIONAL_INTERMEDIATES),
                                         plan.national_intermediates.encode("ascii"), 0o644))
    if plan.ca_chain:
        files.append(install.PlannedFile(plan.path(CA_CHAIN), plan.ca_chain.encode("ascii"), 0o644))
    doc: dict[str, dict[str, Any]] = {section: dict(values) for section, values in plan.existing.items()
                                      if isinstance(values, dict)}

    def put(section: str, **values: Any) -> None:
        doc.setdefault(section, {}).update(values)

    put("kiosk", id=plan.kiosk_id, office=plan.office, data_dir=str(plan.path(DATA_DIR)))
    if plan.language:
        put("kiosk", language=plan.language)
    put("central", url=plan.central_url, ca_chain=str(plan.path(CENTRAL_CA)),
        client_certificate=str(plan.path(IDENTITY_CERTIFICATE)), client_key=str(plan.path(IDENTITY_KEY)))
    doc["central"].pop("token_file", None)       # a configuration of before mutual TLS
    has_inters = plan.national_intermediates is not None or plan.path(NATIONAL_INTERMEDIATES).is_file()
    put("idcard", reader=plan.reader, trust_anchors=[str(plan.path(NATIONAL_ROOTS))],
        intermediates=[str(plan.path(NATIONAL_INTERMEDIATES))] if has_inters else [])
    put("token", module=str(plan.module), factory_so_pin_file=str(plan.path(SO_PIN_FILE)),
        rescan=plan.module_kind == "softhsm")
    printer = doc.setdefault("printer", {})
    for key in ("address", "usb_vendor", "usb_product", "path"):
        printer.pop(key, None)
    printer.update(plan.printer)
    text = _render_toml(doc)
    if plan.credential is not None:      # a new enrollment (else the kiosk keeps its certificate), after /etc
        files.append(install.PlannedFile(plan.path(IDENTITY_KEY), plan.credential.key_pem, 0o600, secret=True))
        files.append(install.PlannedFile(plan.path(IDENTITY_CERTIFICATE), plan.credential.certificate_pem, 0o600,
                                         secret=True))
    files.append(install.PlannedFile(plan.path(CONFIG), text.encode("utf-8"), 0o640))
    return files, text


def step_configuration(plan: Plan, units_dir: Path) -> str:
    from kiosk.shell import config

    files, text = planned_files(plan)
    try:      # every setting, before anything is written
        config.from_dict(tomllib.loads(text), base_dir=plan.path(CONFIG).parent, check_files=False)
    except ConfigError as err:
        raise StepFailed(f"the configuration would not load: {err.detail}",
                         f"the value given for {err.data.get('setting')}") from err
    planned = {f.path for f in files}
    for needed in (plan.path(SO_PIN_FILE), plan.path(NATIONAL_ROOTS)):
        if needed not in planned and not needed.is_file():
            raise StepFailed(f"{needed} is missing", "pass --factory-so-pin-file FILE (the eToken vendor's "
                             "transport SO PIN)" if needed.name.startswith("token") else "pass --national-id-root")
    try:
        install.create_user(plan.root, units_dir)
        owner = install.service_user(plan.root)
        changed = install.write_all(files, owner)
        data_dir = plan.path(DATA_DIR)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(data_dir, 0o700)
        if owner is not None:
            os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    except OSError as err:
        raise StepFailed(f"cannot write {err.filename or plan.path(CONFIG).parent}: {err.strerror}",
                         "that provisioning runs as root (sudo) and the disk has room (`df -h /`); "
                         "kiosk.toml is written last, so the previous configuration is still in force") from err
    try:
        config.load(plan.path(CONFIG))
    except ConfigError as err:       # a file named in it is not what it should be
        raise StepFailed(f"the written configuration does not load: {err.detail}",
                         f"{err.data.get('setting')}; then run provisioning again") from err
    return f"{plan.path(CONFIG)} valid; {len(changed)} of {len(files)} files written, the others unchanged"


def step_self_test(plan: Plan, progress: Progress) -> str:
    command = [sys.executable, "-m", "kiosk", "--config", str(plan.path(CONFIG)), "check"]
    if install.service_user(plan.root) is not None and shutil.which("runuser"):
        command = ["runuser", "-u", install.SERVICE_USER, "--", *command]    # as the kiosk will run
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    failed = []
    for line in out.stdout.splitlines():
        progress.note(line)
        name, _, rest = line.partition(" ")
        if name in STATUS_NAMES and rest.strip().startswith("FAIL"):
            failed.append(name)
    if out.returncode == 0:
        return "python -m kiosk check: all ready"
    if failed:
        raise StepFailed(f"python -m kiosk check: {', '.join(failed)} not ready",
                         "; ".join(SELF_TEST_HINTS[n] for n in failed))
    tail = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
    raise StepFailed(f"python -m kiosk check failed: {tail}", "the message above, then run provisioning again")


def step_receipt(plan: Plan) -> str:
    from devices.printer import EscPosPrinter
    from kiosk.ports import Receipt, ReceiptLine, ReceiptLineStyle
    from kiosk.shell import app, config

    cfg = config.load(plan.path(CONFIG))
    now = dt.datetime.now(cfg.tz)
    s = ReceiptLineStyle
    receipt = Receipt(cfg.kiosk.language, (
        ReceiptLine(s.TITLE, "TAMGA"),
        ReceiptLine(s.HEADING, "Туршилтын баримт — test receipt"),
        ReceiptLine(s.TEXT, cfg.kiosk.office),
        ReceiptLine(s.RULE),
        ReceiptLine(s.PAIR, "Kiosk", cfg.kiosk.id),
        ReceiptLine(s.PAIR, "Date", now.strftime("%Y-%m-%d %H:%M")),
        ReceiptLine(s.PAIR, "Central", cfg.central.url),
        ReceiptLine(s.RULE),
        ReceiptLine(s.NOTE, "tamga-provision: the printer works."),
        ReceiptLine(s.QR, f"TAMGA:KIOSK:{cfg.kiosk.id}:{now:%Y-%m-%d}"),
    ))
    printer = EscPosPrinter(app.printer_target(cfg), width_px=cfg.printer.width_px)
    try:
        printer.print_receipt(receipt)
    except KioskError as err:
        raise StepFailed(f"the test receipt did not print: {err.key} {err.detail}",
                         "paper, cover and power of the printer; then run provisioning again") from err
    return f"printed for kiosk {cfg.kiosk.id}, {now:%Y-%m-%d %H:%M}"


def step_units(plan: Plan, args: argparse.Namespace, units_dir: Path) -> str:
    if args.no_units:
        raise StepSkipped("--no-units")
    try:
        files = install.planned_units(units_dir, plan.root, args.python)
    except OSError as err:
        raise StepFailed(f"the unit files are not in {units_dir}: {err.strerror}",
                         "--units-dir (the systemd/ directory of the Tamga release)") from err
    try:
        changed = install.write_all(files)
    except OSError as err:
        raise StepFailed(f"cannot write {err.filename}: {err.strerror}", "that provisioning runs as root (sudo) "
                         "and the disk has room (`df -h /`)") from err
    complaint = install.verify_units([f.path for f in files])
    if complaint:
        raise StepFailed(f"systemd-analyze verify: {complaint}", "the unit files and --python "
                         f"({args.python} must exist)")
    done = f"{len(changed)} of {len(files)} files installed, the others unchanged; systemd-analyze verify ok"
    if not install.systemd_running(plan.root):
        return f"{done}; not enabled (not / on a running systemd): systemctl enable {' '.join(install.ENABLE)}"
    log: list[str] = []
    try:
        install.activate(plan.root, log)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        raise StepFailed(str(err), "`journalctl -xe`; then run provisioning again") from err
    return f"{done}; enabled {', '.join(install.ENABLE)} (they start at the next boot)"


# --- main --------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tamga-provision", description=__doc__.splitlines()[0],
                                epilog="Every option has a default; interactive runs ask for what is not given.")
    p.add_argument("--non-interactive", action="store_true", help="ask nothing: flags, then defaults")
    p.add_argument("--root", type=Path, default=Path("/"), help="install under DIR instead of / (tests)")
    p.add_argument("--kiosk-id", help="this kiosk's name at the central (as given to add-kiosk)")
    p.add_argument("--office", help="the registration office, printed on receipts")
    p.add_argument("--language", help="the language a session starts in (mn, kk, ky, ru, en)")
    p.add_argument("--central-url", help="the central service, https://HOST:PORT")
    p.add_argument("--central-ca", type=Path,
                   help="the CA the central's HTTPS certificate chains to (the central's tls-ca.pem)")
    p.add_argument("--office-code", help="the kiosk's office at the central, as add-kiosk --office named it "
                                         "(default: main)")
    p.add_argument("--enrollment-code", help="the one-time code of `python -m central add-kiosk KIOSK_ID "
                                             "--office OFFICE` (default: keep the kiosk's certificate)")
    p.add_argument("--reader", help="part of the ID-card reader's name (default: the first reader)")
    p.add_argument("--module", help="the eToken's PKCS#11 module (default: found in the usual paths)")
    p.add_argument("--printer", help="tcp://HOST:PORT (or HOST:PORT), usb://VVVV:PPPP or file:///dev/usb/lp0")
    p.add_argument("--national-id-root", action="append", default=[], metavar="FILE",
                   help="national ID root CA certificate(s), PEM (repeatable)")
    p.add_argument("--national-id-intermediate", action="append", default=[], metavar="FILE",
                   help="national ID issuing CA certificate(s), PEM, if cards do not carry them")
    p.add_argument("--factory-so-pin-file", type=Path, help="file with the blank eTokens' transport SO PIN")
    p.add_argument("--ca-chain", help="the central's CA chain (PEM file or URL), checked against the central")
    p.add_argument("--python", default=sys.executable, help="the interpreter the units run (default: this one)")
    p.add_argument("--units-dir", help="where the unit files are (default: the release's systemd/)")
    p.add_argument("--no-units", action="store_true", help="do not install the systemd units")
    return p


def _read_secret_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise StepFailed(f"cannot read {what} {path}: {err.strerror}", f"the path of {what}") from err


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["backup"], ["restore"]):
        from provisioning import backup

        return backup.main(argv)
    if argv[:1] == ["audit-rejoin"]:
        from provisioning import rejoin

        return rejoin.main(argv[1:])
    args = parser().parse_args(argv)
    root = args.root.resolve()
    ask = Asker(interactive=not args.non_interactive and sys.stdin.isatty())
    plan = Plan(root=root, existing=_existing_config(root))
    started = time.perf_counter()
    print(f"tamga-provision: {'re-provisioning' if plan.existing else 'provisioning'} the kiosk in {root}")
    if not args.non_interactive and not ask.interactive:
        print("tamga-provision: stdin is not a terminal: every question takes its default")
    try:
        plan.kiosk_id = args.kiosk_id or ask.text("kiosk id (as at the central)", str(_default(plan, "kiosk.id")))
        plan.office = args.office or ask.text("registration office", str(_default(plan, "kiosk.office")))
        plan.language = args.language or str(plan.existing.get("kiosk", {}).get("language", ""))
        plan.central_url = (args.central_url or ask.text("central URL", str(_default(plan, "central.url")))).rstrip("/")
        ca_default = args.central_ca or plan.path(CENTRAL_CA)
        plan.central_ca = Path(ask.text("central CA file (its tls-ca.pem)", str(ca_default))) \
            if args.central_ca is None else args.central_ca
        plan.office_code = args.office_code or ask.text("office at the central", "main")
        plan.enrollment_code = args.enrollment_code if args.enrollment_code is not None else \
            ask.text("one-time enrollment code (Enter: keep the kiosk's certificate)", "")
        if args.factory_so_pin_file is not None:
            plan.so_pin = _read_secret_file(args.factory_so_pin_file, "the factory SO PIN file")
        elif ask.interactive and not plan.path(SO_PIN_FILE).is_file():
            import getpass

            plan.so_pin = getpass.getpass("        the blank eTokens' factory SO PIN (not shown): ").strip()
    except StepFailed as failed:
        print(f"tamga-provision: {failed.problem}; check: {failed.check}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\ntamga-provision: stopped; nothing was written", file=sys.stderr)
        return 2

    units_dir = Path(args.units_dir) if args.units_dir else install.default_units_dir()
    trail = ProvisioningTrail(plan)
    trail.started(ask.interactive)
    progress = Progress(STEPS, after=trail.step_done)
    steps: list[tuple[str, Callable[[], str]]] = [
        ("Card readers (PC/SC)", lambda: step_readers(plan, args, ask, progress)),
        ("eToken module and token (PKCS#11)", lambda: step_token(plan, args, ask, progress)),
        ("Receipt printer", lambda: step_printer(plan, args, ask, progress)),
        ("Central service answers", lambda: step_central(plan)),
        ("Kiosk credential at the central", lambda: step_enroll(plan)),
        ("Trust material", lambda: step_trust(plan, args, progress)),
        ("Configuration", lambda: step_configuration(plan, units_dir)),
        ("Self-test", lambda: step_self_test(plan, progress)),
        ("Test receipt", lambda: step_receipt(plan)),
        ("systemd units", lambda: step_units(plan, args, units_dir)),
    ]
    try:
        for title, action in steps:
            progress.run(title, action)
    except StepFailed:
        progress.report()
        configured = any(r.number == CONFIGURATION_STEP and r.outcome == "ok" for r in progress.results)
        written = "the configuration is written and valid" if configured else "nothing was written"
        trail.finished("stopped", time.perf_counter() - started, len(progress.results))
        print(f"\ntamga-provision: stopped at step {progress.results[-1].number}; {written}. "
              "Fix what it says and run it again.", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\ntamga-provision: stopped", file=sys.stderr)
        return 2
    progress.report()
    trail.finished("provisioned", time.perf_counter() - started, len(progress.results))
    print(f"\nkiosk {plan.kiosk_id} provisioned in {time.perf_counter() - started:.1f} s")
    return 0
