"""The ``receipt`` step every flow that prints shares (printing itself: :mod:`kiosk.printing`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiosk.engine import Flow, StepResult
from kiosk.errors import WrongStep
from kiosk.events import EventKind
from kiosk.ports import Receipt, SessionState


class ReceiptSteps(Flow):
    """The ``receipt`` step of a flow: print (a printer fault still finishes the flow), then ``done``."""

    def build_receipt(self, language: str, data: Mapping[str, Any], reprint: bool) -> Receipt:
        raise NotImplementedError

    def print_receipt(self, session_id: str) -> StepResult:
        state = self.expect(session_id, self.Step("receipt"))
        data = dict(state.data)
        with self.engine.timed(data, self.Step("receipt")):
            error = self.engine.receipts.print(session_id,
                                               lambda reprint: self.build_receipt(state.language, data, reprint))
        data["receipt_pending"] = error is not None
        done = self.advance(state, self.Step("done"), data, EventKind.RECEIPT_PRINTED if error is None
                            else EventKind.RECEIPT_PENDING, error=error.to_dict() if error else None)
        return self.result(done, error)

    def reprint(self, session_id: str) -> bytes:
        """Print a finished session's kept receipt again, marked as a reprint; returns the rendered PNG."""
        state = self.engine.load(session_id)
        if state.flow != self.kind.value or state.step != "done":
            raise WrongStep(session_id=session_id, expected=f"{self.kind.value}.done",
                            actual=f"{state.flow}.{state.step}")
        png = self.engine.receipts.reprint(session_id, lambda _: self.build_receipt(state.language, state.data, True))
        self.record(state, dict(state.data, receipt_pending=False), EventKind.RECEIPT_REPRINTED, final=True)
        return png

    def on_finish(self, state: SessionState) -> None:
        self.engine.receipts.drop(state.id)
