"""The gas report's record (PROOFMARKET_GAS_LOG): each transaction of a contract function appends its contract,
function and the gasUsed of its receipt, as the chain itself reports it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from chain_helpers import USDC, Chain

pytestmark = pytest.mark.chain
ROOT = Path(__file__).resolve().parents[2]


def test_each_transaction_sent_through_a_wrapper_is_logged_with_its_receipts_gas(
        chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "gas.jsonl"
    monkeypatch.setenv("PROOFMARKET_GAS_LOG", str(log))
    a = chain.accounts
    sent = [chain.usdc.mint(a.consumer.address, USDC, a.admin), chain.usdc.approve(a.prover.address, 5, a.consumer),
            chain.usdc.approve(a.prover.address, 0, a.consumer)]
    monkeypatch.delenv("PROOFMARKET_GAS_LOG")
    chain.usdc.approve(a.prover.address, 7, a.consumer)  # not logged: the variable is gone
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    receipts = [int(chain.client.w3.eth.get_transaction_receipt(t.tx_hash)["gasUsed"]) for t in sent]
    assert lines == [{"contract": "TestUSDC", "function": f, "gas": g}
                     for f, g in zip(["mint", "approve", "approve"], receipts, strict=True)]
    sys.path.insert(0, str(ROOT / "scripts"))
    from gas_report import measure

    approve = measure(log)["TestUSDC.approve"]
    assert approve["calls"] == 2 and approve["min"] == min(receipts[1:]) and approve["max"] == max(receipts[1:])
