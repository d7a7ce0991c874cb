"""``make demo`` end to end: a subprocess on a fresh data folder must tell the whole story and exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proofmarket.chain import find_anvil
from proofmarket.core.errors import RPCUnavailable

pytestmark = [pytest.mark.slow, pytest.mark.chain]


def test_demo_runs_the_whole_story_and_exits_0(tmp_path: Path) -> None:
    try:
        find_anvil()
    except RPCUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and anvil is missing: {exc}")
        pytest.skip(f"anvil is not installed: {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env.update(PROOFMARKET_HOME=str(tmp_path / "home"), PROOFMARKET_DEMO_GRID="quick", HOME=str(tmp_path),
               PROOFMARKET_DEMO_TIMEOUT_S="500", COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "proofmarket.demo"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr[-3000:]}"
    for line in ("market:   InferenceMarket 0x", "register: 0.25 USDC per call", "output:   [",
                 "verify:   valid off-chain", "eth_call verifyProof on 0x", "-> true",
                 "one flipped proof byte -> reverted",
                 "fulfilled by the watcher", "escrow moved: consumer -0.25 USDC, owner +0.175 USDC",
                 "escrow fulfil", "proven, verified on chain", "attested, reproduced", "agent:    ERC-8004 agent",
                 "erc8004:  validation record 100/100 (zk-escrow)",
                 "window closed unchallenged", "validation record 100/100 (attested-court)",
                 "court generation (tiny LM)", "attested, window passed, paid",
                 "done: everything shut down"):
        assert line in out, f"missing {line!r} in\n{out}"
    if "payment:" in out:  # the x402 path: paid, receipt signed, verified by the SDK
        assert "x402 call moved: consumer -0.25 USDC" in out and "node receipt signed" in out, out
        assert "x402 settlement" in out, out
        assert "attested call moved: consumer -0.0024 USDC" in out and "x402 generation" in out, out


def test_without_the_attested_extra_the_demo_tells_the_proven_story_and_says_what_it_skipped() -> None:
    """A wheel installed without ``proofmarket[attested]`` has no torch: the demo's attested part is skipped with the
    install line, not a traceback (the story's other steps do not need it)."""
    code = ("import sys; sys.modules['torch'] = None; "
            "from proofmarket.demo.story import ATTESTED_MISSING, attested_installed; "
            "print(attested_installed()); print(ATTESTED_MISSING)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    installed, missing = done.stdout.strip().splitlines()
    assert installed == "False" and "pip install 'proofmarket[attested]'" in missing
    from proofmarket.demo.story import attested_installed

    assert attested_installed()  # this environment has the extra (make setup installs it)
