"""Attested bundles are signed in the EIP-712 domain of the chain the node is on, not the devnet's always."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proofmarket.chain import find_anvil
from proofmarket.chain.client import chain_id_of, node_chain_id, node_profile
from proofmarket.chain.devkeys import dev_account
from proofmarket.chain.devnet import Devnet
from proofmarket.core.errors import ChainError, RPCUnavailable, UsageError
from proofmarket.core.settings import Settings
from proofmarket.systems.workspace import Workspace


@pytest.fixture(autouse=True)
def _no_chain_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CHAIN", "RPC_URL", "NODE_KEY", "PRIVATE_KEY"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    # off the devnet the node signs from its keystore (a plain HOME/node.key is refused there)
    from eth_account import Account

    from proofmarket.chain.keystore import write_keystore

    password = tmp_path / "keystore-password"
    password.write_text("attested chain domain\n")
    password.chmod(0o600)
    write_keystore(tmp_path / "keys" / "node.json", Account.create().key, "attested chain domain", iterations=16)
    monkeypatch.setenv("PROOFMARKET_NODE_KEYSTORE", str(tmp_path / "keys" / "node.json"))
    monkeypatch.setenv("PROOFMARKET_KEYSTORE_PASSWORD_FILE", str(password))


@contextlib.contextmanager
def _forget_chain_ids() -> Iterator[None]:
    """chain_id_of caches per URL: a later devnet on this port is another chain."""
    try:
        yield
    finally:
        chain_id_of.cache_clear()


def _signed_domain(ws: Workspace, lm_id: str) -> dict[str, Any]:
    """Generate with the workspace's attested system; the bundle's domain, once the workspace verified it."""
    attested = ws.attested
    request = attested.runtime.request(lm_id, {"prompt": "which chain", "max_tokens": 4})
    bundle, cid = attested.runtime.generate(lm_id, request, attested.signer, attested.chain_id)
    doc = ws.store.get_json(cid)
    report = ws.verify(doc)
    assert report.valid and report.mode == "attested"
    assert any(attested.signer.address in check for check in report.checks), report.checks
    domain: dict[str, Any] = doc["proof"]["attestation"]["typedData"]["domain"]
    return domain


def test_a_workspace_on_base_sepolia_signs_in_its_domain(attested_home: Path, lm_id: str) -> None:
    ws = Workspace(Settings(_env_file=None, home=attested_home, chain="base-sepolia"))  # type: ignore[call-arg]
    try:
        assert _signed_domain(ws, lm_id)["chainId"] == 84532
    finally:
        ws.close()


def test_a_workspace_without_a_chain_signs_in_the_devnet_domain(attested_home: Path, lm_id: str) -> None:
    # its own workspace, made under this module's environment (the session's shared one may have been made before it)
    ws = Workspace(Settings(_env_file=None, home=attested_home))  # type: ignore[call-arg]
    try:
        assert _signed_domain(ws, lm_id)["chainId"] == 31337
    finally:
        ws.close()


def test_an_explicit_chain_id_wins(attested_home: Path, lm_id: str) -> None:
    ws = Workspace(Settings(_env_file=None, home=attested_home), chain_id=421614)  # type: ignore[call-arg]
    try:
        assert _signed_domain(ws, lm_id)["chainId"] == 421614
    finally:
        ws.close()


@pytest.mark.chain  # an anvil of its own, answering chain id 84532
def test_the_rpc_names_the_chain(tmp_path: Path, attested_home: Path, lm_id: str) -> None:
    """No PROOFMARKET_CHAIN: the chain id comes from PROOFMARKET_RPC_URL (an anvil answering 84532)."""
    try:
        anvil = find_anvil()
    except RPCUnavailable as exc:
        pytest.skip(f"anvil is not installed: {exc}")
    with Devnet(tmp_path / "chain", anvil=anvil, chain_id=84532) as chain, _forget_chain_ids():
        settings = Settings(_env_file=None, home=attested_home, rpc_url=chain.rpc_url)  # type: ignore[call-arg]
        assert chain_id_of(chain.rpc_url) == 84532 and node_chain_id(settings) == 84532
        assert node_profile(settings).name == "base-sepolia" and not node_profile(settings).dev_keys_allowed
        with pytest.raises(UsageError, match="PROOFMARKET_CHAIN"):
            settings.profile()  # core never asks the RPC
        with pytest.raises(ChainError, match="only accepted on the local devnet"):
            dev_account(0, chain_id_of(chain.rpc_url))
        ws = Workspace(settings)
        try:
            assert _signed_domain(ws, lm_id)["chainId"] == 84532
        finally:
            ws.close()
        based = Settings(_env_file=None, home=attested_home, rpc_url=chain.rpc_url,  # type: ignore[call-arg]
                         chain="base")
        assert node_chain_id(based) == 8453  # PROOFMARKET_CHAIN answers without the RPC
        with pytest.raises(UsageError, match="chain id 84532"):
            based.profile(chain_id_of(chain.rpc_url))  # a client checks it against the chain it talks to
