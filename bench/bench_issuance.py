"""P1: headless issuance end to end ÷ the sum of its raw operations, measured in the same run.

Raw operations are the device and network I/O the issuance cannot avoid: every PC/SC call to the
ID card (APDUs, connecting, releasing), every PKCS#11 call (slot and token info, C_InitToken,
C_InitPIN, C_SetPIN, C_Login/C_Logout, key generation, CSR signing, certificate writes), every
HTTP call to the central service, and the printer I/O (connect, status, send).  Everything else
(workflow, SQLite transitions, receipt rendering, chain checks) is the kiosk's overhead.  The
receipt is rendered on a worker thread while the certificate is written to the token, as in the
kiosk.  Target: ratio ≤ 1.3.

Run: ``.venv/bin/python -m bench.bench_issuance [--runs N] [--key-algorithm rsa2048|p256]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kiosk.pin import Pin

TOKEN_PIN = "482916"


def one_issuance(stack, kiosk) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from devices.sim.stack import ARIUN, CARD_PIN

    stack.softhsm.add_blank_token()
    kiosk.token.reload()
    stack.insert_card(ARIUN)
    idcard, token, central, printer = kiosk.idcard, kiosk.token, kiosk.central, kiosk.printer
    apdu0, call0 = idcard.io_seconds, central.call_seconds
    token.timings.clear()
    flow = kiosk.issuance
    invoice = fresh_order(stack)
    started = time.perf_counter()
    r = flow.begin("mn")
    sid = r.session_id
    flow.consent(sid, True)
    flow.find_order(sid, invoice)
    flow.read_card(sid)
    r = flow.verify_card_pin(sid, Pin(CARD_PIN))
    flow.approve(sid, "clerk-bench", r.view.documents, False)
    flow.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    flow.generate_key(sid)
    flow.enroll(sid)
    flow.install(sid)
    r = flow.print_receipt(sid)
    total = time.perf_counter() - started
    assert r.error is None and r.step.value == "done", r
    raw = {
        "apdu": idcard.io_seconds - apdu0 if idcard.io_seconds >= apdu0 else idcard.io_seconds,
        "pkcs11": sum(token.timings.values()),
        "keygen": token.timings.get("keygen", 0.0),
        "central": central.call_seconds - call0,
        "printer": printer.io_seconds or 0.0,
    }
    return {"total": total, "raw": raw["apdu"] + raw["pkcs11"] + raw["central"] + raw["printer"], **raw}


_orders: list[str] = []


def fresh_order(stack) -> str:  # type: ignore[no-untyped-def]
    """A new paid, confirmed order for Ариун (each issuance consumes one)."""
    import json

    n = len(_orders)
    invoice = f"9{n:011d}"
    order = {
        "invoice": invoice, "holder": {"surname": "Боржигон", "father_name": "Баатар", "given_name": "Ариун",
                                       "register_number": "НЭ80000000", "email": "ariun@example.mn"},
        "organisation": {"name": "АЗ ХХК", "register": "1234567", "department": "Захиргаа"},
        "position": "Нягтлан", "term_years": 1, "etoken": True, "consent_accepted": True, "confirmed": True,
        "paid_mnt": 88_000,
    }
    path = stack.workdir / f"order-{invoice}.json"
    path.write_text(json.dumps([order], ensure_ascii=False))
    stack.central.manage("load-orders", str(path))
    _orders.append(invoice)
    return invoice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="P1: issuance end to end ÷ raw operations")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--key-algorithm", choices=("rsa2048", "p256"), default="rsa2048")
    args = parser.parse_args(argv)

    from devices.sim.stack import SimulatedStack, apply_env
    from kiosk.shell import app, config

    with tempfile.TemporaryDirectory(prefix="tamga-bench-") as tmp, \
            SimulatedStack(Path(tmp), key_algorithm=args.key_algorithm) as stack:
        apply_env(stack)
        kiosk = app.build(config.load(stack.config_path))
        try:
            one_issuance(stack, kiosk)   # warm-up: imports, font cache, escpos capabilities, connections
            runs = [one_issuance(stack, kiosk) for _ in range(args.runs)]
        finally:
            kiosk.close()
    ratios = [r["total"] / r["raw"] for r in runs]
    med = statistics.median
    print(f"P1 issuance end to end ({args.key_algorithm}, {args.runs} runs after 1 warm-up)")
    print(f"  total       median {med(r['total'] for r in runs) * 1000:8.1f} ms")
    print(f"  raw ops     median {med(r['raw'] for r in runs) * 1000:8.1f} ms   "
          f"(PC/SC {med(r['apdu'] for r in runs) * 1000:.1f}, PKCS#11 {med(r['pkcs11'] for r in runs) * 1000:.1f} "
          f"of which keygen {med(r['keygen'] for r in runs) * 1000:.1f}, central "
          f"{med(r['central'] for r in runs) * 1000:.1f}, printer {med(r['printer'] for r in runs) * 1000:.1f})")
    print(f"  overhead    median {med(r['total'] - r['raw'] for r in runs) * 1000:8.1f} ms")
    print(f"  ratio total/raw: median {med(ratios):.3f}, worst {max(ratios):.3f}   target <= 1.3   "
          f"{'PASS' if med(ratios) <= 1.3 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
