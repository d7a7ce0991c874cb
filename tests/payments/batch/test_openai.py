"""The OpenAI-compatible endpoint, called with the official ``openai`` Python client: a chat completion paid from
credits with an API key (charged for the tokens produced), streaming, the model list, a bad key (401) and a spent
key in OpenAI's error shape, and the attested bundle the answer names re-checks as reproduced."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import requests
from paid_node import buy, fresh, new_key
from x402_helpers import Chain, Served, node_settings

from proofmarket.api import create_app
from proofmarket.chain import dev_account
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.systems.workspace import Workspace

PER_1K = 50_000  # atomic USDC per 1,000 output tokens


@pytest.fixture(scope="module")
def lm_node(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str, Workspace]]:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    home = tmp_path_factory.mktemp("openai-attested")
    settings = node_settings(home, home / "node.db", chain.rpc_url, chain.deployment_file, registry_terms="off")
    ws = Workspace(settings)
    model_id, _ = ws.compile_attested(build_tiny_lm(home / "tiny-llama"), max_tokens_cap=64)
    app = create_app(settings)
    app.state.services.catalog.register(model_id, price_atomic=PER_1K,
                                        owner=dev_account(5, DEVNET_CHAIN_ID).address)
    with Served(app) as served:
        yield served, model_id, ws
    app.state.services.close()
    ws.close()


def client_for(served: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/openai/v1", api_key=key, max_retries=0)


def test_a_chat_completion_paid_from_credits_names_its_bundle_which_reproduces(
        lm_node: tuple[Served, str, Workspace], chain: Chain) -> None:
    served, model_id, ws = lm_node
    wallet = fresh(chain, "openai-chat")
    buy(served, chain, wallet, 100_000)
    key = new_key(served, wallet)["key"]
    client = client_for(served, key)

    assert model_id in [m.id for m in client.models.list()]
    raw = client.chat.completions.with_raw_response.create(
        model=model_id, messages=[{"role": "user", "content": "the market"}], max_tokens=20, temperature=0)
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.choices[0].message.role == "assistant"
    assert isinstance(completion.choices[0].message.content, str)
    usage = completion.usage
    assert usage is not None and 0 < usage.completion_tokens <= 20
    extra = completion.model_extra or {}
    bundle_cid = extra["proofmarket"]["bundle_cid"]
    assert raw.headers["X-Proofmarket-Bundle"] == bundle_cid
    payment = extra["proofmarket"]["payment"]
    assert payment["scheme"] == "credits"
    assert int(payment["amount"]) == max(1, -(-PER_1K * usage.completion_tokens // 1000))  # tokens produced

    bundle = requests.get(f"{served.url}/v1/proofs/{bundle_cid}", timeout=30,
                          headers={"X-Job-Token": extra["proofmarket"]["access_token"]}).json()
    report = ws.verify(bundle, reexecute=True, threads=1)
    assert report.valid and report.reexecuted  # an independent re-execution reproduced the answer


def test_streaming_in_openai_chunks_with_usage(lm_node: tuple[Served, str, Workspace], chain: Chain) -> None:
    served, model_id, _ = lm_node
    wallet = fresh(chain, "openai-stream")
    buy(served, chain, wallet, 100_000)
    client = client_for(served, new_key(served, wallet)["key"])
    stream = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "the"}],
                                            max_tokens=12, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert finishes in (["stop"], ["length"]) and len(usage) == 1 and usage[0].completion_tokens <= 12
    assert isinstance(text, str)
    completion = client.completions.create(model=model_id, prompt="the", max_tokens=5)
    assert completion.object == "text_completion" and completion.usage is not None


def test_a_bad_key_is_401_and_a_spent_key_is_refused_in_openais_shape(lm_node: tuple[Served, str, Workspace],
                                                                      chain: Chain) -> None:
    served, model_id, _ = lm_node
    with pytest.raises(openai.AuthenticationError) as bad:
        client_for(served, "pmk_not-a-key").chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert bad.value.status_code == 401 and bad.value.code == "api_key_invalid"
    assert bad.value.body["type"] == "authentication_error"  # type: ignore[index]
    wallet = fresh(chain, "openai-spent")
    key = new_key(served, wallet, cap_atomic=1)["key"]  # a key whose cap is spent before any call
    buy(served, chain, wallet, 100_000)
    with pytest.raises(openai.APIStatusError) as spent:
        client_for(served, key).chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}],
                                                        max_tokens=4)
    assert spent.value.status_code == 402 and spent.value.code == "api_key_cap_reached"
    broke = new_key(served, fresh(chain, "openai-broke"))["key"]  # no credits at all
    with pytest.raises(openai.APIStatusError) as empty:
        client_for(served, broke).chat.completions.create(model=model_id, messages=[{"role": "user", "content": "a"}],
                                                          max_tokens=4)
    assert empty.value.status_code == 402 and empty.value.code == "payment_insufficient_funds"
    unsupported = requests.post(f"{served.url}/openai/v1/chat/completions", timeout=30,
                                json={"model": model_id, "messages": [{"role": "user", "content": "a"}], "n": 2},
                                headers={"Authorization": f"Bearer {broke}"})
    assert unsupported.status_code == 400 and unsupported.json()["error"]["param"] == "n"
    anonymous = requests.post(f"{served.url}/openai/v1/chat/completions", timeout=30,
                              json={"model": model_id, "messages": [{"role": "user", "content": "a"}]})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
