"""Job access tokens: one per job, unguessable, bound to the node's key; the key is made once and kept."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from api_helpers import node_settings

from proofmarket.core.errors import UsageError
from proofmarket.node.access import AccessTokens


def test_a_token_opens_its_own_job_only() -> None:
    tokens = AccessTokens(b"k" * 32)
    a, b = tokens.job("a" * 32), tokens.job("b" * 32)
    assert a != b and len(a.split(".")[2]) == 43  # 256-bit MAC, base64url
    assert tokens.opens_job(a, "a" * 32) and not tokens.opens_job(a, "b" * 32)
    assert tokens.job_of(a) == "a" * 32 and tokens.job_of(b) == "b" * 32
    assert AccessTokens(b"x" * 32).job("a" * 32) != a  # another node key: another token
    for forged in (None, "", "j." + "a" * 32, "j." + "a" * 32 + ".", a[:-1] + ("A" if a[-1] != "A" else "B"),
                   a + "x", "j." + "a" * 32 + ".é€", "r.1." + a.split(".")[2]):
        assert not tokens.opens_job(forged, "a" * 32) and tokens.job_of(forged) is None, forged


def test_escrow_tokens_are_bound_to_chain_market_and_request() -> None:
    tokens = AccessTokens(b"k" * 32)
    market = "0x" + "Ab" * 20
    token = tokens.escrow(31337, market, 7)
    assert tokens.escrow_of(token, 31337, market.lower()) == 7  # any address case
    assert tokens.escrow_of(token, 1, market) is None and tokens.escrow_of(token, 31337, "0x" + "cd" * 20) is None
    assert tokens.escrow_of(tokens.job("7"), 31337, market) is None and tokens.job_of(token) is None


def test_the_node_key_is_created_once_private_and_kept(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "home", tmp_path / "node.db")
    first = AccessTokens.for_node(settings).job("j1")
    key = settings.home / "access.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert AccessTokens.for_node(settings).job("j1") == first  # a restarted node honours its tokens
    configured = node_settings(tmp_path / "other", tmp_path / "node.db", access_key="s" * 40)
    assert AccessTokens.for_node(configured).job("j1") != first
    with pytest.raises(UsageError, match="PROOFMARKET_ACCESS_KEY"):
        AccessTokens.for_node(node_settings(tmp_path / "x", tmp_path / "node.db", access_key="short"))
