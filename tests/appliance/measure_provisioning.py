"""Provisioning's step durations on the simulated stack: ``python tests/appliance/measure_provisioning.py [RUNS]``.

Starts the simulated devices and the local central (its own private pcscd), provisions RUNS fresh
roots with ``--non-interactive`` (every flag, as a prepared image's technician would), then runs
each again (re-provisioning, nothing to change), and prints the median and maximum of every step
and of the whole command (Python start included).  Not collected by pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from devices.sim.softhsm import FACTORY_SO_PIN
from devices.sim.stack import SimulatedStack

ROW = re.compile(r"^\s+(\d+)\s+(ok|FAIL|skip)\s+(\d+\.\d+) s\s+(.+)$", re.MULTILINE)


def main(runs: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="tamga-measure-"))
    try:
        with SimulatedStack(work / "stack") as s:
            assert s.central and s.pcscd and s.softhsm and s.printer and s.national_ca
            s.insert_card()
            env = {**os.environ, **s.env}
            env.pop("TAMGA_CONFIG")
            (work / "in").mkdir()
            (work / "in/sopin").write_text(FACTORY_SO_PIN + "\n")

            central, pcscd, softhsm, printer, national_ca = s.central, s.pcscd, s.softhsm, s.printer, s.national_ca

            def command(root: Path) -> list[str]:
                args = [sys.executable, "-m", "provisioning", "--non-interactive", "--root", str(root),
                        "--kiosk-id", "demo-kiosk", "--central-url", central.url,
                        "--central-ca", str(central.tls_ca_path),
                        "--enrollment-code", central.manage("add-kiosk", "demo-kiosk").strip(),
                        "--reader", pcscd.reader_names[0],
                        "--module", str(softhsm.module), "--printer", f"127.0.0.1:{printer.port}",
                        "--factory-so-pin-file", str(work / "in/sopin"), "--ca-chain", str(central.ca_chain_path)]
                for path in national_ca.trust_anchor_paths:
                    args += ["--national-id-root", str(path)]
                for path in national_ca.intermediate_paths:
                    args += ["--national-id-intermediate", str(path)]
                return args

            roots = [work / f"root-{i}" for i in range(runs)]
            for label in ("fresh", "re-run"):
                per: dict[tuple[int, str], list[float]] = {}
                walls = []
                for root in roots:
                    started = time.perf_counter()
                    out = subprocess.run(command(root), env=env, capture_output=True, text=True, check=False,
                                         cwd=Path(__file__).resolve().parents[2])
                    walls.append(time.perf_counter() - started)
                    if out.returncode != 0:
                        print(out.stdout + out.stderr)
                        return 1
                    for n, _, seconds, title in ROW.findall(out.stdout):
                        per.setdefault((int(n), title), []).append(float(seconds))
                print(f"{label} ({runs} runs): whole command median {statistics.median(walls):.2f} s, "
                      f"max {max(walls):.2f} s")
                for (n, title), values in sorted(per.items()):
                    print(f"  {n:2}  {title:36} median {statistics.median(values):5.2f} s  max {max(values):5.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
