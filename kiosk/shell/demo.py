"""``make demo``: scripted visits through the kiosk's flows, headless, on simulated devices.

``--flow issuance`` (the default) runs one applicant through the whole issuance; ``renewal``,
``revocation``, ``unblock`` and ``check`` first prepare what they need on the same simulated stack
(an issued token; one expiring soon; a blocked PIN and a second kiosk that never saw the token) and
then run that flow.  Writes ``demo-out/``: ``receipt.png``, ``<flow>.json``, ``ca-chain.pem``,
``softhsm2.conf`` and ``tokens/``.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.i18n import LANGUAGES, Translator
from kiosk.identity import card_status_lines
from kiosk.pin import Pin
from kiosk.shell import log as kiosk_log

TOKEN_PIN = "482916"        # what the scripted applicant chooses on the PIN pad
NEW_TOKEN_PIN = "509173"    # what they choose after unblocking
FLOWS = ("issuance", "renewal", "revocation", "unblock", "check")
RENEWAL_INVOICE = "147314100021"   # a pilot order whose certificate is valid 20 days (central demo data)

logger = logging.getLogger("tamga.demo")


def say(text: str) -> None:
    print(text, flush=True)


def offline_visit(kiosk: Any, t: Translator, session_id: str, central_down: Callable[[bool], None]) -> Any:
    """The central is down at enrollment: the visit ends with a pending receipt; once it is back, the
    token's next insertion gets the certificate."""
    flow = kiosk.issuance
    central_down(True)
    try:
        flow.enroll(session_id)
    except KioskError as err:
        say(f"  {t.error(err)}")
    r = flow.defer(session_id)
    say(f"  {t('receipt.pending_status')}")
    central_down(False)
    say("  …")
    (waiting,) = flow.waiting_for_token(r.view.token.serial)
    return flow.fetch_certificate(waiting.session_id)


def issue(kiosk: Any, t: Translator, language: str, invoice: str, card_pin: str,
          central_down: Callable[[bool], None] | None = None) -> dict[str, Any]:
    """One applicant through the whole issuance; returns what the demo reports.

    ``central_down`` (offline demo) stops (True) and restarts (False) the central service.
    """
    flow = kiosk.issuance
    r = flow.begin(language)
    say(t("step.consent"))
    r = flow.consent(r.session_id, accepted=True)
    say(f"{t('step.order')}: {invoice}")
    r = flow.find_order(r.session_id, invoice)
    order = r.view.order
    say(f"  {order.holder}, {order.organisation} — {t('order.paid')}: {t.money(order.paid_mnt)}")
    say(t("step.identity"))
    r = flow.read_card(r.session_id)
    r = flow.verify_card_pin(r.session_id, Pin(card_pin))
    say(f"  {r.view.card.name} ({r.view.card.serial_number})")
    for line in card_status_lines(r.view.card, t):        # what the clerk sees of the revocation check
        say(f"  {line}")
    say(t("step.approval"))
    r = flow.approve(r.session_id, "clerk-demo", r.view.documents, by_proxy=False)
    say(t("step.token"))
    r = flow.prepare_token(r.session_id, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
    say(f"  {r.view.token.model} {r.view.token.serial}")
    say(t("step.keygen"))
    r = flow.generate_key(r.session_id)
    say(t("step.enrollment"))
    r = offline_visit(kiosk, t, r.session_id, central_down) if central_down is not None else flow.enroll(r.session_id)
    if r.error is not None:
        raise r.error
    say(f"  {r.view.certificate.serial}")
    say(t("step.install"))
    r = flow.install(r.session_id)
    if r.step.value == "agreement":                  # [token] holder_agreement: the PIN once more, one signature
        say(t("step.agreement"))
        r = flow.sign_agreement(r.session_id, Pin(TOKEN_PIN))
        if r.error is not None:
            say(f"  {t.error(r.error)}")
    say(t("step.receipt"))
    r = flow.print_receipt(r.session_id)
    if r.error is not None:
        say(f"  {t.error(r.error)}")
    say(t("done.title"))
    data = kiosk.store.load(r.session_id).data
    cert = data["certificate"]
    agreement = data.get("agreement")
    return {"flow": "issuance", "invoice": data["order"]["invoice"],
            "register_number": data["order"]["holder"]["register_number"], "holder": order.holder,
            "token_serial": data["token"]["serial"], "token_label": data["token"]["label"],
            "key_id": data["key_id"], "certificate_serial": cert["serial"],
            "certificate_not_after": cert["not_after"], "certificate_pem": cert["pem"],
            "receipt_printed": not data.get("receipt_pending", False), "timings_ms": data["timings_ms"],
            "identity_evidence": data["identity_evidence"],   # certificate, nonce, signature, OCSP answer
            "agreement": None if agreement is None else {   # the signed PDF itself is at the central
                "sha256": agreement["sha256"], "signed_at": agreement["signed_at"], "sent": agreement["sent"]}}


def check(kiosk: Any, t: Translator, language: str) -> dict[str, Any]:
    flow = kiosk.check
    r = flow.begin(language)
    say(t("check.title"))
    r = flow.read_token(r.session_id)
    cert = r.view.certificate
    say(f"  {cert.serial} — {t('check.status.' + cert.status)}, {t('check.days_left', days=cert.days_left)}")
    r = flow.check(r.session_id, Pin(TOKEN_PIN))
    say(f"  {t('check.signature_ok' if r.view.check.signature_ok else 'check.signature_bad')}")
    return {"flow": "check", "certificate_serial": cert.serial, "status": cert.status, "days_left": cert.days_left,
            "signature_ok": r.view.check.signature_ok}


def revoke(kiosk: Any, t: Translator, language: str, card_pin: str) -> dict[str, Any]:
    flow = kiosk.revocation
    r = flow.begin(language)
    say(t("revocation.title"))
    r = flow.consent(r.session_id, accepted=True)
    r = flow.read_card(r.session_id)
    r = flow.verify_card_pin(r.session_id, Pin(card_pin))
    chosen = r.view.certificates[0]
    say(f"  {chosen.serial} ({chosen.holder}, {chosen.organisation})")
    r = flow.choose(r.session_id, chosen.serial, "key_compromise")
    r = flow.confirm(r.session_id, "clerk-demo")
    if r.error is not None:
        raise r.error
    r = flow.print_receipt(r.session_id)
    say(f"  {t('revocation.done')}")
    return {"flow": "revocation", "certificate_serial": chosen.serial, "reason": "key_compromise",
            "revoked_at": kiosk.store.load(r.session_id).data["revoked_at"]}


def unblock(kiosk: Any, t: Translator, language: str, card_pin: str) -> dict[str, Any]:
    flow = kiosk.unblock
    r = flow.begin(language)
    say(t("unblock.title"))
    r = flow.consent(r.session_id, accepted=True)
    r = flow.read_token(r.session_id)
    r = flow.read_card(r.session_id)
    r = flow.verify_card_pin(r.session_id, Pin(card_pin))
    r = flow.set_pin(r.session_id, Pin(NEW_TOKEN_PIN), Pin(NEW_TOKEN_PIN))
    journal = kiosk.store.journal(r.session_id)
    source = json.loads(journal[-1]["event"]).get("so_pin_source")
    say(f"  {t('unblock.done')} (SO PIN: {source})")
    return {"flow": "unblock", "token_serial": r.view.token.serial, "so_pin_source": source,
            "new_pin": NEW_TOKEN_PIN}


def renew(kiosk: Any, t: Translator, language: str) -> dict[str, Any]:
    flow = kiosk.renewal
    r = flow.begin(language)
    say(t("renewal.title"))
    r = flow.read_token(r.session_id)
    offer = r.view.renewal
    say(f"  {t('renewal.notice', days=offer.days_left)}")
    say(f"  {offer.organisation} ({offer.organisation_register}): {t.money(offer.fee_mnt)} / "
        f"{t.money(offer.balance_mnt)}")
    r = flow.confirm(r.session_id, details_unchanged=True, pin=Pin(TOKEN_PIN))
    if r.error is not None:
        raise r.error
    r = flow.install(r.session_id)
    r = flow.print_receipt(r.session_id)
    data = kiosk.store.load(r.session_id).data
    say(f"  {data['new_certificate']['serial']} — {t('done.title')}")
    return {"flow": "renewal", "old_certificate_serial": data["certificate"]["serial"],
            "new_certificate_serial": data["new_certificate"]["serial"],
            "new_not_after": data["new_certificate"]["not_after"], "fee_mnt": data["terms"]["fee_mnt"]}


def run(out: Path, language: str, key_algorithm: str, flow: str = "issuance",
        keep_workdir: bool = False, offline: bool = False, browser: bool = True) -> dict[str, Any]:
    from devices.sim.faults import PullableToken
    from devices.sim.stack import ARIUN, CARD_PIN, DEMO_INVOICE, ERDENE, SimulatedStack, apply_env
    from devices.token import Pkcs11Token

    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    workdir = Path(tempfile.mkdtemp(prefix="tamga-demo-"))
    stack = SimulatedStack(workdir, key_algorithm=key_algorithm, language=language, holder_agreement=True)
    t = Translator(language)
    started = time.perf_counter()
    with stack:
        apply_env(stack)
        from kiosk.shell import app, config

        cfg = config.load(stack.config_path)
        token = PullableToken(Pkcs11Token(str(cfg.token.module), rescan=cfg.token.rescan))
        kiosk = app.start(cfg, token=token)
        try:
            holder, invoice = (ERDENE, RENEWAL_INVOICE) if flow == "renewal" else (ARIUN, DEMO_INVOICE)
            stack.insert_card(holder)
            def central_down(down: bool) -> None:
                assert stack.central is not None
                if down:
                    stack.central.port = int(stack.central.url.rsplit(":", 1)[1])   # back on the same address
                    stack.central.stop()
                else:
                    stack.central.start()

            result = issue(kiosk, t, language, invoice, CARD_PIN, central_down if offline else None)
            result["offline"] = offline
            if flow != "issuance":
                say("")
            steps: dict[str, Callable[[], dict[str, Any]]] = {
                "check": lambda: check(kiosk, t, language),
                "revocation": lambda: revoke(kiosk, t, language, CARD_PIN),
                "renewal": lambda: renew(kiosk, t, language),
            }
            if flow == "unblock":
                # SoftHSM cannot lock a PIN: the fault-injecting adapter blocks it as a real token
                # would; a second kiosk, which never saw this token, unblocks it with the SO PIN
                # escrowed at the central.
                token.lock_pin = True
                kiosk.close()
                other = cfg.kiosk.data_dir.parent / "other-kiosk-data"
                cfg = _other_kiosk(stack.config_path, other)
                kiosk = app.start(cfg, token=token)
                result = {"issuance": result, **unblock(kiosk, t, language, CARD_PIN)}
            elif flow in steps:
                result = {"issuance": result, **steps[flow]()}
            state_total_ms = (time.perf_counter() - started) * 1000
        finally:
            kiosk.close()
        assert stack.printer is not None and stack.central is not None and stack.softhsm is not None
        jobs = stack.printer.wait_for_jobs(2 if offline else 1)
        shutil.copy(jobs[-1], out / "receipt.png")
        if offline:
            shutil.copy(jobs[0], out / "receipt-pending.png")
        if browser:     # the issuance receipt, scanned as a phone would
            result.update(look_at_verification_page(jobs[1 if offline else 0], out / "verify.png", language,
                                                    stack.central.tls_ca_path))
        shutil.copy(stack.central.ca_chain_path, out / "ca-chain.pem")
        shutil.copytree(stack.softhsm.token_dir, out / "tokens")
    (out / "softhsm2.conf").write_text(
        f"directories.tokendir = {out / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    result.update(language=language, key_algorithm=key_algorithm, total_ms_with_startup=round(state_total_ms, 1))
    (out / f"{flow}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    if keep_workdir:
        say(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def look_at_verification_page(receipt: Path, screenshot: Path, language: str, ca_pem: Path) -> dict[str, Any]:
    """Scan the receipt's QR code, open its https link trusting the central's CA, save the screenshot."""
    from kiosk.shell.demo_verification import VerificationUnavailable, scan_receipt

    try:
        page = scan_receipt(receipt, screenshot, language, ca_pem)
    except VerificationUnavailable as err:
        say(f"no {screenshot.name}: {err}")
        return {}
    say(f"{page.url}: {page.status_text}")
    return {"verification_page": page.url, "verification_status": page.status,
            "verification_status_text": page.status_text}


def _other_kiosk(config_path: Path, data_dir: Path) -> Any:
    """The same devices and central, another kiosk's data directory (it never saw the token)."""
    from kiosk.shell import config

    text = config_path.read_text(encoding="utf-8").replace('id = "demo-kiosk"', 'id = "demo-kiosk-2"')
    lines = [f'data_dir = "{data_dir}"' if line.startswith("data_dir =") else line for line in text.splitlines()]
    other = config_path.with_name("kiosk-2.toml")
    other.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config.load(other)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output directory (replaced)")
    parser.add_argument("--flow", choices=FLOWS, default="issuance", help="which flow to run")
    parser.add_argument("--language", choices=LANGUAGES, default="mn", help="the applicant's language")
    parser.add_argument("--key-algorithm", choices=("rsa2048", "p256"), default="rsa2048")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the simulated devices' files")
    parser.add_argument("--no-browser", action="store_true",
                        help="skip the screenshot of the verification page (demo-out/verify.png)")
    parser.add_argument("--offline", action="store_true",
                        help="issuance with the central down at enrollment: a pending receipt, the certificate later")
    args = parser.parse_args(argv)
    kiosk_log.setup(os.environ.get("TAMGA_LOG_LEVEL", "WARNING"))
    try:
        result = run(args.out, args.language, args.key_algorithm, args.flow, args.keep_workdir, args.offline,
                     browser=not args.no_browser)
    except KioskError as err:
        print(f"demo failed: {Translator(args.language).error(err)} ({err.key} {err.data})", file=sys.stderr)
        return 1
    out = args.out.resolve()
    print(f"\nwrote {out}/: receipt.png, {args.flow}.json, ca-chain.pem, softhsm2.conf, tokens/")
    issued = result.get("issuance", result)
    print(f"certificate {issued['certificate_serial']} on token {issued['token_serial']}")
    print(f"inspect: SOFTHSM2_CONF={out}/softhsm2.conf pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so "
          f"--token-label '{issued['token_label']}' -O")
    return 0


if __name__ == "__main__":
    sys.exit(main())
