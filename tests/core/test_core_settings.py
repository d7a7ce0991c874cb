"""Environment reads live in core: the demo's knobs, the node key, tool paths, variables a user names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import ValidationError

from proofmarket.core.config_check import ConfigError
from proofmarket.core.errors import UsageError
from proofmarket.core.settings import DemoSettings, Settings, ToolPaths, env_value, offline_model_hub
from proofmarket.systems.attested.signer import node_signer
from proofmarket.systems.ezkl.solidity import find_node_modules


def test_demo_settings_read_the_demo_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROOFMARKET_HOME", str(tmp_path))
    monkeypatch.setenv("PROOFMARKET_DEMO_TIMEOUT_S", "500")
    monkeypatch.setenv("PROOFMARKET_DEMO_GRID", "quick")
    monkeypatch.setenv("PROOFMARKET_DEMO_PAYMENTS", "off")
    knobs = DemoSettings()
    assert (knobs.home, knobs.timeout_s, knobs.grid, knobs.payments) == (tmp_path, 500.0, "quick", "off")


def test_demo_settings_defaults_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOME", "DEMO_TIMEOUT_S", "DEMO_GRID", "DEMO_PAYMENTS"):
        monkeypatch.delenv(f"PROOFMARKET_{name}", raising=False)
    knobs = DemoSettings()
    assert (knobs.home, knobs.timeout_s, knobs.grid, knobs.payments) == (Path(".demo"), 1200.0, "full", "on")
    monkeypatch.setenv("PROOFMARKET_DEMO_PAYMENTS", "maybe")
    with pytest.raises(ConfigError, match="PROOFMARKET_DEMO_PAYMENTS='maybe'"):
        DemoSettings()


def test_the_node_key_comes_from_the_environment_then_the_private_key_then_a_kept_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    node, payer = Account.create(), Account.create()
    monkeypatch.delenv("PROOFMARKET_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("PROOFMARKET_NODE_KEY", node.key.hex())
    settings = Settings(_env_file=None, home=tmp_path, private_key=payer.key.hex())  # type: ignore[call-arg]
    assert node_signer(settings).address == node.address
    monkeypatch.setenv("PROOFMARKET_NODE_KEY", "")
    assert node_signer(settings).address == payer.address
    kept = node_signer(Settings(_env_file=None, home=tmp_path / "fresh"))  # type: ignore[call-arg]
    assert kept.address == node_signer(Settings(_env_file=None, home=tmp_path / "fresh")).address  # type: ignore[call-arg]
    monkeypatch.setenv("PROOFMARKET_NODE_KEY", "0x1234")
    with pytest.raises(UsageError, match="PROOFMARKET_NODE_KEY"):
        node_signer(settings)


def test_tool_paths_and_named_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROOFMARKET_NODE_MODULES", str(tmp_path))
    monkeypatch.delenv("PROOFMARKET_ANVIL", raising=False)
    assert find_node_modules() == tmp_path and ToolPaths().anvil is None
    monkeypatch.setenv("MY_PAYING_KEY", "secret")
    monkeypatch.setenv("MY_EMPTY_KEY", "")
    assert env_value("MY_PAYING_KEY") == "secret" and env_value("MY_EMPTY_KEY") is None
    assert env_value("PROOFMARKET_TEST_NO_SUCH_VARIABLE") is None


def test_offline_model_hub_keeps_what_the_caller_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "")  # recorded: the caller's value (or none) comes back after the test
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", "0")
    offline_model_hub()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] == "0"


def test_settings_are_nested_by_concern_and_read_from_the_same_variables(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("PROOFMARKET_PROVER_WORKERS", "3")
    monkeypatch.setenv("PROOFMARKET_QUEUE", "celery")
    monkeypatch.setenv("PROOFMARKET_PAYMENTS", "on")
    monkeypatch.setenv("PROOFMARKET_CHAIN", "Base-Sepolia")
    monkeypatch.setenv("PROOFMARKET_MAX_REQUEST_BYTES", "2048")
    monkeypatch.setenv("PROOFMARKET_LISTING_POLICY", "review")
    monkeypatch.setenv("PROOFMARKET_PIN", "kubo:http://127.0.0.1:5001")
    monkeypatch.setenv("PROOFMARKET_API_PORT", "9000")
    settings = Settings(_env_file=None, home=tmp_path, payout_interval_s=60)  # a keyword beats the environment
    assert (settings.queue.prover_workers, settings.queue.kind) == (3, "celery")
    assert (settings.payments.mode, settings.payments.payout_interval_s) == ("on", 60.0)
    assert settings.chain.name == "base-sepolia" and settings.profile().chain_id == 84532
    assert settings.limits.max_request_bytes == 2048 and settings.owners.listing_policy == "review"
    assert settings.store.pin == "kubo:http://127.0.0.1:5001" and settings.api.api_port == 9000
    assert settings.db_url == f"sqlite:///{tmp_path / 'node.db'}"


def test_every_setting_has_one_variable_and_a_misspelt_one_is_refused() -> None:
    from proofmarket.core.settings import FLAT_NAMES
    from proofmarket.core.settings_groups import FIELDS, GROUPS

    assert len(FIELDS) == sum(len(model.model_fields) for model in GROUPS.values())
    names = [variable for _, _, variable in FIELDS]
    assert len(set(names)) == len(names) == len(FLAT_NAMES) - 1  # and home
    with pytest.raises(TypeError, match="prover_worker"):
        Settings(_env_file=None, prover_worker=2)
    with pytest.raises(ConfigError, match="unknown chain"):
        Settings(_env_file=None, chain="mainnet-ish")
    with pytest.raises(ConfigError, match="PROOFMARKET_PROVER_WORKERS=0"):
        Settings(_env_file=None, prover_workers=0)
    frozen = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        frozen.queue.prover_workers = 9  # type: ignore[misc]
