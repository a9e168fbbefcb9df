"""Issue 7's idle target: the sync daemon adds ≤ 5 % CPU on the kiosk while it polls with nothing to send.

A real central on loopback (mutual TLS), a kiosk store with nothing queued; after warm-up rounds (the
first pulls fill the order cache) it times ``--rounds`` idle rounds of the daemon: push (empty), the
audit push (empty), both feeds (nothing new).  It prints the kiosk process's CPU per round, what that
is as a share of one core at the service's interval (``--interval``, 30 s as ``python -m sync run``),
and the ratio to one bare keep-alive HTTPS GET of the same client in the same run: what the round
costs beyond the requests it has to make.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central.runner import CentralServer
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key

TARGET_PERCENT = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--interval", type=float, default=30.0, help="the daemon's interval (default 30 s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tamga-idle-") as tmp, CentralServer(Path(tmp) / "central") as central:
        store = KioskStore(Path(tmp) / "kiosk.db", load_or_create_key(Path(tmp) / "kiosk.key"))
        with central.client(timeout_s=10.0) as client:
            daemon = SyncDaemon(store, client, "demo-kiosk", feeds=client, sleep=lambda _: None)
            for _ in range(3):
                daemon.once()
            calls, cpu = client.call_count, time.process_time()
            for _ in range(args.rounds):
                report = daemon.once()
                if report.error is not None:
                    print(f"sync idle: a round failed: {report.error.key} {report.error.data}")
                    return 1
            round_cpu = (time.process_time() - cpu) / args.rounds
            calls_per_round = (client.call_count - calls) / args.rounds
            session, url = client._session, f"{central.url}/api/v1/feeds/orders?after=0&limit=1"
            tls = central.tls
            session.get(url, timeout=10, **tls)
            cpu = time.process_time()
            for _ in range(args.rounds):
                session.get(url, timeout=10, **tls).raise_for_status()
            get_cpu = (time.process_time() - cpu) / args.rounds
        store.close()
    share = 100 * round_cpu / args.interval
    verdict = "ok" if share <= TARGET_PERCENT else "OVER TARGET"
    print(f"sync idle: {round_cpu * 1000:.2f} ms CPU per round ({calls_per_round:.0f} HTTPS calls), "
          f"{share:.3f} % of one core at a {args.interval:g} s interval (target ≤ {TARGET_PERCENT:g} %) {verdict}")
    print(f"sync idle: round ÷ one bare keep-alive HTTPS GET {round_cpu / get_cpu:.2f} "
          f"({get_cpu * 1000:.2f} ms CPU per GET; {args.rounds} rounds)")
    return 0 if share <= TARGET_PERCENT else 1


if __name__ == "__main__":
    raise SystemExit(main())
