"""The SDK's catalogue calls and error mapping, ``proofmarket infer`` over it, and the node's own devnet."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner
from x402_helpers import PRICE, Chain, Served, anvil_or_skip, mlp_input

from proofmarket import Client
from proofmarket.api import create_app
from proofmarket.chain.deploy import load_deployment
from proofmarket.chain.devkeys import DEVNET_CHAIN_ID
from proofmarket.cli.main import app as cli
from proofmarket.core.errors import PaymentRequired, UnknownModel
from proofmarket.core.settings import Settings
from proofmarket.onchain import MarketHome, devnet_down

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def test_the_sdk_lists_models_and_maps_errors(node: Served, mlp_id: str, payee: LocalAccount, tmp_path: Path) -> None:
    with Client(node.url, cache_dir=tmp_path, devnet=True) as sdk:
        assert mlp_id in [m["id"] for m in sdk.models()]
        model = sdk.model(mlp_id)
        assert model["price"]["atomic"] == str(PRICE) and model["owner"] == payee.address
        with pytest.raises(UnknownModel) as unknown:
            sdk.model("bafkreinothere")
        assert unknown.value.code == "unknown_model" and unknown.value.http_status == 404
        with pytest.raises(PaymentRequired):  # no account: the 402 is an error, not a payment
            sdk.infer(mlp_id, mlp_input())


def test_proofmarket_infer_pays_and_verifies(node: Served, chain: Chain, mlp_id: str, payer: LocalAccount,
                                             payee: LocalAccount, tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(mlp_input()))
    before = chain.balances(payer.address, payee.address)

    done = CliRunner().invoke(cli, ["infer", mlp_id, "--input", str(path), "--node", node.url, "--devnet",
                                    "--out", str(tmp_path / "bundle.json"), "--json"])

    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    assert doc["payment"]["amount"] == str(PRICE) and doc["receipt"]["signer"]
    assert any("receipt signed by" in c for c in doc["verified"])
    assert json.loads((tmp_path / "bundle.json").read_text())["receipt"] == doc["receipt"]
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]
    job = httpx.get(f"{node.url}/v1/jobs/{doc['job_id']}", headers={"X-Job-Token": doc["access_token"]}).json()
    assert job["status"] == "settled"


def test_proofmarket_infer_without_a_key_exits_with_the_payment_code(node: Served, mlp_id: str,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(mlp_input()))

    done = CliRunner().invoke(cli, ["infer", mlp_id, "--input", str(path), "--node", node.url,
                                    "--key-env", "PROOFMARKET_TEST_NO_SUCH_KEY", "--json"])

    assert done.exit_code == 5 and "payment_required" in done.output


def test_payments_on_without_an_rpc_url_start_and_use_the_devnet(tmp_path: Path) -> None:
    anvil_or_skip()
    home = MarketHome(tmp_path)
    settings = Settings(_env_file=None, home=tmp_path, payments="on", prover_workers=1,  # type: ignore[call-arg]
                        database_url=f"sqlite:///{tmp_path / 'node.db'}")
    try:
        app = create_app(settings)
        described = app.state.services.payments.describe()
        app.state.services.close()
        info = home.devnet()
        assert info is not None and described["network"] == f"eip155:{DEVNET_CHAIN_ID}"
        deployment = load_deployment(home.deployment_file(DEVNET_CHAIN_ID))
        assert deployment is not None and described["asset"] == deployment.usdc
    finally:
        devnet_down(home)


def test_the_sdk_polls_a_paid_job_that_outlasts_the_wait(node_home: Path, mlp_id: str, chain: Chain,
                                                         payer: LocalAccount, payee: LocalAccount,
                                                         tmp_path: Path) -> None:
    from x402_helpers import node_settings

    app = create_app(node_settings(node_home, tmp_path / "node.db", chain.rpc_url, chain.deployment_file,
                                   infer_wait_s=0.001))
    app.state.services.catalog.register(mlp_id, price_atomic=PRICE, owner=payee.address)
    before = chain.balances(payer.address, payee.address)
    with Served(app) as served, Client(served.url, account=payer, cache_dir=tmp_path / "cache", devnet=True) as sdk:
        result = sdk.infer(mlp_id, mlp_input())  # 202, then GET /v1/jobs/{id} until settled
        assert result.status == "settled" and result.receipt is not None
        assert sdk.verify(result).valid
    app.state.services.close()
    assert chain.balances(payer.address, payee.address) == [before[0] - PRICE, before[1] + PRICE]
