"""The node serving an attested model (payments off): discovery shows the mode, generate answers a signed
bundle (JSON or SSE), errors come before anything runs, and the SDK checks the answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from proofmarket.api import create_app
from proofmarket.core.settings import Settings


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


@pytest.fixture(scope="module")
def node(attested_home: Path, lm_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("attested-db") / "node.db"
    settings = Settings(_env_file=None, home=attested_home, database_url=f"sqlite:///{db}",  # type: ignore[call-arg]
                        prover_workers=1)
    app = create_app(settings)
    app.state.services.catalog.register(lm_id, price_atomic=2_000)
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def test_models_and_discovery_show_the_mode(node: TestClient, lm_id: str) -> None:
    listed = {m["id"]: m for m in node.get("/v1/models").json()["models"]}
    assert listed[lm_id]["mode"] == "attested"
    assert listed[lm_id]["links"]["generate"] == f"/v1/models/{lm_id}/generate"
    detail = node.get(f"/v1/models/{lm_id}").json()
    assert detail["mode"] == "attested" and "not a proof" in detail["guarantee"]
    assert detail["attested"]["max_tokens_cap"] == 128 and detail["attested"]["weights_root"].startswith("0x")
    assert "1,000 output tokens" in detail["attested"]["price_unit"]
    well_known = node.get("/.well-known/ai-service.json").json()
    served = {m["id"]: m for m in well_known["models"]}[lm_id]
    assert served["mode"] == "attested" and served["generate"].endswith(f"/v1/models/{lm_id}/generate")
    assert served["infer"] is None
    assert set(well_known["proofs"]["modes"]) == {"proven", "attested"}
    assert "attested" in node.get("/dashboard").text
    for cid in detail["attested"]["files"].values():  # open weights: a re-checker can fetch every file
        assert node.get(f"/v1/artifacts/{cid}").status_code == 200


def _metric(text: str, name: str) -> float:
    """A sample's value in a /metrics page (0 when the series is not there yet)."""
    line = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
    return float(line.rsplit(" ", 1)[1]) if line is not None else 0.0


def test_generate_answers_text_with_a_signed_attested_bundle(node: TestClient, lm_id: str) -> None:
    labels = f'model="{lm_id}",rail="free",status="proved",system="proofmarket-attested-toploc-v1"'
    calls, tokens = f"proofmarket_calls_total{{{labels}}}", "proofmarket_generated_tokens_total"
    before = node.get("/metrics").text  # the module's node: other tests of it may have called first
    response = node.post(f"/v1/models/{lm_id}/generate", json={"prompt": "the market", "max_tokens": 33})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "attested" and len(body["tokens"]) == 33 and body["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": len(body["bundle"]["input"]["tokens"]), "completion_tokens": 33,
                             "charged_tokens": 33}
    assert body["bundle"]["output"]["text"] == body["text"] and body["payment"] is None
    metrics = node.get("/metrics").text
    assert _metric(metrics, calls) == _metric(before, calls) + 1  # a call like any other: system, rail, model
    assert _metric(metrics, tokens) == _metric(before, tokens) + 33
    verified = node.post("/v1/verify", json=body["bundle"]).json()
    assert verified["valid"] and verified["mode"] == "attested" and verified["reexecuted"] is False
    assert any("not a proof" in w for w in verified["warnings"])
    tampered = json.loads(json.dumps(body["bundle"]))
    tampered["output"]["tokens"][0] += 1
    assert node.post("/v1/verify", json=tampered).json()["valid"] is False


def test_generate_streams_tokens_commitments_and_the_result(node: TestClient, lm_id: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    attested, threads = node.app.state.services.attested, []  # type: ignore[attr-defined]
    generate = attested.run
    monkeypatch.setattr(attested, "run", lambda *a, **k: threads.append(threading.current_thread().name)
                        or generate(*a, **k))
    with node.stream("POST", f"/v1/models/{lm_id}/generate",
                     json={"prompt": "the market", "max_tokens": 40, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1][6:]))
                  for block in response.read().decode().strip().split("\n\n")]
    kinds = [k for k, _ in events]
    assert kinds.count("token") == 40 and kinds.count("commitment") == 2 and kinds[-1] == "result"
    result = events[-1][1]
    assert [d["token"] for k, d in events if k == "token"] == result["tokens"]
    assert [d["commitment"] for k, d in events if k == "commitment"] == result["bundle"]["proof"]["commitments"]
    assert threads == ["proofmarket-prover-0"]  # generated by the node's engine, like a proof


@pytest.mark.parametrize("body, status, code", [
    ({"prompt": "hi", "max_tokens": 129}, 422, "max_tokens_over_cap"),
    ({"prompt": "proof market " * 300, "max_tokens": 8}, 422, "prompt_too_long"),
    ({"prompt": "", "max_tokens": 8}, 422, "invalid_input"),
    ({"prompt": "hi", "max_tokens": 0}, 422, "invalid_input"),
    ({"prompt": "hi", "temperature": -1}, 422, "invalid_input"),
    ({"prompt": "hi", "seed": "x", "temperature": 1}, 422, "invalid_input"),
    ({"max_tokens": 8}, 422, "invalid_input"),
])
def test_bad_requests_get_named_errors(node: TestClient, lm_id: str, body, status, code) -> None:
    response = node.post(f"/v1/models/{lm_id}/generate", json=body)
    assert response.status_code == status and _error(response)["code"] == code


def test_the_wrong_route_for_the_mode_and_unknown_models(node: TestClient, lm_id: str) -> None:
    response = node.post(f"/v1/models/{lm_id}/infer", json={"input_data": [[0.0]]})
    assert response.status_code == 409 and _error(response)["code"] == "wrong_mode"
    unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    response = node.post(f"/v1/models/{unknown}/generate", json={"prompt": "hi"})
    assert response.status_code == 404 and _error(response)["code"] == "unknown_model"


def _through(client: TestClient, lie: bool = False) -> httpx.MockTransport:
    """The SDK's transport to the app behind ``client``; ``lie``: the node runs another prompt than the one sent."""
    def send(request: httpx.Request) -> httpx.Response:
        content = request.read()
        if lie and request.method == "POST" and request.url.path.endswith("/generate"):
            content = json.dumps({**json.loads(content), "prompt": "another prompt"}).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = client.request(request.method, str(request.url), headers=headers, content=content)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(send)


def test_the_sdk_checks_the_answer_and_can_re_execute(node: TestClient, lm_id: str, tmp_path: Path) -> None:
    from proofmarket.core.errors import AnswerMismatch
    from proofmarket.sdk.client import Client

    with Client("http://testserver", cache_dir=tmp_path / "cache", transport=_through(node)) as sdk:
        result = sdk.generate(lm_id, "the market", max_tokens=20, temperature=0.7, seed=11, reexecute=True)
        assert result.mode == "attested" and result.verdict == "reproduced" and len(result.tokens) == 20
        assert any("reproduced" in c for c in result.checks)
        assert any("answers this request" in c for c in result.checks)
        assert sdk.verify(result.bundle).mode == "attested"
    with Client("http://testserver", cache_dir=tmp_path / "cache2", transport=_through(node, lie=True)) as sdk, \
            pytest.raises(AnswerMismatch, match="prompt"):
        sdk.generate(lm_id, "the market", max_tokens=20)


def test_the_sdk_streams_tokens_then_checks_the_result(node: TestClient, lm_id: str, tmp_path: Path) -> None:
    from proofmarket.sdk.client import Client

    seen: list[str] = []
    with Client("http://testserver", cache_dir=tmp_path / "cache", transport=_through(node)) as sdk:
        result = sdk.generate(lm_id, "the market", max_tokens=12, on_token=seen.append)
    assert len(seen) == 12 and len(result.tokens) == 12  # one callback per token, before the checked result
    assert any("answers this request" in c for c in result.checks)
