"""Provisioning in the kiosk's audit trail (:mod:`kiosk.audit`): every step an entry of the kiosk's chain.

A run records ``provisioning.started``, one ``provisioning.<step>`` per step (its number, outcome,
seconds and the line the technician saw, with what it found: reader, token, printer, the kiosk's
certificate, the SHA-256 of the trust material and of ``kiosk.toml``) and ``provisioning.finished``
or ``provisioning.stopped``; all of one run share a session id.  Steps 1–6 write nothing (a run that
stops there leaves no file), so their entries wait in memory until step 7 has made the data
directory, and are then chained with the times they happened.

Provisioning runs as root; the store belongs to the kiosk's service user.  :func:`kiosk_store` opens
it with the effective uid and gid of the data directory's owner, so ``kiosk.db``, ``kiosk.key`` and
SQLite's ``-wal``/``-shm`` are the kiosk's own (0600), never root's.  No secret enters an entry: not
the SO PIN, the enrollment code, the identity's key nor the backup passphrase; certificates and
trust files only by their SHA-256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pwd
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.store import KioskStore

if TYPE_CHECKING:
    from provisioning.cli import Plan
    from provisioning.steps import StepResult

# The kind of each numbered step's entry (``provisioning.<kind>``), in the order cli.main runs them.
STEP_KINDS = ("readers", "token", "printer", "central", "enrollment", "trust", "configuration", "self_test",
              "test_receipt", "units")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _owner(directory: Path) -> pwd.struct_passwd | None:
    """Whom to act as in ``directory``: its owner, when we are root and it is somebody else's."""
    if os.geteuid() != 0 or not directory.is_dir():
        return None
    uid = directory.stat().st_uid
    if uid == 0:
        return None
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


@contextmanager
def as_user(owner: pwd.struct_passwd | None) -> Iterator[None]:
    """Run the block with ``owner``'s effective uid and gid (files it creates are the owner's); None: as we are."""
    if owner is None:
        yield
        return
    euid, egid = os.geteuid(), os.getegid()
    os.setegid(owner.pw_gid)
    try:
        os.seteuid(owner.pw_uid)
        try:
            yield
        finally:
            os.seteuid(euid)
    finally:
        os.setegid(egid)


def hand_over(data_dir: Path, owner: pwd.struct_passwd) -> None:
    """Give the data directory and a store root left in it (an earlier version's run) to ``owner``."""
    for path in [data_dir, *(data_dir / name for name in ("kiosk.db", "kiosk.db-wal", "kiosk.db-shm",
                                                          "kiosk.db-journal", "kiosk.key"))]:
        if path.exists() and path.stat().st_uid != owner.pw_uid:
            os.chown(path, owner.pw_uid, owner.pw_gid)


@contextmanager
def kiosk_store(data_dir: Path) -> Iterator[KioskStore]:
    """The kiosk's store in ``data_dir`` (created if need be), opened as the data directory's owner."""
    owner = _owner(data_dir)
    if owner is not None:
        hand_over(data_dir, owner)
    with as_user(owner):
        store = KioskStore.open(data_dir)
        try:
            yield store
        finally:
            store.close()


def _facts(kind: str, plan: Plan) -> dict[str, Any]:
    """What a step found or wrote, beyond its line: names, serials and hashes, never a secret."""
    from provisioning import cli

    if kind == "readers":
        return {"reader": plan.reader}
    if kind == "token" and plan.module is not None:
        return {"module": str(plan.module), "module_kind": plan.module_kind}
    if kind == "printer":
        return {"printer": dict(plan.printer)}
    if kind == "central":
        ca = plan.central_ca.read_bytes() if plan.central_ca is not None and plan.central_ca.is_file() else b""
        return {"central_url": plan.central_url, "central_ca_sha256": sha256(ca)}
    if kind == "enrollment" and plan.credential is not None:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(plan.credential.certificate_pem)
        return {"kiosk_id": plan.kiosk_id, "office": plan.office_code,
                "certificate_serial": f"{cert.serial_number:X}",
                "certificate_sha256": sha256(plan.credential.certificate_pem),
                "not_after": plan.credential.not_after.isoformat(), "escrow_key_id": plan.credential.escrow_key_id}
    if kind == "trust":
        def digest(to_write: str | None, path: str) -> str | None:
            if to_write:
                return sha256(to_write)
            return sha256(plan.path(path).read_bytes()) if plan.path(path).is_file() else None

        return {"national_roots_sha256": digest(plan.national_roots, cli.NATIONAL_ROOTS),
                "national_intermediates_sha256": digest(plan.national_intermediates, cli.NATIONAL_INTERMEDIATES),
                "ca_chain_sha256": digest(plan.ca_chain, cli.CA_CHAIN)}
    if kind == "configuration" and plan.path(cli.CONFIG).is_file():
        return {"kiosk_id": plan.kiosk_id, "office": plan.office,
                "config_sha256": sha256(plan.path(cli.CONFIG).read_bytes())}
    return {}


class ProvisioningTrail:
    """The audit entries of one provisioning run; they wait until the data directory exists."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.run_id = f"provisioning-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
        self.pending: list[tuple[str, str, dict[str, Any]]] = []
        self.data_dir: Path | None = None

    def record(self, kind: str, fields: dict[str, Any]) -> None:
        self.pending.append((_now(), kind, fields))
        if self.data_dir is not None:
            self.flush()

    def flush(self) -> None:
        assert self.data_dir is not None
        with kiosk_store(self.data_dir) as store:
            for at, kind, fields in self.pending:
                store.audit.append(kind, fields, self.run_id, at)
        self.pending.clear()

    def started(self, interactive: bool) -> None:
        self.record("provisioning.started", {
            "kiosk_id": self.plan.kiosk_id, "office": self.plan.office, "root": str(self.plan.root),
            "method": "interactive" if interactive else "non-interactive",
            "step": "re-provisioning" if self.plan.existing else "provisioning"})

    def step_done(self, result: StepResult) -> None:
        """After each step (ok, skip or FAIL); the configuration step's success opens the store."""
        kind = STEP_KINDS[result.number - 1]
        fields = {"step": result.number, "title": result.title, "outcome": result.outcome,
                  "seconds": round(result.seconds, 3), "summary": result.summary, **_facts(kind, self.plan)}
        self.record(f"provisioning.{kind}", fields)
        if kind == "configuration" and result.outcome == "ok":
            from provisioning import cli

            self.data_dir = self.plan.path(cli.DATA_DIR)
            self.flush()

    def finished(self, outcome: str, seconds: float, steps: int) -> None:
        """``provisioned`` or ``stopped``; entries still waiting (no data directory yet) are dropped: nothing is
        written before step 7."""
        if self.data_dir is None:
            self.pending.clear()
            return
        self.record("provisioning.finished" if outcome == "provisioned" else "provisioning.stopped",
                    {"kiosk_id": self.plan.kiosk_id, "outcome": outcome, "seconds": round(seconds, 3), "steps": steps})
