"""``python -m devices.sim``: start the simulated hardware and the local central service, print how to use them.

Starts a private pcscd with a virtual PIV national ID card (Ариун, НЭ80000000) in its first reader,
a SoftHSM token store with one blank eToken, an ESC/POS printer emulator on loopback and the
reference central service, writes a kiosk.toml for them, prints the environment to export, and
runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from devices.sim.stack import ARIUN, CARD_PIN, ERDENE, SimulatedStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devices.sim", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to keep everything (default: a new temp dir)")
    parser.add_argument("--card", choices=("ariun", "erdene", "none"), default="ariun",
                        help="which applicant's ID card is in the reader")
    parser.add_argument("--key-algorithm", choices=("rsa2048", "p256"), default="rsa2048")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tamga-sim-"))
    stop = threading.Event()

    def on_signal(_signo: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with SimulatedStack(workdir, key_algorithm=args.key_algorithm) as stack:
        if args.card != "none":
            stack.insert_card(ARIUN if args.card == "ariun" else ERDENE)
        assert stack.pcscd and stack.printer and stack.central and stack.softhsm
        print("# simulated devices are running; use them from another shell with:")
        for key, value in stack.env.items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"# readers: {', '.join(stack.pcscd.reader_names)} (ID card PIN {CARD_PIN})")
        print(f"# eToken: SoftHSM serial {', '.join(stack.token_serials)} in {stack.softhsm.token_dir}")
        print(f"# printer: ESC/POS on 127.0.0.1:{stack.printer.port}, receipts saved in {stack.printer.out_dir}")
        print(f"# central: {stack.central.url} (data in {stack.central.data_dir})")
        print("# try: opensc-tool -l; pkcs15-tool --list-certificates; "
              "pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so -L")
        print("# Ctrl-C stops everything", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
