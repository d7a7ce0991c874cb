"""``proofmarket verify`` anywhere and on chain: a bundle verifies in an empty home once its artifacts are fetched by
CID from ``--node`` (the error without it names the options); ``--onchain`` runs the proof through the verifier of
its model's registry listing (with its gas), and the chain refuses a proof with one flipped byte."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import node_settings
from cli_run import run_cli
from market_helpers import Listed, Proofs, anvil_or_skip
from served import Served

from proofmarket.api import create_app
from proofmarket.core.errors import VerificationFailed
from proofmarket.onchain import MarketHome, devnet_down
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture
def chain_home(tmp_path: Path, market_workspace: Workspace, models: Listed) -> Iterator[Path]:
    """A home holding the compiled models, a devnet with the market deployed and the public MLP listed."""
    anvil_or_skip()
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(market_workspace.settings.store_dir, home / "store")
    try:
        for step in (["chain", "up"], ["chain", "deploy"], ["model", "register", models.public, "--price", "0.5"]):
            done = run_cli(home, *step)
            assert done.returncode == 0, done.stderr
        yield home
    finally:
        devnet_down(MarketHome(home))


def test_verify_onchain_accepts_a_fresh_bundle_with_its_gas_and_the_chain_refuses_a_flipped_byte(
        chain_home: Path, proofs: Proofs, models: Listed, tmp_path: Path) -> None:
    bundle = proofs.mlp.to_doc()
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    done = run_cli(chain_home, "verify", str(path), "--onchain", "--json")
    assert done.returncode == 0, done.stderr
    onchain = json.loads(done.stdout)["onchain"]
    assert onchain["valid"] is True and onchain["model_id"] == models.public and onchain["gas"] > 100_000
    assert onchain["chain_id"] == 31337 and onchain["verifier"].startswith("0x")

    from proofmarket.chain.contracts import ModelRegistry
    from proofmarket.chain.onchain_verify import verify_on_chain
    from proofmarket.core.settings import Settings
    from proofmarket.onchain.service import connect

    client = connect(Settings(_env_file=None, home=chain_home))
    registry = ModelRegistry(client, onchain["registry"])
    calldata = bundle["proof"]["evm_calldata"]
    flipped = calldata[:300] + ("0" if calldata[300] != "0" else "1") + calldata[301:]
    with pytest.raises(VerificationFailed, match="refused this proof|returned false"):
        verify_on_chain(client, registry, {**bundle, "proof": {**bundle["proof"], "evm_calldata": flipped}})
    other = proofs.other_model.to_doc()  # a model nobody listed: nothing on chain can check it
    unlisted = run_cli(chain_home, "verify", str(_write(tmp_path / "other.json", other)), "--onchain")
    assert unlisted.returncode != 0 and "error (registry_mismatch)" in unlisted.stderr
    assert "is not listed" in unlisted.stderr

    from proofmarket.sdk.client import Client  # the SDK: the same check, with the caller's RPC

    cache = tmp_path / "sdk-cache"
    shutil.copytree(chain_home / "store", cache)  # the artifacts this client fetched before
    with Client("http://127.0.0.1:9", devnet=True, cache_dir=cache) as sdk:
        report = sdk.verify(bundle, onchain=True, rpc_url=client.rpc_url, registry=onchain["registry"])
        assert any(check.startswith("verifyProof on chain 31337") for check in report.checks)
        with pytest.raises(VerificationFailed):
            sdk.verify({**bundle, "proof": {**bundle["proof"], "evm_calldata": flipped}}, onchain=True,
                       rpc_url=client.rpc_url, registry=onchain["registry"])


def test_a_bundle_verifies_in_an_empty_home_with_its_artifacts_fetched_from_a_node(
        market_workspace: Workspace, proofs: Proofs, models: Listed, tmp_path: Path) -> None:
    path = _write(tmp_path / "bundle.json", proofs.mlp.to_doc())
    empty = tmp_path / "empty"
    missing = run_cli(empty, "verify", str(path))
    assert missing.returncode == 2 and "--node" in missing.stderr and "--gateway" in missing.stderr
    node_home = tmp_path / "node"
    shutil.copytree(market_workspace.settings.store_dir, node_home / "store")
    app = create_app(node_settings(node_home, tmp_path / "node.db"))
    app.state.services.catalog.register(models.public, price_atomic=1_000)
    try:
        with Served(app) as served:
            fetched = run_cli(empty, "verify", str(path), "--node", served.url, "--json")
    finally:
        app.state.services.close()
    assert fetched.returncode == 0, fetched.stderr
    doc = json.loads(fetched.stdout)
    assert doc["valid"] is True and doc["model_id"] == models.public and doc["onchain"] is None


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path
