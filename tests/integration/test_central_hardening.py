"""The central service keeps revocations and its data to itself across restarts."""

from __future__ import annotations

import stat
from pathlib import Path

import requests

from central.runner import CentralServer


def test_revoked_demo_kiosk_stays_revoked_and_data_is_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "central"
    data.mkdir(mode=0o755)               # as an installer might create it
    with CentralServer(data) as server:
        certificate = server.identity.certificate.read_bytes()
        ok = requests.get(f"{server.url}/api/v1/orders", params={"invoice": "147314016754"}, timeout=10,
                          **server.tls)
        assert ok.status_code == 200
        server.manage("revoke-kiosk", "demo-kiosk")
    with CentralServer(data) as again:
        assert again.identity.certificate.read_bytes() == certificate   # no new demo enrollment on restart
        assert not (data / "demo-enrollment-code").exists()
        refused = requests.get(f"{again.url}/api/v1/orders", params={"invoice": "147314016754"}, timeout=10,
                               **again.tls)
        assert refused.status_code == 401 and refused.json()["error"] == "kiosk_certificate_refused"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.iterdir():
        if path.is_file() and path.name.startswith(("central.sqlite3", "secret-key", "demo-enrollment-code")):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name
