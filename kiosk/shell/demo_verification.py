"""The demo's phone: reads the printed receipt's QR code and opens its link in headless chromium.

The QR code is read from the printer emulator's image by zbar (``zbarimg``, Debian ``zbar-tools``),
a decoder nobody here wrote.  Chromium trusts the central's TLS CA through an NSS database in a
throwaway home directory (``certutil``, Debian ``libnss3-tools``), as a phone trusts a public CA: a
page it shows came over verified TLS, not past a certificate warning.  The link names the central's
public host; the demo's central listens on 127.0.0.1, so chromium resolves that one name there.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
PAGE_TIMEOUT_S = 30


class VerificationUnavailable(RuntimeError):
    """A tool the demo's phone needs is not installed; the message says which and how to get it."""


@dataclass(frozen=True)
class VerificationPage:
    url: str            # what the receipt's QR code holds
    status: str         # the page's data-status (good, revoked, expired), "unknown" without one
    status_text: str    # what the page says of it, in the phone's language


def read_qr(image: Path) -> str:
    """The text of the one QR code in ``image``, as zbar decodes it.  Raises ValueError if there is none."""
    if shutil.which("zbarimg") is None:
        raise VerificationUnavailable("zbarimg is not installed (apt-get install zbar-tools)")
    run = subprocess.run(["zbarimg", "--raw", "--quiet", "-Sdisable", "-Sqrcode.enable", str(image)],
                         capture_output=True, check=False, timeout=30)
    codes = run.stdout.decode("utf-8").splitlines()
    if run.returncode != 0 or len(codes) != 1:
        raise ValueError(f"{image.name}: expected one QR code, zbarimg read {len(codes)} (exit {run.returncode})")
    return codes[0]


def trusting_home(ca_pem: Path, home: Path) -> Path:
    """A home directory whose NSS database (``~/.pki/nssdb``, chromium's on Linux) trusts ``ca_pem`` for TLS."""
    if shutil.which("certutil") is None:
        raise VerificationUnavailable("certutil is not installed (apt-get install libnss3-tools)")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for command in (["-N", "--empty-password"], ["-A", "-n", "Tamga central TLS CA", "-t", "C,,", "-i", str(ca_pem)]):
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", *command], check=True, capture_output=True, timeout=30)
    return home


def open_on_phone(url: str, screenshot: Path, language: str, ca_pem: Path,
                  address: str = "127.0.0.1") -> tuple[str, str]:
    """Open ``url`` in headless chromium on a phone-sized screen trusting ``ca_pem``; save ``screenshot``.

    The URL's host name is resolved to ``address``.  Returns the page's status and its text.
    """
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise VerificationUnavailable("chromium is not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError as err:
        raise VerificationUnavailable("selenium is not installed (pip install -e '.[dev]')") from err
    host = urlsplit(url).hostname or ""
    with tempfile.TemporaryDirectory(prefix="tamga-phone-") as scratch:
        home = trusting_home(ca_pem, Path(scratch) / "home")
        options = Options()
        options.binary_location = str(CHROMIUM)
        arguments = ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--disable-gpu", "--window-size=390,844",
                     f"--user-data-dir={Path(scratch) / 'profile'}"]
        if not _is_address(host):
            arguments.append(f"--host-resolver-rules=MAP {host} {address}")
        for argument in arguments:
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"intl.accept_languages": language})
        service = Service(str(CHROMEDRIVER), env={**os.environ, "HOME": str(home)})
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(PAGE_TIMEOUT_S)
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
            driver.get(url)
            driver.save_screenshot(str(screenshot))
            found = driver.find_elements(By.ID, "status")
            if not found:
                return "unknown", str(driver.find_element(By.TAG_NAME, "body").text)
            return str(found[0].get_attribute("data-status")), str(found[0].text)
        finally:
            driver.quit()


def scan_receipt(receipt: Path, screenshot: Path, language: str, ca_pem: Path) -> VerificationPage:
    """What a phone does with the receipt: read its QR code, open the link, show the page."""
    url = read_qr(receipt)
    if not url.startswith("https://"):
        raise ValueError(f"the receipt's QR code holds {url!r}, not an https link")
    return VerificationPage(url, *open_on_phone(url, screenshot, language, ca_pem))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
