"""``/api/v1/audit``: each kiosk's hash-chained audit trail (``kiosk.audit``), kept whole; forks recorded.

The central recomputes every entry's hash and accepts an entry only as the next link of that
kiosk's chain: the first entry follows the genesis hash, entry n+1 names entry n's hash.  An entry
it already holds is acknowledged again when identical (a replay after a lost answer) and refused as
``audit_gap`` when it is beyond the next one (with the sequence number the central expects), so a
kiosk cannot drop entries unnoticed.

An entry that differs from the held one, or does not follow it, is refused as ``audit_fork`` and the
fork is recorded (:class:`AuditFork`: where, both hashes, how often).  That is what a store restored
from a backup older than the last sync offers: the old prefix, then entries of its own.  Nothing
repairs it by itself.  The technician's ``tamga-provision audit-rejoin`` appends an ``audit.rejoined``
entry to the kiosk's chain (a reason, who, the fork's place and the central's last acknowledged link)
and sends it, signed with the kiosk's identity key, to ``POST /api/v1/audit/rejoin``; the central
checks the signature against the kiosk's certificate and the entry against the open fork and its
head, records both in the fork, and from then on keeps the kiosk's chain from the fork on as a new
*branch*: entries before the fork are compared with the branch it left, entries from the fork on
are appended to the new branch, and the rejoin entry must come as declared.  The branch left stays
whole and frozen; nothing is dropped or rewritten.  ``GET /api/v1/audit`` tells a kiosk its branch,
head and open fork.

Pushes of one kiosk are serialised by a row lock on its credential (PostgreSQL; SQLite serialises
every writer anyway): two daemons of one kiosk racing, e.g. a restart beside the old process, both
read the head only after the other committed, so the second acknowledges what the first appended.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from central.orders.api import api_view, json_response, read_batch, read_json, short_text
from central.orders.auth import client_certificate
from central.orders.errors import ApiError
from central.orders.models import AuditFork, AuditLink, KioskCredential
from kiosk.audit import GENESIS, AuditEntry, rejoin_message, verify_chain

MAX_ENTRIES = 500
_HEX = frozenset("0123456789abcdef")


def _checked(raw: Any, index: int) -> AuditEntry:
    where = f"entries[{index}]"
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_request", f"{where} must be an object", field=where)
    seq = raw.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**62:
        raise ApiError(400, "invalid_request", f"{where}.seq must be a positive integer", field=f"{where}.seq")
    for name, limit in (("at", 40), ("kind", 64)):
        if not short_text(raw.get(name), limit):
            raise ApiError(400, "invalid_request", f"{where}.{name} must be 1 to {limit} printable characters",
                           field=f"{where}.{name}")
    session_id = raw.get("session_id")
    if session_id is not None and not short_text(session_id, 64):
        raise ApiError(400, "invalid_request", f"{where}.session_id must be null or 1 to 64 printable characters",
                       field=f"{where}.session_id")
    for name in ("prev", "hash"):
        value = raw.get(name)
        if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
            raise ApiError(400, "invalid_request", f"{where}.{name} must be 64 lowercase hex digits",
                           field=f"{where}.{name}")
    if not isinstance(raw.get("fields"), dict):
        raise ApiError(400, "invalid_request", f"{where}.fields must be an object", field=f"{where}.fields")
    entry = AuditEntry.from_dict(raw)
    if entry.expected_hash() != entry.hash:
        raise ApiError(400, "audit_hash", f"{where}.hash is not the hash of the entry", field=f"{where}.hash")
    return entry


@dataclass(frozen=True)
class Branch:
    """A kiosk's current branch: its number, where each branch of its lineage begins, its base and rejoin entry."""

    number: int
    lineage: tuple[tuple[int, int], ...]     # (branch, first seq), the current one first, branch 0 (from 1) last
    base: tuple[int, str]                    # (seq, hash) the branch's first entry follows
    rejoin: tuple[int, str] | None           # (seq, hash) the kiosk declared for its audit.rejoined entry


class _Forked(Exception):
    def __init__(self, seq: int, held: str, offered: str) -> None:
        super().__init__(seq)
        self.seq, self.held, self.offered = seq, held, offered


def _branch(kiosk_id: str) -> Branch:
    joined = {f.branch: f for f in AuditFork.objects.filter(kiosk_id=kiosk_id, branch__isnull=False)}
    current = max(joined, default=0)
    lineage, number = [], current
    while number:
        lineage.append((number, joined[number].seq))
        number = joined[number].parent
    lineage.append((0, 1))
    if not current:
        return Branch(0, tuple(lineage), (0, GENESIS), None)
    fork = joined[current]
    assert fork.rejoin_seq is not None
    return Branch(current, tuple(lineage), (fork.seq - 1, fork.base_hash), (fork.rejoin_seq, fork.rejoin_hash))


def _held(kiosk_id: str, branch: Branch, seq: int) -> str:
    """The hash the central holds for entry ``seq`` of the kiosk's chain along ``branch``'s lineage ("" none)."""
    if seq == 0:
        return GENESIS
    number = next(n for n, first in branch.lineage if seq >= first)
    held = AuditLink.objects.filter(kiosk_id=kiosk_id, branch=number, seq=seq).values_list("hash", flat=True)
    return next(iter(held), "")


def _head(kiosk_id: str, branch: Branch) -> tuple[int, str]:
    last = AuditLink.objects.filter(kiosk_id=kiosk_id, branch=branch.number).order_by("-seq").first()
    return (last.seq, last.hash) if last is not None else branch.base


def _lock(kiosk_id: str) -> None:
    list(KioskCredential.objects.select_for_update().filter(kiosk_id=kiosk_id).values_list("pk", flat=True))


def _append(kiosk_id: str, entries: list[AuditEntry]) -> tuple[int, str, int]:
    """Append what follows the head; (head seq, head hash, applied).  Raises _Forked, or ApiError for a gap."""
    applied = 0
    branch = _branch(kiosk_id)
    head_seq, head_hash = _head(kiosk_id, branch)
    for entry in entries:
        if entry.seq <= head_seq:
            held = _held(kiosk_id, branch, entry.seq)
            if held != entry.hash:
                raise _Forked(entry.seq, held, entry.hash)
            continue
        if entry.seq != head_seq + 1:
            raise ApiError(409, "audit_gap", f"entry {head_seq + 1} is missing before entry {entry.seq}",
                           field="entries", expected_seq=head_seq + 1)
        if entry.prev != head_hash:
            raise _Forked(entry.seq, "", entry.hash)
        if branch.rejoin is not None and entry.seq == branch.rejoin[0] and entry.hash != branch.rejoin[1]:
            raise _Forked(entry.seq, branch.rejoin[1], entry.hash)      # not the rejoin entry the technician sent
        AuditLink.objects.create(kiosk_id=kiosk_id, branch=branch.number, seq=entry.seq, at=entry.at,
                                 kind=entry.kind, session_id=entry.session_id or "", fields=dict(entry.fields),
                                 prev=entry.prev, hash=entry.hash)
        head_seq, head_hash = entry.seq, entry.hash
        applied += 1
    return head_seq, head_hash, applied


def _record(kiosk_id: str, forked: _Forked) -> AuditFork:
    """Keep the refused fork (a repeat of the open one counts as another refusal of it)."""
    with transaction.atomic():
        _lock(kiosk_id)
        branch = _branch(kiosk_id)
        fork, created = AuditFork.objects.get_or_create(
            kiosk_id=kiosk_id, parent=branch.number, seq=forked.seq, offered_hash=forked.offered, branch=None,
            defaults={"base_hash": _held(kiosk_id, branch, forked.seq - 1), "held_hash": forked.held})
        if not created:
            AuditFork.objects.filter(pk=fork.pk).update(refusals=F("refusals") + 1)
    return fork


def _open_fork(kiosk_id: str, branch: Branch) -> AuditFork | None:
    return AuditFork.objects.filter(kiosk_id=kiosk_id, parent=branch.number, branch=None).order_by("-pk").first()


@api_view("GET", "POST")
def audit(request: HttpRequest) -> HttpResponse:
    """POST: append the kiosk's entries, answer ``{"head_seq", "head_hash", "applied"}``; GET: the chain's state."""
    kiosk_id: str = request.kiosk_id  # type: ignore[attr-defined]
    if request.method == "GET":
        branch = _branch(kiosk_id)
        head_seq, head_hash = _head(kiosk_id, branch)
        fork = _open_fork(kiosk_id, branch)
        return json_response({"branch": branch.number, "head_seq": head_seq, "head_hash": head_hash,
                              "fork": None if fork is None else {
                                  "seq": fork.seq, "base_hash": fork.base_hash, "held_hash": fork.held_hash,
                                  "offered_hash": fork.offered_hash, "refusals": fork.refusals,
                                  "detected_at": fork.detected_at.isoformat()}})
    entries = [_checked(e, i) for i, e in enumerate(read_batch(request, "entries", MAX_ENTRIES))]
    try:
        with transaction.atomic():
            _lock(kiosk_id)
            head_seq, head_hash, applied = _append(kiosk_id, entries)
    except _Forked as forked:
        fork = _record(kiosk_id, forked)
        raise ApiError(409, "audit_fork", f"entry {forked.seq} differs from the one the central holds or does not "
                       "follow it (a store restored from an old backup? tamga-provision audit-rejoin)",
                       field="entries", seq=forked.seq, fork_seq=fork.seq) from None
    return json_response({"head_seq": head_seq, "head_hash": head_hash, "applied": applied})


def _rejoin_fields(entry: AuditEntry) -> dict[str, Any]:
    f = entry.fields
    if entry.kind != "audit.rejoined":
        raise ApiError(400, "invalid_request", "entry.kind must be audit.rejoined", field="entry.kind")
    for name, limit in (("reason", 500), ("technician", 100)):
        if not short_text(f.get(name), limit) or not str(f.get(name)).strip():
            raise ApiError(400, "invalid_request", f"entry.fields.{name} must be 1 to {limit} printable characters",
                           field=f"entry.fields.{name}")
    for name in ("fork_seq", "central_head_seq"):
        if not isinstance(f.get(name), int) or isinstance(f.get(name), bool):
            raise ApiError(400, "invalid_request", f"entry.fields.{name} must be an integer",
                           field=f"entry.fields.{name}")
    return dict(f)


def signature_holds(certificate: x509.Certificate, signature: str, entry_hash: str) -> bool:
    """``signature`` (base64 DER ECDSA, SHA-256) is the certificate key's of ``rejoin_message(entry_hash)``."""
    key = certificate.public_key()
    try:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(base64.b64decode(signature, validate=True), rejoin_message(entry_hash), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@api_view("POST")
def rejoin(request: HttpRequest) -> HttpResponse:
    """Close the kiosk's open fork with its ``audit.rejoined`` entry: its chain goes on as a new branch.

    Answers ``{"branch", "fork_seq", "head_seq", "head_hash"}`` (the new branch's base: the last shared
    entry); a replay of the same entry answers the same.
    """
    kiosk_id: str = request.kiosk_id  # type: ignore[attr-defined]
    body = read_json(request)
    entry = _checked(body.get("entry"), 0)
    f = _rejoin_fields(entry)
    certificate = client_certificate(request)
    assert certificate is not None          # api_view authenticated it
    signature = body.get("signature")
    if not isinstance(signature, str) or not signature_holds(certificate, signature, entry.hash):
        raise ApiError(400, "signature_invalid", "signature is not the kiosk key's signature of the entry",
                       field="signature")
    with transaction.atomic():
        _lock(kiosk_id)
        done = AuditFork.objects.filter(kiosk_id=kiosk_id, rejoin_hash=entry.hash).first()
        if done is None:
            branch = _branch(kiosk_id)
            fork = _open_fork(kiosk_id, branch)
            if fork is None:
                raise ApiError(409, "audit_no_fork", "the central holds no open fork of this kiosk's chain",
                               field="entry")
            head = _head(kiosk_id, branch)
            if (f["fork_seq"], f.get("base_hash")) != (fork.seq, fork.base_hash) or \
                    (f["central_head_seq"], f.get("central_head_hash")) != head or entry.seq < fork.seq:
                raise ApiError(409, "audit_rejoin_stale", "the entry does not name the open fork and the central's "
                               "head: ask GET /api/v1/audit again", field="entry", fork_seq=fork.seq,
                               head_seq=head[0])
            fork.branch, fork.head_seq, fork.head_hash = branch.number + 1, head[0], head[1]
            fork.reason, fork.technician = f["reason"], f["technician"]
            fork.rejoin_seq, fork.rejoin_hash, fork.rejoined_at = entry.seq, entry.hash, timezone.now()
            fork.signature, fork.signer_certificate = signature, certificate.public_bytes(Encoding.PEM).decode()
            fork.save()
            done = fork
    assert done.branch is not None
    return json_response({"branch": done.branch, "fork_seq": done.seq, "head_seq": done.seq - 1,
                          "head_hash": done.base_hash})


def chain_report(kiosk_id: str) -> list[str]:
    """For the auditor (``python -m central audit KIOSK_ID``): each branch, re-verified link by link, and each fork."""
    forks = list(AuditFork.objects.filter(kiosk_id=kiosk_id).order_by("pk"))
    lines = []
    for number, fork in [(0, None), *((f.branch, f) for f in forks if f.branch is not None)]:
        links = AuditLink.objects.filter(kiosk_id=kiosk_id, branch=number).order_by("seq")
        entries = [AuditEntry(link.seq, link.at, link.kind, link.session_id or None, link.fields, link.prev, link.hash)
                   for link in links]
        first = fork.seq if fork is not None else 1
        report = verify_chain(entries, fork.base_hash if fork is not None else GENESIS, first)
        state = "intact" if report.broken is None else \
            f"BROKEN at entry {report.broken.seq} ({report.broken.problem})"
        span = f"entries {first}-{first + len(entries) - 1}" if entries else "no entries yet"
        lines.append(f"branch {number}: {span}, head {report.head}, {state}")
        if fork is not None:
            signer = x509.load_pem_x509_certificate(fork.signer_certificate.encode())
            signed = "signature verified" if signature_holds(signer, fork.signature, fork.rejoin_hash) else \
                "signature DOES NOT VERIFY"
            lines.append(f"  signed by the kiosk certificate {signer.subject.rfc4514_string()} (serial "
                         f"{signer.serial_number:X}): {signed}")
            lines.append(f"  left branch {fork.parent} after entry {fork.seq - 1} ({fork.base_hash}); rejoined "
                         f"{fork.rejoined_at:%Y-%m-%d %H:%M} UTC by {fork.technician!r}: {fork.reason!r}; "
                         f"its entry {fork.rejoin_seq} names branch {fork.parent}'s head, entry {fork.head_seq} "
                         f"({fork.head_hash})")
    for fork in forks:
        state = f"closed by branch {fork.branch}" if fork.branch is not None else \
            "OPEN: the kiosk's entries from there on are refused until tamga-provision audit-rejoin"
        lines.append(f"fork at entry {fork.seq} of branch {fork.parent}, detected {fork.detected_at:%Y-%m-%d %H:%M} "
                     f"UTC, refused {fork.refusals} time(s): {state}")
    return lines
