"""Environment reads live in core: the demo's knobs, the node key, tool paths, variables a user names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import ValidationError

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
    with pytest.raises(ValidationError):
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
