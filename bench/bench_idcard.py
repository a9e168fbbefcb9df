"""P3: APDUs and milliseconds of a full ID-card verification on the virtual stack.

A full verification = connect to the card, read_identity (SELECT, GET DATA certificate, GET DATA
CHUID, chain validation) and authenticate (VERIFY, GENERAL AUTHENTICATE, signature check, card
reset).  PIN typing is not part of it.  The stack is a private pcscd + vpcd + VirtualPivCard.
Also printed: the raw APDU time (inside send_and_receive) of the same runs and the ratio.
With OCSP (the target's case): read_identity also asks the test national CA's OCSP responder on
loopback (devices/sim/national_ca_services.py) and checks its signed answer; the figure is printed
beside the run without a revocation check, as a ratio measured in the same run.
The OpenSC path (devices/idcard_opensc.py, OpenSC's opensc-pkcs11.so over the same pcscd) is printed
beside it, with OCSP too: each run inserts the card afresh, so OpenSC binds it (reads its objects) as it
does for a holder who just put the card in; its APDUs are counted on the card's side (VirtualPivCard's
log: every command that reached the chip through pcscd and vpcd).

    .venv/bin/python bench/bench_idcard.py [--runs 20] [--key rsa2048|p256|all]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.idcard import IdCardReader
from devices.idcard_opensc import OpenscIdCardReader
from devices.pcsc import wait_for_card, wait_for_removal
from devices.revocation import RevocationChecker, RevocationMode, RevocationPolicy
from devices.sim.national_ca import CardHolder, KeyType, NationalIdCa
from devices.sim.national_ca_services import NationalIdServices
from devices.sim.pcscd import PrivatePcscd
from devices.sim.vcard import VirtualPivCard
from kiosk.pin import Pin


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench(key_type: KeyType, runs: int, workdir: Path, pcscd: PrivatePcscd, ocsp: bool = False) -> dict[str, float]:
    """Needs PCSCLITE_CSOCK_NAME of ``pcscd`` in the environment before this process's first PC/SC call."""
    ca = NationalIdCa.create(workdir / "pki")
    services = NationalIdServices(ca).start() if ocsp else None
    checker = (RevocationChecker(workdir / f"crl-{key_type}", RevocationPolicy(RevocationMode.OCSP, dt.timedelta(0)))
               if ocsp else None)
    personalisation = ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"), key_type=key_type)
    reader_name = pcscd.reader_names[0]
    card = VirtualPivCard(personalisation, pcscd.vpcd_port)
    card.insert()
    wait_for_card(reader_name, 5)
    totals, raws, counts, warm_totals = [], [], [], []
    pin = Pin(personalisation.pin)
    try:
        for i in range(runs + 1):                    # run 0 warms caches and is discarded
            challenge = os.urandom(32)
            reader = IdCardReader(reader_name, ca.trust_anchors, ca.intermediates, revocation=checker)
            started = time.perf_counter()
            reader.read_identity()
            reader.authenticate(pin, challenge)
            elapsed = time.perf_counter() - started
            count, raw = reader.apdu_count, reader.apdu_seconds
            # the same reader again: connection already open, card reset by the previous authenticate
            started = time.perf_counter()
            reader.read_identity()
            reader.authenticate(pin, challenge)
            warm = time.perf_counter() - started
            reader.close()
            if i:
                totals.append(elapsed)
                raws.append(raw)
                counts.append(count)
                warm_totals.append(warm)
    finally:
        card.close()
        wait_for_removal(reader_name, 5)
        if services is not None:
            services.stop()
    return {
        "apdus": statistics.median(counts),
        "apdus_max": max(counts),
        "ms": statistics.median(totals) * 1000,
        "ms_p90": _percentile(totals, 0.9) * 1000,
        "raw_ms": statistics.median(raws) * 1000,
        "ratio": statistics.median(t / r for t, r in zip(totals, raws, strict=True)),
        "warm_ms": statistics.median(warm_totals) * 1000,
    }


def bench_opensc(key_type: KeyType, runs: int, workdir: Path, pcscd: PrivatePcscd) -> dict[str, float]:
    """The OpenSC path with OCSP on loopback: a freshly inserted card per run, then the same card again."""
    ca = NationalIdCa.create(workdir / f"pki-opensc-{key_type}")
    services = NationalIdServices(ca).start()
    checker = RevocationChecker(workdir / f"crl-opensc-{key_type}",
                                RevocationPolicy(RevocationMode.OCSP, dt.timedelta(0)))
    personalisation = ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"), key_type=key_type)
    reader_name = pcscd.reader_names[0]
    card = VirtualPivCard(personalisation, pcscd.vpcd_port)
    reader = OpenscIdCardReader(reader_name, ca.trust_anchors, ca.intermediates, revocation=checker)
    totals, counts, warm_totals, warm_counts = [], [], [], []
    pin = Pin(personalisation.pin)
    try:
        for i in range(runs + 1):                    # run 0 loads OpenSC and is discarded
            card.insert()
            wait_for_card(reader_name, 5)
            card.clear_log()
            started = time.perf_counter()
            identity = reader.read_identity()
            reader.authenticate(pin, os.urandom(32), identity.certificate_sha256)
            elapsed = time.perf_counter() - started
            count = len(card.apdu_log)
            card.clear_log()
            started = time.perf_counter()
            identity = reader.read_identity()
            reader.authenticate(pin, os.urandom(32), identity.certificate_sha256)
            warm = time.perf_counter() - started
            warm_count = len(card.apdu_log)
            card.remove()
            wait_for_removal(reader_name, 5)
            if i:
                totals.append(elapsed)
                counts.append(count)
                warm_totals.append(warm)
                warm_counts.append(warm_count)
    finally:
        reader.close()
        card.close()
        wait_for_removal(reader_name, 5)
        services.stop()
    return {"apdus": statistics.median(counts), "apdus_max": max(counts), "ms": statistics.median(totals) * 1000,
            "ms_p90": _percentile(totals, 0.9) * 1000, "warm_apdus": statistics.median(warm_counts),
            "warm_ms": statistics.median(warm_totals) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--key", choices=["rsa2048", "p256", "all"], default="all")
    args = parser.parse_args()
    keys: list[KeyType] = ["rsa2048", "p256"] if args.key == "all" else [args.key]
    with tempfile.TemporaryDirectory(prefix="bench-idcard-") as tmp:
        workdir = Path(tmp)
        with PrivatePcscd(workdir / "pcscd") as pcscd:
            os.environ.update(pcscd.env)             # before the first PC/SC call of this process
            print(f"private pcscd started in {pcscd.start_seconds * 1000:.0f} ms, vpcd port {pcscd.vpcd_port}")
            for key_type in keys:
                plain = bench(key_type, args.runs, workdir, pcscd)
                r = bench(key_type, args.runs, workdir, pcscd, ocsp=True)
                print(f"P3 ID-card verification with OCSP on loopback [{key_type}, median of {args.runs}, "
                      f"PIN typing excluded]: {r['apdus']:.0f} APDUs (max {r['apdus_max']:.0f}; target <= 8), "
                      f"{r['ms']:.1f} ms (p90 {r['ms_p90']:.1f} ms; target <= 150 ms); raw APDU time "
                      f"{r['raw_ms']:.1f} ms; on an open connection {r['warm_ms']:.1f} ms")
                print(f"    without a revocation check {plain['ms']:.1f} ms: with OCSP / without = "
                      f"{r['ms'] / plain['ms']:.2f}x (open connection {r['warm_ms'] / plain['warm_ms']:.2f}x)")
                o = bench_opensc(key_type, args.runs, workdir, pcscd)
                print(f"    the OpenSC path beside it [{key_type}, OCSP, card just inserted]: {o['apdus']:.0f} APDUs "
                      f"(max {o['apdus_max']:.0f}), {o['ms']:.1f} ms (p90 {o['ms_p90']:.1f} ms); the same card "
                      f"again {o['warm_apdus']:.0f} APDUs, {o['warm_ms']:.1f} ms; native first verification "
                      f"{r['apdus']:.0f} APDUs, {r['ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
