"""``python -m kiosk diagnose`` after a demo issuance: a useful archive with no personal data and no secret.

The demo (``python -m kiosk.demo --keep-workdir``, its own private pcscd in a subprocess) leaves a
kiosk store with one issued session for «Баатар Ариун», its DEBUG log and the central's log; the
archive is made from them with the personalised eToken (label «TAMGA NE80000000») in the slot.
Cyrillic names are searched as spelled (case-sensitive: the office «…Улаанбаатар» contains
"баатар" and is no one's name); Latin ones case-insensitively.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.shell.diagnose import Scrubber

REPO = Path(__file__).resolve().parents[2]
PERSONAL_EXACT = ("Ариун", "Баатар", "НЭ80000000", "730419", "482916")
PERSONAL_ANY_CASE = ("NE80000000", "ariunaa36@yahoo.com")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(demo work directory, demo output, the demo's log: stdout and DEBUG JSON lines)."""
    base = tmp_path_factory.mktemp("diagnose")
    env = {**os.environ, "TAMGA_LOG_LEVEL": "DEBUG"}
    for name in ("PCSCLITE_CSOCK_NAME", "SOFTHSM2_CONF", "TAMGA_CONFIG"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-m", "kiosk.demo", "--out", str(base / "out"), "--keep-workdir"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    match = re.search(r"work directory kept: (\S+)", out.stdout)
    assert match, out.stdout
    workdir = Path(match.group(1))
    log = base / "kiosk.log"
    log.write_text(out.stdout + out.stderr, encoding="utf-8")
    assert "Ариун" in log.read_text(encoding="utf-8")        # the log given to diagnose does name the holder
    try:
        yield workdir, base / "out", log
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def diagnose(demo: tuple[Path, Path, Path], archive: Path) -> subprocess.CompletedProcess[str]:
    workdir, out, log = demo
    env = {**os.environ, "SOFTHSM2_CONF": str(out / "softhsm2.conf")}     # the issued token in the slot
    env.pop("TAMGA_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "kiosk.shell.diagnose", "--config", str(workdir / "kiosk.toml"), "--out",
         str(archive), "--log-file", str(log), "--log-file", str(workdir / "central" / "central.log"),
         "--log-file", str(workdir / "pcscd" / "pcscd.log")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)


def extracted(archive: Path) -> dict[str, str]:
    with tarfile.open(archive) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode("utf-8")   # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def test_the_archive_holds_no_personal_data_and_no_secret(demo: tuple[Path, Path, Path], tmp_path: Path) -> None:
    workdir = demo[0]
    data_dir = workdir / "kiosk-data"
    before = {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    archive = tmp_path / "diag.tar.gz"
    out = diagnose(demo, archive)
    assert out.returncode == 0, out.stdout + out.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    members = extracted(archive)
    assert {"MANIFEST.txt", "versions.json", "config.txt", "devices.json", "sync.json", "logs/journal.txt",
            "logs/01-kiosk.log", "logs/02-central.log"} <= set(members)
    secrets = [(workdir / "secrets" / "token-factory-so-pin").read_text().strip(),
               (workdir / "central" / "demo-kiosk" / "kiosk-identity.key").read_text().strip()]
    secrets.append((data_dir / "kiosk.key").read_text().strip())
    for name, text in members.items():
        for needle in PERSONAL_EXACT:
            assert needle not in text, f"{needle} in {name}"
        for needle in PERSONAL_ANY_CASE:
            assert needle.casefold() not in text.casefold(), f"{needle} in {name}"
        for secret in secrets:
            assert secret not in text, f"a secret in {name}"
    assert {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()} == before     # the store untouched


def test_the_archive_says_what_a_technician_needs(demo: tuple[Path, Path, Path], tmp_path: Path) -> None:
    archive = tmp_path / "diag.tar.gz"
    assert diagnose(demo, archive).returncode == 0
    members = extracted(archive)
    versions = json.loads(members["versions.json"])
    assert versions["packages"]["pyscard"] and versions["tools"]["softhsm"] and versions["python"]
    sync = json.loads(members["sync.json"])
    assert sync["outbox_unsent"] > 0 and sync["oldest_unsent_age_s"] >= 0 and sync["sessions"] == 1
    devices = json.loads(members["devices.json"])
    softhsm = next(p for p in devices["pkcs11"] if p["kind"] == "softhsm")
    assert softhsm["token"]["initialised"] and softhsm["token"]["label_is_kiosk"] and softhsm["token"]["serial"]
    assert "label" not in softhsm["token"]
    assert "contents not included" in members["config.txt"] and "client_key = " in members["config.txt"]
    assert "Бүртгэлийн нэгж" in members["config.txt"]          # the office is not scrubbed from the config
    assert "issued" in members["logs/02-central.log"]          # logs keep their technical content


@pytest.mark.parametrize(("text", "clean"), [
    ("holder НЭ80000000 and нэ 80000000", "holder <register> and <register>"),
    ("serialNumber=PNOMN-NE80000000,CN=x", "serialNumber=<register>,CN=x"),
    ("mail ariunaa36@yahoo.com now", "mail <email> now"),
    ("pin 730419 invoice 147314016754 port 8470 at 2026-12-02T20:33:13", "pin <number> invoice <number> port 8470 "
     "at 2026-12-02T20:33:13"),
    ("token 5cd49e67bb261fe2", "token 5cd49e67bb261fe2"),
])
def test_scrubber_patterns(text: str, clean: str) -> None:
    assert Scrubber()(text) == clean


def test_scrubber_known_values_and_cyrillic_in_logs() -> None:
    scrub = Scrubber(["Баатар Ариун", "Ариун", "Баатар"])
    assert scrub("card of Баатар Ариун, office Улаанбаатар") == "card of <personal>, office Улаанбаатар"
    assert scrub("Сайн байна уу, Ариун", cyrillic=True) == "<text> <text> <text>, <personal>"


def test_the_subcommand_hooks_into_the_kiosk_cli_as_proposed(demo: tuple[Path, Path, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``kiosk/shell/cli.py`` gains ``diagnose.add_parser(sub)`` and ``if args.command == "diagnose": …``."""
    import argparse

    from kiosk.shell import diagnose as diag

    parser = argparse.ArgumentParser(prog="python -m kiosk")       # the shape of kiosk/shell/cli.py's parser
    parser.add_argument("--config", type=Path)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    diag.add_parser(sub)
    archive = tmp_path / "via-cli.tar.gz"
    args = parser.parse_args(["--config", str(demo[0] / "kiosk.toml"), "diagnose", "--out", str(archive)])
    monkeypatch.setattr(diag, "devices", lambda cfg: {"skipped": "in-process test"})   # no PC/SC in this process
    assert args.command == "diagnose" and diag.run(args) == 0
    assert "sync.json" in extracted(archive)
