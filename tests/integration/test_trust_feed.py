"""Trust material by sync, on the real central over mutual TLS: the national ID trust anchors the central
hands out (``feeds/trust``, scoped by office) reach the kiosk's data dir in a sync round and are trusted by
the ID-card reader at its next card; a withdrawn one is dropped; the round also fetches again the ID-card
CRLs that are due, from the national authority on loopback."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from central.runner import CentralCommandError, CentralServer
from devices.idcard import IdCardReader
from devices.pcsc import wait_for_card, wait_for_removal
from devices.revocation import RevocationChecker, RevocationMode, RevocationPolicy
from devices.sim.national_ca import CardHolder, NationalIdCa
from devices.sim.national_ca_services import NationalIdServices, OcspMode
from devices.sim.pcscd import PrivatePcscd
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardIssuerUnknown
from kiosk.pin import Pin
from sync.central_client import CentralClient
from sync.daemon import SyncDaemon
from sync.store import KioskStore
from sync.trust_material import TrustMaterial, TrustSource
from tests.integration.conftest import OFFICE_B
from tests.integration.test_openapi import check


def _pem(tmp_path: Path, name: str, cert: x509.Certificate) -> str:
    path = tmp_path / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _added(central_server: CentralServer, *args: str) -> list[str]:
    """``add-trust-anchor ARGS``: the SHA-256 of each certificate added, in order."""
    return [line.split()[0] for line in central_server.manage("add-trust-anchor", *args).splitlines()]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KioskStore]:
    store = KioskStore.open(tmp_path / "kiosk-data")
    yield store
    store.close()


def _daemon(store: KioskStore, client: CentralClient, material: TrustMaterial) -> SyncDaemon:
    return SyncDaemon(store, client, "kiosk-trust", feeds=client, trust=material)


@pytest.fixture(scope="module")
def national(tmp_path_factory: pytest.TempPathFactory) -> NationalIdCa:
    return NationalIdCa.create(tmp_path_factory.mktemp("trust-feed-pki"), root_name="Synced National ID Root")


def test_a_sync_round_brings_the_centrals_anchors_and_drops_a_withdrawn_one(
        tmp_path: Path, central_server: CentralServer, central_client: CentralClient, office_b_client: CentralClient,
        store: KioskStore, national: NationalIdCa) -> None:
    other = NationalIdCa.create(tmp_path / "kz-pki", root_name="KZ National ID Root")
    theirs = NationalIdCa.create(tmp_path / "b-pki", root_name="Office B Only Root")
    root, issuing = _added(central_server, _pem(tmp_path, "mn", national.trust_anchors[0]),
                           _pem(tmp_path, "mn-issuing", national.intermediates[0]), "--country", "MN")
    (kz,) = _added(central_server, _pem(tmp_path, "kz", other.trust_anchors[0]), "--country", "KZ")
    _added(central_server, _pem(tmp_path, "b", theirs.trust_anchors[0]), "--country", "MN", "--office", OFFICE_B)
    material = TrustMaterial(tmp_path / "trust-anchors")
    feed = check("GET", "/api/v1/feeds/trust", requests.get(f"{central_server.url}/api/v1/feeds/trust",
                                                           timeout=10, **central_server.tls))   # as the spec says
    assert {(i["sha256"], i["role"], i["event"]) for i in feed["items"]} >= {(root, "anchor", "added"),
                                                                             (issuing, "intermediate", "added")}

    report = _daemon(store, central_client, material).once()

    assert report.error is None and report.trust_items >= 3        # office B's own is not among them
    names = material.version()
    assert f"MN-anchor-{root}.pem" in names and f"MN-intermediate-{issuing}.pem" in names
    assert f"KZ-anchor-{kz}.pem" in names
    anchors, intermediates = material.load(("MN",))
    assert national.trust_anchors[0] in anchors and other.trust_anchors[0] not in anchors      # MN only
    assert theirs.trust_anchors[0] not in anchors                                                # another office's
    assert intermediates == [national.intermediates[0]]
    office_b = TrustMaterial(tmp_path / "office-b-anchors")
    b_store = KioskStore.open(tmp_path / "office-b-data")
    try:
        assert _daemon(b_store, office_b_client, office_b).once().error is None
    finally:
        b_store.close()
    assert theirs.trust_anchors[0] in office_b.load(("MN",))[0]

    central_server.manage("withdraw-trust-anchor", root)
    again = _daemon(store, central_client, material).once()

    assert again.error is None and again.trust_items >= 1
    assert f"MN-anchor-{root}.pem" not in material.version()
    assert national.trust_anchors[0] not in material.load(("MN",))[0]
    central_server.manage("withdraw-trust-anchor", issuing, kz)


def test_the_central_takes_only_ca_certificates(tmp_path: Path, central_server: CentralServer,
                                                national: NationalIdCa) -> None:
    card = national.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"))
    with pytest.raises(CentralCommandError, match="no CA"):
        central_server.manage("add-trust-anchor", _pem(tmp_path, "leaf", card.certificate), "--country", "MN")
    with pytest.raises(CentralCommandError, match="country profile"):
        central_server.manage("add-trust-anchor", _pem(tmp_path, "root", national.trust_anchors[0]), "--country", "DE")


def test_the_reader_trusts_a_synced_anchor_at_its_next_card(
        tmp_path: Path, private_pcscd: PrivatePcscd, central_server: CentralServer, central_client: CentralClient,
        store: KioskStore, national: NationalIdCa) -> None:
    configured = NationalIdCa.create(tmp_path / "configured-pki", root_name="Configured Root")
    material = TrustMaterial(tmp_path / "trust-anchors")
    source = TrustSource(material, ("MN",), list(configured.trust_anchors), [])
    reader = IdCardReader(private_pcscd.reader_names[0], configured.trust_anchors)
    reader.trust_source = source
    personalisation = national.issue_card(CardHolder("Сарнай", "Дамдин", "УБ92010134"))
    card = VirtualPivCard(personalisation, private_pcscd.vpcd_port)
    card.insert()
    wait_for_card(private_pcscd.reader_names[0], 5)
    try:
        with pytest.raises(CardIssuerUnknown):
            reader.read_identity()
        root, issuing = _added(central_server, _pem(tmp_path, "root", national.trust_anchors[0]),
                               _pem(tmp_path, "issuing", national.intermediates[0]), "--country", "MN")
        assert _daemon(store, central_client, material).once().error is None

        identity = reader.read_identity()
        reader.authenticate(Pin(personalisation.pin), os.urandom(32), identity.certificate_sha256)
        assert identity.serial_number == "PNOMN-UB92010134"
        assert configured.trust_anchors[0] in reader.trust_anchors            # the configured one stays
        central_server.manage("withdraw-trust-anchor", root, issuing)
        assert _daemon(store, central_client, material).once().error is None
        with pytest.raises(CardIssuerUnknown):
            reader.read_identity()
    finally:
        reader.close()
        card.close()
        wait_for_removal(private_pcscd.reader_names[0], 5)


def test_a_sync_round_fetches_again_the_id_card_crls_that_are_due(
        tmp_path: Path, central_client: CentralClient, store: KioskStore) -> None:
    ca = NationalIdCa.create(tmp_path / "crl-pki")
    with NationalIdServices(ca) as services:
        card = ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"), key_type="p256")
        services.ocsp_mode = OcspMode.DOWN

        def checker(shift: dt.timedelta) -> RevocationChecker:
            return RevocationChecker(tmp_path / "crl-cache",
                                     RevocationPolicy(RevocationMode.OCSP_THEN_CRL, dt.timedelta(days=3), 2.0),
                                     clock=lambda: dt.datetime.now(dt.UTC) + shift, issuers=list(ca.intermediates))

        first = checker(dt.timedelta(0)).check(card.certificate, ca.issuing)          # the kiosk caches the CRL
        fresh = _daemon(store, central_client, TrustMaterial(tmp_path / "t", checker(dt.timedelta(0)))).once()
        due = _daemon(store, central_client, TrustMaterial(tmp_path / "t", checker(dt.timedelta(days=2)))).once()

        assert fresh.crls == {services.crl_url: "fresh"}
        assert due.crls == {services.crl_url: "fetched"}
        later = checker(dt.timedelta(days=2)).check(card.certificate, ca.issuing)
        assert later.crl_number is not None and first.crl_number is not None and later.crl_number > first.crl_number
