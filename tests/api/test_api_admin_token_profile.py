"""The start-up refusal of placeholder admin tokens asks the chain profile, not the RPC URL alone: a node named
onto a real chain (PROOFMARKET_CHAIN) is off the devnet even without an RPC URL; a node named onto the devnet
with an explicit RPC URL is on it; an RPC URL whose chain is not named counts as off the devnet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from proofmarket.api.security import check_admin_token, known_devnet
from proofmarket.core.errors import UsageError
from proofmarket.core.settings import Settings

WEAK = "changethis"
STRONG = "0123456789abcdef0123456789abcdef"


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, home=tmp_path, **overrides)  # type: ignore[call-arg]


@pytest.mark.parametrize(("overrides", "devnet"), [
    ({}, True),
    ({"chain": "devnet"}, True),
    ({"chain": "devnet", "rpc_url": "http://127.0.0.1:8545"}, True),
    ({"chain": "base"}, False),
    ({"chain": "base-sepolia", "rpc_url": "https://sepolia.base.org"}, False),
    ({"rpc_url": "http://127.0.0.1:8545"}, False),
])
def test_known_devnet_follows_the_profile(tmp_path: Path, overrides: dict[str, Any], devnet: bool) -> None:
    assert known_devnet(settings(tmp_path, **overrides)) is devnet


@pytest.mark.parametrize("chain", ["base", "arbitrum-sepolia"])
def test_a_named_real_chain_refuses_a_placeholder_token_on_loopback(tmp_path: Path, chain: str) -> None:
    with pytest.raises(UsageError, match="PROOFMARKET_ADMIN_TOKEN"):
        check_admin_token(settings(tmp_path, chain=chain, admin_token=SecretStr(WEAK), api_host="127.0.0.1"))
    check_admin_token(settings(tmp_path, chain=chain, admin_token=SecretStr(STRONG), api_host="127.0.0.1"))


def test_the_named_devnet_on_loopback_accepts_a_placeholder_token(tmp_path: Path) -> None:
    check_admin_token(settings(tmp_path, chain="devnet", rpc_url="http://127.0.0.1:8545",
                               admin_token=SecretStr(WEAK), api_host="127.0.0.1"))
    with pytest.raises(UsageError, match="PROOFMARKET_ADMIN_TOKEN"):
        check_admin_token(settings(tmp_path, chain="devnet", admin_token=SecretStr(WEAK), api_host="0.0.0.0"))
