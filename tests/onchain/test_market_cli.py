"""The market CLI end to end, each command in its own process: chain up -> deploy -> model register ->
request -> fulfill -> chain down, and errors in one sentence with their exit codes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_run import run_cli
from market_helpers import Listed, anvil_or_skip

from proofmarket.onchain import MarketHome, devnet_down
from proofmarket.samples import sample_path
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def run_json(home: Path, *args: str, code: int = 0) -> Any:
    res = run_cli(home, *args, "--json")
    assert res.returncode == code, f"{args}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


@pytest.fixture
def cli_home(tmp_path: Path, market_workspace: Workspace, models: Listed) -> Iterator[Path]:
    """A fresh home holding the compiled models (their store copied), no chain."""
    anvil_or_skip()
    shutil.copytree(market_workspace.settings.store_dir, tmp_path / "store")
    yield tmp_path
    devnet_down(MarketHome(tmp_path))  # whatever happened, no anvil is left behind


def test_cli_market_flow(cli_home: Path, models: Listed) -> None:
    home, model_id = cli_home, models.public
    up = run_json(home, "chain", "up")
    assert up["started"] and up["chain_id"] == 31337

    deployment = run_json(home, "chain", "deploy")
    assert set(deployment["contracts"]) == {"USDC", "ModelRegistry", "InferenceMarket", "IdentityRegistry",
                                           "ReputationRegistry", "ValidationRegistry", "ZkValidator",
                                           "StakeCheckpoints", "AttestationCourt", "CourtValidator",
                                           "SharedVerifier"}

    registered = run_cli(home, "model", "register", model_id, "--price", "1.5", "--owner-share", "6000")
    assert registered.returncode == 0, registered.stderr
    assert "registered, price 1.5 USDC" in registered.stdout

    requested = run_json(home, "request", model_id, "--input", str(sample_path("mlp", "input")))
    assert requested["amount"] == 1_500_000 and requested["commitment"].startswith("0x")

    fulfilled = run_cli(home, "fulfill", str(requested["request_id"]))
    assert fulfilled.returncode == 0, fulfilled.stderr
    assert "fulfilled in tx 0x" in fulfilled.stdout
    assert "paid: owner 0.9, prover 0.5625, platform 0.0375 USDC" in fulfilled.stdout

    again = run_cli(home, "fulfill", str(requested["request_id"]))
    assert again.stderr.startswith("chain devnet (id 31337")  # every chain command says which chain it acts on
    assert again.returncode == 4 and again.stderr.splitlines()[1].startswith(
        "error (chain_error): request 1 is already settled")

    assert run_json(home, "chain", "down")["stopped"]


def test_cli_errors_are_one_sentence_with_exit_codes(tmp_path: Path) -> None:
    no_chain = run_cli(tmp_path, "refund", "1")
    assert no_chain.returncode == 4
    assert no_chain.stderr.strip() == (
        "error (chain_error): no chain to talk to: run 'proofmarket chain up' for a local devnet, or set "
        "PROOFMARKET_RPC_URL"
    )
    bad_salt = run_json(tmp_path, "request", "m", "--input", str(sample_path("mlp", "input")), "--salt", "a,b",
                        code=2)
    assert bad_salt["error"]["code"] == "bad_request"
    assert run_json(tmp_path, "chain", "down") == {"ok": True, "stopped": False, "pid": None}


def test_cli_prover_and_admin_commands(tmp_path: Path) -> None:
    anvil_or_skip()
    home = tmp_path
    try:
        run_json(home, "chain", "up")
        run_json(home, "chain", "deploy")  # on the devnet, deploy authorises and stakes the dev prover
        prover = run_json(home, "prover", "status")
        assert prover["eligible"] is True and prover["stake"] >= prover["min_stake"] > 0
        address, minimum = prover["address"], prover["min_stake"]
        assert run_json(home, "prover", "stake")["added"] == 0  # already at the minimum: nothing to do

        revoked = run_cli(home, "admin", "authorize", address, "--revoke")
        assert revoked.returncode == 0 and revoked.stdout.startswith(f"revoked prover {address}")
        assert run_json(home, "prover", "status")["eligible"] is False
        assert run_json(home, "admin", "authorize", address)["tx"]["hash"].startswith("0x")
        assert run_json(home, "prover", "status", address)["eligible"] is True

        run_json(home, "admin", "fee", "300")
        run_json(home, "admin", "pause")
        state = run_json(home, "admin", "status")
        assert state["paused"] is True and state["platform_fee_bps"] == 300
        too_high = run_json(home, "admin", "fee", "5000", code=4)  # the contract bounds the fee at 10%
        assert too_high["error"]["code"] == "contract_reverted"
        run_json(home, "admin", "unpause")
        assert run_json(home, "admin", "status")["paused"] is False

        staked = prover["stake"]  # the minimum plus a few claim bonds
        drop = ((staked - minimum) // 1_000_000 + 1) * 1_000_000
        unstaking = run_json(home, "prover", "unstake", str(drop // 1_000_000))
        assert unstaking["pending_unstake"] == drop and unstaking["stake"] == staked - drop
        assert run_json(home, "prover", "status")["eligible"] is False  # below the minimum now
        topped = run_json(home, "prover", "stake")
        assert topped["added"] == drop and topped["stake"] == staked
        early = run_json(home, "prover", "withdraw", code=4)  # the unstake delay is not over
        assert early["error"]["code"] == "contract_reverted"

        assert run_json(home, "admin", "authorize", "nope", code=2)["error"]["code"] == "bad_request"
    finally:
        devnet_down(MarketHome(home))
