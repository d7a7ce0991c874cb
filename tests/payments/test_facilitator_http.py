"""Issue 22 item 5: a node that talks to its x402 facilitator over HTTP only, the facilitator being
``proofmarket facilitator serve`` (the SDK's facilitator behind the facilitator API).

One paid node on the payments devnet (PROOFMARKET_FACILITATOR_URL = a fixed loopback port); whatever listens on
that port changes per test: the real CLI in a subprocess, nothing, a facilitator that answers too late, one that
dies between verify and settle and comes back. Balances are asserted as deltas (no chain snapshots)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from health_wait import wait_healthy
from payments_helpers import Market
from served import Served
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from x402.http import decode_payment_response_header

from proofmarket.api import create_app
from proofmarket.chain.devkeys import ANVIL_DEV_KEYS
from proofmarket.chain.devnet import free_port
from proofmarket.core.settings import Settings
from proofmarket.payments.facilitator_server import build_facilitator, facilitator_app
from proofmarket.samples import sample_path
from proofmarket.sdk.pay import payment_signature_header
from proofmarket.systems.ezkl.compiler import CompileOptions
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate
from proofmarket.systems.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.chain, pytest.mark.timeout(300)]
PRICE = 20_000
TIMEOUT_S = 3.0  # the node's wait for each facilitator request (PROOFMARKET_FACILITATOR_TIMEOUT_S)
SERVE_KEY_INDEX = 7  # the served facilitator's gas key: nothing else on this devnet sends from it
PAY = "PAYMENT-SIGNATURE"


@dataclass
class PaidNode:
    served: Served
    market: Market
    model_id: str
    facilitator_port: int
    home: Path

    @property
    def infer_url(self) -> str:
        return f"{self.served.url}/v1/models/{self.model_id}/infer"

    @property
    def facilitator_url(self) -> str:
        return f"http://127.0.0.1:{self.facilitator_port}"

    @property
    def services(self) -> Any:
        return self.served.app.state.services

    def balances(self) -> list[int]:
        return [self.market.usdc.balance_of(a.address) for a in (self.market.payer, self.market.payee)]

    def pay(self) -> str:
        required = httpx.post(self.infer_url, json=mlp_input(), timeout=30)
        assert required.status_code == 402, required.text
        return payment_signature_header(self.market.payer, required.headers["PAYMENT-REQUIRED"], PRICE,
                                        assets=[(self.market.network, self.market.usdc.address)])

    def job_counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.services.calls.repo.counts()
        return counts


def mlp_input() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sample_path("mlp", "input").read_text())
    return doc


@pytest.fixture(scope="module")
def node(market: Market, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidNode]:
    home = tmp_path_factory.mktemp("facilitator-node")
    port = free_port()
    settings = Settings(_env_file=None, home=home, database_url=f"sqlite:///{home / 'node.db'}",  # type: ignore[call-arg]
                        prover_workers=1, infer_wait_s=120.0, payments="on", rpc_url=market.devnet.rpc_url,
                        registry_terms="off", proof_cache_size=0, settle_poll_s=0.2)
    ws = Workspace(settings)
    try:
        samples = json.loads(sample_path("mlp", "samples").read_text())
        options = CompileOptions(profile=PrivacyProfile.parse("public"), srs=SrsProvider(ws.settings.srs_dir),
                                 candidates=[Candidate(256, 2, 7, 4)])
        model_id = ws.prover.compile(sample_path("mlp"), samples, options).model_id
    finally:
        ws.close()
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("PROOFMARKET_")]:
            env.delenv(name)
        env.setenv("PROOFMARKET_FACILITATOR_URL", f"http://127.0.0.1:{port}")
        env.setenv("PROOFMARKET_FACILITATOR_TIMEOUT_S", str(TIMEOUT_S))
        env.setenv("PROOFMARKET_USDC_ADDRESS", market.usdc.address)
        app = create_app(settings)  # nothing listens on the port yet: logged, not fatal
    app.state.services.catalog.register(model_id, price_atomic=PRICE, owner=market.payee.address)
    with Served(app) as served:
        yield PaidNode(served, market, model_id, port, home)


@contextmanager
def cli_facilitator(node: PaidNode) -> Iterator[subprocess.Popen[bytes]]:
    """``proofmarket facilitator serve`` on the node's facilitator port, in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROOFMARKET_")}
    env.update(PROOFMARKET_RPC_URL=node.market.devnet.rpc_url, PROOFMARKET_HOME=str(node.home / "facilitator"),
               PROOFMARKET_FACILITATOR_KEY=ANVIL_DEV_KEYS[SERVE_KEY_INDEX])
    cli = Path(sys.executable).parent / "proofmarket"
    proc = subprocess.Popen([str(cli), "facilitator", "serve", "--port", str(node.facilitator_port),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(node.facilitator_url, proc, timeout_s=60, what="the facilitator")
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


class InProcess(Served):
    """The facilitator app (wrapped by ``wrap``) served by uvicorn in a thread on the node's facilitator port."""

    def __init__(self, node: PaidNode, wrap: Any = None) -> None:
        signer = Account.from_key(ANVIL_DEV_KEYS[SERVE_KEY_INDEX])
        served = build_facilitator(node.market.devnet.rpc_url, signer, client=node.market.client)
        app = facilitator_app(served)
        super().__init__(wrap(app, self) if wrap else app, port=node.facilitator_port, lifespan="off",
                         timeout_graceful_shutdown=2)


def slow_verify(app: ASGIApp, _: InProcess) -> ASGIApp:
    """Answers /verify after the node's timeout."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/verify":
            await asyncio.sleep(TIMEOUT_S + 5)
        await app(scope, receive, send)
    return wrapped


def dies_after_verify(app: ASGIApp, server: InProcess) -> ASGIApp:
    """Answers /verify, but only once it has stopped listening: the settle that follows finds nobody."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/verify":
            await app(scope, receive, send)
            return
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await app(scope, receive, keep)
        server.server.should_exit = True
        await asyncio.sleep(0.5)  # uvicorn looks at should_exit every 0.1 s and closes its socket first
        for message in answer:
            await send(message)
    return wrapped


def wait_for(node: PaidNode, job: dict[str, Any], statuses: tuple[str, ...], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        doc: dict[str, Any] = httpx.get(f"{node.served.url}/v1/jobs/{job['id']}",
                                        headers={"X-Job-Token": job["access_token"]}, timeout=30).json()
        if doc["status"] in statuses:
            return doc
        assert time.monotonic() < deadline, f"job {job['id']} is still {doc['status']}"
        time.sleep(0.2)


# --- tests --------------------------------------------------------------------------------------------
def test_a_node_sells_a_paid_call_through_the_served_facilitator(node: PaidNode) -> None:
    with cli_facilitator(node):
        supported = httpx.get(f"{node.facilitator_url}/supported", timeout=10).json()
        kinds = {(k["x402Version"], k["scheme"], k["network"]) for k in supported["kinds"]}
        assert kinds == {(2, scheme, node.market.network) for scheme in ("exact", "batch-settlement", "upto")}
        before = node.balances()
        response = httpx.post(node.infer_url, json=mlp_input(), headers={PAY: node.pay()}, timeout=120)

    assert response.status_code == 200, response.text
    answer = response.json()
    settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
    assert settled.success and settled.transaction == answer["payment"]["transaction"]
    assert node.balances() == [before[0] - PRICE, before[1] + PRICE]  # once, to the model's owner
    sender = node.market.client.w3.eth.get_transaction(answer["payment"]["transaction"])["from"]
    assert sender == Account.from_key(ANVIL_DEV_KEYS[SERVE_KEY_INDEX]).address  # its own key paid the gas


def test_a_facilitator_that_is_down_refuses_the_call_and_charges_nothing(node: PaidNode) -> None:
    with InProcess(node):
        pay = node.pay()  # terms while it is up; then nothing listens on its port
    before, jobs = node.balances(), node.job_counts()

    response = httpx.post(node.infer_url, json=mlp_input(), headers={PAY: pay}, timeout=60)

    assert response.status_code == 503 and response.json()["error"]["code"] == "facilitator_unavailable"
    assert "verify" in response.json()["error"]["message"]
    assert node.balances() == before and node.job_counts() == jobs  # nothing charged, no call stored
    assert node.services.payments.gate.ledger.pending() == []


def test_a_facilitator_slower_than_the_timeout_refuses_the_call_and_charges_nothing(node: PaidNode) -> None:
    with InProcess(node, slow_verify):
        pay = node.pay()
        before, jobs = node.balances(), node.job_counts()
        started = time.monotonic()
        response = httpx.post(node.infer_url, json=mlp_input(), headers={PAY: pay}, timeout=60)
        waited = time.monotonic() - started

    assert response.status_code == 503 and response.json()["error"]["code"] == "facilitator_unavailable"
    assert TIMEOUT_S <= waited < TIMEOUT_S + 4  # the node gave up at its timeout, not when the answer came
    assert node.balances() == before and node.job_counts() == jobs
    assert node.services.payments.gate.ledger.pending() == []


def test_a_facilitator_that_dies_before_settling_is_settled_once_when_it_is_back(node: PaidNode) -> None:
    before = node.balances()
    with InProcess(node, dies_after_verify) as dying:
        response = httpx.post(node.infer_url, json=mlp_input(), headers={PAY: node.pay()}, timeout=120)
        dying.thread.join(30)

    assert response.status_code == 202, response.text  # proved, paid for, settlement not known: settling
    job = response.json()
    assert job["status"] == "settling"
    assert node.balances() == before  # not charged yet
    time.sleep(1)
    assert wait_for(node, job, ("settling", "settled", "failed"))["status"] == "settling"  # not dropped

    with InProcess(node):  # back: the follower sends the settlement again
        done = wait_for(node, job, ("settled", "failed"), timeout_s=4 * TIMEOUT_S + 30)
        assert done["status"] == "settled", done
        time.sleep(1)  # a few more follower passes: nothing is sent twice
        assert node.balances() == [before[0] - PRICE, before[1] + PRICE]
    payment = done["result"]["payment"]
    assert (payment["amount"], payment["payer"]) == (str(PRICE), node.market.payer.address)
    receipt = node.market.client.w3.eth.get_transaction_receipt(payment["transaction"])
    assert receipt["status"] == 1
    assert node.services.payments.gate.ledger.pending() == []
