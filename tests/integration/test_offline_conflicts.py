"""Kiosks of one office that lost the central, on the real stack: the central (django-ca over mutual TLS, on
SQLite and on PostgreSQL), each kiosk's own store and enrolled identity, its link to the central through the
loopback fault proxy (``tests/faultproxy.py``: the network drops every connection while the kiosk is
"offline"), and SoftHSM eTokens; the ID card and the printer are the core's fakes (not under test here).

The same order issued at two kiosks that were both offline: the central issues the first kept request it
applies, the other kiosk is told why and removes the now useless key at the token's next insertion.  A
certificate issued for one kiosk's kept request is installed when the token is next inserted at another
kiosk of the office, and never at a kiosk of another office.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.runner import CentralServer
from devices.certificates import X509Reader
from devices.sim.softhsm import FACTORY_SO_PIN, SoftHsmStore
from devices.token import Pkcs11Token
from kiosk.clerk_desk import ClerkDesk, SessionStatus, refusal_text
from kiosk.clerks import ClerkSignIn
from kiosk.engine import Engine, KioskPolicy, Services
from kiosk.errors import CentralUnavailable
from kiosk.flows import ALL_FLOWS, FlowAccess
from kiosk.flows.issuance import IssuanceStep
from kiosk.i18n import LANGUAGES, Translator
from kiosk.pin import Pin, SoPin
from kiosk.ports import KeyAlgorithm, TokenInfo
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.store import KioskStore, load_or_create_key
from tests.fakes import CARD_PIN, FakeIdCard, FakePrinter
from tests.faultproxy import PASS, Fault, FaultProxy
from tests.integration.conftest import OFFICE_B
from tests.integration.test_central import make_csr, make_key

TOKEN_PIN = "482916"


def load_order(server: CentralServer, directory: Path, office: str = "main") -> dict[str, Any]:
    """A fresh paid order of ``office`` at ``server``, for a holder of its own."""
    order = {
        "invoice": f"9{secrets.randbelow(10**11):011d}", "office": office,
        "holder": {"surname": "Боржигон", "father_name": "Баатар", "given_name": "Ариун",
                   "register_number": f"НЭ{secrets.randbelow(10**8):08d}", "gender": "female",
                   "email": "ariun@example.mn", "phone": "99000000"},
        "organisation": {"name": "АЗ ХХК", "register": "1234567", "department": "Захиргаа"},
        "position": "Нягтлан", "term_years": 1, "etoken": True, "consent_accepted": True, "confirmed": True,
        "paid_mnt": 88_000}
    path = directory / f"order-{order['invoice']}.json"
    path.write_text(json.dumps({"organisations": [], "orders": [order]}, ensure_ascii=False), encoding="utf-8")
    assert server.manage("load-orders", str(path)).split() == [order["invoice"]]
    return order


class Slot:
    """The kiosk's eToken slot over a SoftHSM store holding every kiosk's tokens: only ``inserted`` is in it."""

    def __init__(self, token: Pkcs11Token) -> None:
        self.token = token
        self.inserted = ""

    def present(self) -> TokenInfo:
        return self.token.info(self.inserted)

    def initialise(self, serial: str, current_so_pin: SoPin, new_so_pin: SoPin, label: str, user_pin: Pin) -> TokenInfo:
        info = self.token.initialise(serial, current_so_pin, new_so_pin, label, user_pin)
        self.inserted = info.serial
        return info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.token, name)


class Kiosk(FlowAccess):
    """One enrolled kiosk of the office: its store, engine and sync daemon; ``online`` is its network."""

    def __init__(self, server: CentralServer, directory: Path, token: Pkcs11Token, office: str = "main") -> None:
        self.kiosk_id = f"kiosk-{directory.name}-{secrets.token_hex(3)}"
        identity = server.enroll_kiosk(self.kiosk_id, office, directory=directory / "identity")
        self.online = True
        port = int(server.url.rsplit(":", 1)[1])
        self.proxy = FaultProxy(port, lambda _: PASS if self.online else Fault(drop_request=True)).__enter__()
        self.client = CentralClient(self.proxy.url, identity, timeout_s=5.0)
        self.store = KioskStore(directory / "kiosk.db", load_or_create_key(directory / "kiosk.key"))
        self.slot = Slot(token)
        self.card = FakeIdCard()
        services = Services(self.store, self.client, self.card, self.slot, FakePrinter(), X509Reader())
        self.engine = Engine(services, KioskPolicy(office="Улаанбаатар", factory_so_pin=SoPin(FACTORY_SO_PIN),
                                                   key_algorithm=KeyAlgorithm.P256), ALL_FLOWS)
        self.daemon = SyncDaemon(self.store, self.client, self.kiosk_id, self.engine, feeds=self.client,
                                 sleep=lambda _: None)
        self.desk = ClerkDesk(self.engine, ClerkSignIn(self.store.clerks), self.store, lambda *_: None)

    def visit_until_offline(self, order: dict[str, Any], token_serial: str) -> str:
        """The applicant's visit up to enrollment, where the network is gone: it ends with a pending receipt."""
        self.slot.inserted = token_serial
        self.card.insert("Ариун", "Баатар", order["holder"]["register_number"], secrets.randbelow(2**31))
        f = self.issuance
        sid = f.begin("mn").session_id
        f.consent(sid, True)
        f.find_order(sid, order["invoice"])
        f.read_card(sid)
        f.verify_card_pin(sid, Pin(CARD_PIN))
        f.approve(sid, "clerk-1", f.current(sid).view.documents, False)
        f.prepare_token(sid, Pin(TOKEN_PIN), Pin(TOKEN_PIN))
        assert f.generate_key(sid).step is IssuanceStep.ENROLLMENT
        self.go_offline()
        with pytest.raises(CentralUnavailable):
            f.enroll(sid)
        assert f.defer(sid).step is IssuanceStep.PENDING
        return sid

    def go_offline(self) -> None:
        """Every new connection is dropped; the kept-alive one goes with the link (the client's pool is emptied)."""
        self.online = False
        self.client.close()

    def close(self) -> None:
        self.engine.close()
        self.client.close()
        self.proxy.__exit__(None, None, None)
        self.store.close()


@pytest.fixture
def tokens(softhsm: SoftHsmStore) -> Iterator[tuple[Pkcs11Token, list[str]]]:
    """Two factory-fresh eTokens in one SoftHSM store, and their serials."""
    serials = [softhsm.add_blank_token(), softhsm.add_blank_token()]
    token = Pkcs11Token(softhsm.module, rescan=True)
    token.reload()
    yield token, serials
    token.reload()


def sync_status(server: CentralServer, data_dir: Path, language: str) -> subprocess.CompletedProcess[str]:
    """``python -m sync status`` of the kiosk whose store is in ``data_dir``, in ``language``."""
    config = data_dir / "kiosk.toml"
    config.write_text(f"""[kiosk]
language = "{language}"
data_dir = "{data_dir}"
[central]
url = "{server.url}"
ca_chain = "{server.tls_ca_path}"
[idcard]
trust_anchors = ["{server.ca_chain_path}"]
[token]
factory_so_pin_file = "{data_dir / 'factory-so-pin'}"
""", encoding="utf-8")
    (data_dir / "factory-so-pin").write_text(f"{FACTORY_SO_PIN}\n", encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "sync", "--config", str(config), "status"], capture_output=True,
                          text=True, timeout=120, check=False)


def key_ids(token: Pkcs11Token, serial: str) -> list[bytes]:
    with token.session(serial, Pin(TOKEN_PIN)) as session:
        return session.key_ids()


def test_one_order_issued_at_two_offline_kiosks_is_issued_once_and_the_other_key_removed_at_insertion(
        either_central: CentralServer, tokens: tuple[Pkcs11Token, list[str]], tmp_path: Path) -> None:
    order = load_order(either_central, tmp_path)
    token, (first_serial, second_serial) = tokens
    first, second = Kiosk(either_central, tmp_path / "a", token), Kiosk(either_central, tmp_path / "b", token)
    try:
        sid_a = first.visit_until_offline(order, first_serial)
        first_serial = first.slot.inserted             # SoftHSM may give a re-initialised token a new serial
        sid_b = second.visit_until_offline(order, second_serial)
        second_serial = second.slot.inserted
        key_b = bytes.fromhex(second.store.load(sid_b).data["key_id"])
        assert key_ids(token, second_serial) == [key_b]

        first.online = True                  # the first kiosk's network comes back first: its request is issued
        report = first.daemon.once()
        assert report.error is None and report.queued_sent == 1
        assert first.store.load(sid_a).step == "install"
        second.online = True
        report = second.daemon.once()
        assert report.error is None and report.queued_sent == 1
        refused = second.store.load(sid_b)
        assert refused.step == "refused"
        assert {k: refused.data["refusal"][k] for k in ("reason", "issued_by")} == {
            "reason": "enrollment_conflict", "issued_by": first.kiosk_id}
        certificates = first.client.certificates(order["holder"]["register_number"])
        assert len(certificates) == 1 and certificates[0].token_serial == first_serial       # issued once

        (line,) = second.desk.refused()       # what the clerk's desk and python -m sync status show
        assert line.status is SessionStatus.REFUSED_BY_CENTRAL
        for language in LANGUAGES:
            text = refusal_text(Translator(language), line)
            assert order["invoice"] in text and first.kiosk_id in text and second_serial in text, text
        again = second.daemon.once()            # the refusal is final: nothing is sent again for it
        assert again.error is None and again.queued_sent == 0

        second.slot.inserted = second_serial             # the second token comes back to its kiosk
        (waiting,) = second.issuance.waiting_for_token(second_serial)
        assert waiting.step is IssuanceStep.REFUSED
        ended = second.issuance.remove_unused_key(sid_b, Pin(TOKEN_PIN))
        assert ended.step is IssuanceStep.CANCELLED and key_ids(token, second_serial) == []
        assert refusal_text(Translator("en"), second.desk.line(second.store.load(sid_b))).endswith(
            f"The unused key on eToken {second_serial} was removed.")

        first.slot.inserted = first_serial               # and the first one gets its certificate
        (waiting,) = first.issuance.waiting_for_token(first_serial)
        assert waiting.step is IssuanceStep.INSTALL
        assert first.issuance.install(sid_a, Pin(TOKEN_PIN)).step is IssuanceStep.RECEIPT
        assert [der for _, der in token.public_certificates(first_serial)]
    finally:
        first.close()
        second.close()



def test_an_order_cancelled_at_the_central_while_the_kiosk_was_offline_is_refused_and_said_so(
        central_server: CentralServer, tokens: tuple[Pkcs11Token, list[str]], tmp_path: Path) -> None:
    order = load_order(central_server, tmp_path)
    token, (serial, _) = tokens
    kiosk = Kiosk(central_server, tmp_path / "c", token)
    try:
        sid = kiosk.visit_until_offline(order, serial)
        central_server.manage("cancel", order["invoice"])       # the office cancelled it meanwhile
        kiosk.online = True
        assert kiosk.daemon.once().queued_sent == 1
        refused = kiosk.store.load(sid)
        assert refused.step == "refused"
        assert (refused.data["refusal"]["reason"], refused.data["refusal"]["refusal"]) == (
            "order_not_payable", "cancelled")
        (line,) = kiosk.desk.refused()
        said = (f"Заказ {order['invoice']}: центральный сервис отклонил запрос, сохранённый этим киоском без связи: "
                f"заказ отменён. Неиспользуемый ключ на eToken {kiosk.slot.inserted} будет удалён, когда eToken в "
                "следующий раз вставят в киоск.")
        assert refusal_text(Translator("ru"), line) == said
        status = sync_status(central_server, tmp_path / "c", "ru")
        assert status.returncode == 0, status.stderr
        assert f"refused          {said}" in status.stdout.splitlines()
    finally:
        kiosk.close()


def test_a_certificate_kept_offline_at_one_kiosk_is_installed_at_the_tokens_insertion_at_another_of_the_office(
        central_server: CentralServer, office_b_identity: object, tokens: tuple[Pkcs11Token, list[str]],
        tmp_path: Path) -> None:
    order = load_order(central_server, tmp_path)
    token, (serial, _) = tokens
    deferring, other = Kiosk(central_server, tmp_path / "a", token), Kiosk(central_server, tmp_path / "b", token)
    elsewhere = Kiosk(central_server, tmp_path / "x", token, office=OFFICE_B)
    try:
        sid = deferring.visit_until_offline(order, serial)
        serial = deferring.slot.inserted
        deferring.online = True
        assert deferring.daemon.once().queued_sent == 1            # issued; the holder has gone home
        issued = deferring.store.load(sid).data["certificate"]["serial"]

        elsewhere.slot.inserted = serial                           # a kiosk of another office: nothing for it
        assert elsewhere.issuance.token_inserted("mn") == [] and elsewhere.engine.unfinished() == []
        assert token.public_certificates(serial) == []

        other.slot.inserted = serial                               # the holder inserts it at another kiosk
        (found,) = other.issuance.token_inserted("kk")
        assert found.step is IssuanceStep.INSTALL and found.view.certificate is not None
        assert found.view.certificate.serial == issued and found.view.order is not None
        assert found.view.order.invoice == order["invoice"]
        assert other.issuance.install(found.session_id, Pin(TOKEN_PIN)).step is IssuanceStep.RECEIPT
        assert other.issuance.print_receipt(found.session_id).step is IssuanceStep.DONE
        on_token = [X509Reader().describe(der) for _, der in token.public_certificates(serial)]
        assert [c.serial_hex for c in on_token if not c.is_ca] == [issued]
        with token.session(serial, Pin(TOKEN_PIN)) as session:      # written beside the key it certifies
            key_id = bytes.fromhex(other.store.load(found.session_id).data["key_id"])
            assert session.key_ids() == [key_id]
            assert X509Reader().verify(next(der for kid, der in token.public_certificates(serial) if kid == key_id),
                                       b"challenge", session.sign(key_id, b"challenge"))
        assert other.issuance.token_inserted("kk") == []            # once it is on the token, nothing more
    finally:
        for kiosk in (deferring, other, elsewhere):
            kiosk.close()


def test_a_key_refused_at_one_kiosk_is_removed_when_the_token_is_inserted_at_another_of_the_office(
        central_server: CentralServer, office_b_identity: object, tokens: tuple[Pkcs11Token, list[str]],
        tmp_path: Path) -> None:
    order = load_order(central_server, tmp_path)
    token, (serial, _) = tokens
    keeping, other = Kiosk(central_server, tmp_path / "k", token), Kiosk(central_server, tmp_path / "o", token)
    elsewhere = Kiosk(central_server, tmp_path / "e", token, office=OFFICE_B)
    try:
        sid = keeping.visit_until_offline(order, serial)
        serial = keeping.slot.inserted
        with central_server.client() as demo:          # meanwhile the order is issued for the demo kiosk's request
            demo.enroll(demo.find_order("invoice", order["invoice"]).id, make_csr(make_key("p256")),
                        f"first-{secrets.token_hex(6)}")
        keeping.online = True
        assert keeping.daemon.once().queued_sent == 1 and keeping.store.load(sid).step == "refused"
        assert keeping.daemon.once().pushed >= 1           # its journal says which key on which token

        elsewhere.slot.inserted = serial                   # another office's kiosk reads nothing of it
        assert elsewhere.issuance.token_inserted("mn") == []
        other.slot.inserted = serial                       # the holder brings the token to another kiosk
        (found,) = other.issuance.token_inserted("kk")
        assert found.step is IssuanceStep.REFUSED
        line = other.desk.line(other.store.load(found.session_id))
        assert line.status is SessionStatus.REFUSED_BY_CENTRAL
        said = refusal_text(Translator("kk"), line)
        assert order["invoice"] in said and "demo-kiosk" in said and serial in said, said
        assert other.issuance.remove_unused_key(found.session_id, Pin(TOKEN_PIN)).step is IssuanceStep.CANCELLED
        assert key_ids(token, serial) == []
        assert other.daemon.once().error is None           # its journal says the key is gone
        assert other.issuance.token_inserted("kk") == []   # so no kiosk asks for it again

        keeping.slot.inserted = serial                     # back at the kiosk that kept it: nothing is left to do
        (own,) = keeping.issuance.token_inserted("mn")
        assert own.session_id == sid
        assert keeping.issuance.remove_unused_key(sid, Pin(TOKEN_PIN)).step is IssuanceStep.CANCELLED
    finally:
        for kiosk in (keeping, other, elsewhere):
            kiosk.close()
