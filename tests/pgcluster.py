"""A throwaway PostgreSQL cluster for tests: Debian's binaries, a temporary directory, no system service.

initdb refuses to run as root, so as root the cluster belongs to the package's ``postgres`` user (in a
directory it owns); it listens only on a Unix socket in that directory.  ``url`` is a libpq URL the
central takes as ``DATABASE_URL``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_BIN_ROOT = Path("/usr/lib/postgresql")


def binaries() -> Path:
    versions = sorted(_BIN_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: run scripts/bootstrap.sh (Debian package postgresql)")
    return versions[-1].parent


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def cluster(database: str = "tamga") -> Iterator[str]:
    """Start a cluster with one empty database; yield its URL; stop and delete it afterwards."""
    bin_dir = binaries()
    root = Path(tempfile.mkdtemp(prefix="tamga-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    os.chmod(root, 0o700)
    data = root / "data"
    run = {"check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", "tamga", "-A", "trust",
                                  "-E", "UTF8", "--no-sync"]), **run)  # type: ignore[call-overload]
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                                  "-o", f"-k {root} -p 5432 -c listen_addresses='' -c fsync=off", "start"]),
                       **run)  # type: ignore[call-overload]
        subprocess.run(_as_owner([str(bin_dir / "createdb"), "-h", str(root), "-U", "tamga", database]),
                       **run)  # type: ignore[call-overload]
        # Root's test process must reach the socket: the directory stays 0700 for everyone else.
        if os.geteuid() == 0:
            os.chmod(root, 0o711)
        yield f"postgresql://tamga@/{database}?host={root}&port=5432"
    finally:
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)
