"""The attested tier against an adversary, on its own anvil: 2 nodes and 3 staked validators on the
AttestationCourt.

- The honest node serves 50 escrowed generations (committed in Merkle-root batches); every validator is drawn
  for every result (sample rate 100 % here), re-executes it over HTTP and finds it reproduced: nobody challenges.
  One validator challenges one of them anyway: the two others vote honest and it loses its bond to the node.
  Once the window closed the node finalizes and is paid, with an ERC-8004 validation record (100) per request.
- A cheating node (its weights perturbed in memory, its commitments signed as the listed weights) answers 3
  requests: each is challenged, loses the vote, the node is slashed and its consumers refunded, all inside the
  window, and its validation records say 0.
- A third of the voting stake lies for the cheater: the verdict is still right and the liar loses its escrowed
  share.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from artifacts_served import artifacts_served
from escrow_helpers import anvil_or_skip, node_settings, serve, set_court_params
from typer.testing import CliRunner

from proofmarket.api import create_app
from proofmarket.chain import Devnet
from proofmarket.chain.court import AttestationCourt
from proofmarket.chain.devkeys import dev_account
from proofmarket.cli.main import app as cli_app
from proofmarket.db import Database, EscrowRepo
from proofmarket.intake.court import CourtService
from proofmarket.onchain import Market
from proofmarket.onchain.accounts import RoleAccounts
from proofmarket.systems.workspace import Workspace
from proofmarket.validator.process import Validator

pytestmark = [pytest.mark.slow, pytest.mark.chain]
PRICE, PRICE_UNITS = "0.5", 500_000
WINDOW = 900  # long enough for every check here; the test moves the chain's clock past it
HONEST_CALLS, CHEATS = 50, 3


@dataclass
class Net:
    rpc_url: str
    home: Path
    lm_id: str
    market: Market  # the honest side: dev roles (owner 1, consumer 2, node 3)
    cheat_market: Market  # owner 8, node 7, same consumer
    court: AttestationCourt
    validators: list[Validator]


def _advance(market: Market, seconds: int) -> None:
    market.client.rpc("evm_increaseTime", [seconds])
    market.client.rpc("evm_mine", [])


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    tmp = tmp_path_factory.mktemp("court-net")
    with Devnet(tmp / "devnet", anvil=anvil_or_skip()) as chain:
        home = tmp / "home"
        ws = Workspace(node_settings(home, chain.rpc_url))
        lm_id, _ = ws.compile_attested(build_tiny_lm(tmp / "tiny-llama"), max_tokens_cap=32)
        market = Market.deploy(workspace=ws)
        court = market.court
        set_court_params(market, window=WINDOW, vote_window=WINDOW, sample_bps=10_000)  # after the court's delay
        market.register_model(lm_id, PRICE, 7_000)
        market.register_agent("http://127.0.0.1/.well-known/agent-registration.json")
        cheat_ws = Workspace(node_settings(home, chain.rpc_url))  # the same files, its own (perturbed) runtime
        cid = market.client.chain_id
        cheat_accounts = RoleAccounts(dev_account(0, cid), dev_account(8, cid), dev_account(2, cid),
                                      dev_account(7, cid))
        cheat_market = Market.open(workspace=cheat_ws, accounts=cheat_accounts)
        cheat_market.register_model(lm_id, PRICE, 7_000)
        cheat_market.register_agent("http://127.0.0.1/cheater.json")
        # three validators provisioned the three documented ways, each its own home: a compile of the same files,
        # the owner's CAR export imported, and a fetch by CID from a node (the fifth wave: only a compile declared)
        homes = [tmp / f"validator-home-{i}" for i in (4, 5, 6)]
        checkers = [Workspace(node_settings(h, chain.rpc_url)) for h in homes]
        assert checkers[0].compile_attested(build_tiny_lm(tmp / "tiny-llama"), max_tokens_cap=32)[0] == lm_id
        checkers[1].import_car(ws.export_model(lm_id, tmp / "lm.car"))
        with artifacts_served(ws.store) as node_url:
            fetched = CliRunner().invoke(cli_app, ["import", lm_id, "--node", node_url, "--home", str(homes[2])])
            assert fetched.exit_code == 0, fetched.output
        validators = [Validator(market.client, court, dev_account(i, cid), check_ws,
                                state_path=tmp / f"validator-{i}.json",
                                from_block=market.deployment.contracts["AttestationCourt"].block)
                      for i, check_ws in zip((4, 5, 6), checkers, strict=True)]
        for v in validators:
            v.ensure_stake()
            assert v.ready()[0] and {e["model_id"] for e in v.voting.values()} == {lm_id}, v.ready()
        try:
            yield Net(chain.rpc_url, home, lm_id, market, cheat_market, court, validators)
        finally:
            for w in (ws, cheat_ws, *checkers):
                w.close()



MONEY: dict[str, Any] = {}


def _node(net: Net, tmp: Path, market: Market | None = None) -> Iterator[str]:
    """A node app over HTTP; ``market``: serve that market's court (another node account) instead."""
    # the test polls every record several times a second from one address, like no client should: the unpaid limit
    # (tested in tests/api/test_api_rate_limits.py) is raised so that it measures the court, not the limiter
    settings = node_settings(net.home, net.rpc_url, tmp / "node.db", escrow_watcher="on", escrow_poll_s=0.1,
                             rate_limit_unpaid="100000/10 seconds")
    app = create_app(settings, workspace=(market or net.market).workspace)
    app.state.services.catalog.register(net.lm_id, price_atomic=50_000)
    if market is not None:
        app.state.court = CourtService(market, EscrowRepo(Database(settings.store.database_url)), lambda: [net.lm_id],
                                       confirmations=0, poll_s=0.1)
        listings = app.state.services.catalog.listings
        if listings is not None:  # it announces the account it commits with (validators read only from its URL)
            listings.prover = market.accounts.prover.address
    for url in serve(app):
        MONEY[url] = app.state.services.money  # the node's book, for the tests' conservation checks
        yield url
    app.state.services.close()


@pytest.fixture(scope="module")
def honest_url(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _node(net, tmp_path_factory.mktemp("honest-node"))


@pytest.fixture(scope="module")
def cheat_url(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node = _node(net, tmp_path_factory.mktemp("cheat-node"), net.cheat_market)
    url = next(node)  # the node's runtime (shared with its workspace once the app is built)
    model = net.cheat_market.workspace.attested.runtime.model(net.lm_id)
    cheat = copy.deepcopy(model.model)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in cheat.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 1e-2)
    model.model = cheat  # runs other weights, still signs the listed weights root
    yield url
    yield from node


def _wait(url: str, request_ids: list[int], done: Any, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [httpx.get(f"{url}/v1/court/{rid}", timeout=10).json() for rid in request_ids]
        if all(done(r) for r in rows):
            return rows
        assert time.monotonic() < deadline, [r for r in rows if not done(r)][:3]
        time.sleep(0.2)


def _poll(net: Net, urls: list[str]) -> None:
    net.market.client.rpc("evm_mine", [])  # a live chain keeps making blocks: the draw needs the next one
    for v in net.validators:
        v.node_urls = urls
        v.poll_once()


def _metric(url: str, name: str) -> float:
    """A counter of the node's /metrics (0 before it counted anything)."""
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _court(row: dict[str, Any]) -> dict[str, Any]:
    return dict((row.get("settlement") or {}).get("court") or {})


def test_honest_node_is_paid_after_its_window_and_a_false_challenge_loses_its_bond(
        net: Net, honest_url: str) -> None:
    a = net.market.accounts
    usdc = net.market.usdc
    consumer0 = usdc.balance_of(a.consumer.address)
    # what the node did before this test (other tests' court requests through it, in any order) is counted out
    money = MONEY[honest_url]
    last_transfer = max((t.id for t in money.book.transfers(limit=1)), default=0)
    challenges0 = [v.metrics.challenges._value.get() for v in net.validators]
    commitments0 = _metric(honest_url, "proofmarket_court_commitments_total")
    block = net.market.client.block_number()  # the node's watcher may stake at any moment: both read at one block
    node0 = usdc.balance_of(a.prover.address, block=block)
    staked0 = net.court.stake_of(a.prover.address, validator=False, block=block)
    receipts = [net.market.request(net.lm_id, {"prompt": f"call {i}", "max_tokens": 6}) for i in range(HONEST_CALLS)]
    assert {r.contract for r in receipts} == {"AttestationCourt"} and receipts[0].node == a.prover.address
    ids = [r.request_id for r in receipts]
    tokens = {}
    for i, rid in enumerate(ids):
        posted = httpx.post(f"{honest_url}/v1/court/{rid}/input",
                            json={"input": {"prompt": f"call {i}", "max_tokens": 6}}, timeout=30)
        assert posted.status_code == 202, posted.text
        tokens[rid] = posted.json()["access_token"]
    rows = _wait(honest_url, ids, lambda r: r["status"] in ("fulfilled", "failed"))
    assert {r["status"] for r in rows} == {"fulfilled"}
    assert max(r["settlement"]["batch"] for r in rows) > 1  # commitments went in Merkle-root batches
    assert usdc.balance_of(a.consumer.address) == consumer0 - HONEST_CALLS * PRICE_UNITS  # escrowed, not paid yet

    # the consumer reads its bundle; a stranger cannot, nor a validator's signature for another request
    assert httpx.get(f"{honest_url}/v1/court/{ids[0]}/bundle",
                     headers={"X-Job-Token": tokens[ids[0]]}).json()["mode"] == "attested"
    assert httpx.get(f"{honest_url}/v1/court/{ids[0]}/bundle").status_code == 404
    assert httpx.get(f"{honest_url}/v1/court/{ids[0]}/bundle", headers={"X-Job-Token": tokens[ids[1]]}).status_code \
        == 404

    # a griefer challenges an honest result before the validators have looked
    stake0 = net.court.stake_of(a.prover.address, validator=False)  # staked by the node at its first commitment
    assert stake0 == net.court.params().node_min_stake
    griefer, others = net.validators[2], net.validators[:2]
    bond = net.court.params().challenge_bond
    griefer_before = usdc.balance_of(griefer.address)
    griefer_stake = net.court.stake_of(griefer.address, validator=True)
    net.court.challenge(ids[0], griefer.account)
    for _ in range(3):
        _poll(net, [honest_url])
    assert net.court.status(ids[0]) == "paid"  # 2 of 3 voted honest: resolved at once, the node paid
    lost = net.court.vote_of(ids[0], griefer.address)
    assert lost.claimed and lost.risk > 0  # its escrowed share of the stake went to the winners
    now_staked = net.court.stake_of(griefer.address, validator=True)
    assert usdc.balance_of(griefer.address) + now_staked == griefer_before + griefer_stake - bond - lost.risk
    # below the court's minimum it would weigh on nothing: its next poll topped the stake up from its wallet
    assert now_staked >= net.court.params().validator_min_stake and griefer.ready()[0]
    assert net.court.stake_of(a.prover.address, validator=False) == stake0 + bond
    for n, v in enumerate(others):  # every result was drawn, re-executed and reproduced: no honest challenge
        verdicts = {rid: v.state.verdicts.get(rid, {}).get("verdict") for rid in ids}
        assert set(verdicts.values()) == {"reproduced"}, verdicts
        assert v.metrics.challenges._value.get() == challenges0[n]
    assert all(net.court.status(rid) == "committed" for rid in ids[1:])

    _advance(net.market, WINDOW + 1)
    rows = _wait(honest_url, ids, lambda r: _court(r).get("status") == "paid")
    owner_cut = PRICE_UNITS * 7_000 // 10_000
    fee = PRICE_UNITS * net.court.params().platform_fee_bps // 10_000
    paid = HONEST_CALLS * (PRICE_UNITS - owner_cut - fee)
    validation = _court(rows[5])["validation"]
    assert validation["response"] == 100 and validation["tag"] == "attested-court"
    assert all(_court(r)["validation"]["response"] == 100 for r in rows)
    summary = net.market.erc8004.validation.summary(net.market.agent_id())
    assert summary.count >= HONEST_CALLS and summary.value == 100
    assert _metric(honest_url, "proofmarket_court_commitments_total") - commitments0 == HONEST_CALLS
    assert 'proofmarket_court_settled_total{outcome="paid"}' in httpx.get(f"{honest_url}/metrics").text
    page = httpx.get(f"{honest_url}/dashboard").text
    assert "Court requests" in page and ">paid<" in page
    # the book: each paid request as the court paid it (the owner's and the node's transfers), the chain agrees
    node_account = f"wallet:{a.prover.address.lower()}"

    def to_node(transfers: list[Any]) -> int:
        return sum(v for t in transfers for acc, v in money.book.postings([t.id])[t.id] if acc == node_account)

    court_paid = [t for t in money.book.transfers(kinds=["capture"]) if t.id > last_transfer and t.rail == "court"
                  and not t.ref.startswith("court-callback:")]  # not a delivery's tip
    ours = [t for t in court_paid if t.ref.rsplit(":", 1)[-1] in {str(rid) for rid in ids}]
    assert len(ours) == HONEST_CALLS and to_node(ours) == paid
    # the node's wallet: what the court paid it meanwhile (these requests, and any other test's its window closed
    # on), less what it staked
    assert usdc.balance_of(a.prover.address) - node0 == to_node(court_paid) - (stake0 - staked0)
    from proofmarket.payments.reconcile import reconcile

    checked = reconcile(money.book, net.market.client, net.market.deployment.usdc, a.prover.address)
    assert checked.ok and checked.transfers_checked >= HONEST_CALLS, checked.differences


def test_a_cheating_node_is_challenged_slashed_and_its_consumers_refunded_inside_the_window(
        net: Net, cheat_url: str, honest_url: str) -> None:
    cm = net.cheat_market
    node = cm.accounts.prover.address
    usdc = cm.usdc
    consumer0 = usdc.balance_of(cm.accounts.consumer.address)
    receipts = [cm.request(net.lm_id, {"prompt": f"cheat {i}", "max_tokens": 6}) for i in range(CHEATS)]
    ids = [r.request_id for r in receipts]
    assert {r.node for r in receipts} == {node}
    for i, rid in enumerate(ids):
        assert httpx.post(f"{cheat_url}/v1/court/{rid}/input",
                          json={"input": {"prompt": f"cheat {i}", "max_tokens": 6}}, timeout=30).status_code == 202
    _wait(cheat_url, ids, lambda r: r["status"] == "fulfilled")
    stake0 = net.court.stake_of(node, validator=False)
    challenges0 = sum(v.metrics.challenges._value.get() for v in net.validators)  # other tests' challenges
    started = cm.client.timestamp()
    for _ in range(4):
        _poll(net, [honest_url, cheat_url])
    assert [net.court.status(rid) for rid in ids] == ["slashed"] * CHEATS
    assert cm.client.timestamp() - started < WINDOW  # all inside the window
    assert usdc.balance_of(cm.accounts.consumer.address) == consumer0  # every consumer refunded
    assert net.court.stake_of(node, validator=False) < stake0  # slashed
    # more than half the stake decides at once: the third validator may never need to look
    verdicts = [v.state.verdicts[rid]["verdict"] for v in net.validators for rid in ids if rid in v.state.verdicts]
    assert set(verdicts) == {"cheated"} and len(verdicts) >= 2 * CHEATS
    assert sum(v.metrics.challenges._value.get() for v in net.validators) - challenges0 == CHEATS
    rows = _wait(cheat_url, ids, lambda r: _court(r).get("status") == "slashed")
    assert all(_court(r)["validation"]["response"] == 0 for r in rows)


def test_a_dishonest_third_of_the_voting_stake_cannot_save_a_cheater(
        net: Net, cheat_url: str, honest_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One validator of three (a third of the stake) lies: it finds every cheat "reproduced" and votes for the
    node, before the deciding vote. The two honest thirds still slash the cheater; the liar loses its escrowed
    share to them."""
    cm = net.cheat_market
    liar, honest = net.validators[2], net.validators[:2]
    real_check = liar.check

    def lie(*args: Any) -> Any:
        verdict = real_check(*args)
        return replace(verdict, verdict="reproduced") if verdict.verdict == "cheated" else verdict

    monkeypatch.setattr(liar, "check", lie)
    liar.ensure_stake()  # back to the minimum after its lost challenge, before the commitment
    # a poll first: a validator that declares a listing another test made mines blocks in its poll, and would then
    # see the draw before the one that polls first in each round (the order this test stages)
    _poll(net, [honest_url, cheat_url])
    receipt = cm.request(net.lm_id, {"prompt": "cheat with a friend", "max_tokens": 6})
    rid = receipt.request_id
    assert httpx.post(f"{cheat_url}/v1/court/{rid}/input",
                      json={"input": {"prompt": "cheat with a friend", "max_tokens": 6}}, timeout=30).status_code == 202
    _wait(cheat_url, [rid], lambda r: r["status"] == "fulfilled")
    liar_stake = net.court.stake_of(liar.address, validator=True)
    liar_wallet = cm.usdc.balance_of(liar.address)
    for _ in range(4):
        net.market.client.rpc("evm_mine", [])  # the draw needs the block after the commitment
        for v in [honest[0], liar, honest[1]]:  # the liar votes after the challenge, before the deciding vote
            v.node_urls = [honest_url, cheat_url]
            v.poll_once()
    onchain = net.court.get_request(rid)
    assert (onchain.status, onchain.outcome) == ("slashed", "cheated")
    assert onchain.weight_honest == liar_stake  # the liar did vote for the node
    for _ in range(2):
        _poll(net, [honest_url, cheat_url])  # the votes are claimed
    lost = net.court.vote_of(rid, liar.address)
    assert lost.claimed and lost.risk > 0  # the liar's escrowed share went to the honest voters
    liar_now = net.court.stake_of(liar.address, validator=True) + cm.usdc.balance_of(liar.address)
    assert liar_now == liar_stake + liar_wallet - lost.risk  # (its next poll topped the stake up from its wallet)
    assert all(net.court.vote_of(rid, v.address).claimed for v in net.validators)


@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 2)], ids=["compile+car", "compile+cid", "car+cid"])
def test_any_two_validators_alone_slash_a_cheat_and_refund_its_consumer(
        net: Net, cheat_url: str, honest_url: str, pair: tuple[int, int]) -> None:
    """Two of the three validators, however each was provisioned (compiled, CAR imported, fetched by CID), are
    enough: the third never looks, and the cheat is still challenged, slashed and its consumer refunded."""
    cm = net.cheat_market
    two = [net.validators[i] for i in pair]
    for v in two:  # a validator that lost a vote earlier tops its stake up on its next poll, before the commitment
        v.node_urls = [honest_url, cheat_url]
        v.poll_once()
        assert v.ready()[0], v.ready()
    consumer0 = cm.usdc.balance_of(cm.accounts.consumer.address)
    doc = {"prompt": f"cheat seen by {pair}", "max_tokens": 6}
    rid = cm.request(net.lm_id, doc).request_id
    assert httpx.post(f"{cheat_url}/v1/court/{rid}/input", json={"input": doc}, timeout=30).status_code == 202
    _wait(cheat_url, [rid], lambda r: r["status"] == "fulfilled")
    stake0 = net.court.stake_of(cm.accounts.prover.address, validator=False)
    for _ in range(4):
        net.market.client.rpc("evm_mine", [])  # the draw needs the block after the commitment
        for v in two:
            v.poll_once()
    onchain = net.court.get_request(rid)
    assert (onchain.status, onchain.outcome) == ("slashed", "cheated"), onchain
    assert cm.usdc.balance_of(cm.accounts.consumer.address) == consumer0  # refunded
    assert net.court.stake_of(cm.accounts.prover.address, validator=False) < stake0
    assert all(v.state.verdicts[rid]["verdict"] == "cheated" for v in two)


def test_the_node_publishes_a_bundle_challenged_as_withheld(net: Net, honest_url: str) -> None:
    """An availability challenge is answered at once by the request's court rail (the watcher has the settler follow
    now): the committed bytes go on chain (the challenger's bond back, a fresh window), where every validator reads
    them."""
    m = net.market
    receipt = m.request(net.lm_id, {"prompt": "are you there", "max_tokens": 4})
    rid = receipt.request_id
    assert httpx.post(f"{honest_url}/v1/court/{rid}/input",
                      json={"input": {"prompt": "are you there", "max_tokens": 4}}, timeout=30).status_code == 202
    _wait(honest_url, [rid], lambda r: r["status"] == "fulfilled")
    m.client.rpc("anvil_mine", [hex(2)])  # the draw is known
    challenger = net.validators[0]
    before = m.usdc.balance_of(challenger.address)
    net.court.challenge_availability(rid, challenger.account)
    deadline = time.monotonic() + 60
    while not net.court.get_request(rid).published:
        assert time.monotonic() < deadline, net.court.get_request(rid)
        time.sleep(0.2)
    onchain = net.court.get_request(rid)
    assert onchain.status == "committed" and m.usdc.balance_of(challenger.address) == before
    published = net.court.published_bundle(rid)
    assert published is not None and "0x" + hashlib.sha256(published).hexdigest() == "0x" + onchain.bundle_digest.hex()


def test_validator_refuses_bad_reads_and_serves_metrics(net: Net, honest_url: str) -> None:
    from proofmarket.validator.process import serve_metrics
    from proofmarket.validator.protocol import read_headers

    rid, cid, node = 1, net.market.client.chain_id, net.market.accounts.prover.address
    stranger = dev_account(9, cid)  # not staked as a validator
    headers = read_headers(stranger, cid, net.court.address, node, rid)
    assert httpx.get(f"{honest_url}/v1/court/{rid}/bundle", headers=headers).status_code == 404
    staked = net.validators[0].account
    stale = read_headers(staked, cid, net.court.address, node, rid, now=time.time() - 3_600)
    assert httpx.get(f"{honest_url}/v1/court/{rid}/bundle", headers=stale).status_code == 404
    net.validators[0].node_urls = [honest_url]
    net.validators[0].poll_once()  # a recent poll is what "ok" means: not left to an earlier test's
    server = serve_metrics(net.validators[0], "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert "proofmarket_validator_checks_total" in httpx.get(f"{base}/metrics").text
        health = httpx.get(f"{base}/health").json()
        assert health["address"] == staked.address and health["status"] == "ok"
    finally:
        server.shutdown()


def test_cli_request_validator_run_and_court_refund(net: Net, honest_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from proofmarket.cli.main import app as cli

    monkeypatch.setenv("PROOFMARKET_RPC_URL", net.rpc_url)
    doc = tmp_path / "request.json"
    doc.write_text(json.dumps({"prompt": "from the command line", "max_tokens": 5}))
    result = CliRunner().invoke(cli, ["request", net.lm_id, "--input", str(doc), "--node", honest_url, "--wait", "60",
                                      "--home", str(net.home), "--json"])
    assert result.exit_code == 0, result.stdout
    out = json.loads(result.stdout)
    assert out["contract"] == "AttestationCourt" and out["node"]["status"] == "fulfilled"
    assert out["node"]["settlement"]["court"]["status"] == "committed"
    net.market.client.rpc("evm_mine", [])
    run = CliRunner().invoke(cli, ["validator", "run", "--once", "--dev-account", "4", "--home", str(net.home)])
    assert run.exit_code == 0, run.stdout
    assert "staked" in run.stdout and "judged" in run.stdout
    no_key = CliRunner().invoke(cli, ["validator", "run", "--once", "--home", str(net.home)],
                                env={"PROOFMARKET_VALIDATOR_KEY": ""})
    assert no_key.exit_code != 0 and "PROOFMARKET_VALIDATOR_KEY" in no_key.output

    # a court request no node answers is refunded after its deadline, and only then
    consumer = net.market.accounts.consumer.address
    before = net.market.usdc.balance_of(consumer)
    receipt = net.market.request_attested(net.lm_id, {"prompt": "nobody answers", "max_tokens": 3}, ttl_s=120,
                                          node=dev_account(9, net.market.client.chain_id).address)
    early = CliRunner().invoke(cli, ["refund", str(receipt.request_id), "--court", "--home", str(net.home), "--json"])
    assert early.exit_code != 0 and ("WindowOpen" in early.output or "deadline" in early.output), early.output
    _advance(net.market, 121)
    done = CliRunner().invoke(cli, ["refund", str(receipt.request_id), "--court", "--home", str(net.home), "--json"])
    assert done.exit_code == 0, done.stdout
    assert net.market.usdc.balance_of(consumer) == before


def test_admin_court_settings_are_bounded_and_scheduled(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from proofmarket.cli.main import app as cli

    monkeypatch.setenv("PROOFMARKET_RPC_URL", net.rpc_url)
    before = net.court.params()
    shown = CliRunner().invoke(cli, ["admin", "court", "--home", str(net.home), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["window"] == WINDOW
    changed = CliRunner().invoke(cli, ["admin", "court", "--quorum-bps", "6000", "--bond", "3", "--home",
                                       str(net.home), "--json"])
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["scheduled_eta"] > net.market.client.timestamp()
    assert net.court.params() == before  # scheduled, not applied
    early = CliRunner().invoke(cli, ["admin", "court", "--apply", "--home", str(net.home)])
    assert early.exit_code != 0 and "apply only from" in early.output, early.output
    _advance(net.market, net.court.params_delay() + 1)
    applied = CliRunner().invoke(cli, ["admin", "court", "--apply", "--home", str(net.home), "--json"])
    assert applied.exit_code == 0, applied.output
    assert (net.court.params().quorum_bps, net.court.params().challenge_bond) == (6_000, 3_000_000)
    for bad in (["--quorum-bps", "0"], ["--window", "10"], ["--fee-bps", "5000"]):  # no quorum, short window, fee
        refused = CliRunner().invoke(cli, ["admin", "court", *bad, "--home", str(net.home)])
        assert refused.exit_code != 0 and "BadParams" in refused.output, refused.output
    set_court_params(net.market, **vars(before))
    status = CliRunner().invoke(cli, ["prover", "status", "--home", str(net.home), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["court_stake"]["validator"] == 0  # the node stakes as a node only


def test_validators_declare_the_listings_of_the_models_they_hold_and_only_those(net: Net) -> None:
    """Eligible stake counts only validators that can check the model: each validator declared both listings of
    the tiny LM it holds (at its stake); a new listing of that model by another owner is declared on the next
    poll, a listing of a model it does not hold is not."""
    from proofmarket.chain.commitments import model_id_for, model_key

    held = {model_id_for(net.market.accounts.owner.address, net.lm_id),
            model_id_for(net.cheat_market.accounts.owner.address, net.lm_id)}
    for v in net.validators:
        assert held <= set(net.court.declared_models(v.address))
    spec = net.market.registry.get_model(model_id_for(net.market.accounts.owner.address, net.lm_id)).spec
    cid = net.market.client.chain_id
    newcomer, stranger = dev_account(9, cid), dev_account(3, cid)
    net.market.client.rpc("anvil_setBalance", [newcomer.address, hex(10**18)])
    net.market.registry.register(model_key(net.lm_id), spec, newcomer)  # the same model, another owner
    net.market.registry.register(model_key("bafy-not-held-here"), spec, newcomer)
    validator = net.validators[0]
    validator.poll_once()
    declared = set(net.court.declared_models(validator.address))
    assert model_id_for(newcomer.address, net.lm_id) in declared
    assert model_id_for(newcomer.address, "bafy-not-held-here") not in declared
    assert not net.court.declared_models(stranger.address)  # nobody declares for anyone else


def test_a_validator_given_the_model_after_it_started_declares_it_and_becomes_ready(net: Net,
                                                                                   tmp_path: Path) -> None:
    """A validator that starts with an empty store is not ready (/health 503, with what to do); once the owner's CAR
    is imported into its home, its next poll declares the model's listings and it is ready to vote."""
    from eth_account import Account

    from proofmarket.chain.commitments import model_id_for
    from proofmarket.validator.metrics import serve_metrics

    client = net.market.client
    late = Account.from_key(b"\x51" * 32)
    client.rpc("anvil_setBalance", [late.address, hex(10**18)])
    net.market.usdc.mint(late.address, 100 * 10**6, dev_account(0, client.chain_id))
    ws = Workspace(node_settings(tmp_path / "late-home", net.rpc_url))
    validator = Validator(client, net.court, late, ws, state_path=tmp_path / "late.json",
                          from_block=net.market.deployment.contracts["AttestationCourt"].block)
    validator.ensure_stake()
    server = serve_metrics(validator, "127.0.0.1", 0)
    health = f"http://127.0.0.1:{server.server_address[1]}/health"
    try:
        validator.poll_once()
        before = httpx.get(health, timeout=10)
        assert before.status_code == 503 and before.json()["status"] == "not_ready", before.text
        assert "proofmarket import" in before.json()["reason"] and not net.court.declared_models(late.address)

        ws.import_car(net.market.workspace.export_model(net.lm_id, tmp_path / "lm.car"))
        validator.poll_once()  # the next poll finds the model and declares its listings
        listing = model_id_for(net.market.accounts.owner.address, net.lm_id)
        assert listing in set(net.court.declared_models(late.address))
        after = httpx.get(health, timeout=10)
        assert after.status_code == 200 and after.json()["ready"], after.text
        assert {v["model_id"] for v in after.json()["voting"]} == {net.lm_id}
        assert f'model="{net.lm_id}"' in httpx.get(health.replace("/health", "/metrics"), timeout=10).text
    finally:
        server.shutdown()
        ws.close()
        # no weight left on later requests: a fourth declared stake would change every later quorum
        for model in net.court.declared_models(late.address):
            net.court.declare(model, late, checks=False)


def test_a_contract_requesting_through_court_callbacks_gets_its_result_from_the_node(
        net: Net, honest_url: str) -> None:
    """Issue 58: a consumer contract asks for an attested generation through CourtCallbacks; once the court paid the
    node's result (the window closed), the node delivers it into the contract's callback itself and earns the tip,
    one transfer in its book beside the court's payment."""
    from chain_helpers import TEST_ARTIFACTS

    from proofmarket.chain.artifacts import load_artifact, load_artifact_file
    from proofmarket.systems.attested import instances

    client, a = net.market.client, net.market.accounts
    admin = dev_account(0, client.chain_id)
    art = load_artifact("CourtCallbacks")
    callbacks_address, _ = client.deploy(art, admin, net.court.address)
    consumer_art = load_artifact_file(TEST_ARTIFACTS / "TestAttestedConsumer.json")
    consumer_address, _ = client.deploy(consumer_art, admin, callbacks_address, 0)
    consumer = client.contract(consumer_address, consumer_art.abi)
    net.market.usdc.mint(consumer_address, 5 * PRICE_UNITS, admin)
    doc = instances.escrow_request({"prompt": "from a contract", "max_tokens": 6})
    key = net.market._checked_listing(net.lm_id, None, None)
    tip = PRICE_UNITS // 10
    tx = client.transact(consumer.functions.request(key, bytes.fromhex(instances.input_commitment(doc)[2:]),
                                                    client.timestamp() + 3_600, a.prover.address, 2 * PRICE_UNITS,
                                                    200_000, tip), admin)
    request_id = int(net.court.decode_events(tx, "RequestCreated")[0]["requestId"])
    posted = httpx.post(f"{honest_url}/v1/court/{request_id}/input", json={"input": doc}, timeout=30)
    assert posted.status_code == 202, posted.text
    _wait(honest_url, [request_id], lambda r: r["status"] == "fulfilled")
    assert consumer.functions.received().call() == 0  # nothing before the court paid
    node_before = net.market.usdc.balance_of(a.prover.address)
    _advance(net.market, WINDOW + 1)
    [row] = _wait(honest_url, [request_id], lambda r: _court(r).get("status") == "paid")
    assert _court(row)["callback"]["ok"] is True and _court(row)["callback"]["tip"] == str(tip)
    assert consumer.functions.received().call() == 1  # delivered into the contract by the node
    assert net.market.usdc.balance_of(a.prover.address) > node_before + tip - 1  # its share and the tip
    tips = [t for t in MONEY[honest_url].book.transfers(kinds=["capture"])  # this request's (other tests deliver too)
            if t.ref.startswith("court-callback:") and t.ref.endswith(f":{request_id}")]
    assert len(tips) == 1 and tips[0].rail == "court"


ATTESTED_DAPP = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AttestedConsumer, AttestedOutputs, ICourtCallbacks} from "proofmarket/AttestedConsumer.sol";

/// A dApp's own court consumer, written against the shipped base only: it keeps the paid output hash and accepts
/// the text's tokens when they are the ones the court paid for.
contract Transcript is AttestedConsumer {
    mapping(uint256 => bytes32) public paidHash;
    mapping(uint256 => uint256) public acceptedTokens;

    error NotThePaidOutput(uint256 requestId);

    constructor(ICourtCallbacks callbacks_) AttestedConsumer(callbacks_) {}

    function ask(bytes32 modelId, bytes32 commitment, uint64 deadline, address node, uint96 maxPrice, uint24 gas,
        uint96 tip) external returns (uint256) {
        return _requestAttested(modelId, commitment, deadline, node, maxPrice, gas, tip);
    }

    function _onAttestedResult(uint256 requestId, bytes32, bytes32 outputHash, bytes32) internal override {
        paidHash[requestId] = outputHash;
    }

    function accept(uint256 requestId, uint32[] calldata tokens) external {
        bytes32 paid = paidHash[requestId];
        if (paid == bytes32(0) || AttestedOutputs.tokensHash(tokens) != paid) revert NotThePaidOutput(requestId);
        acceptedTokens[requestId] = tokens.length;
    }

    function valuesHash(uint64[][] calldata outputs) external pure returns (bytes32) {
        return AttestedOutputs.valuesHash(outputs);
    }

    function toFixed(uint64 bits, uint8 decimals) external pure returns (int256) {
        return AttestedOutputs.toFixed(bits, decimals);
    }
}
"""


def _fixed(value: float, decimals: int) -> int:
    """``value * 10**decimals`` rounded half away from zero, exactly (Python's rationals: an independent rule)."""
    from fractions import Fraction

    scaled = abs(Fraction(value)) * 10**decimals
    whole = int(scaled)
    magnitude = whole + (1 if scaled - whole >= Fraction(1, 2) else 0)
    return -magnitude if value < 0 else magnitude


def test_a_dapps_own_court_consumer_on_the_shipped_base_accepts_only_the_paid_output(
        net: Net, honest_url: str, tmp_path: Path) -> None:
    """Issue 71, court path: a dApp's contract built on the shipped ``AttestedConsumer.sol`` (not this repository's
    test consumer) requests an attested generation through CourtCallbacks; the node delivers the paid result, and
    the contract then accepts the bundle's tokens (and refuses others) by the shipped hash rule. Its float64
    decoding gives the fixed-point values of negative, zero, positive and extreme outputs, checked against exact
    rationals, and its values hash is the attested ONNX bundle's ``output.hash``."""
    import struct

    from dapp_build import build_dapp_contract
    from web3.exceptions import ContractLogicError

    from proofmarket.chain.artifacts import load_artifact
    from proofmarket.systems.attested import instances
    from proofmarket.systems.attested.documents import values_hash

    client, a = net.market.client, net.market.accounts
    admin = dev_account(0, client.chain_id)
    art = build_dapp_contract(tmp_path, "Transcript", ATTESTED_DAPP)
    callbacks_address, _ = client.deploy(load_artifact("CourtCallbacks"), admin, net.court.address)
    address, _ = client.deploy(art, admin, callbacks_address)
    dapp = client.contract(address, art.abi)

    bits = lambda v: struct.unpack(">Q", struct.pack(">d", v))[0]  # noqa: E731
    for value in (-0.32, -1.5, -2.5, 0.0, -0.0, 0.29, 2.5, 1e-300, 5e-324, 123456.789, -1e30, 2.0**150):
        for decimals in (0, 6, 18):
            assert dapp.functions.toFixed(bits(value), decimals).call() == _fixed(value, decimals), (value, decimals)
    for bad, decimals in ((float("nan"), 6), (float("inf"), 6), (-float("inf"), 0), (2.0**250, 18)):
        with pytest.raises(ContractLogicError):  # not finite, or beyond an int256
            dapp.functions.toFixed(bits(bad), decimals).call()
    rows = [[-0.32, 0.0, 2.5], [], [1e-300]]
    assert "0x" + dapp.functions.valuesHash([[bits(v) for v in r] for r in rows]).call().hex() == values_hash(rows)

    net.market.usdc.mint(address, 5 * PRICE_UNITS, admin)
    doc = instances.escrow_request({"prompt": "a dApp of its own", "max_tokens": 5})
    key = net.market._checked_listing(net.lm_id, None, None)
    tx = client.transact(dapp.functions.ask(key, bytes.fromhex(instances.input_commitment(doc)[2:]),
                                            client.timestamp() + 3_600, a.prover.address, 2 * PRICE_UNITS,
                                            200_000, PRICE_UNITS // 10), admin)
    request_id = int(net.court.decode_events(tx, "RequestCreated")[0]["requestId"])
    posted = httpx.post(f"{honest_url}/v1/court/{request_id}/input", json={"input": doc}, timeout=30)
    assert posted.status_code == 202, posted.text
    _wait(honest_url, [request_id], lambda r: r["status"] == "fulfilled")
    bundle = httpx.get(f"{honest_url}/v1/court/{request_id}/bundle",
                       headers={"X-Job-Token": posted.json()["access_token"]}, timeout=30).json()
    tokens = bundle["output"]["tokens"]
    _advance(net.market, WINDOW + 1)
    [row] = _wait(honest_url, [request_id], lambda r: _court(r).get("status") == "paid")
    assert _court(row)["callback"]["ok"] is True
    assert "0x" + dapp.functions.paidHash(request_id).call().hex() == bundle["output"]["hash"]
    with pytest.raises(ContractLogicError):  # another text is not the one the court paid for
        dapp.functions.accept(request_id, [*tokens[:-1], (tokens[-1] + 1) % 2**32]).call()
    client.transact(dapp.functions.accept(request_id, tokens), admin)
    assert dapp.functions.acceptedTokens(request_id).call() == len(tokens)
