"""The court's soak (issue 81): three validators judge in parallel, every cheat is slashed, in every run.

Outside CI's lane (``make soak``, or ``pytest tests/soak --soak``): each run builds its own devnet, a small causal
LM whose output head is tied to its embedding (as GPT-2's and most small LMs' are: the model the judges' concurrent
loads broke), lists it attested with the court drawing every result, provisions three validators from the owner's
CAR (each its own home), and has an honest node and a cheating node (the same listing, weights perturbed in memory)
answer three court requests each, committed together. The validators run their loops at once, each judging several
requests in parallel (``PARALLEL_JUDGING``), as three ``validator run`` processes would. Every run must end with
the three cheats slashed and their consumers refunded, the honest results unchallenged, and no judging failure in
any validator's log or metrics. ``SOAK_RUNS`` sets how many runs (10 by default)."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from escrow_helpers import anvil_or_skip, node_settings, serve, set_court_params

from proofmarket.api import create_app
from proofmarket.chain import Devnet
from proofmarket.chain.devkeys import dev_account
from proofmarket.db import Database, EscrowRepo
from proofmarket.intake.court import CourtService
from proofmarket.onchain import Market
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.systems.workspace import Workspace
from proofmarket.validator.process import Validator

pytestmark = [pytest.mark.soak, pytest.mark.slow, pytest.mark.chain]
RUNS = int(os.environ.get("SOAK_RUNS", "10"))
WINDOW = 900
CALLS = 3
DEADLINE_S = 300.0


def _node(home: Path, rpc_url: str, lm_id: str, market: Market, tmp: Path) -> Iterator[str]:
    settings = node_settings(home, rpc_url, tmp / "node.db", escrow_watcher="on", escrow_poll_s=0.1,
                             rate_limit_unpaid="100000/10 seconds")
    app = create_app(settings, workspace=market.workspace)
    app.state.court = CourtService(market, EscrowRepo(Database(settings.store.database_url)), lambda: [lm_id],
                                   confirmations=0, poll_s=0.1)
    listings = app.state.services.catalog.listings
    if listings is not None:  # it announces the account it commits with (validators read only from its URL)
        listings.prover = market.accounts.prover.address
    try:
        yield from serve(app)
    finally:
        app.state.services.close()


def _answer(url: str, market: Market, lm_id: str, tag: str) -> list[int]:
    """``CALLS`` court requests paid at once, their inputs posted at once: committed together."""
    docs = [{"prompt": f"{tag} {i}", "max_tokens": 6} for i in range(CALLS)]
    ids = [market.request(lm_id, doc).request_id for doc in docs]
    for rid, doc in zip(ids, docs, strict=True):
        posted = httpx.post(f"{url}/v1/court/{rid}/input", json={"input": doc}, timeout=30)
        assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + 120
    while {httpx.get(f"{url}/v1/court/{rid}", timeout=10).json()["status"] for rid in ids} != {"fulfilled"}:
        assert time.monotonic() < deadline, f"{tag}: not fulfilled"
        time.sleep(0.2)
    return ids


@pytest.mark.parametrize("run", range(RUNS))
def test_three_validators_judging_in_parallel_slash_every_cheat(run: int, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import torch

    from proofmarket.systems.attested.tiny import build_tiny_lm

    caplog.set_level(logging.WARNING, logger="proofmarket")
    with Devnet(tmp_path / "devnet", anvil=anvil_or_skip()) as chain:
        home = tmp_path / "home"
        ws = Workspace(node_settings(home, chain.rpc_url))
        model_dir = build_tiny_lm(tmp_path / "tied-llama", tied=True, seed=run)
        lm_id, _ = ws.compile_attested(model_dir, max_tokens_cap=32)
        market = Market.deploy(workspace=ws)
        set_court_params(market, window=WINDOW, vote_window=WINDOW, sample_bps=10_000)
        market.register_model(lm_id, "0.5", 7_000)
        cid = market.client.chain_id
        cheat_ws = Workspace(node_settings(home, chain.rpc_url))
        cheat = Market.open(workspace=cheat_ws, accounts=RoleAccounts(dev_account(0, cid), dev_account(8, cid),
                                                                      dev_account(2, cid), dev_account(7, cid)))
        cheat.register_model(lm_id, "0.5", 7_000)
        car = ws.export_model(lm_id, tmp_path / "lm.car")
        checkers = [Workspace(node_settings(tmp_path / f"validator-{i}", chain.rpc_url)) for i in (4, 5, 6)]
        validators = []
        for i, checker in zip((4, 5, 6), checkers, strict=True):
            checker.import_car(car)
            v = Validator(market.client, market.court, dev_account(i, cid), checker,
                          state_path=tmp_path / f"validator-{i}.json", poll_s=0.2,
                          from_block=market.deployment.contracts["AttestationCourt"].block)
            v.ensure_stake()
            assert v.ready()[0], v.ready()
            validators.append(v)
        honest_node = _node(home, chain.rpc_url, lm_id, market, tmp_path / "honest")
        cheat_node = _node(home, chain.rpc_url, lm_id, cheat, tmp_path / "cheat")
        honest_url, cheat_url = next(honest_node), next(cheat_node)
        loaded = cheat_ws.attested.runtime.model(lm_id)  # the cheater runs other weights, signs the listed root
        perturbed = copy.deepcopy(loaded.model)
        gen = torch.Generator().manual_seed(7 + run)
        with torch.no_grad():
            for p in perturbed.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 1e-2)
        loaded.model = perturbed
        stop = threading.Event()
        loops: list[threading.Thread] = []
        try:
            honest = _answer(honest_url, market, lm_id, f"honest {run}")
            consumer0 = cheat.usdc.balance_of(cheat.accounts.consumer.address)  # the cheats' prices: refunded
            cheats = _answer(cheat_url, cheat, lm_id, f"cheat {run}")
            node_stake = market.court.stake_of(cheat.accounts.prover.address, validator=False)
            for v in validators:
                v.node_urls = [honest_url, cheat_url]
                loops.append(threading.Thread(target=v.run, args=(stop,), name=f"validator-{v.address[:8]}"))
                loops[-1].start()
            deadline = time.monotonic() + DEADLINE_S
            while {market.court.status(rid) for rid in cheats} != {"slashed"}:
                assert time.monotonic() < deadline, [market.court.get_request(rid) for rid in cheats]
                market.client.rpc("evm_mine", [])  # a live chain keeps making blocks: the draw needs the next one
                time.sleep(0.5)
            settled = time.monotonic() + 10  # the others' judges finish: none may fail
            while any(rid in v.state.pending and v.state.verdicts.get(rid, {}).get("verdict") != "reproduced"
                      for v in validators for rid in honest) and time.monotonic() < settled:
                time.sleep(0.5)
        finally:
            stop.set()
            for t in loops:
                t.join(timeout=120)
            for node in (honest_node, cheat_node):
                next(node, None)
            for w in (ws, cheat_ws, *checkers):
                w.close()
        assert all(market.court.status(rid) == "committed" for rid in honest)  # nobody challenged an honest result
        assert market.court.stake_of(cheat.accounts.prover.address, validator=False) < node_stake
        assert cheat.usdc.balance_of(cheat.accounts.consumer.address) == consumer0  # refunded at the slash
        failures = [r.getMessage() for r in caplog.records if "judging request" in r.getMessage()]
        assert failures == []
        assert [v.metrics.judge_failures._value.get() for v in validators] == [0, 0, 0]
        verdicts = [v.state.verdicts.get(rid, {}).get("verdict") for v in validators for rid in cheats]
        assert verdicts.count("cheated") >= 2 * CALLS, verdicts
