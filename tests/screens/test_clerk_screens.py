"""The clerk's screens driven offscreen with synthetic touches, in a subprocess (one Kivy Window per process).

The driver (this file run as a script) starts the real app over the flows on in-memory devices and
a real kiosk store, signs a Kazakh-reading clerk in with a wrong PIN, then into a lockout (both said in
words), then, after the lockout, approves one application with its checklist, rejects another with a
reason its Russian-reading applicant reads in Russian, reprints a receipt, cancels a session from the
day's list, is refused a cancel with the reason, resumes a stuck session, is sent back to sign in once
the sign-in expired and confirms a revocation.  It prints what each screen showed as JSON (with any
clipped label); the test checks it.  Screenshots at 800×480 are kept in the test's directory; with the
environment the test sets, ``python tests/screens/test_clerk_screens.py DIR 1024x600`` drives the other size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kiosk.clerk_desk import REJECT_REASONS
from kiosk.errors import ApplicationRejected
from kiosk.i18n import Translator

ROOT = Path(__file__).resolve().parents[2]
CLERK, CLERK_PIN, WRONG = "clerk-7", "204817", "999999"
SCROLL_TOUCH_S = 0.3     # Kivy's ScrollView passes a tap's touch-up to its content 0.2 s later


def test_the_clerk_signs_in_approves_rejects_cancels_confirms_and_is_signed_out(tmp_path: Path) -> None:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1", "KIVY_HOME": str(tmp_path),
           "KIVY_NO_FILELOG": "1", "KIVY_LOG_MODE": "PYTHON", "MESA_SHADER_CACHE_DISABLE": "true",
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=240, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    seen: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["sign_in"]["screen"] == "clerk"
    assert {"Кіру", "Қызметкер нөмірі"} <= set(seen["sign_in"]["texts"])      # "sign in", the field's hint
    wrong = seen["wrong_pin"]
    assert wrong["screen"] == "clerk"
    assert "Қызметкер нөмірі немесе PIN-код қате. Қайталап көріңіз." in wrong["texts"]
    assert not any(WRONG in text or CLERK_PIN in text for text in wrong["texts"])      # the PIN is never drawn
    locked = seen["locked_out"]
    assert any(t.startswith("PIN-код тым көп рет қате енгізілді. Кіру ") and "бұғатталды" in t
               for t in locked["texts"]), locked["texts"]
    assert not any("{" in t or "T03:" in t for t in locked["texts"])                    # a moment in words, no ISO

    review = seen["review"]
    assert review["screen"] == "clerk_review"
    assert {"Шарт 2 дана (қолы мен мөрі бар)", "Мақұлдау", "Бас тарту"} <= set(review["texts"])
    assert seen["approved"]["step"] == "token" and seen["approved"]["clerk_id"] == CLERK
    assert not seen["approved"]["screen"].startswith("clerk")                    # handed back to the applicant

    kk, ru = Translator("kk"), Translator("ru")
    assert seen["reject_reasons"]["screen"] == "clerk_reject"
    assert {kk(f"refusal.{reason}") for reason in REJECT_REASONS} <= set(seen["reject_reasons"]["texts"])
    rejected = seen["rejected"]
    assert rejected["step"] == "cancelled" and rejected["screen"] == "error"
    assert ru.error(ApplicationRejected(reason="holder_not_present")) in rejected["texts"]   # the applicant's words

    desk = seen["desk"]
    assert desk["screen"] == "clerk_desk" and "Бүгінгі сеанстар — Д.Сарнай" in desk["texts"]
    assert any(t.startswith("Сіздің тексеруіңізді күтуде") for t in desk["texts"]), desk["texts"]
    assert kk("clerk.status.refused_by_central") in desk["texts"], desk["texts"]
    assert " ".join((kk("clerk.refused.request", invoice="147314016754", reason_text=kk("refusal.cancelled")),
                     kk("clerk.refused.key_waiting", token_serial="TK0001"))) in desk["texts"], desk["texts"]
    assert "Сеанс болдырылмады." in seen["cancelled"]["texts"] and seen["cancelled"]["step"] == "cancelled"
    refused = seen["cancel_refused"]
    assert refused["step"] == "install"
    assert any("болдырмау мүмкін емес" in t and "тіркеу куәлігі шығарылды" in t for t in refused["texts"]), \
        refused["texts"]
    assert seen["revocation"]["screen"] == "clerk_revocation"
    assert seen["revocation_confirmed"]["step"] in ("receipt", "done")
    assert seen["revocation_confirmed"]["clerk_id"] == CLERK
    assert seen["reprinted"]["printed"] == 1 and "Түбіртек қайта басылды." in seen["reprinted"]["texts"]
    assert seen["resumed"]["step"] == "receipt"
    assert f"Сеанс жалғасты: {kk('step.receipt')}." in seen["resumed"]["texts"]
    looks = {name: look for name, look in seen.items() if isinstance(look, dict) and "clipped" in look}
    assert len(looks) >= 10 and {name: look["clipped"] for name, look in looks.items() if look["clipped"]} == {}
    assert seen["expired"]["screen"] == "clerk"
    assert any(t.startswith("Жүйеге кіру мерзіміңіз ") for t in seen["expired"]["texts"]), seen["expired"]["texts"]
    assert {"clerk.signed_in", "clerk.pin_refused", "clerk.locked_out", "clerk.signed_out", "clerk.cancelled",
            "clerk.cancel_refused"} <= set(seen["audit"])
    assert seen["idle"] == {"screen": "welcome", "signed_in": False}             # the idle timeout signs out
    assert seen["audit"].count("clerk.signed_out") >= 5 and not seen["pin_in_audit"]     # incl. the expiry
    assert {"sign_in.png", "wrong_pin.png", "locked_out.png", "review.png", "desk.png", "revocation.png"} <= \
        {p.name.replace("0001", "") for p in (tmp_path / "screens").iterdir()}


# --- the driver, in its own process ---------------------------------------------------------------------
def drive(out: Path, size: str = "800x480") -> dict[str, Any]:
    from kivy.config import Config

    width, height = size.split("x")
    Config.set("graphics", "width", width)
    Config.set("graphics", "height", height)
    Config.set("graphics", "maxfps", "0")        # frames as fast as they come: the test waits for nothing else
    from kivy.base import EventLoop
    from kivy.core.window import Window
    from kivy.tests.common import UnitTestTouch
    from kivy.uix.behaviors import ButtonBehavior
    from kivy.uix.button import Button
    from kivy.uix.label import Label
    from kivy.uix.scrollview import ScrollView
    from kivy.uix.textinput import TextInput

    from kiosk.clerk_desk import ClerkDesk
    from kiosk.clerks import ClerkSignIn, ScryptCost
    from kiosk.flows.issuance import IssuanceStep
    from kiosk.order import OrderStatus
    from kiosk.pin import Pin
    from kiosk.screens.app import KioskApp, UiOptions
    from sync.store import KioskStore
    from tests.fakes import CARD_PIN, FakeIdCard
    from tests.unit.conftest import Rig

    class PolledCard(FakeIdCard):
        def wait_for_card(self, timeout: float) -> None:
            return None

    store = KioskStore.open(out / "data")
    rig = Rig(store=store, idcard=PolledCard())                     # type: ignore[arg-type]
    rig.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    audit = store.audit
    sign_in = ClerkSignIn(store.clerks, cost=ScryptCost(n=2 ** 10, r=8, p=1), max_failures=2,   # 5 in unit tests
                          audit=lambda kind, fields: audit.append(kind, fields))
    sign_in.add(CLERK, "Д.Сарнай", Pin(CLERK_PIN))
    rig.clerk_desk = ClerkDesk(rig.engine, sign_in, store,      # type: ignore[attr-defined]
                               lambda kind, fields, sid: audit.append(kind, fields, sid))
    f = rig.issuance

    def at_approval(language: str) -> Any:
        sid = f.begin(language).session_id
        f.consent(sid, True)
        f.find_order(sid, "147314016754")
        f.read_card(sid)
        r = f.verify_card_pin(sid, Pin(CARD_PIN))
        assert r.step is IssuanceStep.APPROVAL
        return r

    app = KioskApp(rig, UiOptions(language="mn", status_interval_s=3600))
    app._run_prepare()
    shots = out / "screens"
    shots.mkdir()
    seen: dict[str, Any] = {}

    def frames(n: int = 3) -> None:
        for _ in range(n):
            EventLoop.idle()

    def settle() -> None:
        frames(2)
        while app.worker.busy:
            frames(1)
        frames(3)

    def texts() -> list[str]:
        """Labels' texts and text fields' hints."""
        return [w.text if isinstance(w, Label) else w.hint_text for w in app.manager.current_screen.walk()
                if (isinstance(w, Label) and w.text) or (isinstance(w, TextInput) and w.hint_text)]

    def look(name: str, shot: bool = True) -> dict[str, Any]:
        settle()
        if shot:
            Window.screenshot(name=str(shots / f"{name}.png"))
        seen[name] = {"screen": app.manager.current, "texts": texts(), "clipped": clipped()}
        return seen[name]

    def clipped() -> list[str]:
        """Labels of these screens whose text does not fit them (as drive.py's inspection counts it), the
        on-screen keyboard's keys among them."""
        found = []
        for w in app.manager.current_screen.walk():
            if isinstance(w, Label) and w.text:
                w.texture_update()
                if w.texture_size[0] > w.width + 2 or w.texture_size[1] > w.height + 2:
                    found.append(w.text)
        return found

    def press(text: str, session_id: str | None = None) -> None:
        settle()                                        # laid out: the button is where it is drawn
        button = next((w for w in app.manager.current_screen.walk() if isinstance(w, ButtonBehavior)
                       and text in ([w.text] if isinstance(w, Button) else [c.text for c in w.children
                                                                             if isinstance(c, Label)])
                       and getattr(w, "session_id", None) == session_id), None)
        assert button is not None, f"no button {text!r} on {app.manager.current}: {texts()}"
        view = next((w for w in app.manager.current_screen.walk() if isinstance(w, ScrollView)
                     and button in list(w.walk())), None)
        if view is not None:
            view.scroll_to(button, padding=0, animate=False)
            frames(2)
        x, y = button.to_window(*button.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        frames(1)
        touch.touch_up()
        until = time.monotonic() + (SCROLL_TOUCH_S if view is not None else 0)
        while time.monotonic() < until:                 # a ScrollView hands a tap on to its content later
            frames(1)
        settle()

    def type_id(text: str) -> None:
        field = next(w for w in app.manager.current_screen.walk() if isinstance(w, TextInput))
        field.focus = True
        frames(1)
        for char in text:
            Window.dispatch("on_textinput", char)
        frames(1)

    def pin(digits: str) -> None:
        for digit in digits:
            press(digit)
        press(kk("screens.pad.ok"))

    def sign_in_as_clerk(digits: str = CLERK_PIN) -> None:
        type_id(CLERK)
        press(kk("clerk.sign_in.button"))
        pin(digits)

    kk = Translator("kk")
    first = at_approval("kk")
    app.show("clerk", result=first)                                  # from the applicant's approval screen
    press(kk("language.name"))                                       # the clerk reads Kazakh
    look("sign_in")
    sign_in_as_clerk(WRONG)
    look("wrong_pin")
    pin(WRONG)
    look("locked_out")
    rig.now += dt.timedelta(minutes=16)
    pin(CLERK_PIN)
    look("review")
    press(kk("clerk.review.by_proxy"))                               # by proxy: the power of attorney too
    for document in ("official_letter", "contract", "state_registration_copy", "id_card_copy", "power_of_attorney"):
        press(kk(f"doc.{document}"))
    press(kk("clerk.review.approve"))
    state = store.load(first.session_id)
    seen["approved"] = {"step": state.step, "clerk_id": state.data.get("clerk_id"), "screen": app.manager.current}

    second = at_approval("ru")
    app.show("clerk", result=second)                                 # handed back: the clerk signs in again
    sign_in_as_clerk()
    press(kk("clerk.review.reject"))
    look("reject_reasons")
    press(kk("refusal.holder_not_present"))
    look("rejected")["step"] = store.load(second.session_id).step

    kept = rig.to_enrollment_step()                                  # ended offline; the central then refused it
    rig.central.down = True
    f.defer(kept)
    rig.central.down = False
    order = rig.central.orders["147314016754"]
    rig.central.orders["147314016754"] = dataclasses.replace(order, status=OrderStatus.CANCELLED)
    f.fetch_certificate(kept)                                        # the sync daemon's round
    rig.central.orders["147314016754"] = order
    done = rig.issue()                                               # finished: its receipt may be reprinted
    stuck = rig.to_token_step()
    issued = rig.to_enrollment_step()
    f.enroll(issued)                                                 # at install: a certificate is issued
    r = rig.revocation                                               # the holder lost the token: revoke it
    rsid = r.begin("mn").session_id
    r.consent(rsid, True)
    r.read_card(rsid)
    r.verify_card_pin(rsid, Pin(CARD_PIN))
    r.choose(rsid, r.current(rsid).view.certificates[0].serial, "key_compromise")
    printed = len(rig.printer.printed)
    app.show("clerk")                                                # the clerk's desk, no applicant waiting
    sign_in_as_clerk()
    look("desk")
    press(kk("clerk.action.reprint"), done)
    look("reprinted", shot=False)["printed"] = len(rig.printer.printed) - printed
    press(kk("clerk.action.cancel"), stuck)
    look("cancelled", shot=False)["step"] = store.load(stuck).step
    press(kk("clerk.action.cancel"), issued)
    look("cancel_refused", shot=False)["step"] = store.load(issued).step
    press(kk("clerk.action.resume"), issued)                         # it was stuck at install: the clerk resumes
    look("resumed", shot=False)["step"] = store.load(issued).step
    rig.now += dt.timedelta(hours=9)
    press(kk("clerk.desk.refresh"))
    look("expired", shot=False)
    sign_in_as_clerk()                                               # again, on the sign-in screen it leads to
    press(kk("clerk.action.open"), rsid)
    look("revocation")
    press(kk("clerk.revocation.confirm"))
    seen["revocation_confirmed"] = {"step": store.load(rsid).step, "clerk_id": store.load(rsid).data["clerk_id"]}
    app.show("clerk")                                                # signed in, then the clerk walks away
    sign_in_as_clerk()
    app._last_input -= app.options.idle_timeout_s                    # as long untouched as the timeout
    app._check_idle(1.0)
    settle()
    seen["idle"] = {"screen": app.manager.current, "signed_in": app.screen("clerk").clerk_seat.clerk is not None}
    seen["audit"] = [e.kind for e in audit.entries() if e.kind.startswith("clerk.")]
    seen["pin_in_audit"] = any(CLERK_PIN in json.dumps(e.fields) for e in audit.entries())
    app.worker.stop()
    store.close()
    return seen


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(drive(Path(sys.argv[1]), *sys.argv[2:3]), ensure_ascii=False))   # [WIDTHxHEIGHT]
