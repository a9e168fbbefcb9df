"""The kiosk process the crash harness kills: ``python tests/crash/crash_child.py SPEC.json``.

It starts the kiosk exactly as the app does (``kiosk.shell.app.start`` on the configuration the
simulated stack wrote), installs the kill point named in the spec (or records a dry run), then
acts as the person at the screen: it takes the flow's unfinished session where the store left it
(or begins one if the store has none of this flow) and gives each step what it asks for (the
order's invoice, the ID card's PIN, the eToken PIN again after a restart, the clerk's approval),
letting the engine's own ``resume_step`` continue a step that needs nobody.  When the session is
finished it runs one round of the sync daemon (journal push, queued requests, audit chain) and
prints the outcome as JSON.  ``mode: inspect`` instead counts the token's objects with
python-pkcs11 and prints them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

import kill_points  # noqa: E402  (the harness's own module, beside this file)

MAX_ACTIONS = 40


def log_print_attempts(printer: Any, attempts: Path) -> None:
    """Wrap the printer adapter so that every print attempt is noted (durably) before any byte is sent:
    the harness compares them with what the printer emulator received."""
    from kiosk.i18n import Translator

    original = printer.print_receipt

    def print_receipt(receipt: Any, prepared: object | None = None) -> bytes:
        marker = Translator(receipt.language)("receipt.reprint")
        marked = any(line.text == marker for line in receipt.lines)
        with attempts.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"title": receipt.lines[0].text if receipt.lines else "", "reprint": marked},
                               ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return original(receipt, prepared)

    printer.print_receipt = print_receipt


def sessions_of(kiosk: Any, flow: str) -> list[str]:
    rows = kiosk.store.db.execute("select id from sessions where flow = ? order by created_at", [flow]).fetchall()
    return [r[0] for r in rows]


class Person:
    """What the applicant and the clerk give each step (the spec holds the invoice, PINs, serial)."""

    def __init__(self, kiosk: Any, spec: dict[str, Any]) -> None:
        self.kiosk = kiosk
        self.spec = spec

    def pin(self, key: str = "token_pin") -> Any:
        from kiosk.pin import Pin

        return Pin(self.spec[key])

    def act(self, flow: Any, sid: str, step: str) -> Any:
        """One action at ``step``; returns the StepResult."""
        from kiosk.errors import CentralUnavailable

        kind = flow.kind.value
        if step == "consent":
            return flow.consent(sid, accepted=True)
        if step == "identity":
            flow.read_card(sid)
            return flow.verify_card_pin(sid, self.pin("card_pin"))
        if kind == "issuance" and step == "enrollment" and self.spec.get("offline"):
            # The office's network is down at enrollment: refused connections, then the pending receipt.
            central = self.kiosk.central
            reachable, central.base_url = central.base_url, self.spec["unreachable_url"]
            try:
                flow.enroll(sid)
            except CentralUnavailable:
                pass
            finally:
                central.base_url = reachable
            return flow.defer(sid)
        resume = flow.resume_step(sid)
        if resume is not None:
            return resume()
        handlers = {
            ("issuance", "order"): lambda: flow.find_order(sid, self.spec["invoice"]),
            ("issuance", "approval"): lambda: flow.approve(sid, "clerk-crash", flow.current(sid).view.documents,
                                                           by_proxy=False),
            ("issuance", "token"): lambda: flow.prepare_token(sid, self.pin(), self.pin()),
            ("issuance", "keygen"): lambda: flow.generate_key(sid, self.pin()),
            ("issuance", "install"): lambda: flow.install(sid, self.pin()),
            ("renewal", "token"): lambda: flow.read_token(sid),
            ("renewal", "offer"): lambda: flow.confirm(sid, details_unchanged=True, pin=self.pin()),
            ("renewal", "keygen"): lambda: flow.generate_key(sid, self.pin()),
            ("renewal", "install"): lambda: flow.install(sid, self.pin()),
            ("revocation", "choose"): lambda: flow.choose(sid, self.spec["certificate_serial"], "key_compromise"),
            ("revocation", "approval"): lambda: flow.confirm(sid, "clerk-crash"),
            ("unblock", "token"): lambda: flow.read_token(sid),
            ("unblock", "new_pin"): lambda: flow.set_pin(sid, self.pin("new_token_pin"), self.pin("new_token_pin")),
            ("check", "token"): lambda: flow.read_token(sid),
            ("check", "pin"): lambda: flow.check(sid, self.pin()),
        }
        return handlers[(kind, step)]()

    def visit(self) -> dict[str, Any]:
        """Drive the flow's session to its end; the outcome: final step, last error, sync round."""
        from kiosk.engine import FINAL_STEPS, FlowKind
        from kiosk.errors import KioskError
        from kiosk.i18n import Translator

        name = self.spec["flow"]
        flow = self.kiosk.engine.flow(FlowKind(name))
        known = sessions_of(self.kiosk, name)
        sid = known[-1] if known else flow.begin(self.spec.get("language", "mn")).session_id
        errors: list[str] = []
        messages: list[str] = []          # what the person read of each outcome, in their language
        for _ in range(MAX_ACTIONS):
            step = self.kiosk.store.load(sid).step
            if step in FINAL_STEPS:
                break
            try:
                result = self.act(flow, sid, step)
            except KioskError as err:
                message = Translator(self.spec.get("language", "mn")).error(err)
                return {"session": sid, "step": step, "stopped": err.key, "message": message,
                        "detail": {k: str(v) for k, v in err.data.items()},
                        "recoverable": err.recoverable, "errors": errors}
            if result.error is not None:
                errors.append(result.error.key)
                messages.append(Translator(self.spec.get("language", "mn")).error(result.error))
        state = self.kiosk.store.load(sid)
        return {"session": sid, "step": state.step, "errors": errors, "messages": messages,
                "certificate_serial": (state.data.get("certificate") or {}).get("serial"),
                "sessions": len(sessions_of(self.kiosk, name))}


def sync_round(kiosk: Any) -> dict[str, Any]:
    from sync.daemon import SyncDaemon

    report = SyncDaemon(kiosk.store, kiosk.central, kiosk.config.kiosk.id, kiosk.engine, feeds=kiosk.central).once()
    return {"pushed": report.pushed, "audit_sent": report.audit_sent, "queued_sent": report.queued_sent,
            "error": report.error.key if report.error else None}


def inspect_token(spec: dict[str, Any]) -> dict[str, Any]:
    """The token's objects, counted with python-pkcs11 after login (the user PIN the spec names)."""
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    lib = pkcs11.lib(spec["module"])
    tokens = [t for t in lib.get_tokens() if t.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED]
    found: dict[str, Any] = {"tokens": len(tokens)}
    for token in tokens:
        with token.open(user_pin=spec["pin"]) as session:
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE):
                objs = list(session.get_objects({Attribute.CLASS: cls}))
                found[cls.name] = [{"id": bytes(o[Attribute.ID]).hex(),
                                    "value": bytes(o[Attribute.VALUE]).hex() if cls is ObjectClass.CERTIFICATE else ""}
                                   for o in objs]
    return found


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    if spec.get("mode") == "inspect":
        print(json.dumps(inspect_token(spec)))
        return 0
    ports = spec["ports"]
    finish = kill_points.record(Path(spec["record"]), ports) if spec.get("record") else None
    if spec.get("kill"):
        kill_points.install(spec["kill"], ports)

    from devices.sim.faults import PullableToken
    from devices.token import Pkcs11Token
    from kiosk.shell import app, config

    cfg = config.load(Path(spec["config"]))
    token = PullableToken(Pkcs11Token(str(cfg.token.module), rescan=cfg.token.rescan))
    blocked = Path(spec["pin_blocked_marker"]) if spec.get("pin_blocked_marker") else None
    token.lock_pin = blocked is not None and blocked.exists()
    kiosk = app.start(cfg, token=token)
    log_print_attempts(kiosk.printer, Path(spec["print_attempts"]))
    try:
        outcome = Person(kiosk, spec).visit()
        if blocked is not None and not token.lock_pin:
            blocked.unlink(missing_ok=True)        # the token's PIN was unblocked (SoftHSM cannot keep it blocked)
        outcome["sync"] = sync_round(kiosk)
    finally:
        kiosk.close()
    if finish is not None:
        finish()
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
