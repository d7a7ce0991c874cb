"""The RPC session reads the environment's proxy and CA settings once, for its URL, and never per request."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.chain.rpc_session import rpc_session


def test_a_proxy_set_in_the_environment_still_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    session = rpc_session("https://rpc.example/v1")
    assert session.proxies.get("https") == "http://proxy.example:3128"
    assert session.trust_env is False  # requests reads nothing more from the environment on each request


def test_no_proxy_keeps_the_rpc_direct_and_a_ca_bundle_is_kept(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = rpc_session("http://127.0.0.1:8545")
    assert not session.proxies
    assert session.verify == str(bundle)


def test_a_later_change_to_the_environment_does_not_reach_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    session = rpc_session("https://rpc.example/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert "https" not in session.proxies


PENDING_WITHDRAWALS_ABI = [{"type": "function", "name": "pendingWithdrawals", "stateMutability": "view",
                            "inputs": [{"name": "channelId", "type": "bytes32"}],
                            "outputs": [{"name": "amount", "type": "uint128"},
                                        {"name": "initiatedAt", "type": "uint40"}]}]


def test_a_contract_is_built_once_per_address_and_abi() -> None:
    """Building a web3 contract hashes every function's selector: the client keeps one per (address, ABI)."""
    from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI
    from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS

    from proofmarket.chain.client import ChainClient

    client = ChainClient("http://127.0.0.1:9")  # never asked: building a contract makes no request
    one = client.contract(BATCH_SETTLEMENT_ADDRESS, BATCH_SETTLEMENT_ABI)
    assert client.contract(BATCH_SETTLEMENT_ADDRESS.lower(), BATCH_SETTLEMENT_ABI) is one
    narrow = client.contract(BATCH_SETTLEMENT_ADDRESS, PENDING_WITHDRAWALS_ABI)
    assert narrow is not one and narrow.address == one.address
    assert [f.fn_name for f in narrow.all_functions()] == ["pendingWithdrawals"]
    other = client.contract("0x" + "11" * 20, BATCH_SETTLEMENT_ABI)
    assert other is not one and other.address == "0x" + "11" * 20


def test_a_client_keeps_a_bounded_number_of_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived client (a node meeting many consumer contracts, an SDK verifying bundle after bundle with freshly
    loaded ABIs) keeps at most CONTRACTS_KEPT contracts: the oldest goes first."""
    from proofmarket.chain import client as client_module
    monkeypatch.setattr(client_module, "CONTRACTS_KEPT", 3)
    client = client_module.ChainClient("http://127.0.0.1:9")
    first = client.contract("0x" + "01" * 20, PENDING_WITHDRAWALS_ABI)
    for i in range(2, 6):
        client.contract("0x" + f"{i:02x}" * 20, PENDING_WITHDRAWALS_ABI)
    assert len(client._contracts) == 3
    assert client.contract("0x" + "05" * 20, PENDING_WITHDRAWALS_ABI) is client.contract("0x" + "05" * 20,
                                                                                        PENDING_WITHDRAWALS_ABI)
    assert client.contract("0x" + "01" * 20, PENDING_WITHDRAWALS_ABI) is not first  # made again after it went


def test_a_prepared_read_of_an_unreachable_chain_is_rpc_unavailable_and_counted() -> None:
    """``ChainClient.read`` (the withdrawal read on every voucher) goes straight to the provider: it still maps a
    chain that does not answer to ``rpc_unavailable`` and counts the request for /metrics."""
    from proofmarket.chain import rpc_stats
    from proofmarket.chain.client import ChainClient
    from proofmarket.core.errors import RPCUnavailable

    before = rpc_stats.snapshot()[0].get(("eth_call", "unreachable"), 0)
    with pytest.raises(RPCUnavailable):
        ChainClient("http://127.0.0.1:9").read("0x" + "11" * 20, "pendingWithdrawals(bytes32)", [bytes(32)],
                                               ["uint128", "uint40"])
    assert rpc_stats.snapshot()[0].get(("eth_call", "unreachable"), 0) == before + 1
