"""Kill points: named places in the kiosk where the crash harness SIGKILLs it, installed from outside.

Nothing here is in product code.  In the child process, :func:`install` puts a ``sys.setprofile``
hook (every thread) that matches Python frames by their code object and kills the process at a
function's entry or exit (its Nth call), or arms the LD_PRELOAD shim (``killshim.c``) while the
function runs, so that the kill lands *inside* a C call: the Nth ``ftruncate`` of a SoftHSM object
file (C_InitToken, C_GenerateKeyPair, C_CreateObject) or the Nth ``send`` to the central's or the
printer's TCP port (the enrollment request, a sync push, the receipt's bytes).

A point's name says where: ``kiosk.engine.Engine.advance:exit#3``,
``devices.token.Pkcs11Session.generate_key_pair:enter#1``,
``devices.token.Pkcs11Token.initialise:inside:ftruncate:token.object#1``,
``sync.central_client.CentralClient.enroll:inside:send:central#1``.

The catalogue is not written by hand: :func:`record` runs the same hook in a dry run and counts
which functions of the kiosk's flow, engine, store, sync and device modules were called (and how
often the shim matched inside each side effect); :func:`catalogue` turns those counts into points
by the rules below, so a new step or side effect gets its kill points without anybody listing them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

# Modules whose functions the dry run watches (the flows, the engine and what talks to the outside).
WATCHED_MODULES = (
    "kiosk.engine", "kiosk.identity", "kiosk.token_steps", "kiosk.receipt_steps", "kiosk.printing",
    "kiosk.flows.issuance", "kiosk.flows.renewal", "kiosk.flows.revocation", "kiosk.flows.unblock",
    "kiosk.flows.token_check", "devices.token", "devices.printer", "sync.central_client", "sync.store",
    "sync.daemon",
)
FLOW_MODULE_PREFIXES = ("kiosk.flows.", "kiosk.identity", "kiosk.token_steps", "kiosk.receipt_steps")

# Step boundaries: after every committed transition (the session row, journal, outbox and audit entry).
STEP_BOUNDARY = "kiosk.engine.Engine.advance"

# Side effects outside the kiosk process, and the writes that record them: killed at entry and exit.
SIDE_EFFECTS = (
    "devices.token.Pkcs11Token.initialise",
    "devices.token.Pkcs11Token.unblock",
    "devices.token.Pkcs11Session.generate_key_pair",
    "devices.token.Pkcs11Session.sign_csr",
    "devices.token.Pkcs11Session.sign",
    "devices.token.Pkcs11Session.install_certificate",
    "sync.central_client.CentralClient.enroll",
    "sync.central_client.CentralClient.renew",
    "sync.central_client.CentralClient.revoke",
    "sync.central_client.CentralClient.escrowed_so_pin",
    "sync.central_client.CentralClient.push_events",
    "sync.central_client.CentralClient.push_audit",
    "devices.printer.EscPosPrinter.print_receipt",
    "kiosk.printing.ReceiptDesk.print",
    "sync.store.KioskStore.save_token_secret",
    "sync.store.KioskStore.mark_sent",
)
SIDE_EFFECT_CALLS = 2            # entry/exit points for the first two calls of each

# Inside a C call: (function, libc call, what it must touch).  ``central``/``printer`` stand for the ports.
INSIDE = (
    ("devices.token.Pkcs11Token.initialise", "ftruncate", "token.object"),
    ("devices.token.Pkcs11Token.unblock", "ftruncate", ".object"),
    ("devices.token.Pkcs11Session.generate_key_pair", "ftruncate", ".object"),
    ("devices.token.Pkcs11Session.install_certificate", "ftruncate", ".object"),
    ("sync.central_client.CentralClient.enroll", "send", "central"),
    ("sync.central_client.CentralClient.renew", "send", "central"),
    ("sync.central_client.CentralClient.revoke", "send", "central"),
    ("sync.central_client.CentralClient.push_events", "send", "central"),
    ("devices.printer.EscPosPrinter.print_receipt", "send", "printer"),
)

POINT = re.compile(r"^(?P<func>[\w.]+):(?P<where>enter|exit|inside:(?P<call>\w+):(?P<match>[\w.]+))#(?P<n>\d+)$")


@dataclass(frozen=True)
class KillPoint:
    func: str
    where: str            # enter | exit | inside
    n: int
    call: str = ""
    match: str = ""

    @classmethod
    def parse(cls, name: str) -> KillPoint:
        m = POINT.match(name)
        if m is None:
            raise ValueError(f"not a kill point: {name!r}")
        where = "inside" if m["call"] else m["where"]
        return cls(m["func"], where, int(m["n"]), m["call"] or "", m["match"] or "")

    @property
    def name(self) -> str:
        where = f"inside:{self.call}:{self.match}" if self.where == "inside" else self.where
        return f"{self.func}:{where}#{self.n}"

    @property
    def kind(self) -> str:
        if self.func == STEP_BOUNDARY:
            return "step boundary"
        if self.where == "inside":
            return "inside a C call"
        if self.func in SIDE_EFFECTS:
            return "side effect"
        return "step entry"


def resolve(name: str) -> CodeType:
    """The code object of ``package.module.Class.method`` (a context manager's wrapped function)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = inspect.getattr_static(obj, attr)
        obj = getattr(obj, "__func__", obj)
        return inspect.unwrap(obj).__code__
    raise LookupError(name)


def code_name(code: CodeType, module: str) -> str:
    return f"{module}.{code.co_qualname}"


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _set_profile(hook: Callable[[FrameType, str, Any], None]) -> None:
    threading.setprofile(hook)
    sys.setprofile(hook)


def install(name: str, ports: dict[str, int]) -> None:
    """Kill this process at the point ``name`` (see :class:`KillPoint`); ``ports`` maps central/printer."""
    point = KillPoint.parse(name)
    target = resolve(point.func)
    seen = 0
    lock = threading.Lock()

    def hook(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal seen
        if frame.f_code is not target or event not in ("call", "return"):
            return
        if point.where == "inside":
            if event == "call":
                with lock:
                    seen += 1
                    if seen == 1:       # arm the shim for the first call only
                        os.environ.update(TAMGA_SHIM_CALL=point.call, TAMGA_SHIM_AT=str(point.n),
                                          TAMGA_SHIM_MATCH=str(ports.get(point.match, point.match)),
                                          TAMGA_SHIM_LABEL=point.func)
            elif seen == 1:
                os.environ.pop("TAMGA_SHIM_CALL", None)
            return
        if (event == "call") == (point.where == "enter"):
            with lock:
                seen += 1
                if seen == point.n:
                    _kill()

    _set_profile(hook)


def record(out: Path, ports: dict[str, int]) -> Callable[[], None]:
    """Count the calls of every watched function and the shim's matches inside each INSIDE function;
    returns the function that writes ``out`` (JSON), to call at the end of the dry run."""
    watched = set(WATCHED_MODULES)
    calls: Counter[str] = Counter()
    names: dict[CodeType, str | None] = {}
    inside = {resolve(func): (func, call, match) for func, call, match in INSIDE}
    trace = out.with_suffix(".shim")
    os.environ["TAMGA_SHIM_TRACE"] = str(trace)
    depth: Counter[CodeType] = Counter()

    def hook(frame: FrameType, event: str, _arg: Any) -> None:
        if event not in ("call", "return"):
            return
        code = frame.f_code
        if code not in names:
            module = frame.f_globals.get("__name__", "")
            names[code] = code_name(code, module) if module in watched else None
        name = names[code]
        if name is None:
            return
        if event == "call":
            calls[name] += 1
        if code in inside:
            func, call, match = inside[code]
            depth[code] += 1 if event == "call" else -1
            if event == "call" and depth[code] == 1:
                os.environ.update(TAMGA_SHIM_CALL=call, TAMGA_SHIM_AT="0",
                                  TAMGA_SHIM_MATCH=str(ports.get(match, match)),
                                  TAMGA_SHIM_LABEL=f"{func}#{calls[name]}")
            elif event == "return" and depth[code] == 0:
                os.environ.pop("TAMGA_SHIM_CALL", None)

    def write() -> None:
        _set_profile(None)  # type: ignore[arg-type]
        matches: Counter[str] = Counter()
        if trace.exists():
            for line in trace.read_text().splitlines():
                label = line.split(" ", 1)[0]
                matches[label] += 1
        out.write_text(json.dumps({"calls": calls, "inside": matches}, indent=1, sort_keys=True))

    _set_profile(hook)
    return write


def step_methods() -> set[str]:
    """Public methods of the flows that take a session id: what a screen calls (the step entries)."""
    from kiosk.flows import ALL_FLOWS

    found = set()
    for flow in ALL_FLOWS:
        for attr, value in inspect.getmembers(flow, inspect.isfunction):
            module = value.__module__
            params = list(inspect.signature(value).parameters)
            if not attr.startswith("_") and module.startswith(FLOW_MODULE_PREFIXES) and params[1:2] == ["session_id"]:
                found.add(code_name(value.__code__, module))
    return found


def catalogue(dry_run: dict[str, Any]) -> list[str]:
    """Kill points from a dry run's counts (see the module docstring for the rules)."""
    calls: dict[str, int] = dry_run["calls"]
    points: list[KillPoint] = []
    points += [KillPoint(STEP_BOUNDARY, "exit", n) for n in range(1, calls.get(STEP_BOUNDARY, 0) + 1)]
    points += [KillPoint(name, "enter", 1) for name in sorted(step_methods()) if calls.get(name)]
    for name in SIDE_EFFECTS:
        for n in range(1, min(calls.get(name, 0), SIDE_EFFECT_CALLS) + 1):
            points += [KillPoint(name, "enter", n), KillPoint(name, "exit", n)]
    for func, call, match in INSIDE:
        matched = dry_run["inside"].get(f"{func}#1", 0)
        for n in sorted({1, (matched + 1) // 2, matched}) if matched else ():
            points.append(KillPoint(func, "inside", n, call, match))
    return [p.name for p in points]
