"""``POST /api/v1/audit``: each kiosk's hash-chained audit trail (``kiosk.audit``), kept whole.

The central recomputes every entry's hash and accepts an entry only as the next link of that
kiosk's chain: the first entry follows the genesis hash, entry n+1 names entry n's hash.  An entry
it already holds is acknowledged again when identical (a replay after a lost answer) and refused as
``audit_fork`` when it differs; an entry beyond the next one is refused as ``audit_gap`` with the
sequence number the central expects, so a kiosk cannot drop entries unnoticed.

Pushes of one kiosk are serialised by a row lock on its credential (PostgreSQL; SQLite serialises
every writer anyway): two daemons of one kiosk racing, e.g. a restart beside the old process, both
read the head only after the other committed, so the second acknowledges what the first appended.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse

from central.orders.api import api_view, json_response, read_batch, short_text
from central.orders.errors import ApiError
from central.orders.models import AuditLink, KioskCredential
from kiosk.audit import GENESIS, AuditEntry

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


def _head(kiosk_id: str) -> tuple[int, str]:
    last = AuditLink.objects.filter(kiosk_id=kiosk_id).order_by("-seq").first()
    return (last.seq, last.hash) if last is not None else (0, GENESIS)


@api_view("POST")
def audit(request: HttpRequest) -> HttpResponse:
    """Append the kiosk's entries; answer ``{"head_seq": n, "head_hash": h, "applied": k}``."""
    kiosk_id: str = request.kiosk_id  # type: ignore[attr-defined]
    entries = [_checked(e, i) for i, e in enumerate(read_batch(request, "entries", MAX_ENTRIES))]
    applied = 0
    with transaction.atomic():
        list(KioskCredential.objects.select_for_update().filter(kiosk_id=kiosk_id).values_list("pk", flat=True))
        head_seq, head_hash = _head(kiosk_id)
        for entry in entries:
            if entry.seq <= head_seq:
                held = AuditLink.objects.filter(kiosk_id=kiosk_id, seq=entry.seq).values_list("hash", flat=True)
                if list(held) != [entry.hash]:
                    raise ApiError(409, "audit_fork", f"entry {entry.seq} differs from the one the central holds",
                                   field="entries", seq=entry.seq)
                continue
            if entry.seq != head_seq + 1:
                raise ApiError(409, "audit_gap", f"entry {head_seq + 1} is missing before entry {entry.seq}",
                               field="entries", expected_seq=head_seq + 1)
            if entry.prev != head_hash:
                raise ApiError(409, "audit_fork", f"entry {entry.seq} does not follow entry {head_seq}",
                               field="entries", seq=entry.seq)
            AuditLink.objects.create(kiosk_id=kiosk_id, seq=entry.seq, at=entry.at, kind=entry.kind,
                                     session_id=entry.session_id or "", fields=dict(entry.fields), prev=entry.prev,
                                     hash=entry.hash)
            head_seq, head_hash = entry.seq, entry.hash
            applied += 1
    return json_response({"head_seq": head_seq, "head_hash": head_hash, "applied": applied})
