"""A :class:`kiosk.ports.CentralPort` that answers order lookups from the order cache when the central
is unreachable, and says so: the order it returns then carries ``as_of`` (the last sync).

Every other call goes to the central unchanged, except that an enrollment the central cannot take
is stopped with a clear reason when the feed already said the order was cancelled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from kiosk.errors import CentralRejected, CentralUnavailable, OrderNotFound
from kiosk.order import Order, OrderRefusal, OrderStatus
from kiosk.pin import SoPin
from kiosk.ports import CentralPort, IssuedCertificate
from sync.order_cache import OrderCache


class OfflineCentral:
    """Wraps ``central``; lookups fall back to ``cache`` on :class:`CentralUnavailable`."""

    def __init__(self, central: CentralPort, cache: OrderCache) -> None:
        self.central = central
        self.cache = cache

    def find_order(self, kind: str, value: str) -> Order:
        """From the central (refreshing the cached row), else from the cache with ``as_of`` set.

        Raises OrderNotFound (also when neither knows it) or, with an empty cache, CentralUnavailable.
        """
        try:
            order = self.central.find_order(kind, value)
        except CentralUnavailable:
            cached = self.cache.find(kind, value)
            if cached is None:
                if self.cache.count() == 0:
                    raise
                raise OrderNotFound(kind=kind, offline=True) from None
            return dataclasses.replace(cached.order, as_of=cached.synced_at)
        self.cache.put(order, dt.datetime.now(dt.UTC))
        return order

    def enroll(self, order_id: str, csr_der: bytes, idempotency_key: str, token_serial: str = "",
               so_pin: SoPin | None = None, authentication_csr_der: bytes | None = None,
               order_digest: str = "") -> IssuedCertificate:
        try:
            return self.central.enroll(order_id, csr_der, idempotency_key, token_serial, so_pin,
                                       authentication_csr_der, order_digest)
        except CentralUnavailable:
            cached = self.cache.find("order_id", order_id)
            if cached is not None and cached.order.status is OrderStatus.CANCELLED:
                # What the central answers online (409 order_not_payable, reason cancelled): the flow
                # ends the visit and the applicant is told why, instead of queueing a dead request.
                raise CentralRejected("the order was cancelled (order feed)", reason="order_not_payable",
                                      refusal=OrderRefusal.CANCELLED.value, status=409,
                                      invoice=cached.order.invoice, as_of=cached.synced_at.isoformat()) from None
            if cached is not None and order_digest and cached.order.checked_digest != order_digest:
                # The feed brought a change since the order was checked: what the central answers (409).
                raise CentralRejected("the order was changed (order feed)", reason="order_changed", status=409,
                                      invoice=cached.order.invoice, as_of=cached.synced_at.isoformat()) from None
            raise

    def __getattr__(self, name: str) -> Any:
        """Every other CentralPort call, unchanged (the shell casts this decorator to CentralPort)."""
        return getattr(self.central, name)
