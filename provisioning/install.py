"""Writing the kiosk's files into a target root: configuration, secrets, trust material, systemd units.

Every file is written to a temporary name beside it and renamed into place (a power cut leaves
the old file or the new one, never half of one), only when its content changes (re-running
provisioning rewrites nothing that is right), and ``kiosk.toml`` last, so that a failure before it
leaves the previous configuration in force.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The interpreter the units in systemd/ name: the prepared image's virtual environment.
UNIT_PYTHON = "/opt/tamga/venv/bin/python"
# systemd/ file -> where it goes under the target root.
UNIT_FILES = {
    "tamga-kiosk.service": "etc/systemd/system/tamga-kiosk.service",
    "tamga-sync.service": "etc/systemd/system/tamga-sync.service",
    "tamga-pcscd.rules": "etc/polkit-1/rules.d/50-tamga-pcscd.rules",
    "tamga.sysusers": "etc/sysusers.d/tamga.conf",
    "tamga.tmpfiles": "etc/tmpfiles.d/tamga.conf",
}
ENABLE = ("tamga-kiosk.service", "tamga-sync.service")
SERVICE_USER = "tamga"


def default_units_dir() -> Path:
    """``systemd/`` beside the package (a checkout or an editable install), else /usr/share/tamga/systemd."""
    beside = Path(__file__).resolve().parent.parent / "systemd"
    return beside if beside.is_dir() else Path("/usr/share/tamga/systemd")


def target(root: Path, path: str | Path) -> Path:
    """``path`` (absolute, as on the kiosk) inside ``root``."""
    return root / Path(path).relative_to("/")


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    content: bytes
    mode: int
    secret: bool = False      # owned by the service user when it exists (the kiosk reads it)


def service_user(root: Path) -> pwd.struct_passwd | None:
    """The service user, when installing into / as root and it exists (then secrets are chowned to it)."""
    if root != Path("/") or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None


def _ownership(planned: PlannedFile, owner: pwd.struct_passwd | None) -> tuple[int, int] | None:
    """(uid, gid) a file must have: secrets the service user's, the configuration root:tamga; None = as is."""
    if owner is None:
        return None
    if planned.secret:
        return owner.pw_uid, owner.pw_gid
    if planned.path.suffix == ".toml":
        return 0, owner.pw_gid
    return None


def write_file(planned: PlannedFile, owner: pwd.struct_passwd | None = None) -> bool:
    """Write atomically with ``mode`` (and owner); returns False when it already had this content, mode and owner."""
    path = planned.path
    ids = _ownership(planned, owner)
    try:
        st = path.stat()
        same = path.read_bytes() == planned.content and (st.st_mode & 0o7777) == planned.mode and \
            (ids is None or (st.st_uid, st.st_gid) == ids)
    except OSError:
        same = False
    if same:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.provisioning")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, planned.mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(planned.content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, planned.mode)           # whatever the umask
        if ids is not None:
            os.chown(tmp, *ids)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def write_all(files: list[PlannedFile], owner: pwd.struct_passwd | None = None) -> list[Path]:
    """Write ``files`` in order (the configuration last); returns the ones that changed."""
    return [f.path for f in files if write_file(f, owner)]


# --- systemd units ---------------------------------------------------------------------------------
def render_unit(text: str, python: str) -> str:
    """A unit from systemd/ with its interpreter replaced by ``python``."""
    return text.replace(UNIT_PYTHON, python)


def planned_units(units_dir: Path, root: Path, python: str) -> list[PlannedFile]:
    planned = []
    for name, dest in UNIT_FILES.items():
        source = units_dir / name
        text = render_unit(source.read_text(encoding="utf-8"), python)
        planned.append(PlannedFile(root / dest, text.encode("utf-8"), 0o644))
    return planned


def verify_units(paths: list[Path]) -> str:
    """``systemd-analyze verify`` on the installed units; "" when it has no complaint, else what it said.

    Its exit status stays 0 on unknown keys (a typo of a sandboxing option is only a warning), so
    any output counts as a complaint.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return ""
    units = [str(p) for p in paths if p.suffix in (".service", ".timer")]
    out = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True, text=True, check=False,
                         timeout=60)
    complaint = (out.stdout + out.stderr).strip()
    return complaint or ("" if out.returncode == 0 else f"exit status {out.returncode}")


def systemd_running(root: Path) -> bool:
    return root == Path("/") and Path("/run/systemd/system").is_dir()


def activate(root: Path, log: list[str]) -> None:
    """On a running system: create the user, fix modes, reload and enable the units (not started here)."""
    for command in (["systemd-sysusers", str(root / UNIT_FILES["tamga.sysusers"])],
                    ["systemd-tmpfiles", "--create", str(root / UNIT_FILES["tamga.tmpfiles"])],
                    ["systemctl", "daemon-reload"],
                    ["systemctl", "enable", *ENABLE]):
        out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {(out.stderr or out.stdout).strip()}")
        log.append(" ".join(command))


def create_user(root: Path, units_dir: Path) -> bool:
    """``systemd-sysusers`` with our file, when installing into / as root; True when the user exists after."""
    if root != Path("/") or os.geteuid() != 0:
        return False
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is not None:
        source = units_dir / "tamga.sysusers"
        subprocess.run([sysusers, "-"], input=source.read_text(encoding="utf-8"), text=True, check=False,
                       capture_output=True, timeout=60)
    return service_user(root) is not None
