"""Chain fixtures: one anvil per session with the contracts deployed once and a snapshot around every test
(``chain_fixtures``), and a listed model with a staked prover."""

from __future__ import annotations

import pytest
from chain_fixtures import chain, devnet, session_chain  # noqa: F401 (fixtures, registered by this import)
from chain_helpers import USDC, Chain, Listed, list_model, stake_prover


@pytest.fixture
def model(chain: Chain) -> Listed:  # noqa: F811 (the parameter names the imported fixture)
    """A listed model (MockVerifier), a staked authorised prover, a consumer who approved the market."""
    listed = list_model(chain)
    stake_prover(chain, chain.accounts.prover)
    chain.usdc.approve(chain.market.address, 1_000 * USDC, chain.accounts.consumer)
    return listed
