"""Provisioning, run as root, writes the kiosk's audit chain without leaving a file the kiosk user cannot write."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.trail import kiosk_store
from sync.store import KioskStore, load_or_create_key

STORE_FILES = ("kiosk.db", "kiosk.key")


@pytest.fixture
def kiosk_user_dir() -> Iterator[tuple[Path, pwd.struct_passwd]]:
    """A data directory (0700) owned by a real unprivileged user (Debian's ``nobody``) that it can reach."""
    if os.geteuid() != 0:
        pytest.skip("needs root: provisioning runs as root")
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    with tempfile.TemporaryDirectory(prefix="tamga-owner-") as tmp:
        os.chmod(tmp, 0o755)
        data_dir = Path(tmp) / "var-lib-tamga"
        data_dir.mkdir(mode=0o700)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
        yield data_dir, user


def entries_written_as(user: pwd.struct_passwd, data_dir: Path) -> int:
    """In a child that has dropped root for good (uid, gid, groups: the kiosk user's alone), open the store,
    append an entry and verify the chain; the number of entries, or -1 when the kiosk user could not.
    (A fork, not runuser: this interpreter lives under /root, which the kiosk user cannot reach.)"""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            store = KioskStore.open(data_dir)
            store.audit.append("clerk.signed_in", {"clerk_id": "c1"})
            os.write(write, str(store.audit.verify().entries).encode())
            store.close()
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as answer:
        said = answer.read()
    _, status = os.waitpid(pid, 0)
    return int(said) if os.waitstatus_to_exitcode(status) == 0 else -1


def test_root_creates_the_store_as_the_kiosk_user_who_can_then_write_it(
        kiosk_user_dir: tuple[Path, pwd.struct_passwd]) -> None:
    data_dir, user = kiosk_user_dir
    with kiosk_store(data_dir) as store:
        store.audit.append("provisioning.configuration", {"outcome": "ok"})
        wal = data_dir / "kiosk.db-wal"
        assert wal.exists() and wal.stat().st_uid == user.pw_uid      # SQLite's files too, while it is open
    assert os.geteuid() == 0 and os.getegid() == 0                      # root again after
    for name in STORE_FILES:
        st = (data_dir / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, user.pw_gid, 0o600), name
    assert [p.name for p in data_dir.iterdir() if p.stat().st_uid != user.pw_uid] == []
    assert entries_written_as(user, data_dir) == 2


def test_a_store_root_left_behind_is_handed_to_the_kiosk_user(kiosk_user_dir: tuple[Path, pwd.struct_passwd]) -> None:
    """A store an earlier run opened as root (its files root's) is given back before it is opened."""
    data_dir, user = kiosk_user_dir
    KioskStore(data_dir / "kiosk.db", load_or_create_key(data_dir / "kiosk.key")).close()
    assert (data_dir / "kiosk.db").stat().st_uid == 0
    with kiosk_store(data_dir) as store:
        store.audit.append("kiosk.backed_up", {"outcome": "backed_up"})
    assert {(data_dir / n).stat().st_uid for n in STORE_FILES} == {user.pw_uid}
    assert entries_written_as(user, data_dir) == 2
