"""Chain profiles: USDC as the x402 SDK knows it, the devnet the only chain for dev keys and dev SRS."""

from __future__ import annotations

import pytest
from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS

from proofmarket.core.config_check import ConfigError
from proofmarket.core.errors import DevSrsRefused, UsageError
from proofmarket.core.profiles import DEVNET, PROFILES, profile_for, profile_for_network, profile_named
from proofmarket.core.settings import Settings, settings_chain_id
from proofmarket.sdk.checks import check_srs


@pytest.mark.parametrize("name", [n for n in PROFILES if n != "devnet"])
def test_usdc_agrees_with_the_x402_default_assets(name: str) -> None:
    profile = PROFILES[name]
    sdk = DEFAULT_ASSETS[profile.network][0]
    assert sdk["symbol"] == "USDC" and sdk["decimals"] == 6
    assert profile.usdc is not None and profile.usdc.lower() == sdk["asset"].lower()
    assert (profile.usdc_name, profile.usdc_version) == (sdk["name"], sdk["version"])


def test_profiles_by_id_and_name() -> None:
    assert {p.chain_id for p in PROFILES.values()} == {31337, 84532, 8453, 421614, 42161}
    for name, profile in PROFILES.items():
        assert profile_named(name) is profile and profile_for(profile.chain_id) is profile
        assert profile_for_network(f"eip155:{profile.chain_id}") is profile
        assert profile.dev_keys_allowed is profile.dev_srs_allowed is profile.is_devnet is (name == "devnet")
    assert DEVNET.network == "eip155:31337" and DEVNET.usdc is None
    assert profile_named(" Base-Sepolia ").chain_id == 84532
    with pytest.raises(UsageError, match="unknown chain"):
        profile_named("sepolia")
    assert profile_for_network("solana:5eykt4") is None and profile_for_network("eip155:x") is None


def test_an_unknown_chain_gets_the_conservative_profile() -> None:
    unknown = profile_for(10)
    assert unknown.chain_id == 10 and unknown.network == "eip155:10"
    assert not (unknown.dev_keys_allowed or unknown.dev_srs_allowed or unknown.is_devnet)
    assert unknown.confirmations == 3 and unknown.usdc is None


def test_settings_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHAIN", "RPC_URL"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    assert Settings().profile() is DEVNET  # no RPC URL: the devnet of 'proofmarket chain up'
    assert Settings().profile(84532).name == "base-sepolia"
    monkeypatch.setenv("PROOFMARKET_CHAIN", "base")
    based = Settings(rpc_url="https://rpc.example")
    assert based.profile().chain_id == 8453 and based.profile(8453).name == "base"
    with pytest.raises(UsageError, match="chain id 84532"):
        based.profile(84532)  # the RPC answers another chain than PROOFMARKET_CHAIN names
    with pytest.raises(UsageError, match="PROOFMARKET_CHAIN"):
        Settings(rpc_url="https://rpc.example", chain=None).profile()  # only the RPC knows its chain
    monkeypatch.setenv("PROOFMARKET_CHAIN", "moon")
    with pytest.raises(ConfigError, match="PROOFMARKET_CHAIN='moon' is not accepted: unknown chain"):
        Settings()


def test_a_dev_srs_is_accepted_only_on_a_chain_whose_profile_allows_it() -> None:
    assert "devnet" in check_srs("dev", "m", devnet=True, allow_dev_srs=False, network="eip155:31337")
    assert "devnet" in check_srs("dev", "m", devnet=True, allow_dev_srs=False, network=None)
    for network in ("eip155:84532", "eip155:10", "solana:5eykt4"):
        with pytest.raises(DevSrsRefused, match=network):
            check_srs("dev", "m", devnet=True, allow_dev_srs=False, network=network)
    with pytest.raises(DevSrsRefused):
        check_srs("dev", "m", devnet=False, allow_dev_srs=False, network="eip155:31337")


def test_settings_chain_id_asks_the_rpc_only_through_the_given_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHAIN", "RPC_URL"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    asked: list[str] = []

    def rpc(url: str) -> int:
        asked.append(url)
        return 421614

    assert settings_chain_id(Settings(), rpc) == 31337 and asked == []  # no RPC URL: the devnet
    assert settings_chain_id(Settings(chain="arbitrum", rpc_url="http://rpc"), rpc) == 42161 and asked == []
    assert settings_chain_id(Settings(rpc_url="http://rpc"), rpc) == 421614 and asked == ["http://rpc"]
    with pytest.raises(UsageError, match="node_chain_id"):
        settings_chain_id(Settings(rpc_url="http://rpc"))


def test_base_profiles_name_the_erc8004_reference_registries_and_the_devnet_none() -> None:
    """The reference registries (identity, reputation) the standard's authors published for Base and Base Sepolia
    (github.com/erc-8004/erc-8004-contracts): checksummed addresses, mainnet and testnet apart; none on the devnet,
    whose registries are its own deployment's."""
    from eth_utils.address import is_checksum_address

    from proofmarket.core.profiles import PROFILES

    base, sepolia = PROFILES["base"].erc8004, PROFILES["base-sepolia"].erc8004
    assert base is not None and sepolia is not None and PROFILES["devnet"].erc8004 is None
    assert all(is_checksum_address(a) and a.startswith("0x8004") for a in (*base, *sepolia))
    assert set(base).isdisjoint(sepolia) and len(set(base)) == 2
