"""The app shell: building the kiosk changes nothing (``python -m kiosk check`` builds it); starting it purges."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.errors import ConfigError
from kiosk.shell import app, config
from sync.store import KioskStore, load_or_create_key


def _config(tmp_path: Path) -> config.Config:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test root")])
    now = dt.datetime.now(dt.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "so").write_text("\n")
    text = f"""
[kiosk]
data_dir = "{tmp_path / 'data'}"
retention_days = 1
[central]
ca_chain = "{tmp_path / 'root.pem'}"
[idcard]
trust_anchors = ["{tmp_path / 'root.pem'}"]
[token]
factory_so_pin_file = "{tmp_path / 'so'}"
"""
    (tmp_path / "kiosk.toml").write_text(text)
    return config.load(tmp_path / "kiosk.toml", check_files=False)


def _old_finished_session(cfg: config.Config) -> None:
    data = cfg.kiosk.data_dir
    store = KioskStore(data / "kiosk.db", load_or_create_key(data / "kiosk.key", data / "kiosk.db"))
    state = store.create("old", "issuance", "consent", "mn", {"order": {"holder": "personal data"}})
    store.transition(state, "done", {}, {"kind": "session.cancelled", "final": True})
    store.db.execute("update sessions set finished_at = '2000-01-01T00:00:00+00:00'")
    store.db.execute("update outbox set sent_at = '2000-01-01T00:00:00+00:00'")
    store.close()


def test_building_the_kiosk_purges_nothing_but_starting_it_does(tmp_path: Path) -> None:
    """Defect: ``python -m kiosk check`` purged session data as a side effect of ``build()``."""
    cfg = _config(tmp_path)
    _old_finished_session(cfg)
    kiosk = app.build(cfg)
    try:
        assert kiosk.store.load("old").step == "done"
    finally:
        kiosk.close()
    kiosk = app.start(cfg)
    try:
        assert kiosk.store.unfinished() == [] and list(kiosk.store.db.query("select id from sessions")) == []
    finally:
        kiosk.close()


def test_the_holder_agreement_is_signed_on_the_pkcs11_token_a_fault_wrapper_holds_and_never_skipped(
        tmp_path: Path) -> None:
    """``[token] holder_agreement`` is on by default; a token port without PKCS#11 under it stops start-up."""
    from devices.sim.faults import PullableToken
    from devices.token import Pkcs11Token
    from tests.fakes import FakeToken

    pkcs11 = Pkcs11Token.__new__(Pkcs11Token)           # only its class is looked at: no module loaded
    assert app.pkcs11_token_of(pkcs11) is pkcs11
    assert app.pkcs11_token_of(PullableToken(PullableToken(pkcs11))) is pkcs11
    with pytest.raises(ConfigError) as refused:
        app.pkcs11_token_of(FakeToken())
    assert refused.value.data["setting"] == "token.holder_agreement"
    assert _config(tmp_path).token.holder_agreement


def test_the_kiosk_counts_with_the_central_calendar_the_daemon_kept_without_a_restart(tmp_path: Path) -> None:
    from sync.central_calendar import CalendarFile, CentralCalendar

    cfg = _config(tmp_path)
    kiosk = app.build(cfg)
    try:
        decreed = dt.date(2027, 9, 15)
        assert kiosk.engine.policy.calendar.is_working_day(decreed) and not kiosk.refresh_calendar()
        CalendarFile.in_data_dir(cfg.kiosk.data_dir).keep(CentralCalendar.from_body(
            {"version": "a" * 64, "calendar": {"country": "MN", "holidays": [], "dated_holidays": [str(decreed)]}}))
        assert kiosk.refresh_calendar()                               # the sync daemon, another process, wrote it
        assert not kiosk.engine.policy.calendar.is_working_day(decreed)
        assert kiosk.engine.policy.calendar.annual >= cfg.calendar.annual     # the kiosk's own stay
        assert not kiosk.refresh_calendar()
    finally:
        kiosk.close()
