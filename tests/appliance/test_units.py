"""The systemd units in systemd/: systemd's own checks pass and every service scores ≤ 2.5.

``systemd-analyze verify`` needs each ExecStart binary to exist: the units name the prepared
image's /opt/tamga/venv/bin/python, so they are verified as provisioning installs them, in a
temporary directory with that interpreter replaced by this one (``install.render_unit``).  Its
exit status stays 0 on an unknown key (a misspelt sandboxing option is only a warning), so any
output fails the test.  ``systemd-analyze security --offline=yes`` needs no running systemd.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import install
from tests.appliance.conftest import MDWE_WRAPPER

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = ("tamga-kiosk.service", "tamga-sync.service")
UNITS = SERVICES
MAX_EXPOSURE = 2.5
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def settings(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment in a unit file, in order (keys may repeat)."""
    section, out = "", []
    for raw in (SYSTEMD / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(name: str, key: str) -> list[str]:
    return [v for _, k, v in settings(name) if k == key]


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """The units as provisioning installs them, with this interpreter."""
    for name in UNITS:
        text = install.render_unit((SYSTEMD / name).read_text(encoding="utf-8"), sys.executable)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
def test_verify_passes_without_a_word(rendered: Path) -> None:
    out = analyze("verify", "--man=no", *(str(rendered / name) for name in UNITS))
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


@needs_analyze
def test_verify_catches_a_misspelt_option(rendered: Path) -> None:
    """The check above is not blind: a typo in a sandboxing key is reported (though exit status 0)."""
    bad = rendered / "tamga-typo.service"
    bad.write_text((rendered / "tamga-sync.service").read_text().replace("ProtectSystem=", "ProtectSytem="))
    out = analyze("verify", "--man=no", str(bad))
    assert "Unknown key 'ProtectSytem'" in out.stdout + out.stderr


@needs_analyze
@pytest.mark.parametrize("name", SERVICES)
def test_exposure_at_most_2_5(rendered: Path, name: str) -> None:
    out = analyze("security", "--offline=yes", str(rendered / name))
    match = EXPOSURE.search(out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    score = float(match.group(1))
    print(f"{name}: exposure {score}")
    assert score <= MAX_EXPOSURE, out.stdout


@pytest.mark.parametrize("name", SERVICES)
def test_services_run_sandboxed_as_tamga_with_the_data_directory_0700(name: str) -> None:
    one = {k: v for _, k, v in settings(name)}
    assert one["User"] == "tamga" and one["NoNewPrivileges"] == "yes" and one["CapabilityBoundingSet"] == ""
    assert one["StateDirectory"] == "tamga" and one["StateDirectoryMode"] == "0700"
    assert one["ProtectSystem"] == "strict" and one["DevicePolicy"] == "closed"
    assert one["ProtectHome"] == "yes" and one["PrivateTmp"] == "yes" and one["LockPersonality"] == "yes"
    assert "@system-service" in values(name, "SystemCallFilter")
    assert set(one["RestrictAddressFamilies"].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one["StartLimitIntervalSec"] and int(one["StartLimitBurst"]) >= 1
    assert values(name, "ExecStart") == [f"{install.UNIT_PYTHON} -m {name.split('-')[1].split('.')[0]} run"]


def test_kiosk_is_a_watched_full_screen_app_with_only_the_devices_it_needs() -> None:
    one = {k: v for _, k, v in settings("tamga-kiosk.service")}
    assert one["Type"] == "notify" and one["WatchdogSec"] and one["Restart"] == "on-failure"
    assert set(one["SupplementaryGroups"].split()) >= {"input", "video", "render"}
    assert "SDL_VIDEODRIVER=kmsdrm" in " ".join(values("tamga-kiosk.service", "Environment"))
    allowed = {v.split()[0] for v in values("tamga-kiosk.service", "DeviceAllow")}
    assert allowed == {"char-drm", "char-input", "char-usb", "char-usb_device"}


def test_sync_is_a_restarted_daemon_without_writable_executable_memory() -> None:
    one = {k: v for _, k, v in settings("tamga-sync.service")}
    assert one["Type"] == "exec" and one["Restart"] == "on-failure" and one["WantedBy"] == "multi-user.target"
    assert one["MemoryDenyWriteExecute"] == "yes" and one["PrivateDevices"] == "yes"
    assert not (SYSTEMD / "tamga-sync.timer").exists()      # sync/daemon.py paces its own rounds


def test_polkit_rule_lets_tamga_use_pcscd() -> None:
    rule = (SYSTEMD / "tamga-pcscd.rules").read_text(encoding="utf-8")
    assert '"org.debian.pcsc-lite.access_pcsc"' in rule and '"org.debian.pcsc-lite.access_card"' in rule
    assert 'subject.user == "tamga"' in rule and "polkit.Result.YES" in rule
    assert rule.count("{") == rule.count("}") and rule.count("(") == rule.count(")")
    node = shutil.which("node") or shutil.which("nodejs")
    if node:     # a JavaScript parser, when there is one: the rule must at least parse
        out = subprocess.run([node, "--check", "-"], input=rule, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers / systemd-tmpfiles are not installed")
def test_sysusers_and_tmpfiles_make_the_user_and_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    sysusers = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "-"], capture_output=True, text=True,
                              input=(SYSTEMD / "tamga.sysusers").read_text(), check=False, timeout=60)
    assert sysusers.returncode == 0, sysusers.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    assert passwd["tamga"][6] == "/usr/sbin/nologin" and passwd["tamga"][5] == "/var/lib/tamga"
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in (tmp_path / "etc/group").read_text()
              .splitlines()}
    assert all("tamga" in groups[g] for g in ("input", "video", "render", "lp"))
    tmpfiles = subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create", "-"], capture_output=True,
                              text=True, input=(SYSTEMD / "tamga.tmpfiles").read_text(), check=False, timeout=60)
    assert tmpfiles.returncode == 0, tmpfiles.stderr
    etc = (tmp_path / "etc/tamga").stat()
    assert etc.st_mode & 0o7777 == 0o750 and etc.st_gid == int(passwd["tamga"][3])


def test_the_headless_kiosk_needs_no_writable_executable_memory(tmp_path: Path) -> None:
    """What MemoryDenyWriteExecute=yes would allow: the demo issuance under the kernel's equivalent.

    PR_SET_MDWE refuses W+X mappings to the process and everything it executes, as systemd's
    seccomp filter does: pyscard, python-pkcs11 and ctypes on SoftHSM, Pillow, python-escpos,
    requests, sqlite and cryptography (all tamga-sync loads) pass; only the touchscreen's Mesa
    is left (see tamga-kiosk.service).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PCSCLITE_CSOCK_NAME", "SOFTHSM2_CONF", "TAMGA_CONFIG")}
    out = subprocess.run([sys.executable, "-c", MDWE_WRAPPER, "-m", "kiosk.demo", "--no-browser",
                          "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, cwd=SYSTEMD.parent, timeout=300, check=False)
    if out.returncode == 77:
        pytest.skip("the kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "out" / "receipt.png").is_file()
