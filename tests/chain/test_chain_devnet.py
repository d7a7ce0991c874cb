"""Devnet lifecycle, state persistence, idempotent deployment, RPC errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chain_helpers import anvil_or_skip

from proofmarket.chain import ChainClient, Devnet, deploy, dev_account, load_deployment
from proofmarket.chain.devnet import free_port
from proofmarket.core.errors import RPCUnavailable

pytestmark = pytest.mark.chain


def test_deploy_is_idempotent_and_state_survives_a_restart(tmp_path: Path) -> None:
    anvil = anvil_or_skip()
    deployment_file = tmp_path / "deployment.json"
    with Devnet(tmp_path, anvil=anvil) as net:
        client = net.client()
        admin = dev_account(0, client.chain_id)
        first = deploy(client, admin, deployment_file)
        nonce = client.w3.eth.get_transaction_count(admin.address)
        assert deploy(client, admin, deployment_file) == first  # nothing sent
        assert client.w3.eth.get_transaction_count(admin.address) == nonce
        usdc, _, _ = first.bind(client)
        assert usdc.balance_of(dev_account(9, client.chain_id).address) == 100_000 * 10**6
    assert not net.running and net.state_file.exists()

    with Devnet(tmp_path, anvil=anvil) as again:  # a new port, same state file
        client = again.client()
        assert deploy(client, admin, deployment_file) == first
        assert client.w3.eth.get_transaction_count(admin.address) == nonce
    saved = json.loads(deployment_file.read_text())
    assert saved["chainId"] == 31337 and set(saved["contracts"]) == {
        "USDC", "ModelRegistry", "InferenceMarket", "IdentityRegistry", "ReputationRegistry", "ValidationRegistry",
        "ZkValidator", "StakeCheckpoints", "AttestationCourt", "CourtValidator", "SharedVerifier"}
    assert saved["contracts"]["InferenceMarket"]["block"] > 0


def test_a_deployment_without_the_erc8004_registries_gets_them_in_place(tmp_path: Path) -> None:
    anvil = anvil_or_skip()
    with Devnet(tmp_path, anvil=anvil) as net:
        client = net.client()
        admin = dev_account(0, client.chain_id)
        path = tmp_path / "deployment.json"
        first = deploy(client, admin, path)
        doc = json.loads(path.read_text())
        for name in ("IdentityRegistry", "ReputationRegistry", "ValidationRegistry"):
            del doc["contracts"][name]
        path.write_text(json.dumps(doc))  # as written before ERC-8004
        again = deploy(client, admin, path)
        assert again.market == first.market and again.registry == first.registry  # the market is kept
        assert again.erc8004 is not None and again.erc8004 != first.erc8004
        assert set(json.loads(path.read_text())["contracts"]) == set(first.contracts)


def test_deploy_again_when_the_recorded_contracts_are_gone(tmp_path: Path) -> None:
    anvil = anvil_or_skip()
    with Devnet(tmp_path / "a", anvil=anvil) as net:
        client = net.client()
        first = deploy(client, dev_account(0, client.chain_id), tmp_path / "deployment.json")
    with Devnet(tmp_path / "b", anvil=anvil) as fresh:  # empty chain: same addresses, but no code yet
        client = fresh.client()
        assert not client.code_at(first.market)
        second = deploy(client, dev_account(0, client.chain_id), tmp_path / "deployment.json")
        assert client.code_at(second.market)
    assert load_deployment(tmp_path / "deployment.json") == second


def test_missing_anvil_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROOFMARKET_ANVIL", str(tmp_path / "no-anvil"))
    with pytest.raises(RPCUnavailable, match="PROOFMARKET_ANVIL"):
        Devnet(tmp_path).start()


def test_anvil_that_will_not_start_is_a_clear_error(tmp_path: Path) -> None:
    anvil = anvil_or_skip()
    with pytest.raises(RPCUnavailable, match="anvil exited"):
        Devnet(tmp_path, anvil=anvil, extra_args=("--no-such-flag",)).start()


def test_dead_rpc_is_rpc_unavailable() -> None:
    client = ChainClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(RPCUnavailable, match="cannot reach the chain node"):
        client.block_number()


def test_a_port_another_anvil_took_first_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    """Two suites on one machine: the free port picked for a devnet is bound by another process's anvil before
    ours starts. That anvil answers the same chain id; the devnet must not talk to it: it starts on another port."""
    anvil = anvil_or_skip()
    with Devnet(None, anvil=anvil) as other:
        ours = Devnet(tmp_path / "ours", anvil=anvil)
        ours.port = other.port  # what the race leaves: the port ours picked is now the other's
        with ours:
            assert ours.port != other.port and ours.running
            mine, theirs = ours.client(), other.client()
            mine.rpc("evm_mine", [])  # one block on ours only
            assert mine.block_number() == theirs.block_number() + 1


def test_a_taken_port_someone_asked_for_is_an_error(tmp_path: Path) -> None:
    anvil = anvil_or_skip()
    with Devnet(None, anvil=anvil) as other, pytest.raises(RPCUnavailable, match="taken"):
        Devnet(tmp_path / "ours", anvil=anvil, port=other.port, startup_timeout=10).start()
