"""Fixtures for attested mode: tiny causal LMs built offline at test time, and a workspace that committed to one."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofmarket.core.settings import Settings
from proofmarket.systems.workspace import Workspace


@pytest.fixture(scope="session")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights (seed 0): it decodes max_tokens every time (no early stop)."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("lm") / "tiny-llama")


@pytest.fixture(scope="session")
def other_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model of the same shape and tokenizer (seed 1)."""
    from proofmarket.systems.attested.tiny import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("lm2") / "tiny-llama-2", seed=1)


@pytest.fixture(scope="session")
def attested_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attested-home")


@pytest.fixture(scope="session")
def attested_ws(attested_home: Path) -> Workspace:
    return Workspace(Settings(home=attested_home))


@pytest.fixture(scope="session")
def lm_id(attested_ws: Workspace, lm_dir: Path) -> str:
    model_id, _ = attested_ws.compile_attested(lm_dir, name="tiny-llama", max_tokens_cap=128)
    return model_id
