"""Revocation of the ID card on the real stack: pcscd + vpcd + a virtual PIV card, and the test national
CA's OCSP responder and CRL over HTTP on loopback (devices/sim/national_ca_services.py).

OCSP decides when it answers, and every answer that cannot be trusted refuses the card; only an
unreachable responder lets the CRL decide, and a CRL past nextUpdate only within the offline grace.
OpenSSL (a tool nobody here wrote) checks the responder, the CRL and the OCSP answer the kiosk kept.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from devices.idcard import IdCardReader
from devices.revocation import RevocationChecker, RevocationMode, RevocationPolicy
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.national_ca_services import NationalIdServices, OcspMode
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardRevoked, RevocationUnknown
from kiosk.pin import Pin

InsertCard = Callable[..., VirtualPivCard]
HOLDER = CardHolder(given_name="Сарнай", surname="Дамдин", register_number="УБ92010134")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> NationalIdCa:
    return NationalIdCa.create(tmp_path_factory.mktemp("revocation-pki"))


@pytest.fixture(scope="module")
def services(ca: NationalIdCa) -> Iterator[NationalIdServices]:
    with NationalIdServices(ca) as running:
        yield running


@pytest.fixture(autouse=True)
def _responder_answers(services: NationalIdServices) -> None:
    services.ocsp_mode = OcspMode.GOOD
    services.crl_available = True
    services.crl_age = dt.timedelta(0)
    services.crl_replay = None


def _card(ca: NationalIdCa, services: NationalIdServices) -> CardPersonalisation:
    assert ca.services_url == services.url
    return ca.issue_card(HOLDER, key_type="p256")


def _checker(tmp_path: Path, ca: NationalIdCa, grace_days: float = 3, shift: dt.timedelta = dt.timedelta(0),
             mode: RevocationMode = RevocationMode.OCSP_THEN_CRL) -> RevocationChecker:
    return RevocationChecker(tmp_path / "crl-cache", RevocationPolicy(mode, dt.timedelta(days=grace_days), 2.0),
                             clock=lambda: dt.datetime.now(dt.UTC) + shift, issuers=list(ca.intermediates))


@pytest.fixture
def reader_with(reader_name: str, ca: NationalIdCa) -> Iterator[Callable[[RevocationChecker], IdCardReader]]:
    readers: list[IdCardReader] = []

    def make(checker: RevocationChecker) -> IdCardReader:
        reader = IdCardReader(reader_name, ca.trust_anchors, ca.intermediates, revocation=checker)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


def test_a_good_card_passes_by_ocsp_and_signs(tmp_path: Path, ca: NationalIdCa, services: NationalIdServices,
                                              insert_card: InsertCard, reader_with: Callable[..., IdCardReader],
                                              ) -> None:
    card = _card(ca, services)
    insert_card(card)
    reader = reader_with(_checker(tmp_path, ca))
    identity = reader.read_identity()
    status = identity.revocation
    assert status is not None and status.method == "ocsp" and not status.grace_used
    answer = ocsp.load_der_ocsp_response(status.ocsp_response)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == card.certificate.serial_number
    signed = reader.authenticate(Pin(card.pin), os.urandom(32), expected_sha256=identity.certificate_sha256)
    assert signed.algorithm == "ecdsa-p256-sha256"


def test_a_revoked_card_is_refused_by_ocsp(tmp_path: Path, ca: NationalIdCa, services: NationalIdServices,
                                           insert_card: InsertCard, reader_with: Callable[..., IdCardReader]) -> None:
    card = _card(ca, services)
    ca.revoke(card.certificate)
    insert_card(card)
    before = services.crl_requests
    with pytest.raises(CardRevoked) as refused:
        reader_with(_checker(tmp_path, ca)).read_identity()
    assert refused.value.data["method"] == "ocsp"
    assert refused.value.data["revocation_reason"] == "keyCompromise"
    assert services.crl_requests == before, "OCSP answered: the CRL is not needed"


def test_with_ocsp_down_a_fresh_crl_refuses_a_revoked_card(tmp_path: Path, ca: NationalIdCa,
                                                           services: NationalIdServices, insert_card: InsertCard,
                                                           reader_with: Callable[..., IdCardReader]) -> None:
    card = _card(ca, services)
    ca.revoke(card.certificate)
    services.ocsp_mode = OcspMode.DOWN
    insert_card(card)
    with pytest.raises(CardRevoked) as refused:
        reader_with(_checker(tmp_path, ca)).read_identity()
    assert refused.value.data["method"] == "crl"


def test_offline_grace_lets_a_cached_crl_decide_and_says_so_then_runs_out(
        tmp_path: Path, ca: NationalIdCa, services: NationalIdServices, insert_card: InsertCard,
        reader_with: Callable[..., IdCardReader]) -> None:
    card = _card(ca, services)
    insert_card(card)
    services.ocsp_mode = OcspMode.DOWN
    fresh = reader_with(_checker(tmp_path, ca)).read_identity().revocation
    assert fresh is not None and fresh.method == "crl" and not fresh.grace_used and fresh.crl_number
    cache = tmp_path / "crl-cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in cache.iterdir()} == {0o600}

    services.crl_available = False                        # now the kiosk is offline: OCSP and CRL DP
    two_days_on = reader_with(_checker(tmp_path, ca, shift=dt.timedelta(days=2))).read_identity().revocation
    assert two_days_on is not None and two_days_on.grace_used and two_days_on.crl_number == fresh.crl_number
    with pytest.raises(RevocationUnknown) as beyond:       # nextUpdate + 4 days > the 3 days of grace
        reader_with(_checker(tmp_path, ca, shift=dt.timedelta(days=5))).read_identity()
    assert beyond.value.data["reason"] == "crl_stale"
    with pytest.raises(RevocationUnknown):                 # grace 0: hard-fail
        reader_with(_checker(tmp_path, ca, grace_days=0, shift=dt.timedelta(days=2))).read_identity()


def test_a_forged_ocsp_answer_is_refused_though_the_crl_would_pass(
        tmp_path: Path, ca: NationalIdCa, services: NationalIdServices, insert_card: InsertCard,
        reader_with: Callable[..., IdCardReader]) -> None:
    card = _card(ca, services)
    insert_card(card)
    services.ocsp_mode = OcspMode.FORGED
    with pytest.raises(RevocationUnknown) as refused:
        reader_with(_checker(tmp_path, ca)).read_identity()
    assert refused.value.data["reason"] == "ocsp_responder_untrusted"


@pytest.mark.parametrize(("mode", "reason"), [
    (OcspMode.BAD_SIGNATURE, "ocsp_bad_signature"),
    (OcspMode.UNKNOWN, "ocsp_unknown"),
    (OcspMode.STALE, "ocsp_stale"),
    (OcspMode.FUTURE, "ocsp_future"),
    (OcspMode.WRONG_NONCE, "ocsp_nonce_mismatch"),
])
def test_an_untrustworthy_ocsp_answer_is_refused_hard(tmp_path: Path, ca: NationalIdCa,
                                                      services: NationalIdServices, mode: OcspMode,
                                                      reason: str) -> None:
    card = _card(ca, services)
    services.ocsp_mode = mode
    with pytest.raises(RevocationUnknown) as refused:
        _checker(tmp_path, ca).check(card.certificate, ca.issuing)
    assert refused.value.data["reason"] == reason


def test_an_unreachable_responder_falls_back_to_the_crl_and_ocsp_only_refuses(
        tmp_path: Path, ca: NationalIdCa, services: NationalIdServices) -> None:
    card = _card(ca, services)
    services.ocsp_mode = OcspMode.TRY_LATER
    status = _checker(tmp_path, ca).check(card.certificate, ca.issuing)
    assert status.method == "crl"
    services.ocsp_mode = OcspMode.DOWN
    with pytest.raises(RevocationUnknown) as refused:
        _checker(tmp_path, ca, mode=RevocationMode.OCSP).check(card.certificate, ca.issuing)
    assert refused.value.data["reason"] == "ocsp_unreachable"


def test_a_card_without_revocation_urls_has_unknown_status(tmp_path: Path, ca: NationalIdCa) -> None:
    bare = NationalIdCa.issue_self_signed_card(HOLDER)
    with pytest.raises(RevocationUnknown) as refused:
        _checker(tmp_path, ca).check(bare.certificate, ca.issuing)
    assert refused.value.data["reason"] == "no_crl_url"


def test_refresh_fetches_only_the_crls_that_are_due(tmp_path: Path, ca: NationalIdCa,
                                                    services: NationalIdServices) -> None:
    card = _card(ca, services)
    services.ocsp_mode = OcspMode.DOWN
    first = _checker(tmp_path, ca).check(card.certificate, ca.issuing)
    assert _checker(tmp_path, ca).refresh() == {services.crl_url: "fresh"}
    later = _checker(tmp_path, ca, shift=dt.timedelta(days=2))
    assert later.refresh() == {services.crl_url: "fetched"}
    again = later.check(card.certificate, ca.issuing)
    assert again.crl_number is not None and first.crl_number is not None and again.crl_number > first.crl_number
    services.crl_available = False
    assert _checker(tmp_path, ca).refresh(force=True)[services.crl_url].startswith("failed")


def test_a_replayed_older_crl_or_an_edited_cache_never_unrevokes_a_card(
        tmp_path: Path, ca: NationalIdCa, services: NationalIdServices) -> None:
    card = _card(ca, services)
    services.ocsp_mode = OcspMode.DOWN
    old = services.current_crl()                          # before the revocation
    ca.revoke(card.certificate)
    with pytest.raises(CardRevoked):
        _checker(tmp_path, ca).check(card.certificate, ca.issuing)
    services.crl_replay = old                             # two days on, the DP answers with the old CRL
    with pytest.raises(CardRevoked):
        _checker(tmp_path, ca, shift=dt.timedelta(days=2)).check(card.certificate, ca.issuing)
    assert _checker(tmp_path, ca, shift=dt.timedelta(days=2)).refresh()[services.crl_url].startswith("failed")
    (cached,) = (tmp_path / "crl-cache").glob("*.crl")
    edited = bytearray(cached.read_bytes())
    edited[-1] ^= 0x01                                    # a cache changed on disk is not trusted
    cached.write_bytes(bytes(edited))
    services.crl_available = False
    with pytest.raises(RevocationUnknown) as refused:
        _checker(tmp_path, ca).check(card.certificate, ca.issuing)
    assert refused.value.data["reason"] == "crl_unavailable"


# --- what OpenSSL says ---------------------------------------------------------------------------------
def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)


def test_openssl_agrees_with_the_responder_the_crl_and_the_kept_ocsp_answer(
        tmp_path: Path, ca: NationalIdCa, services: NationalIdServices) -> None:
    good, revoked = _card(ca, services), _card(ca, services)
    ca.revoke(revoked.certificate, x509.ReasonFlags.cessation_of_operation)
    issuer, root = str(ca.intermediate_paths[0]), str(ca.trust_anchor_paths[0])
    for card, word in ((good, "good"), (revoked, "revoked")):
        leaf = str(_pem(tmp_path / f"{word}.pem", card.certificate))
        asked = _openssl("ocsp", "-issuer", issuer, "-cert", leaf, "-url", services.ocsp_url, "-CAfile", root)
        assert asked.returncode == 0, asked.stderr
        assert f"{leaf}: {word}" in asked.stdout and "Response verify OK" in asked.stderr
    # the answer the kiosk kept as evidence verifies on its own, long after
    kept = _checker(tmp_path, ca).check(good.certificate, ca.issuing)
    (tmp_path / "kept.der").write_bytes(kept.ocsp_response)
    offline = _openssl("ocsp", "-respin", str(tmp_path / "kept.der"), "-issuer", issuer,
                       "-cert", str(tmp_path / "good.pem"), "-CAfile", root, "-no_nonce")
    assert offline.returncode == 0 and "Response verify OK" in offline.stderr, offline.stderr
    assert ": good" in offline.stdout
    # the CRL the kiosk cached: OpenSSL verifies it with the issuing CA and lists the revoked card
    services.ocsp_mode = OcspMode.DOWN
    _checker(tmp_path, ca).check(good.certificate, ca.issuing)
    (cached,) = (tmp_path / "crl-cache").glob("*.crl")
    crl = _openssl("crl", "-inform", "DER", "-in", str(cached), "-CAfile", issuer, "-verify", "-noout", "-text")
    assert crl.returncode == 0 and "verify OK" in crl.stderr, crl.stderr
    assert format(revoked.certificate.serial_number, "X").rjust(2, "0") in crl.stdout.replace(":", "").upper()
    assert "Cessation Of Operation" in crl.stdout
