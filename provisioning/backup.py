"""``tamga-provision backup|restore``: carry a kiosk over to a replacement (a dead SD card, a new Pi).

A backup holds what a replacement cannot get again from anywhere else:

- the configuration directory (``kiosk.toml`` and every file beside it: the central credential, trust
  anchors, the factory SO PIN file);
- the data directory's files, among them the data key ``kiosk.key`` that decrypts the eToken SO PINs
  this kiosk set, and the kiosk's identity;
- a consistent snapshot of the store ``kiosk.db`` (SQLite's online backup, so a running kiosk can be
  backed up): unfinished sessions, the outbox not yet synced, the audit chain.

The file is encrypted with the technician's passphrase: scrypt (n=2^17, r=8, p=1) derives an
AES-256-GCM key; the header (format, KDF parameters, salt, nonce, kiosk id, time) is authenticated
too, so a changed byte anywhere is refused like a wrong passphrase.  The passphrase never comes from
the command line: it is typed twice on the terminal, or read from ``--passphrase-file``.

Restore refuses to overwrite a kiosk that already has a store unless told ``--replace`` (the old
store is then kept beside it as ``kiosk.db.before-restore-<time>``), writes files with the modes they
had (secrets 0600, the data directory 0700) and, as root, the owners they had (by name), opens the
restored store with the restored key to prove they belong together (every SO PIN decrypts, the
audit chain verifies), and records ``kiosk.restored`` in the audit trail; a backup records
``kiosk.backed_up`` (the file's SHA-256) after its snapshot.  As root both open the store as the data
directory's owner (:func:`provisioning.trail.kiosk_store`), so it leaves no file the kiosk cannot write.

A store restored from a backup older than the kiosk's last sync is behind the central: the central
then refuses the kiosk's next audit entries as a fork, and ``python -m sync status`` shows it.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import getpass
import hashlib
import io
import json
import os
import secrets
import sqlite3
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kiosk.errors import ConfigError
from kiosk.shell import config as kiosk_config

MAGIC = b"TAMGA-BACKUP-1\n"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
MIN_PASSPHRASE = 12
MAX_FILE = 64 << 20
STORE = "kiosk.db"
_STORE_FILES = {STORE, f"{STORE}-wal", f"{STORE}-shm", f"{STORE}-journal"}


class BackupError(Exception):
    """What went wrong, and what the technician should check."""

    def __init__(self, problem: str, check: str) -> None:
        super().__init__(f"{problem}; check: {check}")
        self.problem = problem
        self.check = check


@dataclass(frozen=True)
class Restored:
    files: int
    unfinished_sessions: int
    so_pins: int
    audit_entries: int
    kept_aside: Path | None


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def seal(payload: bytes, passphrase: str, kiosk_id: str, now: dt.datetime) -> bytes:
    """``payload`` encrypted: MAGIC, one JSON header line, then AES-256-GCM over the payload."""
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = json.dumps({"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                         "salt": base64.b64encode(salt).decode(), "nonce": base64.b64encode(nonce).decode(),
                         "kiosk_id": kiosk_id, "created_at": now.isoformat(timespec="seconds")},
                        sort_keys=True).encode("ascii") + b"\n"
    sealed = AESGCM(_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, payload, MAGIC + header)
    return MAGIC + header + sealed


def unseal(blob: bytes, passphrase: str) -> tuple[dict[str, object], bytes]:
    """The header and the payload; BackupError for a file that is not a backup, damaged, or another passphrase."""
    if not blob.startswith(MAGIC):
        raise BackupError("this is not a Tamga kiosk backup",
                          "the file name; backups are made by tamga-provision backup")
    end = blob.find(b"\n", len(MAGIC))
    try:
        header = json.loads(blob[len(MAGIC):end])
        n, r, p = int(header["n"]), int(header["r"]), int(header["p"])
        salt, nonce = base64.b64decode(header["salt"]), base64.b64decode(header["nonce"])
        if end < 0 or header.get("kdf") != "scrypt" or not (2**14 <= n <= 2**20 and 1 <= r <= 16 and p == 1):
            raise ValueError("unsupported KDF parameters")
    except (ValueError, KeyError, TypeError) as err:
        raise BackupError(f"the backup's header is damaged ({err})", "that the whole file was copied") from None
    try:
        payload = AESGCM(_key(passphrase, salt, n, r, p)).decrypt(nonce, blob[end + 1:], blob[:end + 1])
    except InvalidTag:
        raise BackupError("the passphrase is wrong or the file is damaged",
                          "the passphrase (case, keyboard layout) and that the whole file was copied") from None
    return header, payload


def _snapshot(database: Path) -> bytes:
    """A consistent copy of the store, taken with SQLite's online backup while the kiosk may be running."""
    with tempfile.TemporaryDirectory(prefix="tamga-backup-") as tmp:
        os.chmod(tmp, 0o700)
        copy = Path(tmp) / STORE
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return copy.read_bytes()


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int, like: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(dt.datetime.now(dt.UTC).timestamp())
    if like is not None:
        st = like.stat()
        info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
        info.uname, info.gname = _names(st.st_uid, st.st_gid)
    archive.addfile(info, io.BytesIO(data))


def _names(uid: int, gid: int) -> tuple[str, str]:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = ""
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = ""
    return user, group


def _regular_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def create(config_path: Path, target: Path, passphrase: str, now: dt.datetime | None = None) -> int:
    """Write the encrypted backup of the kiosk configured by ``config_path`` to ``target``; return the file count."""
    cfg = kiosk_config.load(config_path, check_files=False)
    config_dir, data_dir = config_path.resolve().parent, cfg.kiosk.data_dir
    database = data_dir / STORE
    if not database.is_file():
        raise BackupError(f"there is no store at {database}", "kiosk.data_dir in kiosk.toml")
    buffer = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in _regular_files(config_dir):
            _add(archive, f"config/{path.relative_to(config_dir)}", _read(path), path.stat().st_mode & 0o777, path)
            count += 1
        for path in _regular_files(data_dir):
            if path.name in _STORE_FILES and path.parent == data_dir:
                continue
            _add(archive, f"data/{path.relative_to(data_dir)}", _read(path), path.stat().st_mode & 0o777, path)
            count += 1
        _add(archive, f"data/{STORE}", _snapshot(database), 0o600, database)
        count += 1
    blob = seal(buffer.getvalue(), passphrase, cfg.kiosk.id, now or dt.datetime.now(dt.UTC))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(blob)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(target)
    from provisioning.trail import kiosk_store, sha256

    with kiosk_store(data_dir) as store:     # after the snapshot: the backup itself does not hold this entry
        store.audit.append("kiosk.backed_up", {"kiosk_id": cfg.kiosk.id, "outcome": "backed_up", "files": count,
                                               "backup_sha256": sha256(blob)})
    return count


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE:
        raise BackupError(f"{path} is larger than {MAX_FILE >> 20} MB", "what that file is; it does not belong there")
    return path.read_bytes()


def restore(source: Path, passphrase: str, config_path: Path, replace: bool = False,
            now: dt.datetime | None = None) -> Restored:
    """Restore the backup onto this kiosk; the configuration goes beside ``config_path``."""
    try:
        blob = source.read_bytes()
    except OSError as err:
        raise BackupError(f"cannot read {source} ({err.strerror})", "that the medium is mounted") from None
    header, payload = unseal(blob, passphrase)
    now = now or dt.datetime.now(dt.UTC)
    config_dir = config_path.resolve().parent
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            if not member.isfile() or not member.name.startswith(("config/", "data/")):
                raise BackupError(f"the backup holds an unexpected entry {member.name!r}", "where the file came from")
        _extract(archive, [m for m in members if m.name.startswith("config/")], "config/", config_dir)
        try:
            cfg = kiosk_config.load(config_path, check_files=False)
        except ConfigError as err:
            raise BackupError(f"the restored kiosk.toml does not load ({err.detail})",
                              "that the replacement has the same software version") from None
        data_dir = cfg.kiosk.data_dir
        kept_aside = None
        if (data_dir / STORE).exists():
            if not replace:
                raise BackupError(f"this kiosk already has a store at {data_dir / STORE}",
                                  "that this is the replacement kiosk; --replace keeps the old store beside it")
            kept_aside = data_dir / f"{STORE}.before-restore-{now.strftime('%Y%m%dT%H%M%SZ')}"
            (data_dir / STORE).replace(kept_aside)
            for suffix in ("-wal", "-shm", "-journal"):
                (data_dir / f"{STORE}{suffix}").unlink(missing_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        _extract(archive, [m for m in members if m.name.startswith("data/")], "data/", data_dir)
    restored = _prove(data_dir, str(header.get("kiosk_id", "")), hashlib.sha256(blob).hexdigest())
    if os.geteuid() == 0:        # the store was opened as root: give what it created to the store's owner
        owner = (data_dir / STORE).stat()
        for path in [data_dir, *data_dir.rglob("*")]:
            os.chown(path, owner.st_uid, owner.st_gid)
    return Restored(len(members), *restored, kept_aside)


def _extract(archive: tarfile.TarFile, members: list[tarfile.TarInfo], prefix: str, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for member in members:
        member.name = member.name[len(prefix):]
        target = (into / member.name).resolve()
        if not target.is_relative_to(into.resolve()):
            raise BackupError(f"the backup names a file outside its directory ({member.name!r})",
                              "where the file came from")
        archive.extract(member, into, filter="tar")    # with its mode and, as root, its owner by name


def _prove(data_dir: Path, kiosk_id: str, backup_sha256: str) -> tuple[int, int, int]:
    """Open the restored store with the restored key: every SO PIN decrypts and the audit chain verifies."""
    from provisioning.trail import kiosk_store

    with kiosk_store(data_dir) as store:     # as the restored directory's owner: no file of root's in it
        serials = [row["token_serial"] for row in store.db.query("select token_serial from token_secrets")]
        for serial in serials:
            if store.token_secret(serial) is None:
                raise BackupError(f"the restored key does not decrypt the SO PIN of eToken {serial}",
                                  "that kiosk.key and kiosk.db come from the same backup")
        report = store.audit.verify()
        if report.broken is not None:
            raise BackupError(f"the restored audit chain is broken at entry {report.broken.seq}",
                              "the backup's origin: it was changed after it was made")
        store.audit.append("kiosk.restored", {"kiosk_id": kiosk_id, "outcome": "restored",
                                              "setting": f"backup sha256 {backup_sha256}"})
        return len(store.unfinished()), len(serials), report.entries + 1


def _passphrase(args: argparse.Namespace, twice: bool) -> str:
    if args.passphrase_file is not None:
        phrase = args.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
    elif sys.stdin.isatty():
        phrase = getpass.getpass("backup passphrase (not shown): ")
        if twice and getpass.getpass("the same passphrase again: ") != phrase:
            raise BackupError("the two passphrases differ", "type the same passphrase twice")
    else:
        phrase = sys.stdin.readline().rstrip("\r\n")
    if twice and len(phrase) < MIN_PASSPHRASE:
        raise BackupError(f"the passphrase is shorter than {MIN_PASSPHRASE} characters",
                          "choose a longer one and keep it apart from the medium")
    return phrase


def main(argv: list[str]) -> int:
    """``tamga-provision backup TARGET`` / ``tamga-provision restore SOURCE [--replace]``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=kiosk_config.DEFAULT_PATH,
                        help="the kiosk's kiosk.toml (default %(default)s)")
    common.add_argument("--passphrase-file", type=Path,
                        help="read the passphrase from this file (else typed twice, or stdin's first line)")
    parser = argparse.ArgumentParser(prog="tamga-provision", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("backup", parents=[common], help="write an encrypted backup of this kiosk")
    make.add_argument("target", type=Path, help="the backup file to write, e.g. /media/usb/kiosk-7.tamga-backup")
    back = sub.add_parser("restore", parents=[common], help="restore a backup onto this (replacement) kiosk")
    back.add_argument("source", type=Path, help="the backup file")
    back.add_argument("--replace", action="store_true", help="keep this kiosk's existing store aside and restore")
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            phrase = _passphrase(args, twice=True)
            count = create(args.config, args.target, phrase)
            print(f"tamga-provision: backed up {count} files to {args.target} (encrypted; keep the passphrase apart)")
        else:
            result = restore(args.source, _passphrase(args, twice=False), args.config, replace=args.replace)
            aside = f"; the old store is kept as {result.kept_aside}" if result.kept_aside else ""
            print(f"tamga-provision: restored {result.files} files: {result.unfinished_sessions} unfinished "
                  f"sessions, {result.so_pins} eToken SO PINs readable, audit chain of {result.audit_entries} "
                  f"entries intact{aside}")
    except BackupError as failed:
        print(f"tamga-provision: {failed.problem}; check: {failed.check}", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"tamga-provision: the configuration does not load ({err.detail}); check: {args.config}",
              file=sys.stderr)
        return 1
    return 0
