"""The kiosk's audit trail: an append-only, hash-chained list of security events.

Every session step (the journal), clerk sign-ins, approvals and rejections, PIN unblocks,
revocations, configuration changes and provisioning steps append one :class:`AuditEntry`.  Entry
``n`` commits to entry ``n − 1`` by hash, so an auditor who holds the newest hash (the central keeps
every kiosk's chain) detects any entry that was changed, removed or inserted later.

An entry holds no personal data: session ids, event kinds, steps, staff ids, device serials and a
SHA-256 of the full event (``body_sha256``), which the central can compare with the event it
received through the outbox.  That is what lets the retention purge delete the events' personal
data while the chain stays whole.

The link hash is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of
``[prev, seq, at, kind, session_id, fields]``; the first entry's ``prev`` is :data:`GENESIS`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64

# Event fields that may enter the chain as they are: no holder's name, register number, e-mail or phone.
CHAINED_FIELDS = frozenset({
    "flow", "final", "clerk_id", "token_serial", "model", "certificate_serial", "serial", "reason", "outcome",
    "public_key_sha256", "certificate_sha256", "algorithm", "by_proxy", "documents", "was_blank", "blank",
    "reused_existing_key", "attempts_remaining", "why", "setting", "step", "kiosk_id", "office", "method",
    "agreement_sha256", "revocation_method", "grace_used", "refusal",
})


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_hash(prev: str, seq: int, at: str, kind: str, session_id: str | None, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical([prev, seq, at, kind, session_id, dict(fields)])).hexdigest()


def rejoin_message(entry_hash: str) -> bytes:
    """What the kiosk's identity key signs (ECDSA, SHA-256) for its ``audit.rejoined`` entry: a label, the hash."""
    return f"tamga-audit-rejoin:{entry_hash}".encode("ascii")


def chained_fields(event: Mapping[str, Any], from_step: str | None = None,
                   to_step: str | None = None) -> dict[str, Any]:
    """What of a journal event enters the chain: the whitelisted fields, the steps, the whole event's hash."""
    fields = {k: v for k, v in event.items() if k in CHAINED_FIELDS}
    if from_step is not None:
        fields["from"] = from_step
    if to_step is not None:
        fields["to"] = to_step
    fields["body_sha256"] = hashlib.sha256(canonical(dict(event))).hexdigest()
    return fields


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    kind: str
    session_id: str | None
    fields: Mapping[str, Any]
    prev: str
    hash: str

    @classmethod
    def after(cls, prev: AuditEntry | None, at: str, kind: str, session_id: str | None,
              fields: Mapping[str, Any]) -> AuditEntry:
        """The entry that follows ``prev`` (None: the first of the chain)."""
        seq, prev_hash = (prev.seq + 1, prev.hash) if prev is not None else (1, GENESIS)
        return cls(seq, at, kind, session_id, dict(fields), prev_hash,
                   link_hash(prev_hash, seq, at, kind, session_id, fields))

    def expected_hash(self) -> str:
        return link_hash(self.prev, self.seq, self.at, self.kind, self.session_id, self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "session_id": self.session_id,
                "fields": dict(self.fields), "prev": self.prev, "hash": self.hash}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEntry:
        return cls(int(d["seq"]), str(d["at"]), str(d["kind"]), d.get("session_id"), dict(d["fields"]),
                   str(d["prev"]), str(d["hash"]))


@dataclass(frozen=True)
class BrokenLink:
    """The first entry that does not follow from the one before it, and why."""

    seq: int
    problem: str            # "hash" (the entry was changed), "prev" (one before it was changed or removed), "gap"
    expected: str
    found: str


@dataclass(frozen=True)
class ChainReport:
    entries: int
    head: str
    broken: BrokenLink | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify_chain(entries: Iterable[AuditEntry], prev_hash: str = GENESIS, first_seq: int = 1) -> ChainReport:
    """Walk the chain from ``first_seq`` (whose predecessor's hash is ``prev_hash``) and name the first broken link."""
    count, head, expected_seq = 0, prev_hash, first_seq
    kinds: dict[str, int] = {}
    for entry in entries:
        if entry.seq != expected_seq:
            return ChainReport(count, head, BrokenLink(expected_seq, "gap", str(expected_seq), str(entry.seq)), kinds)
        if entry.prev != head:
            return ChainReport(count, head, BrokenLink(entry.seq, "prev", head, entry.prev), kinds)
        actual = entry.expected_hash()
        if entry.hash != actual:
            return ChainReport(count, head, BrokenLink(entry.seq, "hash", actual, entry.hash), kinds)
        count, head, expected_seq = count + 1, entry.hash, expected_seq + 1
        kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    return ChainReport(count, head, None, kinds)
