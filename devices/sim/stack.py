"""All simulated hardware and the local central service, started together and described by a kiosk.toml.

Used by ``python -m devices.sim``, ``make demo``, the features and the benchmarks, so that all of
them meet the kiosk exactly as configured in the field: the kiosk reads only its configuration
and the environment this stack prints.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from central.runner import CentralServer
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.national_ca_services import NationalIdServices
from devices.sim.pcscd import PrivatePcscd
from devices.sim.printer_emulator import PrinterEmulator
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.sim.vcard import VirtualPivCard

ARIUN = CardHolder(given_name="Ариун", surname="Баатар", register_number="НЭ80000000")
ERDENE = CardHolder(given_name="Эрдэнэ", surname="Дорж", register_number="ШУ78787878")
CARD_PIN = "730419"   # the virtual ID cards' PIN
DEMO_INVOICE = "147314016754"


@dataclass
class SimulatedStack:
    """``workdir`` holds everything; ``central_template`` (optional) is a central data dir to copy.

    Copying an initialised central data dir skips creating its CA hierarchy again (tests start a
    fresh central per scenario this way).
    """

    workdir: Path
    central_template: Path | None = None
    key_algorithm: str = "rsa2048"
    holder_agreement: bool = False
    """``[token] holder_agreement`` (the product's default is on): off unless asked, for the tests of the
    other steps; the demo, the screens drive and the agreement's own tests turn it on."""
    language: str = "mn"
    office: str = "МонПасс СА, Бүртгэлийн нэгж — Улаанбаатар"
    pcscd: PrivatePcscd | None = None
    national_ca: NationalIdCa | None = None
    national_services: NationalIdServices | None = None      # its CRL and OCSP responder on loopback
    softhsm: SoftHsmStore | None = None
    printer: PrinterEmulator | None = None
    central: CentralServer | None = None
    card: VirtualPivCard | None = None
    token_serials: list[str] = field(default_factory=list)

    def start(self, pcscd: PrivatePcscd | None = None, central: CentralServer | None = None) -> SimulatedStack:
        """Start what is not given; a shared pcscd or central may be passed in (test sessions).

        Starting a started stack does nothing (``with stack.start(...)`` is safe).
        """
        if self.central is not None:
            return self
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.pcscd = pcscd or PrivatePcscd(self.workdir / "pcscd").start()
            self._own_pcscd = pcscd is None
            self.national_ca = NationalIdCa.create(self.workdir / "national-id")
            self.national_services = NationalIdServices(self.national_ca).start()
            self.softhsm = SoftHsmStore(self.workdir / "softhsm")
            self.token_serials.append(self.softhsm.add_blank_token())
            self.printer = PrinterEmulator(self.workdir / "printed").start()
            if central is None:
                central_dir = self.workdir / "central"
                if self.central_template is not None and not central_dir.exists():
                    shutil.copytree(self.central_template, central_dir)
                central = CentralServer(central_dir).start()
                self._own_central = True
            else:
                self._own_central = False
            self.central = central
            self.write_config()
        except BaseException:
            self.stop()
            raise
        return self

    # -- configuration -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.workdir / "kiosk.toml"

    @property
    def env(self) -> dict[str, str]:
        assert self.pcscd is not None and self.softhsm is not None
        return {**self.pcscd.env, **self.softhsm.env, "TAMGA_CONFIG": str(self.config_path)}

    def write_config(self) -> None:
        assert self.pcscd and self.national_ca and self.softhsm and self.printer and self.central
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        so_pin_file = secrets_dir / "token-factory-so-pin"
        so_pin_file.write_text(FACTORY_SO_PIN + "\n")
        so_pin_file.chmod(0o600)
        identity = self.central.identity      # the demo kiosk, enrolled when the central started
        anchors = ", ".join(f'"{p}"' for p in self.national_ca.trust_anchor_paths)
        inters = ", ".join(f'"{p}"' for p in self.national_ca.intermediate_paths)
        self.config_path.write_text(f"""# Written by devices.sim: the kiosk on simulated devices.
[kiosk]
id = "demo-kiosk"
office = "{self.office}"
language = "{self.language}"
data_dir = "{self.workdir / 'kiosk-data'}"

[central]
url = "{self.central.url}"
ca_chain = "{identity.ca_chain}"
client_certificate = "{identity.certificate}"
client_key = "{identity.key}"

[idcard]
reader = "{self.pcscd.reader_names[0]}"
trust_anchors = [{anchors}]
intermediates = [{inters}]
wait_s = 5.0

[identity]
revocation = "ocsp-then-crl"       # the test national CA's OCSP responder and CRL on loopback
crl_grace_days = 3

[token]
module = "{self.softhsm.module}"
factory_so_pin_file = "{so_pin_file}"
key_algorithm = "{self.key_algorithm}"
rescan = true
holder_agreement = {"true" if self.holder_agreement else "false"}

[printer]
kind = "network"
address = "127.0.0.1:{self.printer.port}"

[receipt]
qr_template = "{self.central.public_https_url}/verify/{{serial}}"   # the verification page, on the HTTPS listener
""", encoding="utf-8")

    # -- the applicant's card --------------------------------------------------------------------------
    def insert_card(self, holder: CardHolder = ARIUN, personalisation: CardPersonalisation | None = None,
                    **card_options: object) -> VirtualPivCard:
        """Put a virtual ID card of ``holder`` into the first reader (removing any card there)."""
        assert self.pcscd is not None and self.national_ca is not None
        self.remove_card()
        perso = personalisation or self.national_ca.issue_card(holder, pin=CARD_PIN)
        self.card = VirtualPivCard(perso, self.pcscd.vpcd_port, **card_options)  # type: ignore[arg-type]
        self.card.insert()
        if not self.card.wait_connected(10.0):
            raise RuntimeError("the virtual card did not reach vpcd")
        return self.card

    def remove_card(self) -> None:
        if self.card is not None:
            self.card.remove()
            self.card = None

    def stop(self) -> None:
        self.remove_card()
        if self.national_services is not None:
            self.national_services.stop()
        if self.printer is not None:
            self.printer.stop()
        if self.central is not None and getattr(self, "_own_central", True):
            self.central.stop()
        if self.pcscd is not None and getattr(self, "_own_pcscd", True):
            self.pcscd.stop()

    def __enter__(self) -> SimulatedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def apply_env(stack: SimulatedStack) -> None:
    """Point this process's pyscard and SoftHSM at the stack (before the first pyscard call)."""
    os.environ.update(stack.env)
