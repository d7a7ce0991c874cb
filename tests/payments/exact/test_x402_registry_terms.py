"""The registry is the node's source of truth, seen by an independent client (x402 SDK, web3, ezkl only).

The owner lists the sample MLP at 0.25 USDC; the node serves it with its own default price. The client
finds the registry, the market and the verifier from the node, checks them on chain, pays the registry's
price over x402 to the (model, prover) revenue splitter, verifies the proof with the verifier contract,
and sees the call split across owner, prover and platform. Deactivating or repricing on chain changes
what the node sells within its poll interval (its registry follower reads the events; the paid path reads the
cache, no RPC)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from x402 import x402Client
from x402.http.clients import x402_httpx_transport
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402_helpers import PRICE, Chain, Served, mlp_input, node_settings, requirements_of

from proofmarket import Client
from proofmarket.api import create_app
from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.core.errors import RegistryMismatch
from proofmarket.onchain import Market

pytestmark = [pytest.mark.slow, pytest.mark.chain]

LISTED_PRICE = 250_000  # 0.25 USDC on the registry; the node's own price is PRICE (0.03)
OWNER_SHARE_BPS = 7_000
CLIENT_INDEX = 7


class Listed:
    def __init__(self, served: Served, market: Market, settings: Any) -> None:
        self.served, self.market, self.settings = served, market, settings


@pytest.fixture(scope="module")
def listed(node_home: Path, mlp_id: str, chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listed]:
    # every call's validation recorded: this module checks one call's record (the node's default samples them:
    # tests/onchain/test_listings_follower.py)
    settings = node_settings(node_home, tmp_path_factory.mktemp("registry-db") / "node.db", chain.rpc_url,
                             chain.deployment_file, validation_every_s=0)
    market = Market.open(settings)
    market.register_model(mlp_id, "0.25", OWNER_SHARE_BPS)
    app = create_app(settings)
    served = app.state.services.catalog.register(mlp_id, price_atomic=PRICE)  # the node's own price loses
    assert served.listed and served.price_atomic == LISTED_PRICE
    try:
        with Served(app) as node:
            yield Listed(node, market, settings)
    finally:
        market.close()


def _contract(chain: Chain, name: str, address: str) -> Any:
    return chain.client.w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name).abi)


def _pay(chain: Chain, account: LocalAccount, url: str, body: dict[str, Any]) -> httpx.Response:
    async def sdk_only() -> httpx.Response:
        client = x402Client()
        register_exact_evm_client(client, EthAccountSigner(account))
        client.set_spend_controls({"allowed_assets": [{"network": chain.network, "asset": chain.usdc.address}]})
        async with httpx.AsyncClient(transport=x402_httpx_transport(client), timeout=180) as http:
            return await http.post(url, json=body)

    return asyncio.run(sdk_only())


def test_an_independent_client_sees_the_registry_terms_and_a_three_way_split(
        listed: Listed, chain: Chain, mlp_id: str, tmp_path: Path) -> None:
    from proofmarket.chain import dev_account

    node, w3 = listed.served, chain.client.w3
    client_account = dev_account(CLIENT_INDEX, DEVNET_CHAIN_ID)
    # discovery: the node names its chain, registry and market, and the model's on-chain listing
    well_known = httpx.get(f"{node.url}/.well-known/ai-service.json").json()
    chain_doc = well_known["chain"]
    assert chain_doc["chain_id"] == chain.client.chain_id and chain_doc["registry"] and chain_doc["market"]
    (listed_model,) = [m for m in well_known["models"] if m["id"] == mlp_id]
    assert listed_model["price"]["atomic"] == str(LISTED_PRICE) and listed_model["active"] is True
    model = httpx.get(f"{node.url}/v1/models/{mlp_id}").json()
    listing = model["registry"]
    assert model["price"]["atomic"] == str(LISTED_PRICE) and listing["registered"] is True
    assert model["verifier"]["address"] == listing["verifier"] is not None

    # the client checks the listing on chain itself (raw web3 with the contracts' ABIs)
    registry = _contract(chain, "ModelRegistry", chain_doc["registry"])
    market = _contract(chain, "InferenceMarket", chain_doc["market"])
    onchain_id = bytes.fromhex(listing["onchain_id"][2:])
    assert registry.functions.modelIdOf(listing["owner"], keccak(text=mlp_id)).call() == onchain_id
    terms_onchain = registry.functions.terms(onchain_id).call()
    owner_onchain, verifier, price, share, _inputs, _count, active, _params = terms_onchain
    assert (owner_onchain, verifier, price, share, active) == (listing["owner"], listing["verifier"], LISTED_PRICE,
                                                               OWNER_SHARE_BPS, True)
    spec = {"verifier": verifier}
    prover = chain_doc["prover"]
    splitter = market.functions.splitterFor(onchain_id, prover).call()

    # the SDK does the same checks (and the verifier's code against the manifest) in one call
    with Client(node.url, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        checked = sdk.check_listing(mlp_id, chain.rpc_url)
    assert checked["price_atomic"] == str(LISTED_PRICE) and checked["verifier"] == verifier

    # the 402 terms: the registry's price, paid to the (model, prover) revenue splitter
    unpaid = httpx.post(f"{node.url}/v1/models/{mlp_id}/infer", json=mlp_input(), timeout=60)
    assert unpaid.status_code == 402
    terms = requirements_of(unpaid.headers["PAYMENT-REQUIRED"])
    assert int(terms.amount) == LISTED_PRICE and terms.pay_to == splitter == listing["pay_to"]

    owner, usdc = listing["owner"], chain.usdc
    platform_before = market.functions.platformBalance().call()
    before = {who: usdc.balance_of(who) for who in (client_account.address, owner, prover)}
    earned_before = market.functions.earned(owner).call()
    fee_bps = market.functions.params().call()[0]

    paid = _pay(chain, client_account, f"{node.url}/v1/models/{mlp_id}/infer", mlp_input())

    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert body["payment"]["pay_to"] == splitter and int(body["payment"]["amount"]) == LISTED_PRICE
    # the proof verifies on chain with the registry's verifier
    assert int.from_bytes(w3.eth.call({"to": spec["verifier"], "data": body["bundle"]["proof"]["evm_calldata"]}),
                          "big") == 1
    # and the node released the splitter: owner 70 %, platform fee, the rest to the prover
    fee = LISTED_PRICE * fee_bps // 10_000
    owner_cut = LISTED_PRICE * OWNER_SHARE_BPS // 10_000
    deadline = time.monotonic() + 60
    while usdc.balance_of(splitter) and time.monotonic() < deadline:
        time.sleep(0.5)
    after = {who: usdc.balance_of(who) for who in before}
    assert after[client_account.address] == before[client_account.address] - LISTED_PRICE
    assert after[owner] - before[owner] == owner_cut
    assert market.functions.platformBalance().call() - platform_before == fee
    gas_paid = before[prover] - after[prover]  # the prover pays no USDC gas: its USDC only grows
    assert after[prover] - before[prover] == LISTED_PRICE - fee - owner_cut, gas_paid
    assert market.functions.earned(owner).call() - earned_before == owner_cut
    earnings = httpx.get(f"{node.url}/v1/earnings", params={"address": owner}).json()
    assert int(earnings["earned"]) >= owner_cut and earnings["pending_total"] == "0"

    # another client cannot read this payer's job
    assert httpx.get(f"{node.url}/v1/jobs/{body['job_id']}").status_code == 404
    assert httpx.get(f"{node.url}/v1/jobs/{body['job_id']}", headers={"X-Job-Token": "j.x.y"}).status_code == 404


def _cli(listed: Listed, chain: Chain, *args: str) -> dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
           "PROOFMARKET_HOME": str(listed.settings.home), "PROOFMARKET_RPC_URL": chain.rpc_url,
           "PROOFMARKET_DEPLOYMENT_FILE": str(chain.deployment_file)}
    done = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", *args, "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_deactivating_or_repricing_on_chain_changes_what_the_node_sells(listed: Listed, chain: Chain,
                                                                       mlp_id: str) -> None:
    url = f"{listed.served.url}/v1/models/{mlp_id}/infer"
    try:
        assert _cli(listed, chain, "model", "deactivate", mlp_id)["active"] is False
        refused = _within_poll(listed, lambda: httpx.post(url, json=mlp_input(), timeout=60),
                               lambda r: r.status_code != 402)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "model_inactive"
        assert "PAYMENT-REQUIRED" not in refused.headers  # nothing to pay for
        time.sleep(listed.settings.chain.escrow_poll_s + 0.5)  # the catalogue refreshes on the registry's event
        shown = httpx.get(f"{listed.served.url}/v1/models/{mlp_id}").json()
        assert shown["active"] is False and shown["registry"]["active"] is False

        assert _cli(listed, chain, "model", "activate", mlp_id)["changed"] is True
        assert _cli(listed, chain, "model", "price", mlp_id, "0.5")["price"] == 500_000
        repriced = _within_poll(listed, lambda: httpx.post(url, json=mlp_input(), timeout=60),
                                lambda r: r.status_code == 402 and int(requirements_of(
                                    r.headers["PAYMENT-REQUIRED"]).amount) == 500_000)
        assert repriced.status_code == 402
        assert int(requirements_of(repriced.headers["PAYMENT-REQUIRED"]).amount) == 500_000
        time.sleep(listed.settings.chain.escrow_poll_s + 0.5)
        assert httpx.get(f"{listed.served.url}/v1/models/{mlp_id}").json()["price"]["atomic"] == "500000"
    finally:  # put the listing back, and wait until the node sells it as before: the next test may pay for it
        listed.market.set_active(mlp_id, True)
        listed.market.set_price(mlp_id, "0.25")
        _sold_as_listed(listed, mlp_id)


def _sold_as_listed(listed: Listed, mlp_id: str) -> dict[str, Any]:
    """The node's model document once its catalogue shows the registry's price and an active listing again."""
    deadline = time.monotonic() + 30
    while True:
        shown = httpx.get(f"{listed.served.url}/v1/models/{mlp_id}").json()
        if shown["price"]["atomic"] == str(LISTED_PRICE) and shown["active"] is True:
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)


def _within_poll(listed: Listed, ask: Any, done: Any) -> Any:
    """``ask()`` until ``done(answer)``, for at most three of the node's registry poll intervals."""
    deadline = time.monotonic() + 3 * listed.settings.chain.escrow_poll_s + 2
    while True:
        answer = ask()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_the_sdk_refuses_a_node_that_misstates_the_registry(listed: Listed, chain: Chain, mlp_id: str,
                                                            tmp_path: Path) -> None:
    """A node (or proxy) publishing a lower price or another verifier than the registry's is caught."""
    real = _sold_as_listed(listed, mlp_id)
    for field, forged in (("price", {**real, "price": {**real["price"], "atomic": "1"}}),
                          ("verifier", {**real, "verifier": {**real["verifier"], "address": "0x" + "11" * 20}})):
        def lie(request: httpx.Request, doc: dict[str, Any] = forged) -> httpx.Response:
            if request.url.path == f"/v1/models/{mlp_id}":
                return httpx.Response(200, json=doc)
            return httpx.Response(200, content=httpx.get(str(request.url).replace(
                "http://node", listed.served.url)).content)

        with Client("http://node", cache_dir=tmp_path / field, transport=httpx.MockTransport(lie)) as sdk, \
                pytest.raises(RegistryMismatch) as info:
            sdk.check_listing(mlp_id, chain.rpc_url)
        assert info.value.details["field"] == field


def test_earnings_cli_reads_the_chain(listed: Listed, chain: Chain, mlp_id: str) -> None:
    owner = listed.market.accounts.owner.address
    doc = _cli(listed, chain, "earnings", "--address", owner, "--model", mlp_id)
    assert doc["address"] == owner
    assert int(doc["earned"]) == listed.market.market.earned(owner)
    assert int(doc["platform_balance"]) == listed.market.market.platform_balance()
    assert int(doc["owed"]) == listed.market.market.owed(owner)


def test_withdraw_cli_refuses_when_nothing_is_owed(listed: Listed, chain: Chain) -> None:
    stranger = "0x000000000000000000000000000000000000dEaD"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")},
           "PROOFMARKET_HOME": str(listed.settings.home), "PROOFMARKET_RPC_URL": chain.rpc_url,
           "PROOFMARKET_DEPLOYMENT_FILE": str(chain.deployment_file)}
    done = subprocess.run([sys.executable, "-m", "proofmarket.cli.main", "withdraw", "--address", stranger, "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "owes nothing" in done.stdout + done.stderr


def test_a_settled_x402_call_gets_a_zk_validation_record(listed: Listed, mlp_id: str, chain: Chain) -> None:
    """With an ERC-8004 identity, a settled proven x402 call on a listing is re-verified on chain by the
    ZkValidator (the model's registered verifier) and recorded: response 100, evidence naming the paid bundle."""
    from proofmarket.chain import dev_account

    market = listed.market
    start = chain.client.block_number()
    agent_id, _ = market.register_agent(f"{listed.served.url}/.well-known/agent-registration.json")
    registries = market.erc8004
    paid = _pay(chain, dev_account(CLIENT_INDEX, DEVNET_CHAIN_ID), f"{listed.served.url}/v1/models/{mlp_id}/infer",
                mlp_input())
    assert paid.status_code == 200, paid.text
    receipt = paid.json()["payment"]["transaction"]
    requests = registries.validation.contract.events.ValidationRequest()

    def answered() -> list[dict[str, object]]:
        """This call's validation (its evidence names the call's payment: the module's other calls are recorded
        too, after their own tests), once the ZkValidator answered it: the request and the answer are two
        transactions, and a request alone has last_update 0."""
        logs = requests.get_logs(from_block=start, argument_filters={"agentId": agent_id})
        mine = [registries.validation.status(bytes(e["args"]["requestHash"])) for e in logs
                if str(e["args"]["requestURI"]).endswith(f"#receipt={receipt}")]
        return [s for s in mine if s["last_update"] != 0]

    deadline = time.monotonic() + 60
    while not answered() and time.monotonic() < deadline:
        time.sleep(0.2)
    new = answered()
    assert len(new) == 1
    status = new[0]
    assert status["response"] == 100 and status["tag"] == "zk-proof" and status["validator"] == registries.zk.address
    assert registries.validation.summary(agent_id, tag="zk-proof").count >= 1
