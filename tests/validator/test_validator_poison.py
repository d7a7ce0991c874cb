"""A cheating node cannot poison the validators that judge it (issue 20, P3-02): a committed bundle of deeply
nested JSON is judged "cheated" (the node signed its digest) by a validator process that stays up and judges the
next request; a failure while judging one request is recorded for it and the loop goes on with the next, with the
state saved after each request."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import PRICE, USDC, Chain, list_model
from eth_utils import keccak

from proofmarket.chain.artifacts import load_artifact
from proofmarket.chain.court import AttestationCourt, CourtParams, deploy_court
from proofmarket.core.settings import Settings
from proofmarket.systems.workspace import Workspace
from proofmarket.validator.process import FAILING_AFTER, MAX_ATTEMPTS, Validator, Verdict

WEIGHTS = b"\x11" * 32
POISON = b"[" * 1_000_000 + b"]" * 1_000_000  # 2 MB: kills a process whose recursion limit py_ecc raised
COURT_PARAMS = {"window": 300, "vote_window": 300, "response_window": 300, "unbond_delay": 600, "quorum": 3,
                "quorum_bps": 5_000, "sample_bps": 10_000, "slash_bps": 5_000, "challenger_reward_bps": 5_000,
                "voter_slash_bps": 1_000, "platform_fee_bps": 100, "challenge_bond": 2 * USDC,
                "node_min_stake": 100 * USDC, "validator_min_stake": 10 * USDC}
NOT_A_BUNDLE = b'{"format": "proofmarket-bundle", "mode": "attested"}'


class _Attacker:
    """The cheating node's HTTP side: serves whatever bundle it committed for a request id."""

    def __init__(self, bundles: dict[int, bytes], prover: str) -> None:
        served = bundles
        manifest = json.dumps({"chain": {"prover": prover}}).encode()  # it announces the account it commits with
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                paths.append(self.path)
                body = manifest if self.path == "/.well-known/ai-service.json" else served[int(self.path.split("/")[3])]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def cheater(chain: Chain) -> Iterator[tuple[AttestationCourt, list[int], _Attacker, int]]:
    """A court (100 % sampling), the node (prover) committed two requests: a poisoned bundle, then a bundle that
    is valid JSON but no attested bundle. The validator is ``prover2`` (dev account 4), staked and declared."""
    a = chain.accounts
    params = CourtParams(**{f.name: COURT_PARAMS[f.name] for f in fields(CourtParams)})
    artifact = load_artifact("AttestationCourt")
    args: list[Any] = [chain.usdc.address, chain.registry.address, a.admin.address, params.as_tuple()]
    inputs = next(len(e["inputs"]) for e in artifact.abi if e["type"] == "constructor")
    address, deployed = deploy_court(chain.client, a.admin, *args, *[60] * (inputs - len(args)))  # a delay
    court = AttestationCourt(chain.client, address)
    listed = list_model(chain, "bafy-attested", vk_digest=keccak(text="proofmarket-attested-toploc-v1"),
                        onnx_sha256=WEIGHTS, input_instances=1, instance_count=5)
    for who, amount, validator in ((a.prover, 1_000 * USDC, False), (a.prover2, 10 * USDC, True)):
        chain.usdc.approve(court.address, amount + 10 * USDC, who)
        court.stake(amount, who, validator=validator)
    court.declare(listed.key, a.prover2)  # it checks this model: its stake weighs on the model's requests
    chain.usdc.approve(court.address, 100 * PRICE, a.consumer)
    bundles = {}
    for n, body in enumerate((POISON, NOT_A_BUNDLE)):
        request_hash = 1000 + n
        rid = court.request(listed.key, keccak(request_hash.to_bytes(32, "big")), chain.client.timestamp() + 3_600,
                            a.consumer, node=a.prover.address)
        court.commit(rid, [request_hash, int.from_bytes(WEIGHTS, "big"), 3, 4, 5], a.prover,
                     bundle_digest=hashlib.sha256(body).digest())
        bundles[rid] = body
    for _ in range(2):  # the draw needs the block after the commitment
        chain.client.rpc("evm_mine", [])
    attacker = _Attacker(bundles, a.prover.address)
    try:
        yield court, sorted(bundles), attacker, deployed.block_number
    finally:
        attacker.server.shutdown()


VALIDATOR = """
import json, sys
from pathlib import Path
from proofmarket.chain import dev_account
from proofmarket.chain.client import ChainClient
from proofmarket.chain.court import AttestationCourt
from proofmarket.core.settings import Settings
from proofmarket.validator.process import Validator
from proofmarket.systems.workspace import Workspace
rpc, court, state, url, start, home = sys.argv[1:]
client = ChainClient(rpc)
ws = Workspace(Settings(_env_file=None, home=home))
v = Validator(client, AttestationCourt(client, court), dev_account(4, client.chain_id), ws, state_path=Path(state),
              node_urls=[url], from_block=int(start))
print("judged", v.poll_once(), flush=True)
"""


def test_a_poisoned_bundle_leaves_the_validator_process_running_and_judging_the_next_request(
        chain: Chain, cheater: tuple[AttestationCourt, list[int], _Attacker, int], tmp_path: Path) -> None:
    court, ids, attacker, start = cheater
    state = tmp_path / "validator.json"
    rpc = chain.client.rpc_url
    run = subprocess.run([sys.executable, "-c", VALIDATOR, str(rpc), court.address, str(state), attacker.url,
                          str(start), str(tmp_path / "home")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert "judged 2" in run.stdout, run.stderr[-2000:]
    verdicts = {int(k): v for k, v in json.loads(state.read_text())["verdicts"].items()}
    assert verdicts[ids[0]]["verdict"] == "cheated" and "deeper than" in verdicts[ids[0]]["reason"]
    assert verdicts[ids[1]]["verdict"] == "cheated"
    assert court.status(ids[0]) != "committed"  # challenged in time


class _Flaky(Validator):
    """A unit-test double: judging the ``broken`` request raises something no check expects."""

    broken: set[int] = set()

    def check(self, request_id: int, node: str, instances: list[int], digest: str) -> Verdict:
        if request_id in self.broken:
            raise RuntimeError("out of file descriptors")
        return super().check(request_id, node, instances, digest)


def test_a_failure_while_judging_one_request_is_contained_to_it(
        chain: Chain, cheater: tuple[AttestationCourt, list[int], _Attacker, int], tmp_path: Path) -> None:
    court, ids, attacker, start = cheater
    state = tmp_path / "validator.json"
    ws = Workspace(Settings(_env_file=None, home=tmp_path / "home"))  # type: ignore[call-arg]
    try:
        v = _Flaky(chain.client, court, chain.accounts.prover2, ws, state_path=state, node_urls=[attacker.url],
                   from_block=start)
        v.broken = {ids[0]}
        assert v.poll_once() == 1  # the second request was judged all the same
        saved = {int(k): x for k, x in json.loads(state.read_text())["verdicts"].items()}
        assert saved[ids[0]]["verdict"] == "error" and "out of file descriptors" in saved[ids[0]]["reason"]
        assert saved[ids[1]]["verdict"] == "cheated"
        assert court.status(ids[0]) == "committed"  # not judged yet
        v.broken = set()
        v.poll_once()  # retried on the next poll: judged now
        assert v.state.verdicts[ids[0]]["verdict"] == "cheated"
    finally:
        ws.close()


def test_a_validator_whose_judging_keeps_failing_says_so_and_keeps_following_its_requests(
        chain: Chain, cheater: tuple[AttestationCourt, list[int], _Attacker, int], tmp_path: Path) -> None:
    """Issue 81: judges that fail again and again (a model that no longer loads) leave the validator silent. It
    says so (not ready, with the reason, and in its metrics), and the requests stay followed: one given up on is
    judged again when someone challenges it, and a resolved vote is still claimed."""
    court, ids, attacker, start = cheater
    ws = Workspace(Settings(_env_file=None, home=tmp_path / "home"))  # type: ignore[call-arg]
    try:
        v = _Flaky(chain.client, court, chain.accounts.prover2, ws, state_path=tmp_path / "state.json",
                   node_urls=[attacker.url], from_block=start)
        v.broken = set(ids)
        for _ in range(MAX_ATTEMPTS):
            v.poll_once()
        failures = MAX_ATTEMPTS * len(ids)
        assert failures >= FAILING_AFTER
        ready, reason = v.ready()
        assert not ready and f"judging failed {failures} times in a row" in reason, reason
        assert "out of file descriptors" in reason
        from prometheus_client import generate_latest

        metrics = generate_latest(v.metrics.registry).decode()
        assert f"proofmarket_validator_failing_judgings {float(failures)}" in metrics
        assert f"proofmarket_validator_judge_failures_total {float(failures)}" in metrics
        assert set(v.state.pending) == set(ids)  # still followed
        v.broken = set()
        v.poll_once()  # given up on: not judged again unless challenged
        assert {v.state.verdicts[rid]["verdict"] for rid in ids} == {"error"}
        assert all(court.status(rid) == "committed" for rid in ids)
    finally:
        ws.close()


def test_a_validator_that_loses_the_challenge_race_votes_in_the_same_poll() -> None:
    """Two validators find the same cheat; the court takes one challenge. The one refused votes "cheated" at once
    (issue 81: otherwise the cheat may stay below quorum and be refunded unslashed)."""
    from types import SimpleNamespace

    from proofmarket.core.errors import ChainError

    votes: list[tuple[int, bool]] = []
    status = ["committed"]

    def challenge(rid: int, sender: Any) -> None:
        status[0] = "challenged"  # another validator's challenge landed first
        raise ChainError("the court refused the challenge: the request is no longer committed")

    def request(rid: int) -> Any:
        return SimpleNamespace(outcome="none", status=status[0], commit_block=10, window_end=10**12,
                               node="0x" + "aa" * 20)

    court = SimpleNamespace(get_request=request, challenge=challenge, is_sampled=lambda rid, who: True,
                            has_voted=lambda rid, who: False, weight_of=lambda rid, who: 5,
                            vote=lambda rid, cheated, sender: votes.append((rid, cheated)))
    from prometheus_client import CollectorRegistry

    from proofmarket.validator.metrics import ValidatorMetrics

    v = Validator.__new__(Validator)
    v.court, v.account = court, SimpleNamespace(address="0x" + "33" * 20)
    v.client = SimpleNamespace(timestamp=lambda block=None: 100)
    v.metrics = ValidatorMetrics(CollectorRegistry())
    v.state = SimpleNamespace(verdicts={}, pending={})
    v.check = lambda rid, node, instances, digest: Verdict(  # type: ignore[method-assign]
        rid, "cheated", "differs at chunk 0")
    p = {"node": "0x" + "aa" * 20, "instances": [1], "digest": "0x00"}
    assert v._due_one(7, p, head=20, now=100) == 1
    assert votes == [(7, True)] and p.get("voted") is True


def test_a_validator_that_lost_its_state_after_voting_still_claims(
        chain: Chain, cheater: tuple[AttestationCourt, list[int], _Attacker, int], tmp_path: Path) -> None:
    """Killed between its vote and its state's save: after the restart the validator claims from the court's record
    of its vote (``voteOf``), not from a local flag the crash lost."""
    court, ids, attacker, start = cheater
    a = chain.accounts
    court.challenge(ids[1], a.prover2)  # its vote "cheated": all the eligible stake, resolved at once
    assert court.get_request(ids[1]).status == "slashed"
    assert not court.vote_of(ids[1], a.prover2.address).claimed
    ws = Workspace(Settings(_env_file=None, home=tmp_path / "home"))
    try:  # a state file that never heard of the vote
        validator = Validator(chain.client, court, a.prover2, ws, state_path=tmp_path / "fresh-state.json",
                              node_urls=[attacker.url], from_block=start)
        validator.poll_once()
    finally:
        ws.close()
    assert court.vote_of(ids[1], a.prover2.address).claimed


def test_a_read_for_one_node_is_never_sent_to_another_nodes_url(
        chain: Chain, cheater: tuple[AttestationCourt, list[int], _Attacker, int], tmp_path: Path) -> None:
    """Given several nodes (``--node A --node B``), a read signed for B goes only to the URL that announces B: A
    never holds a signature it could replay to B."""
    court, ids, attacker, start = cheater
    a = chain.accounts
    other = _Attacker({}, a.relayer.address)  # another node, announcing its own account
    ws = Workspace(Settings(_env_file=None, home=tmp_path / "home"))
    try:
        validator = Validator(chain.client, court, a.prover2, ws, state_path=tmp_path / "state.json",
                              node_urls=[other.url, attacker.url], from_block=start)
        validator.poll_once()
    finally:
        ws.close()
        other.server.shutdown()
    assert other.paths and set(other.paths) == {"/.well-known/ai-service.json"}  # asked who it is, sent no read
    assert any(p.startswith("/v1/court/") for p in attacker.paths)


def test_a_listing_whose_declaration_failed_is_declared_on_a_later_poll() -> None:
    """The chain refused (or was away for) the declaration of a listing the registry just announced: the event is
    not seen again, so the listing is kept and declared on the next poll, not lost (the validator would otherwise
    never weigh on that listing's requests)."""
    from types import SimpleNamespace

    from proofmarket.core.errors import ChainError

    tries: list[bytes] = []

    def declare(args: dict[str, Any], held: dict[bytes, str]) -> list[str]:
        tries.append(bytes(args["modelId"]))
        if len(tries) == 1:
            raise ChainError("the RPC did not answer")
        return ["0x" + bytes(args["modelId"]).hex()]

    validator = Validator.__new__(Validator)
    validator._held, validator._undeclared = {b"k" * 32: "bafk"}, []
    validator.metrics = SimpleNamespace(errors=SimpleNamespace(inc=lambda: None))
    validator._declare_listing = declare  # type: ignore[method-assign]
    listing = {"key": b"k" * 32, "modelId": b"\x01" * 32}
    validator._on_event("ModelRegistered", listing, 10)
    assert validator._undeclared == [listing]
    validator._retry_declarations()
    assert tries == [b"\x01" * 32] * 2 and validator._undeclared == []


def test_a_validator_below_the_minimum_stake_tops_it_up_or_says_it_cannot_vote() -> None:
    """A lost vote takes its share of the stake and each challenge a bond of the allowance: each poll tops both up
    from the wallet; a wallet that cannot makes the validator not ready, saying what to do."""
    from types import SimpleNamespace

    from proofmarket.core.errors import ChainError

    stake, allowance = [5 * USDC], [0]
    court = SimpleNamespace(params=lambda: SimpleNamespace(validator_min_stake=10 * USDC, challenge_bond=2 * USDC),
                            stake_of=lambda who, validator: stake[0], address="0x" + "22" * 20)
    validator = Validator.__new__(Validator)
    validator.client, validator.court, validator.stake_short, validator.voting = None, court, "", {"0xab": {}}
    validator.usdc = SimpleNamespace(allowance=lambda owner, spender: allowance[0])
    validator.account = SimpleNamespace(address="0x" + "33" * 20)

    def broke() -> int:
        raise ChainError("transfer amount exceeds balance")

    validator.ensure_stake = broke  # type: ignore[method-assign]
    validator.keep_stake()
    ready, reason = validator.ready()
    assert not ready and "fund the validator's wallet" in reason and "10 USDC" in reason, reason

    def funded() -> int:
        stake[0], allowance[0] = 10 * USDC, 10 * USDC
        return stake[0]

    validator.ensure_stake = funded  # type: ignore[method-assign]
    validator.keep_stake()
    assert validator.ready()[0] and stake[0] == 10 * USDC
    allowance[0] = USDC  # below one bond: approved again on the next poll
    validator.keep_stake()
    assert allowance[0] == 10 * USDC
