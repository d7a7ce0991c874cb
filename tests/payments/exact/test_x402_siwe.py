"""Sign-In with Ethereum on a devnet node: an EOA and a contract wallet (ERC-1271, deployed; ERC-6492, not yet)
sign in, read their history, make an API key and list a model; every field that does not match is named; the old
address signature still works (deprecated)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402_helpers import Chain, Served

from proofmarket.chain import dev_account
from proofmarket.chain.artifacts import load_artifact_file
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.address_signature import sign_headers, sign_siwe, siwe_headers, siwe_message
from proofmarket.core.errors import Unauthorized
from proofmarket.samples import sample_path
from proofmarket.sdk.client import Client

ARTIFACTS = Path(__file__).resolve().parents[2] / "chain" / "artifacts"
SUFFIX = bytes.fromhex("64926492" * 8)
WALLET_OWNER: LocalAccount = Account.from_key("0x" + "c3" * 32)
STRANGER: LocalAccount = Account.from_key("0x" + "d4" * 32)


def deploy(chain: Chain, name: str, *args: Any) -> Any:
    artifact = load_artifact_file(ARTIFACTS / f"{name}.json", name)
    address, _ = chain.client.deploy(artifact, dev_account(0, DEVNET_CHAIN_ID), *args)
    return chain.client.contract(address, artifact.abi)


@pytest.fixture(scope="module")
def factory(chain: Chain) -> Any:
    return deploy(chain, "OwnerWalletFactory")


def terms(node: Served) -> dict[str, Any]:
    return dict(httpx.get(f"{node.url}/.well-known/ai-service.json").json()["address_signature"]["siwe"])


def whoami(node: Served, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{node.url}/v1/auth/whoami", headers=headers)


def test_an_eoa_signs_in_once_and_every_signed_route_takes_the_session(node: Served, tmp_path: Path) -> None:
    account = Account.from_key("0x" + "e5" * 32)
    with Client(node.url, account=account, cache_dir=tmp_path) as sdk:
        assert sdk.history() == {"jobs": [], "requests": []}  # one-request SIWE message, resource proofmarket:history
        assert sdk.sign_in() == {"address": account.address.lower(), "signed_with": "siwe-session"}
        key = sdk.keys.create(cap_atomic=10_000)
        assert [k["id"] for k in sdk.keys.list()] == [key["id"]]
        assert sdk.history()["jobs"] == []
    session = sdk.session
    assert session is not None
    assert whoami(node, session[0]).json()["signed_with"] == "siwe-session"  # reusable until it expires


def test_a_contract_wallet_signs_in_reads_its_history_makes_a_key_and_lists_a_model(
        chain: Chain, node: Served, factory: Any, tmp_path: Path) -> None:
    wallet = deploy(chain, "OwnerWallet", WALLET_OWNER.address).address
    with Client(node.url, account=WALLET_OWNER, wallet=wallet, cache_dir=tmp_path) as sdk:
        assert sdk.sign_in()["address"] == wallet.lower()
        assert sdk.history() == {"jobs": [], "requests": []}
        key = sdk.keys.create(models=None, cap_atomic=5_000)
        assert key["key"].startswith("pmk_") and [k["id"] for k in sdk.keys.list()] == [key["id"]]
        job = sdk.list_model(sample_path("mlp"), json.loads(sample_path("mlp", "samples").read_text()),
                             price_atomic=25_000, name="wallet-listed-mlp")
        model_id = sdk.wait_listing(job, timeout_s=600)
        assert sdk.model(model_id)["owner"].lower() == wallet.lower()
    # the wallet's owner key alone is not the wallet: another key's signature for it is refused
    with Client(node.url, account=STRANGER, wallet=wallet, cache_dir=tmp_path) as stranger, \
            pytest.raises(Unauthorized, match="signature is not"):
        stranger.sign_in()


def test_a_counterfactual_wallet_signs_in_with_erc6492_and_stays_undeployed(
        chain: Chain, node: Served, factory: Any) -> None:
    salt = b"\x07" * 32
    wallet = factory.functions.addressOf(WALLET_OWNER.address, salt).call()
    assert chain.client.code_at(wallet) == b""
    message = siwe_message(wallet, terms(node), ["proofmarket:whoami"])
    inner = sign_siwe(WALLET_OWNER, message)
    deploy_call = factory.functions.deploy(WALLET_OWNER.address, salt)._encode_transaction_data()
    wrapped = encode(["address", "bytes", "bytes"], [factory.address, bytes.fromhex(deploy_call[2:]), inner]) + SUFFIX
    answer = whoami(node, siwe_headers(message, wrapped))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"address": wallet.lower(), "signed_with": "siwe"}
    assert chain.client.code_at(wallet) == b""  # checked inside an eth_call: nothing deployed
    stranger = encode(["address", "bytes", "bytes"], [factory.address, bytes.fromhex(deploy_call[2:]),
                                                      sign_siwe(STRANGER, message)]) + SUFFIX
    assert field_of(whoami(node, siwe_headers(message, stranger))) == "signer"


def field_of(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    return str(response.json()["error"]["details"]["field"])


def test_every_field_that_does_not_match_is_named(node: Served) -> None:
    account = Account.from_key("0x" + "f6" * 32)
    good = terms(node)

    def signed(t: dict[str, Any] = good, resources: tuple[str, ...] = ("proofmarket:whoami",), lifetime: int = 60,
               by: LocalAccount = account) -> dict[str, str]:
        message = siwe_message(account.address, t, list(resources), lifetime_s=lifetime)
        return siwe_headers(message, sign_siwe(by, message))

    assert field_of(whoami(node, signed({**good, "domain": "evil.example"}))) == "domain"
    assert field_of(whoami(node, signed({**good, "uri": "https://evil.example"}))) == "uri"
    assert field_of(whoami(node, signed({**good, "chain_id": 1}))) == "chain_id"
    assert field_of(whoami(node, signed(resources=("proofmarket:history",)))) == "purpose"
    assert field_of(whoami(node, signed(lifetime=3600))) == "expiry"  # one-request messages live 10 minutes
    assert field_of(whoami(node, signed(by=STRANGER))) == "signer"
    assert field_of(whoami(node, {"X-Siwe-Message": base64.b64encode(b"hello").decode(),
                                  "X-Siwe-Signature": "0x00"})) == "message"
    once = signed()
    assert whoami(node, once).status_code == 200
    assert field_of(whoami(node, once)) == "nonce"  # a one-request message opens one request
    expired = signed(resources=("proofmarket:session",), lifetime=1)
    time.sleep(2)
    assert field_of(whoami(node, expired)) == "expiry"


def test_the_old_address_signature_still_opens_a_read(node: Served) -> None:
    account = Account.from_key("0x" + "a7" * 32)
    signer = httpx.get(f"{node.url}/.well-known/ai-service.json").json()["address_signature"]["node"]
    answer = whoami(node, sign_headers(account, signer, "whoami"))
    assert answer.status_code == 200 and answer.json()["signed_with"] == "address-signature"


def test_a_6492_signature_whose_factory_burns_gas_is_refused_within_the_cap(chain: Chain, node: Served) -> None:
    """An anonymous request with an ERC-6492 signature whose "factory" loops until it runs out of gas (before: the
    node ran it with the block's gas, over 20M, on the event loop of the async routes): refused, under the node's
    gas cap and time limit, while /health keeps answering; the same refusal is then answered from memory."""
    from concurrent.futures import ThreadPoolExecutor

    from eth_utils.address import to_checksum_address

    from proofmarket.chain.signatures import WALLET_CHECK_TIMEOUT_S

    # creation code returning the runtime 5b600056 (JUMPDEST PUSH1 0 JUMP: a loop that burns every unit of gas)
    burner_tx = chain.client.w3.eth.send_transaction({"from": dev_account(0, DEVNET_CHAIN_ID).address,
                                                      "data": "0x635b6000566000526004601cf3"})
    burner = to_checksum_address(chain.client.w3.eth.wait_for_transaction_receipt(burner_tx)["contractAddress"])
    wallet = Account.from_key("0x" + "b8" * 32).address
    message = siwe_message(wallet, terms(node), ["proofmarket:api-keys"])
    wrapped = encode(["address", "bytes", "bytes"], [burner, b"\x01", b"\x02" * 65]) + SUFFIX
    with ThreadPoolExecutor(max_workers=1) as pool:
        start = time.monotonic()
        refused = pool.submit(httpx.get, f"{node.url}/v1/keys", headers=siwe_headers(message, wrapped), timeout=60)
        assert httpx.get(f"{node.url}/health", timeout=10).status_code == 200  # the node answers meanwhile
        answer = refused.result()
    assert field_of(answer) == "signer", answer.text
    assert time.monotonic() - start < WALLET_CHECK_TIMEOUT_S + 2
    again = httpx.get(f"{node.url}/v1/keys", headers=siwe_headers(message, wrapped), timeout=60)
    assert field_of(again) in ("signer", "nonce")
