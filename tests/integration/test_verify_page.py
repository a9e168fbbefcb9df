"""The verification page over plain HTTP: states, languages, what it reveals, not found, rate limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from central.runner import REPO_ROOT, CentralServer
from kiosk import register
from sync.central_client import CentralClient
from tests.integration.test_central import NewOrder, find, make_csr, make_key


def issue(client: CentralClient, new_order: NewOrder) -> tuple[dict[str, object], str]:
    placed = new_order()
    order = find(client, placed["invoice"])
    return placed, client.enroll(order.id, make_csr(make_key("p256")), f"verify-{uuid.uuid4()}").serial_hex


def get(server: CentralServer, serial: str, **headers: str) -> requests.Response:
    return requests.get(f"{server.public_url}/verify/{serial}", headers=headers, timeout=10)


def test_valid_certificate_page_shows_only_what_the_receipt_shows(
        central_server: CentralServer, central_client: CentralClient, new_order: NewOrder) -> None:
    placed, serial = issue(central_client, new_order)
    response = get(central_server, serial, **{"Accept-Language": "mn-MN,mn;q=0.9,en;q=0.5"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Language"] == "mn"
    page = response.text
    assert '<meta name="viewport"' in page and "<script" not in page.lower()
    holder = placed["holder"]
    assert isinstance(holder, dict)
    assert "Б.Ариун" in page and register.masked(holder["register_number"]) in page
    assert "хүчинтэй" in page and "Tamga Qualified Issuing CA" in page and serial in page
    # Validity as Mongolian writes dates (CLDR via the kiosk's Translator), in Ulaanbaatar time.
    assert len(re.findall(r"\d{4}\u202fоны \d{1,2}-р сарын \d{1,2} \d{2}:\d{2}", page)) == 2
    # Nothing beyond the receipt: no full register number, surname, e-mail, phone, organisation, invoice.
    for secret in (holder["register_number"], holder["surname"], holder["email"], holder["phone"],
                   placed["invoice"], "Баатар Ариун"):
        assert str(secret) not in page


@pytest.mark.parametrize(("accept", "expected", "word"), [
    ("kk-KZ,kk;q=0.9", "kk", "Куәліктің"), ("ky", "ky", "Сертификатты текшерүү"),
    ("ru-RU,ru;q=0.8,en;q=0.7", "ru", "Статус"),
    ("en-US,en;q=0.9", "en", "Status"), ("de-DE,fr;q=0.8", "mn", "Төлөв"), ("", "mn", "Төлөв"),
])
def test_language_from_accept_language(central_server: CentralServer, central_client: CentralClient,
                                       new_order: NewOrder, accept: str, expected: str, word: str) -> None:
    _, serial = issue(central_client, new_order)
    response = get(central_server, serial, **{"Accept-Language": accept})
    assert response.headers["Content-Language"] == expected
    assert f'<html lang="{expected}">' in response.text and word in response.text
    for code in ("mn", "kk", "ky", "ru", "en"):          # every other language is one link away
        assert (f'href="?lang={code}"' in response.text) == (code != expected)


def test_lang_parameter_overrides_the_browser(central_server: CentralServer, central_client: CentralClient,
                                              new_order: NewOrder) -> None:
    _, serial = issue(central_client, new_order)
    response = requests.get(f"{central_server.public_url}/verify/{serial}", params={"lang": "en"},
                            headers={"Accept-Language": "ru"}, timeout=10)
    assert response.headers["Content-Language"] == "en" and "Status: valid" in response.text


@pytest.mark.parametrize("serial", ["ABCDEF0123456789", "not-hex", "0"])
def test_unknown_serial_is_a_calm_404_page(central_server: CentralServer, serial: str) -> None:
    response = get(central_server, serial, **{"Accept-Language": "en"})
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "No such certificate was found" in response.text


def test_too_many_requests_from_one_address_get_a_429_page(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAMGA_VERIFY_RATE_PER_MINUTE", "5")
    with CentralServer(tmp_path / "central") as server:
        codes = [get(server, "ABCDEF", **{"Accept-Language": "en"}).status_code for _ in range(7)]
        assert codes == [404] * 5 + [429] * 2
        response = get(server, "ABCDEF", **{"Accept-Language": "en"})
        assert response.headers["Retry-After"] == "60" and "Too many requests" in response.text
        assert re.search(r"<html lang=\"en\">", response.text)
        # The API is not limited by the page's limit.
        assert requests.get(f"{server.public_url}/api/v1/health", timeout=10).status_code == 200


def expire_in_database(server: CentralServer, serial: str) -> None:
    """Move the certificate's notAfter (as django-ca's database holds it) into the past: the API cannot
    issue an expired certificate, and the page's status reads the database."""
    script = ("import datetime as dt, django; django.setup(); from django.utils import timezone; "
              "from django_ca.models import Certificate; "
              f"Certificate.objects.filter(serial={serial!r}).update(not_after=timezone.now() - dt.timedelta(days=1))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "central.settings", "TAMGA_CENTRAL_DATA_DIR": str(server.data_dir)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60, cwd=REPO_ROOT)


def test_expired_certificate_page(central_server: CentralServer, central_client: CentralClient,
                                  new_order: NewOrder) -> None:
    _, serial = issue(central_client, new_order)
    expire_in_database(central_server, serial)
    response = get(central_server, serial, **{"Accept-Language": "en"})
    assert response.status_code == 200
    assert 'data-status="expired"' in response.text and "Status: expired" in response.text
