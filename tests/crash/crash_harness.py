"""The crash harness: run a flow in a child kiosk, SIGKILL it at a kill point, restart it until the
session ends, then check what a power cut must never leave behind.

The world (one per test session) is the real stack: a private pcscd with vpcd readers, the
reference central (django-ca, SQLite) on loopback, the LD_PRELOAD shim.  Each kill point gets a
fresh :class:`Visit`: its own SoftHSM token store, printer emulator, national ID card (a holder of
its own), order(s) at the central and kiosk credentials, so the counts of one point are its own.

After the session ends the harness checks:

* the session reached ``done`` (or stopped, or was cancelled, with an explained error, which the table shows);
* exactly one key pair per issuance on the token, one certificate for each key, no certificate
  twice (counted with python-pkcs11 in a child, and again with ``pkcs11-tool -O --login``);
* the central holds exactly the certificates the token holds for the order (none voided, none extra);
* no lost record: every journal transition has its outbox event, every outbox event was sent and is
  in the central's inbox, every audit entry is in the central's chain;
* no duplicate receipt: each receipt was printed once as an original; every further copy the
  printer emulator received was marked REPRINT.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from central.runner import CentralServer
from devices.sim.national_ca import CardHolder, NationalIdCa
from devices.sim.pcscd import PrivatePcscd
from devices.sim.stack import CARD_PIN, SimulatedStack

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHILD = HERE / "crash_child.py"
TOKEN_PIN = "482916"
NEW_TOKEN_PIN = "509173"
CHILD_TIMEOUT_S = 90
MAX_RESTARTS = 4
FULL = os.environ.get("TAMGA_CRASH", "") == "full"     # every kill point of every flow

# A flow's scenario: the phases before it (run without a kill point) and the phase that is killed.
# Each phase: the flow, and which kiosk runs it ("a" issued the token; "b" never saw it).
SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "issuance": [{"flow": "issuance", "kiosk": "a"}],
    "issuance-offline": [{"flow": "issuance", "kiosk": "a", "offline": True}],
    "renewal": [{"flow": "issuance", "kiosk": "a"}, {"flow": "renewal", "kiosk": "a"}],
    "revocation": [{"flow": "issuance", "kiosk": "a"}, {"flow": "revocation", "kiosk": "a"}],
    "unblock": [{"flow": "issuance", "kiosk": "a"}, {"flow": "unblock", "kiosk": "b", "pin_blocked": True}],
    "check": [{"flow": "issuance", "kiosk": "a"}, {"flow": "check", "kiosk": "a"}],
}
RECEIPTS = {"issuance": 1, "issuance-offline": 2, "renewal": 1, "revocation": 1, "unblock": 0, "check": 0}
KEY_PAIRS = {"renewal": 2}           # the new key beside the old one; every other scenario: one


def build_shim(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "killshim.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "killshim.c"), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return out


class World:
    """The stack every kill point shares: pcscd, the central, the shim; orders and kiosks made in batches."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pcscd = PrivatePcscd(workdir / "pcscd").start()
        try:
            self.central = CentralServer(workdir / "central").start()
        except BaseException:
            self.pcscd.stop()
            raise
        self.shim = build_shim(workdir / "shim")
        self.national_id = workdir / "national-id"
        NationalIdCa.create(self.national_id)
        self._numbers = itertools.count(secrets.randbelow(10**6) * 100)
        self._visits = itertools.count(1)
        self._pool: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        self.unreachable_url = "https://127.0.0.1:9"    # discard port: nothing listens, connections are refused

    def stop(self) -> None:
        self.central.stop()
        self.pcscd.stop()

    def central_db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.central.data_dir / "central.sqlite3", timeout=20)
        db.row_factory = sqlite3.Row
        return db

    @property
    def central_port(self) -> int:
        return int(self.central.url.rsplit(":", 1)[1])

    def order(self, short_lived: bool) -> dict[str, Any]:
        """A paid, confirmed order of a holder of its own (``short_lived``: a 20-day pilot, due for renewal)."""
        if not self._pool[short_lived]:
            self._load_orders(short_lived, 12)
        return self._pool[short_lived].pop()

    def _load_orders(self, short_lived: bool, count: int) -> None:
        register = f"{next(self._numbers) % 10**7:07d}"
        orders = []
        for _ in range(count):
            number = next(self._numbers) % 10**8
            order: dict[str, Any] = {
                "invoice": f"8{secrets.randbelow(10**11):011d}",
                "holder": {"surname": "Боржигон", "father_name": "Баатар", "given_name": "Ариун",
                           "register_number": f"НЭ{number:08d}", "gender": "female",
                           "email": "ariun@example.mn", "phone": "99000000"},
                "organisation": {"name": f"Тест {register} ХХК", "register": register, "department": "Захиргаа"},
                "position": "Нягтлан", "term_years": 1, "etoken": True, "consent_accepted": True,
                "confirmed": True, "paid_mnt": 88_000}
            if short_lived:
                order["validity_days"] = 20
            orders.append(order)
        path = self.workdir / f"orders-{register}.json"
        path.write_text(json.dumps({"organisations": [{"register": register, "name": f"Тест {register} ХХК",
                                                       "balance_mnt": 10_000_000}], "orders": orders},
                                   ensure_ascii=False), encoding="utf-8")
        assert len(self.central.manage("load-orders", str(path)).split()) == count
        self._pool[short_lived] += orders

    def visit(self, scenario: str) -> Visit:
        return Visit(self, scenario, self.workdir / f"visit-{next(self._visits):03d}")


@dataclass
class Run:
    """What happened at one kill point."""

    point: str
    kills: int = 0
    restarts: int = 0
    outcome: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def result(self) -> str:
        if self.failures:
            return "FAILED: " + "; ".join(self.failures)
        if self.outcome.get("stopped"):
            return f"stopped: {self.outcome['stopped']} ({self.outcome['message']})"
        return str(self.outcome.get("step"))


class Visit:
    """One kill point's devices, order and kiosks; :meth:`run` plays the scenario, :meth:`check` judges it."""

    def __init__(self, world: World, scenario: str, directory: Path) -> None:
        self.world = world
        self.scenario = scenario
        self.dir = directory
        self.order = world.order(short_lived=scenario == "renewal")
        register = self.order["holder"]["register_number"]
        self.holder = CardHolder(given_name="Ариун", surname="Баатар", register_number=register)
        shutil.copytree(world.national_id, directory / "national-id")    # loaded, not created again
        self.stack = SimulatedStack(directory).start(pcscd=world.pcscd, central=world.central)
        self.stack.insert_card(self.holder)
        self.kiosks: dict[str, Path] = {}
        self.attempts = directory / "print-attempts.jsonl"
        self.blocked_marker = directory / "token-pin-blocked"
        self.certificate_serial: str | None = None
        self.token_pin = TOKEN_PIN
        self.failure_log = ""

    def close(self) -> None:
        self.stack.stop()

    def kiosk_config(self, name: str) -> Path:
        """kiosk.toml of kiosk ``name`` (its own id, credential and data directory) on this visit's devices."""
        if name not in self.kiosks:
            kiosk_id = f"crash-{self.dir.name}-{name}"
            identity = self.world.central.enroll_kiosk(kiosk_id, directory=self.dir / f"identity-{name}")
            text = self.stack.config_path.read_text(encoding="utf-8")
            text = text.replace('id = "demo-kiosk"', f'id = "{kiosk_id}"')
            for setting, value in (("ca_chain", identity.ca_chain), ("client_certificate", identity.certificate),
                                   ("client_key", identity.key)):
                text = re.sub(rf'^{setting} = .*$', f'{setting} = "{value}"', text, flags=re.M)
            text = re.sub(r'^data_dir = .*$', f'data_dir = "{self.dir / ("kiosk-" + name)}"', text, flags=re.M)
            path = self.dir / f"kiosk-{name}.toml"
            path.write_text(text, encoding="utf-8")
            self.kiosks[name] = path
        return self.kiosks[name]

    def spec(self, phase: dict[str, Any], kill: str | None = None, record: Path | None = None) -> dict[str, Any]:
        assert self.stack.printer is not None
        return {"flow": phase["flow"], "config": str(self.kiosk_config(phase["kiosk"])),
                "offline": phase.get("offline", False), "unreachable_url": self.world.unreachable_url,
                "invoice": self.order["invoice"], "card_pin": CARD_PIN, "token_pin": self.token_pin,
                "new_token_pin": NEW_TOKEN_PIN, "certificate_serial": self.certificate_serial,
                "ports": {"central": self.world.central_port, "printer": self.stack.printer.port},
                "print_attempts": str(self.attempts),
                "pin_blocked_marker": str(self.blocked_marker) if phase.get("pin_blocked") else None,
                "kill": kill, "record": str(record) if record else None}

    def child(self, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        path = self.dir / "spec.json"
        path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        env = {**os.environ, **self.stack.env, "LD_PRELOAD": str(self.world.shim), "TAMGA_LOG_LEVEL": "ERROR",
               "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, str(CHILD), str(path)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT_S, check=False)

    def phase(self, phase: dict[str, Any], run: Run | None, record: Path | None = None) -> dict[str, Any]:
        """Run a phase to its end; with ``run``, the first child is killed at ``run.point`` and restarted."""
        if phase.get("pin_blocked"):
            self.blocked_marker.touch()
        kill = run.point if run is not None else None
        for _ in range(MAX_RESTARTS + 1):
            done = self.child(self.spec(phase, kill, record))
            if done.returncode == -9 and kill is not None:
                assert run is not None
                run.kills += 1
                run.restarts += 1
                kill = None              # the power comes back: the kiosk starts again, as it would
                continue
            if done.returncode != 0:
                raise AssertionError(f"child exited with {done.returncode}:\n{done.stdout[-2000:]}\n"
                                     f"{done.stderr[-4000:]}")
            outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            if outcome.get("certificate_serial") and phase["flow"] == "issuance":
                self.certificate_serial = outcome["certificate_serial"]
            if phase["flow"] == "unblock":
                self.token_pin = NEW_TOKEN_PIN
            return outcome
        raise AssertionError(f"still killed after {MAX_RESTARTS} restarts")

    def prepare(self) -> None:
        for phase in SCENARIOS[self.scenario][:-1]:
            outcome = self.phase(phase, None)
            assert outcome["step"] == "done", outcome

    def dry_run(self, record: Path) -> dict[str, Any]:
        self.prepare()
        outcome = self.phase(SCENARIOS[self.scenario][-1], None, record)
        assert outcome["step"] == "done", f"the dry run, killed nowhere, did not finish: {outcome}"
        counts: dict[str, Any] = json.loads(record.read_text())
        return counts

    def run(self, point: str) -> Run:
        run = Run(point)
        started = time.perf_counter()
        try:
            self.prepare()
            jobs_before = len(self.printer_jobs())
            self.attempts.unlink(missing_ok=True)
            run.outcome = self.phase(SCENARIOS[self.scenario][-1], run)
            if run.kills == 0:
                run.failures.append("the kill point was not reached")
            run.failures += self.check(run.outcome, jobs_before)
        except AssertionError as err:          # a child that failed otherwise than killed: in the table
            run.failures.append(str(err).strip().splitlines()[-1][:300])
            self.failure_log = str(err)
        finally:
            run.seconds = time.perf_counter() - started
            self.close()
        return run

    # -- the checks -------------------------------------------------------------------------------------
    def printer_jobs(self) -> list[Path]:
        assert self.stack.printer is not None
        return list(self.stack.printer.jobs)

    def check(self, outcome: dict[str, Any], jobs_before: int) -> list[str]:
        failures: list[str] = []
        if outcome.get("stopped"):
            if not outcome.get("message") or outcome["message"] == outcome["stopped"]:
                failures.append(f"stopped without an explanation: {outcome['stopped']}")
        elif outcome.get("step") == "cancelled" and outcome.get("errors"):
            # The visit ended with its reason (e.g. a token wiped by the power cut): explained if translated.
            if any(text == key for key, text in zip(outcome["errors"], outcome.get("messages", []), strict=False)) \
                    or not outcome.get("messages"):
                failures.append(f"cancelled without an explanation: {outcome['errors']}")
        elif outcome.get("step") != "done":
            failures.append(f"ended at {outcome.get('step')} ({outcome.get('errors')})")
        if outcome.get("sessions", 1) != 1:
            failures.append(f"{outcome['sessions']} sessions of the flow (a restart began a second one)")
        if outcome.get("sync", {}).get("error"):
            failures.append(f"sync round failed: {outcome['sync']['error']}")
        if outcome.get("step") == "done":
            failures += self.check_token()
            failures += self.check_receipts(jobs_before)
            if self.scenario == "revocation":
                failures += self.check_revoked()
        failures += self.check_records()
        return failures

    def token_objects(self) -> dict[str, Any]:
        assert self.stack.softhsm is not None
        spec = {"mode": "inspect", "module": self.stack.softhsm.module, "pin": self.token_pin}
        done = self.child(spec)
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return found

    def pkcs11_tool_counts(self) -> Counter[str]:
        assert self.stack.softhsm is not None
        listed = subprocess.run(
            ["pkcs11-tool", "--module", self.stack.softhsm.module, "--token-label",
             f"TAMGA {self.order_ascii_register()}", "-O", "--login", "--pin", self.token_pin],
            env={**os.environ, **self.stack.softhsm.env}, capture_output=True, text=True, timeout=30, check=False)
        return Counter(m for m in re.findall(r"^(Private Key|Public Key|Certificate) Object", listed.stdout, re.M))

    def order_ascii_register(self) -> str:
        from kiosk import register

        return register.to_ascii(self.order["holder"]["register_number"])

    def check_token(self) -> list[str]:
        failures = []
        found = self.token_objects()
        private = [o["id"] for o in found["PRIVATE_KEY"]]
        public = [o["id"] for o in found["PUBLIC_KEY"]]
        certs = found["CERTIFICATE"]
        holder_certs = [c for c in certs if c["id"] in private]
        wanted = KEY_PAIRS.get(self.scenario, 1)
        if found["tokens"] != 1:
            failures.append(f"{found['tokens']} initialised tokens")
        if sorted(private) != sorted(public) or len(private) != wanted or len(set(private)) != wanted:
            failures.append(f"key pairs on the token: private {private}, public {public} (want {wanted})")
        if sorted(c["id"] for c in holder_certs) != sorted(set(private)):
            failures.append(f"{len(holder_certs)} holder certificates for {len(private)} keys")
        if len({c["value"] for c in certs}) != len(certs):
            failures.append("a certificate is on the token twice")
        tool = self.pkcs11_tool_counts()
        if (tool["Private Key"], tool["Public Key"], tool["Certificate"]) != (len(private), len(public), len(certs)):
            failures.append(f"pkcs11-tool -O counts {dict(tool)}, python-pkcs11 "
                            f"{len(private)}/{len(public)}/{len(certs)}")
        serials = {format(x509.load_der_x509_certificate(bytes.fromhex(c["value"])).serial_number, "X")
                   for c in holder_certs}
        failures += self.check_central(serials)
        return failures

    def check_central(self, token_serials: set[str]) -> list[str]:
        with self.world.central_db() as db:
            rows = db.execute(
                "select e.certificate_serial, e.voided_at from orders_enrollment e join orders_order o "
                "on e.order_id = o.id where o.invoice = ?", (self.order["invoice"],)).fetchall()
        issued = {r["certificate_serial"].upper().lstrip("0") for r in rows if r["voided_at"] is None}
        voided = [r["certificate_serial"] for r in rows if r["voided_at"] is not None]
        on_token = {s.upper().lstrip("0") for s in token_serials}
        failures = []
        if issued != on_token:
            failures.append(f"central certificates {sorted(issued)} != token's {sorted(on_token)}")
        if voided:
            failures.append(f"voided enrollments at the central: {voided}")
        return failures

    def check_revoked(self) -> list[str]:
        """The chosen certificate is revoked at the central, by one request."""
        serial = (self.certificate_serial or "").upper()
        with self.world.central_db() as db:
            requests = db.execute("select count(*) from orders_revocationrequest where upper(certificate_serial) = ?",
                                  (serial,)).fetchone()[0]
            revoked = [r[0] for r in db.execute("select revoked from django_ca_certificate where serial = ?",
                                                (serial.replace(":", ""),))]
        failures = []
        if requests != 1:
            failures.append(f"{requests} revocation requests for {serial}")
        if revoked != [1]:
            failures.append(f"certificate {serial} at the central: revoked {revoked}")
        return failures

    def check_records(self) -> list[str]:
        failures = []
        with self.world.central_db() as central:
            for name in self.kiosks:
                kiosk_id = f"crash-{self.dir.name}-{name}"
                db = sqlite3.connect(f"file:{self.dir / ('kiosk-' + name) / 'kiosk.db'}?mode=ro", uri=True)
                try:
                    # version 0 (created) is journaled and audited, never an outbox event: steps are
                    transitions = db.execute("select count(*) from transitions where version > 0").fetchone()[0]
                    outbox, unsent = db.execute(
                        "select count(*), count(*) - count(sent_at) from outbox").fetchone()
                    audit = db.execute("select count(*) from audit").fetchone()[0]
                    keys = {f"{kiosk_id}/{r[0]}" for r in db.execute("select id from outbox")}
                finally:
                    db.close()
                inbox = {r[0] for r in central.execute("select key from orders_inboxevent where kiosk_id = ?",
                                                       (kiosk_id,))}
                chain = central.execute("select count(*) from orders_auditlink where kiosk_id = ?",
                                        (kiosk_id,)).fetchone()[0]
                if outbox != transitions:
                    failures.append(f"kiosk {name}: {transitions} journal transitions, {outbox} outbox events")
                if unsent:
                    failures.append(f"kiosk {name}: {unsent} events never sent")
                if inbox != keys:
                    failures.append(f"kiosk {name}: inbox lacks {len(keys - inbox)}, has {len(inbox - keys)} unknown")
                if chain != audit:
                    failures.append(f"kiosk {name}: {audit} audit entries, {chain} at the central")
        return failures

    def check_receipts(self, jobs_before: int) -> list[str]:
        lines = self.attempts.read_text().splitlines() if self.attempts.exists() else []
        attempts = [json.loads(line) for line in lines]
        jobs = len(self.printer_jobs()) - jobs_before
        failures = []
        originals = Counter(a["title"] for a in attempts if not a["reprint"])
        wanted = RECEIPTS[self.scenario]
        if len(originals) != wanted or any(n != 1 for n in originals.values()):
            failures.append(f"original receipts printed {dict(originals)} (want {wanted} different, once each)")
        if jobs > len(attempts):
            failures.append(f"the printer received {jobs} jobs for {len(attempts)} attempts")
        if jobs < wanted:
            failures.append(f"the printer received {jobs} jobs, {wanted} receipts wanted")
        first = {}
        for a in attempts:
            first.setdefault(a["title"], a)
        if any(a["reprint"] for a in first.values()):
            failures.append("a first print was marked REPRINT")
        return failures


def table(runs: list[Run]) -> str:
    width = max((len(r.point) for r in runs), default=10)
    lines = [f"{'kill point':<{width}}  kills  restarts  seconds  outcome"]
    lines += [f"{r.point:<{width}}  {r.kills:5d}  {r.restarts:8d}  {r.seconds:7.1f}  {r.result}" for r in runs]
    return "\n".join(lines)


def clean(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
