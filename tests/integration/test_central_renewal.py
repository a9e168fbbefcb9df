"""Remote renewal (shared seed 003) against the real central over HTTP: terms, the signed application,
the organisation's balance, the deadline of three working days."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from central.runner import CentralServer
from kiosk.errors import CentralRejected
from kiosk.order import compute_fees
from kiosk.ports import CertificateStatus, IssuedCertificate, RevocationReason
from kiosk.workdays import WorkCalendar, default_calendar
from sync.central_client import CentralClient, csr_pem
from tests.integration.test_central import NewOrder, PrivateKey, find, idem, make_csr, make_key

UB = ZoneInfo("Asia/Ulaanbaatar")
ERDENE_PILOT_INVOICE = "147314100021"


def sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


class Holder:
    """A holder with an issued certificate (its key in hand) whose organisation has its own balance."""

    def __init__(self, client: CentralClient, new_order: NewOrder, balance: int = 200_000,
                 key_kind: str = "p256", validity_days: int = 20, token: str = "TKRENEW") -> None:
        self.order = new_order(organisation_balance=balance, validity_days=validity_days)
        self.key = make_key(key_kind)
        self.client = client
        self.idempotency_key = idem()
        self.issued: IssuedCertificate = client.enroll(
            find(client, self.order["invoice"]).id, make_csr(self.key), self.idempotency_key, token_serial=token)
        self.serial = self.issued.serial_hex

    def application(self, term: int = 1, **changes: Any) -> dict[str, Any]:
        application = {
            "type": "tamga.renewal-application/1",
            "certificate_serial": self.serial,
            "holder": {"name": "Баатар Ариун", "register_number": self.order["holder"]["register_number"]},
            "organisation": {"name": self.order["organisation"]["name"],
                             "register": self.order["organisation"]["register"]},
            "term_years": term,
            "fee_mnt": compute_fees(term, etoken=False).total,
            "details_unchanged": True,
            "requested_at": dt.datetime.now(UB).isoformat(timespec="seconds"),
        }
        application.update(changes)
        return application

    def renew(self, application: dict[str, Any] | None = None, key: PrivateKey | None = None,
              new_key: PrivateKey | None = None, idempotency_key: str | None = None) -> IssuedCertificate:
        data = json.dumps(application or self.application(), ensure_ascii=False, sort_keys=True,
                          separators=(",", ":")).encode()
        return self.client.renew(self.serial, data, sign(key or self.key, data),
                                 make_csr(new_key or make_key("p256")), idempotency_key or idem())

    def balance(self, server: CentralServer) -> int:
        shown = json.loads(server.manage("show-organisation", self.order["organisation"]["register"]))
        return int(shown["balance_mnt"])


def refusal(call: Callable[[], object]) -> dict[str, Any]:
    with pytest.raises(CentralRejected) as info:
        call()
    return info.value.data


def ub_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(UB).date()


# --- terms ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("term_years", [1, 2])
def test_renewal_terms(central_client: CentralClient, new_order: NewOrder, term_years: int) -> None:
    holder = Holder(central_client, new_order, balance=123_000)
    terms = central_client.renewal_terms(holder.serial, term_years)
    assert terms.certificate_serial == holder.serial
    assert terms.not_after == holder.issued.not_after
    assert terms.last_request_day == default_calendar("MN").last_request_day(ub_date(holder.issued.not_after))
    assert (terms.organisation, terms.organisation_register) == \
        (holder.order["organisation"]["name"], holder.order["organisation"]["register"])
    assert (terms.balance_mnt, terms.term_years) == (123_000, term_years)
    assert terms.fees == compute_fees(term_years, etoken=False)
    assert terms.fees.total == 44_000 * term_years


def test_renewal_terms_refusals(central_server: CentralServer, central_client: CentralClient,
                                new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order)
    url = f"{central_server.url}/api/v1/certificates/{holder.serial}/renewal"
    for params in ({}, {"term_years": "3"}, {"term_years": "x"}):
        response = requests.get(url, params=params, **central_server.tls, timeout=10)
        assert response.status_code == 400 and response.json()["error"] == "invalid_query", params
    assert refusal(lambda: central_client.renewal_terms("ABCDEF01", 1)) == \
        {"reason": "certificate_not_found", "status": 404}
    no_account = new_order(organisation={"name": "Данс Байхгүй ХХК", "register": "9999990",
                                         "department": "Санхүү"})
    issued = central_client.enroll(find(central_client, no_account["invoice"]).id, make_csr(make_key("p256")),
                                   idem())
    assert refusal(lambda: central_client.renewal_terms(issued.serial_hex, 1)) == \
        {"reason": "organisation_unknown", "status": 409}


def test_demo_data_has_organisations_and_a_pilot_order_for_erdene(central_server: CentralServer,
                                                                   central_client: CentralClient) -> None:
    rich = json.loads(central_server.manage("show-organisation", "1234567"))
    poor = json.loads(central_server.manage("show-organisation", "7654321"))
    assert rich["name"] == "АЗ ХХК" and rich["balance_mnt"] >= 44_000
    assert poor["balance_mnt"] < 44_000
    order = find(central_client, ERDENE_PILOT_INVOICE)
    assert order.holder.full_name == "Дорж Эрдэнэ" and order.holder.register_number == "ШУ78787878"
    shown = json.loads(central_server.manage("show-order", ERDENE_PILOT_INVOICE))
    assert shown["status"] == "paid"


# --- renewal -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key_kind", "term_years"), [("p256", 1), ("rsa2048", 2)])
def test_renewal_issues_a_new_certificate_and_takes_the_fee(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder,
        key_kind: str, term_years: int) -> None:
    holder = Holder(central_client, new_order, balance=200_000, key_kind=key_kind)
    new_key = make_key("p256")
    key_id = idem()
    renewed = holder.renew(holder.application(term_years), new_key=new_key, idempotency_key=key_id)

    new = x509.load_pem_x509_certificate(renewed.certificate_pem.encode())
    old = x509.load_pem_x509_certificate(holder.issued.certificate_pem.encode())
    assert new.subject == old.subject and new.issuer == old.issuer
    assert new.serial_number != old.serial_number
    assert renewed.public_key_sha256 != holder.issued.public_key_sha256
    validity = new.not_valid_after_utc - new.not_valid_before_utc
    assert abs(validity - dt.timedelta(days=365 * term_years)) <= dt.timedelta(days=2)
    assert new.extensions.get_extension_for_class(x509.KeyUsage).value.content_commitment
    fee = compute_fees(term_years, etoken=False).total
    assert holder.balance(central_server) == 200_000 - fee

    record = central_client.certificate(renewed.serial_hex)
    assert record.token_serial == "TKRENEW" and record.status is CertificateStatus.GOOD
    assert [r.serial_hex for r in central_client.certificates(holder.order["holder"]["register_number"])] == \
        [renewed.serial_hex, holder.serial]

    # A repeat with the same idempotency key: the same certificate, nothing taken again (200).
    assert holder.renew(holder.application(term_years), new_key=new_key, idempotency_key=key_id) == renewed
    assert holder.balance(central_server) == 200_000 - fee
    # Renewed once: another key, another request, is refused.
    assert refusal(lambda: holder.renew(holder.application(term_years))) == \
        {"reason": "already_renewed", "status": 409, "renewed_by": renewed.serial_hex}


def test_repeated_renewal_answers_200(central_server: CentralServer, central_client: CentralClient,
                                      new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order)
    data = json.dumps(holder.application(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    body = {"application": base64.b64encode(data).decode(),
            "signature": base64.b64encode(sign(holder.key, data)).decode(),
            "csr": csr_pem(make_csr(make_key("p256"))), "idempotency_key": idem()}
    url = f"{central_server.url}/api/v1/certificates/{holder.serial}/renewals"
    first = requests.post(url, json=body, **central_server.tls, timeout=10)
    again = requests.post(url, json=body, **central_server.tls, timeout=10)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert set(first.json()) == {"certificate", "chain", "serial", "not_before", "not_after"}


def test_signature_must_be_the_certificates_key_over_the_exact_bytes(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order, balance=100_000)
    assert refusal(lambda: holder.renew(key=make_key("p256"))) == {"reason": "signature_invalid", "status": 400}
    data = json.dumps(holder.application(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    respaced = json.dumps(json.loads(data), sort_keys=True, ensure_ascii=False).encode()   # same JSON, other bytes
    assert refusal(lambda: central_client.renew(holder.serial, respaced, sign(holder.key, data),
                                                make_csr(make_key("p256")), idem())) == \
        {"reason": "signature_invalid", "status": 400}
    assert holder.balance(central_server) == 100_000


@pytest.mark.parametrize(("change", "field"), [
    ({"type": "tamga.renewal-application/2"}, "type"),
    ({"certificate_serial": "0ABC"}, "certificate_serial"),
    ({"holder": {"name": "Дорж Эрдэнэ", "register_number": "НЭ80000000"}}, "holder.name"),
    ({"holder": {"name": "Баатар Ариун", "register_number": "ШУ78787878"}}, "holder.register_number"),
    ({"organisation": {"name": "Өөр ХХК", "register": "0000000"}}, "organisation.name"),
    ({"term_years": 3}, "term_years"),
    ({"fee_mnt": 1}, "fee_mnt"),
    ({"requested_at": "2020-01-01T00:00:00+08:00"}, "requested_at"),
    ({"requested_at": "2026-12-01T10:00:00"}, "requested_at"),
    ({"details_unchanged": "yes"}, "details_unchanged"),
])
def test_application_must_match_the_certificate_and_terms(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder,
        change: dict[str, Any], field: str) -> None:
    holder = Holder(central_client, new_order, balance=100_000)
    if field == "holder.name":
        change = {"holder": {**change["holder"], "register_number": holder.order["holder"]["register_number"]}}
    assert refusal(lambda: holder.renew(holder.application(**change))) == \
        {"reason": "application_mismatch", "status": 409, "field": field}
    assert holder.balance(central_server) == 100_000


def test_changed_details_are_refused(central_server: CentralServer, central_client: CentralClient,
                                     new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order, balance=100_000)
    assert refusal(lambda: holder.renew(holder.application(details_unchanged=False))) == \
        {"reason": "details_changed", "status": 409}
    assert holder.balance(central_server) == 100_000


def test_a_revoked_certificate_is_not_renewable(central_client: CentralClient, new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order)
    central_client.revoke(holder.serial, RevocationReason.AFFILIATION_CHANGED,
                          holder.order["holder"]["register_number"], idem())
    expected = {"reason": "certificate_not_renewable", "status": 409, "certificate_status": "revoked"}
    assert refusal(lambda: holder.renew()) == expected
    assert refusal(lambda: central_client.renewal_terms(holder.serial, 1)) == expected


def test_insufficient_balance_takes_nothing(central_server: CentralServer, central_client: CentralClient,
                                            new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order, balance=20_000)
    assert refusal(lambda: holder.renew()) == {"reason": "insufficient_balance", "status": 409,
                                               "balance": 20_000, "due": 44_000, "shortfall": 24_000}
    assert holder.balance(central_server) == 20_000
    central_server.manage("set-balance", holder.order["organisation"]["register"], "44000")
    holder.renew()
    assert holder.balance(central_server) == 0


def test_the_new_key_must_differ(central_client: CentralClient, new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order)
    assert refusal(lambda: holder.renew(new_key=holder.key)) == {"reason": "key_reused", "status": 409}


def test_the_csr_is_checked_as_at_enrollment(central_client: CentralClient, new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert refusal(lambda: holder.renew(new_key=small)) == {"reason": "key_unsupported", "status": 400}


def test_a_voided_renewal_gives_the_fee_back(central_server: CentralServer, central_client: CentralClient,
                                             new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order, balance=100_000)
    key_id = idem()
    renewed = holder.renew(idempotency_key=key_id)
    assert holder.balance(central_server) == 56_000
    assert central_client.void_enrollment(key_id) == renewed.serial_hex
    assert holder.balance(central_server) == 100_000
    assert central_client.certificate(renewed.serial_hex).status is CertificateStatus.REVOKED
    assert refusal(lambda: holder.renew(idempotency_key=key_id))["reason"] == "enrollment_void"
    holder.renew()                                  # the old certificate may be renewed again
    assert holder.balance(central_server) == 56_000


def test_renewal_after_the_last_request_day_is_too_late(central_server: CentralServer,
                                                        central_client: CentralClient, new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order, validity_days=2, balance=100_000)
    terms = central_client.renewal_terms(holder.serial, 1)
    assert terms.last_request_day < dt.datetime.now(UB).date()
    assert refusal(lambda: holder.renew()) == {"reason": "renewal_too_late", "status": 409,
                                               "last_request_day": terms.last_request_day.isoformat()}
    assert holder.balance(central_server) == 100_000


def _days_until_deadline_is_today(calendar: WorkCalendar) -> int:
    now = dt.datetime.now(dt.UTC)
    today = ub_date(now)
    for days in range(1, 30):
        if calendar.last_request_day(ub_date(now + dt.timedelta(days=days))) == today:
            return days
    raise AssertionError("no validity gives today as the last request day")


def test_a_holiday_tomorrow_moves_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TAMGA_EXTRA_HOLIDAYS adds a decreed holiday: a request on time yesterday's way is now too late."""
    calendar = default_calendar("MN")
    days = _days_until_deadline_is_today(calendar)
    today = dt.datetime.now(UB).date()
    holiday = today + dt.timedelta(days=1)
    while not calendar.is_working_day(holiday):
        holiday += dt.timedelta(days=1)
    monkeypatch.setenv("TAMGA_EXTRA_HOLIDAYS", f"2030-01-02, {holiday.isoformat()}")
    with CentralServer(tmp_path / "central") as server, CentralClient(server.url, server.identity) as client:
        placed: dict[str, Any] = {
            "invoice": "900000000001",
            "holder": {"father_name": "Баатар", "given_name": "Ариун", "register_number": "НЭ12121212"},
            "organisation": {"name": "АЗ ХХК", "register": "1234567", "department": ""},
            "term_years": 1, "validity_days": days, "consent_accepted": True, "confirmed": True,
            "paid_mnt": 88_000}
        path = tmp_path / "order.json"
        path.write_text(json.dumps([placed], ensure_ascii=False), encoding="utf-8")
        server.manage("load-orders", str(path))
        key = make_key("p256")
        issued = client.enroll(find(client, placed["invoice"]).id, make_csr(key), idem())
        terms = client.renewal_terms(issued.serial_hex, 1)
        assert default_calendar("MN").last_request_day(ub_date(issued.not_after)) == today
        assert terms.last_request_day < today
        application = {"type": "tamga.renewal-application/1", "certificate_serial": issued.serial_hex,
                       "holder": {"name": "Баатар Ариун", "register_number": "НЭ12121212"},
                       "organisation": {"name": "АЗ ХХК", "register": "1234567"}, "term_years": 1,
                       "fee_mnt": 44_000, "details_unchanged": True,
                       "requested_at": dt.datetime.now(UB).isoformat()}
        data = json.dumps(application, ensure_ascii=False).encode()
        with pytest.raises(CentralRejected) as info:
            client.renew(issued.serial_hex, data, sign(key, data), make_csr(make_key("p256")), idem())
        assert info.value.data == {"reason": "renewal_too_late", "status": 409,
                                   "last_request_day": terms.last_request_day.isoformat()}


def test_renewal_request_refusals(central_server: CentralServer, central_client: CentralClient,
                                  new_order: NewOrder) -> None:
    holder = Holder(central_client, new_order)
    url = f"{central_server.url}/api/v1/certificates/{holder.serial}/renewals"
    good = {"application": base64.b64encode(b"{}").decode(), "signature": "AAAA",
            "csr": csr_pem(make_csr(make_key("p256"))), "idempotency_key": idem()}
    for body, code in (({**good, "application": "%%%"}, "invalid_request"),
                       ({**good, "signature": 5}, "invalid_request"),
                       ({**good, "csr": "nope"}, "csr_invalid"),
                       ({**good, "idempotency_key": ""}, "invalid_request")):
        response = requests.post(url, json=body, **central_server.tls, timeout=10)
        assert response.status_code == 400 and response.json()["error"] == code, body
    not_json = b"not json"
    response = requests.post(url, **central_server.tls, timeout=10, json={
        **good, "application": base64.b64encode(not_json).decode(),
        "signature": base64.b64encode(sign(holder.key, not_json)).decode()})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
