"""The touchscreen app: P5 cold start to the first frame as a ratio of a Kivy hello world's, peak RSS,
and the screen transition time (median and p95).

Each cold start is a fresh process (one Kivy Window per process) drawing offscreen (Mesa llvmpipe),
timed from the moment it is spawned to its first frame on the window; the kiosk's process loads its
configuration, opens its store and adapters on the simulated stack (started once, before the clock
runs), builds every screen and draws the welcome screen.  The hello world (a Label) is measured in
the same run, alternating with the kiosk.  Transitions: the kiosk process then shows screens one after
another (welcome, consent, the order found, the error screen), each time until its frame is drawn.
Targets: ratio ≤ 3, peak RSS ≤ 200 MB, transitions ≤ 100 ms.

    .venv/bin/python bench/bench_screens.py [--runs 3] [--transitions 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]

_HELLO = r"""
import sys, time
from pathlib import Path
from kiosk.screens.launch import configure_kivy
configure_kivy((800, 480), fullscreen=False, home=Path(sys.argv[1]), offscreen=True)
from kivy.app import App
from kivy.base import EventLoop
from kivy.core.window import Window
from kivy.uix.label import Label
drawn = []
Window.bind(on_flip=lambda *_: drawn.append(time.time()))
class Hello(App):
    def load_kv(self, filename=None):      # no .kv file (and no source file to look beside)
        return None
    def build(self):
        return Label(text="Hello")
app = Hello()
app._run_prepare()
while not drawn:
    EventLoop.idle()
print(drawn[0], flush=True)
"""

_KIOSK = r"""
import json, resource, statistics, sys, time
from pathlib import Path
from kiosk.screens.launch import configure_kivy, ui_options
configure_kivy((800, 480), fullscreen=False, home=Path(sys.argv[1]), offscreen=True)
from kivy.base import EventLoop
from kiosk.errors import CentralUnavailable
from kiosk.screens.app import KioskApp
from kiosk.shell import app as wiring, config
cfg = config.load()
kiosk = wiring.start(cfg)
app = KioskApp(kiosk, ui_options(cfg))
app._run_prepare()
while app.first_frame_at is None:
    EventLoop.idle()
first = time.time()
flow = kiosk.issuance
consent = flow.begin("mn")
order = flow.find_order(flow.consent(consent.session_id, True).session_id, sys.argv[3])
screens = [("consent", {"result": consent}), ("order_summary", {"result": order}),
           ("error", {"error": CentralUnavailable(), "retry": None}), ("welcome", {})]
times = []
for n in range(int(sys.argv[2])):
    name, params = screens[n % len(screens)]
    flips = []
    unbind = app.root_window.fbind("on_flip", lambda *_: flips.append(time.perf_counter()))
    started = time.perf_counter()
    app.show(name, **params)
    while not flips:
        EventLoop.idle()
    app.root_window.unbind_uid("on_flip", unbind)
    times.append((flips[0] - started) * 1000)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"first_frame": first, "rss_mb": rss_mb, "transitions_ms": times}), flush=True)
app.worker.stop()
kiosk.close()
"""


def spawn(script: str, args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds from spawning ``script`` to the wall-clock moment it prints first, and its last line."""
    with tempfile.TemporaryDirectory(prefix="tamga-bench-kivy-") as home:
        started = time.time()
        done = subprocess.run([sys.executable, "-c", script, home, *args], env=env, capture_output=True, text=True,
                              timeout=180, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    line = done.stdout.strip().splitlines()[-1]
    moment = float(line) if not line.startswith("{") else float(json.loads(line)["first_frame"])
    return moment - started, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--transitions", type=int, default=40)
    args = parser.parse_args(argv)
    from devices.sim.stack import DEMO_INVOICE, SimulatedStack

    with tempfile.TemporaryDirectory(prefix="tamga-bench-screens-") as work, SimulatedStack(Path(work)) as stack:
        env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT), "TAMGA_LOG_LEVEL": "WARNING"}
        hello_s, kiosk_s, rss, transitions = [], [], [], []
        for _ in range(args.runs):
            hello_s.append(spawn(_HELLO, [], env)[0])
            seconds, line = spawn(_KIOSK, [str(args.transitions), DEMO_INVOICE], env)
            kiosk_s.append(seconds)
            measured = json.loads(line)
            rss.append(measured["rss_mb"])
            transitions += measured["transitions_ms"]
    hello, kiosk = statistics.median(hello_s), statistics.median(kiosk_s)
    ratio = kiosk / hello
    ordered = sorted(transitions)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    print(f"P5 cold start to first frame: kiosk {kiosk:.2f} s, Kivy hello world {hello:.2f} s: "
          f"ratio {ratio:.2f} (target ≤ 3) {'ok' if ratio <= 3 else 'MISSED'}")
    print(f"P5 peak RSS {max(rss):.0f} MB (target ≤ 200) {'ok' if max(rss) <= 200 else 'MISSED'}")
    print(f"screen transition median {median:.1f} ms, p95 {p95:.1f} ms over {len(ordered)} (target ≤ 100) "
          f"{'ok' if p95 <= 100 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
