"""The kiosk keeps from the central's trust feed only what checks out, and trusts it only for its countries."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices.sim.national_ca import CardHolder, NationalIdCa
from sync.trust_material import TrustMaterial, TrustSource


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> NationalIdCa:
    return NationalIdCa.create(tmp_path_factory.mktemp("trust-material-pki"))


def item(cert: x509.Certificate, seq: int = 1, event: str = "added", country: str = "MN",
         role: str = "anchor", **overrides: Any) -> dict[str, Any]:
    der = cert.public_bytes(serialization.Encoding.DER)
    return {"seq": seq, "event": event, "country": country, "role": role, "sha256": hashlib.sha256(der).hexdigest(),
            "subject": cert.subject.rfc4514_string(),
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), **overrides}


def test_an_added_anchor_is_kept_and_a_withdrawn_one_dropped(tmp_path: Path, ca: NationalIdCa) -> None:
    material = TrustMaterial(tmp_path / "trust")
    root, issuing = ca.trust_anchors[0], ca.intermediates[0]

    assert material.apply([item(root), item(issuing, 2, role="intermediate")]) == 2
    assert material.load(("MN",)) == ([root], [issuing])
    assert material.load(("KZ",)) == ([], [])
    assert material.apply([item(root, 3)]) == 0                     # the same again changes nothing
    assert material.apply([item(root, 4, event="withdrawn")]) == 1
    assert material.load(("MN",)) == ([], [issuing])


@pytest.mark.parametrize("bad", ["wrong_sha256", "leaf", "unknown_event", "country", "role", "garbage_pem"])
def test_an_item_that_does_not_check_out_is_not_kept(tmp_path: Path, ca: NationalIdCa, bad: str) -> None:
    root = ca.trust_anchors[0]
    leaf = ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000")).certificate
    broken = {
        "wrong_sha256": item(root, sha256="0" * 64),
        "leaf": item(leaf),
        "unknown_event": item(root, event="trusted"),
        "country": item(root, country="../../etc"),
        "role": item(root, role="root"),
        "garbage_pem": item(root, certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    }[bad]
    material = TrustMaterial(tmp_path / "trust")

    assert material.apply([broken]) == 0
    assert material.version() == ()


def test_a_synced_file_changed_on_disk_is_not_trusted(tmp_path: Path, ca: NationalIdCa) -> None:
    material = TrustMaterial(tmp_path / "trust")
    material.apply([item(ca.trust_anchors[0])])
    (path,) = (tmp_path / "trust").glob("*.pem")
    path.write_bytes(ca.intermediates[0].public_bytes(serialization.Encoding.PEM))

    assert material.load(("MN",)) == ([], [])


def test_the_source_adds_the_synced_anchors_to_the_configured_ones_when_they_change(
        tmp_path: Path, ca: NationalIdCa) -> None:
    configured = NationalIdCa.create(tmp_path / "configured", root_name="Configured Root").trust_anchors[0]
    material = TrustMaterial(tmp_path / "trust")
    source = TrustSource(material, ("MN",), [configured], [])

    assert source() == ([configured], [])
    material.apply([item(ca.trust_anchors[0]), item(configured, 2)])
    assert source() == ([configured, ca.trust_anchors[0]], [])       # no duplicate of the configured one
    material.apply([item(ca.trust_anchors[0], 3, event="withdrawn"), item(configured, 4, event="withdrawn")])
    assert source() == ([configured], [])                            # the configuration's anchor stays
