"""Helpers shared by the escrow tests (a module, not conftest, so test files can import it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anvil_binary import anvil_or_skip  # noqa: F401 (re-exported: this folder's tests import it from here)
from compiled import compile_mlp  # noqa: F401 (one compile helper for every world)
from fastapi import FastAPI
from served import Served
from typer.testing import CliRunner

from proofmarket.cli.main import app as cli
from proofmarket.core.settings import Settings
from proofmarket.onchain import Market
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

PRICE = "2.5"
PRICE_UNITS = 2_500_000
OWNER_SHARE_BPS = 7_000
FEE_BPS = 250  # the market's default platform fee
MLP_CANDIDATE = Candidate(256, 3, 10, 1)  # one candidate per model keeps compiles to seconds
HASHED_MLP_CANDIDATE = Candidate(256, 3, 7, 1)
AppFactory = Callable[..., FastAPI]


@dataclass
class EscrowEnv:
    home: Path
    rpc_url: str
    ws: Workspace
    market: Market
    public: str  # model ids
    hashed: str


SALT = [(5 * i + 1) % (1 << SALT_BITS) for i in range(SALT_ELEMENTS)]




def set_court_params(market: Market, **changes: Any) -> None:
    """Change the devnet court's parameters now: schedule, move the chain's clock past the court's delay, apply."""
    from dataclasses import replace

    court = market.court
    court.schedule_params(replace(court.params(), **changes), market.accounts.admin)
    market.client.rpc("evm_increaseTime", [court.params_delay() + 1])
    market.client.rpc("evm_mine", [])
    court.apply_params(market.accounts.admin)


def node_settings(home: Path, rpc_url: str, db: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "rpc_url": rpc_url, "prover_workers": 1, "escrow_confirmations": 0,
                              "escrow_poll_s": 0.2, **overrides}
    if db is not None:
        values["database_url"] = f"sqlite:///{db}"
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def sample_inputs(n: int) -> list[dict[str, Any]]:
    """``n`` inputs of the sample MLP (its samples in turn): calls that may share one batch proof."""
    samples = json.loads(sample_path("mlp", "samples").read_text())["inputs"]
    return [{"inputs": samples[i % len(samples)]} for i in range(n)]


def mlp_input() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sample_path("mlp", "input").read_text())
    return doc


def other_input() -> dict[str, Any]:
    return {"inputs": json.loads(sample_path("mlp", "samples").read_text())["inputs"][1]}


def expected_splits(price: int = PRICE_UNITS, fee_bps: int = FEE_BPS,
                    owner_bps: int = OWNER_SHARE_BPS) -> tuple[int, int, int]:
    fee = price * fee_bps // 10_000
    owner = price * owner_bps // 10_000
    return owner, price - fee - owner, fee


def wait_status(client: Any, request_id: int, statuses: tuple[str, ...], timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = client.get(f"/v1/requests/{request_id}").json()
        if body.get("status") in statuses:
            return body
        assert time.monotonic() < deadline, f"request {request_id} still {body} after {timeout_s} s"
        time.sleep(0.1)


def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` over HTTP on a free loopback port; yield its URL (for a fixture), then stop it."""
    with Served(app) as node:
        yield node.url


def request_cli(env: EscrowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict]:
    """``proofmarket request`` of the public MLP on the sample input, --json; returns (exit code, output)."""
    monkeypatch.setenv("PROOFMARKET_RPC_URL", env.rpc_url)
    doc = tmp_path / "input.json"
    doc.write_text(json.dumps(mlp_input()))
    result = CliRunner().invoke(cli, ["request", env.public, "--input", str(doc), "--home", str(env.home), "--json",
                                      *args])
    return result.exit_code, json.loads(result.stdout)
