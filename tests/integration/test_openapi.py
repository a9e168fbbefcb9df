"""``central/openapi.yaml`` describes what the running central answers: every endpoint, answer and refusal.

Each request below goes over HTTP to the real central; its status must be listed for the operation
and its body must validate against the listed schema (a small validator for the JSON Schema subset
the file uses), and every error code must be in the ``Error`` schema's list.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from central.runner import CentralServer
from kiosk.pin import SoPin
from sync.central_client import CentralClient, csr_pem
from tests.integration.test_central import NewOrder, find, idem, make_csr, make_key

yaml = pytest.importorskip("yaml")
SPEC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "central" / "openapi.yaml").read_text(encoding="utf-8"))
_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
                                       "number": (int, float), "boolean": (bool,), "null": (type(None),)}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    schema = _resolve(schema)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, _TYPES[n]) and not (n in ("integer", "number") and isinstance(value, bool))
                 for n in names)
        assert ok, f"{where}: {value!r} is not {names}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, str):
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
        assert len(value) >= schema.get("minLength", 0), where
        assert len(value) <= schema.get("maxLength", len(value)), where
    if isinstance(value, int) and "minimum" in schema:
        assert value >= schema["minimum"], where
    if isinstance(value, list):
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)), where
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: {name} missing"
        properties = schema.get("properties", {})
        extra = set(value) - set(properties)
        assert not extra, f"{where}: not in the schema: {extra}"
        for name, item in value.items():
            validate(item, properties[name], f"{where}.{name}")


def check(method: str, template: str, response: requests.Response) -> Any:
    """Assert the answer is documented for the operation and matches its schema; return its JSON body."""
    operation = SPEC["paths"][template][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {template} answered {status}: {response.text[:300]}"
    documented = _resolve(operation["responses"][status])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    validate(body, documented["content"]["application/json"]["schema"], f"{method} {template} {status}")
    if response.status_code >= 400:
        assert body["error"] in _resolve({"$ref": "#/components/schemas/Error"})["properties"]["error"]["enum"]
        assert body["error"] in documented["description"] or status in ("401", "413", "500"), \
            f"{body['error']} is not named in the description of {method} {template} {status}"
    return body


def test_every_path_has_its_refusals_and_errors_documented() -> None:
    for template, item in SPEC["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "500" in responses, f"{method} {template}"
            if operation.get("security", SPEC["security"]):
                assert "401" in responses, f"{method} {template}"
            if method == "post":
                assert "413" in responses, f"{method} {template}"


def test_responses_match_the_openapi_file(central_server: CentralServer, central_client: CentralClient,
                                          new_order: NewOrder) -> None:
    url = central_server.url

    def call(method: str, template: str, path: str, **kwargs: Any) -> Any:
        for name, value in central_server.tls.items():        # as the demo kiosk unless told otherwise
            kwargs.setdefault(name, value)
        return check(method, template, requests.request(method, url + path, timeout=20, **kwargs))

    call("GET", "/api/v1/health", "/api/v1/health")
    call("GET", "/api/v1/orders", "/api/v1/orders", params={"invoice": "147314016754"})
    call("GET", "/api/v1/orders", "/api/v1/orders", params={"invoice": "1"})
    call("GET", "/api/v1/orders", "/api/v1/orders", params={"register": "ЖЖ12345678"})
    call("GET", "/api/v1/orders", "/api/v1/orders", params={"invoice": "147314016754"}, cert=None)   # 401
    kiosks = "/api/v1/kiosks/enroll"
    csr = csr_pem(make_csr(make_key("p256")))
    call("POST", kiosks, kiosks, json={"code": "AAAA-BBBB-CCCC-DDDD-EEEE", "office": "main", "csr": csr},
         cert=None)                                                                                  # 403
    call("POST", kiosks, kiosks, json={"code": "x", "office": "main"}, cert=None)                     # 400
    call("POST", "/api/v1/kiosks/renew", "/api/v1/kiosks/renew", json={"csr": csr}, cert=None)        # 401
    renewed = call("POST", "/api/v1/kiosks/renew", "/api/v1/kiosks/renew", json={"csr": csr})         # 201
    assert renewed["kiosk_id"] == "demo-kiosk"

    escrow = call("GET", "/api/v1/escrow-key", "/api/v1/escrow-key")
    placed = new_order(organisation_balance=100_000, validity_days=20)
    number = placed["holder"]["register_number"]
    order = find(central_client, placed["invoice"])
    key = make_key("p256")
    token = f"TK{secrets.token_hex(4)}"
    escrow_key = serialization.load_pem_public_key(escrow["public_key"].encode())
    assert isinstance(escrow_key, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    enrollment = {"csr": csr_pem(make_csr(key)), "idempotency_key": idem(), "token_serial": token,
                  "so_pin_escrow": base64.b64encode(escrow_key.encrypt(SoPin.generate().reveal().encode(),
                                                                       oaep)).decode(),
                  "escrow_key_id": escrow["key_id"]}
    enroll = "/api/v1/orders/{order_id}/enrollments"
    issued = call("POST", enroll, f"/api/v1/orders/{order.id}/enrollments", json=enrollment)
    call("POST", enroll, f"/api/v1/orders/{order.id}/enrollments", json=enrollment)             # 200
    call("POST", enroll, f"/api/v1/orders/{order.id}/enrollments", data="[" * 1000)             # 400
    call("POST", enroll, f"/api/v1/orders/{order.id}/enrollments", data=b"x" * 300_000)         # 413
    call("POST", enroll, "/api/v1/orders/999999/enrollments", json={**enrollment, "idempotency_key": idem()})
    call("POST", enroll, f"/api/v1/orders/{order.id}/enrollments",
         json={**enrollment, "idempotency_key": idem(), "csr": csr_pem(make_csr(make_key("p256")))})  # 409
    call("POST", enroll, f"/api/v1/orders/{order.id}/enrollments", json={**enrollment, "escrow_key_id": "x"})
    serial = issued["serial"]
    pending = "/api/v1/tokens/{token_serial}/certificate"
    assert call("GET", pending, f"/api/v1/tokens/{token}/certificate")["serial"] == serial
    call("GET", pending, "/api/v1/tokens/TKNOSUCH/certificate")                                     # 404
    refused = call("GET", "/api/v1/tokens/{token_serial}/refused-keys", f"/api/v1/tokens/{token}/refused-keys")
    assert refused == {"token_serial": token, "refused": []}

    call("GET", "/api/v1/certificates", "/api/v1/certificates", params={"register": number})
    call("GET", "/api/v1/certificates", "/api/v1/certificates", params={"register": "?"})
    one = "/api/v1/certificates/{serial}"
    call("GET", one, f"/api/v1/certificates/{serial}")
    call("GET", one, "/api/v1/certificates/ABCDEF0123")

    terms_path = "/api/v1/certificates/{serial}/renewal"
    terms = call("GET", terms_path, f"/api/v1/certificates/{serial}/renewal", params={"term_years": "1"})
    call("GET", terms_path, f"/api/v1/certificates/{serial}/renewal", params={"term_years": "7"})
    call("GET", terms_path, "/api/v1/certificates/ABCDEF0123/renewal", params={"term_years": "1"})
    application = json.dumps({
        "type": "tamga.renewal-application/1", "certificate_serial": serial,
        "holder": {"name": "Баатар Ариун", "register_number": number},
        "organisation": terms["organisation"], "term_years": 1, "fee_mnt": terms["fees"]["total_mnt"],
        "details_unchanged": True, "requested_at": dt.datetime.now(dt.UTC).isoformat()}).encode()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    renewal = {"application": base64.b64encode(application).decode(),
               "signature": base64.b64encode(key.sign(application, ec.ECDSA(hashes.SHA256()))).decode(),
               "csr": csr_pem(make_csr(make_key("p256"))), "idempotency_key": idem()}
    renew = "/api/v1/certificates/{serial}/renewals"
    call("POST", renew, f"/api/v1/certificates/{serial}/renewals", json={**renewal, "signature": "AAAA"})  # 400
    renewed = call("POST", renew, f"/api/v1/certificates/{serial}/renewals", json=renewal)                # 201
    call("POST", renew, f"/api/v1/certificates/{serial}/renewals", json=renewal)                          # 200
    call("POST", renew, f"/api/v1/certificates/{serial}/renewals", json={**renewal, "idempotency_key": idem()})
    call("GET", terms_path, f"/api/v1/certificates/{serial}/renewal", params={"term_years": "1"})         # 409

    release = "/api/v1/tokens/{token_serial}/so-pin"
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    body = {"certificate_serial": renewed["serial"], "register_number": number, "public_key": mine}
    call("POST", release, f"/api/v1/tokens/{token}/so-pin", json=body)
    call("POST", release, f"/api/v1/tokens/{token}/so-pin", json={**body, "public_key": "x"})
    call("POST", release, f"/api/v1/tokens/{token}/so-pin", json={**body, "register_number": "ЖЖ12345678"})
    call("POST", release, f"/api/v1/tokens/{token}/so-pin", json={**body, "certificate_serial": "ABC123"})

    revoke = "/api/v1/certificates/{serial}/revocation"
    revocation = {"reason": "superseded", "register_number": number, "idempotency_key": idem()}
    call("POST", revoke, f"/api/v1/certificates/{serial}/revocation", json=revocation)                     # 201
    call("POST", revoke, f"/api/v1/certificates/{serial}/revocation", json=revocation)                     # 200
    call("POST", revoke, f"/api/v1/certificates/{serial}/revocation", json={**revocation, "reason": "x"})
    call("POST", revoke, f"/api/v1/certificates/{serial}/revocation",
         json={**revocation, "register_number": "ЖЖ12345678"})                                              # 409
    call("POST", revoke, "/api/v1/certificates/ABC123/revocation", json=revocation)                         # 404
    call("GET", terms_path, f"/api/v1/certificates/{serial}/renewal", params={"term_years": "2"})          # revoked

    void = "/api/v1/enrollments/{idempotency_key}/void"
    voided = call("POST", void, f"/api/v1/enrollments/{renewal['idempotency_key']}/void")
    assert voided["revoked_serial"] == renewed["serial"]
    assert call("POST", void, f"/api/v1/enrollments/{idem()}/void")["revoked_serial"] is None
    call("POST", void, f"/api/v1/enrollments/{'x' * 200}/void")                                             # 400
