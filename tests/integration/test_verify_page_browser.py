"""The verification page in a real headless browser (Debian chromium + chromium-driver, selenium 4).

JavaScript is switched off: the page must work without it.  The browser's language comes from
its ``intl.accept_languages`` preference; a phone-sized window (390×844).  Screenshots of each
state are saved in the test's tmp directory.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from central.runner import CentralServer
from kiosk import register
from kiosk.i18n import catalogue
from sync.central_client import CentralClient
from tests.integration.test_central import NewOrder, find, make_csr, make_key

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                reason="Debian chromium and chromium-driver are not installed "
                                       "(apt-get install chromium chromium-driver)")

KK_REVOKED = catalogue("kk")["check.status.revoked"]
KY_EXPIRED = catalogue("ky")["check.status.expired"]
Browser = Callable[[str], Any]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """``browser(language)`` starts headless chromium preferring ``language``; all are quit afterwards."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    started: list[Any] = []

    def start(language: str) -> Any:
        options = Options()
        options.binary_location = CHROMIUM
        profile = tmp_path / f"profile-{len(started)}"
        for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-gpu",
                    "--window-size=390,844", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {
            "intl.accept_languages": language,
            "profile.managed_default_content_settings.javascript": 2,      # no JavaScript
        })
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(30)
        # A phone: 390×844 CSS pixels, touch, the page's viewport meta honoured.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()
    shutil.rmtree(tmp_path / "profile-0", ignore_errors=True)


def issue(client: CentralClient, new_order: NewOrder) -> tuple[dict[str, Any], str]:
    placed = new_order()
    order = find(client, placed["invoice"])
    return placed, client.enroll(order.id, make_csr(make_key("p256")), f"browser-{uuid.uuid4()}").serial_hex


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def test_valid_certificate_in_mongolian_then_english(central_server: CentralServer, central_client: CentralClient,
                                                     new_order: NewOrder, browser: Browser,
                                                     tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    placed, serial = issue(central_client, new_order)
    driver = browser("mn,en")
    driver.get(f"{central_server.public_url}/verify/{serial}")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "mn"
    assert text(driver, "status") == "Төлөв: хүчинтэй"
    assert text(driver, "holder") == "Б.Ариун"
    assert text(driver, "register") == register.masked(placed["holder"]["register_number"])
    assert text(driver, "issuer") == "Tamga Qualified Issuing CA"
    assert text(driver, "serial") == serial
    widths = driver.execute_cdp_cmd("Runtime.evaluate", {
        "expression": "[document.documentElement.scrollWidth, window.innerWidth]", "returnByValue": True})
    scroll_width, inner_width = widths["result"]["value"]
    assert inner_width == 390 and scroll_width <= inner_width        # no sideways scrolling on a phone
    driver.save_screenshot(str(tmp_path / "verify-valid-mn.png"))

    driver.find_element(By.LINK_TEXT, "English").click()        # a plain link: works without JavaScript
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert text(driver, "status") == "Status: valid"
    driver.save_screenshot(str(tmp_path / "verify-valid-en.png"))
    assert (tmp_path / "verify-valid-mn.png").stat().st_size > 1000


def test_revoked_certificate_in_kazakh(central_server: CentralServer, central_client: CentralClient,
                                       new_order: NewOrder, browser: Browser, tmp_path: Path) -> None:
    placed, serial = issue(central_client, new_order)
    response = requests.post(f"{central_server.url}/api/v1/certificates/{serial}/revocation",
                             json={"reason": "key_compromise", "register_number": placed["holder"]["register_number"],
                                   "idempotency_key": f"browser-{uuid.uuid4()}"},
                             **central_server.tls, timeout=20)
    assert response.status_code in (200, 201)
    driver = browser("kk-KZ,kk,ru")
    driver.get(f"{central_server.public_url}/verify/{serial}")
    assert text(driver, "status") == f"Күйі: {KK_REVOKED}"
    assert driver.find_element("id", "status").get_attribute("data-status") == "revoked"
    assert text(driver, "revoked-at")
    driver.save_screenshot(str(tmp_path / "verify-revoked-kk.png"))


def test_unknown_serial_is_a_calm_not_found_page(central_server: CentralServer, browser: Browser,
                                                 tmp_path: Path) -> None:
    driver = browser("ru")
    driver.get(f"{central_server.public_url}/verify/ABCDEF0123")
    assert text(driver, "message") == "Такой сертификат не найден. Проверьте номер на квитанции."
    driver.save_screenshot(str(tmp_path / "verify-not-found-ru.png"))


def test_expired_certificate_in_kyrgyz(central_server: CentralServer, central_client: CentralClient,
                                       new_order: NewOrder, browser: Browser, tmp_path: Path) -> None:
    from tests.integration.test_verify_page import expire_in_database

    _, serial = issue(central_client, new_order)
    expire_in_database(central_server, serial)
    driver = browser("ky")
    driver.get(f"{central_server.public_url}/verify/{serial}")
    assert driver.find_element("id", "status").get_attribute("data-status") == "expired"
    assert text(driver, "status") == f"Абалы: {KY_EXPIRED}"
    driver.save_screenshot(str(tmp_path / "verify-expired-ky.png"))
