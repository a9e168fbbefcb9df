"""``make demo``: one scripted applicant through the whole issuance, headless, on simulated devices.

Starts the simulated hardware and the local central service (devices.sim.stack), runs the kiosk's
issuance workflow exactly as configured in the field, and writes ``demo-out/``:
``receipt.png``, ``issuance.json``, ``ca-chain.pem``, ``softhsm2.conf`` and ``tokens/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kiosk import log as kiosk_log
from kiosk.errors import KioskError
from kiosk.i18n import LANGUAGES, Translator
from kiosk.pin import Pin

TOKEN_PIN = "482916"        # what the scripted applicant chooses on the PIN pad

logger = logging.getLogger("tamga.demo")


def run(out: Path, language: str, key_algorithm: str, keep_workdir: bool = False) -> dict[str, Any]:
    from devices.sim.stack import ARIUN, CARD_PIN, DEMO_INVOICE, SimulatedStack, apply_env

    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    workdir = Path(tempfile.mkdtemp(prefix="tamga-demo-"))
    stack = SimulatedStack(workdir, key_algorithm=key_algorithm, language=language)
    t = Translator(language)
    started = time.perf_counter()
    with stack:
        apply_env(stack)
        from kiosk import app, config

        cfg = config.load(stack.config_path)
        kiosk = app.build(cfg)
        try:
            stack.insert_card(ARIUN)
            flow = kiosk.issuance
            r = flow.begin(language)
            say(t("step.consent"))
            r = flow.consent(r.session_id, accepted=True)
            say(f"{t('step.order')}: {DEMO_INVOICE}")
            r = flow.find_order(r.session_id, DEMO_INVOICE)
            order = r.data["order"]
            say(f"  {order['holder']}, {order['organisation']} — {t('order.paid')}: "
                f"{t.money(order['paid_mnt'])}")
            say(t("step.identity"))
            r = flow.read_card(r.session_id)
            r = flow.verify_card_pin(r.session_id, Pin(CARD_PIN))
            say(f"  {r.data['card']['name']} ({r.data['card']['serial_number']})")
            say(t("step.approval"))
            r = flow.approve(r.session_id, "clerk-demo", r.data["documents"], by_proxy=False)
            say(t("step.token"))
            r = flow.prepare_token(r.session_id, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
            say(f"  {r.data['token']['model']} {r.data['token']['serial']}")
            say(t("step.keygen"))
            r = flow.generate_key(r.session_id)
            say(t("step.enrollment"))
            r = flow.enroll(r.session_id)
            say(f"  {r.data['certificate']['serial']}")
            say(t("step.install"))
            r = flow.install(r.session_id)
            say(t("step.receipt"))
            r = flow.print_receipt(r.session_id)
            if r.error is not None:
                say(f"  {t.error(r.error)}")
            say(t("done.title"))
            total_ms = (time.perf_counter() - started) * 1000
            state = kiosk.store.load(r.session_id)
        finally:
            kiosk.close()
        assert stack.printer is not None and stack.central is not None and stack.softhsm is not None
        jobs = stack.printer.wait_for_jobs(1)
        shutil.copy(jobs[-1], out / "receipt.png")
        shutil.copy(stack.central.ca_chain_path, out / "ca-chain.pem")
        shutil.copytree(stack.softhsm.token_dir, out / "tokens")
    (out / "softhsm2.conf").write_text(
        f"directories.tokendir = {out / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    cert = state.data["certificate"]
    result = {
        "invoice": state.data["order"]["invoice"],
        "register_number": state.data["order"]["holder"]["register_number"],
        "holder": r.data["order"]["holder"],
        "language": language,
        "token_serial": state.data["token"]["serial"],
        "token_label": state.data["token"]["label"],
        "key_id": state.data["key_id"],
        "key_algorithm": key_algorithm,
        "certificate_serial": cert["serial"],
        "certificate_not_after": cert["not_after"],
        "certificate_pem": cert["pem"],
        "receipt_printed": not state.data.get("receipt_pending", False),
        "timings_ms": {**state.data["timings_ms"], "total_with_startup": round(total_ms, 1)},
    }
    (out / "issuance.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    if keep_workdir:
        say(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory (replaced)")
    parser.add_argument("--language", choices=LANGUAGES, default="mn", help="the applicant's language")
    parser.add_argument("--key-algorithm", choices=("rsa2048", "p256"), default="rsa2048")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the simulated devices' files")
    args = parser.parse_args(argv)
    kiosk_log.setup(os.environ.get("TAMGA_LOG_LEVEL", "WARNING"))
    try:
        result = run(args.out, args.language, args.key_algorithm, args.keep_workdir)
    except KioskError as err:
        print(f"demo failed: {Translator(args.language).error(err)} ({err.key} {err.data})", file=sys.stderr)
        return 1
    out = args.out.resolve()
    print(f"\nwrote {out}/: receipt.png, issuance.json, ca-chain.pem, softhsm2.conf, tokens/")
    print(f"certificate {result['certificate_serial']} on token {result['token_serial']}")
    print(f"inspect: SOFTHSM2_CONF={out}/softhsm2.conf pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so "
          f"--token-label '{result['token_label']}' -O")
    return 0


if __name__ == "__main__":
    sys.exit(main())
