"""Drive the real app offscreen on the simulated stack with synthetic touches; screenshot every screen.

``python -m kiosk.screens.drive --out demo-out/screens --size 800x480`` starts the simulated devices and the
local central (``devices.sim.stack``, as ``kiosk.shell.demo`` does), opens the app in an offscreen window (one
Window per process: one size per run) and goes through a full issuance and each other flow (check, unblock,
revocation; renewal in a run of its own) and the error screens (central down, an unpaid order, a wrong ID PIN,
a wrong eToken PIN at the holder agreement, the printer out of paper), tapping buttons and digits as a person
would and typing the invoice as a USB scanner does.  Every screen is saved as
``<out>/<size>/NN-<flow>-<screen>.png`` and inspected in all five languages: ``<out>/<size>/report-<first
visit>.json`` lists any label whose text is wider or taller than the label (clipped), any text that is a raw
message key, and the screen transitions' durations.  Exit 1 when a flow did not reach its end or a problem was
found.  ``--window`` instead opens the app in a desktop window on the same simulated stack, for a person to
try.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kiosk.screens.launch import SIZES, configure_kivy, parse_size, ui_options

#: The visits of one run, in order (errors last: the central stays down).  Renewal needs a stack of its own
#: (its blank token becomes the renewing holder's): run it alone, ``--flows renewal``.
FLOWS = ("issuance", "check", "unblock", "revocation", "idle", "errors")
ALL_FLOWS = (*FLOWS, "renewal")
RAW_KEY = re.compile(r"\b(screens|error|step|flow|fee|pin|doc|check|renewal|revocation|unblock|receipt|order|done|"
                     r"device|refusal|consent|language|clerk|agreement|sync)\.[a-z_]+(\.[a-z_]+)*\b")
WRONG_PIN = "111111"
UNPAID_INVOICE = "147314048627"      # the central's demo order with nothing paid
CLERK_ID, CLERK_NAME, CLERK_PIN = "clerk-demo", "Д.Сараа", "204817"     # the office's clerk, added at start
REJECTED_FOR = "documents_missing"
ROW_TOUCH_S = 0.35        # Kivy's ScrollView hands a tap's touch to its content 0.2 s later


class DriveFailed(RuntimeError):
    pass


class Driver:
    """Synthetic touches and typing on the running app; screenshots and inspection of every screen."""

    def __init__(self, app: Any, out: Path, languages: tuple[str, ...]) -> None:
        from kivy.base import EventLoop
        from kivy.core.window import Window

        self.app, self.out, self.languages = app, out, languages
        self.window, self.loop = Window, EventLoop
        self.flow = ""
        self.shots: list[dict[str, Any]] = []
        self.problems: list[str] = []

    # -- time ---------------------------------------------------------------------------------------------
    def frames(self, n: int = 2) -> None:
        for _ in range(n):
            self.loop.idle()

    def wait(self, *names: str, timeout: float = 60.0, idle: bool = True) -> str:
        """Run frames until one of ``names`` is the current screen (and the worker is idle, if ``idle``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.loop.idle()
            current = self.app.manager.current
            if current in names and not (idle and self.app.worker.busy):
                self.frames(2)
                if self.app.manager.current == current:
                    return str(current)
            time.sleep(0.005)
        raise DriveFailed(f"{self.flow}: waited for {names}, the screen is {self.app.manager.current!r}: "
                          f"{self.texts()[:8]}")

    # -- what is on the screen ---------------------------------------------------------------------------
    def widgets(self) -> Iterator[Any]:
        stack = [self.app.manager.current_screen, self.app.status]
        while stack:
            widget = stack.pop()
            yield widget
            stack.extend(widget.children)

    def texts(self) -> list[str]:
        from kivy.uix.label import Label

        return [w.text for w in self.widgets() if isinstance(w, Label) and w.text]

    def button(self, text: str) -> Any:
        from kivy.uix.button import Button

        found = [w for w in self.widgets() if isinstance(w, Button) and w.text == text]
        if not found:
            raise DriveFailed(f"{self.flow}: no button {text!r} on {self.app.manager.current}: {self.texts()[:12]}")
        return found[0]

    # -- touches and typing --------------------------------------------------------------------------------
    def tap(self, widget: Any) -> None:
        from kivy.tests.common import UnitTestTouch
        from kivy.uix.scrollview import ScrollView

        view = next((p for p in self._parents(widget) if isinstance(p, ScrollView)), None)
        if view is not None:
            view.scroll_to(widget, padding=0, animate=False)
            self.frames(2)
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.frames(1)
        touch.touch_up()
        self.frames(3)

    def press(self, key: str, **data: Any) -> None:
        self.tap(self.button(self.app.t(key, **data)))

    def digits(self, digits: str) -> None:
        for digit in digits:
            self.tap(self.button(digit))

    def scan(self, text: str) -> None:
        """What a USB QR/barcode scanner does: keystrokes into the focused field, then Enter."""
        self.frames(2)
        for char in text:
            self.window.dispatch("on_textinput", char)
        self.window.dispatch("on_key_down", 13, 40, "\r", [])
        self.window.dispatch("on_key_up", 13, 40)
        self.frames(2)

    def settle(self, seconds: float) -> None:
        """Run frames for ``seconds`` (a tap inside a ScrollView lands this much later)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.loop.idle()
            time.sleep(0.005)

    def another_desk(self, call: Callable[[], Any]) -> None:
        """What a clerk does from another desk's screens (not this touchscreen's), on the kiosk's worker."""
        self.app.worker.submit(call, lambda _r: None, self.app.show_error, label="another_desk")

    def clerk_signs_in(self, shoot: bool = False) -> None:
        """From the applicant's approval screen: the clerk opens their screens, types their id (a USB keyboard
        types as a scanner does) and their PIN on the pad; their review of the session comes next."""
        self.press("screens.approval.clerk")
        self.wait("clerk")
        if shoot:
            self.shot("sign-in")
        self.scan(CLERK_ID)
        self.wait("clerk")
        if shoot:
            self.shot("pin")
        self.digits(CLERK_PIN)
        self.press("screens.pad.ok")
        self.wait("clerk_review", "clerk_revocation")

    def tick(self, text: str) -> None:
        """Touch the clerk's checklist row that reads ``text``."""
        from kiosk.screens.clerk import TickRow

        rows = [w for w in self.widgets() if isinstance(w, TickRow) and w.label.text == text]
        if not rows:
            raise DriveFailed(f"{self.flow}: no checklist row {text!r}: {self.texts()[:12]}")
        self.tap(rows[0])
        self.settle(ROW_TOUCH_S)
        if not rows[0].ticked:
            raise DriveFailed(f"{self.flow}: the row {text!r} did not tick")

    # -- screenshots and inspection -------------------------------------------------------------------------
    def shot(self, label: str = "", sweep: bool = True) -> None:
        """Save the screen; with ``sweep``, also render it again in every other language and inspect it
        (it is rebuilt from its parameters, so what was typed into it is gone: shoot before typing)."""
        name = self.app.manager.current
        self.frames(3)
        stem = f"{len(self.shots) + 1:02d}-{self.flow}-{name}{'-' + label if label else ''}"
        saved = Path(self.window.screenshot(name=str(self.out / f"{stem}.png")))
        target = self.out / f"{stem}.png"
        saved.replace(target)
        self.shots.append({"file": target.name, "screen": name, "flow": self.flow, "language": self.app.language,
                           "texts": self.texts()})
        self.inspect(stem, self.app.language)
        screen = self.app.manager.current_screen
        if sweep and not screen.busy and self.languages:          # the same screen in every language
            params, shown = dict(screen.params), self.app.language
            for language in self.languages:
                if language != shown:
                    self.app.language = language
                    screen.show_with(dict(params))
                    self.laid_out()
                    self.inspect(stem, language)
            self.app.language = shown
            screen.show_with(params)
            self.frames(3)

    def laid_out(self, most: int = 60) -> None:
        """Run frames until the screen's layout stops changing (an on-screen keyboard lays its keys out
        some frames after it got its size)."""
        def geometry() -> list[tuple[float, ...]]:
            return [(*w.pos, *w.size) for w in self.widgets()]

        self.frames(3)
        before = geometry()
        for _ in range(most):
            self.frames(1)
            now = geometry()
            if now == before:
                return
            before = now

    def inspect(self, stem: str, language: str) -> None:
        from kivy.uix.button import Button
        from kivy.uix.label import Label
        from kivy.uix.scrollview import ScrollView
        from kivy.uix.vkeyboard import VKeyboard

        width, height = self.window.size
        for widget in self.widgets():
            if not isinstance(widget, Label) or not widget.text:
                continue
            key = any(isinstance(p, VKeyboard) for p in self._parents(widget))   # a key the keyboard drew
            widget.texture_update()
            tw, th = widget.texture_size
            where = f"{stem} [{language}] {widget.text[:40]!r}"
            if tw > widget.width + 2 or th > widget.height + 2:
                self.problems.append(f"clipped: {where} text {tw:.0f}x{th:.0f} "
                                     f"in {widget.width:.0f}x{widget.height:.0f}")
            scrolled = any(isinstance(p, ScrollView) for p in self._parents(widget))
            x, y = widget.to_window(widget.x, widget.y)
            if not scrolled and (x < -1 or y < -1 or x + widget.width > width + 1 or y + widget.height > height + 1):
                self.problems.append(f"off screen: {where} at {x:.0f},{y:.0f}")
            if (isinstance(widget, Button) or key) and min(widget.size) < self.app.theme.touch * 0.75:
                self.problems.append(f"too small to touch: {where} {widget.width:.0f}x{widget.height:.0f}")
            if RAW_KEY.search(widget.text):
                self.problems.append(f"untranslated: {where}")

    @staticmethod
    def _parents(widget: Any) -> Iterator[Any]:
        parent = widget.parent
        while parent is not None and parent is not parent.parent:
            yield parent
            parent = parent.parent


# -- the visits ---------------------------------------------------------------------------------------------
def issuance(d: Driver, sim: Any) -> None:
    from kiosk.i18n import Translator
    from kiosk.pin import Pin

    app, stack, token = d.app, sim.stack, sim.token
    d.wait("welcome")
    d.shot()
    d.press("flow.issuance")
    d.wait("consent")
    d.shot()
    d.press("screens.consent.accept")
    d.wait("order")
    d.shot()
    d.scan(sim.invoice)
    d.wait("order_summary")
    d.shot()
    stack.remove_card()
    d.press("screens.button.continue")
    d.wait("insert_card", idle=False)
    d.shot()
    stack.insert_card(sim.holder)
    d.wait("card_pin")
    d.digits(WRONG_PIN)
    d.press("screens.pad.ok")
    d.wait("card_pin")
    d.shot("wrong")
    token.pull()                    # no early key generation this time: the application is rejected
    d.digits(sim.card_pin)
    d.press("screens.pad.ok")
    d.wait("approval", idle=False)
    d.shot()
    desk, sid = app.kiosk.clerk_desk, app.session.session_id
    d.another_desk(lambda: desk.reject(desk.sign_in(CLERK_ID, Pin(CLERK_PIN)), sid, REJECTED_FOR))
    d.wait("error", timeout=20)      # the approval screen asks the session again and says why
    d.shot("rejected")
    d.press("screens.button.start_over")
    d.wait("welcome")
    d.press("flow.issuance")         # back with what was missing: the same order, a new visit
    d.wait("consent")
    d.press("screens.consent.accept")
    d.wait("order")
    d.scan(sim.invoice)
    d.wait("order_summary")
    d.press("screens.button.continue")
    d.wait("card_pin")
    d.digits(sim.card_pin)
    d.press("screens.pad.ok")
    d.wait("approval", idle=False)
    d.clerk_signs_in(shoot=True)     # the clerk at this touchscreen: sign-in, checklist, approve
    d.shot()
    ct = Translator(app.screen("clerk").clerk_seat.language)
    for document in app.session.view.documents:
        d.tick(ct(f"doc.{document}"))
    d.shot("ticked", sweep=False)
    d.tap(d.button(ct("clerk.review.approve")))
    d.wait("insert_token", idle=False)
    d.shot()
    token.insert()
    d.wait("choose_pin")
    d.shot()
    d.digits(sim.token_pin[:3])
    d.shot("typing", sweep=False)       # the rules met so far turn green
    d.digits(sim.token_pin[3:])
    d.press("screens.pad.ok")
    d.wait("choose_pin")
    d.shot("again")
    d.digits(sim.token_pin)
    d.press("screens.pad.ok")
    if d.wait("progress", "agreement", idle=False) == "progress":
        d.shot()
    d.wait("agreement")                      # the holder agreement, filled in, as it is signed
    d.shot()
    d.press("screens.agreement.sign")
    d.wait("agreement")
    d.shot("pin")
    d.digits(WRONG_PIN)                      # a wrong eToken PIN keeps the step
    d.press("screens.pad.ok")
    d.wait("agreement")
    d.shot("wrong")
    d.digits(sim.token_pin)
    sim.stack.printer.paper = "out"          # the receipt cannot be printed: the visit still ends, reprint later
    d.press("screens.pad.ok")
    d.wait("done")
    d.shot("paper-out")
    sim.stack.printer.paper = "ok"
    d.press("screens.done.reprint")
    d.wait("done")
    d.shot("reprinted")
    d.press("screens.button.finish")
    d.wait("welcome")


def check(d: Driver, sim: Any) -> None:
    d.press("flow.check")
    d.wait("token_pin")
    d.shot()
    d.digits(sim.token_pin)
    d.press("screens.pad.ok")
    d.wait("check_result")
    d.shot()
    d.press("screens.button.finish")
    d.wait("welcome")


def unblock(d: Driver, sim: Any) -> None:
    sim.token.lock_pin = True       # SoftHSM cannot lock a PIN: the fault-injecting adapter does, as a real token
    d.press("flow.unblock")
    d.wait("consent")
    d.press("screens.consent.accept")
    d.wait("card_pin")
    d.digits(sim.card_pin)
    d.press("screens.pad.ok")
    d.wait("choose_pin")
    d.shot()
    for _ in range(2):
        d.digits(sim.new_token_pin)
        d.press("screens.pad.ok")
        d.wait("choose_pin", "done")
    d.wait("done")
    d.shot()
    sim.token_pin = sim.new_token_pin
    d.press("screens.button.finish")
    d.wait("welcome")


def revocation(d: Driver, sim: Any) -> None:
    from kiosk.i18n import Translator

    app = d.app
    d.press("flow.revocation")
    d.wait("consent")
    d.press("screens.consent.accept")
    d.wait("card_pin")
    d.shot()
    d.digits(sim.card_pin)
    d.press("screens.pad.ok")
    d.wait("revocation_choose")
    d.shot()
    from kivy.uix.button import Button

    certificate = [w for w in d.widgets() if isinstance(w, Button) and ("№" in w.text or "No." in w.text)]
    if not certificate:
        raise DriveFailed("revocation: no certificate listed")
    d.tap(certificate[0])
    d.wait("revocation_choose")
    d.shot("reason")
    d.press("revocation.reason.key_compromise")
    d.wait("approval", idle=False)
    d.shot()
    d.clerk_signs_in()               # the clerk at this touchscreen confirms the revocation
    d.wait("clerk_revocation")
    d.shot()
    d.tap(d.button(Translator(app.screen("clerk").clerk_seat.language)("clerk.revocation.confirm")))
    d.wait("done")
    d.shot()
    d.press("screens.button.finish")
    d.wait("welcome")


def renewal(d: Driver, sim: Any) -> None:
    from devices.sim.stack import ERDENE
    from kiosk.i18n import Translator
    from kiosk.shell.demo import RENEWAL_INVOICE, TOKEN_PIN
    from kiosk.shell.demo import issue as issue_headless

    stack = sim.stack             # a fresh stack: its one blank token becomes Эрдэнэ's, then is renewed
    stack.insert_card(ERDENE)
    with contextlib.redirect_stdout(io.StringIO()):      # a pilot order valid 20 days, issued headless first
        issue_headless(d.app.kiosk, Translator("mn"), "mn", RENEWAL_INVOICE, sim.card_pin)
    sim.token_pin = TOKEN_PIN
    d.press("flow.renewal")
    d.wait("renewal_notice")
    d.shot()
    d.press("screens.renewal.confirm")
    d.wait("token_pin")
    d.digits(sim.token_pin)
    d.press("screens.pad.ok")
    d.wait("progress", "done", idle=False)
    d.wait("done")
    d.shot()
    d.press("screens.button.finish")
    d.wait("welcome")


def idle(d: Driver, sim: Any) -> None:
    """Untouched past the idle timeout: back to welcome, the holder's data gone from every screen, the
    session still in the store where the clerk can resume it."""
    import dataclasses

    app = d.app
    options = app.options
    app.options = dataclasses.replace(options, idle_timeout_s=6.0)
    try:
        d.press("flow.revocation")
        d.wait("consent")
        d.press("screens.consent.accept")
        d.wait("card_pin")                # shows the card holder's name
        holder = app.session.view.card.name
        sid = app.session.session_id
        d.wait("welcome", timeout=20)
    finally:
        app.options = options
    kept = [w.text for screen in app.manager.screens for w in screen.walk() if holder in getattr(w, "text", "")]
    if kept or app.session is not None:
        raise DriveFailed(f"idle: personal data left in memory: {kept}")
    if app.kiosk.engine.current(sid).step.value != "identity":
        raise DriveFailed("idle: the session did not stay where it was")


def errors(d: Driver, sim: Any) -> None:
    """The spine's error paths as screens: an unpaid order, then the central down (the last visit: it stays down):
    the revocation's certificate list cannot be had, an order lookup is answered from the kiosk's copy of the
    office's orders with the moment of its last sync."""
    d.press("flow.issuance")
    d.wait("consent")
    d.press("screens.consent.accept")
    d.wait("order")
    d.scan(UNPAID_INVOICE)
    d.wait("error")
    d.shot("unpaid")
    d.press("screens.button.start_over")
    d.wait("welcome")
    central = sim.stack.central       # down: the holder's certificates cannot be listed for a revocation
    d.press("flow.revocation")
    d.wait("consent")
    d.press("screens.consent.accept")
    d.wait("card_pin")
    central.stop()
    d.digits(sim.card_pin)
    d.press("screens.pad.ok")
    d.wait("error")
    d.shot("central-down")
    d.press("screens.button.start_over")
    d.wait("welcome")
    d.press("flow.issuance")          # the order found in the kiosk's copy of the office's orders
    d.wait("consent")
    d.press("screens.consent.accept")
    d.wait("order")
    d.scan(sim.invoice)
    d.wait("order_summary")
    d.shot("offline")


VISITS: dict[str, Callable[[Driver, Any], None]] = {"issuance": issuance, "check": check, "unblock": unblock,
                                                    "revocation": revocation, "renewal": renewal, "idle": idle,
                                                    "errors": errors}


class Simulation:
    """The simulated stack and the kiosk over it, with what the scripted applicant knows."""

    def __init__(self, workdir: Path, holder_agreement: bool = False) -> None:
        from devices.sim.faults import PullableToken
        from devices.sim.stack import ARIUN, CARD_PIN, DEMO_INVOICE, SimulatedStack, apply_env
        from devices.token import Pkcs11Token
        from kiosk.shell.demo import NEW_TOKEN_PIN, TOKEN_PIN

        self.stack = SimulatedStack(workdir, holder_agreement=holder_agreement)   # install → agreement → receipt
        self.stack.start()
        apply_env(self.stack)
        from kiosk.shell import app, config

        self.config = config.load(self.stack.config_path)
        pkcs11 = Pkcs11Token(str(self.config.token.module), rescan=self.config.token.rescan)
        self.token = PullableToken(pkcs11)
        self.kiosk = app.start(self.config, token=self.token)
        from kiosk.clerks import ClerkSignIn
        from kiosk.pin import Pin

        ClerkSignIn(self.kiosk.store.clerks).add(CLERK_ID, CLERK_NAME, Pin(CLERK_PIN))
        self.holder, self.invoice, self.card_pin = ARIUN, DEMO_INVOICE, CARD_PIN
        self.token_pin, self.new_token_pin = TOKEN_PIN, NEW_TOKEN_PIN
        self.stack.insert_card(ARIUN)

    def close(self) -> None:
        self.kiosk.close()
        self.stack.stop()


def drive(out: Path, size: str, flows: tuple[str, ...], languages: tuple[str, ...]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tamga-drive-"))
    configure_kivy(parse_size(size), fullscreen=False, home=workdir / "kivy", offscreen=True)
    from kiosk.screens.app import KioskApp

    out.mkdir(parents=True, exist_ok=True)
    sim = Simulation(workdir / "sim", holder_agreement="issuance" in flows)
    started = time.monotonic()
    report: dict[str, Any] = {"size": size, "flows": {}, "problems": []}
    try:
        app = KioskApp(sim.kiosk, ui_options(sim.config))
        app._run_prepare()
        d = Driver(app, out, languages)
        for flow in flows:
            d.flow = flow
            begun = time.monotonic()
            try:
                VISITS[flow](d, sim)
                report["flows"][flow] = {"ok": True, "s": round(time.monotonic() - begun, 2)}
            except Exception as err:  # one visit failing is reported; the others still run
                report["flows"][flow] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
                app.go_home()
                d.frames(3)
        report.update(shots=d.shots, problems=d.problems, transitions_ms=app.transitions_ms,
                      total_s=round(time.monotonic() - started, 2))
        app.stop()
    finally:
        sim.close()
        shutil.rmtree(workdir, ignore_errors=True)
    (out / f"report-{flows[0]}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return report


def window(size: str) -> int:
    """The app in a desktop window on the simulated stack, for a person to try (``make demo`` with a display)."""
    workdir = Path(tempfile.mkdtemp(prefix="tamga-window-"))
    configure_kivy(parse_size(size), fullscreen=False, home=workdir / "kivy")
    from kiosk.screens.app import KioskApp

    sim = Simulation(workdir / "sim", holder_agreement=True)
    print(f"simulated devices: ID card PIN {sim.card_pin}, invoice {sim.invoice}; close the window to stop")
    try:
        KioskApp(sim.kiosk, ui_options(sim.config)).run()
    finally:
        sim.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk.screens.drive", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out/screens"))
    parser.add_argument("--size", choices=SIZES, default="800x480")
    parser.add_argument("--flows", default=",".join(FLOWS), help=f"comma-separated, of {', '.join(ALL_FLOWS)}")
    parser.add_argument("--languages", default="mn,kk,ky,ru,en", help="inspect every screen in these ('' none)")
    parser.add_argument("--window", action="store_true", help="open the app in a window instead (needs a display)")
    args = parser.parse_args(argv)
    if args.window:
        return window(args.size)
    flows = tuple(f for f in args.flows.split(",") if f)
    report = drive(args.out / args.size, args.size, flows, tuple(x for x in args.languages.split(",") if x))
    for flow, outcome in report["flows"].items():
        print(f"{flow:11} {'ok' if outcome['ok'] else 'FAILED ' + outcome['error']}")
    for problem in report["problems"]:
        print(f"problem: {problem}")
    print(f"{len(report['shots'])} screenshots in {args.out / args.size}/ ({report['total_s']} s)")
    return 0 if all(o["ok"] for o in report["flows"].values()) and not report["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
