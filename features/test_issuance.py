"""Binds features/issuance.feature to the steps in features/conftest.py, and the early path's own steps."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from pytest_bdd import scenarios, then, when

from kiosk.pin import Pin

scenarios("issuance.feature")


@when("the kiosk prepares the eToken while the clerk checks the documents")
def _prepares_early(driver: Any) -> None:
    """The screen's worker thread, started as soon as the identity is verified and the token is in."""
    flow, sid = driver.kiosk.issuance, driver.session_id
    driver.early_worker = threading.Thread(target=flow.prepare_early, args=(sid,), daemon=True)
    driver.early_worker.start()
    # The clerk's review lasts at least until the preparation has begun (a real review takes a minute).
    deadline = time.monotonic() + 30
    while "early" not in driver.kiosk.store.load(sid).data:
        assert time.monotonic() < deadline, "the early preparation did not start"
        time.sleep(0.01)


@when("the clerk rejects because the holder is not present")
def _rejects(driver: Any) -> None:
    driver.early_worker.join(60)           # the clerk's review outlasts SoftHSM's key generation
    flow, sid = driver.kiosk.issuance, driver.session_id
    driver.temporary_pin = flow.early_work.pin(sid)
    driver.key_serial = driver.kiosk.store.load(sid).data["token"]["serial"]
    driver.do("reject", "clerk-1", "holder_not_present")
    assert driver.error is None, driver.error


@then("the chosen PIN replaced the temporary one on the key made during the review")
def _pin_replaced(driver: Any) -> None:
    kinds = [json.loads(row["event"])["kind"] for row in driver.kiosk.store.journal(driver.session_id)]
    assert "token.pin_changed" in kinds and "early.key_generated" in kinds
    assert "token.initialising" not in kinds          # not initialised again after approval
    with driver.token.inner.session(driver.kiosk.store.load(driver.session_id).data["token"]["serial"],
                                    Pin(driver.token_pin_value)):
        pass


@then("the eToken holds no key")
def _no_key(driver: Any) -> None:
    assert driver.temporary_pin is not None
    with driver.token.inner.session(driver.key_serial, driver.temporary_pin) as session:
        assert session.key_ids() == []
