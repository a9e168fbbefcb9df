"""Guessing enrollment codes: an address that sent ``TAMGA_ENROLL_FAILURES_PER_MINUTE`` refused codes in a minute
is answered 429 with Retry-After, before its code is looked at, on a central of its own (the shared one of the
suite allows more: its tests send deliberate wrong codes from one address)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from central.runner import CentralServer
from kiosk.i18n import Translator
from sync.kiosk_identity import CodeAttemptsLimited, new_key_and_csr, request_certificate

LIMIT = 3


@pytest.fixture(scope="module")
def strict_central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TAMGA_ENROLL_FAILURES_PER_MINUTE", str(LIMIT))
        with CentralServer(tmp_path_factory.mktemp("strict-central"), demo_data=False) as server:
            yield server


def attempt(server: CentralServer, code: str, office: str = "main") -> requests.Response:
    _, csr = new_key_and_csr("guesser")
    return requests.post(f"{server.url}/api/v1/kiosks/enroll", json={"code": code, "office": office, "csr": csr},
                         verify=str(server.tls_ca_path), timeout=20)


def test_a_source_that_guessed_wrong_codes_is_refused_for_the_minute_and_told_when_to_try_again(
        strict_central: CentralServer) -> None:
    good = strict_central.manage("add-kiosk", "kiosk-guessing", "--office", "main").strip()
    kept = strict_central.manage("add-kiosk", "kiosk-patient", "--office", "main").strip()
    assert attempt(strict_central, good).status_code == 201          # a code that works is not counted
    refusals = [attempt(strict_central, code).json()["error"] for code in (
        "AAAA-BBBB-CCCC-DDDD-EEEE", good, "AAAA-BBBB-CCCC-DDDD-EEEF")]
    assert refusals == ["code_unknown", "code_used", "code_unknown"]
    held = attempt(strict_central, kept)                              # even the right code waits now
    assert held.status_code == 429 and held.json()["error"] == "too_many_requests"
    assert 0 < int(held.headers["Retry-After"]) <= 60

    with pytest.raises(CodeAttemptsLimited) as limited:            # what the technician reads
        request_certificate(strict_central.url, kept, "main", strict_central.tls_ca_path)
    assert 0 < limited.value.data["retry_after"] <= 60
    said = Translator("ru").error(limited.value)
    assert said.startswith("Слишком много неверных кодов регистрации")
    assert f"подождите {limited.value.data['retry_after']} с," in said
