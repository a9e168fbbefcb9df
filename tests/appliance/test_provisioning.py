"""``python -m provisioning --non-interactive --root DIR`` end to end on the simulated devices and central."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from devices.sim.softhsm import FACTORY_SO_PIN
from kiosk.shell import config
from provisioning import install, trail
from sync.store import KioskStore
from tests.appliance.conftest import MDWE_WRAPPER, Provisioner

STEP_LINE = re.compile(r"^\s+(\d+)\s+(ok|FAIL|skip)\s+(\d+\.\d+) s\s+(.+)$", re.MULTILINE)


def steps(stdout: str) -> dict[int, tuple[str, float, str]]:
    """The closing table: step number -> (outcome, seconds, title)."""
    return {int(n): (outcome, float(s), title) for n, outcome, s, title in STEP_LINE.findall(stdout)}


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_provisions_a_kiosk_that_passes_its_self_test_and_prints_a_test_receipt(
        provisioner: Provisioner, tmp_path: Path) -> None:
    printer = provisioner.stack.printer
    assert printer is not None
    printed = len(printer.jobs)
    root = tmp_path / "root"
    code = provisioner.code()
    out = provisioner.run(root, enrollment_code=code)
    assert out.returncode == 0, out.stdout + out.stderr
    table = steps(out.stdout)
    assert sorted(table) == list(range(1, 11)) and all(o == "ok" for o, _, _ in table.values()), out.stdout
    print("\n" + "\n".join(f"step {n:2} {t[0]} {t[1]:.2f} s {t[2]}" for n, t in table.items()))

    cfg = config.load(root / "etc/tamga/kiosk.toml")          # written, and it loads with every file in place
    assert cfg.kiosk.id == "demo-kiosk" and cfg.kiosk.office.endswith("Дархан")
    assert cfg.central.ca_chain == root / "etc/tamga/central-ca.pem"
    identity = cfg.central.identity()
    assert identity.load_certificate().subject.rfc4514_string().startswith("CN=demo-kiosk")
    assert cfg.kiosk.data_dir == root / "var/lib/tamga"
    for secret in (root / "etc/tamga/token-factory-so-pin", identity.key, identity.certificate):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.kiosk.data_dir.stat().st_mode) == 0o700
    assert "python -m kiosk check: all ready" in out.stdout

    jobs = printer.wait_for_jobs(printed + 1)            # the test receipt, as the emulator printed it
    assert len(jobs) == printed + 1 and jobs[-1].stat().st_size > 0

    for name, dest in install.UNIT_FILES.items():
        installed = (root / dest).read_text(encoding="utf-8")
        assert install.UNIT_PYTHON not in installed
        if name.endswith(".service"):
            assert f"ExecStart={sys.executable} -m " in installed
    assert "systemd-analyze verify ok" in out.stdout

    # What tamga-sync.service runs works on the written configuration, without W+X memory where the
    # kernel can refuse it (MemoryDenyWriteExecute=yes in the unit).
    sync = subprocess.run([sys.executable, "-c", MDWE_WRAPPER, "-m", "sync", "--config",
                           str(root / "etc/tamga/kiosk.toml"), "once"], capture_output=True, text=True,
                          env=provisioner.env, timeout=120, check=False)
    assert sync.returncode in (0, 77), sync.stdout + sync.stderr
    if sync.returncode == 77:
        sync = subprocess.run([sys.executable, "-m", "sync", "--config", str(root / "etc/tamga/kiosk.toml"), "once"],
                              capture_output=True, text=True, env=provisioner.env, timeout=120, check=False)
    assert sync.returncode == 0 and "pushed 0" in sync.stdout, sync.stdout + sync.stderr
    # Every step is in the kiosk's audit chain, which the central acknowledged (it keeps only a whole chain).
    assert f"audit entries {len(provisioning_trail(root, code, identity.key))}" in sync.stdout, sync.stdout


def provisioning_trail(root: Path, code: str, identity_key: Path) -> list[str]:
    """The run's audit entries: one a step in order, in a store with the kiosk's modes, no secret in them."""
    data_dir = root / "var/lib/tamga"
    for name in ("kiosk.db", "kiosk.key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    verify = subprocess.run([sys.executable, "-m", "kiosk", "--config", str(root / "etc/tamga/kiosk.toml"), "audit",
                             "verify"], capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0 and "provisioning.trust 1" in verify.stdout, verify.stdout + verify.stderr
    store = KioskStore.open(data_dir)
    try:
        entries = list(store.audit.entries())
    finally:
        store.close()
    kinds = [e.kind for e in entries]
    assert kinds == ["provisioning.started", *(f"provisioning.{k}" for k in trail.STEP_KINDS), "provisioning.finished"]
    assert [e.fields.get("outcome") for e in entries[1:-1]] == ["ok"] * 10
    assert len({e.session_id for e in entries}) == 1 and [e.at for e in entries] == sorted(e.at for e in entries)
    enrolled = entries[5].fields
    assert enrolled["certificate_sha256"] == trail.sha256((root / "var/lib/tamga/kiosk-identity.pem").read_bytes())
    assert entries[7].fields["config_sha256"] == trail.sha256((root / "etc/tamga/kiosk.toml").read_bytes())
    text = json.dumps([e.to_dict() for e in entries], ensure_ascii=False)
    key_body = "".join(identity_key.read_text().splitlines()[1:-1])
    for secret in (FACTORY_SO_PIN, code, key_body[:40], key_body[-40:]):
        assert secret not in text
    return kinds


def test_running_it_again_changes_nothing(provisioner: Provisioner, tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = provisioner.run(root)
    assert first.returncode == 0, first.stdout + first.stderr
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files_under(root / "etc")}
    bare = [sys.executable, "-m", "provisioning", "--non-interactive", "--root", str(root)]
    again = subprocess.run(bare, capture_output=True, text=True, env=provisioner.env, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr     # no flags: everything from what is in place
    assert "re-provisioning" in again.stdout
    assert re.search(r"valid; 0 of \d+ files written", again.stdout)
    assert re.search(r"0 of \d+ files installed", again.stdout)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files_under(root / "etc")}
    assert after == before


def test_interactive_questions_take_what_is_typed_and_enter_keeps_the_default(provisioner: Provisioner,
                                                                               tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = provisioner.run_on_a_terminal(root, "demo-kiosk\n\n", kiosk_id=None, office=None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kiosk id (as at the central) [kiosk-01]:" in out.stdout
    assert "registration office [Registration office]:" in out.stdout
    cfg = config.load(root / "etc/tamga/kiosk.toml")
    assert (cfg.kiosk.id, cfg.kiosk.office) == ("demo-kiosk", "Registration office")


@pytest.mark.parametrize(("module", "problem", "check"), [
    ("/usr/lib/nonexistent/libetoken-pkcs11.so",
     r"the token module /usr/lib/nonexistent/libetoken-pkcs11.so does not exist",
     r"the path given with --module \(modules found here: .*libsofthsm2.so"),
    ("/usr/lib/x86_64-linux-gnu/libz.so.1", r"libz.so.1 cannot be used: .*C_GetFunctionList",
     r"the module path; that it is built for this machine"),
])
def test_a_wrong_module_stops_at_step_2_and_writes_nothing(provisioner: Provisioner, tmp_path: Path,
                                                            module: str, problem: str, check: str) -> None:
    if "nonexistent" not in module and not Path(module).exists():
        pytest.skip(f"no {module} on this machine")
    root = tmp_path / "root"
    out = provisioner.run(root, module=module)
    assert out.returncode == 1
    assert re.search(rf"FAIL .*{problem}", out.stdout), out.stdout
    assert re.search(rf"check: {check}", out.stdout), out.stdout
    assert steps(out.stdout)[2][0] == "FAIL" and 3 not in steps(out.stdout)
    assert "nothing was written" in out.stderr
    assert files_under(root) == []


def test_a_used_code_says_to_ask_for_a_new_one_and_writes_nothing(provisioner: Provisioner,
                                                                    tmp_path: Path) -> None:
    used = provisioner.code()
    provisioner.code()               # a newer code replaces it, as if it had been used
    root = tmp_path / "root"
    out = provisioner.run(root, enrollment_code=used)
    assert out.returncode == 1
    assert "the central did not enroll this kiosk (code_used)" in out.stdout
    assert "ask the central's operator for a new code" in out.stdout
    assert files_under(root) == []


def test_help_names_every_flag_and_the_console_script_is_declared() -> None:
    import subprocess
    import tomllib

    out = subprocess.run([sys.executable, "-m", "provisioning", "--help"], capture_output=True, text=True,
                         check=True, timeout=60)
    for flag in ("--non-interactive", "--office", "--central-url", "--central-ca", "--enrollment-code",
                 "--office-code", "--reader", "--module",
                 "--printer", "--root", "--no-units", "--national-id-root", "--ca-chain", "--factory-so-pin-file"):
        assert flag in out.stdout
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["tamga-provision"] == "provisioning.cli:main"


def test_paper_out_stops_at_the_printer_step_and_writes_nothing(provisioner: Provisioner, tmp_path: Path) -> None:
    printer = provisioner.stack.printer
    assert printer is not None
    printer.paper = "out"
    try:
        out = provisioner.run(tmp_path / "root")
    finally:
        printer.paper = "ok"
    assert out.returncode == 1
    assert "the printer reports paper out" in out.stdout and "check: load a paper roll" in out.stdout
    assert steps(out.stdout)[3][0] == "FAIL" and files_under(tmp_path / "root") == []


def test_without_a_card_the_self_test_fails_and_says_to_insert_one(provisioner: Provisioner, tmp_path: Path) -> None:
    """After step 7 the configuration is in place and valid; the run stops before the receipt and the units."""
    stack = provisioner.stack
    stack.remove_card()
    try:
        out = provisioner.run(tmp_path / "root")
    finally:
        stack.insert_card()
    assert out.returncode == 1
    assert "python -m kiosk check: reader not ready" in out.stdout
    assert "check: insert an ID card (any) into the reader" in out.stdout
    assert "the configuration is written and valid" in out.stderr
    config.load(tmp_path / "root/etc/tamga/kiosk.toml")
    assert not (tmp_path / "root/etc/systemd").exists()
    store = KioskStore.open(tmp_path / "root/var/lib/tamga")       # the failed step is in the audit trail
    try:
        last = [(e.kind, e.fields.get("outcome")) for e in store.audit.entries()][-3:]
    finally:
        store.close()
    assert last == [("provisioning.configuration", "ok"), ("provisioning.self_test", "FAIL"),
                    ("provisioning.stopped", "stopped")]


def test_no_units_skips_the_last_step(provisioner: Provisioner, tmp_path: Path) -> None:
    out = provisioner.run(tmp_path / "root", "--no-units")
    assert out.returncode == 0, out.stdout + out.stderr
    assert steps(out.stdout)[10][0] == "skip" and not (tmp_path / "root/etc/systemd").exists()


def test_a_configuration_directory_that_cannot_be_written_fails_step_7_cleanly(provisioner: Provisioner,
                                                                               tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/tamga").write_text("a file where the directory should be")
    out = provisioner.run(root)
    assert out.returncode == 1, out.stdout
    assert steps(out.stdout)[7][0] == "FAIL" and "cannot write" in out.stdout and "Traceback" not in out.stderr
    assert files_under(root) == [root / "etc/tamga"]
