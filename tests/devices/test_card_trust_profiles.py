"""Trust anchors per country profile, from the kiosk's configuration to the reader on the real stack.

A Mongolian kiosk trusts the Mongolian national ID root only: a Kazakh card (its own national CA,
with its own OCSP responder and CRL on loopback) is refused as of an unknown issuer, and accepted
once the configuration adds the KZ profile.  The CRL cache lives in the kiosk's data dir (0700).
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.sim.national_ca import CardHolder, NationalIdCa
from devices.sim.national_ca_services import NationalIdServices, OcspMode
from devices.sim.vcard import VirtualPivCard
from kiosk.errors import CardIssuerUnknown, ConfigError
from kiosk.shell import config
from kiosk.shell.app import id_card_reader, revocation_checker

InsertCard = Callable[..., VirtualPivCard]
KAZAKH = CardHolder(given_name="Айгерім", surname="Сейітқали", register_number="900101300017", country="KZ")


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NationalIdCa]]:
    base = tmp_path_factory.mktemp("profiles")
    cas = {"MN": NationalIdCa.create(base / "mn"), "KZ": NationalIdCa.create(base / "kz", root_name="Test KZ ID Root")}
    services = [NationalIdServices(ca).start() for ca in cas.values()]
    yield cas
    for running in services:
        running.stop()


def _config(tmp_path: Path, reader_name: str, cas: dict[str, NationalIdCa], **identity: Any) -> config.Config:
    return config.from_dict({
        "kiosk": {"data_dir": str(tmp_path / "data")},
        "idcard": {"reader": reader_name, "trust_anchors": [],
                   "intermediates": [str(p) for ca in cas.values() for p in ca.intermediate_paths]},
        "identity": {"trust_anchors_mn": [str(p) for p in cas["MN"].trust_anchor_paths],
                     "trust_anchors_kz": [str(p) for p in cas["KZ"].trust_anchor_paths], **identity},
    }, base_dir=tmp_path, check_files=False)


def test_a_kiosk_trusts_its_own_country_profile_and_what_configuration_adds(
        tmp_path: Path, reader_name: str, authorities: dict[str, NationalIdCa], insert_card: InsertCard) -> None:
    insert_card(authorities["KZ"].issue_card(KAZAKH, key_type="p256"))
    mongolian = _config(tmp_path, reader_name, authorities)
    assert mongolian.identity.countries == ("MN",) and mongolian.identity.crl_grace_days == 3
    with id_card_reader(mongolian) as reader, pytest.raises(CardIssuerUnknown) as refused:
        reader.read_identity()
    assert refused.value.data["reason"] == "untrusted_issuer"

    both = _config(tmp_path, reader_name, authorities, countries=["MN", "kz"])
    with id_card_reader(both) as reader:
        identity = reader.read_identity()
    assert identity.serial_number == "PNOKZ-900101300017"
    assert identity.revocation is not None and identity.revocation.method == "ocsp"


def test_the_crl_cache_is_in_the_data_dir_and_private(tmp_path: Path, reader_name: str,
                                                      authorities: dict[str, NationalIdCa],
                                                      insert_card: InsertCard) -> None:
    ca = authorities["MN"]
    services = NationalIdServices(ca).start()       # a responder that is down: the CRL decides
    services.ocsp_mode = OcspMode.DOWN
    try:
        card = ca.issue_card(CardHolder("Бат", "Дорж", "НЭ80000000"), key_type="p256")
        insert_card(card)
        with id_card_reader(_config(tmp_path, reader_name, authorities, crl_grace_days=0)) as reader:
            status = reader.read_identity().revocation
    finally:
        services.stop()
    assert status is not None and status.method == "crl" and not status.grace_used
    cache = tmp_path / "data" / "crl-cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cache.iterdir())
    # what the sync daemon runs: the CRL it cached is fresh, so nothing is fetched again
    assert set(revocation_checker(_config(tmp_path, reader_name, authorities)).refresh().values()) == {"fresh"}


@pytest.mark.parametrize(("setting", "value"), [
    ("countries", ["RU"]), ("crl_grace_days", -1), ("revocation", "sometimes"), ("rsa_padding", "raw"),
])
def test_a_wrong_identity_setting_is_named(tmp_path: Path, setting: str, value: object) -> None:
    with pytest.raises(ConfigError) as refused:
        config.from_dict({"identity": {setting: value}}, base_dir=tmp_path, check_files=False)
    assert refused.value.data["setting"] == f"identity.{setting}"
