"""ID-card fixtures over the session's private pcscd: a test national CA, virtual PIV cards, a reader.

``private_pcscd`` (two vpcd readers) lives in the root conftest.py and is shared with features/:
libpcsclite reads ``PCSCLITE_CSOCK_NAME`` at the first SCardEstablishContext of the process, so
one test process can only ever talk to one pcscd.  Every PC/SC test here depends on it, directly
or through ``reader_name`` / ``insert_card`` / ``id_reader``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devices.idcard import IdCardReader
from devices.pcsc import wait_for_card, wait_for_removal
from devices.sim.national_ca import CardHolder, CardPersonalisation, NationalIdCa
from devices.sim.pcscd import PrivatePcscd
from devices.sim.vcard import VirtualPivCard

INSERT_TIMEOUT = 15.0
"""A deadline for pcscd to see a card come or go (milliseconds when idle; seconds on a loaded CI machine)."""


@pytest.fixture(scope="session")
def reader_name(private_pcscd: PrivatePcscd) -> str:
    return private_pcscd.reader_names[0]


@pytest.fixture(scope="session")
def spare_reader_name(private_pcscd: PrivatePcscd) -> str:
    return private_pcscd.reader_names[1]


@pytest.fixture(scope="session")
def national_ca(tmp_path_factory: pytest.TempPathFactory) -> NationalIdCa:
    return NationalIdCa.create(tmp_path_factory.mktemp("national-pki"))


@pytest.fixture(scope="session")
def holder() -> CardHolder:
    return CardHolder(given_name="Бат", surname="Дорж", register_number="НЭ80000000")


@pytest.fixture(scope="session")
def rsa_card(national_ca: NationalIdCa, holder: CardHolder) -> CardPersonalisation:
    return national_ca.issue_card(holder, key_type="rsa2048")


@pytest.fixture(scope="session")
def p256_card(national_ca: NationalIdCa, holder: CardHolder) -> CardPersonalisation:
    return national_ca.issue_card(holder, key_type="p256")


InsertCard = Callable[..., VirtualPivCard]


@pytest.fixture
def insert_card(private_pcscd: PrivatePcscd) -> Iterator[InsertCard]:
    """``insert_card(personalisation, reader=0, wait=True, **card_options)``: a virtual card in a reader.

    With ``wait`` it returns once pcscd sees the card.

    Every card is pulled at teardown, and the reader waited on until it reports empty.
    """
    cards: list[tuple[VirtualPivCard, str]] = []

    def insert(personalisation: CardPersonalisation, reader: int = 0, wait: bool = True,
               **options: Any) -> VirtualPivCard:
        card = VirtualPivCard(personalisation, private_pcscd.vpcd_port + reader, **options)
        name = private_pcscd.reader_names[reader]
        cards.append((card, name))
        card.insert()
        if wait:
            wait_for_card(name, INSERT_TIMEOUT)
        return card

    yield insert
    for card, _name in cards:
        card.close()
    for name in sorted({name for _card, name in cards}):
        assert wait_for_removal(name, INSERT_TIMEOUT), f"{name} still shows a card"


@pytest.fixture
def id_reader(reader_name: str, national_ca: NationalIdCa) -> Iterator[IdCardReader]:
    """An IdCardReader on reader 0 trusting the test national root (issuing CA as intermediate)."""
    reader = IdCardReader(reader_name, trust_anchors=national_ca.trust_anchors,
                          intermediates=national_ca.intermediates)
    yield reader
    reader.close()
