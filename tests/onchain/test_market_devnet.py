"""The background devnet of 'chain up|down', run in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
from market_helpers import anvil_or_skip

from proofmarket.chain.devnet import _alive as devnet_alive
from proofmarket.chain.home import DevnetInfo
from proofmarket.core.settings import Settings
from proofmarket.onchain import Market, MarketHome, devnet_down, devnet_status, devnet_up

pytestmark = pytest.mark.chain


def test_up_is_idempotent_and_down_stops_the_process(tmp_path: Path) -> None:
    anvil_or_skip()
    home = MarketHome(tmp_path)
    try:
        first = devnet_up(home)
        assert first.changed and first.running and first.info is not None
        assert devnet_up(home).info == first.info and not devnet_up(home).changed
        assert devnet_status(home).running
    finally:
        stopped = devnet_down(home)
    assert stopped.changed and not devnet_status(home).running
    assert not home.devnet_file.exists()
    # gone, or a zombie waiting to be reaped by this test process: either way no anvil runs
    assert not devnet_alive(first.info.pid)
    assert (tmp_path / "devnet" / "anvil-state.json").is_file()
    assert not devnet_down(home).changed


def test_a_stale_record_is_replaced(tmp_path: Path) -> None:
    anvil_or_skip()
    home = MarketHome(tmp_path)
    home.save_devnet(DevnetInfo("http://127.0.0.1:9", 2**22 + 12345, 31337, str(tmp_path), "then"))
    assert not devnet_status(home).running
    try:
        status = devnet_up(home)
        assert status.changed and status.info is not None and status.info.pid != 2**22 + 12345
    finally:
        devnet_down(home)


def test_chain_state_survives_a_restart(tmp_path: Path) -> None:
    anvil_or_skip()
    settings = Settings(home=tmp_path)
    home = MarketHome(tmp_path)
    try:
        devnet_up(home)
        with Market.deploy(settings) as market:
            deployed, nonce = market.deployment, market.client.w3.eth.get_transaction_count(market.deployment.deployer)
        devnet_down(home)

        devnet_up(home)
        with Market.open(settings) as market:  # the contracts are still there: nothing is redeployed
            assert market.deployment == deployed
            assert market.client.w3.eth.get_transaction_count(deployed.deployer) == nonce
            assert market.require_eligible(market.accounts.prover.address) is None  # staked before the restart
    finally:
        devnet_down(home)
