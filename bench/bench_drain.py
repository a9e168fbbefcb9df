"""P4: draining queued enrollments ÷ the central's raw signing throughput for the same number, same run (≥ 0.8).

A real central on loopback (mutual TLS, django-ca signing).  The kiosk side is the real store, engine
and sync daemon; the queued enrollments are ``--records`` issuance sessions at ``pending``, as an
offline visit leaves them (the order as the central gave it, a CSR, its idempotency key and key
digest, the token), written straight into the store — the devices are not part of a drain, so the
engine gets none.  Then:

- raw: the same number of enrollments of other orders, sent one after the other with the same client;
- drain: ``SyncDaemon.once()`` rounds until nothing is queued: each session's request goes out with
  its idempotency key, the certificate is checked against the key and the session moves to install.

It prints ``P4 … 0.NN`` = raw time ÷ drain time.  ``--records 10000`` is the issue's figure (about
10 minutes here); the default 100 keeps ``make bench`` short.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central.runner import CentralServer
from devices.certificates import X509Reader
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.flows import ALL_FLOWS
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key

TARGET = 0.8
TOKEN = {"serial": "BENCH0000001", "model": "SoftHSM v2", "label": "TAMGA"}


def _orders(count: int, first_invoice: int) -> list[dict[str, Any]]:
    return [{"invoice": f"{first_invoice + i:012d}",
             "holder": {"surname": "Боржигон", "father_name": "Баатар", "given_name": "Ариун",
                        "register_number": f"НЭ{10_000_000 + first_invoice % 1000 * 10_000 + i:08d}",
                        "gender": "female", "email": "ariun@example.mn", "phone": "99000000"},
             "organisation": {"name": "АЗ ХХК", "register": "1234567", "department": "Захиргаа"},
             "position": "Нягтлан", "term_years": 1, "etoken": True, "consent_accepted": True,
             "confirmed": True, "paid_mnt": 88_000} for i in range(count)]


def _csr() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
           .sign(key, hashes.SHA256()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return csr.public_bytes(serialization.Encoding.DER), hashlib.sha256(spki).hexdigest()


def _load(central: CentralServer, orders: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps({"organisations": [], "orders": orders}, ensure_ascii=False), encoding="utf-8")
    central.manage("load-orders", str(path), timeout_s=600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100)
    args = parser.parse_args(argv)
    n = args.records
    with tempfile.TemporaryDirectory(prefix="tamga-drain-") as tmp, CentralServer(Path(tmp) / "central") as central:
        raw_orders, queued_orders = _orders(n, 910_000_000_000), _orders(n, 920_000_000_000)
        _load(central, raw_orders + queued_orders, Path(tmp) / "orders.json")
        store = KioskStore(Path(tmp) / "kiosk.db", load_or_create_key(Path(tmp) / "kiosk.key"))
        with central.client(timeout_s=30.0) as client:
            raw_requests = [(client.find_order("invoice", o["invoice"]).id, *_csr()) for o in raw_orders]
            for i, o in enumerate(queued_orders):
                csr, digest = _csr()
                order = client.find_order("invoice", o["invoice"])
                state = store.create(f"queued-{i}", "issuance", "pending", "mn", {})
                store.transition(state, "pending", {
                    "order": order.to_dict(), "csr": base64.b64encode(csr).decode("ascii"),
                    "idempotency_key": f"bench-drain/{i}", "public_key_sha256": digest, "token": TOKEN,
                }, {"kind": "enrollment.deferred"})
            started = time.perf_counter()
            for i, (order_id, csr, _) in enumerate(raw_requests):
                client.enroll(order_id, csr, f"bench-raw/{i}")
            raw_s = time.perf_counter() - started
            devices: Any = None      # a drain touches no device
            engine = Engine(Services(store, client, devices, devices, devices, X509Reader()),
                            KioskPolicy(office="main"), ALL_FLOWS)
            daemon = SyncDaemon(store, client, "demo-kiosk", engine, sleep=lambda _: None)
            started = time.perf_counter()
            sent = 0
            while engine.queued_calls():
                report = daemon.once()
                if report.error is not None:
                    print(f"P4: a round failed: {report.error.key} {report.error.data}")
                    return 1
                sent += report.queued_sent
            drain_s = time.perf_counter() - started
            installed = sum(1 for s in store.unfinished() if s.step == "install")
            engine.close()
        store.close()
    ratio = raw_s / drain_s
    print(f"P4 drain of {n} queued enrollments ÷ raw signing of {n}: {ratio:.2f} (target ≥ {TARGET}) "
          f"{'ok' if ratio >= TARGET else 'UNDER TARGET'}")
    print(f"P4 raw {raw_s:.1f} s ({n / raw_s:.1f}/s), drain {drain_s:.1f} s ({n / drain_s:.1f}/s), "
          f"{sent} sent, {installed} sessions now at install")
    return 0 if ratio >= TARGET and installed == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
