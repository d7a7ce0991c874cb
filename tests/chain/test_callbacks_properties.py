"""CourtCallbacks' invariants under random sequences of calls (``callbacks_machine.py``): a bounded number of
sequences here (``PROOFMARKET_PROPERTY_EXAMPLES`` for more), and each invariant shown to catch a planted bug in a copy
of the contract."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from callbacks_machine import CONSUMERS, callbacks_machine
from chain_helpers import TEST_ARTIFACTS, USDC, Chain
from hypothesis.stateful import run_state_machine_as_test
from property_helpers import run_settings
from test_chain_court import FEE_BPS, _setup

from proofmarket.chain.artifacts import Artifact, load_artifact, load_artifact_file

pytestmark = pytest.mark.chain
ROOT = Path(__file__).resolve().parents[2]


def _world(chain: Chain, artifact: Artifact) -> tuple[Any, ...]:
    court, key = _setup(chain)
    a = chain.accounts
    address, _ = chain.client.deploy(artifact, a.admin, court.address)
    callbacks = chain.client.contract(address, artifact.abi)
    consumer_art = load_artifact_file(TEST_ARTIFACTS / "TestAttestedConsumer.json")
    consumers = {}
    for name, mode in zip(CONSUMERS, (0, 1), strict=True):
        consumer, _ = chain.client.deploy(consumer_art, a.admin, address, mode)
        chain.usdc.mint(consumer, 500 * USDC, a.admin)
        consumers[name] = chain.client.contract(consumer, consumer_art.abi)
    return court, key, callbacks, consumers, FEE_BPS


def test_random_sequences_never_let_a_callback_change_a_payment(chain: Chain) -> None:
    run_state_machine_as_test(callbacks_machine(chain, *_world(chain, load_artifact("CourtCallbacks"))),
                              settings=run_settings(8, steps=25))


MUTANTS = {  # the contract's rule taken out, and what the machine then says (its assertion's words)
    "tip once": ("            e.done = true;\n            if (e.tip > 0)", "            if (e.tip > 0)",
                 "delivered while|holds|tips come to"),
    "reclaim only refunded": ("        if (r.status != AttestationCourt.Status.Refunded && r.status != "
                              "AttestationCourt.Status.Slashed) {\n"
                              "            revert NotRefunded(requestId, r.status);\n        }\n", "",
                              "reclaimed while|holds|consumer holds"),
}


@pytest.mark.slow
@pytest.mark.parametrize("invariant", list(MUTANTS))
def test_each_invariant_finds_its_planted_bug(chain: Chain, tmp_path: Path, invariant: str) -> None:
    find, replace, says = MUTANTS[invariant]
    folder = tmp_path / "contracts"
    shutil.copytree(ROOT / "contracts", folder, symlinks=False)
    source = folder / "CourtCallbacks.sol"
    text = source.read_text()
    assert text.count(find) == 1, f"the mutation's anchor is not in CourtCallbacks.sol once: {find!r}"
    source.write_text(text.replace(find, replace))
    out = tmp_path / "CourtCallbacks.json"
    subprocess.run(["node", str(ROOT / "scripts" / "compile_contracts.js"), "--single", str(source), "--contract",
                    "CourtCallbacks", "--out", str(out), "--runs", "20", "--via-ir", "true"], check=True,
                   capture_output=True, timeout=600)  # as the court it imports is compiled (compile_contracts.js)
    machine = callbacks_machine(chain, *_world(chain, load_artifact_file(out)))
    with pytest.raises(AssertionError, match=says):
        run_state_machine_as_test(machine, settings=run_settings(100, steps=25, shrink=False))
