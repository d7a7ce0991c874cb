"""``proofmarket facilitator serve``'s app without a chain: what it lists, what it refuses and how, which key it
pays gas with, and the node's start-up check of ``/supported`` (the SDK's HTTP client against the app).

The SDK facilitator here points at an RPC URL where nothing listens: every request below is answered before
the chain is needed, or shows how an unreachable chain is answered."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from payments_helpers import signed_payload
from pydantic import SecretStr
from typer.testing import CliRunner
from x402 import x402FacilitatorSync
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
from x402.schemas import PaymentPayload, PaymentRequirements

from proofmarket.chain.devkeys import ANVIL_DEV_KEYS, DEVNET_CHAIN_ID, dev_account
from proofmarket.chain.keystore import write_keystore
from proofmarket.cli.main import app as cli
from proofmarket.core.errors import FacilitatorUnavailable, UsageError
from proofmarket.core.settings import Settings, X402Settings
from proofmarket.payments.facilitator_server import (
    DEV_FACILITATOR_SERVE_INDEX,
    MAX_REQUEST_BYTES,
    ServedFacilitator,
    facilitator_account,
    facilitator_app,
)
from proofmarket.payments.facilitators import check_supported, local_facilitator, remote_facilitator

NETWORK = f"eip155:{DEVNET_CHAIN_ID}"
BASE_CHAIN_ID = 8453
DEAD_RPC = "http://127.0.0.1:9/v2/secret-api-key"
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SIGNER = dev_account(DEV_FACILITATOR_SERVE_INDEX, DEVNET_CHAIN_ID)


def served(facilitator: x402FacilitatorSync | None = None) -> ServedFacilitator:
    sdk = facilitator or local_facilitator(SIGNER, DEAD_RPC, NETWORK)
    return ServedFacilitator(sdk, NETWORK, SIGNER.address, DEAD_RPC)


@pytest.fixture
def http() -> TestClient:
    return TestClient(facilitator_app(served()), base_url="http://facilitator")


def requirements(network: str = NETWORK) -> PaymentRequirements:
    return PaymentRequirements(scheme="exact", network=network, asset=USDC, amount="1000",
                               pay_to=dev_account(1, DEVNET_CHAIN_ID).address, max_timeout_seconds=600,
                               extra={"name": "USD Coin", "version": "2"})


def body(network: str = NETWORK) -> dict[str, Any]:
    terms = requirements(network)
    payload: PaymentPayload = signed_payload(dev_account(2, DEVNET_CHAIN_ID), terms)
    return {"x402Version": 2, "paymentPayload": payload.model_dump(mode="json", by_alias=True, exclude_none=True),
            "paymentRequirements": terms.model_dump(mode="json", by_alias=True, exclude_none=True)}


def test_it_lists_its_schemes_version_2_on_its_own_network_only(http: TestClient) -> None:
    answer = http.get("/supported").json()

    kinds = [{k: v for k, v in kind.items() if k != "extra"} for kind in answer["kinds"]]
    assert kinds == [{"x402Version": 2, "scheme": "exact", "network": NETWORK},  # not the SDK's v1 list
                     {"x402Version": 2, "scheme": "batch-settlement", "network": NETWORK},
                     {"x402Version": 2, "scheme": "upto", "network": NETWORK}]
    upto = answer["kinds"][2]  # upto clients bind their witness to the facilitator that settles
    assert upto["extra"]["facilitatorAddress"] == SIGNER.address
    assert SIGNER.address in answer["signers"]["eip155:*"]


@pytest.mark.parametrize("path", ["/verify", "/settle"])
def test_bodies_that_are_not_facilitator_requests_are_refused_with_their_code(http: TestClient, path: str) -> None:
    too_large = http.post(path, content=b" " * (MAX_REQUEST_BYTES + 1), headers={"content-type": "application/json"})
    too_deep = http.post(path, content=b"[" * 100 + b"]" * 100)
    not_json = http.post(path, content=b"{nope")
    no_payload = http.post(path, json={"x402Version": 2, "paymentRequirements": {}})
    version_1 = http.post(path, json={**body(), "x402Version": 1})
    bad_fields = http.post(path, json={**body(), "paymentRequirements": {"scheme": "exact"}})

    assert (too_large.status_code, too_large.json()["error"]) == (413, "json_too_large")
    assert (too_deep.status_code, too_deep.json()["error"]) == (400, "json_too_deep")
    assert (not_json.status_code, not_json.json()["error"]) == (400, "invalid_request")
    assert (no_payload.status_code, no_payload.json()["error"]) == (400, "invalid_request")
    assert (version_1.status_code, version_1.json()["error"]) == (400, "unsupported_version")
    assert (bad_fields.status_code, bad_fields.json()["error"]) == (400, "invalid_request")
    assert "payTo" in bad_fields.json()["message"] or "pay_to" in bad_fields.json()["message"]


def test_a_body_larger_than_it_declares_is_cut_at_the_limit(http: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(MAX_REQUEST_BYTES // 1024 + 2):
            yield b" " * 1024

    response = http.post("/verify", content=chunks())  # no Content-Length: read until the limit, then refused

    assert response.status_code == 413


def test_another_network_is_a_refusal_the_node_can_read(http: TestClient) -> None:
    other = f"eip155:{BASE_CHAIN_ID}"
    verify = http.post("/verify", json=body(other))
    settle = http.post("/settle", json=body(other))

    assert verify.status_code == 200 and verify.json()["isValid"] is False
    assert verify.json()["invalidReason"] == "unsupported_scheme"
    assert settle.status_code == 200 and settle.json()["success"] is False
    assert settle.json()["errorReason"] == "unsupported_scheme" and settle.json()["network"] == other


def test_an_unreachable_rpc_is_a_refusal_that_does_not_quote_the_rpc_url(http: TestClient) -> None:
    verify = http.post("/verify", json=body())

    assert verify.status_code == 200 and verify.json()["isValid"] is False
    assert "secret-api-key" not in verify.text and "<rpc>" in verify.text


class Broken(x402FacilitatorSync):
    def verify(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom at {DEAD_RPC}")


def test_an_unexpected_failure_is_a_500_without_its_text() -> None:
    http = TestClient(facilitator_app(served(Broken())), raise_server_exceptions=False)

    response = http.post("/verify", json=body())

    assert response.status_code == 500 and response.json()["error"] == "facilitator_error"
    assert "secret-api-key" not in response.text and "RuntimeError" in response.json()["message"]


# --- the node's side: /supported at start-up -------------------------------------------------------------
def sdk_client(http: TestClient) -> HTTPFacilitatorClientSync:
    return HTTPFacilitatorClientSync(FacilitatorConfig(url="http://facilitator", http_client=http))


def test_the_node_checks_supported_for_its_network(http: TestClient) -> None:
    check_supported(sdk_client(http), NETWORK, "http://facilitator")  # serves the devnet: nothing raised

    with pytest.raises(UsageError) as wrong:
        check_supported(sdk_client(http), f"eip155:{BASE_CHAIN_ID}", "http://facilitator")

    assert wrong.value.exit_code == 2
    assert wrong.value.message == (f"the facilitator at http://facilitator (PROOFMARKET_FACILITATOR_URL) does not "
                                   f"settle exact payments on this node's chain eip155:{BASE_CHAIN_ID} (x402 version "
                                   f"2); it supports batch-settlement on {NETWORK}, exact on {NETWORK}, upto on "
                                   f"{NETWORK}")


def test_a_facilitator_that_does_not_answer_supported_is_unavailable() -> None:
    down = TestClient(bad_gateway, base_url="http://facilitator")  # a proxy in front of a facilitator that is down

    with pytest.raises(FacilitatorUnavailable) as outage:
        check_supported(sdk_client(down), NETWORK, "http://facilitator")

    assert outage.value.http_status == 503 and "/supported" in outage.value.message


async def bad_gateway(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 502, "headers": []})
    await send({"type": "http.response.body", "body": b"bad gateway"})


# --- its key --------------------------------------------------------------------------------------------
def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def extra(**values: Any) -> X402Settings:
    return X402Settings(_env_file=None, **values)  # type: ignore[call-arg]


OWN_KEY = "0x" + "11" * 32


def test_its_key_is_its_own(tmp_path: Any) -> None:
    home = {"home": tmp_path}
    assert facilitator_account(settings(**home), extra(), DEVNET_CHAIN_ID).address == SIGNER.address  # devnet
    plain = facilitator_account(settings(**home), extra(facilitator_key=SecretStr(OWN_KEY[2:])), DEVNET_CHAIN_ID)
    assert plain.key.hex().removeprefix("0x") == OWN_KEY[2:]  # a plain key: the devnet only

    with pytest.raises(UsageError, match="keys new --role facilitator"):  # off the devnet: no default
        facilitator_account(settings(**home), extra(), BASE_CHAIN_ID)
    with pytest.raises(UsageError, match="keys import --role facilitator"):  # nor a plain key
        facilitator_account(settings(**home), extra(facilitator_key=SecretStr(OWN_KEY)), BASE_CHAIN_ID)
    password = tmp_path / "password"
    password.write_text("correct horse\n")
    password.chmod(0o600)
    keystore = tmp_path / "keys" / "facilitator.json"
    write_keystore(keystore, bytes.fromhex(OWN_KEY[2:]), "correct horse", iterations=2**4)
    kept = facilitator_account(settings(home=tmp_path, keystore_password_file=password), extra(), BASE_CHAIN_ID)
    assert kept.key.hex().removeprefix("0x") == OWN_KEY[2:]  # its keystore, unlocked with the password file

    with pytest.raises(UsageError, match="the node's"):
        facilitator_account(settings(**home), extra(facilitator_key=SecretStr(OWN_KEY), node_key=SecretStr(OWN_KEY)),
                            DEVNET_CHAIN_ID)
    with pytest.raises(UsageError, match="the (node|owner)'s"):  # a node without a key signs as the owner
        facilitator_account(settings(private_key=SecretStr(OWN_KEY[2:]), **home),
                            extra(facilitator_key=SecretStr(OWN_KEY)), DEVNET_CHAIN_ID)
    other = tmp_path / "other"
    write_keystore(other / "keys" / "facilitator.json", bytes.fromhex(ANVIL_DEV_KEYS[7][2:]), "correct horse",
                   iterations=2**4)
    with pytest.raises(UsageError, match="public anvil dev key"):  # anvil's public keys stay on the devnet
        facilitator_account(settings(home=other, keystore_password_file=password), extra(), BASE_CHAIN_ID)
    with pytest.raises(UsageError, match="not a valid private key"):
        facilitator_account(settings(home=tmp_path / "third"), extra(facilitator_key=SecretStr("0x1234")),
                            DEVNET_CHAIN_ID)


def test_serve_without_a_chain_is_a_usage_error(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROOFMARKET_RPC_URL", raising=False)

    result = CliRunner().invoke(cli, ["facilitator", "serve", "--home", str(tmp_path)])

    assert result.exit_code == 2, result.output
    assert "(bad_request)" in result.output and "PROOFMARKET_RPC_URL" in result.output


def test_a_facilitator_with_a_token_refuses_requests_without_it() -> None:
    guarded = TestClient(facilitator_app(served(), token="s3cret-token"), base_url="http://facilitator")
    for path, method in (("/supported", "get"), ("/verify", "post"), ("/settle", "post")):
        bare = getattr(guarded, method)(path, json=body()) if method == "post" else guarded.get(path)
        wrong = getattr(guarded, method)(path, headers={"Authorization": "Bearer nope"},
                                         **({"json": body()} if method == "post" else {}))
        assert bare.status_code == wrong.status_code == 401 and bare.json()["error"] == "unauthorized"
        assert "s3cret" not in bare.text
    assert guarded.get("/health").status_code == 200  # liveness stays open
    ok = guarded.get("/supported", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()["kinds"][0]["network"] == NETWORK
    # the node's client sends it: its /supported check passes through the guard
    with_token = HTTPFacilitatorClientSync(FacilitatorConfig(url="http://facilitator", http_client=TestClient(
        facilitator_app(served(), token="s3cret-token"), base_url="http://facilitator",
        headers={"Authorization": "Bearer s3cret-token"})))
    check_supported(with_token, NETWORK, "http://facilitator")
    with pytest.raises(FacilitatorUnavailable):
        check_supported(sdk_client(guarded), NETWORK, "http://facilitator")
    node_side = remote_facilitator("http://facilitator.example", token="s3cret-token")
    assert node_side._http_client.headers["authorization"] == "Bearer s3cret-token"  # what build_x402 makes
    node_side.close()
