"""``python -m kiosk diagnose``: one archive a technician can send, without personal data or secrets.

The archive (tar.gz, mode 0600) holds ``MANIFEST.txt``, ``versions.json`` (Python, packages, pcscd,
SoftHSM, OpenSC), ``config.txt`` (the effective configuration; secret files by path, mode and size,
never their contents), ``devices.json`` (readers, PKCS#11 modules and the token in the slot, the
printer, the central's health), ``sync.json`` (outbox length, age of the oldest unsent event) and
``logs/`` (the units' journal when journalctl has one, and ``--log-file`` files).

No personal data, in two layers: nothing personal is collected (no card is read, token labels are
not copied, session data is only counted), and every text is scrubbed before it is written --
e-mail addresses, register numbers, runs of six or more digits (PINs, invoices, phone numbers),
Cyrillic words in logs, and every personal value the kiosk store holds (holder names, register
numbers, e-mails, phones, invoices, organisations), which are read into memory only.  The store is
read from a copy (never opened in place, so not even SQLite's -shm file is created beside it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("tamga", "pyscard", "python-pkcs11", "cryptography", "asn1crypto", "python-escpos", "Pillow",
            "qrcode", "sqlite-utils", "requests", "kivy", "pyusb")
DEBIAN_PACKAGES = ("pcscd", "libccid", "vsmartcard-vpcd", "softhsm2", "opensc", "systemd", "polkitd")
TOOLS = (("pcscd", ["pcscd", "--version"]), ("softhsm", ["softhsm2-util", "--version"]),
         ("opensc", ["opensc-tool", "--info"]))
UNITS = ("tamga-kiosk.service", "tamga-sync.service", "tamga-sync.timer", "pcscd.service")
JOURNAL_LINES = 5000
# Keys of the kiosk store's session data whose values are personal (scrubbed wherever they appear).
PERSONAL_KEYS = frozenset({"surname", "father_name", "given_name", "name", "holder", "holder_name",
                           "register_number", "serial_number", "email", "phone", "invoice", "label",
                           "position", "organisation", "department", "register", "card_uuid"})
NAME_KEYS = frozenset({"surname", "father_name", "given_name", "name", "holder", "holder_name"})
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REGISTER = re.compile(r"(?:PNO[A-Z]{2}-)?\b[A-ZА-ЯЁӨҮ]{2}\s?-?\d{8}\b", re.IGNORECASE)
LONG_NUMBER = re.compile(r"(?<![\w.])\d{6,}(?![\w])")
CYRILLIC_WORD = re.compile(r"[\u0400-\u04FF]+(?:[-'][\u0400-\u04FF]+)*")


class Scrubber:
    """Removes personal data from text: known values first (longest first), then the patterns."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known = sorted({k for k in known if len(k) >= 3}, key=len, reverse=True)

    def __call__(self, text: str, cyrillic: bool = False) -> str:
        for value in self.known:
            text = text.replace(value, "<personal>")
        text = EMAIL.sub("<email>", text)
        text = REGISTER.sub("<register>", text)
        text = LONG_NUMBER.sub("<number>", text)
        if cyrillic:
            text = CYRILLIC_WORD.sub("<text>", text)
        return text


def _personal_values(node: Any, key: str = "") -> Iterable[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _personal_values(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _personal_values(v, key)
    elif isinstance(node, str) and key in PERSONAL_KEYS:
        yield node
        if "-" in node:                       # PNOMN-NE80000000: the register number inside
            yield node.split("-", 1)[1]
        if key in NAME_KEYS:
            yield from node.split()           # "Баатар Ариун": each name alone


# --- the kiosk store, read from a copy -------------------------------------------------------------
def _store_copy(db: Path, workdir: Path) -> sqlite3.Connection | None:
    if not db.is_file():
        return None
    for suffix in ("", "-wal"):
        source = db.with_name(db.name + suffix)
        if source.exists():
            shutil.copyfile(source, workdir / f"kiosk.db{suffix}")
    return sqlite3.connect(workdir / "kiosk.db")


def read_store(db: Path) -> tuple[dict[str, Any], set[str]]:
    """(sync status, the personal values in the store); the store itself is not touched."""
    with tempfile.TemporaryDirectory(prefix="tamga-diagnose-") as tmp:
        conn = _store_copy(db, Path(tmp))
        if conn is None:
            return {"store": str(db), "present": False}, set()
        try:
            now = dt.datetime.now(dt.UTC)
            unsent, oldest = conn.execute(
                "select count(*), min(created_at) from outbox where sent_at is null").fetchone()
            total, last_sent = conn.execute("select count(*), max(sent_at) from outbox").fetchone()
            unfinished = conn.execute("select count(*) from sessions where finished_at is null").fetchone()[0]
            sessions = conn.execute("select count(*) from sessions").fetchone()[0]
            status: dict[str, Any] = {
                "store": str(db), "present": True, "outbox_unsent": unsent, "outbox_total": total,
                "oldest_unsent_at": oldest, "last_sent_at": last_sent, "sessions": sessions,
                "sessions_unfinished": unfinished,
                "oldest_unsent_age_s": round((now - dt.datetime.fromisoformat(oldest)).total_seconds())
                if oldest else None,
            }
            known: set[str] = set()
            for table, column in (("sessions", "data"), ("transitions", "event"), ("outbox", "payload")):
                for (raw,) in conn.execute(f"select {column} from {table}"):    # noqa: S608 - fixed names
                    try:
                        known |= set(_personal_values(json.loads(raw)))
                    except (TypeError, ValueError):
                        continue
        except sqlite3.Error as err:
            return {"store": str(db), "present": True, "error": str(err)}, set()
        finally:
            conn.close()
    return status, known


# --- sections --------------------------------------------------------------------------------------
def _run(command: list[str], timeout: float = 20.0) -> str:
    if shutil.which(command[0]) is None:
        return f"{command[0]}: not installed"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"{command[0]}: no answer within {timeout:.0f} s"
    return (out.stdout + out.stderr).strip()


def versions() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    debian: dict[str, str | None] = {}
    for name in DEBIAN_PACKAGES:
        answer = _run(["dpkg-query", "-W", "-f=${Version}", name])
        debian[name] = answer if answer and "no packages found" not in answer else None
    tools = {}
    for name, command in TOOLS:
        lines = _run(command).splitlines()
        tools[name] = next((ln.strip() for ln in lines if re.search(r"\d+\.\d+", ln)), lines[0] if lines else "")
    return {"python": sys.version, "executable": sys.executable, "platform": platform.platform(),
            "machine": platform.machine(), "packages": packages, "debian": debian, "tools": tools}


def _file_facts(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as err:
        return f"{path} (missing: {err.strerror})"
    return f"{path} (mode {st.st_mode & 0o7777:04o}, uid {st.st_uid}, {st.st_size} bytes; contents not included)"


def configuration(cfg: Any) -> str:
    lines = [f"# {cfg.source}"]
    secret_files = {("central", "client_key"), ("token", "factory_so_pin_file")}
    for section in ("kiosk", "central", "idcard", "token", "printer"):
        lines.append(f"[{section}]")
        for key, value in vars(getattr(cfg, section)).items():
            shown = _file_facts(value) if (section, key) in secret_files else repr(value)
            lines.append(f"{key} = {shown}")
    lines.append(f"log.level = {cfg.log_level!r}")
    data_dir = cfg.kiosk.data_dir
    lines.append(f"# data directory: {_file_facts(data_dir)}")
    lines.append(f"# data key: {_file_facts(data_dir / 'kiosk.key')}")
    return "\n".join(lines) + "\n"


def devices(cfg: Any) -> dict[str, Any]:
    from kiosk.errors import KioskError
    from provisioning import discovery

    out: dict[str, Any] = {}
    try:
        readers = discovery.list_readers()
        out["readers"] = [{"name": r, "card_present": discovery.card_present(r)} for r in readers]
    except KioskError as err:
        out["readers"] = f"error: {err.key} {err.detail} {err.data}"
    modules = {str(m) for m in discovery.find_modules()}
    if cfg is not None:
        modules.add(str(cfg.token.module))
    prefix = cfg.token.label_prefix if cfg is not None else "TAMGA"
    probes = []
    for module in sorted(modules):
        probe = discovery.probe_module(Path(module))
        entry: dict[str, Any] = {"module": module, "kind": discovery.module_kind(module), "error": probe.error}
        if probe.token is not None:
            t = probe.token
            # The label names the holder ("TAMGA <register number>"): only whether it is a kiosk's label.
            entry["token"] = {"serial": t.serial, "model": t.model, "manufacturer": t.manufacturer,
                              "initialised": t.initialised, "user_pin_set": t.user_pin_set,
                              "user_pin_locked": t.user_pin_locked, "label_is_kiosk": t.label.startswith(prefix)}
        probes.append(entry)
    out["pkcs11"] = probes
    out["usb_line_printers"] = [str(p) for p in discovery.usb_line_printers()]
    out["usb_printers"] = [name for _, _, name in discovery.usb_printers_by_id()]
    if cfg is not None:
        from devices.printer import EscPosPrinter
        from kiosk.shell.app import printer_target

        try:
            out["printer"] = EscPosPrinter(printer_target(cfg), width_px=cfg.printer.width_px).status().value
        except KioskError as err:
            out["printer"] = f"error: {err.key} {err.detail}"
        out["central"] = _central_health(cfg.central.url)
    return out


def _central_health(url: str) -> dict[str, Any]:
    import requests

    started = time.perf_counter()
    try:
        response = requests.get(f"{url}/api/v1/health", timeout=5)
    except requests.RequestException as err:
        return {"url": url, "error": type(err).__name__}
    return {"url": url, "status": response.status_code, "body": response.text[:200],
            "ms": round((time.perf_counter() - started) * 1000, 1)}


def journal(since: str) -> str:
    if shutil.which("journalctl") is None:
        return "journalctl: not installed"
    command = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(JOURNAL_LINES), "--since", since]
    for unit in UNITS:
        command += ["-u", unit]
    return _run(command, timeout=60)


# --- the archive -----------------------------------------------------------------------------------
def write_archive(out: Path, members: dict[str, str]) -> None:
    """``members`` (name -> text) into ``out``, a tar.gz readable by its owner alone."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    top = out.name.removesuffix(".tar.gz")
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


def collect(config_path: Path | None, log_files: list[Path], since: str) -> tuple[dict[str, str], str]:
    """Every member of the archive, scrubbed, and the kiosk id (for the archive's name)."""
    from kiosk.errors import ConfigError
    from kiosk.shell import config

    notes: list[str] = []
    cfg = None
    try:
        cfg = config.load(config_path, check_files=False)
    except ConfigError as err:
        notes.append(f"configuration not loaded: {err.detail}")
    sync_status, known = read_store(cfg.kiosk.data_dir / "kiosk.db") if cfg is not None else ({}, set())
    scrub = Scrubber(known)

    def section(name: str, make: Callable[[], Any]) -> str:
        try:
            value = make()
        except Exception as err:     # a diagnostic archive is written whatever fails; the failure goes in it
            notes.append(f"{name}: {type(err).__name__}: {err}")
            return f"failed: {type(err).__name__}: {err}\n"
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)

    members = {
        "versions.json": section("versions", versions),
        "config.txt": section("config", lambda: configuration(cfg) if cfg is not None else "not loaded\n"),
        "devices.json": section("devices", lambda: devices(cfg)),
        "sync.json": json.dumps({**sync_status, "note": "the sync daemon comes with the offline-sync issue; "
                                 "this is the kiosk store's outbox"}, indent=2),
        "logs/journal.txt": section("journal", lambda: journal(since)),
    }
    for i, path in enumerate(log_files, 1):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            text = f"cannot read {path}: {err.strerror}"
        members[f"logs/{i:02d}-{path.name}"] = text
    clean = {name: scrub(text, cyrillic=name.startswith("logs/")) for name, text in members.items()}
    manifest = [
        "Tamga kiosk diagnostics",
        f"written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by python -m kiosk diagnose",
        "",
        "Removed before writing: the contents of secret files (paths, modes and sizes only), token labels,",
        "session data (counted only), e-mail addresses, register numbers, runs of 6+ digits (<number>),",
        "Cyrillic words in logs (<text>) and every personal value of the kiosk store (<personal>).",
        "",
        *(f"{name}: {len(text.encode('utf-8'))} bytes" for name, text in clean.items()),
        *(["", "problems while collecting:"] + [scrub(n) for n in notes] if notes else []),
    ]
    clean = {"MANIFEST.txt": "\n".join(manifest) + "\n", **clean}
    return clean, (cfg.kiosk.id if cfg is not None else "kiosk")


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="the archive (default: ./tamga-diagnose-KIOSK-UTCTIME.tar.gz)")
    parser.add_argument("--log-file", type=Path, action="append", default=[],
                        help="a log file to include (repeatable), e.g. where the kiosk logs without journald")
    parser.add_argument("--since", default="-2d", help="journal entries since (journalctl --since; default -2d)")


def add_parser(sub: Any) -> None:
    """The ``diagnose`` subcommand on ``python -m kiosk``'s subparsers (its ``--config`` is the CLI's)."""
    _add_options(sub.add_parser("diagnose", help="write one archive for support: versions, configuration, "
                                "devices, logs, sync status; no personal data, no secret"))


def run(args: argparse.Namespace) -> int:
    """Write the archive for parsed ``args`` (``config``, ``out``, ``log_file``, ``since``); prints its path."""
    members, kiosk_id = collect(args.config, args.log_file, args.since)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", kiosk_id)
    out = args.out or Path(f"tamga-diagnose-{safe_id}-{stamp}.tar.gz")
    write_archive(out, members)
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk diagnose", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="kiosk.toml (default: $TAMGA_CONFIG, /etc/tamga/kiosk.toml)")
    _add_options(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
