"""``python -m bench``: every benchmark, one after the other, each printing its figures."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    ["bench/bench_idcard.py"],
    ["-m", "bench.bench_issuance"],
    ["-m", "bench.bench_issuance", "--key-algorithm", "p256"],
    ["bench/bench_printer.py"],
    ["bench/bench_agreement.py"],
    ["-m", "bench.bench_wait"],
    ["bench/bench_offline_lookup.py"],
    ["bench/bench_sync_idle.py"],
    ["bench/bench_drain.py"],
    ["bench/bench_screens.py"],
]


def main() -> int:
    failed = 0
    for args in BENCHMARKS:
        print(f"\n$ python {' '.join(args)}", flush=True)
        failed |= subprocess.run([sys.executable, *args], check=False).returncode
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
