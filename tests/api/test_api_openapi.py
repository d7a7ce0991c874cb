"""/openapi.json is what generated clients trust: every error answer is the node's one error document (and the node
really sends that shape), the payment, API-key and sign-in credentials are declared on the routes that take them
with the x402 response headers, the inference examples are the served models' real input sizes, and /docs and
/redoc come from the package (no CDN) under a script policy of this origin only."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from api_helpers import AppFactory
from fastapi.testclient import TestClient

from proofmarket.api.openapi_doc import SECURITY


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in doc["paths"].values() for op in item.values()}


def test_every_error_answer_is_the_error_document_and_no_fastapi_detail_remains(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        doc = client.get("/openapi.json").json()
        sent = client.get("/v1/models/bafkreinotamodel")
        invalid = client.get("/v1/models", params={"limit": "many"})
    assert "HTTPValidationError" not in str(doc) and "ValidationError" not in doc["components"]["schemas"]
    for op_id, op in _operations(doc).items():
        assert "default" in op["responses"], op_id
        for code, response in op["responses"].items():
            if code[0] in "45" or code == "default":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (op_id, code)
    error = doc["components"]["schemas"]["Error"]
    for answer in (sent, invalid):  # what the node really sends validates against what the document says
        assert answer.status_code in (404, 422)
        jsonschema.validate(answer.json(), error)
        assert answer.headers["X-Request-ID"]


def test_credentials_are_declared_where_routes_take_them(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["X402Payment"] == {**schemes["X402Payment"], "type": "apiKey", "in": "header",
                                      "name": "PAYMENT-SIGNATURE"}
    assert schemes["ApiKey"]["scheme"] == "bearer" and schemes["SiweMessage"]["name"] == "X-Siwe-Message"
    ops = _operations(doc)
    assert set(SECURITY) <= set(ops)  # the table names routes that exist
    infer = ops["infer"]
    assert {} in infer["security"] and {"X402Payment": []} in infer["security"] and {"ApiKey": []} in infer["security"]
    assert "PAYMENT-REQUIRED" in infer["responses"]["402"]["headers"]
    assert "PAYMENT-RESPONSE" in infer["responses"]["200"]["headers"]
    assert ops["buy_credits"]["security"] == [{"X402Payment": []}]
    for signed in ("create_api_key", "list_webhooks", "whoami", "refund_credits"):
        assert {"SiweMessage": [], "SiweSignature": []} in ops[signed]["security"], signed
    assert {"AdminToken": []} in ops["upload_model"]["security"]


def test_the_inference_examples_are_the_served_models_inputs(mlp_client: TestClient, mlp_id: str) -> None:
    doc = mlp_client.get("/openapi.json").json()
    body = doc["paths"]["/v1/models/{model_id}/infer"]["post"]["requestBody"]["content"]["application/json"]
    mine = body["examples"][f"model-{mlp_id[-8:]}"]
    model = mlp_client.get(f"/v1/models/{mlp_id}").json()
    sizes = [len(x) for x in mine["value"]["input_data"]]
    expected = []
    for tensor in model["inputs"]:
        size = 1
        for dim in tensor["shape"]:
            size *= max(1, int(dim))
        expected.append(size)
    assert sizes == expected and mlp_id in mine["summary"]
    answer = mlp_client.post(f"/v1/models/{mlp_id}/infer", json=mine["value"])
    assert answer.status_code in (200, 402), answer.text  # the example is an input the model takes (402: paid)


def test_swagger_ui_and_redoc_come_from_the_package(make_app: AppFactory) -> None:
    with TestClient(make_app()) as client:
        for page in ("/docs", "/redoc"):
            answer = client.get(page)
            assert answer.status_code == 200 and "/openapi.json" in answer.text + client.get("/app/api-docs.js").text
            csp = answer.headers["Content-Security-Policy"]
            scripts = csp.split("script-src")[1].split(";")[0]
            assert "'self'" in scripts and "'unsafe-eval'" not in scripts and "'unsafe-inline'" not in scripts
            sources = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
            assert sources and all(s.startswith(("/", "data:")) for s in sources), sources  # nothing from elsewhere
            for source in sources:
                if source.startswith("/app/"):
                    assert client.get(source).status_code == 200, source
