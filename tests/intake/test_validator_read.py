"""Reading a committed court bundle, and finding the node to read it from (issue 20, P3-04 and P3-13), on anvil
with a real node serving an attested model on the AttestationCourt.

- A read signature is bound to the node that committed, the court, the chain and the request, lives 60 s and
  is used once: a signature made for another node, a replayed one and an expired one are refused; the
  validator's own read (``Validator.check``) gets the bundle and reproduces it.
- Anyone can register an ERC-8004 agent and transfer it to the node's address: that changes neither the URL a
  validator takes for the node nor the node's registration file, which follow the agent the node minted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from escrow_helpers import anvil_or_skip, node_settings, set_court_params
from served import Served
from sqlalchemy import select

from proofmarket.api import create_app
from proofmarket.chain import Devnet
from proofmarket.chain.devkeys import dev_account
from proofmarket.db.owner_tables import UsedSignatureRow
from proofmarket.onchain import Market
from proofmarket.systems.workspace import Workspace
from proofmarket.validator.process import Validator
from proofmarket.validator.protocol import read_headers

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@dataclass
class Net:
    market: Market
    url: str
    request_id: int
    validator: Validator
    db: Any


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    from proofmarket.systems.attested.tiny import build_tiny_lm

    tmp = tmp_path_factory.mktemp("validator-read")
    with Devnet(tmp / "devnet", anvil=anvil_or_skip()) as chain:
        home = tmp / "home"
        ws = Workspace(node_settings(home, chain.rpc_url))
        lm_id, _ = ws.compile_attested(build_tiny_lm(tmp / "tiny-llama"), max_tokens_cap=16)
        market = Market.deploy(workspace=ws)
        market.register_model(lm_id, "0.5", 7_000)
        set_court_params(market, sample_bps=10_000)  # every validator drawn: the court lets drawn validators read
        app = create_app(node_settings(home, chain.rpc_url, tmp / "node.db", escrow_watcher="on", escrow_poll_s=0.1),
                         workspace=ws)
        app.state.services.catalog.register(lm_id, price_atomic=50_000)
        validator = Validator(market.client, market.court, dev_account(4, market.client.chain_id), ws,
                              state_path=tmp / "validator.json", identity=market.erc8004.identity)
        validator.ensure_stake()
        try:
            with Served(app) as node:
                receipt = market.request(lm_id, {"prompt": "read me", "max_tokens": 4})
                posted = httpx.post(f"{node.url}/v1/court/{receipt.request_id}/input",
                                    json={"input": {"prompt": "read me", "max_tokens": 4}}, timeout=30)
                assert posted.status_code == 202, posted.text
                _wait_committed(node.url, receipt.request_id)
                for _ in range(2):  # the draw is known once the block after the commitment is mined
                    market.client.rpc("evm_mine", [])
                yield Net(market, node.url, receipt.request_id, validator, app.state.services.db)
        finally:
            app.state.services.close()
            ws.close()


def _wait_committed(url: str, request_id: int) -> None:
    deadline = time.monotonic() + 120
    while (row := httpx.get(f"{url}/v1/court/{request_id}", timeout=10).json())["status"] != "fulfilled":
        assert row["status"] != "failed" and time.monotonic() < deadline, row
        time.sleep(0.2)


def _read(net: Net, headers: dict[str, str]) -> int:
    return httpx.get(f"{net.url}/v1/court/{net.request_id}/bundle", headers=headers, timeout=30).status_code


def test_read_signatures_are_bound_to_the_node_short_lived_and_single_use(net: Net) -> None:
    m, v = net.market, net.validator
    cid, court, node = m.client.chain_id, m.court.address, m.accounts.prover.address
    for_another_node = read_headers(v.account, cid, court, dev_account(7, cid).address, net.request_id)
    assert _read(net, for_another_node) == 404  # made for a node impersonating this one: not replayable here
    expired = read_headers(v.account, cid, court, node, net.request_id, now=time.time() - 61)
    assert _read(net, expired) == 404
    from_the_future = read_headers(v.account, cid, court, node, net.request_id, now=time.time() + 120)
    assert _read(net, from_the_future) == 404
    good = read_headers(v.account, cid, court, node, net.request_id)
    assert _read(net, good) == 200
    assert _read(net, good) == 404  # the same signature again: a replay
    with net.db.session() as s:  # remembered in the database: refused by a restarted node and its peers too
        used = s.scalars(select(UsedSignatureRow).where(UsedSignatureRow.nonce == good["X-Validator-Nonce"])).all()
    assert [(u.address, u.path) for u in used] == [(v.account.address.lower(), f"court-read/{cid}/{net.request_id}")]
    unstaked = read_headers(dev_account(9, cid), cid, court, node, net.request_id)
    assert _read(net, unstaked) == 404

    v.node_urls = [net.url]
    verdict = v.check(net.request_id, node, *_committed(net))
    assert verdict.verdict == "reproduced", verdict.reason  # the validator's own reads: a fresh nonce each


def _committed(net: Net) -> tuple[list[int], str]:
    """The instances and bundle digest the node committed for the request (its Committed event)."""
    logs = net.market.court.contract.events.Committed().get_logs(from_block=0)
    args = next(e["args"] for e in logs if int(e["args"]["requestId"]) == net.request_id)
    return [int(x) for x in args["instances"]], "0x" + bytes(args["bundleDigest"]).hex()


def test_an_agent_transferred_to_the_node_changes_neither_its_url_nor_its_registration_file(
        net: Net, tmp_path: Path) -> None:
    m = net.market
    identity = m.erc8004.identity
    node = m.accounts.prover
    own, _ = m.register_agent(f"{net.url}/.well-known/agent-registration.json")
    before = httpx.get(f"{net.url}/.well-known/agent-registration.json", timeout=10).json()["registrations"]
    assert [r["agentId"] for r in before] == [own]

    attacker = dev_account(8, m.client.chain_id)
    planted, _ = identity.register("http://127.0.0.1:9/.well-known/agent-registration.json", attacker)
    m.client.transact(identity.contract.functions.transferFrom(attacker.address, node.address, planted), attacker)
    assert identity.owner_of(planted) == node.address and planted > own
    # a validator with no --node URL finds the node through its registration file: the node's own agent's
    fresh = Validator(m.client, m.court, net.validator.account, m.workspace, state_path=tmp_path / "v.json",
                      identity=identity)
    verdict = fresh.check(net.request_id, node.address, *_committed(net))
    assert verdict.verdict == "reproduced", verdict.reason  # fetched from the node, not from the attacker's URL
    after = httpx.get(f"{net.url}/.well-known/agent-registration.json", timeout=10).json()["registrations"]
    assert after == before
    assert m.agent_id() == own and m.register_agent(f"{net.url}/.well-known/agent-registration.json") == (own, None)
