"""The sync daemon: the kiosk's journal to the central, exactly once and in order; queued requests sent.

One round (:meth:`SyncDaemon.once`):

1. push the outbox oldest first in batches, each event with its idempotency key
   ``<kiosk id>/<outbox id>``; the central's inbox applies a key once, so a batch replayed after a
   lost answer applies nothing twice; acknowledged rows are marked sent;
2. send what sessions queued while the central was unreachable (a pending certificate request, a
   revocation, a renewal: each flow's ``queued`` call, idempotent by its own key);
3. pull the office's feeds after the cursors kept in ``sync_state`` (orders into the order cache,
   for offline lookups; certificate events counted; the national ID trust anchors into
   :class:`sync.trust_material.TrustMaterial` when ``trust`` is given; the central's renewal calendar
   into ``calendar`` (:mod:`sync.central_calendar`) when its version changed);
4. the ID-card CRLs that are due fetched again (from the national authority, so also when the
   central is unreachable), then the retention purge, which deletes finished sessions' personal data
   once all their events are sent.

:meth:`SyncDaemon.run` repeats rounds; after a failure it waits with exponential backoff and full
jitter, or as long as the central's Retry-After says.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kiosk.engine import Engine
from kiosk.errors import CentralRejected, CentralUnavailable, KioskError
from sync.central_calendar import CalendarFile, CentralCalendar
from sync.store import KioskStore

log = logging.getLogger("tamga.sync")

BATCH = 200
BATCH_BYTES = 192 * 1024
"""A batch's JSON stays under this, well inside the central's 256 KB body limit (identity evidence is
~3.5 KB an event, so a day offline can hold many more bytes than ``BATCH`` small events)."""
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0


def fitting(items: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The longest prefix of ``items`` whose JSON stays under ``limit`` bytes, never fewer than one item
    (a single item beyond the limit goes alone; the central says why it refuses it)."""
    size = 0
    for count, item in enumerate(items):
        size += len(json.dumps(item, ensure_ascii=False).encode("utf-8")) + 1
        if size > limit and count:
            return items[:count]
    return items


class Inbox(Protocol):
    def push_events(self, events: list[dict[str, Any]]) -> set[str]:
        ...

    def push_audit(self, entries: list[dict[str, Any]]) -> int:
        """Returns the central's head sequence number of this kiosk's audit chain."""
        ...


class Feeds(Protocol):
    def order_feed(self, after: str = "0", limit: int = 100) -> Any:
        """A page whose items are ``(seq, Order)``, with ``cursor`` and ``more``."""
        ...

    def certificate_feed(self, after: str = "0", limit: int = 100) -> Any:
        ...

    def trust_feed(self, after: str = "0", limit: int = 100) -> Any:
        ...

    def calendar(self) -> CentralCalendar:
        """The central's renewal calendar (``GET /api/v1/config``)."""
        ...


class TrustUpdates(Protocol):
    def apply(self, items: Any) -> int:
        """Keep the added trust anchors, drop the withdrawn ones; how many changed."""
        ...

    def refresh_crls(self) -> dict[str, str]:
        ...


@dataclass
class RoundReport:
    pushed: int = 0
    audit_sent: int = 0
    queued_sent: int = 0
    orders_pulled: int = 0
    certificate_events: int = 0
    trust_items: int = 0
    calendar_changed: bool = False
    crls: dict[str, str] = field(default_factory=dict)      # url → fresh, fetched or failed: why
    purged: int = 0
    error: KioskError | None = None


@dataclass
class SyncDaemon:
    store: KioskStore
    inbox: Inbox
    kiosk_id: str
    engine: Engine | None = None                 # None: push the journal only
    feeds: Feeds | None = None                   # None: pull no feed
    retention: dt.timedelta = dt.timedelta(days=30)
    batch: int = BATCH
    batch_bytes: int = BATCH_BYTES
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float, float], float] = random.uniform
    before_round: Callable[[], object] | None = None   # e.g. the kiosk certificate's renewal when due
    trust: TrustUpdates | None = None            # None: no trust feed, no CRL refresh
    calendar: CalendarFile | None = None         # where the central's calendar is kept; None: not fetched
    failures: int = field(default=0, init=False)

    def key(self, outbox_id: int) -> str:
        return f"{self.kiosk_id}/{outbox_id}"

    def push(self) -> int:
        """Push the whole outbox, batch by batch; returns how many events the central acknowledged."""
        pushed = 0
        while rows := self.store.outbox_batch(self.batch):
            events = fitting([{"key": self.key(r["id"]), "session_id": r["session_id"], "kind": r["kind"],
                               "payload": json.loads(r["payload"]), "created_at": r["created_at"]} for r in rows],
                             self.batch_bytes)
            rows = rows[:len(events)]
            acknowledged = self.inbox.push_events(events)
            done = [r["id"] for r in rows if self.key(r["id"]) in acknowledged]
            self.store.mark_sent(done)
            pushed += len(done)
            if len(done) < len(rows):     # the central kept back part of the batch: the rest next round
                break
        return pushed

    def push_audit(self) -> int:
        """Push the audit chain's unsent entries in order; the central refuses a gap, so none is skipped."""
        sent = 0
        while entries := self.store.audit.unsent(self.batch):
            batch = fitting([e.to_dict() for e in entries], self.batch_bytes)
            entries = entries[:len(batch)]
            head = self.inbox.push_audit(batch)
            # Only this batch's entries: the central's head may be ahead of them (a store restored from
            # an old backup), and entries it has not seen are not sent whatever their numbers.
            self.store.audit.mark_sent(min(head, entries[-1].seq))
            done = sum(1 for e in entries if e.seq <= head)
            sent += done
            if done < len(entries):
                break
        return sent

    def push_audit_reporting(self) -> int:
        """The audit push, whose refusal by the central (a gap or a fork it will not accept: somebody changed
        this kiosk's chain, or a store was restored from an old backup) is kept for ``status`` and the technician
        and does not hold back the applicants' requests."""
        try:
            sent = self.push_audit()
        except CentralRejected as err:
            log.error("the central refused the audit chain", extra={"reason": err.data.get("reason"),
                                                                    "detail": err.detail})
            self.store.set_sync_state("audit_error", f"{err.data.get('reason', err.key)}: {err.detail}")
            return 0
        self.store.set_sync_state("audit_error", "")
        return sent

    def pull(self, name: str) -> int:
        """Read the feed ``name`` (orders, certificates) from its kept cursor to its end; return the items."""
        if self.feeds is None:
            return 0
        read = getattr(self.feeds, {"orders": "order_feed", "certificates": "certificate_feed",
                                    "trust": "trust_feed"}[name])
        cursor, pulled = self.store.sync_state_value(f"feed.{name}.cursor") or "0", 0
        while True:
            try:
                page = read(cursor, self.batch)
            except CentralRejected as err:
                if err.data.get("reason") != "cursor_ahead" or cursor == "0":
                    raise
                log.warning("the central's %s feed is behind the kept cursor (restored?): reading it again", name,
                            extra={"cursor": cursor})
                cursor = "0"
                continue
            if name == "orders":
                self.store.orders.put_many(page.items, dt.datetime.now(dt.UTC))
            if name == "trust" and self.trust is not None:
                self.trust.apply(page.items)
            pulled += len(page.items)
            cursor = page.cursor
            self.store.set_sync_state(f"feed.{name}.cursor", cursor)
            if not page.more:
                break
        self.store.set_sync_state(f"feed.{name}", "")
        return pulled

    def send_queued(self) -> int:
        if self.engine is None:
            return 0
        sent = 0
        for session_id, call in self.engine.queued_calls():
            result = call()
            if result.error is not None and isinstance(result.error, CentralUnavailable):
                raise result.error
            log.info("queued request sent", extra={"session": session_id, "step": result.step.value})
            sent += 1
        return sent

    def once(self) -> RoundReport:
        """One round; a central that cannot be reached ends it early with the error in the report."""
        report = RoundReport()
        if self.before_round is not None:
            self.before_round()
        try:
            report.pushed = self.push()
            report.orders_pulled = self.pull("orders")
            report.certificate_events = self.pull("certificates")
            if self.trust is not None:
                report.trust_items = self.pull("trust")
            if self.calendar is not None and self.feeds is not None:
                report.calendar_changed = self.calendar.keep(self.feeds.calendar())
            report.queued_sent = self.send_queued()
            report.audit_sent = self.push_audit_reporting()
        except KioskError as err:
            report.error = err
            self.store.set_sync_state("error", f"{err.key} {err.data.get('cause', '')}".strip())
            self.failures += 1
        else:
            self.store.set_sync_state("success", "")
            self.failures = 0
        if self.trust is not None:
            report.crls = self.trust.refresh_crls()
        report.purged = self.store.purge_finished(self.retention)
        return report

    def delay(self, error: KioskError | None, interval_s: float) -> float:
        """How long to wait before the next round."""
        if error is None:
            return interval_s
        retry_after = error.data.get("retry_after")
        if isinstance(retry_after, int | float) and retry_after > 0:
            return min(float(retry_after), BACKOFF_CAP_S)
        return self.jitter(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self.failures, 16)))

    def run(self, interval_s: float = 30.0, rounds: int | None = None) -> None:
        """Rounds until stopped (or ``rounds`` of them)."""
        done = 0
        while rounds is None or done < rounds:
            report = self.once()
            done += 1
            if report.pushed or report.queued_sent or report.error:
                log.info("sync round", extra={"pushed": report.pushed, "queued_sent": report.queued_sent,
                                              "purged": report.purged,
                                              "error": report.error.key if report.error else None})
            if rounds is None or done < rounds:
                self.sleep(self.delay(report.error, interval_s))
