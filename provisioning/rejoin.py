"""``tamga-provision audit-rejoin``: the way out of an audit fork, explicit and on the record.

A store restored from a backup older than the kiosk's last sync holds an older prefix of the chain the
central keeps, then entries of its own; the central refuses them as a fork (``python -m sync status``
shows ``audit_fork``) and records it.  Nothing repairs that by itself.  The technician who restored
the store runs this with a reason and a name:

1. the kiosk's own chain must verify (a changed chain is not rejoined: call the central's operator);
2. the central names the open fork and its head; the kiosk's entry before the fork must be the one
   the central holds (else the chains differ before the backup: not a restore, call the operator);
3. an ``audit.rejoined`` entry is appended to the kiosk's chain: the reason, the technician, the
   fork's place and the central's last acknowledged link (its head's number and hash), so the new
   branch itself says what it left and why;
4. the entry goes to the central signed with the kiosk's identity key; the central checks the
   signature against the kiosk's certificate and the entry against the fork and its head, records
   both (an auditor can check the signature again) with the fork and keeps
   the kiosk's chain from the fork on as a new branch (``central/orders/audit_chain.py``); the branch
   left stays whole;
5. the chain is pushed at once.

Safe to run again: a rejoin entry already appended for this fork and head is sent again, not a new one.
Exit status: 0 rejoined (or nothing to rejoin), 1 refused (the message says what to check), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.audit import GENESIS, AuditEntry, rejoin_message
from kiosk.errors import ConfigError, KioskError
from kiosk.shell import config as kiosk_config
from sync.audit_log import AuditLog

KIND = "audit.rejoined"


class RejoinError(Exception):
    def __init__(self, problem: str, check: str) -> None:
        super().__init__(f"{problem}; check: {check}")
        self.problem, self.check = problem, check


@dataclass(frozen=True)
class Rejoined:
    branch: int
    fork_seq: int
    entry: AuditEntry
    central_head_seq: int


def _text(value: str, what: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise RejoinError(f"the {what} must be 1 to {limit} printable characters",
                          f"--{what}: say what happened, for the auditor who reads it")
    return value


def _entry_at(audit: AuditLog, seq: int) -> AuditEntry | None:
    return next(iter(audit.entries(after_seq=seq - 1, limit=1)), None)


def signer(key_path: Path) -> Callable[[AuditEntry], str]:
    """Signs an entry with the kiosk's identity key (the one of its mutual TLS), for the central and the auditor."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise RejoinError(f"{key_path} is not the kiosk's EC key", "[central] client_key in kiosk.toml")
    return lambda entry: base64.b64encode(key.sign(rejoin_message(entry.hash), ec.ECDSA(hashes.SHA256()))).decode()


def rejoin(audit: AuditLog, central: Any, reason: str, technician: str,
           sign: Callable[[AuditEntry], str]) -> Rejoined | None:
    """Close the central's open fork of this kiosk's chain with an ``audit.rejoined`` entry; None: no fork."""
    reason, technician = _text(reason, "reason", 500), _text(technician, "technician", 100)
    report = audit.verify()
    if report.broken is not None:
        raise RejoinError(f"this kiosk's own audit chain is broken at entry {report.broken.seq}",
                          "python -m kiosk audit verify; a changed chain is not rejoined: call the central's operator")
    state = central.audit_state()
    fork = state.get("fork")
    if fork is None:
        return None
    seq, base = int(fork["seq"]), str(fork["base_hash"])
    before = _entry_at(audit, seq - 1) if seq > 1 else None
    if (before.hash if before is not None else GENESIS) != base:
        raise RejoinError(f"this kiosk's entry {seq - 1} is not the one the central holds",
                          "the chains differ before the fork, which a restored backup does not explain: "
                          "call the central's operator")
    head_seq, head_hash = int(state["head_seq"]), str(state["head_hash"])
    fields = {"reason": reason, "technician": technician, "fork_seq": seq, "base_hash": base,
              "central_branch": int(state["branch"]), "central_head_seq": head_seq, "central_head_hash": head_hash}
    entry = next((e for e in audit.entries(after_seq=seq - 1) if e.kind == KIND and e.fields.get("fork_seq") == seq
                  and e.fields.get("central_head_hash") == head_hash), None)
    if entry is None:
        entry = audit.append(KIND, fields)
    answer = central.rejoin_audit(entry.to_dict(), sign(entry))
    return Rejoined(int(answer["branch"]), seq, entry, head_seq)


def main(argv: list[str]) -> int:
    """``tamga-provision audit-rejoin --reason TEXT --technician NAME [--config FILE]``."""
    from provisioning.trail import kiosk_store
    from sync.daemon import SyncDaemon

    parser = argparse.ArgumentParser(prog="tamga-provision audit-rejoin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=kiosk_config.DEFAULT_PATH,
                        help="the kiosk's kiosk.toml (default %(default)s)")
    parser.add_argument("--reason", required=True, help="why the chain forked, e.g. 'SD card replaced, restored "
                                                        "from the backup of 2026-11-30, ticket 4711'")
    parser.add_argument("--technician", required=True, help="who restored the kiosk and runs this")
    args = parser.parse_args(argv)
    try:
        cfg = kiosk_config.load(args.config, check_files=False)
    except ConfigError as err:
        print(f"tamga-provision: the configuration does not load ({err.detail}); check: {args.config}",
              file=sys.stderr)
        return 2
    from sync.central_client import CentralClient

    try:
        with kiosk_store(cfg.kiosk.data_dir) as store, \
                CentralClient(cfg.central.url, cfg.central.identity(), timeout_s=cfg.central.timeout_s) as central:
            done = rejoin(store.audit, central, args.reason, args.technician, signer(cfg.central.client_key))
            if done is not None:
                sent = SyncDaemon(store, central, cfg.kiosk.id).push_audit_reporting()
                error = store.sync_status()["audit_error"]
    except RejoinError as failed:
        print(f"tamga-provision: {failed.problem}; check: {failed.check}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"tamga-provision: cannot read {err.filename} ({err.strerror}); check: the kiosk's files in "
              f"{cfg.kiosk.data_dir}, that this runs as root", file=sys.stderr)
        return 1
    except KioskError as err:
        print(f"tamga-provision: the central did not take the rejoin ({err.data.get('reason', err.key)}: "
              f"{err.detail}); check: the network and python -m sync status, then run this again", file=sys.stderr)
        return 1
    if done is None:
        print("tamga-provision: the central holds no fork of this kiosk's audit chain: nothing to rejoin")
        return 0
    print(f"tamga-provision: the central keeps this kiosk's audit chain from entry {done.fork_seq} on as branch "
          f"{done.branch}; the branch it left ends at entry {done.central_head_seq}, which the rejoin entry "
          f"{done.entry.seq} names with its reason; {sent} entries sent"
          + (f"; still refused: {error}" if error else ""))
    return 0 if not error else 1
