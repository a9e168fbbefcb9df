"""Command line of the central service: ``python -m central COMMAND --data-dir DIR …``.

``serve`` migrates the database, creates the CA hierarchy and the SO PIN escrow key
(``DIR/escrow-key.pem``, owner only) on first start, writes ``DIR/ca-chain.pem`` and the demo
kiosk identity CA's certificate ``DIR/tls-ca.pem`` with the central's own TLS key and certificate
(``DIR/tls/``); ``--demo-data`` adds the demo orders and organisations and a one-time code for the demo
kiosk in ``DIR/demo-enrollment-code`` while it has no certificate.  It serves the kiosks' API over
HTTPS with client certificates (cheroot) and the public pages also over plain HTTP, both on
127.0.0.1, printing ``central ready on https://HOST:PORT public http://HOST:PORT2`` once it accepts
connections.  The other commands act on the
same data directory while the server runs (SQLite in WAL mode).  ``TAMGA_EXTRA_HOLIDAYS``
(comma-separated YYYY-MM-DD) adds dated public holidays to the renewal deadline's calendar.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from central import CRL_REFRESH_S, DATA_DIR_ENV

DEMO_ORDERS = Path(__file__).with_name("demo_orders.json")
DEMO_KIOSK_ID = "demo-kiosk"
DEMO_CODE_FILE = "demo-enrollment-code"
CHAIN_FILE = "ca-chain.pem"
READY_LINE = "central ready on {url} public {public_url}"


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _server_names(args: argparse.Namespace, public_host: str) -> list[str]:
    """What kiosks may call the central: the bound address, localhost, the public host, the allowed hosts."""
    public_name = public_host.rsplit("]", 1)[0].lstrip("[") if public_host.startswith("[") \
        else public_host.rsplit(":", 1)[0]
    extra = os.environ.get("TAMGA_CENTRAL_ALLOWED_HOSTS", "").split()
    return [args.host, "localhost", "127.0.0.1", public_name, *(h.strip("[]") for h in extra)]


def _ensure_demo_kiosk(data_dir: Path) -> None:
    """Give the demo kiosk a one-time code in ``DIR/demo-enrollment-code`` while it has no live certificate.

    The runner (``central/runner.py``) enrolls with it and deletes it.  A revoked demo kiosk gets none:
    revocation lasts across restarts.
    """
    from django.utils import timezone

    from central.orders import kiosk_identity
    from central.orders.models import DEFAULT_OFFICE, KioskCertificate, KioskCredential

    code_path = data_dir / DEMO_CODE_FILE
    kiosk = KioskCredential.objects.filter(kiosk_id=DEMO_KIOSK_ID).first()
    if kiosk is not None and kiosk.revoked_at is not None:
        code_path.unlink(missing_ok=True)
        return
    live = KioskCertificate.objects.filter(kiosk__kiosk_id=DEMO_KIOSK_ID, revoked_at__isnull=True,
                                           not_after__gt=timezone.now()).exists()
    if live and not code_path.exists():
        return
    _write_private(code_path, kiosk_identity.add_kiosk(DEMO_KIOSK_ID, DEFAULT_OFFICE) + "\n")


def cmd_serve(args: argparse.Namespace, data_dir: Path) -> int:
    from django.core.wsgi import get_wsgi_application

    from central import serving

    application = get_wsgi_application()
    public = serving.create_http_server(application, args.host, args.public_port, args.threads)
    public.prepare()
    try:     # prepare() started the listener's worker threads: stop them however serving ends
        return _serve(args, data_dir, application, public)
    finally:
        public.stop()


def _serve(args: argparse.Namespace, data_dir: Path, application: Any, public: Any) -> int:
    from central import serving
    from central.orders import clerk, crls, escrow, kiosk_identity, pki

    public_port = public.bind_addr[1]

    # The URLs in certificates (CRL, OCSP, CA issuers) name --public-host, else the plain HTTP address bound now.
    public_host = (args.public_host or "{bound}:{port}").format(bound=_url_host(args.host), port=public_port)
    _, issuing = pki.ensure_hierarchy(public_host)
    pki.write_chain(data_dir / CHAIN_FILE, issuing)
    escrow.ensure_key()
    tls_files = kiosk_identity.ensure_server_files(data_dir, _server_names(args, public_host))
    if args.demo_data:
        clerk.load_orders_file(DEMO_ORDERS)
        _ensure_demo_kiosk(data_dir)
    server = serving.create_https_server(application, args.host, args.port, args.threads, tls_files)
    try:
        server.prepare()
    except OSError as err:
        print(f"cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr, flush=True)
        return 1

    crls.refresh()
    refresher = crls.CrlRefresher(args.crl_refresh_s)
    refresher.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if args.exit_on_stdin_eof:
        # The runner keeps our stdin open; when it dies, stdin closes and we stop too (no orphans).
        # os.read on the raw descriptor: a daemon thread blocked in sys.stdin's buffered reader
        # makes the interpreter abort at exit ("could not acquire lock for <stdin>").
        stdin_fd = sys.stdin.fileno()

        def watch_stdin() -> None:
            while os.read(stdin_fd, 4096):
                pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    threading.Thread(target=public.serve, name="public-http", daemon=True).start()
    host = _url_host(args.host)
    print(READY_LINE.format(url=f"https://{host}:{server.bind_addr[1]}",
                            public_url=f"http://{host}:{public_port}"), flush=True)
    try:
        server.serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
    return 0


def cmd_init(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import escrow, pki

    if not args.public_host:
        print("warning: no --public-host: a CA hierarchy created now gets no CRL, OCSP or CA issuer URLs",
              file=sys.stderr)
    _, issuing = pki.ensure_hierarchy(args.public_host)
    pki.write_chain(data_dir / CHAIN_FILE, issuing)
    escrow.ensure_key()
    print(data_dir / CHAIN_FILE)
    return 0


def cmd_add_office(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import offices

    office, created = offices.add(args.code, args.name)
    print(f"{office.code}: {'added' if created else 'renamed'} ({office.name})")
    return 0


def cmd_add_kiosk(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import kiosk_identity

    for kiosk_id in args.kiosk_id:
        code = kiosk_identity.add_kiosk(kiosk_id, args.office, dt.timedelta(hours=args.valid_hours))
        print(code)
        print(f"one-time enrollment code for kiosk {kiosk_id} of office {args.office}, valid "
              f"{args.valid_hours} h: on the kiosk, python -m sync enroll --code CODE", file=sys.stderr)
    return 0


def cmd_revoke_kiosk(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import kiosk_identity

    if not kiosk_identity.revoke_kiosk(args.kiosk_id):
        print(f"{args.kiosk_id}: no active credential", file=sys.stderr)
        return 1
    print(f"{args.kiosk_id}: revoked; its certificates are refused from now on", file=sys.stderr)
    return 0


def cmd_add_trust_anchor(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import trust_anchors

    for path in args.file:
        anchor, created = trust_anchors.add(path.read_bytes(), args.country.upper(), args.role, args.office)
        print(f"{anchor.sha256} {anchor.country} {anchor.role}: {'added' if created else 'added again'} "
              f"({anchor.subject}); kiosks get it at their next sync round")
    return 0


def cmd_withdraw_trust_anchor(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import trust_anchors

    for sha256 in args.sha256:
        anchor = trust_anchors.withdraw(sha256)
        print(f"{anchor.sha256}: withdrawn ({anchor.subject}); kiosks drop it at their next sync round")
    return 0


def _print_order(invoice: str) -> None:
    from central.orders.api import order_body
    from central.orders.models import Order

    print(json.dumps(order_body(Order.objects.get(invoice=invoice)), ensure_ascii=False, indent=2))


def cmd_confirm(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import clerk

    clerk.confirm(args.invoice)
    _print_order(args.invoice)
    return 0


def cmd_mark_paid(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import clerk

    clerk.mark_paid(args.invoice, args.amount)
    _print_order(args.invoice)
    return 0


def cmd_cancel(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import clerk

    clerk.cancel(args.invoice)
    _print_order(args.invoice)
    return 0


def cmd_show_order(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders.models import Order

    if not Order.objects.filter(invoice=args.invoice).exists():
        print(f"{args.invoice}: no such order", file=sys.stderr)
        return 1
    _print_order(args.invoice)
    return 0


def cmd_set_balance(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import clerk

    organisation = clerk.set_balance(args.register, args.balance_mnt, args.name)
    print(json.dumps({"register": organisation.register, "name": organisation.name,
                      "balance_mnt": organisation.balance_mnt}, ensure_ascii=False))
    return 0


def cmd_show_organisation(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders.models import Organisation

    organisation = Organisation.objects.filter(register=args.register).first()
    if organisation is None:
        print(f"{args.register}: no such organisation", file=sys.stderr)
        return 1
    print(json.dumps({"register": organisation.register, "name": organisation.name,
                      "balance_mnt": organisation.balance_mnt}, ensure_ascii=False))
    return 0


def cmd_load_orders(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders import clerk

    for invoice in clerk.load_orders_file(args.file, args.office):
        print(invoice)
    return 0


Command = Callable[[argparse.Namespace, Path], int]


def cmd_audit(args: argparse.Namespace, data_dir: Path) -> int:
    from central.orders.audit_chain import chain_report

    lines = chain_report(args.kiosk_id)
    print("\n".join(lines))
    return 0 if all("BROKEN" not in line and "OPEN" not in line for line in lines) else 1


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path,
                        help=f"database, CA keys, ca-chain.pem, tls-ca.pem (default: ${DATA_DIR_ENV} "
                             "or ./central-data)")
    parser = argparse.ArgumentParser(
        prog="python -m central",
        description="Tamga central registration service: orders, kiosk identities and the test CA. "
                    "serve writes DIR/ca-chain.pem and DIR/tls-ca.pem (the CA kiosks trust).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("serve", cmd_serve, "Run the API (cheroot, HTTPS with kiosk client certificates) until SIGTERM/Ctrl-C.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8750,
                   help="HTTPS port of the kiosks' API; 0 picks a free one (default: 8750)")
    p.add_argument("--public-port", type=int, default=8751,
                   help="plain HTTP port of the CRLs, OCSP, CA certificates and verification pages that "
                        "certificates name; 0 picks a free one (default: 8751)")
    p.add_argument("--threads", type=int, default=4, help="worker threads (default: 4)")
    p.add_argument("--demo-data", action="store_true", help="load the orders of central/demo_orders.json")
    p.add_argument("--allow-remote", action="store_true",
                   help="permit a --host that is not a loopback address (also list the names clients use "
                        "in $TAMGA_CENTRAL_ALLOWED_HOSTS, space-separated)")
    p.add_argument("--public-host", default=os.environ.get("TAMGA_CENTRAL_PUBLIC_HOST"),
                   help="host[:port] that relying parties reach for CRLs, OCSP and CA certificates, written "
                        "into certificates when the CA hierarchy is created (default: "
                        "$TAMGA_CENTRAL_PUBLIC_HOST, else the bound address and port); {port} is the bound port")
    p.add_argument("--crl-refresh-s", type=float, default=CRL_REFRESH_S, metavar="SECONDS",
                   help="how often to look for revocations made outside the API (default: %(default)s)")
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)

    p = add("init", cmd_init, "Create the database and CA hierarchy, write ca-chain.pem, and exit.")
    p.add_argument("--public-host", default=os.environ.get("TAMGA_CENTRAL_PUBLIC_HOST"),
                   help="host[:port] written into the CA's CRL, OCSP and CA issuer URLs "
                        "(default: $TAMGA_CENTRAL_PUBLIC_HOST)")
    p = add("add-office", cmd_add_office, "Create a registration office (or rename it).")
    p.add_argument("code", help="a-z, 0-9 and '-', at most 32 (the migration creates 'main')")
    p.add_argument("name")
    p = add("add-kiosk", cmd_add_kiosk,
            "Create a kiosk (or re-enroll one) in an office and print a one-time enrollment code for it "
            "(one line per kiosk named; a kiosk's newer code replaces its older one).")
    p.add_argument("kiosk_id", nargs="+")
    p.add_argument("--office", default="main", help="the office whose orders the kiosk sees (default: main)")
    p.add_argument("--valid-hours", type=int, default=24, choices=range(1, 24 * 14 + 1), metavar="HOURS",
                   help="how long the code can be used, 1 to 336 hours (default: 24)")
    p = add("revoke-kiosk", cmd_revoke_kiosk, "Revoke a kiosk: its client certificates are refused at once.")
    p.add_argument("kiosk_id")
    p = add("audit", cmd_audit, "Show a kiosk's audit chain: each branch re-verified, each fork and its rejoin "
                                "(exit 1 when a branch is broken or a fork open).")
    p.add_argument("kiosk_id")
    p = add("add-trust-anchor", cmd_add_trust_anchor,
            "Hand the kiosks national ID authorities' CA certificates (PEM) for a country profile (feeds/trust).")
    p.add_argument("file", type=Path, nargs="+")
    p.add_argument("--country", required=True, help="ID card country profile: MN, KZ or KG")
    p.add_argument("--role", choices=("anchor", "intermediate"),
                   help="a root the kiosks trust, or an issuing CA below one (default: anchor when self-issued)")
    p.add_argument("--office", help="only this office's kiosks (default: every office's)")
    p = add("withdraw-trust-anchor", cmd_withdraw_trust_anchor,
            "Withdraw national ID trust anchors by their SHA-256: kiosks drop them at their next sync round.")
    p.add_argument("sha256", nargs="+")
    p = add("confirm", cmd_confirm, "The holder confirmed the order by e-mail («Баталгаажуулах» → «Шинэ»).")
    p.add_argument("invoice")
    p = add("mark-paid", cmd_mark_paid, "Record the invoice as paid (in full unless --amount is given).")
    p.add_argument("invoice")
    p.add_argument("--amount", type=int, help="total paid so far, MNT")
    p = add("cancel", cmd_cancel, "Cancel an open order.")
    p.add_argument("invoice")
    p = add("show-order", cmd_show_order, "Print an order as the API serves it.")
    p.add_argument("invoice")
    p = add("set-balance", cmd_set_balance, "Set an organisation's balance (MNT), creating it with --name.")
    p.add_argument("register")
    p.add_argument("balance_mnt", type=int)
    p.add_argument("--name")
    p = add("show-organisation", cmd_show_organisation, "Print an organisation's account.")
    p.add_argument("register")
    p = add("load-orders", cmd_load_orders,
            "Add orders (and organisations) from a JSON file shaped like demo_orders.json.")
    p.add_argument("file", type=Path)
    p.add_argument("--office", default="main",
                   help="the office of orders that name none (default: main)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve" and not _is_loopback(args.host) and not args.allow_remote:
        print(f"refusing to bind {args.host}: not a loopback address (add --allow-remote)", file=sys.stderr)
        return 2
    data_dir = (args.data_dir or Path(os.environ.get(DATA_DIR_ENV) or "central-data")).resolve()
    os.umask(0o077)     # the database holds holders' personal data and CA keys: owner only
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    os.environ[DATA_DIR_ENV] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "central.settings"
    if args.command == "serve":
        host = f"[{args.host}]" if ":" in args.host else args.host
        extra_hosts = os.environ.get("TAMGA_CENTRAL_ALLOWED_HOSTS", "")
        public = (args.public_host or "").rsplit(":", 1)[0] if "]" not in (args.public_host or "") \
            else args.public_host.rsplit("]", 1)[0] + "]"
        os.environ["TAMGA_CENTRAL_ALLOWED_HOSTS"] = f"{extra_hosts} {host} {public}".strip()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    from central.orders.clerk import ClerkError
    from central.orders.kiosk_identity import KioskIdentityError
    from central.orders.offices import OfficeError
    from central.orders.trust_anchors import TrustAnchorError

    try:
        return int(args.func(args, data_dir))
    except (ClerkError, KioskIdentityError, OfficeError, TrustAnchorError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
