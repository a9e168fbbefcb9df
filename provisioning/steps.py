"""Numbered provisioning steps: each prints its number, what it found, its duration and ok/FAIL.

A step is a function returning a one-line summary; it raises :class:`StepFailed` with what went
wrong and what the technician should check (the cable, the module path, an expired token…).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


class StepFailed(Exception):
    """A step could not be done; ``check`` says what the technician should look at."""

    def __init__(self, problem: str, check: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.check = check


class StepSkipped(Exception):
    """A step that does not apply (``--no-units``, nothing to fetch); the message says why."""


@dataclass
class StepResult:
    number: int
    title: str
    outcome: str          # "ok", "FAIL" or "skip"
    seconds: float
    summary: str


@dataclass
class Progress:
    """Runs the steps in order and prints them; stops at the first failure."""

    total: int
    out: TextIO = field(default_factory=lambda: sys.stdout)
    results: list[StepResult] = field(default_factory=list)
    after: Callable[[StepResult], None] | None = None      # told each result (the audit trail)

    def note(self, text: str) -> None:
        """A detail line of the running step (what was found), printed at once."""
        print(f"        {text}", file=self.out, flush=True)

    def run(self, title: str, action: Callable[[], str]) -> StepResult:
        number = len(self.results) + 1
        print(f"[{number:2}/{self.total}] {title} …", file=self.out, flush=True)
        started = time.perf_counter()
        try:
            summary, outcome = action(), "ok"
        except StepSkipped as skipped:
            summary, outcome = str(skipped), "skip"
        except StepFailed as failed:
            seconds = time.perf_counter() - started
            self.results.append(StepResult(number, title, "FAIL", seconds, failed.problem))
            print(f"        FAIL  {seconds:6.2f} s  {failed.problem}", file=self.out)
            print(f"        check: {failed.check}", file=self.out, flush=True)
            self._tell()
            raise
        seconds = time.perf_counter() - started
        self.results.append(StepResult(number, title, outcome, seconds, summary))
        print(f"        {outcome:4}  {seconds:6.2f} s  {summary}", file=self.out, flush=True)
        self._tell()
        return self.results[-1]

    def _tell(self) -> None:
        if self.after is not None:
            self.after(self.results[-1])

    def report(self) -> None:
        """The table of every step run: number, outcome, seconds, title (the figures to compare)."""
        total = sum(r.seconds for r in self.results)
        print("\nsteps:", file=self.out)
        for r in self.results:
            print(f"  {r.number:2}  {r.outcome:4}  {r.seconds:6.2f} s  {r.title}", file=self.out)
        print(f"  total       {total:6.2f} s", file=self.out, flush=True)
